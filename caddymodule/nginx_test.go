package caddymodule

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	"github.com/thon-dev/thon/sandboxes/nginx"
)

func TestParseNginxOption(t *testing.T) {
	for i, tt := range []struct {
		input string
		want  *NginxConfig
		err   string
	}{
		{input: "thon {\n nginx\n}", want: &NginxConfig{}},
		{input: "thon {\n nginx {\n }\n}", want: &NginxConfig{}},
		{input: `thon {
			nginx {
				sites_available /srv/nginx/available
				sites_enabled /srv/nginx/enabled
				ssl_dir /srv/nginx/ssl
				bin /opt/nginx/sbin/nginx
				cert /etc/letsencrypt/live/x/fullchain.pem
				key /etc/letsencrypt/live/x/privkey.pem
				listen_addr 203.0.113.7
				http_port 8080
				https_port 8443
			}
		}`, want: &NginxConfig{
			SitesAvailable: "/srv/nginx/available", SitesEnabled: "/srv/nginx/enabled", SSLDir: "/srv/nginx/ssl",
			Bin: "/opt/nginx/sbin/nginx", Cert: "/etc/letsencrypt/live/x/fullchain.pem", Key: "/etc/letsencrypt/live/x/privkey.pem",
			ListenAddr: "203.0.113.7", HTTPPort: 8080, HTTPSPort: 8443,
		}},
		{input: "thon {\n nginx on\n}", err: "wrong argument count"},
		{input: "thon {\n nginx {\n  bin\n }\n}", err: "nginx bin: expected one value"},
		{input: "thon {\n nginx {\n  bin a b\n }\n}", err: "nginx bin: expected one value"},
		{input: "thon {\n nginx {\n  bin a\n  bin b\n }\n}", err: `nginx option "bin" already specified`},
		{input: "thon {\n nginx {\n  port 80\n }\n}", err: `unrecognized nginx option "port"`},
		{input: "thon {\n nginx {\n  http_port 0\n }\n}", err: `nginx http_port: "0" is not a port`},
		{input: "thon {\n nginx {\n  https_port x\n }\n}", err: `nginx https_port: "x" is not a port`},
		{input: "thon {\n nginx {\n  listen_addr localhost\n }\n}", err: `nginx listen_addr: "localhost" is not an IP address`},
		{input: "thon {\n nginx {\n  cert /a.pem\n }\n}", err: "nginx: cert and key go together"},
		{input: "thon {\n nginx\n nginx\n}", err: `thon option "nginx" already specified`},
	} {
		var a App
		err := a.UnmarshalCaddyfile(caddyfile.NewTestDispenser(tt.input))
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("case %d: error %v, want %q", i, err, tt.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("case %d: %v", i, err)
			continue
		}
		if !reflect.DeepEqual(a.Nginx, tt.want) {
			t.Errorf("case %d: got %+v, want %+v", i, a.Nginx, tt.want)
		}
	}
}

func TestNginxOptions(t *testing.T) {
	t.Setenv("THON_TEST_NGINX_DIR", "/srv/nginx")
	a := &App{shared: new(shared), ExternalIP: "203.0.113.7", Nginx: &NginxConfig{SitesAvailable: "{env.THON_TEST_NGINX_DIR}/available"}}
	o, err := a.nginxOptions()
	if err != nil {
		t.Fatal(err)
	}
	if o.Writer.SitesAvailable != "/srv/nginx/available" || o.Writer.SitesEnabled != defaultSitesEnabled || o.Writer.SSLDir != defaultSSLDir {
		t.Errorf("writer %+v", o.Writer)
	}
	if o.Applier != &a.shared.nginx {
		t.Error("the options do not use the shared applier")
	}
	if o.Certificate == nil || o.Site.CertFile != "" || o.Site.ExternalIP != "203.0.113.7" || !o.Site.ListenIPv6 {
		t.Errorf("site %+v, certificate issued: %t", o.Site, o.Certificate != nil)
	}

	a = &App{shared: new(shared), Domain: "hack.example.com", Nginx: &NginxConfig{Cert: "/le/fullchain.pem", Key: "/le/privkey.pem", ListenAddr: "127.0.0.1"}}
	if o, err = a.nginxOptions(); err != nil {
		t.Fatal(err)
	}
	if o.Certificate != nil || o.Site.CertFile != "/le/fullchain.pem" || o.Site.KeyFile != "/le/privkey.pem" || o.Site.ServerName != "hack.example.com" || o.Site.ListenIPv6 {
		t.Errorf("with given files: %+v", o.Site)
	}

	if o, err := (&App{}).nginxOptions(); o != nil || err != nil {
		t.Errorf("without a block: %v %v", o, err)
	}
	for _, tt := range []struct {
		app  App
		want string
	}{
		{App{shared: new(shared), ExternalIP: "not-an-ip", Nginx: &NginxConfig{}}, "external_ip"},
		{App{shared: new(shared), Domain: "bad domain", Nginx: &NginxConfig{}}, "server_name"},
		{App{shared: new(shared), Nginx: &NginxConfig{Cert: "/a.pem"}}, "cert and key go together"},
		{App{shared: new(shared), Nginx: &NginxConfig{HTTPPort: 8080, HTTPSPort: 8080}}, "https_port"},
	} {
		if _, err := tt.app.nginxOptions(); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%+v: error %v, want %q", tt.app.Nginx, err, tt.want)
		}
	}
}

