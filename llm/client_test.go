package llm_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/thon-dev/thon/internal/lemonadetest"
	"github.com/thon-dev/thon/llm"
)

func newClient(t *testing.T, url, key, admin string) *llm.Client {
	t.Helper()
	c, err := llm.NewClient(url, key, admin, nil)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestClientAPI(t *testing.T) {
	srv := lemonadetest.Start(t, lemonadetest.Options{APIKey: "api-key-0123456789", AdminKey: "admin-key-0123456789"})
	c := newClient(t, srv.URL()+"/api/v1/", "api-key-0123456789", "admin-key-0123456789")
	if c.BaseURL() != srv.URL() {
		t.Errorf("BaseURL = %q, want %q", c.BaseURL(), srv.URL())
	}
	ctx := context.Background()

	if err := c.Live(ctx); err != nil {
		t.Fatalf("Live: %v", err)
	}
	h, err := c.Health(ctx)
	if err != nil {
		t.Fatalf("Health: %v", err)
	}
	if h.Status != "ok" || h.Version != "10.8.0" || len(h.AllModelsLoaded) != 0 || h.MaxModels["llm"] != 1 {
		t.Errorf("Health = %+v", h)
	}

	models, err := c.Models(ctx, false)
	if err != nil {
		t.Fatalf("Models: %v", err)
	}
	var ids []string
	for _, m := range models {
		ids = append(ids, m.ID)
	}
	if !slices.Equal(ids, []string{"gemma-4-31b-it", "harrier-oss-v1-0.6b"}) {
		t.Errorf("model ids = %v (user models are listed by bare id)", ids)
	}

	if _, err := c.Slots(ctx); err == nil {
		t.Errorf("Slots with nothing loaded: no error")
	}
	if err := c.Load(ctx, llm.LoadRequest{ModelName: "user.gemma-4-31b-it", CtxSize: 3 * 262144, LlamacppArgs: "--no-webui -np 3"}); err != nil {
		t.Fatalf("Load: %v", err)
	}
	h, err = c.Health(ctx)
	if err != nil || len(h.AllModelsLoaded) != 1 || h.ModelLoaded != "user.gemma-4-31b-it" {
		t.Fatalf("Health after load = %+v, %v", h, err)
	}
	var ro map[string]any
	if err := json.Unmarshal(h.AllModelsLoaded[0].RecipeOptions, &ro); err != nil || ro["llamacpp_args"] != "--no-webui -np 3" {
		t.Errorf("recipe_options = %s, %v", h.AllModelsLoaded[0].RecipeOptions, err)
	}
	slots, err := c.Slots(ctx)
	if err != nil || len(slots) != 3 || slots[2].ID != 2 || slots[0].NCtx != 262144 || len(slots[0].Raw) == 0 {
		t.Errorf("Slots = %+v, %v", slots, err)
	}
	if b, err := json.Marshal(slots[0]); err != nil || !strings.Contains(string(b), `"next_token"`) {
		t.Errorf("slot marshals to %s, %v; want the raw object", b, err)
	}

	stats, err := c.Stats(ctx)
	if err != nil {
		t.Fatalf("Stats: %v", err)
	}
	if stats.CacheTokens != nil || stats.Totals["request_count_total"] != 0 {
		t.Errorf("Stats = %+v", stats)
	}
	if _, ok := stats.Totals["input_tokens_total"]; !ok {
		t.Errorf("Stats totals = %v", stats.Totals)
	}

	info, err := c.SystemInfo(ctx)
	if err != nil || !json.Valid(info) || !strings.Contains(string(info), `"devices"`) {
		t.Errorf("SystemInfo = %s, %v", info, err)
	}

	if err := c.Unload(ctx, "user.gemma-4-31b-it"); err != nil {
		t.Errorf("Unload: %v", err)
	}
	if err := c.Unload(ctx, ""); err != nil {
		t.Errorf("Unload all: %v", err)
	}

	// reads use the API key, actions the admin key
	for _, r := range srv.Requests() {
		want := "Bearer api-key-0123456789"
		if strings.HasSuffix(r.Path, "/load") || strings.HasSuffix(r.Path, "/unload") {
			want = "Bearer admin-key-0123456789"
		}
		if r.Path == "/live" {
			want = ""
		}
		if r.Authorization != want {
			t.Errorf("%s %s: Authorization %q, want %q", r.Method, r.Path, r.Authorization, want)
		}
	}
}

func TestClientAuthFailures(t *testing.T) {
	srv := lemonadetest.Start(t, lemonadetest.Options{APIKey: "right-key-0123456789"})
	ctx := context.Background()
	for i, key := range []string{"", "wrong-key"} {
		c := newClient(t, srv.URL(), key, "")
		if err := c.Live(ctx); err != nil {
			t.Errorf("case %d: /live is never gated: %v", i, err)
		}
		_, err := c.Health(ctx)
		if !errors.Is(err, llm.ErrUnauthorized) {
			t.Fatalf("case %d: err = %v, want ErrUnauthorized", i, err)
		}
		var le *llm.LemonadeError
		if !errors.As(err, &le) || le.Status != http.StatusUnauthorized || le.Msg != "Invalid or missing API key" {
			t.Errorf("case %d: err = %#v", i, err)
		}
		if !strings.Contains(err.Error(), "lemonade rejected the API key") {
			t.Errorf("case %d: message %q", i, err)
		}
		if err := c.Load(ctx, llm.LoadRequest{ModelName: "user.gemma-4-31b-it"}); !errors.Is(err, llm.ErrUnauthorized) {
			t.Errorf("case %d: Load err = %v", i, err)
		}
	}
	// the key alone, given as admin key, is used for reads too
	if _, err := newClient(t, srv.URL(), "", "right-key-0123456789").Health(ctx); err != nil {
		t.Errorf("admin key only: %v", err)
	}
}

func TestClientUnknownModel(t *testing.T) {
	srv := lemonadetest.Start(t, lemonadetest.Options{})
	c := newClient(t, srv.URL(), "", "")
	ctx := context.Background()
	for i, call := range []func() error{
		func() error { return c.Load(ctx, llm.LoadRequest{ModelName: "user.nope"}) },
		func() error { return c.Unload(ctx, "user.nope") },
		func() error { return c.Pull(ctx, llm.PullRequest{ModelName: "nope"}, nil) },
	} {
		err := call()
		var le *llm.LemonadeError
		if !errors.As(err, &le) || le.Status != http.StatusNotFound || !strings.Contains(le.Msg, "Model not found: ") {
			t.Errorf("case %d: err = %v, want a 404 LemonadeError naming the model", i, err)
		}
	}
	if err := c.Pull(ctx, llm.PullRequest{ModelName: "bare", Checkpoint: "a/b:Q4"}, nil); err == nil || !strings.Contains(err.Error(), "user. namespace") {
		t.Errorf("pull without user.: err = %v", err)
	}
	if err := c.Load(ctx, llm.LoadRequest{}); err == nil || !strings.Contains(err.Error(), "model_name") {
		t.Errorf("load without name: err = %v", err)
	}
	if err := c.Load(ctx, llm.LoadRequest{ModelName: "user.gemma-4-31b-it", LlamacppArgs: "--ctx-size 5"}); err == nil ||
		!strings.Contains(err.Error(), "Invalid custom llama-server arguments") {
		t.Errorf("reserved argument at load: err = %v", err)
	}
}

func TestClientServerDown(t *testing.T) {
	srv := lemonadetest.New(lemonadetest.Options{})
	url := srv.URL()
	srv.Close()
	c := newClient(t, url, "", "")
	ctx := context.Background()
	for i, call := range []func() error{
		func() error { return c.Live(ctx) },
		func() error { _, err := c.Health(ctx); return err },
		func() error { return c.Load(ctx, llm.LoadRequest{ModelName: "user.x"}) },
		func() error { return c.Pull(ctx, llm.PullRequest{ModelName: "user.x"}, nil) },
	} {
		err := call()
		var ue *llm.UnreachableError
		if !errors.As(err, &ue) || ue.URL != url {
			t.Errorf("case %d: err = %v, want an UnreachableError for %s", i, err, url)
			continue
		}
		if msg := err.Error(); !strings.Contains(msg, "lemonade server at "+url+" is unreachable") {
			t.Errorf("case %d: message %q does not name Lemonade and the URL", i, msg)
		}
	}
}

func TestClientPullProgress(t *testing.T) {
	srv := lemonadetest.Start(t, lemonadetest.Options{NoDefaultModels: true, PullSteps: 4})
	c := newClient(t, srv.URL(), "", "")
	ctx := context.Background()
	var events []llm.PullProgress
	err := c.Pull(ctx, llm.PullRequest{ModelName: "user.tiny", Checkpoint: "org/tiny-GGUF:Q4_K_M", Recipe: "llamacpp", Embedding: true},
		func(p llm.PullProgress) { events = append(events, p) })
	if err != nil {
		t.Fatalf("Pull: %v", err)
	}
	if len(events) != 5 {
		t.Fatalf("got %d events, want 4 progress + complete: %+v", len(events), events)
	}
	for i := 1; i < 4; i++ {
		if events[i].Percent <= events[i-1].Percent || events[i].BytesDownloaded <= events[i-1].BytesDownloaded || events[i].Complete {
			t.Errorf("event %d: %+v after %+v", i, events[i], events[i-1])
		}
	}
	if last := events[4]; !last.Complete || last.Percent != 100 {
		t.Errorf("last event = %+v", last)
	}
	models, err := c.Models(ctx, false)
	if err != nil || len(models) != 1 || models[0].ID != "tiny" || !slices.Contains(models[0].Labels, "embeddings") {
		t.Errorf("models after pull = %+v, %v", models, err)
	}
	if srv.Pulls("user.tiny") != 1 {
		t.Errorf("server saw %d pulls", srv.Pulls("user.tiny"))
	}
	var body map[string]any
	reqs := srv.Requests()
	if err := json.Unmarshal(reqs[len(reqs)-2].Body, &body); err != nil || body["stream"] != true || body["model_name"] != "user.tiny" {
		t.Errorf("pull body = %s", reqs[len(reqs)-2].Body)
	}

	srv.SetFail(lemonadetest.FailPull)
	err = c.Pull(ctx, llm.PullRequest{ModelName: "user.other", Checkpoint: "org/other:Q4", Recipe: "llamacpp"}, nil)
	var le *llm.LemonadeError
	if !errors.As(err, &le) || !strings.Contains(err.Error(), "pull failed") {
		t.Errorf("failing pull: err = %v", err)
	}
}

func TestClientPullIdleTimeout(t *testing.T) {
	srv := lemonadetest.Start(t, lemonadetest.Options{ChunkDelay: 2 * time.Second})
	c := newClient(t, srv.URL(), "", "")
	c.PullIdleTimeout = 50 * time.Millisecond
	err := c.Pull(context.Background(), llm.PullRequest{ModelName: "user.gemma-4-31b-it"}, nil)
	var ue *llm.UnreachableError
	if !errors.As(err, &ue) || !strings.Contains(err.Error(), "no progress") {
		t.Errorf("err = %v, want an idle timeout", err)
	}

	// a cancelled context is reported as such
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := c.Health(ctx); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled Health: err = %v", err)
	}
}

