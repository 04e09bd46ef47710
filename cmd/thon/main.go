// Command thon is the Hackathon Organizer Node: Caddy with the standard
// modules and thon's app, handlers and commands compiled in.
package main

import (
	_ "time/tzdata"

	caddycmd "github.com/caddyserver/caddy/v2/cmd"

	_ "github.com/caddyserver/caddy/v2/modules/standard"

	_ "github.com/thon-dev/thon/caddymodule"
)

func main() {
	caddycmd.Main()
}
