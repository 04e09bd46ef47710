package caddymodule

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/redis/go-redis/v9"

	"github.com/thon-dev/thon/gateway"
	"github.com/thon-dev/thon/internal/lemonadetest"
)

// handlerServer serves one Gateway handler, set up without Caddy, on
// 127.0.0.1; requests it does not handle get 404 "next".
func handlerServer(t testing.TB, gs *gatewayState, lim gateway.Limiter, upstream string) *httptest.Server {
	t.Helper()
	g := new(Gateway)
	if err := g.setup(gs, lim, upstream, lemonadeKey); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { g.Cleanup() })
	next := caddyhttp.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error {
		http.Error(w, "next", http.StatusNotFound)
		return nil
	})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := g.ServeHTTP(w, r, next); err != nil {
			t.Errorf("ServeHTTP returned %v", err)
		}
	}))
	t.Cleanup(srv.Close)
	return srv
}

// testKeyring returns a state whose keyring holds one per-user consumer
// with lim, and that consumer's key.
func testKeyring(t testing.TB, name string, lim gateway.Limits) (*gatewayState, string) {
	t.Helper()
	key, err := gateway.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	gs := new(gatewayState)
	if err := gs.keyring.Set([]gateway.Consumer{{
		Name: name, Mode: gateway.ModePerUser, Group: "alpha", User: "alice", KeyHash: gateway.HashKey(key), Limits: lim,
	}}); err != nil {
		t.Fatal(err)
	}
	return gs, key
}

// redisPrefix returns a key prefix unique to the test, whose keys are
// deleted at its end; it fails when the test Redis is not there.
func redisPrefix(t *testing.T) string {
	t.Helper()
	c := redis.NewClient(&redis.Options{Addr: "127.0.0.1:6379", DisableIdentity: true})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	if err := c.Ping(ctx).Err(); err != nil {
		c.Close()
		t.Fatalf("this test needs redis-server on 127.0.0.1:6379 (redis-server --bind 127.0.0.1 --daemonize yes): %v", err)
	}
	var id [6]byte
	_, _ = rand.Read(id[:])
	prefix := "thon:test:gateway:" + hex.EncodeToString(id[:]) + ":"
	t.Cleanup(func() {
		ctx := context.Background()
		var keys []string
		it := c.Scan(ctx, 0, prefix+"*", 100).Iterator()
		for it.Next(ctx) {
			keys = append(keys, it.Val())
		}
		if len(keys) > 0 {
			c.Del(ctx, keys...)
		}
		c.Close()
	})
	return prefix
}

func newRedisLimiter(t *testing.T, prefix string) *gateway.RedisLimiter {
	t.Helper()
	l, err := gateway.NewRedisLimiter(gateway.RedisConfig{Addr: "127.0.0.1:6379", Prefix: prefix})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

func postTo(ctx context.Context, url, key, body string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url+"/v1/chat/completions", strings.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+key)
	return http.DefaultClient.Do(req)
}

// TestGatewayRedisSharedLimit runs two gateway handlers, each with its own
// Redis limiter (two thon instances), on one real redis-server: together
// they admit no more than the consumer's limits.
func TestGatewayRedisSharedLimit(t *testing.T) {
	prefix := redisPrefix(t)
	gate := make(chan struct{})
	lem := lemonadetest.Start(t, lemonadetest.Options{APIKey: lemonadeKey, Gate: gate, CompletionTokens: 2})
	lim := gateway.Limits{Concurrency: 2, TokenLimit: 2000, Window: time.Hour}
	gsA, key := testKeyring(t, "alpha-alice", lim)
	gsB := new(gatewayState)
	if err := gsB.keyring.Set([]gateway.Consumer{{Name: "alpha-alice", Mode: gateway.ModePerUser, Group: "alpha", User: "alice", KeyHash: gateway.HashKey(key), Limits: lim}}); err != nil {
		t.Fatal(err)
	}
	rlA, rlB := newRedisLimiter(t, prefix), newRedisLimiter(t, prefix)
	srvs := []*httptest.Server{handlerServer(t, gsA, rlA, lem.URL()), handlerServer(t, gsB, rlB, lem.URL())}

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
	resp, err := postTo(context.Background(), srvs[0].URL, key, chatBody(false, 1000))
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("token request: %d", resp.StatusCode)
	}
	if rt := rlA.RoundTrips() - before; rt != 2 {
		t.Errorf("%d Redis round trips for one request, want 2 (acquire, settle)", rt)
	}
	remaining := resp.Header.Get("X-AI-RateLimit-Remaining")
	resp, err = postTo(context.Background(), srvs[1].URL, key, chatBody(false, 1990))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 429 || !strings.Contains(string(b), "Token limit exceeded") {
		t.Errorf("the other instance admitted a request past the shared token limit: %d %s (remaining after the first: %s)", resp.StatusCode, b, remaining)
	}
}

