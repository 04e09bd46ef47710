package caddymodule

import (
	"context"
	"fmt"
	"net/netip"
	"path/filepath"
	"strconv"
	"time"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	"github.com/thon-dev/thon/api"
	"github.com/thon-dev/thon/sandboxes/nginx"
)

// Debian's nginx layout, where nginx emission writes by default.
const (
	defaultSitesAvailable = "/etc/nginx/sites-available"
	defaultSitesEnabled   = "/etc/nginx/sites-enabled"
	defaultSSLDir         = "/etc/nginx/ssl"
)

// NginxConfig turns on nginx emission (GET /api/nginx/status, POST
// /api/nginx/refresh and /api/nginx/cleanup) for sites that keep nginx at
// the edge: one server block with a location per sandbox, written into
// nginx's directories, checked with nginx -t and loaded with nginx -s
// reload. The server name and certificate names come from the app's
// domain and external_ip.
type NginxConfig struct {
	// Directories of the Debian layout. Defaults: /etc/nginx/sites-available,
	// /etc/nginx/sites-enabled and /etc/nginx/ssl.
	SitesAvailable string `json:"sites_available,omitempty"`
	SitesEnabled   string `json:"sites_enabled,omitempty"`
	SSLDir         string `json:"ssl_dir,omitempty"`

	// The nginx executable. Default: nginx in PATH, else /usr/sbin/nginx.
	Bin string `json:"bin,omitempty"`

	// The main configuration file nginx runs with, given to nginx -t and
	// nginx -s reload as -c. Default: nginx's own.
	Conf string `json:"conf,omitempty"`

	// Certificate chain and key files to use as they are (from ACME, say).
	// Without them, thon's internal CA issues a certificate for the
	// external IP or domain, and its root is served at /ca.crt.
	Cert string `json:"cert,omitempty"`
	Key  string `json:"key,omitempty"`

	// The address the server block listens on (default every interface,
	// IPv6 included) and its ports (defaults 80 and 443).
	ListenAddr string `json:"listen_addr,omitempty"`
	HTTPPort   int    `json:"http_port,omitempty"`
	HTTPSPort  int    `json:"https_port,omitempty"`
}

// parseNginxOption reads the nginx sub-block of the thon global option.
// Syntax:
//
//	nginx {
//		sites_available <dir>
//		sites_enabled   <dir>
//		ssl_dir         <dir>
//		bin             <path>
//		conf            <file>
//		cert            <file>
//		key             <file>
//		listen_addr     <ip>
//		http_port       <port>
//		https_port      <port>
//	}
//
// Every setting is optional; `nginx` alone turns emission on with the
// defaults.
func parseNginxOption(d *caddyfile.Dispenser) (*NginxConfig, error) {
	c := new(NginxConfig)
	err := blockOptions(d, "nginx", false, func(opt, v string) error {
		switch opt {
		case "sites_available":
			c.SitesAvailable = v
		case "sites_enabled":
			c.SitesEnabled = v
		case "ssl_dir":
			c.SSLDir = v
		case "bin":
			c.Bin = v
		case "conf":
			c.Conf = v
		case "cert":
			c.Cert = v
		case "key":
			c.Key = v
		case "listen_addr":
			if _, err := netip.ParseAddr(v); err != nil {
				return d.Errf("nginx listen_addr: %q is not an IP address", v)
			}
			c.ListenAddr = v
		case "http_port", "https_port":
			n, err := strconv.Atoi(v)
			if err != nil || n < 1 || n > 65535 {
				return d.Errf("nginx %s: %q is not a port (1-65535)", opt, v)
			}
			if opt == "http_port" {
				c.HTTPPort = n
			} else {
				c.HTTPSPort = n
			}
		default:
			return d.Errf("unrecognized nginx option %q", opt)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if (c.Cert == "") != (c.Key == "") {
		return nil, d.Err("nginx: cert and key go together")
	}
	return c, nil
}

// nginxOptions are the REST API's nginx options from the app's nginx
// block, or nil when it has none. It checks the settings without touching
// the disk or the network.
func (a *App) nginxOptions() (*api.NginxOptions, error) {
	c := a.Nginx
	if c == nil {
		return nil, nil
	}
	o := &api.NginxOptions{Applier: &a.shared.nginx, Options: nginx.Options{
		Writer: nginx.Writer{
			SitesAvailable: expand(c.SitesAvailable, defaultSitesAvailable),
			SitesEnabled:   expand(c.SitesEnabled, defaultSitesEnabled),
			SSLDir:         expand(c.SSLDir, defaultSSLDir),
		},
		Bin:  expand(c.Bin, ""),
		Conf: expand(c.Conf, ""),
		Site: nginx.Site{
			ServerName: a.Domain,
			ExternalIP: a.ExternalIP,
			ListenAddr: expand(c.ListenAddr, ""),
			HTTPPort:   c.HTTPPort,
			HTTPSPort:  c.HTTPSPort,
		},
	}}
	o.Site.ListenIPv6 = o.Site.ListenAddr == ""
	cert, key := expand(c.Cert, ""), expand(c.Key, "")
	if (cert == "") != (key == "") {
		return nil, fmt.Errorf("nginx: cert and key go together; got only one of them")
	}
	check := o.Site
	if cert != "" {
		var err error
		if o.Site.CertFile, err = filepath.Abs(cert); err != nil {
			return nil, fmt.Errorf("nginx cert: %w", err)
		}
		if o.Site.KeyFile, err = filepath.Abs(key); err != nil {
			return nil, fmt.Errorf("nginx key: %w", err)
		}
		check = o.Site
	} else {
		o.Certificate = a.nginxCertificate
		check.CertFile, check.KeyFile = "/issued/by/thon.pem", "/issued/by/thon-key.pem"
	}
	// The same checks a refresh makes, early: a bad setting fails the
	// config load with the field's name.
	if _, err := nginx.Render(check); err != nil {
		return nil, fmt.Errorf("nginx: %w", err)
	}
	return o, nil
}

// nginxCertificate keeps current while it is good for names, or issues a
// new certificate for them with Caddy's local CA, the one whose root
// thon serves at /ca.crt.
func (a *App) nginxCertificate(_ context.Context, names []string, current nginx.KeyPair) (nginx.KeyPair, error) {
	ca, err := localCA(a.ctx)
	if err != nil {
		return nginx.KeyPair{}, err
	}
	return issueOrKeep(ca, names, current, time.Now())
}
