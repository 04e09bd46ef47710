package caddymodule

import (
	"errors"
	"net/http"
	"strings"

	"github.com/caddyserver/caddy/v2"
)

func init() {
	caddy.RegisterModule(adminAPI{})
}

// adminAPI exposes the REST API on Caddy's admin endpoint under /thon/, for
// the CLI and automation: /thon/groups answers what /api/groups answers.
// It asks for no credentials: the admin endpoint is for processes on the
// host, trusted as Caddy's admin API is (keep it on localhost or a unix
// socket with mode 0600). The admin endpoint refuses browser requests, so
// the dashboard lives on a site instead.
type adminAPI struct {
	app *App
}

// CaddyModule returns the Caddy module information.
func (adminAPI) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "admin.api.thon",
		New: func() caddy.Module { return new(adminAPI) },
	}
}

// Provision finds the thon app, when the config has one. Admin modules are
// provisioned on every config load, before the apps.
func (a *adminAPI) Provision(ctx caddy.Context) error {
	app, err := ctx.AppIfConfigured("thon")
	if errors.Is(err, caddy.ErrNotConfigured) {
		return nil
	}
	if err != nil {
		return err
	}
	a.app = app.(*App)
	return nil
}

// Routes returns the admin routes.
func (a *adminAPI) Routes() []caddy.AdminRoute {
	return []caddy.AdminRoute{{Pattern: "/thon/", Handler: caddy.AdminHandlerFunc(a.serve)}}
}

func (a *adminAPI) serve(w http.ResponseWriter, r *http.Request) error {
	if a.app == nil || a.app.API() == nil {
		return caddy.APIError{
			HTTPStatus: http.StatusServiceUnavailable,
			Err:        errors.New("the running config has no thon app"),
		}
	}
	r2 := r.Clone(r.Context())
	r2.URL.Path = "/api/" + strings.TrimPrefix(r.URL.Path, "/thon/")
	r2.URL.RawPath = ""
	a.app.API().ServeAdmin(w, r2)
	return nil
}

// Interface guards
var (
	_ caddy.Provisioner = (*adminAPI)(nil)
	_ caddy.AdminRouter = (*adminAPI)(nil)
)
