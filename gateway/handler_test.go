package gateway

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/thon-dev/thon/internal/lemonadetest"
	"github.com/thon-dev/thon/store"
)

// lemonadeKey is the Lemonade test server's API key in these tests.
const lemonadeKey = "lemon-secret-key"

// testStore opens a SQLite database of the test's own.
func testStore(t testing.TB) *store.Store {
	t.Helper()
	st, err := store.Open(context.Background(), filepath.Join(t.TempDir(), "thon.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// testRuntime returns a runtime (not started) whose keyring holds one
// per-user consumer with lim, and that consumer's key.
func testRuntime(t testing.TB, name string, lim Limits) (*Runtime, string) {
	t.Helper()
	key, err := NewKey()
	if err != nil {
		t.Fatal(err)
	}
	rt := NewRuntime(testStore(t), nil)
	if err := rt.keyring.Set([]Consumer{{
		Name: name, Mode: ModePerUser, Group: "alpha", User: "alice", KeyHash: HashKey(key), Limits: lim,
	}}); err != nil {
		t.Fatal(err)
	}
	return rt, key
}

// setupRuntime returns a runtime (stopped when the test ends) and a
// service over a database whose roster is alpha (alice, bob) and beta
// (carol), with the gateway set up by setup (a JSON SetupRequest), and
// the keys by consumer.
func setupRuntime(t *testing.T, setup string) (*Runtime, *Service, map[string]string) {
	t.Helper()
	st := testStore(t)
	ctx := context.Background()
	if _, err := st.ImportRoster(ctx, store.Roster{Groups: []store.RosterGroup{
		{Name: "alpha", Users: []store.RosterUser{{Name: "alice"}, {Name: "bob"}}},
		{Name: "beta", Users: []store.RosterUser{{Name: "carol"}}},
	}}); err != nil {
		t.Fatal(err)
	}
	rt := NewRuntime(st, nil)
	t.Cleanup(rt.Stop)
	svc := NewService(rt, ServiceOptions{KiloURL: "https://thon.example.org/v1"})
	var req SetupRequest
	if err := json.Unmarshal([]byte(setup), &req); err != nil {
		t.Fatal(err)
	}
	out, err := svc.Setup(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	keys := map[string]string{}
	for _, c := range out.Consumers {
		keys[c.Username] = c.Key
	}
	return rt, svc, keys
}

// useLimiter makes lim the runtime's active limiter.
func (rt *Runtime) useLimiter(lim Limiter) {
	a := &activeLimiter{lim: lim}
	if rl, ok := lim.(*RedisLimiter); ok {
		a.redis, a.cfg = rl, rl.cfg
	}
	rt.active.Store(a)
}

// handlerServer serves one Handler of rt on 127.0.0.1; requests it
// reports not its own get 418.
func handlerServer(t testing.TB, rt *Runtime, o HandlerOptions) *httptest.Server {
	t.Helper()
	if o.APIKey == "" {
		o.APIKey = lemonadeKey
	}
	h, err := rt.NewHandler(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.Close)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !h.Serve(w, r) {
			w.WriteHeader(http.StatusTeapot)
		}
	}))
	t.Cleanup(srv.Close)
	return srv
}

// chatBody is a chat completion request.
func chatBody(stream bool, maxTokens int) string {
	return fmt.Sprintf(`{"model": "user.gemma-4-31b-it", "stream": %t, "max_tokens": %d, "messages": [{"role": "user", "content": "say hello to the hackathon"}]}`, stream, maxTokens)
}

func postTo(ctx context.Context, url, key, body string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url+"/v1/chat/completions", strings.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+key)
	return http.DefaultClient.Do(req)
}

// send posts a chat completion and reads the whole answer.
func send(t *testing.T, url, key, body string) (*http.Response, string) {
	t.Helper()
	resp, err := postTo(context.Background(), url, key, body)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, string(b)
}

