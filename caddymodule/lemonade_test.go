package caddymodule

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	"github.com/thon-dev/thon/internal/lemonadetest"
	"github.com/thon-dev/thon/llm"
)

func TestLemonadeOption(t *testing.T) {
	for i, tc := range []struct {
		input   string
		want    LemonadeConfig
		wantErr string
	}{
		{
			input: "thon {\n lemonade {\n url http://127.0.0.1:13400\n api_key {env.K}\n admin_api_key adm\n health_interval 1m\n config_dir /srv/lem\n }\n}",
			want:  LemonadeConfig{URL: "http://127.0.0.1:13400", APIKey: "{env.K}", AdminAPIKey: "adm", HealthInterval: caddy.Duration(time.Minute), ConfigDir: "/srv/lem"},
		},
		{input: "thon {\n lemonade\n}", want: LemonadeConfig{}},
		{input: "thon {\n lemonade {\n url\n api_key\n }\n}", want: LemonadeConfig{}},
		{input: "thon {\n lemonade {\n url {env.THON_LEMONADE_URL}\n }\n}", want: LemonadeConfig{URL: "{env.THON_LEMONADE_URL}"}},
		{input: "thon {\n lemonade {\n url ftp://x\n }\n}", wantErr: `lemonade url: "ftp://x" is not an http(s) URL`},
		{input: "thon {\n lemonade {\n health_interval soon\n }\n}", wantErr: `lemonade health_interval: "soon"`},
		{input: "thon {\n lemonade {\n health_interval 1ms\n }\n}", wantErr: "lemonade health_interval: 1ms is shorter than 100ms"},
		{input: "thon {\n lemonade {\n api_key a b\n }\n}", wantErr: "lemonade api_key: expected one value, got 2"},
		{input: "thon {\n lemonade {\n api_key a\n api_key b\n }\n}", wantErr: `lemonade option "api_key" already specified`},
		{input: "thon {\n lemonade {\n model x\n }\n}", wantErr: `unrecognized lemonade option "model", at Testfile:3`},
		{input: "thon {\n lemonade http://x\n}", wantErr: "wrong argument count"},
	} {
		var got App
		err := got.UnmarshalCaddyfile(caddyfile.NewTestDispenser(tc.input))
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("case %d: error %v, want %q", i, err, tc.wantErr)
			}
			continue
		}
		if err != nil {
			t.Errorf("case %d: %v", i, err)
			continue
		}
		if got.Lemonade == nil {
			t.Errorf("case %d: no lemonade config", i)
			continue
		}
		a, _ := json.Marshal(got.Lemonade)
		b, _ := json.Marshal(tc.want)
		if string(a) != string(b) {
			t.Errorf("case %d:\n got %s\nwant %s", i, a, b)
		}
	}
}

func FuzzLemonadeOption(f *testing.F) {
	f.Add("thon {\n lemonade {\n url http://127.0.0.1:13305\n api_key {env.K}\n health_interval 15s\n config_dir /x\n }\n}")
	f.Add("thon {\n lemonade\n}")
	f.Fuzz(func(t *testing.T, input string) {
		var a App
		if err := a.UnmarshalCaddyfile(caddyfile.NewTestDispenser(input)); err != nil || a.Lemonade == nil {
			return
		}
		if hi := time.Duration(a.Lemonade.HealthInterval); hi != 0 && hi < minHealthInterval {
			t.Fatalf("accepted health_interval %v", hi)
		}
		if u := a.Lemonade.URL; u != "" && !strings.Contains(u, "{") {
			if _, err := llm.NewClient(u, "", "", nil); err != nil {
				t.Fatalf("accepted url %q: %v", u, err)
			}
		}
	})
}