// testRoot is a root CA made for a test.
func testRoot(t *testing.T, notAfter time.Time) (*x509.Certificate, *ecdsa.PrivateKey) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test root"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: notAfter,
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c, key
}

func TestIssueLeaf(t *testing.T) {
	now := time.Now()
	root, key := testRoot(t, now.Add(10*365*24*time.Hour))
	certPEM, keyPEM, err := issueLeaf(root, key, []string{"203.0.113.7", "hack.example.com"}, now)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := pem.Decode(certPEM)
	leaf, err := x509.ParseCertificate(b.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(root)
	for _, name := range []string{"203.0.113.7", "hack.example.com", "localhost", "127.0.0.1"} {
		if _, err := leaf.Verify(x509.VerifyOptions{Roots: pool, DNSName: name, CurrentTime: now}); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
	if leaf.NotAfter.Sub(now) > 397*24*time.Hour || leaf.PublicKeyAlgorithm != x509.ECDSA || leaf.IsCA {
		t.Errorf("leaf: not after %v, key %v, CA %t", leaf.NotAfter, leaf.PublicKeyAlgorithm, leaf.IsCA)
	}
	kp := nginx.KeyPair{Cert: certPEM, Key: keyPEM}
	if !keepLeaf(kp, root, []string{"203.0.113.7"}, now) {
		t.Error("a fresh certificate is not kept")
	}
	for name, tt := range map[string]struct {
		kp    nginx.KeyPair
		names []string
		now   time.Time
	}{
		"another name":       {kp, []string{"198.51.100.1"}, now},
		"close to its end":   {kp, []string{"203.0.113.7"}, now.Add(380 * 24 * time.Hour)},
		"no key":             {nginx.KeyPair{Cert: certPEM}, []string{"203.0.113.7"}, now},
		"nothing":            {nginx.KeyPair{}, []string{"203.0.113.7"}, now},
		"key of another one": {nginx.KeyPair{Cert: certPEM, Key: mustLeafKey(t, root, key, now)}, []string{"203.0.113.7"}, now},
	} {
		if keepLeaf(tt.kp, root, tt.names, tt.now) {
			t.Errorf("%s: kept", name)
		}
	}
	other, _ := testRoot(t, now.Add(time.Hour*24*3650))
	if keepLeaf(kp, other, []string{"203.0.113.7"}, now) {
		t.Error("kept under another root")
	}

	// A root that ends sooner cuts the leaf's lifetime.
	short, skey := testRoot(t, now.Add(48*time.Hour))
	certPEM, _, err = issueLeaf(short, skey, []string{"hack.example.com"}, now)
	if err != nil {
		t.Fatal(err)
	}
	b, _ = pem.Decode(certPEM)
	leaf, _ = x509.ParseCertificate(b.Bytes)
	if !leaf.NotAfter.Equal(short.NotAfter) {
		t.Errorf("leaf ends %v, root %v", leaf.NotAfter, short.NotAfter)
	}
	if _, _, err := issueLeaf(root, key, []string{"bad name"}, now); err == nil {
		t.Error("a bad name was accepted")
	}
}

func mustLeafKey(t *testing.T, root *x509.Certificate, key *ecdsa.PrivateKey, now time.Time) []byte {
	t.Helper()
	_, k, err := issueLeaf(root, key, []string{"203.0.113.7"}, now)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestCheckCertNames(t *testing.T) {
	for _, tt := range []struct {
		names []string
		ok    bool
	}{
		{[]string{"203.0.113.7"}, true},
		{[]string{"::1", "a.example", "*.sandboxes.example"}, true},
		{[]string{"xn--bcher-kva.example"}, true},
		{nil, false},
		{[]string{""}, false},
		{[]string{"-a.example"}, false},
		{[]string{"a..example"}, false},
		{[]string{"a.example;"}, false},
		{[]string{"*"}, false},
		{[]string{strings.Repeat("a", 64) + ".example"}, false},
		{make([]string, 21), false},
	} {
		if err := checkCertNames(tt.names); (err == nil) != tt.ok {
			t.Errorf("%q: %v", tt.names, err)
		}
	}
}

// FuzzNginxOption: the nginx block parser never panics, and what it
// accepts is a configuration the options accept too, or refuse with a
// field's name.
func FuzzNginxOption(f *testing.F) {
	for _, s := range []string{
		"thon {\n nginx\n}",
		"thon {\n nginx {\n  sites_available /a\n  ssl_dir /c\n  http_port 80\n }\n}",
		"thon {\n nginx {\n  cert /a\n  key /b\n  listen_addr ::1\n }\n}",
		"thon {\n nginx {\n  https_port 99999\n }\n}",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, input string) {
		var a App
		if err := a.UnmarshalCaddyfile(caddyfile.NewTestDispenser(input)); err != nil || a.Nginx == nil {
			return
		}
		if (a.Nginx.Cert == "") != (a.Nginx.Key == "") {
			t.Fatalf("accepted cert %q without key %q", a.Nginx.Cert, a.Nginx.Key)
		}
		for _, p := range []int{a.Nginx.HTTPPort, a.Nginx.HTTPSPort} {
			if p < 0 || p > 65535 {
				t.Fatalf("accepted port %d", p)
			}
		}
		a.shared = new(shared) // as Provision sets it
		_, _ = a.nginxOptions()
	})
}