// waitFor polls cond until it holds, failing after a generous bound; it
// waits for background work, it does not measure it.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting: %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// freePort returns a loopback port nothing listens on now.
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// TestHandlerRedisSharedLimit runs two gateway handlers, each with its own
// Redis limiter (two thon instances), on one real redis-server: together
// they admit no more than the consumer's limits.
func TestHandlerRedisSharedLimit(t *testing.T) {
	_, prefix := redisForTest(t)
	gate := make(chan struct{})
	lem := lemonadetest.Start(t, lemonadetest.Options{APIKey: lemonadeKey, Gate: gate, CompletionTokens: 2})
	lim := Limits{Concurrency: 2, TokenLimit: 2000, Window: time.Hour}
	rtA, key := testRuntime(t, "alpha-alice", lim)
	rtB := NewRuntime(testStore(t), nil)
	if err := rtB.keyring.Set([]Consumer{{Name: "alpha-alice", Mode: ModePerUser, Group: "alpha", User: "alice", KeyHash: HashKey(key), Limits: lim}}); err != nil {
		t.Fatal(err)
	}
	rlA, rlB := newTestRedisLimiter(t, prefix, nil), newTestRedisLimiter(t, prefix, nil)
	rtA.useLimiter(rlA)
	rtB.useLimiter(rlB)
	srvs := []*httptest.Server{handlerServer(t, rtA, HandlerOptions{Upstream: lem.URL()}), handlerServer(t, rtB, HandlerOptions{Upstream: lem.URL()})}

	// Concurrency: 40 clients, half on each instance, while Lemonade holds
	// the admitted ones.
	const clients = 40
	var admitted, refused, answered atomic.Int64
	var perInstance [2]atomic.Int64
	var wg sync.WaitGroup
	for i := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := postTo(context.Background(), srvs[i%2].URL, key, chatBody(true, 2))
			answered.Add(1)
			if err != nil {
				t.Error(err)
				return
			}
			defer resp.Body.Close()
			switch resp.StatusCode {
			case 200:
				admitted.Add(1)
				perInstance[i%2].Add(1)
				_, _ = io.Copy(io.Discard, resp.Body) // held until the gate opens
			case 429:
				refused.Add(1)
			default:
				b, _ := io.ReadAll(resp.Body)
				t.Errorf("status %d: %s", resp.StatusCode, b)
			}
		}()
	}
	waitFor(t, "every client answered", func() bool { return answered.Load() == clients })
	close(gate)
	wg.Wait()
	_, most := lem.InFlight()
	if admitted.Load() != 2 || refused.Load() != clients-2 || most > 2 {
		t.Errorf("admitted %d (per instance %d, %d), refused %d, at most %d at Lemonade; want 2 admitted in all",
			admitted.Load(), perInstance[0].Load(), perInstance[1].Load(), refused.Load(), most)
	}

	// Tokens: what one instance settles, the other sees.
	before := rlA.RoundTrips()
	resp, _ := send(t, srvs[0].URL, key, chatBody(false, 1000))
	if resp.StatusCode != 200 {
		t.Fatalf("token request: %d", resp.StatusCode)
	}
	if rt := rlA.RoundTrips() - before; rt != 2 {
		t.Errorf("%d Redis round trips for one request, want 2 (acquire, settle)", rt)
	}
	remaining := resp.Header.Get("X-AI-RateLimit-Remaining")
	resp, b := send(t, srvs[1].URL, key, chatBody(false, 1990))
	if resp.StatusCode != 429 || !strings.Contains(b, "Token limit exceeded") {
		t.Errorf("the other instance admitted a request past the shared token limit: %d %s (remaining after the first: %s)", resp.StatusCode, b, remaining)
	}
}

// TestHandlerRedisUnreachable: with Redis down, a fail-closed gateway
// refuses with 503 and a fail-open one lets requests through.
func TestHandlerRedisUnreachable(t *testing.T) {
	lem := lemonadetest.Start(t, lemonadetest.Options{APIKey: lemonadeKey})
	port := freePort(t) // nothing listens there
	for _, open := range []bool{false, true} {
		var logged atomic.Int64
		rl, err := NewRedisLimiter(RedisConfig{
			Addr: fmt.Sprintf("127.0.0.1:%d", port), FailOpen: open, Timeout: 200 * time.Millisecond,
			OnError: func(error) { logged.Add(1) },
		})
		if err != nil {
			t.Fatal(err)
		}
		defer rl.Close()
		rt, key := testRuntime(t, "alpha-alice", Limits{Concurrency: 1})
		rt.useLimiter(rl)
		srv := handlerServer(t, rt, HandlerOptions{Upstream: lem.URL()})
		resp, b := send(t, srv.URL, key, chatBody(false, 3))
		want := http.StatusServiceUnavailable
		if open {
			want = http.StatusOK
		}
		if resp.StatusCode != want || logged.Load() == 0 {
			t.Errorf("fail open %v: %d %s (errors reported: %d)", open, resp.StatusCode, b, logged.Load())
		}
		if !open && (resp.Header.Get("Retry-After") == "" || !strings.Contains(b, "limiter_unavailable")) {
			t.Errorf("fail closed: %v %s", resp.Header, b)
		}
	}
}