// TestGatewayRedisUnreachable: with Redis down, a fail-closed gateway
// refuses with 503 and a fail-open one lets requests through.
func TestGatewayRedisUnreachable(t *testing.T) {
	lem := lemonadetest.Start(t, lemonadetest.Options{APIKey: lemonadeKey})
	port := freePort(t) // nothing listens there
	for _, open := range []bool{false, true} {
		var logged atomic.Int64
		rl, err := gateway.NewRedisLimiter(gateway.RedisConfig{
			Addr: fmt.Sprintf("127.0.0.1:%d", port), FailOpen: open, Timeout: 200 * time.Millisecond,
			OnError: func(error) { logged.Add(1) },
		})
		if err != nil {
			t.Fatal(err)
		}
		defer rl.Close()
		gs, key := testKeyring(t, "alpha-alice", gateway.Limits{Concurrency: 1})
		srv := handlerServer(t, gs, rl, lem.URL())
		resp, err := postTo(context.Background(), srv.URL, key, chatBody(false, 3))
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		want := http.StatusServiceUnavailable
		if open {
			want = http.StatusOK
		}
		if resp.StatusCode != want || logged.Load() == 0 {
			t.Errorf("fail open %v: %d %s (errors reported: %d)", open, resp.StatusCode, b, logged.Load())
		}
		if !open && (resp.Header.Get("Retry-After") == "" || !strings.Contains(string(b), "limiter_unavailable")) {
			t.Errorf("fail closed: %v %s", resp.Header, b)
		}
	}
}

func TestGatewayHandlerRequests(t *testing.T) {
	lem := lemonadetest.Start(t, lemonadetest.Options{APIKey: lemonadeKey})
	gs, key := testKeyring(t, "alpha-alice", gateway.Limits{Concurrency: 4})
	g := new(Gateway)
	g.MaxRequestBody = 2048
	if err := g.setup(gs, &gs.local, lem.URL(), lemonadeKey); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_ = g.ServeHTTP(w, r, caddyhttp.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error {
			w.WriteHeader(http.StatusTeapot)
			return nil
		}))
	}))
	defer srv.Close()
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
	if n, _ := gs.local.InFlight("alpha-alice"); n != 0 {
		t.Errorf("%d slots held", n)
	}
}

func TestParseGatewayOption(t *testing.T) {
	for i, tc := range []struct {
		input string
		want  GatewayConfig
		err   string
	}{
		{`gateway`, GatewayConfig{}, ""},
		{"gateway {\n redis 127.0.0.1:6379\n redis_password {env.PW}\n redis_db 2\n on_redis_error open\n kilo_url https://thon.example.org/v1\n}",
			GatewayConfig{Redis: "127.0.0.1:6379", RedisPassword: "{env.PW}", RedisDB: 2, OnRedisError: "open", KiloURL: "https://thon.example.org/v1"}, ""},
		{"gateway {\n redis\n}", GatewayConfig{}, ""},
		{"gateway {\n redis localhost\n}", GatewayConfig{}, "host:port"},
		{"gateway {\n redis_db -1\n}", GatewayConfig{}, "redis_db"},
		{"gateway {\n on_redis_error maybe\n}", GatewayConfig{}, "on_redis_error"},
		{"gateway {\n kilo_url ftp://x\n}", GatewayConfig{}, "kilo_url"},
		{"gateway {\n redis a:1 b:2\n}", GatewayConfig{}, "one value"},
		{"gateway {\n redis a:1\n redis b:2\n}", GatewayConfig{}, "already specified"},
		{"gateway {\n colour blue\n}", GatewayConfig{}, "unrecognized"},
		{"gateway extra", GatewayConfig{}, "wrong argument count"},
	} {
		d := caddyfile.NewTestDispenser(tc.input)
		d.Next()
		got, err := parseGatewayOption(d)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("case %d: err = %v, want %q", i, err, tc.err)
			}
			continue
		}
		if err != nil || *got != tc.want {
			t.Errorf("case %d: %+v, %v", i, got, err)
		}
	}
}

