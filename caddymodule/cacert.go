package caddymodule

import (
	"encoding/pem"
	"fmt"
	"net/http"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/caddyserver/caddy/v2/modules/caddypki"
)

func init() {
	caddy.RegisterModule(CACert{})
	httpcaddyfile.RegisterHandlerDirective("thon_ca_cert", parseCACert)
}

// CACert serves the root certificate of Caddy's internal CA at /ca.crt, so
// participants can download it and trust the certificate thon's HTTPS site
// has for a bare IP address (the original served mkcert's root there).
// Other paths go to the next handler.
type CACert struct {
	// The CA whose root is served. Default: "local", the CA of `tls
	// internal`.
	CA string `json:"ca,omitempty"`

	pem []byte
}

// CaddyModule returns the Caddy module information.
func (CACert) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.thon_ca_cert",
		New: func() caddy.Module { return new(CACert) },
	}
}

// Provision loads the CA's root certificate; the PKI app creates the CA and
// keeps its root in Caddy's storage, so it is the same across restarts.
func (h *CACert) Provision(ctx caddy.Context) error {
	if h.CA == "" {
		h.CA = caddypki.DefaultCAID
	}
	app, err := ctx.App("pki")
	if err != nil {
		return fmt.Errorf("getting pki app: %w", err)
	}
	ca, err := app.(*caddypki.PKI).GetCA(ctx, h.CA)
	if err != nil {
		return fmt.Errorf("ca %q: %w", h.CA, err)
	}
	h.pem = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.RootCertificate().Raw})
	return nil
}

func (h *CACert) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	if refuseRebinding(w, r) {
		return nil
	}
	if r.URL.Path != "/ca.crt" {
		return next.ServeHTTP(w, r)
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		return caddyhttp.Error(http.StatusMethodNotAllowed, nil)
	}
	w.Header().Set("Content-Type", "application/x-x509-ca-cert")
	w.Header().Set("Content-Disposition", `attachment; filename="rootCA.crt"`)
	w.Header().Set("Cache-Control", "no-cache")
	w.Header().Set("Content-Length", fmt.Sprint(len(h.pem)))
	if r.Method == http.MethodHead {
		return nil
	}
	_, err := w.Write(h.pem)
	return err
}

// UnmarshalCaddyfile sets up the handler. Syntax:
//
//	thon_ca_cert [<ca id>]
func (h *CACert) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next()
	if d.NextArg() {
		h.CA = d.Val()
	}
	if d.NextArg() {
		return d.ArgErr()
	}
	if d.NextBlock(0) {
		return d.Errf("thon_ca_cert takes no options, got %q", d.Val())
	}
	return nil
}

func parseCACert(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
	m := new(CACert)
	return m, m.UnmarshalCaddyfile(h.Dispenser)
}

// Interface guards
var (
	_ caddy.Provisioner           = (*CACert)(nil)
	_ caddyhttp.MiddlewareHandler = (*CACert)(nil)
	_ caddyfile.Unmarshaler       = (*CACert)(nil)
)
