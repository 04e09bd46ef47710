package caddymodule

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/caddyserver/caddy/v2"
)

func siteConfig(dataDir, extra string) func(site, admin int) string {
	return func(site, admin int) string {
		return fmt.Sprintf(`{
	admin localhost:%d
	persist_config off
	thon {
		data_dir %s
		%s
	}
}

http://:%d {
	bind 127.0.0.1
	thon_api
	respond "fallthrough" 404
}
`, admin, dataDir, extra, site)
	}
}

type groupList struct {
	Groups []struct {
		Name  string `json:"name"`
		Title string `json:"title"`
		Users []struct {
			Name  string `json:"name"`
			Email string `json:"email"`
		} `json:"users"`
	} `json:"groups"`
}

// TestIntegrationAPIThroughCaddy drives the REST API through a real Caddy
// loaded from a Caddyfile: import the original groups.yaml, read it back
// from the site and from the admin API, and check the error paths.
func TestIntegrationAPIThroughCaddy(t *testing.T) {
	dataDir := t.TempDir()
	in := startCaddy(t, siteConfig(dataDir, ""))

	yml, err := os.ReadFile(filepath.Join("testdata", "groups.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	code, body := in.do(http.MethodPost, in.base+"/api/groups/import", "application/yaml", yml)
	if code != http.StatusOK {
		t.Fatalf("import: %d %s", code, body)
	}

	var gl groupList
	in.getJSON(in.base+"/api/groups", &gl)
	if len(gl.Groups) != 3 || gl.Groups[0].Name != "alpha" || gl.Groups[0].Title != "Team Alpha" {
		t.Fatalf("groups after import: %+v", gl)
	}
	if u := gl.Groups[0].Users; len(u) != 3 || u[0].Name != "alice" || u[0].Email != "alice@example.com" {
		t.Errorf("alpha users: %+v", u)
	}

	// The admin API serves the same data under /thon/.
	var viaAdmin groupList
	in.getJSON(in.admin+"/thon/groups", &viaAdmin)
	a, _ := json.Marshal(gl)
	b, _ := json.Marshal(viaAdmin)
	if string(a) != string(b) {
		t.Errorf("admin /thon/groups differs from /api/groups:\n%s\n%s", b, a)
	}

	// A bad entry is refused with its line, and nothing changes.
	bad := strings.Replace(string(yml), "- eve", "- Eve_2", 1)
	code, body = in.do(http.MethodPost, in.base+"/api/groups/import", "application/yaml", []byte(bad))
	if code != http.StatusBadRequest || !strings.Contains(string(body), "Eve_2") || !strings.Contains(string(body), ":") {
		t.Errorf("bad import: %d %s", code, body)
	}
	var after groupList
	in.getJSON(in.base+"/api/groups", &after)
	c, _ := json.Marshal(after)
	if string(c) != string(a) {
		t.Errorf("a refused import changed the groups:\n%s", c)
	}

	// Conflicts, unknown groups and malformed bodies answer JSON errors.
	for i, tc := range []struct {
		method, path, ctype, body string
		code                      int
	}{
		{"POST", "/api/groups", "application/json", `{"name":"alpha"}`, http.StatusConflict},
		{"POST", "/api/groups", "application/json", `{"name":"Bad Name"}`, http.StatusBadRequest},
		{"POST", "/api/groups", "application/json", `{"name":`, http.StatusBadRequest},
		{"DELETE", "/api/groups/nosuch", "", "", http.StatusNotFound},
		{"GET", "/api/config-files/nosuch", "", "", http.StatusNotFound},
	} {
		code, body := in.do(tc.method, in.base+tc.path, tc.ctype, []byte(tc.body))
		var e struct {
			Error string `json:"error"`
		}
		if code != tc.code || json.Unmarshal(body, &e) != nil || e.Error == "" {
			t.Errorf("case %d: %s %s: %d %s, want %d with a JSON error", i, tc.method, tc.path, code, body, tc.code)
		}
	}

	// Config-file slots round-trip through the site.
	code, body = in.do(http.MethodPut, in.base+"/api/config-files/config_vscode_settings", "application/json",
		[]byte(`{"content": "{\n  // comment\n  \"editor.formatOnSave\": true,\n}\n"}`))
	if code != http.StatusOK {
		t.Fatalf("put config file: %d %s", code, body)
	}
	var cf struct {
		Set     bool   `json:"set"`
		Content string `json:"content"`
	}
	in.getJSON(in.admin+"/thon/config-files/config_vscode_settings", &cf)
	if !cf.Set || !strings.Contains(cf.Content, "formatOnSave") {
		t.Errorf("config file via admin: %+v", cf)
	}

	// Other paths pass through to the next handler.
	if code, body := in.do(http.MethodGet, in.base+"/elsewhere", "", nil); code != http.StatusNotFound || string(body) != "fallthrough" {
		t.Errorf("non-API path: %d %q", code, body)
	}
	// OpenAPI and Swagger UI are served by the site.
	if code, body := in.do(http.MethodGet, in.base+"/openapi.json", "", nil); code != http.StatusOK || !strings.Contains(string(body), `"openapi"`) {
		t.Errorf("/openapi.json: %d", code)
	}
	if code, body := in.do(http.MethodGet, in.base+"/docs/", "", nil); code != http.StatusOK || !strings.Contains(strings.ToLower(string(body)), "swagger") {
		t.Errorf("/docs/: %d", code)
	}
}

// TestIntegrationReloadKeepsState reloads the config while requests are in
// flight: the database is opened once and shared, nothing written before
// the reload is lost, and no request fails.
func TestIntegrationReloadKeepsState(t *testing.T) {
	dataDir := t.TempDir()
	site, admin := freePort(t), freePort(t)
	first := siteConfig(dataDir, "image thon/sandbox-test:latest")(site, admin)
	if err := caddy.Load(adapt(t, first), true); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = caddy.Stop() })
	in := &instance{t: t, base: fmt.Sprintf("http://127.0.0.1:%d", site), admin: fmt.Sprintf("http://localhost:%d", admin)}
	in.waitReady()
	in.token = in.newToken(t)

	if code, body := in.do(http.MethodPost, in.base+"/api/groups", "application/json", []byte(`{"name":"before","title":"Before"}`)); code != http.StatusCreated {
		t.Fatalf("create group: %d %s", code, body)
	}
	storeBefore := activeApp(t).Store()

	// Query the API while reloading. Every answer must be a 200 from a
	// working store. On Linux, Caddy opens a new SO_REUSEPORT socket per
	// config and closes the old one, which can reset a connection still in
	// the old socket's backlog; such transport errors are Caddy's listener
	// handover, so they are counted apart and retried, as clients do.
	var bad, answered, resets atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
			for {
				select {
				case <-stop:
					return
				default:
				}
				req, _ := http.NewRequest(http.MethodGet, in.base+"/api/groups", nil)
				resp, err := client.Do(in.authorize(req))
				if err != nil {
					resets.Add(1)
					continue
				}
				answered.Add(1)
				if resp.StatusCode != http.StatusOK {
					bad.Add(1)
					t.Logf("answer during reload: %s", resp.Status)
				}
				resp.Body.Close()
			}
		}()
	}
	for i := range 3 {
		second := siteConfig(dataDir, fmt.Sprintf("image thon/sandbox-test:v%d", i))(site, admin)
		if err := caddy.Load(adapt(t, second), false); err != nil {
			t.Fatalf("reload %d: %v", i, err)
		}
		in.waitReady()
	}
	close(stop)
	wg.Wait()
	if n := bad.Load(); n != 0 {
		t.Errorf("%d of %d answers during reloads were not 200", n, answered.Load())
	}
	if answered.Load() == 0 {
		t.Error("no request was answered during the reloads")
	}
	t.Logf("%d answers, %d connections reset by the listener handover", answered.Load(), resets.Load())

	app := activeApp(t)
	if app.Image != "thon/sandbox-test:v2" {
		t.Errorf("reload did not apply: image %q", app.Image)
	}
	if app.Store() != storeBefore {
		t.Error("the reload opened the database again instead of sharing it")
	}
	if refs, ok := pool.References(app.dbKey); !ok || refs != 1 {
		t.Errorf("database references after reloads = %d, %v; want 1", refs, ok)
	}
	var gl groupList
	in.getJSON(in.base+"/api/groups", &gl)
	if len(gl.Groups) != 1 || gl.Groups[0].Name != "before" {
		t.Errorf("groups after reload: %+v", gl)
	}
}

