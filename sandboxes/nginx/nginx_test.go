package nginx

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"io"
	"maps"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/thon-dev/thon/internal/nginxtest"
)

// seen is what the upstream reports about a request it received.
type seen struct {
	Name   string      `json:"name"`
	Path   string      `json:"path"`
	Query  string      `json:"query"`
	Host   string      `json:"host"`
	Header http.Header `json:"header"`
}

// newUpstream stands where a sandbox's code-server would: on 127.0.0.1,
// served at the root, it echoes WebSocket messages at /ws and describes
// every other request (path, query, Host, headers) as JSON.
func newUpstream(t *testing.T, name string) (*httptest.Server, int) {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.EqualFold(r.Header.Get("Upgrade"), "websocket") {
			if r.URL.Path != "/ws" {
				http.NotFound(w, r)
				return
			}
			c, err := websocket.Accept(w, r, nil)
			if err != nil {
				return
			}
			defer c.CloseNow()
			c.SetReadLimit(1 << 20)
			for {
				typ, msg, err := c.Read(r.Context())
				if err != nil {
					return
				}
				if err := c.Write(r.Context(), typ, msg); err != nil {
					return
				}
			}
		}
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(seen{Name: name, Path: r.URL.Path, Query: r.URL.RawQuery, Host: r.Host, Header: r.Header})
	}))
	t.Cleanup(srv.Close)
	return srv, srv.Listener.Addr().(*net.TCPAddr).Port
}