func TestNewClientErrors(t *testing.T) {
	for i, u := range []string{"", "127.0.0.1:13305", "ftp://x", "http://", "http://h/?q=1", "http://u:p@h"} {
		if _, err := llm.NewClient(u, "", "", nil); err == nil || !strings.Contains(err.Error(), "lemonade url") {
			t.Errorf("case %d: %q: err = %v", i, u, err)
		}
	}
	if _, err := llm.NewClient("http://h", "a\nb", "", nil); err == nil {
		t.Errorf("key with a newline accepted")
	}
}

func TestReadSSE(t *testing.T) {
	in := ": ping\n\nevent: progress\ndata: {\"a\":1}\n\ndata: x\ndata: y\nid: 7\n\r\n: c\ndata:z\n\nevent: unfinished\ndata: w\n"
	var got []llm.SSEEvent
	err := llm.ReadSSE(strings.NewReader(in), func(e llm.SSEEvent) error { got = append(got, e); return nil })
	want := []llm.SSEEvent{{Event: "progress", Data: `{"a":1}`}, {Data: "x\ny", ID: "7"}, {Data: "z"}}
	if err != nil || !slices.Equal(got, want) {
		t.Errorf("got %+v, %v; want %+v", got, err, want)
	}
	stop := errors.New("stop here")
	if err := llm.ReadSSE(strings.NewReader("data: 1\n\ndata: 2\n\n"), func(llm.SSEEvent) error { return stop }); err != stop {
		t.Errorf("err = %v, want fn's error", err)
	}
}

func FuzzReadSSE(f *testing.F) {
	f.Add(": ping\n\nevent: progress\ndata: {\"percent\": 40}\n\nevent: complete\ndata: {}\n\n")
	f.Add("data: [DONE]\n\n")
	f.Add("data:\ndata\n\n\r\n")
	f.Fuzz(func(t *testing.T, in string) {
		n := 0
		err := llm.ReadSSE(strings.NewReader(in), func(e llm.SSEEvent) error {
			n++
			if strings.Contains(e.Event, "\n") {
				t.Fatalf("event name with a newline: %q", e.Event)
			}
			return nil
		})
		if err == nil && n > strings.Count(in, "\n")+1 {
			t.Fatalf("%d events from %d lines", n, strings.Count(in, "\n"))
		}
	})
}
