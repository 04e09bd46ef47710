package caddymodule

import "github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"

// The order of thon's directives in a Caddyfile site, in one place:
// RegisterDirectiveOrder can only anchor on standard directives, so the
// order among ours is the order of these calls. /ca.crt comes first, on
// every site; then sandboxes, so
// that a sandbox addressed by subdomain or port gets every path, /api
// included; the API and the AI gateway (/v1/...) after them. All come
// before handle, so they work beside the user's own handle blocks.
func init() {
	httpcaddyfile.RegisterDirectiveOrder("thon_ca_cert", httpcaddyfile.Before, "handle")
	httpcaddyfile.RegisterDirectiveOrder("thon_sandbox", httpcaddyfile.Before, "handle")
	httpcaddyfile.RegisterDirectiveOrder("thon_api", httpcaddyfile.Before, "handle")
	httpcaddyfile.RegisterDirectiveOrder("thon_gateway", httpcaddyfile.Before, "handle")
}
