package caddymodule

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/thon-dev/thon/internal/dockertest"
	"github.com/thon-dev/thon/internal/nginxtest"
)

// runNginxCommand runs `thon nginx args...` in this process, as the thon
// binary would, and returns what it printed.
func runNginxCmd(t *testing.T, args ...string) (string, error) {
	t.Helper()
	var out, stderr bytes.Buffer
	err := runCmd(t, "nginx", &out, &stderr, args...)
	return out.String(), err
}

// nginxCaddyfile is a Caddyfile for the nginx tests: thon keeping its
// data in dataDir, with sandboxes of the test image on the 50 ports from
// portStart and thonExtra inside its thon block, and a loopback site
// serving /ca.crt, the sandbox proxy and the API.
func nginxCaddyfile(dataDir string, portStart int, thonExtra string) func(site, admin int) string {
	return func(site, admin int) string {
		return fmt.Sprintf(`{
	admin localhost:%d
	persist_config off
	skip_install_trust
	thon {
		data_dir %s
		image %s
		port_range %d %d
		memory 256MiB
		%s
	}
}

http://:%d {
	bind 127.0.0.1
	thon_ca_cert
	thon_sandbox
	thon_api
}
`, admin, dataDir, dockertest.Image, portStart, portStart+49, thonExtra, site)
	}
}

// thonRootClient fetches thon's root certificate from base/ca.crt and
// returns it with an HTTP client trusting it, whose idle connections close
// when the test ends.
func thonRootClient(t *testing.T, base string) (root []byte, client *http.Client) {
	t.Helper()
	resp, err := http.Get(base + "/ca.crt")
	if err != nil {
		t.Fatal(err)
	}
	root, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(root) {
		t.Fatalf("thon's /ca.crt: %q", root)
	}
	client = &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	t.Cleanup(client.CloseIdleConnections)
	return root, client
}