func TestGatewayDirective(t *testing.T) {
	for i, tc := range []struct {
		input string
		want  Gateway
		err   string
	}{
		{`thon_gateway`, Gateway{}, ""},
		{"thon_gateway {\n upstream http://127.0.0.1:13305\n upstream_api_key {env.K}\n max_request_body 8MiB\n default_max_tokens 1024\n}",
			Gateway{Upstream: "http://127.0.0.1:13305", UpstreamAPIKey: "{env.K}", MaxRequestBody: 8 << 20, DefaultMaxTokens: 1024}, ""},
		{"thon_gateway {\n upstream 127.0.0.1:13305\n}", Gateway{}, "http(s) URL"},
		{"thon_gateway {\n max_request_body 10\n}", Gateway{}, "max_request_body"},
		{"thon_gateway {\n default_max_tokens 0\n}", Gateway{}, "default_max_tokens"},
		{"thon_gateway {\n upstream http://a\n upstream http://b\n}", Gateway{}, "already specified"},
		{"thon_gateway {\n nope\n}", Gateway{}, "unrecognized"},
		{"thon_gateway now", Gateway{}, "wrong argument count"},
	} {
		var g Gateway
		err := g.UnmarshalCaddyfile(caddyfile.NewTestDispenser(tc.input))
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("case %d: err = %v, want %q", i, err, tc.err)
			}
			continue
		}
		if err != nil || g.Upstream != tc.want.Upstream || g.UpstreamAPIKey != tc.want.UpstreamAPIKey ||
			g.MaxRequestBody != tc.want.MaxRequestBody || g.DefaultMaxTokens != tc.want.DefaultMaxTokens {
			t.Errorf("case %d: %+v, %v", i, g, err)
		}
	}
}

func FuzzGatewayDirective(f *testing.F) {
	f.Add("thon_gateway {\n upstream http://127.0.0.1:13305\n max_request_body 1MiB\n}")
	f.Add("thon_gateway {\n default_max_tokens 99999999999999999999\n}")
	f.Fuzz(func(t *testing.T, in string) {
		var g Gateway
		_ = g.UnmarshalCaddyfile(caddyfile.NewTestDispenser(in))
		d := caddyfile.NewTestDispenser(in)
		d.Next()
		_, _ = parseGatewayOption(d)
	})
}

// FuzzGatewayRequestBody sends any body through the handler to a healthy
// Lemonade: it never panics and never answers a 5xx of its own (502 and
// 503 are Lemonade's or the limiter's unavailability).
func FuzzGatewayRequestBody(f *testing.F) {
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
	gs, key := testKeyring(f, "alpha-alice", gateway.Limits{TokenLimit: gateway.MaxTokenLimit, Window: time.Hour})
	srv := handlerServer(f, gs, &gs.local, lem.URL())
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

// TestCaddyfileExampleGateway: the shipped example serves the gateway on
// every site and reads THON_REDIS.
func TestCaddyfileExampleGateway(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("..", "Caddyfile.example"))
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("THON_REDIS", "")
	cfg := string(adapt(t, string(b)))
	if !strings.Contains(cfg, `"handler":"thon_gateway"`) || strings.Contains(cfg, `"redis"`) {
		t.Errorf("example without THON_REDIS: gateway handler or an unexpected redis:\n%s", cfg)
	}
	t.Setenv("THON_REDIS", "127.0.0.1:6380")
	if cfg := string(adapt(t, string(b))); !strings.Contains(cfg, `"gateway":{"redis":"127.0.0.1:6380"}`) {
		t.Errorf("example with THON_REDIS:\n%s", cfg)
	}
}