// TestNginxProxiesSandboxes writes a site for a sandbox on 127.0.0.1,
// checks it with nginx -t, runs nginx on it and sends HTTP and WebSocket
// traffic through it over HTTP and HTTPS, then reloads with a second
// sandbox and cleans up.
func TestNginxProxiesSandboxes(t *testing.T) {
	nginxtest.Require(t)
	l := newLayout(t)
	before := nginxtest.Tree(t, l.root)

	_, upPort := newUpstream(t, "first")
	pki := newPKI(t, "127.0.0.1")
	ports := nginxtest.FreePorts(t, 2)
	httpPort, httpsPort := ports[0], ports[1]
	site := Site{
		ListenAddr: "127.0.0.1",
		HTTPPort:   httpPort,
		HTTPSPort:  httpsPort,
		ExternalIP: "127.0.0.1",
		Sandboxes:  []Location{{Port: upPort, Group: "team-a", User: "alice"}},
	}
	res, err := l.w.Write(site, pki.certPEM, pki.keyPEM, pki.caPEM)
	if err != nil {
		t.Fatal(err)
	}
	if want := filepath.Join(l.w.SSLDir, "thon-"+hash8("127.0.0.1")+".pem"); res.CertFile != want {
		t.Errorf("cert file %s, want %s", res.CertFile, want)
	}

	nginxDir := filepath.Join(l.root, "nginx")
	conf := nginxtest.WriteConf(t, nginxDir, nginxtest.IncludeSites(l.w.SitesEnabled))
	ctx := context.Background()
	if err := Test(ctx, nginxtest.Bin, conf); err != nil {
		t.Fatalf("nginx -t: %v", err)
	}
	nginxtest.Start(t, nginxDir, conf, httpPort)

	plain := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	secure := &http.Client{
		Transport:     &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pki.pool}},
		CheckRedirect: plain.CheckRedirect,
	}
	t.Cleanup(secure.CloseIdleConnections)
	httpURL := "http://127.0.0.1:" + strconv.Itoa(httpPort)
	httpsURL := "https://127.0.0.1:" + strconv.Itoa(httpsPort)
	up := strconv.Itoa(upPort)

	get := func(t *testing.T, c *http.Client, url, host string) (*http.Response, []byte) {
		t.Helper()
		req, err := http.NewRequest(http.MethodGet, url, nil)
		if err != nil {
			t.Fatal(err)
		}
		if host != "" {
			req.Host = host
		}
		req.Header.Set("Accept-Encoding", "br")
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		return resp, body
	}

	t.Run("http", func(t *testing.T) {
		for _, tt := range []struct {
			name, client, url, host, wantPath, wantQuery, wantProto string
		}{
			{"port path over http", "plain", httpURL + "/" + up + "/some/path?q=1", "sandbox.test", "/some/path", "q=1", "http"},
			{"port path over https", "secure", httpsURL + "/" + up + "/some/path", "", "/some/path", "", "https"},
			{"group path over http", "plain", httpURL + "/s/team-a/alice/x", "", "/x", "", "http"},
			{"group path over https", "secure", httpsURL + "/s/team-a/alice/x?y=2", "hack.test:" + strconv.Itoa(httpsPort), "/x", "y=2", "https"},
		} {
			t.Run(tt.name, func(t *testing.T) {
				c := plain
				if tt.client == "secure" {
					c = secure
				}
				resp, body := get(t, c, tt.url, tt.host)
				if resp.StatusCode != http.StatusOK {
					t.Fatalf("status %d: %s", resp.StatusCode, body)
				}
				var s seen
				if err := json.Unmarshal(body, &s); err != nil {
					t.Fatalf("%v: %s", err, body)
				}
				wantHost := tt.host
				if wantHost == "" {
					wantHost = resp.Request.URL.Host
				}
				if s.Name != "first" || s.Path != tt.wantPath || s.Query != tt.wantQuery || s.Host != wantHost {
					t.Errorf("upstream saw %s %s?%s host %q, want %s?%s host %q", s.Name, s.Path, s.Query, s.Host, tt.wantPath, tt.wantQuery, wantHost)
				}
				for k, v := range map[string]string{
					"X-Forwarded-Proto": tt.wantProto,
					"X-Forwarded-Host":  wantHost,
					"X-Forwarded-For":   "127.0.0.1",
					"X-Real-Ip":         "127.0.0.1",
					"Accept-Encoding":   "gzip",
				} {
					if got := s.Header.Get(k); got != v {
						t.Errorf("upstream saw %s %q, want %q", k, got, v)
					}
				}
				if got := resp.Header.Get("Service-Worker-Allowed"); got != "/" {
					t.Errorf("Service-Worker-Allowed %q", got)
				}
			})
		}
	})

	t.Run("redirects", func(t *testing.T) {
		for path, want := range map[string]string{
			"/" + up:                  "/" + up + "/",
			"/" + up + "?a=b":         "/" + up + "/?a=b",
			"/s/team-a/alice":         "/s/team-a/alice/",
			"/s/team-a/alice?folder=": "/s/team-a/alice/?folder=",
		} {
			resp, _ := get(t, secure, httpsURL+path, "")
			if resp.StatusCode != http.StatusMovedPermanently || resp.Header.Get("Location") != want {
				t.Errorf("%s: %d Location %q, want 301 %q", path, resp.StatusCode, resp.Header.Get("Location"), want)
			}
		}
	})

	t.Run("unknown sandbox", func(t *testing.T) {
		resp, _ := get(t, plain, httpURL+"/s/team-a/bob/", "")
		if resp.StatusCode != http.StatusNotFound {
			t.Errorf("status %d, want 404", resp.StatusCode)
		}
	})

	t.Run("ca.crt", func(t *testing.T) {
		resp, body := get(t, secure, httpsURL+"/ca.crt", "")
		if resp.StatusCode != http.StatusOK || !bytes.Equal(body, pki.caPEM) {
			t.Fatalf("status %d body %q", resp.StatusCode, body)
		}
		if ct := resp.Header.Get("Content-Type"); ct != "application/x-x509-ca-cert" {
			t.Errorf("Content-Type %q", ct)
		}
		if cd := resp.Header.Get("Content-Disposition"); cd != `attachment; filename="rootCA.crt"` {
			t.Errorf("Content-Disposition %q", cd)
		}
	})

	t.Run("websocket", func(t *testing.T) {
		for _, tt := range []struct{ name, url string }{
			{"ws by port", "ws://127.0.0.1:" + strconv.Itoa(httpPort) + "/" + up + "/ws"},
			{"wss by port", "wss://127.0.0.1:" + strconv.Itoa(httpsPort) + "/" + up + "/ws"},
			{"wss by group", "wss://127.0.0.1:" + strconv.Itoa(httpsPort) + "/s/team-a/alice/ws"},
		} {
			t.Run(tt.name, func(t *testing.T) {
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				defer cancel()
				c, resp, err := websocket.Dial(ctx, tt.url, &websocket.DialOptions{HTTPClient: secure})
				if err != nil {
					t.Fatalf("dial: %v (response %v)", err, resp)
				}
				defer c.CloseNow()
				c.SetReadLimit(1 << 20)
				big := strings.Repeat("0123456789abcdef", 4096) // 64 KiB, several frames through nginx
				for _, msg := range []string{"hello", big, "bye"} {
					if err := c.Write(ctx, websocket.MessageText, []byte(msg)); err != nil {
						t.Fatal(err)
					}
					typ, got, err := c.Read(ctx)
					if err != nil {
						t.Fatal(err)
					}
					if typ != websocket.MessageText || string(got) != msg {
						t.Fatalf("echo of %d bytes: got %d bytes", len(msg), len(got))
					}
				}
				c.Close(websocket.StatusNormalClosure, "")
			})
		}
	})

	t.Run("reload adds a sandbox", func(t *testing.T) {
		_, up2Port := newUpstream(t, "second")
		up2 := strconv.Itoa(up2Port)
		if resp, _ := get(t, plain, httpURL+"/"+up2+"/hello", ""); resp.StatusCode != http.StatusNotFound {
			t.Fatalf("second sandbox answered before the reload: %d", resp.StatusCode)
		}
		site2 := site
		site2.Sandboxes = append(site.Sandboxes[:1:1], Location{Port: up2Port, Group: "team-b", User: "bob"})
		res, err := l.w.Write(site2, pki.certPEM, pki.keyPEM, pki.caPEM)
		if err != nil {
			t.Fatal(err)
		}
		if len(res.Written) != 1 || res.Written[0] != res.ConfigPath {
			t.Errorf("written %q, want only the configuration", res.Written)
		}
		if err := Test(ctx, nginxtest.Bin, conf); err != nil {
			t.Fatal(err)
		}
		if err := Reload(ctx, nginxtest.Bin, "-p", nginxDir, "-c", conf); err != nil {
			t.Fatal(err)
		}
		// The reload is asynchronous: new workers take over shortly.
		deadline := time.Now().Add(30 * time.Second)
		for {
			resp, body := get(t, plain, httpURL+"/s/team-b/bob/hello", "")
			var s seen
			if resp.StatusCode == http.StatusOK && json.Unmarshal(body, &s) == nil && s.Name == "second" && s.Path == "/hello" {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("second sandbox not served after reload: %d %s", resp.StatusCode, body)
			}
			time.Sleep(50 * time.Millisecond)
		}
		if resp, _ := get(t, plain, httpURL+"/"+up+"/still", ""); resp.StatusCode != http.StatusOK {
			t.Errorf("first sandbox after reload: %d", resp.StatusCode)
		}
	})

	t.Run("cleanup", func(t *testing.T) {
		if _, err := l.w.Cleanup(); err != nil {
			t.Fatal(err)
		}
		after := nginxtest.Tree(t, l.root)
		for p := range after {
			if strings.HasPrefix(p, nginxDir) {
				delete(after, p) // nginx's own pid, logs and temp files
			}
		}
		if !maps.Equal(after, before) {
			t.Errorf("after cleanup\n got %v\nwant %v", after, before)
		}
	})
}

func TestNginxTestReportsErrors(t *testing.T) {
	nginxtest.Require(t)
	dir := t.TempDir()
	conf := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(conf, []byte("events {}\nhttp { bogus_directive on; }\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	err := Test(context.Background(), nginxtest.Bin, conf)
	if err == nil || !strings.Contains(err.Error(), `unknown directive "bogus_directive"`) {
		t.Errorf("err = %v, want nginx's message", err)
	}
}

func TestReloadWithoutRunningNginx(t *testing.T) {
	nginxtest.Require(t)
	dir := t.TempDir()
	conf := nginxtest.WriteConf(t, dir, nginxtest.IncludeSites(filepath.Join(dir, "none")))
	err := Reload(context.Background(), nginxtest.Bin, "-p", dir, "-c", conf)
	if err == nil || !strings.Contains(err.Error(), filepath.Join(dir, "nginx.pid")) {
		t.Errorf("err = %v, want nginx's message about the missing pid file", err)
	}
}