// waitServed polls url until it answers 200 with want in its body: nginx
// reloads asynchronously.
func waitServed(t *testing.T, client *http.Client, url, want string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		var code int
		var body []byte
		resp, err := client.Get(url)
		if err == nil {
			body, _ = io.ReadAll(resp.Body)
			resp.Body.Close()
			code = resp.StatusCode
			if code == http.StatusOK && strings.Contains(string(body), want) {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("GET %s: %d %v %s", url, code, err, body)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestIntegrationNginxCommand runs `thon nginx --out DIR` against a thon
// running in this process with a real sandbox, checks the output with
// nginx -t, runs nginx on it and sends HTTP and WebSocket traffic through
// it to the sandbox, over HTTP and HTTPS with the certificate thon's CA
// issued; then runs it again (nothing changes) and with --cleanup (exactly
// what was written goes).
func TestIntegrationNginxCommand(t *testing.T) {
	nginxtest.Require(t)
	dockertest.Client(t)
	portStart := dockertest.PortRange(50)
	dataDir := t.TempDir()
	in := startCaddy(t, nginxCaddyfile(dataDir, portStart, "cpus 0.5\n\t\tpids 128"))
	group, inst := launchGroup(t, "alice")
	alice := inst[0]
	admin := strings.TrimPrefix(in.admin, "http://")

	out := t.TempDir()
	before := nginxtest.Tree(t, out)
	conf := nginxtest.StartSites(t, filepath.Join(out, "sites-enabled"))
	httpPort, httpsPort := freePort(t), freePort(t)
	args := []string{"--out", out, "--conf", conf, "--nginx", nginxtest.Bin, "--admin", admin, "--external-ip", "127.0.0.1",
		"--listen-addr", "127.0.0.1", "--http-port", strconv.Itoa(httpPort), "--https-port", strconv.Itoa(httpsPort)}
	stdout, err := runNginxCmd(t, args...)
	if err != nil {
		t.Fatalf("thon nginx: %v\n%s", err, stdout)
	}
	t.Logf("thon nginx %s:\n%s", strings.Join(args, " "), stdout)
	siteFile := filepath.Join(out, "sites-available", "sandbox-thon")
	for _, want := range []string{
		"1 sandbox of the thon at " + admin,
		"created  " + filepath.Join(out, "ssl") + "\n",
		"wrote    " + siteFile + "\n",
		"wrote    " + filepath.Join(out, "sites-enabled", "sandbox-thon") + "\n",
		"wrote    " + filepath.Join(out, "ssl", "thon-ca.crt") + "\n",
		"-key.pem\n",
		"nginx -t: ok\n",
		"nginx -s reload: done\n",
	} {
		if !strings.Contains(stdout, want) {
			t.Errorf("output lacks %q:\n%s", want, stdout)
		}
	}
	site, err := os.ReadFile(siteFile)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		fmt.Sprintf("location /%d/ {", alice.Port),
		fmt.Sprintf("location /s/%s/alice/ {", group),
		fmt.Sprintf("listen 127.0.0.1:%d ssl;", httpsPort),
	} {
		if !strings.Contains(string(site), want) {
			t.Errorf("site lacks %q:\n%s", want, site)
		}
	}
	if b, err := exec.Command(nginxtest.Bin, "-t", "-c", conf).CombinedOutput(); err != nil {
		t.Fatalf("nginx -t: %v\n%s", err, b)
	}

	// The root served at /ca.crt by thon and by nginx is the one that
	// verifies nginx's certificate for the IP address.
	root, client := thonRootClient(t, in.base)
	httpBase := fmt.Sprintf("http://127.0.0.1:%d", httpPort)
	httpsBase := fmt.Sprintf("https://127.0.0.1:%d", httpsPort)
	// The reload is asynchronous: new workers take over shortly.
	waitServed(t, client, httpBase+"/s/"+group+"/alice/", `data-testid="path">/<`)
	for _, url := range []string{
		httpBase + "/s/" + group + "/alice/some/page?x=1",
		fmt.Sprintf("%s/%d/some/page", httpBase, alice.Port),
		httpsBase + "/s/" + group + "/alice/some/page",
		fmt.Sprintf("%s/%d/some/page", httpsBase, alice.Port),
	} {
		resp, err := client.Get(url)
		if err != nil {
			t.Fatalf("GET %s: %v", url, err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), `data-testid="path">/some/page<`) {
			t.Errorf("GET %s: %d %s", url, resp.StatusCode, body)
		}
	}
	resp, err := client.Get(httpsBase + "/ca.crt")
	if err != nil {
		t.Fatal(err)
	}
	served, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !bytes.Equal(served, root) || resp.Header.Get("Content-Type") != "application/x-x509-ca-cert" {
		t.Errorf("nginx /ca.crt: %d %s %q, want thon's root", resp.StatusCode, resp.Header.Get("Content-Type"), served)
	}
	var leaf *x509.Certificate
	if resp.TLS != nil && len(resp.TLS.PeerCertificates) > 0 {
		leaf = resp.TLS.PeerCertificates[0]
	}
	if leaf == nil || leaf.NotAfter.Sub(leaf.NotBefore) > 398*24*time.Hour || leaf.VerifyHostname("localhost") != nil {
		t.Errorf("nginx's certificate: %+v", leaf)
	}

	for _, url := range []string{
		fmt.Sprintf("ws://127.0.0.1:%d/s/%s/alice/ws", httpPort, group),
		fmt.Sprintf("wss://127.0.0.1:%d/%d/ws", httpsPort, alice.Port),
	} {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		c, _, err := websocket.Dial(ctx, url, &websocket.DialOptions{HTTPClient: client})
		if err != nil {
			cancel()
			t.Fatalf("websocket %s: %v", url, err)
		}
		c.SetReadLimit(1 << 20)
		echo(t, ctx, c, "hello through nginx")
		echo(t, ctx, c, strings.Repeat("0123456789abcdef", 4096))
		c.Close(websocket.StatusNormalClosure, "")
		cancel()
	}

	// Again: the same files, the certificate kept.
	written := nginxtest.Tree(t, out)
	stdout, err = runNginxCmd(t, args...)
	if err != nil {
		t.Fatalf("thon nginx again: %v\n%s", err, stdout)
	}
	if !strings.Contains(stdout, "unchanged "+siteFile) || !strings.Contains(stdout, "nginx not reloaded: nothing changed") ||
		strings.Contains(stdout, "wrote") || strings.Contains(stdout, "created") {
		t.Errorf("second run:\n%s", stdout)
	}
	if after := nginxtest.Tree(t, out); !maps.Equal(after, written) {
		t.Errorf("the second run changed the files")
	}

	// The instances the command read are those of the admin API.
	var list struct {
		Total int `json:"total"`
	}
	in.getJSON(in.admin+"/thon/instances", &list)
	if list.Total != 1 {
		t.Errorf("admin lists %d instances", list.Total)
	}

	stdout, err = runNginxCmd(t, "--cleanup", "--out", out, "--conf", conf, "--nginx", nginxtest.Bin)
	if err != nil {
		t.Fatalf("thon nginx --cleanup: %v\n%s", err, stdout)
	}
	t.Logf("thon nginx --cleanup:\n%s", stdout)
	for p := range written {
		if p != out && !strings.Contains(stdout, "removed  "+p+"\n") {
			t.Errorf("cleanup did not report %s:\n%s", p, stdout)
		}
	}
	if after := nginxtest.Tree(t, out); !maps.Equal(after, before) {
		t.Errorf("after cleanup\n got %v\nwant %v", after, before)
	}
	if !strings.Contains(stdout, "nginx -s reload: done") {
		t.Errorf("cleanup did not reload nginx:\n%s", stdout)
	}
	// Reloaded without the site, nginx stops listening on its ports.
	deadline := time.Now().Add(30 * time.Second)
	for {
		c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", httpPort))
		if err != nil {
			break
		}
		c.Close()
		if time.Now().After(deadline) {
			t.Fatal("nginx still serves the site after cleanup")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestNginxCommandErrors(t *testing.T) {
	closed := freePort(t)
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"--admin", fmt.Sprintf("localhost:%d", closed), "--out", t.TempDir()}, "thon is not running, or its admin API is not at localhost:"},
		{[]string{"--cert", "/tmp/x.pem"}, "--cert and --key go together"},
		{[]string{"--external-ip", "not-an-ip"}, `--external-ip: "not-an-ip" is not an IP address`},
		{[]string{"--listen-addr", "::1%eth0"}, "--listen-addr"},
		{[]string{"--http-port", "0"}, "--http-port: 0 is not a port"},
		{[]string{"--http-port", "8080", "--https-port", "8080"}, "--http-port and --https-port are both 8080"},
	} {
		out, err := runNginxCmd(t, tt.args...)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("thon nginx %v: error %v, want %q (output %q)", tt.args, err, tt.want, out)
		}
	}
}

// TestNginxCertAdmin drives the admin route that issues certificates:
// bad requests are refused with the field at fault.
func TestNginxCertAdmin(t *testing.T) {
	for _, tt := range []struct {
		body, want string
	}{
		{`{"names": []}`, "at least one name"},
		{`{"names": ["bad name"]}`, `names[0]: "bad name" is neither`},
		{`{"names": ["a.test"], "x": 1}`, "unknown field"},
		{`{"names": ["a.test"]} {}`, "more than one JSON value"},
		{`[`, "request body"},
	} {
		_, err := decodeCertRequest(strings.NewReader(tt.body))
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: error %v, want %q", tt.body, err, tt.want)
		}
	}
	req, err := decodeCertRequest(strings.NewReader(`{"names": ["203.0.113.7", "*.sandboxes.test"]}`))
	if err != nil || len(req.Names) != 2 {
		t.Errorf("valid request: %+v %v", req, err)
	}
	var a nginxCertAdmin
	err = a.Routes()[0].Handler.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodGet, nginxCertPath, nil))
	if err == nil || !strings.Contains(err.Error(), "use POST") {
		t.Errorf("GET: %v", err)
	}
}

// FuzzNginxCertRequest: decoding never panics, and what it accepts has
// valid names.
func FuzzNginxCertRequest(f *testing.F) {
	for _, s := range []string{`{"names": ["127.0.0.1"]}`, `{"names": ["a.b", "::1"]}`, `{"names": null}`, `{}`, `{"names": ["*."]}`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, body string) {
		req, err := decodeCertRequest(strings.NewReader(body))
		if err != nil {
			return
		}
		if err := checkCertNames(req.Names); err != nil {
			t.Fatalf("accepted %q with bad names: %v", body, err)
		}
		b, _ := json.Marshal(req)
		if _, err := decodeCertRequest(bytes.NewReader(b)); err != nil {
			t.Fatalf("re-encoded %s refused: %v", b, err)
		}
	})
}
