// Package llm covers thon's side of Lemonade Server: generating its
// configuration for a number of hackathon users (config.json,
// user_models.json, recipe_options.json), a typed client for its HTTP API,
// a health watcher, the steps of `thon lemonade setup`, and the kilo.jsonc
// that points Kilo Code inside each sandbox at Lemonade or at thon's gateway.
//
// The package does not import Caddy; caddymodule adapts it.
package llm
