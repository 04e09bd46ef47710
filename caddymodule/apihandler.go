package caddymodule

import (
	"fmt"
	"net/http"
	"strings"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

func init() {
	caddy.RegisterModule(APIHandler{})
	httpcaddyfile.RegisterHandlerDirective("thon_api", parseAPIHandler)
}

// APIHandler serves thon's REST API under /api/, its pages (see
// isAPIPath), its OpenAPI document at /openapi.json and Swagger UI at /docs. Other requests go to the next
// handler, so it can share a site with the dashboard and the sandboxes.
type APIHandler struct {
	app *App
}

// CaddyModule returns the Caddy module information.
func (APIHandler) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.thon_api",
		New: func() caddy.Module { return new(APIHandler) },
	}
}

// Provision finds the thon app.
func (h *APIHandler) Provision(ctx caddy.Context) error {
	app, err := ctx.App("thon")
	if err != nil {
		return fmt.Errorf("getting thon app: %w", err)
	}
	h.app = app.(*App)
	return nil
}

// ServeHTTP serves the API paths and passes on the rest.
func (h *APIHandler) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	if refuseRebinding(w, r) {
		return nil
	}
	if !isAPIPath(r.URL.Path) {
		return next.ServeHTTP(w, r)
	}
	h.app.API().ServeHTTP(w, r)
	return nil
}

// isAPIPath reports whether the API server answers p: the API, its
// documents and thon's own pages (sign-in, the participant's page /me,
// join links /join/..., the join sheets /sheets/...).
func isAPIPath(p string) bool {
	return p == "/api" || strings.HasPrefix(p, "/api/") ||
		p == "/openapi.json" || p == "/login" || p == "/setup" || p == "/me" ||
		strings.HasPrefix(p, "/me/") || strings.HasPrefix(p, "/join/") || strings.HasPrefix(p, "/sheets/") ||
		p == "/docs" || strings.HasPrefix(p, "/docs/")
}

// UnmarshalCaddyfile sets up the handler. Syntax:
//
//	thon_api
func (h *APIHandler) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // directive name
	if d.NextArg() {
		return d.ArgErr()
	}
	if d.NextBlock(0) {
		return d.Errf("thon_api takes no options, got %q", d.Val())
	}
	return nil
}

func parseAPIHandler(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
	m := new(APIHandler)
	return m, m.UnmarshalCaddyfile(h.Dispenser)
}

// Interface guards
var (
	_ caddy.Provisioner           = (*APIHandler)(nil)
	_ caddyhttp.MiddlewareHandler = (*APIHandler)(nil)
	_ caddyfile.Unmarshaler       = (*APIHandler)(nil)
)
