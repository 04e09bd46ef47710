package caddymodule

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	caddycmd "github.com/caddyserver/caddy/v2/cmd"

	"github.com/thon-dev/thon/sandboxes"
	"github.com/thon-dev/thon/sandboxes/nginx"
)

func init() {
	caddycmd.RegisterCommand(caddycmd.Command{
		Name:  "nginx",
		Usage: "[--out <dir>] [--external-ip <ip>] [--domain <name>] [--admin <addr>] [--cert <file> --key <file>] [--cleanup] [--nginx <bin>] [--conf <file>] [--no-reload] [--listen-addr <ip>] [--http-port <n>] [--https-port <n>]",
		Short: "Writes the nginx site that proxies every sandbox of the running thon",
		Long: `
Writes the nginx configuration for a machine that keeps nginx at the edge,
as the original thon did: one server block on ports 80 and 443 with, for
each live sandbox of the running thon, a location /<port>/ and
/s/<group>/<user>/ proxying (WebSockets included) to the sandbox's port on
127.0.0.1, and the root CA at /ca.crt.

The sandboxes are read from the running thon through its admin API
(--admin, default localhost:2019). The certificate is issued for the
external IP or domain by thon's internal CA (the one whose root thon serves
at /ca.crt) and kept while it stays valid; --cert and --key use given files
instead (Let's Encrypt's, say). --external-ip and --domain default to the
running thon's.

Files go to /etc/nginx/sites-available/sandbox-thon, a link in
/etc/nginx/sites-enabled and certificates in /etc/nginx/ssl; then nginx -t
checks the configuration (the previous files are put back when it fails)
and nginx -s reload loads it (not with --no-reload); --conf gives nginx's
main configuration file to both (-c). --out <dir> writes the same tree
under <dir> instead, and then tests and reloads only with --conf.
--cleanup removes exactly what was written.`,
		CobraFunc: func(cmd *cobra.Command) {
			f := cmd.Flags()
			f.String("out", "", "write under this directory (sites-available/, sites-enabled/, ssl/) instead of /etc/nginx; no nginx -t or reload")
			f.String("external-ip", "", "IP address participants use (default: the running thon's external_ip)")
			f.String("domain", "", "domain name of the site (default: the running thon's domain)")
			f.String("admin", "", "admin API address of the running thon (default localhost:2019)")
			f.String("cert", "", "certificate chain file to use instead of issuing one (with --key)")
			f.String("key", "", "private key file of --cert")
			f.Bool("cleanup", false, "remove exactly what was written, instead of writing")
			f.String("nginx", "", "nginx executable (default: nginx in PATH, else /usr/sbin/nginx)")
			f.String("conf", "", "nginx's main configuration file, for nginx -t and nginx -s reload (-c)")
			f.Bool("no-reload", false, "do not reload nginx")
			f.String("listen-addr", "", "IP address to listen on (default: every interface, IPv6 included)")
			f.Int("http-port", nginx.DefaultHTTPPort, "HTTP port")
			f.Int("https-port", nginx.DefaultHTTPSPort, "HTTPS port")
			cmd.RunE = func(cmd *cobra.Command, _ []string) error {
				ctx := cmd.Context()
				if ctx == nil {
					ctx = context.Background()
				}
				return runNginxCommand(ctx, cmd.OutOrStdout(), caddycmd.Flags{FlagSet: cmd.Flags()})
			}
		},
	})
}

// nginxFlags are the command line of `thon nginx`.
type nginxFlags struct {
	out, externalIP, domain, admin, cert, key, bin, conf, listenAddr string
	cleanup, noReload                                                bool
	httpPort, httpsPort                                              int
}

func readNginxFlags(fl caddycmd.Flags) (nginxFlags, error) {
	f := nginxFlags{
		out: fl.String("out"), externalIP: fl.String("external-ip"), domain: fl.String("domain"),
		admin: fl.String("admin"), cert: fl.String("cert"), key: fl.String("key"), bin: fl.String("nginx"),
		conf: fl.String("conf"), listenAddr: fl.String("listen-addr"), cleanup: fl.Bool("cleanup"), noReload: fl.Bool("no-reload"),
		httpPort: fl.Int("http-port"), httpsPort: fl.Int("https-port"),
	}
	if (f.cert == "") != (f.key == "") {
		return f, errors.New("--cert and --key go together")
	}
	if f.externalIP != "" {
		if a, err := netip.ParseAddr(f.externalIP); err != nil || a.Zone() != "" {
			return f, fmt.Errorf("--external-ip: %q is not an IP address", f.externalIP)
		}
	}
	if f.listenAddr != "" {
		if a, err := netip.ParseAddr(f.listenAddr); err != nil || a.Zone() != "" {
			return f, fmt.Errorf("--listen-addr: %q is not an IP address", f.listenAddr)
		}
	}
	for name, p := range map[string]int{"--http-port": f.httpPort, "--https-port": f.httpsPort} {
		if p < 1 || p > 65535 {
			return f, fmt.Errorf("%s: %d is not a port (1-65535)", name, p)
		}
	}
	if f.httpPort == f.httpsPort {
		return f, fmt.Errorf("--http-port and --https-port are both %d", f.httpPort)
	}
	var err error
	if f.admin, err = caddycmd.DetermineAdminAPIAddress(f.admin, nil, "", ""); err != nil {
		return f, err
	}
	for _, p := range []*string{&f.out, &f.cert, &f.key, &f.conf} {
		if *p != "" {
			if *p, err = filepath.Abs(*p); err != nil {
				return f, err
			}
		}
	}
	return f, nil
}

