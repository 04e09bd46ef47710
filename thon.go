// Package thon is the Hackathon Organizer Node as a Caddy plugin. Importing
// it registers thon's modules, so `xcaddy build --with
// github.com/thon-dev/thon=.` builds the same binary as cmd/thon.
package thon

import (
	_ "github.com/thon-dev/thon/caddymodule"
)