func TestLemonadeProvision(t *testing.T) {
	t.Setenv("THON_TEST_LEMONADE_KEY", "secret-key")
	c := &LemonadeConfig{URL: "http://127.0.0.1:13400/api/v1", APIKey: "{env.THON_TEST_LEMONADE_KEY}"}
	if err := c.provision(); err != nil {
		t.Fatal(err)
	}
	if c.client.BaseURL() != "http://127.0.0.1:13400" || c.interval != llm.DefaultWatchInterval || strings.Contains(c.key, "secret-key") {
		t.Errorf("provisioned %q %v %q", c.client.BaseURL(), c.interval, c.key)
	}
	other := &LemonadeConfig{URL: c.URL, APIKey: "another"}
	if err := other.provision(); err != nil || other.key == c.key {
		t.Errorf("a different key gives the same watcher key: %v", err)
	}
	fast := &LemonadeConfig{HealthInterval: caddy.Duration(time.Millisecond)}
	if err := fast.provision(); err == nil || !strings.Contains(err.Error(), "health_interval") {
		t.Errorf("provisioning a 1ms health_interval: %v", err)
	}
	bad := &LemonadeConfig{URL: "{env.THON_TEST_LEMONADE_KEY}"}
	if err := bad.provision(); err == nil || !strings.Contains(err.Error(), "lemonade url") {
		t.Errorf("provisioning a bad url: %v", err)
	}
}

func TestLemonadeWatch(t *testing.T) {
	lem := lemonadetest.Start(t, lemonadetest.Options{})
	c, _ := llm.NewClient(lem.URL(), "", "", nil)
	var lw lemonadeWatch
	lw.set("a", c, time.Hour)
	w := lw.current("a")
	if w == nil || lw.current("b") != nil {
		t.Fatal("current does not match the key")
	}
	done := lw.done
	lw.set("a", c, time.Hour) // the same settings keep the watcher
	if lw.current("a") != w {
		t.Error("the same key replaced the watcher")
	}
	lw.set("b", c, time.Hour)
	select {
	case <-done:
	default:
		t.Error("the replaced watcher still runs")
	}
	if lw.current("b") == nil || lw.current("b") == w {
		t.Error("a new key did not start a new watcher")
	}
	lw.stop()
	lw.stop()
	if lw.current("b") != nil {
		t.Error("stop left a watcher")
	}
}

// TestCaddyfileExampleLemonade checks the example's lemonade block and that
// the example is formatted as `thon fmt` would.
func TestCaddyfileExampleLemonade(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("..", "Caddyfile.example"))
	if err != nil {
		t.Fatal(err)
	}
	if f := caddyfile.Format(b); !bytes.Equal(f, b) {
		t.Errorf("Caddyfile.example is not formatted; thon fmt gives:\n%s", f)
	}
	t.Setenv("THON_LEMONADE_URL", "")
	os.Unsetenv("THON_LEMONADE_URL")
	t.Setenv("THON_LEMONADE_API_KEY", "must-not-show")
	cfg := adapt(t, string(b))
	if bytes.Contains(cfg, []byte("must-not-show")) {
		t.Error("the API key shows in the adapted JSON")
	}
	var parsed struct {
		Apps struct {
			Thon App `json:"thon"`
		} `json:"apps"`
	}
	if err := json.Unmarshal(cfg, &parsed); err != nil {
		t.Fatal(err)
	}
	l := parsed.Apps.Thon.Lemonade
	if l == nil || l.URL != defaultLemonadeURL || l.APIKey != "{env.THON_LEMONADE_API_KEY}" {
		t.Errorf("lemonade = %+v", l)
	}
}

// lemonadeStatusBody is the part of GET /api/lemonade/status the tests read.
type lemonadeStatusBody struct {
	URL          string   `json:"url"`
	Status       string   `json:"status"`
	LastError    string   `json:"last_error"`
	Version      string   `json:"version"`
	LoadedModels []string `json:"loaded_models"`
	Watched      bool     `json:"watched"`
}

