package caddymodule

import (
	"context"
	"errors"
	"fmt"
	"html"
	"net"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/thon-dev/thon/auth"
	"github.com/thon-dev/thon/sandboxes"
	"github.com/thon-dev/thon/store"
)

func init() {
	caddy.RegisterModule(SandboxRouter{})
	caddy.RegisterModule(SandboxMatcher{})
}

// Request variables the router sets for the upstream source and for logs.
const (
	varDial  = "thon.sandbox.dial"
	varID    = "thon.sandbox.id"
	varGroup = "thon.sandbox.group"
	varUser  = "thon.sandbox.user"
)

// SandboxAddressing says how a request names its sandbox. The paths
// /s/<group>/<user>/ and the original's /<port>/ always work; a subdomain
// pattern and the connection's local port are optional.
type SandboxAddressing struct {
	// Subdomain pattern with {group} and {user}, e.g.
	// "{user}.{group}.sandboxes.example.com": requests for such a host go to
	// that sandbox, unprefixed. Use a wildcard certificate or on-demand TLS
	// for it.
	Subdomain string `json:"subdomain,omitempty"`

	// ByPort routes by the local port the request came in on, for a layout
	// with one listener per sandbox (the sandbox's own port on another
	// address).
	ByPort bool `json:"by_port,omitempty"`

	subdomain *regexp.Regexp
	groupIdx  int
	userIdx   int
}

func (a *SandboxAddressing) provision() error {
	if a.Subdomain == "" {
		return nil
	}
	p := strings.ToLower(a.Subdomain)
	if strings.Count(p, "{group}") != 1 || strings.Count(p, "{user}") != 1 {
		return fmt.Errorf("subdomain: %q must contain {group} and {user} once each", a.Subdomain)
	}
	var b strings.Builder
	b.WriteString("^")
	idx := 0
	for rest := p; rest != ""; {
		i := strings.Index(rest, "{")
		if i < 0 {
			b.WriteString(regexp.QuoteMeta(rest))
			break
		}
		b.WriteString(regexp.QuoteMeta(rest[:i]))
		rest = rest[i:]
		switch {
		case strings.HasPrefix(rest, "{group}"):
			idx++
			a.groupIdx = idx
			rest = rest[len("{group}"):]
		case strings.HasPrefix(rest, "{user}"):
			idx++
			a.userIdx = idx
			rest = rest[len("{user}"):]
		default:
			return fmt.Errorf("subdomain: %q has an unknown placeholder; use {group} and {user}", a.Subdomain)
		}
		b.WriteString(`([a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)`)
	}
	b.WriteString("$")
	var err error
	a.subdomain, err = regexp.Compile(b.String())
	return err
}

// target is the sandbox a request addresses.
type target struct {
	group, user string // by name, or
	port        int    // by port
	prefix      string // the path prefix to strip ("" when unprefixed)
	exact       bool   // the path is the prefix without its trailing slash
}

// resolve finds the sandbox a request addresses, if any.
func (a *SandboxAddressing) resolve(r *http.Request) (target, bool) {
	p := r.URL.Path
	if rest, ok := strings.CutPrefix(p, "/s/"); ok {
		group, rest, _ := strings.Cut(rest, "/")
		user, _, slash := strings.Cut(rest, "/")
		if group != "" && user != "" {
			t := target{group: group, user: user, prefix: "/s/" + group + "/" + user}
			t.exact = !slash
			return t, true
		}
	}
	if len(p) > 1 && p[1] >= '0' && p[1] <= '9' {
		seg, _, slash := strings.Cut(p[1:], "/")
		if port, err := strconv.Atoi(seg); err == nil && port > 0 && port < 65536 && strconv.Itoa(port) == seg {
			return target{port: port, prefix: "/" + seg, exact: !slash}, true
		}
	}
	if a.subdomain != nil {
		host := r.Host
		if h, _, err := net.SplitHostPort(host); err == nil {
			host = h
		}
		if m := a.subdomain.FindStringSubmatch(strings.ToLower(host)); m != nil {
			return target{group: m[a.groupIdx], user: m[a.userIdx]}, true
		}
	}
	if a.ByPort {
		if addr, ok := r.Context().Value(http.LocalAddrContextKey).(net.Addr); ok {
			if tcp, ok := addr.(*net.TCPAddr); ok {
				return target{port: tcp.Port}, true
			}
		}
	}
	return target{}, false
}

// SandboxMatcher matches requests that address a sandbox. The thon_sandbox
// directive uses it to run the sandbox route only for those.
type SandboxMatcher struct {
	SandboxAddressing
}

// CaddyModule returns the Caddy module information.
func (SandboxMatcher) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.matchers.thon_sandbox",
		New: func() caddy.Module { return new(SandboxMatcher) },
	}
}

// Provision compiles the subdomain pattern.
func (m *SandboxMatcher) Provision(caddy.Context) error { return m.provision() }

// Match reports whether r addresses a sandbox.
func (m *SandboxMatcher) Match(r *http.Request) bool {
	_, ok := m.resolve(r)
	return ok
}