// writer is where the files go: nginx's directories, or the same tree
// under --out.
func (f nginxFlags) writer() nginx.Writer {
	if f.out == "" {
		return nginx.Writer{SitesAvailable: defaultSitesAvailable, SitesEnabled: defaultSitesEnabled, SSLDir: defaultSSLDir}
	}
	return nginx.Writer{
		SitesAvailable: filepath.Join(f.out, "sites-available"),
		SitesEnabled:   filepath.Join(f.out, "sites-enabled"),
		SSLDir:         filepath.Join(f.out, "ssl"),
	}
}

func runNginxCommand(ctx context.Context, stdout io.Writer, fl caddycmd.Flags) error {
	f, err := readNginxFlags(fl)
	if err != nil {
		return err
	}
	untested := f.out != "" && f.conf == ""
	o := nginx.Options{Writer: f.writer(), Bin: f.bin, Conf: f.conf, NoTest: untested, NoReload: untested || f.noReload}
	if f.cleanup {
		return nginxCleanup(ctx, stdout, f, o)
	}

	ac := adminClient{addr: f.admin}
	live, err := ac.instances()
	if err != nil {
		return err
	}
	if f.externalIP == "" && f.domain == "" {
		if f.externalIP, f.domain, err = ac.publicAddress(); err != nil {
			return err
		}
	}
	o.Site = nginx.Site{
		ServerName: f.domain,
		ExternalIP: f.externalIP,
		ListenAddr: f.listenAddr,
		ListenIPv6: f.listenAddr == "",
		HTTPPort:   f.httpPort,
		HTTPSPort:  f.httpsPort,
	}
	if f.cert != "" {
		o.Site.CertFile, o.Site.KeyFile = f.cert, f.key
	} else {
		if f.externalIP == "" && f.domain == "" {
			return errors.New("--external-ip or --domain is required to issue the certificate: the running thon has neither external_ip nor domain")
		}
		o.Certificate = ac.certificate
	}
	if f.out != "" {
		for _, d := range []string{o.Writer.SitesAvailable, o.Writer.SitesEnabled} {
			if err := os.MkdirAll(d, 0o755); err != nil {
				return err
			}
		}
	}

	locs := nginx.Locations(live)
	res, err := new(nginx.Applier).Apply(ctx, o, locs)
	fmt.Fprintf(stdout, "%d %s of the thon at %s\n", len(locs), plural(len(locs), "sandbox", "sandboxes"), f.admin)
	for _, p := range res.Result.Written {
		verb := "wrote  "
		if fi, err := os.Lstat(p); err == nil && fi.IsDir() {
			verb = "created"
		}
		fmt.Fprintf(stdout, "%s  %s\n", verb, p)
	}
	for _, p := range res.Result.Removed {
		fmt.Fprintf(stdout, "removed  %s\n", p)
	}
	if err != nil {
		return err
	}
	if res.Result.Unchanged {
		fmt.Fprintf(stdout, "unchanged %s\n", res.Result.ConfigPath)
	}
	reportNginx(stdout, f, res.Tested, res.Reloaded, res.Result.Unchanged)
	return nil
}

