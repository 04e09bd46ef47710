package caddymodule

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	"github.com/thon-dev/thon/auth"
)

// AuthConfig is how organisers sign in to thon (see the auth package):
// every /api route on every site needs an organiser's API token or
// session; the admin endpoint, for processes on the host, needs nothing.
type AuthConfig struct {
	// LocalPassword turns on password login for organisers (/login, POST
	// /api/auth/login). Default: the AUTH_LOCAL_PASSWORD environment
	// variable. Without it and before any organiser has a password, thon
	// logs a one-time setup link at start. Use {env.*} placeholders to keep
	// it out of the config.
	LocalPassword string `json:"local_password,omitempty"`

	// SessionSecret signs session cookies: at least 32 bytes. Default: the
	// AUTH_SESSION_SECRET environment variable, else a secret made once and
	// kept in the session-secret file (mode 0600) of data_dir.
	SessionSecret string `json:"session_secret,omitempty"`

	// How long sessions last. Defaults: 12h for organisers, 48h for
	// participants.
	OrganiserSession   caddy.Duration `json:"organiser_session,omitempty"`
	ParticipantSession caddy.Duration `json:"participant_session,omitempty"`

	service *auth.Service
}

// parseAuthOption reads the auth sub-block of the thon global option.
// Syntax:
//
//	auth {
//		local_password      <password>
//		session_secret      <secret>
//		organiser_session   <duration>
//		participant_session <duration>
//	}
//
// Every setting is optional; one given no value stays unset.
func parseAuthOption(d *caddyfile.Dispenser) (*AuthConfig, error) {
	c := new(AuthConfig)
	err := blockOptions(d, "auth", true, func(opt, v string) error {
		switch opt {
		case "local_password":
			c.LocalPassword = v
		case "session_secret":
			c.SessionSecret = v
		case "organiser_session", "participant_session":
			if v == "" {
				return nil
			}
			dur, err := caddy.ParseDuration(v)
			if err != nil || dur <= 0 {
				return d.Errf("auth %s: %q is not a duration such as 12h", opt, v)
			}
			if opt == "organiser_session" {
				c.OrganiserSession = caddy.Duration(dur)
			} else {
				c.ParticipantSession = caddy.Duration(dur)
			}
		default:
			return d.Errf("unrecognized auth option %q", opt)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return c, nil
}

// authService builds the auth service of this config over the shared
// session cache and login limiter. It changes nothing shared, except that
// the first load makes the session secret file when there is no secret.
func (a *App) authService() (*auth.Service, error) {
	if a.Auth == nil {
		a.Auth = new(AuthConfig)
	}
	c := a.Auth
	secret, err := auth.LoadSecret(expand(c.SessionSecret, os.Getenv("AUTH_SESSION_SECRET")),
		filepath.Join(a.DataDir, auth.SecretFileName))
	if err != nil {
		return nil, fmt.Errorf("auth: %w", err)
	}
	c.service, err = auth.New(auth.Options{
		Store:          a.shared.store,
		State:          a.shared.auth,
		Secret:         secret,
		LocalPassword:  expand(c.LocalPassword, os.Getenv("AUTH_LOCAL_PASSWORD")),
		OrganiserTTL:   time.Duration(c.OrganiserSession),
		ParticipantTTL: time.Duration(c.ParticipantSession),
	})
	return c.service, err
}

// startAuth logs the one-time setup link when no organiser can sign in
// yet: no local password, no organiser with a password. A reload does
// not issue another while the first is valid.
func (a *App) startAuth() error {
	token, expires, issued, err := a.Auth.service.SetupLink(a.ctx)
	if err != nil {
		return fmt.Errorf("auth: setup link: %w", err)
	}
	if !issued {
		return nil
	}
	path := auth.SetupPath + "?token=" + url.QueryEscape(token)
	fields := []zap.Field{zap.String("path", path), zap.Time("expires", expires)}
	switch {
	case a.Domain != "":
		fields = append(fields, zap.String("url", "https://"+a.Domain+path))
	case a.ExternalIP != "":
		fields = append(fields, zap.String("url", "https://"+a.ExternalIP+path))
	}
	a.logger.Warn("no organiser can sign in yet: open the setup link (path, on any of thon's sites, e.g. http://127.0.0.1:8080"+
		path+") within the hour to set the first password; it works once, and a restart prints a new one", fields...)
	return nil
}

// AuthService returns the auth service of the running config.
func (a *App) AuthService() *auth.Service { return a.Auth.service }

// refuseRebinding answers 421 and reports true for a request that came to
// a loopback address with a Host header that is not a loopback name or
// address: a web page the organiser visits could otherwise reach the
// loopback listener under a name of its own (DNS rebinding). Every thon
// handler calls it first.
func refuseRebinding(w http.ResponseWriter, r *http.Request) bool {
	local, ok := r.Context().Value(http.LocalAddrContextKey).(net.Addr)
	if !ok {
		return false
	}
	tcp, ok := local.(*net.TCPAddr)
	if !ok || !tcp.IP.IsLoopback() || loopbackHost(r.Host) {
		return false
	}
	b, _ := json.Marshal(map[string]string{
		"error": fmt.Sprintf("Host %q refused on the loopback listener %s: use localhost or %s (DNS rebinding protection)",
			r.Host, tcp, tcp.IP),
		"field": "Host",
	})
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusMisdirectedRequest)
	w.Write(append(b, '\n'))
	return true
}

// loopbackHost reports whether a Host header names this machine: localhost
// or a name under .localhost (RFC 6761: never resolved by DNS), a loopback
// address, or nothing (no browser sends that).
func loopbackHost(hostport string) bool {
	host := hostport
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		host = h
	}
	host = strings.TrimSuffix(strings.ToLower(strings.Trim(host, "[]")), ".")
	if host == "" || host == "localhost" || strings.HasSuffix(host, ".localhost") {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.Unmap().IsLoopback()
}