// UnmarshalCaddyfile sets up the matcher. Syntax:
//
//	thon_sandbox {
//		subdomain <pattern>
//		by_port
//	}
func (m *SandboxMatcher) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next()
	return m.SandboxAddressing.unmarshal(d, nil)
}

// SandboxRouter finds the sandbox a request addresses in the thon app's
// routing table: an unknown sandbox gets a 404 page, one that is not
// running a 503 page naming its state, a prefix without its trailing
// slash a redirect to it (code-server's relative URLs need the slash).
// Otherwise it strips the prefix and hands the request on, with the
// sandbox's 127.0.0.1 address in a variable for the thon upstream source.
// Requests that address no sandbox pass through untouched.
type SandboxRouter struct {
	SandboxAddressing

	app    *App
	routes *sandboxes.Routes
}

// CaddyModule returns the Caddy module information.
func (SandboxRouter) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.thon_sandbox",
		New: func() caddy.Module { return new(SandboxRouter) },
	}
}

// Provision finds the thon app's routing table.
func (h *SandboxRouter) Provision(ctx caddy.Context) error {
	if err := h.provision(); err != nil {
		return err
	}
	app, err := ctx.App("thon")
	if err != nil {
		return fmt.Errorf("getting thon app: %w", err)
	}
	h.app = app.(*App)
	h.routes = h.app.Sandboxes().Routes()
	return nil
}

func (h *SandboxRouter) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	if refuseRebinding(w, r) {
		return nil
	}
	t, ok := h.resolve(r)
	if !ok {
		return next.ServeHTTP(w, r)
	}
	var route sandboxes.Route
	var found bool
	name := ""
	if t.group != "" {
		route, found = h.routes.ByName(t.group, t.user)
		name = t.group + "/" + t.user
	} else {
		route, found = h.routes.ByPort(t.port)
		name = "on port " + strconv.Itoa(t.port)
	}
	if !found {
		return sandboxPage(w, http.StatusNotFound, "No sandbox here",
			fmt.Sprintf("There is no sandbox %s. Ask the organisers to start it.", name))
	}
	if ok, err := h.admit(w, r, route); !ok {
		return err
	}
	if route.State != sandboxes.StateRunning {
		w.Header().Set("Retry-After", "10")
		return sandboxPage(w, http.StatusServiceUnavailable, "Sandbox "+string(route.State),
			fmt.Sprintf("The sandbox of %s/%s is %s. It answers again once it is running; this page can be reloaded.",
				route.Group, route.User, route.State))
	}
	if t.exact {
		u := *r.URL
		u.Path += "/"
		u.RawPath = ""
		http.Redirect(w, r, u.RequestURI(), http.StatusPermanentRedirect)
		return nil
	}
	if t.prefix != "" {
		r.URL.Path = strings.TrimPrefix(r.URL.Path, t.prefix)
		if r.URL.RawPath != "" {
			r.URL.RawPath = strings.TrimPrefix(r.URL.RawPath, t.prefix)
		}
		r.Header.Set("X-Forwarded-Prefix", t.prefix)
	}
	caddyhttp.SetVar(r.Context(), varDial, route.Dial())
	caddyhttp.SetVar(r.Context(), varID, route.ID)
	caddyhttp.SetVar(r.Context(), varGroup, route.Group)
	caddyhttp.SetVar(r.Context(), varUser, route.User)
	return next.ServeHTTP(w, r)
}

// admit is the single sign-on of the sandboxes: it lets in organisers
// (session or API token), the owner's participant session and, when the
// owner's group shares, the sessions of its other members. It answers
// everyone else itself and reports false: a browser without a session is
// sent to /login and back, other requests without one get 401 (WebSocket
// included), the wrong principal 403. What it admits goes on without
// thon's credentials: its cookies (auth.CookiePrefix) and a thon API
// token are removed, so code-server never sees them.
//
// The owner and organisers are checked in memory (a session this process
// has seen, the route's owner id); a group-mate costs two small reads.
func (h *SandboxRouter) admit(w http.ResponseWriter, r *http.Request, route sandboxes.Route) (bool, error) {
	p, err := h.app.AuthService().Authenticate(r)
	if err != nil && !errors.Is(err, auth.ErrUnauthenticated) {
		return false, caddyhttp.Error(http.StatusInternalServerError, fmt.Errorf("checking credentials: %w", err))
	}
	switch {
	case p.IsOrganiser(), p.IsParticipant() && route.UserID != 0 && p.UserID == route.UserID:
	case p.IsParticipant() && route.UserID != 0:
		mate, err := h.groupMate(r.Context(), p, route)
		if err != nil {
			return false, caddyhttp.Error(http.StatusInternalServerError, err)
		}
		if !mate {
			return false, sandboxPage(w, http.StatusForbidden, "Not your sandbox",
				fmt.Sprintf("You are signed in as %s (%s); this sandbox belongs to someone else. Open your own from your page, /me.",
					p.Name, p.Group))
		}
	case p.IsParticipant():
		return false, sandboxPage(w, http.StatusForbidden, "Not your sandbox",
			"This sandbox's user was removed; only the organisers can open it.")
	case browserNavigation(r):
		http.Redirect(w, r, "/login?next="+url.QueryEscape(r.URL.RequestURI()), http.StatusSeeOther)
		return false, nil
	default:
		w.Header().Set("WWW-Authenticate", `Bearer realm="thon"`)
		return false, sandboxPage(w, http.StatusUnauthorized, "Sign in first",
			"This sandbox opens for its owner once signed in: use your join link, or sign in at /login.")
	}
	stripCredentials(r, p)
	return true, nil
}