func TestHandlerRequests(t *testing.T) {
	lem := lemonadetest.Start(t, lemonadetest.Options{APIKey: lemonadeKey})
	rt, key := testRuntime(t, "alpha-alice", Limits{Concurrency: 4})
	srv := handlerServer(t, rt, HandlerOptions{Upstream: lem.URL(), MaxRequestBody: 2048})
	for i, tc := range []struct {
		method, path, body string
		status             int
		code               string
	}{
		{"POST", "/v1/chat/completions", strings.Repeat("x", 4096), 413, "request_too_large"},
		{"POST", "/v1/chat/completions", `{"model": "m", "messages": [], "messages": []}`, 400, "invalid_request"},
		{"POST", "/v1/chat/completions", `{"model": "m", "stream": "yes", "messages": [{"role": "user", "content": "x"}]}`, 400, "invalid_request"},
		{"POST", "/v1/embeddings", `{"model": "m"}`, 400, "invalid_request"},
		{"DELETE", "/v1/embeddings", ``, 405, "method_not_allowed"},
		{"POST", "/v1/models", ``, 405, "method_not_allowed"},
		{"POST", "/v1/completions", `{}`, 418, ""},
		{"POST", "/v1/chat/completions", `{"model": "nosuch", "messages": [{"role": "user", "content": "x"}]}`, 404, "model_not_found"},
	} {
		req, _ := http.NewRequest(tc.method, srv.URL+tc.path, bytes.NewReader([]byte(tc.body)))
		req.Header.Set("Authorization", "Bearer "+key)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tc.status || (tc.code != "" && !strings.Contains(string(b), `"code":"`+tc.code+`"`)) {
			t.Errorf("case %d: %d %s, want %d %s", i, resp.StatusCode, b, tc.status, tc.code)
		}
	}
	if n, _ := rt.InFlight("alpha-alice"); n != 0 {
		t.Errorf("%d slots held", n)
	}
}

// TestHandlerUpstreamAPIPath: a Lemonade URL given with its API path
// (.../api/v1, as Lemonade's own docs write it) is normalised as the
// Lemonade client does, so requests reach /v1/..., not /api/v1/v1/....
func TestHandlerUpstreamAPIPath(t *testing.T) {
	lem := lemonadetest.Start(t, lemonadetest.Options{APIKey: lemonadeKey})
	rt, key := testRuntime(t, "alpha-alice", Limits{Concurrency: 4})
	for _, suffix := range []string{"/api/v1", "/api/v1/", "/v1"} {
		srv := handlerServer(t, rt, HandlerOptions{Upstream: lem.URL() + suffix})
		resp, body := send(t, srv.URL, key, chatBody(false, 3))
		if resp.StatusCode != 200 || !strings.Contains(body, `"chat.completion"`) {
			t.Errorf("upstream %s: %d %s", suffix, resp.StatusCode, body)
		}
		reqs := lem.Requests()
		if last := reqs[len(reqs)-1]; last.Path != "/v1/chat/completions" {
			t.Errorf("upstream %s: Lemonade got %s %s, want /v1/chat/completions", suffix, last.Method, last.Path)
		}
	}
	if _, err := rt.NewHandler(HandlerOptions{Upstream: "127.0.0.1:13305"}); err == nil || !strings.Contains(err.Error(), "upstream") {
		t.Errorf("an upstream without a scheme: %v", err)
	}
}

