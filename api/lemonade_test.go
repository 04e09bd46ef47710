package api

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/thon-dev/thon/internal/lemonadetest"
	"github.com/thon-dev/thon/llm"
)

// lemonadeEnv is a Server whose Lemonade routes talk to a Lemonade test
// server, with Lemonade's config directory in a temporary directory.
func lemonadeEnv(t testing.TB, lopts lemonadetest.Options, key string) (*testEnv, *lemonadetest.Server, string) {
	t.Helper()
	lem := lemonadetest.Start(t, lopts)
	c, err := llm.NewClient(lem.URL(), key, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	e := newTestEnv(t, Options{Lemonade: &LemonadeOptions{Client: c, ConfigDir: dir, Rescaler: new(llm.Rescaler)}})
	return e, lem, dir
}

func TestLemonadeNotConfigured(t *testing.T) {
	e := newTestEnv(t, Options{})
	for _, rt := range e.server.Routes() {
		if !strings.HasPrefix(rt.Pattern, "/api/lemonade/") {
			continue
		}
		e.do(rt.Method, rt.Pattern, "", nil).wantError(t, http.StatusServiceUnavailable, "", "lemonade is not configured")
	}
}

func TestLemonadeHTTPError(t *testing.T) {
	const base = "http://127.0.0.1:13305"
	for i, tc := range []struct {
		err    error
		status int
		msg    string
	}{
		{&llm.UnreachableError{URL: base, Err: errors.New("dial tcp 127.0.0.1:13305: connect: connection refused")},
			503, "lemonade at http://127.0.0.1:13305 is unreachable: dial tcp 127.0.0.1:13305: connect: connection refused"},
		{fmt.Errorf("loading: %w", &llm.LemonadeError{Status: 401, Msg: "Invalid or missing API key"}),
			502, "lemonade at http://127.0.0.1:13305 rejected the API key (401): Invalid or missing API key"},
		{&llm.LemonadeError{Status: 403, Msg: "forbidden"}, 502, "lemonade at http://127.0.0.1:13305 refused the request (403)"},
		{&llm.LemonadeError{Status: 404, Msg: "Model not found: user.x"}, 404, "lemonade at http://127.0.0.1:13305: Model not found: user.x"},
		{&llm.LemonadeError{Status: 400, Msg: "Invalid custom llama-server arguments"}, 400, "Invalid custom llama-server arguments"},
		{&llm.LemonadeError{Status: 500, Msg: "boom"}, 502, "lemonade at http://127.0.0.1:13305 answered with an error (HTTP 500): boom"},
		{&llm.LemonadeError{Status: 200, Msg: `live status "starting"`}, 502, `lemonade at http://127.0.0.1:13305: live status "starting"`},
		{errors.New("lemonade models: reading the answer: unexpected EOF"), 502, "lemonade at http://127.0.0.1:13305: lemonade models: reading the answer"},
		{badRequest("model_name", "model_name: required"), 400, "model_name: required"},
	} {
		var s Server
		status, body := s.errorResponse(lemonadeHTTPError(base, tc.err))
		if status != tc.status || !strings.Contains(body.Error, tc.msg) {
			t.Errorf("case %d: %d %q, want %d containing %q", i, status, body.Error, tc.status, tc.msg)
		}
	}
}

func TestLemonadeReads(t *testing.T) {
	e, lem, _ := lemonadeEnv(t, lemonadetest.Options{APIKey: "k-api"}, "k-api")

	var st lemonadeStatus
	e.do("GET", "/api/lemonade/status", "", nil).wantStatus(t, 200).decode(t, &st)
	if st.Status != llm.StatusUp || st.URL != lem.URL() || st.Version != "10.8.0" || st.LastCheck == nil || st.Watched {
		t.Errorf("status = %+v", st)
	}

	var models lemonadeModelList
	e.do("GET", "/api/lemonade/models", "", nil).wantStatus(t, 200).decode(t, &models)
	var ids []string
	for _, m := range models.Models {
		ids = append(ids, m.ID)
	}
	if !slices.Equal(ids, []string{"gemma-4-31b-it", "harrier-oss-v1-0.6b"}) {
		t.Errorf("models = %v", ids)
	}
	e.do("GET", "/api/lemonade/models?show_all=maybe", "", nil).wantError(t, 400, "show_all", `show_all: "maybe"`)

	// No model is loaded: Lemonade's 404 for slots is passed on.
	e.do("GET", "/api/lemonade/slots", "", nil).wantError(t, 404, "", "No model loaded")

	e.doJSON("POST", "/api/lemonade/load", map[string]any{
		"model_name": "user.gemma-4-31b-it", "ctx_size": 3 * 262144, "llamacpp_args": "--no-webui --ctx-size=4096 -np 3",
	}).wantError(t, 400, "llamacpp_args", `"--ctx-size=4096"`)
	e.doJSON("POST", "/api/lemonade/load", map[string]any{"model_name": "user.nothing"}).wantError(t, 404, "", "Model not found: user.nothing")
	var act lemonadeAction
	e.doJSON("POST", "/api/lemonade/load", map[string]any{
		"model_name": "user.gemma-4-31b-it", "ctx_size": 3 * 262144, "llamacpp_args": "--no-webui --threads 4",
	}).wantStatus(t, 200).decode(t, &act)
	if act.Status != "success" || act.ModelName != "user.gemma-4-31b-it" {
		t.Errorf("load = %+v", act)
	}
	if opts, ok := lem.LoadedOptions("user.gemma-4-31b-it"); !ok || opts["ctx_size"] != float64(3*262144) {
		t.Errorf("loaded options = %v %v", opts, ok)
	}

	var h llm.Health
	e.do("GET", "/api/lemonade/health", "", nil).wantStatus(t, 200).decode(t, &h)
	if len(h.AllModelsLoaded) != 1 || h.AllModelsLoaded[0].ModelName != "user.gemma-4-31b-it" {
		t.Errorf("health = %+v", h)
	}
	var slots struct {
		Slots []map[string]any `json:"slots"`
	}
	e.do("GET", "/api/lemonade/slots", "", nil).wantStatus(t, 200).decode(t, &slots)
	if len(slots.Slots) != 1 || slots.Slots[0]["n_ctx"] != float64(3*262144) || slots.Slots[0]["params"] == nil {
		t.Errorf("slots = %+v", slots)
	}
	var stats llm.Stats
	e.do("GET", "/api/lemonade/stats", "", nil).wantStatus(t, 200).decode(t, &stats)
	if _, ok := stats.Totals["request_count_total"]; !ok || stats.CacheTokens != nil {
		t.Errorf("stats = %+v", stats)
	}
	var info map[string]any
	e.do("GET", "/api/lemonade/system-info", "", nil).wantStatus(t, 200).decode(t, &info)
	if info["Processor"] == nil || info["devices"] == nil {
		t.Errorf("system-info = %v", info)
	}

	e.doJSON("POST", "/api/lemonade/unload", map[string]any{"model_name": "user.harrier-oss-v1-0.6b"}).wantError(t, 404, "", "Model not found")
	e.do("POST", "/api/lemonade/unload", "", nil).wantStatus(t, 200).decode(t, &act)
	if act.Message != "unloaded every model" || len(lem.Loaded()) != 0 {
		t.Errorf("unload = %+v, loaded %v", act, lem.Loaded())
	}
}

func TestLemonadeUnauthorizedAndDown(t *testing.T) {
	e, lem, _ := lemonadeEnv(t, lemonadetest.Options{APIKey: "k-api"}, "wrong")
	var st lemonadeStatus
	e.do("GET", "/api/lemonade/status", "", nil).wantStatus(t, 200).decode(t, &st)
	if st.Status != llm.StatusUnauthorized || !strings.Contains(st.LastError, "401") {
		t.Errorf("status with a wrong key = %+v", st)
	}
	want := "lemonade at " + lem.URL() + " rejected the API key (401)"
	for _, p := range []string{"models", "health", "stats", "slots", "system-info"} {
		e.do("GET", "/api/lemonade/"+p, "", nil).wantError(t, 502, "", want)
	}
	e.doJSON("POST", "/api/lemonade/pull", map[string]any{"model_name": "user.gemma-4-31b-it"}).wantError(t, 502, "", want)

	lem.Close()
	e.do("GET", "/api/lemonade/status", "", nil).wantStatus(t, 200).decode(t, &st)
	if st.Status != llm.StatusDown || st.LastError == "" {
		t.Errorf("status of a stopped server = %+v", st)
	}
	down := "lemonade at " + lem.URL() + " is unreachable"
	e.do("GET", "/api/lemonade/models", "", nil).wantError(t, 503, "", down)
	e.doJSON("POST", "/api/lemonade/load", map[string]any{"model_name": "x"}).wantError(t, 503, "", down)
	req, _ := http.NewRequest("POST", e.http.URL+"/api/lemonade/pull", strings.NewReader(`{"model_name":"x"}`))
	req.Header.Set("Accept", "text/event-stream")
	resp, err := http.DefaultClient.Do(e.authorize(req))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 503 || resp.Header.Get("Content-Type") != "application/json" {
		t.Errorf("streamed pull from a stopped server: %d %s, want a 503 JSON error", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
}

// readPullStream reads a streamed pull answer into events.
func readPullStream(t *testing.T, mode string, body []byte) []pullEvent {
	t.Helper()
	var events []pullEvent
	add := func(data, name string) {
		var ev pullEvent
		if err := json.Unmarshal([]byte(data), &ev); err != nil {
			t.Fatalf("event %q: %v", data, err)
		}
		if name != "" && name != ev.Event {
			t.Errorf("SSE event %q carries %q", name, ev.Event)
		}
		events = append(events, ev)
	}
	if mode == "ndjson" {
		sc := bufio.NewScanner(bytes.NewReader(body))
		for sc.Scan() {
			add(sc.Text(), "")
		}
		return events
	}
	err := llm.ReadSSE(bytes.NewReader(body), func(ev llm.SSEEvent) error {
		add(ev.Data, ev.Event)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return events
}

func TestLemonadePull(t *testing.T) {
	e, lem, _ := lemonadeEnv(t, lemonadetest.Options{PullSteps: 4}, "")
	pull := map[string]any{"model_name": "user.tiny", "checkpoint": "org/tiny-GGUF:Q4_K_M", "recipe": "llamacpp"}

	for _, tc := range []struct{ accept, mode, ct string }{
		{"text/event-stream", "sse", "text/event-stream"},
		{"application/json, application/x-ndjson;q=0.9", "ndjson", "application/x-ndjson"},
	} {
		b, _ := json.Marshal(pull)
		req, _ := http.NewRequest("POST", e.http.URL+"/api/lemonade/pull", bytes.NewReader(b))
		req.Header.Set("Accept", tc.accept)
		rec := httptest.NewRecorder()
		e.server.ServeHTTP(rec, e.authorize(req))
		if rec.Code != 200 || rec.Header().Get("Content-Type") != tc.ct {
			t.Fatalf("%s: %d %s: %s", tc.mode, rec.Code, rec.Header().Get("Content-Type"), rec.Body)
		}
		events := readPullStream(t, tc.mode, rec.Body.Bytes())
		if len(events) != 5 {
			t.Fatalf("%s: %d events, want 4 progress and complete: %+v", tc.mode, len(events), events)
		}
		for i, ev := range events[:4] {
			if ev.Event != "progress" || ev.ModelName != "user.tiny" || ev.PullProgress == nil || ev.Percent != float64(25*(i+1)) {
				t.Errorf("%s: event %d = %+v", tc.mode, i, ev)
			}
		}
		if last := events[4]; last.Event != "complete" || last.PullProgress == nil || !last.Complete || last.Percent != 100 {
			t.Errorf("%s: last event = %+v", tc.mode, last)
		}
	}
	if n := lem.Pulls("user.tiny"); n != 2 {
		t.Errorf("pulls = %d, want 2", n)
	}

	// Without a streaming Accept, the answer waits for the end.
	var act lemonadeAction
	e.doJSON("POST", "/api/lemonade/pull", pull).wantStatus(t, 200).decode(t, &act)
	if act.Status != "success" || lem.Pulls("user.tiny") != 3 {
		t.Errorf("pull = %+v, pulls %d", act, lem.Pulls("user.tiny"))
	}

	// Bad requests never reach Lemonade.
	n := len(lem.Requests())
	e.doJSON("POST", "/api/lemonade/pull", map[string]any{"checkpoint": "a/b"}).wantError(t, 400, "model_name", "model_name: required")
	e.doJSON("POST", "/api/lemonade/pull", map[string]any{"model_name": "tiny", "checkpoint": "a/b"}).wantError(t, 400, "model_name", "user. namespace")
	e.doJSON("POST", "/api/lemonade/pull", map[string]any{"model_name": "user.tiny", "bogus": 1}).wantError(t, 400, "bogus", `unknown field "bogus"`)
	if len(lem.Requests()) != n {
		t.Error("a refused request reached Lemonade")
	}

	// A failure in the middle of a stream is an error event.
	lem.SetFail(lemonadetest.FailPull)
	b, _ := json.Marshal(pull)
	req, _ := http.NewRequest("POST", e.http.URL+"/api/lemonade/pull", bytes.NewReader(b))
	req.Header.Set("Accept", "text/event-stream")
	rec := httptest.NewRecorder()
	e.server.ServeHTTP(rec, e.authorize(req))
	events := readPullStream(t, "sse", rec.Body.Bytes())
	if rec.Code != 200 || len(events) == 0 {
		t.Fatalf("failing stream: %d %s", rec.Code, rec.Body)
	}
	if last := events[len(events)-1]; last.Event != "error" || !strings.Contains(last.Error, "lemonade at "+lem.URL()) || !strings.Contains(last.Error, "connection reset") {
		t.Errorf("last event of a failing pull = %+v", last)
	}
	e.doJSON("POST", "/api/lemonade/pull", pull).wantError(t, 502, "", "Download failed")
}

func TestLemonadeRescale(t *testing.T) {
	e, lem, dir := lemonadeEnv(t, lemonadetest.Options{}, "")
	lemonadetest.WriteConfigDir(t, dir, llm.DefaultSettings(), 3)
	chat, emb := "user.gemma-4-31b-it", "user.harrier-oss-v1-0.6b"
	rec, err := os.ReadFile(filepath.Join(dir, llm.RecipeOptionsFile))
	if err != nil {
		t.Fatal(err)
	}
	var ro map[string]llm.RecipeOptions
	if err := json.Unmarshal(rec, &ro); err != nil {
		t.Fatal(err)
	}
	e.doJSON("POST", "/api/lemonade/load", map[string]any{
		"model_name": chat, "ctx_size": ro[chat].CtxSize, "llamacpp_args": ro[chat].LlamacppArgs,
	}).wantStatus(t, 200)

	// A dry run changes nothing.
	var res llm.RescaleResult
	e.doJSON("POST", "/api/lemonade/rescale", map[string]any{"users": 5, "dry_run": true}).wantStatus(t, 200).decode(t, &res)
	if res.Changed || res.PreviousUsers != 3 || res.Files[2].Status != llm.StepWouldWrite || res.Models[0].Status != llm.StepSkipped {
		t.Errorf("dry run = %+v", res)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, llm.RecipeOptionsFile)); !bytes.Equal(b, rec) {
		t.Error("a dry run wrote recipe_options.json")
	}

	e.doJSON("POST", "/api/lemonade/rescale", map[string]any{"users": 5}).wantStatus(t, 200).decode(t, &res)
	if !res.Changed || res.Users != 5 || res.PreviousUsers != 3 || res.RestartCommand == "" {
		t.Errorf("rescale = %+v", res)
	}
	for _, f := range res.Files {
		want := llm.StepWritten
		if f.Name == llm.UserModelsFile { // the models do not depend on the users
			want = llm.StepUnchanged
		}
		if f.Status != want || f.Path != filepath.Join(dir, f.Name) {
			t.Errorf("file %+v, want %s", f, want)
		}
	}
	if err := json.Unmarshal(mustRead(t, filepath.Join(dir, llm.RecipeOptionsFile)), &ro); err != nil {
		t.Fatal(err)
	}
	if ro[chat].CtxSize != 5*262144 || ro[emb].CtxSize != 5*32768 || !strings.HasSuffix(ro[chat].LlamacppArgs, "-np 5") {
		t.Errorf("recipe options after rescale = %+v", ro)
	}
	var cfg map[string]any
	if err := json.Unmarshal(mustRead(t, filepath.Join(dir, llm.ConfigFile)), &cfg); err != nil {
		t.Fatal(err)
	}
	if cfg["ctx_size"] != float64(5*262144) || cfg["offline"] != true {
		t.Errorf("config.json after rescale = %v", cfg)
	}
	if fi, err := os.Stat(filepath.Join(dir, llm.ConfigFile)); err != nil || fi.Mode().Perm() != 0o640 {
		t.Errorf("config.json mode not kept: %v %v", fi.Mode(), err)
	}
	// The loaded chat model was reloaded with the new options; the
	// embedding model, not loaded, was left alone.
	byName := map[string]llm.RescaleModel{}
	for _, m := range res.Models {
		byName[m.ModelName] = m
	}
	if byName[chat].Status != llm.StepDone || byName[emb].Status != llm.StepSkipped {
		t.Errorf("models = %+v", res.Models)
	}
	if opts, _ := lem.LoadedOptions(chat); opts["ctx_size"] != float64(5*262144) || !strings.HasSuffix(opts["llamacpp_args"].(string), "-np 5") {
		t.Errorf("chat loaded with %v", opts)
	}

	// Again: nothing to do.
	e.doJSON("POST", "/api/lemonade/rescale", map[string]any{"users": 5}).wantStatus(t, 200).decode(t, &res)
	if res.Changed || res.RestartCommand != "" || res.Models[0].Status != llm.StepUnchanged {
		t.Errorf("second rescale = %+v", res)
	}

	// Without users, the database's count; with none, a 400.
	e.doJSON("POST", "/api/lemonade/rescale", nil).wantError(t, 400, "users", "the database has no users")
	e.do("POST", "/api/groups/import", "application/yaml", []byte("groups:\n  alpha: [alice, bob]\n")).wantStatus(t, 200)
	e.do("POST", "/api/lemonade/rescale", "", nil).wantStatus(t, 200).decode(t, &res)
	if res.Users != 2 || res.PreviousUsers != 5 || !res.Changed {
		t.Errorf("rescale from the database = %+v", res)
	}

	e.doJSON("POST", "/api/lemonade/rescale", map[string]any{"users": 0}).wantError(t, 400, "users", "users: must be between 1")
	e.doJSON("POST", "/api/lemonade/rescale", map[string]any{"users": 9000}).wantError(t, 400, "users", "exceeds llama-server's context limit")

	// Lemonade down: the files are written, the reload is skipped.
	lem.Close()
	e.doJSON("POST", "/api/lemonade/rescale", map[string]any{"users": 4}).wantStatus(t, 200).decode(t, &res)
	if !res.Changed || res.Models[0].Status != llm.StepSkipped || !strings.Contains(res.Models[0].Message, "unreachable") {
		t.Errorf("rescale with Lemonade down = %+v", res)
	}
}

func TestLemonadeRescaleConfigDir(t *testing.T) {
	lem := lemonadetest.Start(t, lemonadetest.Options{})
	c, _ := llm.NewClient(lem.URL(), "", "", nil)
	missing := filepath.Join(t.TempDir(), "nope")
	e := newTestEnv(t, Options{Lemonade: &LemonadeOptions{Client: c, ConfigDir: missing, Rescaler: new(llm.Rescaler)}})
	e.doJSON("POST", "/api/lemonade/rescale", map[string]any{"users": 2}).wantError(t, 409, "", "lemonade config dir "+missing+" does not exist")

	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, llm.UserModelsFile), []byte(`{"gemma": [}`), 0o644)
	e = newTestEnv(t, Options{Lemonade: &LemonadeOptions{Client: c, ConfigDir: dir, Rescaler: new(llm.Rescaler)}})
	e.doJSON("POST", "/api/lemonade/rescale", map[string]any{"users": 2}).wantError(t, 409, "", "user_models.json")
}

// TestLemonadeRescaleReloadError: Lemonade refusing thon's key during the
// reload is a 502 that says the files were written already; a Server
// without a Rescaler answers 503.
func TestLemonadeRescaleReloadError(t *testing.T) {
	e, lem, dir := lemonadeEnv(t, lemonadetest.Options{APIKey: "right-key-0123456789abcdef"}, "wrong-key-0123456789abcdef")
	lemonadetest.WriteConfigDir(t, dir, llm.DefaultSettings(), 2)
	e.doJSON("POST", "/api/lemonade/rescale", map[string]any{"users": 3}).wantError(t, http.StatusBadGateway, "",
		"configuration written for 3 users; lemonade at "+lem.URL()+" rejected the API key (401)")
	if b := mustRead(t, filepath.Join(dir, llm.RecipeOptionsFile)); !strings.Contains(string(b), "-np 3") {
		t.Errorf("recipe options not written:\n%s", b)
	}

	c, _ := llm.NewClient(lem.URL(), "", "", nil)
	e = newTestEnv(t, Options{Lemonade: &LemonadeOptions{Client: c, ConfigDir: dir}})
	e.doJSON("POST", "/api/lemonade/rescale", map[string]any{"users": 3}).wantError(t, http.StatusServiceUnavailable, "", "lemonade rescale is not configured")
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestLemonadeOpenAPISchemas(t *testing.T) {
	e := newTestEnv(t, Options{})
	doc, _ := fetchOpenAPI(t, e)
	for name, v := range map[string]any{
		"LemonadeStatus":         lemonadeStatus{},
		"LemonadeModel":          llm.Model{},
		"LemonadeModelList":      lemonadeModelList{},
		"LemonadeLoadedModel":    llm.LoadedModel{},
		"LemonadeHealth":         llm.Health{},
		"LemonadeStats":          llm.Stats{},
		"LemonadeSlot":           llm.Slot{},
		"LemonadeSlotList":       lemonadeSlotList{},
		"LemonadePullRequest":    llm.PullRequest{},
		"LemonadePullEvent":      pullEvent{},
		"LemonadeLoadRequest":    llm.LoadRequest{},
		"LemonadeUnloadRequest":  lemonadeUnloadRequest{},
		"LemonadeAction":         lemonadeAction{},
		"LemonadeRescaleRequest": lemonadeRescaleRequest{},
		"LemonadeRescaleResult":  llm.RescaleResult{},
		"LemonadeRescaleFile":    llm.RescaleFile{},
		"LemonadeRescaleModel":   llm.RescaleModel{},
	} {
		schema, ok := doc.Components.Schemas[name]
		if !ok {
			t.Errorf("components.schemas lacks %s", name)
			continue
		}
		var props []string
		for p := range schema.Properties {
			props = append(props, p)
		}
		sort.Strings(props)
		want := jsonFields(reflect.TypeOf(v))
		if name == "LemonadePullEvent" {
			want = jsonFields(reflect.TypeOf(pullEvent{}))
			want = append(slices.DeleteFunc(want, func(s string) bool { return s == "PullProgress" }), jsonFields(reflect.TypeOf(llm.PullProgress{}))...)
			sort.Strings(want)
		}
		if !slices.Equal(props, want) {
			t.Errorf("schema %s properties = %v, want the JSON fields %v", name, props, want)
		}
	}
}

// lemonadeFuzzTargets are the Lemonade routes with JSON bodies.
var lemonadeFuzzTargets = []string{"pull", "load", "unload", "rescale"}

// FuzzLemonadeBody sends arbitrary bodies to the Lemonade routes, with a
// Lemonade test server behind them and a temporary config directory.
// Property: no panic; no 5xx but Lemonade's own 502/503; every error is a
// JSON {"error": ...} body.
func FuzzLemonadeBody(f *testing.F) {
	e, _, dir := lemonadeEnv(f, lemonadetest.Options{PullSteps: 2}, "")
	cfg, _ := llm.GenerateConfig(llm.DefaultSettings(), 2)
	files, _ := cfg.Files(llm.Files{})
	os.WriteFile(filepath.Join(dir, llm.ConfigFile), files.Config, 0o644)
	os.WriteFile(filepath.Join(dir, llm.UserModelsFile), files.UserModels, 0o644)
	os.WriteFile(filepath.Join(dir, llm.RecipeOptionsFile), files.RecipeOptions, 0o644)
	for i, s := range []string{
		`{"model_name": "user.gemma-4-31b-it"}`,
		`{"model_name": "user.x", "checkpoint": "a/b:Q4", "recipe": "llamacpp", "labels": ["custom"]}`,
		`{"model_name": "x", "checkpoint": "a/b"}`,
		`{"model_name": "user.gemma-4-31b-it", "ctx_size": 1024, "llamacpp_args": "--seed 1"}`,
		`{"model_name": "user.gemma-4-31b-it", "llamacpp_args": "--ctx-size 5"}`,
		`{"model_name": "user.gemma-4-31b-it", "llamacpp_args": "\"unterminated"}`,
		`{"model_name": "user.gemma-4-31b-it", "ctx_size": -5}`,
		`{"users": 3}`, `{"users": 3, "dry_run": true}`, `{"users": 0}`, `{"users": 1e9}`, `{"users": "3"}`,
		`{}`, ``, `[]`, `{"model_name": "\u0000"}`, `null`,
	} {
		f.Add(uint8(i), []byte(s))
	}
	f.Fuzz(func(t *testing.T, target uint8, body []byte) {
		path := "/api/lemonade/" + lemonadeFuzzTargets[int(target)%len(lemonadeFuzzTargets)]
		req := httptest.NewRequest("POST", path, bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		if target&0x80 != 0 {
			req.Header.Set("Accept", "text/event-stream")
		}
		rec := httptest.NewRecorder()
		e.server.ServeHTTP(rec, e.authorize(req))
		if rec.Code >= 500 && rec.Code != 502 && rec.Code != 503 {
			t.Fatalf("%s with %q: status %d: %s", path, body, rec.Code, rec.Body)
		}
		if rec.Code >= 400 {
			var er Error
			if err := json.Unmarshal(rec.Body.Bytes(), &er); err != nil || er.Error == "" {
				t.Fatalf("%s with %q: status %d with a non-JSON error body %q", path, body, rec.Code, rec.Body)
			}
		}
	})
}
