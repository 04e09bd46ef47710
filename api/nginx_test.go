package api

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/thon-dev/thon/internal/dockertest"
	"github.com/thon-dev/thon/internal/nginxtest"
	"github.com/thon-dev/thon/sandboxes"
	"github.com/thon-dev/thon/sandboxes/nginx"
)

func TestNginxRoutesNotConfigured(t *testing.T) {
	e := newTestEnv(t, Options{})
	for _, rt := range []struct{ method, path string }{
		{"GET", "/api/nginx/status"},
		{"POST", "/api/nginx/refresh"},
		{"POST", "/api/nginx/cleanup"},
	} {
		r := e.do(rt.method, rt.path, "", nil).wantStatus(t, http.StatusServiceUnavailable)
		var body Error
		r.decode(t, &body)
		if body.Error != "nginx emission is not configured" {
			t.Errorf("%s %s: error %q", rt.method, rt.path, body.Error)
		}
	}
	// A known path with another method is a 405.
	e.do("GET", "/api/nginx/refresh", "", nil).wantStatus(t, http.StatusMethodNotAllowed)
}

func TestNginxSchemasMatchTypes(t *testing.T) {
	e := newTestEnv(t, Options{})
	doc, _ := fetchOpenAPI(t, e)
	for name, v := range map[string]any{
		"NginxStatus":  nginx.Status{},
		"NginxResult":  nginx.Result{},
		"NginxApplied": nginx.Applied{},
		"NginxCleaned": nginx.Cleaned{},
	} {
		schema, ok := doc.Components.Schemas[name]
		if !ok {
			t.Errorf("components.schemas lacks %s", name)
			continue
		}
		props := slices.Collect(maps.Keys(schema.Properties))
		sort.Strings(props)
		if want := jsonFields(reflect.TypeOf(v)); !slices.Equal(props, want) {
			t.Errorf("schema %s properties = %v, want the JSON fields %v", name, props, want)
		}
	}
}

// testCA is a certificate authority made for a test, standing where
// thon's internal CA does.
type testCA struct {
	cert   *x509.Certificate
	key    *ecdsa.PrivateKey
	pem    []byte
	pool   *x509.CertPool
	mu     sync.Mutex
	issued int
	seen   []nginx.KeyPair // the current key pairs it was given
}

func newTestCA(t *testing.T) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "thon test root"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	ca := &testCA{cert: cert, key: key, pem: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pool: x509.NewCertPool()}
	ca.pool.AddCert(cert)
	return ca
}

// certificate issues a leaf for names, or keeps current while it
// verifies for all of them.
func (ca *testCA) certificate(_ context.Context, names []string, current nginx.KeyPair) (nginx.KeyPair, error) {
	ca.mu.Lock()
	defer ca.mu.Unlock()
	ca.seen = append(ca.seen, current)
	if b, _ := pem.Decode(current.Cert); b != nil {
		if c, err := x509.ParseCertificate(b.Bytes); err == nil {
			ok := true
			for _, n := range names {
				if _, err := c.Verify(x509.VerifyOptions{Roots: ca.pool, DNSName: n}); err != nil {
					ok = false
				}
			}
			if ok {
				return current, nil
			}
		}
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nginx.KeyPair{}, err
	}
	ca.issued++
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(int64(ca.issued + 1)),
		Subject:      pkix.Name{CommonName: names[0]},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	for _, n := range names {
		if ip := net.ParseIP(n); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, n)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		return nginx.KeyPair{}, err
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nginx.KeyPair{}, err
	}
	return nginx.KeyPair{
		Cert: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		Key:  pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}),
		CA:   ca.pem,
	}, nil
}

// nginxLayout is a Debian-like nginx directory tree in a temporary
// directory, and a main configuration including its sites-enabled.
type nginxLayout struct {
	root   string // holds etc/ and run/
	writer nginx.Writer
	prefix string // nginx's own files (pid, logs, temp)
	conf   string // the main configuration
}

