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
	"sort"
	"strconv"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

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
	urls := a.siteURLs(path)
	msg := "no organiser can sign in yet: open the setup link within the hour to set the first password; it works once, and a restart prints a new one"
	if len(urls) > 0 {
		msg += ": " + urls[0]
	}
	a.logger.Warn(msg, zap.String("path", path), zap.Strings("urls", urls), zap.Time("expires", expires))
	return nil
}

// siteURLs returns path on each of the config's sites, as far as their
// listeners tell: http://<address> for plain listeners (localhost for all
// interfaces), https://<domain or external_ip> for TLS ones.
func (a *App) siteURLs(path string) []string {
	app, err := a.ctx.AppIfConfigured("http")
	if err != nil {
		return nil
	}
	httpApp, ok := app.(*caddyhttp.App)
	if !ok {
		return nil
	}
	public := a.Domain
	if public == "" {
		public = a.ExternalIP
	}
	var urls []string
	seen := map[string]bool{}
	for name, srv := range httpApp.Servers {
		if name == "remaining_auto_https_redirects" { // Caddy's own, which only redirects to HTTPS
			continue
		}
		for _, l := range srv.Listen {
			na, err := caddy.ParseNetworkAddress(caddy.NewReplacer().ReplaceAll(l, ""))
			if err != nil || na.IsUnixNetwork() || na.IsFdNetwork() || na.PortRangeSize() != 1 {
				continue
			}
			port := strconv.FormatUint(uint64(na.StartPort), 10)
			var u string
			switch host := na.Host; {
			case len(srv.TLSConnPolicies) > 0 && public == "":
				continue
			case len(srv.TLSConnPolicies) > 0:
				u = strings.TrimSuffix("https://"+net.JoinHostPort(public, port), ":443")
			case host == "":
				u = "http://" + net.JoinHostPort("localhost", port)
			default:
				u = "http://" + net.JoinHostPort(host, port)
			}
			if !seen[u] {
				seen[u] = true
				urls = append(urls, u+path)
			}
		}
	}
	sort.Strings(urls)
	return urls
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