// TestIntegrationGroupsFileImportedAtStart checks the groups_file option,
// and that a broken file fails the load with its line and leaves the
// database as it was.
func TestIntegrationGroupsFileImportedAtStart(t *testing.T) {
	dataDir := t.TempDir()
	good, err := filepath.Abs(filepath.Join("testdata", "groups.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	in := startCaddy(t, siteConfig(dataDir, "groups_file "+good))
	var gl groupList
	in.getJSON(in.base+"/api/groups", &gl)
	if len(gl.Groups) != 3 {
		t.Fatalf("groups from groups_file: %+v", gl)
	}
	_ = caddy.Stop()

	broken := filepath.Join(t.TempDir(), "groups.yaml")
	if err := os.WriteFile(broken, []byte("groups:\n  alpha:\n    users:\n      - ok\n      - {email: x@example.com}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	site, admin := freePort(t), freePort(t)
	err = caddy.Load(adapt(t, siteConfig(dataDir, "groups_file "+broken)(site, admin)), true)
	if err == nil || !strings.Contains(err.Error(), "groups.yaml:5") {
		t.Fatalf("loading a broken groups file: %v; want an error naming groups.yaml:5", err)
	}
	in = startCaddy(t, siteConfig(dataDir, ""))
	var again groupList
	in.getJSON(in.base+"/api/groups", &again)
	a, _ := json.Marshal(gl)
	b, _ := json.Marshal(again)
	if string(a) != string(b) {
		t.Errorf("the broken groups file changed the database:\n%s\n%s", b, a)
	}
}

func activeApp(t *testing.T) *App {
	t.Helper()
	app, err := caddy.ActiveContext().App("thon")
	if err != nil {
		t.Fatal(err)
	}
	return app.(*App)
}