func newNginxLayout(t *testing.T) nginxLayout {
	t.Helper()
	nginxtest.Require(t)
	root := t.TempDir()
	l := nginxLayout{
		root: root,
		writer: nginx.Writer{
			SitesAvailable: filepath.Join(root, "etc", "sites-available"),
			SitesEnabled:   filepath.Join(root, "etc", "sites-enabled"),
			SSLDir:         filepath.Join(root, "etc", "ssl"),
		},
		prefix: filepath.Join(root, "run"),
	}
	for _, d := range []string{l.writer.SitesAvailable, l.writer.SitesEnabled} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	l.conf = nginxtest.WriteConf(t, l.prefix, nginxtest.IncludeSites(l.writer.SitesEnabled))
	return l
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestNginxRoutes drives the nginx routes over a real sandbox and a real
// nginx in a temporary layout: status, refresh (nginx -t, then nginx
// serving the sandbox), refresh again (nothing changes, the certificate is
// kept), a refresh nginx -t refuses (the previous files come back), and
// cleanup (exactly what was written goes).
func TestNginxRoutes(t *testing.T) {
	l := newNginxLayout(t)
	ca := newTestCA(t)
	ports := nginxtest.FreePorts(t, 2)
	httpPort, httpsPort := ports[0], ports[1]
	opts := &NginxOptions{Options: nginx.Options{
		Writer: l.writer,
		Bin:    nginxtest.Bin,
		Conf:   l.conf,
		Site: nginx.Site{
			ListenAddr: "127.0.0.1",
			HTTPPort:   httpPort,
			HTTPSPort:  httpsPort,
			ExternalIP: "127.0.0.1",
		},
		Certificate: ca.certificate,
		NoReload:    true, // nginx is not running yet
	}, Applier: new(nginx.Applier)}

	dc := dockertest.Client(t)
	st := openStore(t)
	group := dockertest.Name("apinginx-")
	importGroup(t, st, group, []string{"alice", "bob"})
	t.Cleanup(func() { dockertest.RemoveGroup(t, group) })
	portStart := dockertest.PortRange(50)
	m, err := sandboxes.NewManager(st, dc, sandboxes.Config{
		Image:        dockertest.Image,
		PortStart:    portStart,
		PortEnd:      portStart + 49,
		MemoryBytes:  256 << 20,
		NanoCPUs:     5e8,
		PidsLimit:    128,
		ReadyTimeout: time.Minute,
		Logger:       slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	e := newTestEnv(t, Options{Store: st, Sandboxes: m, Nginx: opts})
	etc := filepath.Join(l.root, "etc")
	before := nginxtest.Tree(t, etc)

	var status nginx.Status
	e.do("GET", "/api/nginx/status", "", nil).wantStatus(t, 200).decode(t, &status)
	if !status.Installed || status.Written || status.Enabled || status.Version == "" {
		t.Fatalf("status before any write: %+v", status)
	}

	var alice sandboxes.Instance
	e.doJSON("POST", "/api/instances", map[string]string{"group": group, "user": "alice"}).wantStatus(t, 201).decode(t, &alice)

	var applied nginx.Applied
	e.doJSON("POST", "/api/nginx/refresh", nil).wantStatus(t, 200).decode(t, &applied)
	if applied.Sandboxes != 1 || !applied.Tested || applied.Reloaded || applied.Result.Unchanged {
		t.Fatalf("first refresh: %+v", applied)
	}
	conf, err := os.ReadFile(applied.Result.ConfigPath)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		fmt.Sprintf("location /%d/ {", alice.Port),
		fmt.Sprintf("location /s/%s/alice/ {", group),
		fmt.Sprintf("proxy_pass http://127.0.0.1:%d/;", alice.Port),
		"location = /ca.crt {",
		"listen 127.0.0.1:" + strconv.Itoa(httpsPort) + " ssl;",
	} {
		if !strings.Contains(string(conf), want) {
			t.Errorf("configuration lacks %q:\n%s", want, conf)
		}
	}
	if err := nginx.Test(context.Background(), nginxtest.Bin, l.conf); err != nil {
		t.Fatalf("nginx -t on the written site: %v", err)
	}

	// nginx serves the sandbox from what refresh wrote.
	nginxtest.Start(t, l.prefix, l.conf, httpPort)
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: ca.pool}}}
	t.Cleanup(client.CloseIdleConnections)
	get := func(url string) (int, string) {
		t.Helper()
		resp, err := client.Get(url)
		if err != nil {
			t.Fatalf("GET %s: %v", url, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	for _, url := range []string{
		fmt.Sprintf("http://127.0.0.1:%d/s/%s/alice/some/page", httpPort, group),
		fmt.Sprintf("https://127.0.0.1:%d/%d/some/page", httpsPort, alice.Port),
	} {
		if code, body := get(url); code != 200 || !strings.Contains(body, `data-testid="path">/some/page<`) {
			t.Errorf("GET %s: %d %s", url, code, body)
		}
	}

	// Nothing changed: nothing is written, the certificate is kept, and
	// nginx is not reloaded.
	opts.NoReload = false
	e.doJSON("POST", "/api/nginx/refresh", nil).wantStatus(t, 200).decode(t, &applied)
	if !applied.Result.Unchanged || applied.Reloaded || !applied.Tested || len(applied.Result.Written) != 0 {
		t.Errorf("refresh with nothing new: %+v", applied)
	}
	ca.mu.Lock()
	if ca.issued != 1 || len(ca.seen) != 2 || ca.seen[0].Cert != nil || ca.seen[1].Cert == nil || ca.seen[1].Key == nil || string(ca.seen[1].CA) != string(ca.pem) {
		t.Errorf("certificates issued %d; current pairs given: first %v, second cert %t key %t ca %t",
			ca.issued, ca.seen[0], ca.seen[1].Cert != nil, ca.seen[1].Key != nil, ca.seen[1].CA != nil)
	}
	ca.mu.Unlock()

	// A second sandbox: written, tested, reloaded, served.
	var bob sandboxes.Instance
	e.doJSON("POST", "/api/instances", map[string]string{"group": group, "user": "bob"}).wantStatus(t, 201).decode(t, &bob)
	e.doJSON("POST", "/api/nginx/refresh", nil).wantStatus(t, 200).decode(t, &applied)
	if applied.Sandboxes != 2 || !applied.Tested || !applied.Reloaded || !slices.Equal(applied.Result.Written, []string{applied.Result.ConfigPath}) {
		t.Fatalf("refresh with a new sandbox: %+v", applied)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		code, body := get(fmt.Sprintf("http://127.0.0.1:%d/s/%s/bob/x", httpPort, group))
		if code == 200 && strings.Contains(body, `data-testid="path">/x<`) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("bob not served after the reload: %d %s", code, body)
		}
		time.Sleep(50 * time.Millisecond)
	}

	// nginx -t refuses: the previous files come back, nginx keeps running.
	written := nginxtest.Tree(t, etc)
	bad := filepath.Join(l.prefix, "bad.conf")
	writeFile(t, bad, nginxtest.MainConf(l.prefix, nginxtest.IncludeSites(l.writer.SitesEnabled)+"\n    this_is_not_a_directive on;"))
	opts.Conf = bad
	opts.Site.ServerName = "sandboxes.test" // changes the file and the certificate
	r := e.doJSON("POST", "/api/nginx/refresh", nil).wantStatus(t, http.StatusBadGateway)
	var perr Error
	r.decode(t, &perr)
	if !strings.Contains(perr.Error, "this_is_not_a_directive") || !strings.Contains(perr.Error, "previous files were put back") {
		t.Errorf("refused refresh: %s", perr.Error)
	}
	if after := nginxtest.Tree(t, etc); !maps.Equal(after, written) {
		t.Errorf("a refused refresh changed the files:\n got %v\nwant %v", after, written)
	}
	opts.Conf, opts.Site.ServerName = l.conf, ""
	if code, _ := get(fmt.Sprintf("http://127.0.0.1:%d/s/%s/alice/", httpPort, group)); code != 200 {
		t.Errorf("alice after a refused refresh: %d", code)
	}

	e.do("GET", "/api/nginx/status", "", nil).wantStatus(t, 200).decode(t, &status)
	if !status.Written || !status.Enabled || status.Sandboxes != 2 || len(status.Files) == 0 {
		t.Errorf("status after refresh: %+v", status)
	}

	// Cleanup removes exactly what was written, then reloads nginx, which
	// stops serving the sandboxes.
	var cleaned nginx.Cleaned
	e.doJSON("POST", "/api/nginx/cleanup", nil).wantStatus(t, 200).decode(t, &cleaned)
	if len(cleaned.Removed) == 0 || !cleaned.Tested || !cleaned.Reloaded {
		t.Errorf("cleanup: %+v", cleaned)
	}
	if after := nginxtest.Tree(t, etc); !maps.Equal(after, before) {
		t.Errorf("after cleanup\n got %v\nwant %v", after, before)
	}
	e.doJSON("POST", "/api/nginx/cleanup", nil).wantStatus(t, 200).decode(t, &cleaned)
	if len(cleaned.Removed) != 0 || cleaned.Reloaded {
		t.Errorf("second cleanup: %+v", cleaned)
	}
	e.do("GET", "/api/nginx/status", "", nil).wantStatus(t, 200).decode(t, &status)
	if status.Written || status.Enabled {
		t.Errorf("status after cleanup: %+v", status)
	}
}