// TestRuntimeStartSwapsLimiter: Start puts the config's limiter in place
// for the next requests, while a request admitted before settles on the
// limiter it reserved on; the in-process windows survive the swaps, and a
// Redis limiter of equal settings is made once.
func TestRuntimeStartSwapsLimiter(t *testing.T) {
	_, prefix := redisForTest(t)
	gate := make(chan struct{})
	lem := lemonadetest.Start(t, lemonadetest.Options{APIKey: lemonadeKey, Gate: gate, CompletionTokens: 2})
	rt, svc, keys := setupRuntime(t, `{"concurrency_limit": 1, "token_limit": 100000, "token_window": 3600}`)
	key := keys["alpha-alice"]
	if err := rt.Start(StartOptions{Service: svc}); err != nil {
		t.Fatal(err)
	}
	srv := handlerServer(t, rt, HandlerOptions{Upstream: lem.URL()})
	if st := rt.Status(); st.Policy != "local" || st.Redis != "" {
		t.Errorf("status before a Redis config = %+v", st)
	}

	// A stream admitted by the in-process limiter, held by Lemonade.
	resp, err := postTo(context.Background(), srv.URL, key, chatBody(true, 2))
	if err != nil {
		t.Fatal(err)
	}
	if n, _ := rt.InFlight("alpha-alice"); n != 1 || resp.StatusCode != 200 {
		t.Fatalf("in flight locally = %d, status %d", n, resp.StatusCode)
	}

	redisCfg := RedisConfig{Addr: testRedisAddr, Prefix: prefix, FailOpen: true}
	if err := rt.Start(StartOptions{Redis: &redisCfg}); err != nil {
		t.Fatal(err)
	}
	rl, ok := rt.Limiter().(*RedisLimiter)
	if !ok {
		t.Fatalf("limiter after a Redis config: %T", rt.Limiter())
	}
	if st := rt.Status(); st.Policy != "redis" || st.Redis != testRedisAddr || st.OnRedisError != RedisFailOpen {
		t.Errorf("status with Redis = %+v", st)
	}
	// The next request reserves in Redis: the local slot held by the
	// stream does not count there.
	before := rl.RoundTrips()
	if r, body := send(t, srv.URL, key, chatBody(false, 1)); r.StatusCode != 200 {
		close(gate)
		t.Fatalf("request after the swap: %d %s", r.StatusCode, body)
	}
	if rl.RoundTrips() == before {
		t.Error("a request after the swap did not reserve in Redis")
	}
	close(gate)
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	waitFor(t, "the stream's slot freed on the in-process limiter", func() bool { n, _ := rt.InFlight("alpha-alice"); return n == 0 })
	_, window := rt.InFlight("alpha-alice")
	if window <= 0 {
		t.Errorf("the stream settled %d tokens on the in-process limiter", window)
	}

	// Equal settings: the same limiter. Back to local: the window is kept.
	if err := rt.Start(StartOptions{Redis: &redisCfg}); err != nil {
		t.Fatal(err)
	}
	if rt.Limiter() != rl {
		t.Error("a second config with the same Redis settings got a new limiter")
	}
	if err := rt.Start(StartOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, ok := rt.Limiter().(*LocalLimiter); !ok {
		t.Errorf("limiter after a config without Redis: %T", rt.Limiter())
	}
	if _, after := rt.InFlight("alpha-alice"); after != window {
		t.Errorf("in-process window after the swaps = %d, want %d", after, window)
	}
}

// TestRuntimeRecordsUsage: a started runtime writes the usage of each
// request to the database in batches, per consumer.
func TestRuntimeRecordsUsage(t *testing.T) {
	lem := lemonadetest.Start(t, lemonadetest.Options{APIKey: lemonadeKey, CompletionTokens: 4})
	rt, svc, keys := setupRuntime(t, `{"concurrency_limit": 2}`)
	key := keys["alpha-alice"]
	if err := rt.Start(StartOptions{Service: svc}); err != nil {
		t.Fatal(err)
	}
	srv := handlerServer(t, rt, HandlerOptions{Upstream: lem.URL()})
	for _, stream := range []bool{false, true} {
		if r, body := send(t, srv.URL, key, chatBody(stream, 4)); r.StatusCode != 200 {
			t.Fatalf("stream %v: %d %s", stream, r.StatusCode, body)
		}
	}
	waitFor(t, "usage written", func() bool {
		u, _ := rt.st.UsageSummary(context.Background(), store.UsageFilter{Consumer: "alpha-alice"})
		return len(u) == 1 && u[0].Requests == 2 && u[0].CompletionTokens == 8 && u[0].PromptTokens > 0
	})
}

// FuzzHandlerRequestBody sends any body through the handler to a healthy
// Lemonade: it never panics and never answers a 5xx of its own (502 and
// 503 are Lemonade's or the limiter's unavailability).
func FuzzHandlerRequestBody(f *testing.F) {
	for _, seed := range []string{
		chatBody(false, 3), chatBody(true, 2),
		`{"model": "user.harrier-oss-v1-0.6b", "input": ["a", "b"]}`,
		`{"model": "user.gemma-4-31b-it", "stream": true, "stream_options": {"include_usage": false}, "messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}]}`,
		`{"messages": [{"role": "user", "content": "x"}], "n": 3, "max_completion_tokens": 7}`,
		`{"input": [[1, 2, 3]]}`, `[]`, `{`, ``, `{"stream": true}`,
	} {
		f.Add(false, []byte(seed))
		f.Add(true, []byte(seed))
	}
	lem := lemonadetest.New(lemonadetest.Options{APIKey: lemonadeKey, CompletionTokens: 2})
	defer lem.Close()
	rt, key := testRuntime(f, "alpha-alice", Limits{TokenLimit: MaxTokenLimit, Window: time.Hour})
	srv := handlerServer(f, rt, HandlerOptions{Upstream: lem.URL()})
	f.Fuzz(func(t *testing.T, embeddings bool, body []byte) {
		path := "/v1/chat/completions"
		if embeddings {
			path = "/v1/embeddings"
		}
		req, _ := http.NewRequest(http.MethodPost, srv.URL+path, bytes.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+key)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("request failed (the handler broke off?): %v", err)
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			t.Fatalf("answer broken off: %v", err)
		}
		if resp.StatusCode >= 500 && resp.StatusCode != 502 && resp.StatusCode != 503 {
			t.Fatalf("status %d for %q: %s", resp.StatusCode, body, b)
		}
	})
}
