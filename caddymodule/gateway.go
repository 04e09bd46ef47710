package caddymodule

import (
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"

	"github.com/dustin/go-humanize"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/thon-dev/thon/gateway"
	"github.com/thon-dev/thon/llm"
)

func init() {
	caddy.RegisterModule(Gateway{})
	httpcaddyfile.RegisterHandlerDirective("thon_gateway", parseGatewayHandler)
}

// Gateway is the http.handlers.thon_gateway handler: thon's AI gateway
// (gateway.Handler) on POST /v1/chat/completions, POST /v1/embeddings and
// GET /v1/models, with the thon app's keys, limiter and usage recorder;
// other paths go to the next handler.
type Gateway struct {
	// Upstream is Lemonade Server's URL. Default: the thon app's lemonade
	// url, else http://127.0.0.1:13305.
	Upstream string `json:"upstream,omitempty"`

	// UpstreamAPIKey is sent to Lemonade in place of the client's key.
	// Default: the thon app's lemonade api_key. Use an {env.*}
	// placeholder.
	UpstreamAPIKey string `json:"upstream_api_key,omitempty"`

	// MaxRequestBody bounds request bodies in bytes (413 above). Default:
	// 32 MiB.
	MaxRequestBody int64 `json:"max_request_body,omitempty"`

	// DefaultMaxTokens is the completion size reserved for a request that
	// sets no max_tokens. Default: 512.
	DefaultMaxTokens int64 `json:"default_max_tokens,omitempty"`

	h *gateway.Handler
}

// CaddyModule returns the Caddy module information.
func (Gateway) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.thon_gateway",
		New: func() caddy.Module { return new(Gateway) },
	}
}

// Provision finds the thon app and builds the gateway handler on its
// runtime, with the app's Lemonade by default. It does no network I/O.
func (g *Gateway) Provision(ctx caddy.Context) error {
	a, err := ctx.App("thon")
	if err != nil {
		return fmt.Errorf("getting thon app: %w", err)
	}
	app := a.(*App)
	if app.shared == nil || app.shared.gateway == nil {
		return errors.New("the thon app is not provisioned")
	}
	if err := gateway.RegisterMetrics(ctx.GetMetricsRegistry()); err != nil {
		return fmt.Errorf("registering gateway metrics: %w", err)
	}
	upstream, key := expand(g.Upstream, ""), expand(g.UpstreamAPIKey, "")
	if lc := app.Lemonade; lc != nil {
		if upstream == "" {
			upstream = expand(lc.URL, "")
		}
		if key == "" {
			key = expand(lc.APIKey, "")
		}
	}
	if upstream == "" {
		upstream = defaultLemonadeURL
	}
	g.h, err = app.shared.gateway.NewHandler(gateway.HandlerOptions{
		Upstream:         upstream,
		APIKey:           key,
		MaxRequestBody:   g.MaxRequestBody,
		DefaultMaxTokens: g.DefaultMaxTokens,
		Logger:           ctx.Slogger(),
	})
	return err
}

// ServeHTTP serves the gateway's routes and passes on the rest.
func (g *Gateway) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	if refuseRebinding(w, r) {
		return nil
	}
	if g.h.Serve(w, r) {
		return nil
	}
	return next.ServeHTTP(w, r)
}

// Cleanup closes the idle connections to Lemonade.
func (g *Gateway) Cleanup() error {
	if g.h != nil {
		g.h.Close()
	}
	return nil
}

// UnmarshalCaddyfile sets up the handler. Syntax:
//
//	thon_gateway {
//		upstream           <url>
//		upstream_api_key   <key>
//		max_request_body   <size>
//		default_max_tokens <number>
//	}
//
// Every setting is optional: by default the gateway proxies to the thon
// app's Lemonade with its key. A setting given no value (as an empty
// environment variable leaves it) stays unset.
func (g *Gateway) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // directive name
	if d.NextArg() {
		return d.ArgErr()
	}
	seen := map[string]bool{}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		opt := d.Val()
		if seen[opt] {
			return d.Errf("thon_gateway option %q already specified", opt)
		}
		seen[opt] = true
		args := d.RemainingArgs()
		if len(args) > 1 {
			return d.Errf("thon_gateway %s: expected one value, got %d", opt, len(args))
		}
		v := ""
		if len(args) == 1 {
			v = args[0]
		}
		switch opt {
		case "upstream":
			if v != "" && !strings.Contains(v, "{") {
				if _, err := llm.NewClient(v, "", "", nil); err != nil {
					return d.Errf("thon_gateway upstream: %q is not an http(s) URL such as %s", v, defaultLemonadeURL)
				}
			}
			g.Upstream = v
		case "upstream_api_key":
			g.UpstreamAPIKey = v
		case "max_request_body":
			if v == "" {
				continue
			}
			n, err := humanize.ParseBytes(v)
			if err != nil || n < 1024 || n > 1<<40 {
				return d.Errf("thon_gateway max_request_body: %q is not a size of at least 1KiB, such as 32MiB", v)
			}
			g.MaxRequestBody = int64(n)
		case "default_max_tokens":
			if v == "" {
				continue
			}
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil || n < 1 || n > gateway.MaxTokenLimit {
				return d.Errf("thon_gateway default_max_tokens: %q is not a positive number of tokens", v)
			}
			g.DefaultMaxTokens = n
		default:
			return d.Errf("unrecognized thon_gateway option %q", opt)
		}
	}
	return nil
}

func parseGatewayHandler(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
	g := new(Gateway)
	return g, g.UnmarshalCaddyfile(h.Dispenser)
}

// Interface guards
var (
	_ caddy.Provisioner           = (*Gateway)(nil)
	_ caddy.CleanerUpper          = (*Gateway)(nil)
	_ caddyhttp.MiddlewareHandler = (*Gateway)(nil)
	_ caddyfile.Unmarshaler       = (*Gateway)(nil)
)