// nginxCleanup removes what was written; with --out, also the
// sites-available and sites-enabled directories once they are empty.
func nginxCleanup(ctx context.Context, stdout io.Writer, f nginxFlags, o nginx.Options) error {
	res, err := new(nginx.Applier).Cleanup(ctx, o)
	for _, p := range res.Removed {
		fmt.Fprintf(stdout, "removed  %s\n", p)
	}
	if err != nil {
		return err
	}
	if len(res.Removed) == 0 {
		fmt.Fprintln(stdout, "nothing to remove: no manifest at", o.Writer.SitesAvailable)
	}
	if f.out != "" {
		for _, d := range []string{o.Writer.SitesEnabled, o.Writer.SitesAvailable} {
			entries, err := os.ReadDir(d)
			if err != nil || len(entries) > 0 {
				continue
			}
			if err := os.Remove(d); err == nil {
				fmt.Fprintf(stdout, "removed  %s\n", d)
			}
		}
	}
	if f.out == "" || f.conf != "" {
		reportNginx(stdout, f, res.Tested, res.Reloaded, len(res.Removed) == 0)
	}
	return nil
}

func reportNginx(stdout io.Writer, f nginxFlags, tested, reloaded, unchanged bool) {
	switch {
	case f.out != "" && f.conf == "":
		fmt.Fprintf(stdout, "not tested nor reloaded (--out without --conf): include %s/* in nginx's http block to use it\n", filepath.Join(f.out, "sites-enabled"))
		return
	case tested:
		fmt.Fprintln(stdout, "nginx -t: ok")
	}
	switch {
	case reloaded:
		fmt.Fprintln(stdout, "nginx -s reload: done")
	case f.noReload:
		fmt.Fprintln(stdout, "nginx not reloaded (--no-reload)")
	case unchanged:
		fmt.Fprintln(stdout, "nginx not reloaded: nothing changed")
	}
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

// adminClient talks to the running thon's admin API.
type adminClient struct {
	addr string
}

// do sends a request and decodes the JSON answer into v.
func (c adminClient) do(method, uri string, body, v any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	resp, err := caddycmd.AdminAPIRequest(c.addr, method, uri, nil, rd)
	if err != nil {
		if strings.Contains(err.Error(), "performing request") {
			return fmt.Errorf("thon is not running, or its admin API is not at %s (--admin): %w", c.addr, err)
		}
		return fmt.Errorf("%s %s on the admin API at %s: %w", method, uri, c.addr, err)
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(io.LimitReader(resp.Body, 64<<20)).Decode(v); err != nil {
		return fmt.Errorf("%s %s on the admin API at %s: decoding the answer: %w", method, uri, c.addr, err)
	}
	return nil
}

// instances lists the running thon's sandboxes that are not terminated.
func (c adminClient) instances() ([]sandboxes.Instance, error) {
	const perPage = 500
	var all []sandboxes.Instance
	for page := 1; ; page++ {
		var list struct {
			Instances []sandboxes.Instance `json:"instances"`
			Total     int                  `json:"total"`
		}
		q := url.Values{"per_page": {fmt.Sprint(perPage)}, "page": {fmt.Sprint(page)}}
		if err := c.do(http.MethodGet, "/thon/instances?"+q.Encode(), nil, &list); err != nil {
			return nil, err
		}
		all = append(all, list.Instances...)
		if len(list.Instances) < perPage || len(all) >= list.Total {
			return all, nil
		}
	}
}

// publicAddress is the running thon's external_ip and domain, with
// placeholders resolved in this process's environment.
func (c adminClient) publicAddress() (ip, domain string, err error) {
	var app struct {
		ExternalIP string `json:"external_ip"`
		Domain     string `json:"domain"`
	}
	if err := c.do(http.MethodGet, "/config/apps/thon", nil, &app); err != nil {
		return "", "", err
	}
	return expand(app.ExternalIP, ""), expand(app.Domain, ""), nil
}

// certificate keeps current while it is good under the running thon's
// local CA root (GET /pki/ca/local), else has the thon issue a new one
// (POST /thon/nginx/certificate).
func (c adminClient) certificate(_ context.Context, names []string, current nginx.KeyPair) (nginx.KeyPair, error) {
	var info struct {
		Root string `json:"root_certificate"`
	}
	if err := c.do(http.MethodGet, "/pki/ca/local", nil, &info); err != nil {
		return nginx.KeyPair{}, err
	}
	block, _ := pem.Decode([]byte(info.Root))
	if block == nil {
		return nginx.KeyPair{}, errors.New("the admin API's /pki/ca/local has no root certificate")
	}
	root, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return nginx.KeyPair{}, fmt.Errorf("the local CA's root: %w", err)
	}
	if keepLeaf(current, root, names, time.Now()) {
		current.CA = []byte(info.Root)
		return current, nil
	}
	var issued nginxCertResponse
	if err := c.do(http.MethodPost, nginxCertPath, nginxCertRequest{Names: names}, &issued); err != nil {
		return nginx.KeyPair{}, err
	}
	return nginx.KeyPair{Cert: []byte(issued.Certificate), Key: []byte(issued.Key), CA: []byte(issued.CA)}, nil
}
