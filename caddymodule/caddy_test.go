package caddymodule

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/certmagic"

	_ "github.com/caddyserver/caddy/v2/modules/standard"
)

// TestMain keeps Caddy's own files (storage, autosave) out of the user's
// home directory.
func TestMain(m *testing.M) {
	// The go commands the tests run (building thon for the tests of two
	// processes) keep this machine's caches and settings, which Go
	// derives from HOME otherwise, and never download modules.
	out, err := exec.Command("go", "env", "GOCACHE", "GOMODCACHE", "GOPATH", "GOENV").Output()
	if err != nil {
		fmt.Fprintln(os.Stderr, "go env:", err)
		os.Exit(1)
	}
	for i, v := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		os.Setenv([]string{"GOCACHE", "GOMODCACHE", "GOPATH", "GOENV"}[i], v)
	}
	os.Setenv("GOPROXY", "off")
	dir, err := os.MkdirTemp("", "thon-caddymodule-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	os.Setenv("HOME", dir)
	os.Setenv("XDG_DATA_HOME", dir+"/data")
	os.Setenv("XDG_CONFIG_HOME", dir+"/config")
	// caddy.DefaultStorage took its path from the real HOME at init,
	// before this ran: point it at the same directory, or every run would
	// share one internal CA under the user's home.
	caddy.DefaultStorage = &certmagic.FileStorage{Path: caddy.AppDataDir()}
	code := m.Run()
	_ = caddy.Stop()
	os.RemoveAll(dir)
	os.Exit(code)
}

// freePort returns a TCP port that is free on 127.0.0.1 now.
func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// instance is a real Caddy running in this process from a Caddyfile.
type instance struct {
	t     *testing.T
	base  string // http://127.0.0.1:<site port>
	admin string // http://localhost:<admin port>
	token string // an organiser API token, sent by do to the site's /api
}

// adapt turns a Caddyfile into Caddy JSON, failing the test on warnings
// about our own directives.
func adapt(t *testing.T, caddyfile string) []byte {
	t.Helper()
	cfg, warns, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(caddyfile), map[string]any{"filename": "Caddyfile"})
	if err != nil {
		t.Fatalf("adapting Caddyfile: %v\n%s", err, caddyfile)
	}
	for _, w := range warns {
		if strings.Contains(w.Message, "thon") {
			t.Errorf("adapt warning: %s", w.String())
		}
	}
	return cfg
}

// startCaddy loads the Caddyfile produced by tmpl (given the site and admin
// ports) into the process's Caddy and stops it when the test ends.
func startCaddy(t *testing.T, tmpl func(sitePort, adminPort int) string) *instance {
	t.Helper()
	site, admin := freePort(t), freePort(t)
	if err := caddy.Load(adapt(t, tmpl(site, admin)), true); err != nil {
		t.Fatalf("loading config: %v", err)
	}
	t.Cleanup(func() {
		if err := caddy.Stop(); err != nil {
			t.Errorf("stopping caddy: %v", err)
		}
	})
	in := &instance{
		t:     t,
		base:  fmt.Sprintf("http://127.0.0.1:%d", site),
		admin: fmt.Sprintf("http://localhost:%d", admin),
	}
	in.waitReady()
	in.token = in.newToken(t)
	return in
}

// tokenCount numbers the tokens newToken makes.
var tokenCount atomic.Int64

// newToken makes an organiser API token through the admin endpoint, as
// `thon token create` does.
func (in *instance) newToken(t *testing.T) string {
	t.Helper()
	name := fmt.Sprintf("test-%d", tokenCount.Add(1))
	resp, err := http.Post(in.admin+"/thon/tokens", "application/json", strings.NewReader(`{"name": "`+name+`"}`))
	if err != nil {
		t.Fatalf("making an API token: %v", err)
	}
	defer resp.Body.Close()
	var made struct {
		Token string `json:"token"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&made); err != nil || resp.StatusCode != http.StatusCreated || made.Token == "" {
		t.Fatalf("making an API token: %d %v", resp.StatusCode, err)
	}
	return made.Token
}

// authorize makes req an organiser's when it goes to the site (the admin
// endpoint needs no credentials).
func (in *instance) authorize(req *http.Request) *http.Request {
	if in.token != "" && strings.HasPrefix(req.URL.String(), in.base+"/") {
		req.Header.Set("Authorization", "Bearer "+in.token)
	}
	return req
}

func (in *instance) waitReady() {
	in.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	var lastStatus string
	for {
		resp, err := http.Get(in.base + "/api/health")
		if resp != nil {
			lastStatus = resp.Status
		}
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		if time.Now().After(deadline) {
			in.t.Fatalf("caddy did not answer /api/health: %v %v", err, lastStatus)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// do sends a request and returns the status and body.
func (in *instance) do(method, url, contentType string, body []byte) (int, []byte) {
	in.t.Helper()
	req, err := http.NewRequest(method, url, bytes.NewReader(body))
	if err != nil {
		in.t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := http.DefaultClient.Do(in.authorize(req))
	if err != nil {
		in.t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		in.t.Fatal(err)
	}
	return resp.StatusCode, b
}

func (in *instance) getJSON(url string, v any) {
	in.t.Helper()
	code, b := in.do(http.MethodGet, url, "", nil)
	if code != http.StatusOK {
		in.t.Fatalf("GET %s: %d %s", url, code, b)
	}
	if err := json.Unmarshal(b, v); err != nil {
		in.t.Fatalf("GET %s: %v: %s", url, err, b)
	}
}

func (in *instance) sitePort(t *testing.T) int {
	var p int
	if _, err := fmt.Sscanf(in.base, "http://127.0.0.1:%d", &p); err != nil {
		t.Fatal(err)
	}
	return p
}

func (in *instance) adminPort(t *testing.T) int {
	var p int
	if _, err := fmt.Sscanf(in.admin, "http://localhost:%d", &p); err != nil {
		t.Fatal(err)
	}
	return p
}
