package caddymodule

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/thon-dev/thon/auth"
	"github.com/thon-dev/thon/internal/dockertest"
)

// TestIntegrationInternalCA serves a thon site over HTTPS for a bare IP
// address with Caddy's internal CA: the root downloaded from /ca.crt is
// the one that verifies the site, for HTTP and WebSockets.
func TestIntegrationInternalCA(t *testing.T) {
	dockertest.Client(t)
	dataDir := t.TempDir()
	httpsPort := freePort(t)
	portStart := dockertest.PortRange(50)
	in := startCaddy(t, func(site, admin int) string {
		return fmt.Sprintf(`{
	admin localhost:%d
	persist_config off
	skip_install_trust
	auto_https disable_redirects
	thon {
		data_dir %s
		image %s
		port_range %d %d
		memory 256MiB
	}
}

(routes) {
	thon_ca_cert
	thon_sandbox
	thon_api
}

https://127.0.0.1:%d {
	tls internal
	import routes
}

http://:%d {
	bind 127.0.0.1
	import routes
}
`, admin, dataDir, dockertest.Image, portStart, portStart+49, httpsPort, site)
	})

	resp, err := http.Get(in.base + "/ca.crt")
	if err != nil {
		t.Fatal(err)
	}
	root, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "application/x-x509-ca-cert" ||
		resp.Header.Get("Content-Disposition") != `attachment; filename="rootCA.crt"` {
		t.Fatalf("/ca.crt: %s %v", resp.Status, resp.Header)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(root) {
		t.Fatalf("/ca.crt is not a PEM certificate: %q", root)
	}
	tlsConf := &tls.Config{RootCAs: pool}
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: tlsConf}}

	// Without the root, the certificate is not trusted.
	if _, err := (&http.Client{Timeout: 5 * time.Second}).Get(fmt.Sprintf("https://127.0.0.1:%d/api/health", httpsPort)); err == nil {
		t.Error("the internal CA's certificate verified without its root")
	}
	// With it, the site verifies, for the IP address.
	var health struct{ Status string }
	var lastErr error
	for range 50 { // the certificate is issued as the site starts
		resp, err := client.Get(fmt.Sprintf("https://127.0.0.1:%d/api/health", httpsPort))
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK && strings.Contains(string(b), "ok") {
				lastErr = nil
				health.Status = "ok"
				break
			}
			err = fmt.Errorf("%s %s", resp.Status, b)
		}
		lastErr = err
		time.Sleep(100 * time.Millisecond)
	}
	if lastErr != nil || health.Status != "ok" {
		t.Fatalf("HTTPS with the downloaded root: %v", lastErr)
	}
	// The HTTPS site serves /ca.crt too.
	if resp, err := client.Get(fmt.Sprintf("https://127.0.0.1:%d/ca.crt", httpsPort)); err != nil || resp.StatusCode != http.StatusOK {
		t.Errorf("/ca.crt over HTTPS: %v", err)
	} else {
		resp.Body.Close()
	}

	// A sandbox over wss:// with the same root.
	group, _ := launchGroup(t, "dana")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	dana := participantSession(t, group, "dana") // her own session opens it
	c, _, err := websocket.Dial(ctx, fmt.Sprintf("wss://127.0.0.1:%d/s/%s/dana/ws", httpsPort, group), &websocket.DialOptions{
		HTTPClient: client, HTTPHeader: http.Header{"Cookie": {auth.SessionCookieName + "=" + dana.Cookie}},
	})
	if err != nil {
		t.Fatalf("wss to the sandbox: %v", err)
	}
	defer c.CloseNow()
	echo(t, ctx, c, "over TLS")
}