// groupMate reports whether participant p is, now, in the group of
// route's owner and that group shares its sandboxes.
func (h *SandboxRouter) groupMate(ctx context.Context, p auth.Principal, route sandboxes.Route) (bool, error) {
	st := h.app.Store()
	u, err := st.GetUserByID(ctx, p.UserID)
	if errors.Is(err, store.ErrNotFound) {
		return false, nil
	}
	if err != nil || u.Group != route.Group {
		return false, err
	}
	return st.GroupShared(ctx, route.Group)
}

// browserNavigation reports whether r is a browser opening a page (not a
// script's fetch, not a WebSocket), which a redirect to the login page
// helps.
func browserNavigation(r *http.Request) bool {
	if (r.Method != http.MethodGet && r.Method != http.MethodHead) || r.Header.Get("Upgrade") != "" {
		return false
	}
	if mode := r.Header.Get("Sec-Fetch-Mode"); mode != "" {
		return mode == "navigate"
	}
	return strings.Contains(r.Header.Get("Accept"), "text/html")
}

// stripCredentials removes thon's own cookies from r, and the API token
// p signed in with, before r goes to a sandbox.
func stripCredentials(r *http.Request, p auth.Principal) {
	if p.Method == auth.MethodToken {
		r.Header.Del("Authorization")
	}
	lines := r.Header.Values("Cookie")
	if len(lines) == 0 {
		return
	}
	var kept []string
	for _, line := range lines {
		for part := range strings.SplitSeq(line, ";") {
			part = strings.TrimSpace(part)
			name, _, _ := strings.Cut(part, "=")
			if part != "" && !strings.HasPrefix(name, auth.CookiePrefix) {
				kept = append(kept, part)
			}
		}
	}
	r.Header.Del("Cookie")
	if len(kept) > 0 {
		r.Header.Set("Cookie", strings.Join(kept, "; "))
	}
}

// sandboxPage writes a small HTML page for a sandbox that cannot be
// reached.
func sandboxPage(w http.ResponseWriter, status int, title, msg string) error {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, err := fmt.Fprintf(w, `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>%[1]s · thon</title>
<style>body{font:16px/1.5 system-ui,sans-serif;max-width:36em;margin:15vh auto;padding:0 1em;color:#222}h1{font-size:1.4em}</style>
</head><body><h1 data-testid="sandbox-status">%[1]s</h1><p>%[2]s</p><p><small>thon · HTTP %[3]d</small></p></body></html>
`, html.EscapeString(title), html.EscapeString(msg), status)
	return err
}

// UnmarshalCaddyfile sets up the handler alone (the thon_sandbox directive
// also adds the proxy; see parseSandboxDirective). Syntax as the
// directive's addressing options.
func (h *SandboxRouter) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next()
	return h.SandboxAddressing.unmarshal(d, nil)
}

// unmarshal reads the addressing options; other options go to extra,
// which returns false for an option it does not know either.
func (a *SandboxAddressing) unmarshal(d *caddyfile.Dispenser, extra func(opt string) (bool, error)) error {
	if d.NextArg() {
		return d.ArgErr()
	}
	seen := map[string]bool{}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		opt := d.Val()
		if seen[opt] {
			return d.Errf("thon_sandbox: %s already specified", opt)
		}
		seen[opt] = true
		switch opt {
		case "subdomain":
			if !d.AllArgs(&a.Subdomain) {
				return d.ArgErr()
			}
			if err := a.provision(); err != nil {
				return d.Errf("thon_sandbox: %v", err)
			}
		case "by_port":
			if d.NextArg() {
				return d.ArgErr()
			}
			a.ByPort = true
		default:
			if extra != nil {
				ok, err := extra(opt)
				if err != nil {
					return err
				}
				if ok {
					continue
				}
			}
			return d.Errf("thon_sandbox: unrecognized option %q", opt)
		}
	}
	return nil
}

// Interface guards
var (
	_ caddy.Provisioner           = (*SandboxRouter)(nil)
	_ caddyhttp.MiddlewareHandler = (*SandboxRouter)(nil)
	_ caddyfile.Unmarshaler       = (*SandboxRouter)(nil)
	_ caddy.Provisioner           = (*SandboxMatcher)(nil)
	_ caddyhttp.RequestMatcher    = (*SandboxMatcher)(nil)
	_ caddyfile.Unmarshaler       = (*SandboxMatcher)(nil)
)