// waitStatus polls the status route (without refresh: what the watcher
// found) until it reports want.
func (in *instance) waitStatus(url, want string) lemonadeStatusBody {
	in.t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	var st lemonadeStatusBody
	for {
		in.getJSON(url, &st)
		if st.Status == want {
			return st
		}
		if time.Now().After(deadline) {
			in.t.Fatalf("lemonade status stayed %+v, want %s", st, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func lemonadeBlock(url, key, configDir string) string {
	return fmt.Sprintf("lemonade {\n\t\t\turl %s\n\t\t\tapi_key %s\n\t\t\thealth_interval 100ms\n\t\t\tconfig_dir %s\n\t\t}", url, key, configDir)
}

// TestIntegrationLemonade drives the Lemonade routes through a real Caddy
// whose lemonade block points at a Lemonade test server: the watcher's
// state (up, unauthorized after a reload with a wrong key, down once the
// server stops), the proxied reads, a streamed pull, load, unload and a
// rescale of a config directory.
func TestIntegrationLemonade(t *testing.T) {
	lem := lemonadetest.Start(t, lemonadetest.Options{APIKey: "k-api", PullSteps: 3})
	dataDir, configDir := t.TempDir(), t.TempDir()
	cfg, err := llm.GenerateConfig(llm.DefaultSettings(), 2)
	if err != nil {
		t.Fatal(err)
	}
	files, _ := cfg.Files(llm.Files{})
	for name, b := range map[string][]byte{llm.ConfigFile: files.Config, llm.UserModelsFile: files.UserModels, llm.RecipeOptionsFile: files.RecipeOptions} {
		if err := os.WriteFile(filepath.Join(configDir, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	t.Setenv("THON_TEST_LEMONADE_KEY", "k-api")
	tmpl := siteConfig(dataDir, lemonadeBlock(lem.URL(), "{env.THON_TEST_LEMONADE_KEY}", configDir))
	in := startCaddy(t, tmpl)

	st := in.waitStatus(in.base+"/api/lemonade/status", llm.StatusUp)
	if st.URL != lem.URL() || st.Version != "10.8.0" || !st.Watched {
		t.Errorf("status = %+v", st)
	}
	// The key is resolved at load time and never shows in the config.
	code, body := in.do(http.MethodGet, in.admin+"/config/apps/thon/lemonade", "", nil)
	if code != 200 || bytes.Contains(body, []byte("k-api")) || !bytes.Contains(body, []byte("{env.THON_TEST_LEMONADE_KEY}")) {
		t.Errorf("config of the lemonade block: %d %s", code, body)
	}

	// Reads, proxied.
	var models struct {
		Models []struct{ ID string } `json:"models"`
	}
	in.getJSON(in.base+"/api/lemonade/models", &models)
	if len(models.Models) != 2 {
		t.Errorf("models = %+v", models)
	}
	for _, p := range []string{"health", "stats", "system-info"} {
		if code, body := in.do(http.MethodGet, in.base+"/api/lemonade/"+p, "", nil); code != 200 || !json.Valid(body) {
			t.Errorf("%s: %d %s", p, code, body)
		}
	}
	code, body = in.do(http.MethodGet, in.base+"/api/lemonade/slots", "", nil)
	if code != 404 || !strings.Contains(string(body), "lemonade at "+lem.URL()+": No model loaded") {
		t.Errorf("slots with nothing loaded: %d %s", code, body)
	}

	// A streamed pull through Caddy.
	req, _ := http.NewRequest(http.MethodPost, in.base+"/api/lemonade/pull",
		strings.NewReader(`{"model_name":"user.tiny","checkpoint":"org/tiny-GGUF:Q4_K_M","recipe":"llamacpp"}`))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "text/event-stream")
	resp, err := http.DefaultClient.Do(in.authorize(req))
	if err != nil {
		t.Fatal(err)
	}
	var events []string
	err = llm.ReadSSE(resp.Body, func(ev llm.SSEEvent) error {
		events = append(events, ev.Event)
		return nil
	})
	resp.Body.Close()
	if err != nil || resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("streamed pull: %d %s %v", resp.StatusCode, resp.Header.Get("Content-Type"), err)
	}
	if strings.Join(events, ",") != "progress,progress,progress,complete" || lem.Pulls("user.tiny") != 1 {
		t.Errorf("pull events = %v, pulls %d", events, lem.Pulls("user.tiny"))
	}

	// Load and unload, through the site and the admin API.
	chat := "user.gemma-4-31b-it"
	ro := cfg.RecipeOptions[chat]
	loadBody, _ := json.Marshal(map[string]any{"model_name": chat, "ctx_size": ro.CtxSize, "llamacpp_args": ro.LlamacppArgs})
	if code, body := in.do(http.MethodPost, in.base+"/api/lemonade/load", "application/json", loadBody); code != 200 {
		t.Fatalf("load: %d %s", code, body)
	}
	var slots struct {
		Slots []map[string]any `json:"slots"`
	}
	in.getJSON(in.admin+"/thon/lemonade/slots", &slots)
	if len(slots.Slots) != 2 || slots.Slots[0]["n_ctx"] != float64(262144) {
		t.Errorf("slots after load = %+v", slots)
	}
	st = in.waitStatus(in.base+"/api/lemonade/status?refresh=true", llm.StatusUp)
	if len(st.LoadedModels) != 1 || st.LoadedModels[0] != chat {
		t.Errorf("status after load = %+v", st)
	}

	// Rescale the config directory to 4 users: the files and the loaded
	// model follow.
	var res struct {
		Users, PreviousUsers int
		Changed              bool
		Models               []struct{ ModelName, Status string }
	}
	code, body = in.do(http.MethodPost, in.base+"/api/lemonade/rescale", "application/json", []byte(`{"users": 4}`))
	if code != 200 || json.Unmarshal(body, &res) != nil {
		t.Fatalf("rescale: %d %s", code, body)
	}
	var opts map[string]llm.RecipeOptions
	b, _ := os.ReadFile(filepath.Join(configDir, llm.RecipeOptionsFile))
	if err := json.Unmarshal(b, &opts); err != nil {
		t.Fatal(err)
	}
	if opts[chat].CtxSize != 4*llm.DefaultChatCtxPerUser || !strings.HasSuffix(opts[chat].LlamacppArgs, "-np 4") {
		t.Errorf("recipe options after rescale: %+v", opts[chat])
	}
	if lo, _ := lem.LoadedOptions(chat); lo["ctx_size"] != float64(4*llm.DefaultChatCtxPerUser) {
		t.Errorf("chat model loaded with %v after rescale", lo)
	}
	if code, body := in.do(http.MethodPost, in.base+"/api/lemonade/unload", "", nil); code != 200 || len(lem.Loaded()) != 0 {
		t.Errorf("unload: %d %s, loaded %v", code, body, lem.Loaded())
	}

	// A reload with a wrong key replaces the watcher: unauthorized, and
	// the reads answer 502 naming Lemonade.
	t.Setenv("THON_TEST_LEMONADE_KEY", "wrong")
	if err := caddy.Load(adapt(t, tmpl(in.sitePort(t), in.adminPort(t))), true); err != nil {
		t.Fatal(err)
	}
	st = in.waitStatus(in.base+"/api/lemonade/status", llm.StatusUnauthorized)
	if !strings.Contains(st.LastError, "401") {
		t.Errorf("unauthorized status = %+v", st)
	}
	code, body = in.do(http.MethodGet, in.base+"/api/lemonade/models", "", nil)
	if code != 502 || !strings.Contains(string(body), `"error":"lemonade at `+lem.URL()+` rejected the API key (401)`) {
		t.Errorf("models with a wrong key: %d %s", code, body)
	}

	// The server stops: the watcher finds it down.
	lem.Close()
	in.waitStatus(in.base+"/api/lemonade/status", llm.StatusDown)
	code, body = in.do(http.MethodGet, in.base+"/api/lemonade/health", "", nil)
	if code != 503 || !strings.Contains(string(body), "lemonade at "+lem.URL()+" is unreachable") {
		t.Errorf("health of a stopped server: %d %s", code, body)
	}
}

// TestIntegrationLemonadeNotConfigured: without a lemonade block the
// routes answer 503.
func TestIntegrationLemonadeNotConfigured(t *testing.T) {
	in := startCaddy(t, siteConfig(t.TempDir(), ""))
	code, body := in.do(http.MethodGet, in.base+"/api/lemonade/status", "", nil)
	if code != 503 || !strings.Contains(string(body), "lemonade is not configured") {
		t.Errorf("status without lemonade: %d %s", code, body)
	}
}
