package caddymodule

import (
	"encoding/json"
	"fmt"
	"net/http"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp/headers"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp/reverseproxy"

	"github.com/thon-dev/thon/sandboxes"
)

func init() {
	caddy.RegisterModule(SandboxUpstreams{})
	httpcaddyfile.RegisterDirective("thon_sandbox", parseSandboxDirective)
}

// SandboxUpstreams is the dynamic upstream source of sandboxes: it gives
// reverse_proxy the 127.0.0.1 address of the sandbox the thon_sandbox
// router found, straight from the app's routing table, so starting,
// stopping and moving sandboxes never needs a config reload.
type SandboxUpstreams struct {
	routes *sandboxes.Routes
}

// CaddyModule returns the Caddy module information.
func (SandboxUpstreams) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.reverse_proxy.upstreams.thon",
		New: func() caddy.Module { return new(SandboxUpstreams) },
	}
}

// Provision finds the thon app's routing table.
func (u *SandboxUpstreams) Provision(ctx caddy.Context) error {
	app, err := ctx.App("thon")
	if err != nil {
		return fmt.Errorf("getting thon app: %w", err)
	}
	u.routes = app.(*App).Sandboxes().Routes()
	return nil
}

// GetUpstreams returns the sandbox's address, set by the router. It reads
// only memory: it runs on every proxy attempt.
func (u *SandboxUpstreams) GetUpstreams(r *http.Request) ([]*reverseproxy.Upstream, error) {
	dial, _ := caddyhttp.GetVar(r.Context(), varDial).(string)
	if dial == "" {
		return nil, fmt.Errorf("no sandbox chosen for %s: put the thon_sandbox handler before this reverse_proxy", r.URL.Path)
	}
	// The router ran earlier in this request; the sandbox may have been
	// paused or killed since, in which case there is nothing to proxy to.
	if id, _ := caddyhttp.GetVar(r.Context(), varID).(string); id != "" {
		if route, ok := u.routes.ByID(id); !ok || route.State != sandboxes.StateRunning || route.Dial() != dial {
			return nil, fmt.Errorf("sandbox %s is no longer running", id)
		}
	}
	return []*reverseproxy.Upstream{{Dial: dial}}, nil
}

// UnmarshalCaddyfile sets up the source: `dynamic thon` takes no options.
func (u *SandboxUpstreams) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next()
	if d.NextArg() {
		return d.ArgErr()
	}
	if d.NextBlock(0) {
		return d.Errf("dynamic thon takes no options, got %q", d.Val())
	}
	return nil
}

// Streaming defaults of the sandbox proxy.
const (
	defaultStreamCloseDelay = 5 * time.Minute // a reload leaves WebSockets open this long
	defaultStreamTimeout    = 48 * time.Hour  // a hackathon; code-server reconnects after it
)

// parseSandboxDirective sets up the sandbox proxy. Syntax:
//
//	thon_sandbox [<matcher>] {
//		subdomain          <pattern with {group} and {user}>
//		by_port
//		stream_close_delay <duration>   # default 5m
//		stream_timeout     <duration>   # default 48h; 0 = none
//		flush_interval     <duration>   # default: streams flush immediately
//	}
//
// It expands to a route that runs only for requests addressing a
// sandbox (/s/<group>/<user>/, /<port>/, the subdomain pattern, or any
// request on a by_port listener): the thon_sandbox router, then
// reverse_proxy with `dynamic thon`, with long stream timeouts, a
// stream_close_delay so config reloads keep WebSockets open, and
// Service-Worker-Allowed: / as the original's nginx set.
//
// Every stream is flushed immediately without a flush_interval: Caddy
// forwards server-sent events, responses of unknown length (chunked, as
// dev servers behind code-server's /proxy/<port>/ send them), incremental
// responses and upgraded connections (WebSockets) byte by byte as they
// come. A flush_interval matters only for responses whose length the
// sandbox announced, which leave in 4 KiB writes anyway; setting it to -1
// there costs about a tenth of the proxy's requests/s (bench/RESULTS.md),
// so it is an option, not the default.
func parseSandboxDirective(h httpcaddyfile.Helper) ([]httpcaddyfile.ConfigValue, error) {
	h.Next()                                  // directive name
	userMatcher, err := h.ExtractMatcherSet() // strips the matcher and resets the dispenser
	if err != nil {
		return nil, err
	}
	h.Next() // directive name again
	router := new(SandboxRouter)
	closeDelay, streamTimeout := defaultStreamCloseDelay, defaultStreamTimeout
	var flushInterval time.Duration
	err = router.SandboxAddressing.unmarshal(h.Dispenser, func(opt string) (bool, error) {
		var target *time.Duration
		switch opt {
		case "stream_close_delay":
			target = &closeDelay
		case "stream_timeout":
			target = &streamTimeout
		case "flush_interval":
			target = &flushInterval
		default:
			return false, nil
		}
		var v string
		if !h.AllArgs(&v) {
			return false, h.ArgErr()
		}
		if opt == "flush_interval" && v == "-1" { // as reverse_proxy takes it
			*target = -1
			return true, nil
		}
		d, err := caddy.ParseDuration(v)
		if err != nil || d < 0 {
			return false, h.Errf("thon_sandbox: %s: %q is not a duration", opt, v)
		}
		*target = d
		return true, nil
	})
	if err != nil {
		return nil, err
	}

	proxy := &reverseproxy.Handler{
		DynamicUpstreamsRaw: caddyconfig.JSONModuleObject(new(SandboxUpstreams), "source", "thon", nil),
		FlushInterval:       caddy.Duration(flushInterval),
		StreamCloseDelay:    caddy.Duration(closeDelay),
		StreamTimeout:       caddy.Duration(streamTimeout),
		Headers: &headers.Handler{
			Response: &headers.RespHeaderOps{
				HeaderOps: &headers.HeaderOps{Set: http.Header{"Service-Worker-Allowed": []string{"/"}}},
			},
		},
	}
	matcher := SandboxMatcher{SandboxAddressing: router.SandboxAddressing}
	route := caddyhttp.Route{
		MatcherSetsRaw: []caddy.ModuleMap{{"thon_sandbox": caddyconfig.JSON(matcher, nil)}},
		HandlersRaw: []json.RawMessage{
			caddyconfig.JSONModuleObject(router, "handler", "thon_sandbox", nil),
			caddyconfig.JSONModuleObject(proxy, "handler", "reverse_proxy", nil),
		},
	}
	if userMatcher != nil {
		sub := caddyhttp.Subroute{Routes: caddyhttp.RouteList{route}}
		return []httpcaddyfile.ConfigValue{{Class: "route", Value: caddyhttp.Route{
			MatcherSetsRaw: []caddy.ModuleMap{userMatcher},
			HandlersRaw:    []json.RawMessage{caddyconfig.JSONModuleObject(sub, "handler", "subroute", nil)},
		}}}, nil
	}
	return []httpcaddyfile.ConfigValue{{Class: "route", Value: route}}, nil
}

// Interface guards
var (
	_ caddy.Provisioner           = (*SandboxUpstreams)(nil)
	_ reverseproxy.UpstreamSource = (*SandboxUpstreams)(nil)
	_ caddyfile.Unmarshaler       = (*SandboxUpstreams)(nil)
)
