package caddymodule

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/redis/go-redis/v9"

	"github.com/thon-dev/thon/gateway"
	"github.com/thon-dev/thon/internal/dockertest"
	"github.com/thon-dev/thon/internal/lemonadetest"
	"github.com/thon-dev/thon/store"
)

// lemonadeKey is the Lemonade test server's API key in these tests.
const lemonadeKey = "lemon-secret-key"

// gatewayConfig is a site with the REST API and the gateway, whose
// Lemonade is the test server at upstream.
func gatewayConfig(dataDir, upstream, gatewayBlock string) func(site, admin int) string {
	return gatewaySite(dataDir, upstream, gatewayBlock, "thon_gateway")
}

// gatewaySite is gatewayConfig with the gateway handler's directive
// (thon_gateway and its block) given.
func gatewaySite(dataDir, upstream, gatewayBlock, directive string) func(site, admin int) string {
	return func(site, admin int) string {
		return fmt.Sprintf(`{
	admin localhost:%d
	persist_config off
	thon {
		data_dir %s
		lemonade {
			url %s
			api_key %s
			health_interval 1h
		}
		%s
	}
}

http://:%d {
	bind 127.0.0.1
	thon_api
	%s
	respond "fallthrough" 404
}
`, admin, dataDir, upstream, lemonadeKey, gatewayBlock, site, directive)
	}
}

// gatewayEnv is a Caddy running the gateway in front of a Lemonade test
// server, with consumers set up for a small roster.
type gatewayEnv struct {
	*instance
	lemonade *lemonadetest.Server
	dataDir  string
	keys     map[string]string // consumer -> key
}

// startGateway starts Caddy with the gateway, imports alpha (alice, bob)
// and beta (carol) and sets the gateway up with setup (a JSON body).
func startGateway(t *testing.T, opts lemonadetest.Options, setup string) *gatewayEnv {
	t.Helper()
	if opts.APIKey == "" {
		opts.APIKey = lemonadeKey
	}
	lem := lemonadetest.Start(t, opts)
	dataDir := t.TempDir()
	in := startCaddy(t, gatewayConfig(dataDir, lem.URL(), ""))
	e := &gatewayEnv{instance: in, lemonade: lem, dataDir: dataDir, keys: map[string]string{}}
	code, body := in.do(http.MethodPost, in.base+"/api/groups/import", "application/yaml",
		[]byte("groups:\n  alpha: [alice, bob]\n  beta: [carol]\n"))
	if code != http.StatusOK {
		t.Fatalf("import: %d %s", code, body)
	}
	code, body = in.do(http.MethodPost, in.base+"/api/gateway/setup", "application/json", []byte(setup))
	if code != http.StatusOK {
		t.Fatalf("setup: %d %s", code, body)
	}
	var out struct {
		Consumers []struct{ Username, Key string }
	}
	if err := json.Unmarshal(body, &out); err != nil {
		t.Fatal(err)
	}
	for _, c := range out.Consumers {
		e.keys[c.Username] = c.Key
	}
	return e
}

// chatBody is a chat completion request.
func chatBody(stream bool, maxTokens int) string {
	return fmt.Sprintf(`{"model": "user.gemma-4-31b-it", "stream": %t, "max_tokens": %d, "messages": [{"role": "user", "content": "say hello to the hackathon"}]}`, stream, maxTokens)
}

// post sends a gateway request with the key as a Bearer token.
func (e *gatewayEnv) post(ctx context.Context, path, key, body string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, e.base+path, strings.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	return http.DefaultClient.Do(req)
}

// send posts and reads the whole answer.
func (e *gatewayEnv) send(t *testing.T, path, key, body string) (*http.Response, string) {
	t.Helper()
	resp, err := e.post(context.Background(), path, key, body)
	if err != nil {
		t.Fatalf("POST %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("POST %s: reading: %v", path, err)
	}
	return resp, string(b)
}

// chatRequests counts the chat completion requests Lemonade received.
func (e *gatewayEnv) chatRequests() int {
	n := 0
	for _, r := range e.lemonade.Requests() {
		if strings.HasSuffix(r.Path, "/chat/completions") {
			n++
		}
	}
	return n
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

// inFlight is the in-process limiter's count for a consumer.
func inFlight(t *testing.T, consumer string) (requests, tokens int64) {
	return activeApp(t).shared.gateway.InFlight(consumer)
}

// openAIError decodes an OpenAI-style error body.
func openAIError(t *testing.T, body string) (message, code string) {
	t.Helper()
	var e struct {
		Error struct{ Message, Code string }
	}
	if err := json.Unmarshal([]byte(body), &e); err != nil || e.Error.Message == "" {
		t.Fatalf("not an OpenAI error body: %q (%v)", body, err)
	}
	return e.Error.Message, e.Error.Code
}

func TestIntegrationGatewayAuthAndProxy(t *testing.T) {
	e := startGateway(t, lemonadetest.Options{}, `{"token_limit": 100000, "token_window": 3600}`)
	alice := e.keys["alpha-alice"]

	// Missing and unknown keys: 401 in OpenAI's shape, nothing upstream.
	for i, key := range []string{"", "thon_not-a-key", e.keys["alpha-bob"] + "x"} {
		resp, body := e.send(t, "/v1/chat/completions", key, chatBody(false, 5))
		if _, code := openAIError(t, body); resp.StatusCode != 401 || (code != "missing_api_key" && code != "invalid_api_key") {
			t.Errorf("case %d: %d %s", i, resp.StatusCode, body)
		}
	}
	if n := e.chatRequests(); n != 0 {
		t.Errorf("unauthorised requests reached Lemonade: %d", n)
	}

	// The key in each accepted place; Lemonade sees its own key only.
	for i, set := range []func(*http.Request){
		func(r *http.Request) { r.Header.Set("Authorization", "Bearer "+alice) },
		func(r *http.Request) { r.Header.Set("apikey", alice) },
		func(r *http.Request) { r.URL.RawQuery = "apikey=" + alice },
	} {
		req, _ := http.NewRequest(http.MethodPost, e.base+"/v1/chat/completions", strings.NewReader(chatBody(false, 5)))
		set(req)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		var out struct {
			Object string
			Usage  gateway.Usage
		}
		if resp.StatusCode != 200 || json.Unmarshal(b, &out) != nil || out.Object != "chat.completion" || out.Usage.Completion != 5 {
			t.Errorf("case %d: %d %s", i, resp.StatusCode, b)
		}
		if resp.Header.Get("X-AI-RateLimit-Limit") != "100000" || resp.Header.Get("X-Ratelimit-Remaining-Tokens") == "" {
			t.Errorf("case %d: rate limit headers %v", i, resp.Header)
		}
	}
	for _, r := range e.lemonade.Requests() {
		if strings.HasPrefix(r.Path, "/v1/") && r.Authorization != "Bearer "+lemonadeKey {
			t.Errorf("Lemonade got Authorization %q on %s", r.Authorization, r.Path)
		}
		if strings.Contains(string(r.Body), alice) || strings.Contains(r.Authorization, alice) {
			t.Error("the client's key reached Lemonade")
		}
	}

	// A stream gets the usage chunk asked for, passed through with [DONE].
	resp, body := e.send(t, "/v1/chat/completions", alice, chatBody(true, 3))
	if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") ||
		!strings.Contains(body, `"choices":[]`) || !strings.Contains(body, `"usage"`) || !strings.HasSuffix(body, "data: [DONE]\n\n") {
		t.Errorf("stream: %d %q", resp.StatusCode, body)
	}
	reqs := e.lemonade.Requests()
	if last := string(reqs[len(reqs)-1].Body); !strings.Contains(last, `"stream_options":{"include_usage":true}`) {
		t.Errorf("include_usage not asked for: %s", last)
	}

	// Embeddings and models go through too; other paths pass on.
	resp, body = e.send(t, "/v1/embeddings", alice, `{"model": "user.harrier-oss-v1-0.6b", "input": ["a b c", "d"]}`)
	if resp.StatusCode != 200 || !strings.Contains(body, `"embedding"`) {
		t.Errorf("embeddings: %d %s", resp.StatusCode, body)
	}
	req, _ := http.NewRequest(http.MethodGet, e.base+"/v1/models", nil)
	req.Header.Set("Authorization", "Bearer "+alice)
	if r, err := http.DefaultClient.Do(req); err != nil || r.StatusCode != 200 {
		t.Errorf("models: %v %v", r, err)
	} else {
		r.Body.Close()
	}
	if code, body := e.do(http.MethodGet, e.base+"/v1/chat/completions", "", nil); code != 405 {
		t.Errorf("GET chat: %d %s", code, body)
	}
	if code, body := e.do(http.MethodGet, e.base+"/v1/other", "", nil); code != 404 || string(body) != "fallthrough" {
		t.Errorf("other path: %d %s", code, body)
	}
	// A body the gateway cannot size is refused before Lemonade.
	before := e.chatRequests()
	resp, body = e.send(t, "/v1/chat/completions", alice, `{"model": "m", "messages": [{"role": "user", "content": 7}]}`)
	if msg, _ := openAIError(t, body); resp.StatusCode != 400 || !strings.Contains(msg, "messages[0].content") {
		t.Errorf("bad body: %d %s", resp.StatusCode, body)
	}
	if e.chatRequests() != before {
		t.Error("a bad body reached Lemonade")
	}

	// Usage is stored per consumer and counted in Caddy's metrics.
	waitFor(t, "usage written to the database", func() bool {
		u, _ := activeApp(t).Store().UsageSummary(context.Background(), store.UsageFilter{Consumer: "alpha-alice"})
		return len(u) == 1 && u[0].Requests == 5
	})
	var usage struct {
		Usage []store.ConsumerUsage `json:"usage"`
	}
	e.getJSON(e.base+"/api/gateway/usage?consumer=alpha-alice", &usage)
	if len(usage.Usage) != 1 || usage.Usage[0].CompletionTokens < 5+5+5+3 || usage.Usage[0].PromptTokens == 0 {
		t.Errorf("usage = %+v", usage)
	}
	code, metrics := e.do(http.MethodGet, e.admin+"/metrics", "", nil)
	for _, want := range []string{
		`thon_gateway_tokens_total{consumer="alpha-alice",kind="completion"}`,
		`thon_gateway_requests_total{consumer="alpha-alice",endpoint="embeddings"}`,
		`thon_gateway_rejections_total{consumer="",reason="invalid_key"}`,
	} {
		if code != 200 || !strings.Contains(string(metrics), want) {
			t.Errorf("metrics lack %s", want)
		}
	}

	// A revoked key stops working at once; a rotated one works.
	code, body2 := e.do(http.MethodPost, e.base+"/api/gateway/consumers/alpha-alice/revoke", "", nil)
	if code != 200 {
		t.Fatalf("revoke: %d %s", code, body2)
	}
	if resp, _ := e.send(t, "/v1/chat/completions", alice, chatBody(false, 1)); resp.StatusCode != 401 {
		t.Errorf("revoked key: %d", resp.StatusCode)
	}
	code, body2 = e.do(http.MethodPost, e.base+"/api/gateway/consumers/alpha-alice/rotate", "", nil)
	var rot struct{ Key string }
	if code != 200 || json.Unmarshal(body2, &rot) != nil {
		t.Fatalf("rotate: %d %s", code, body2)
	}
	if resp, _ := e.send(t, "/v1/chat/completions", rot.Key, chatBody(false, 1)); resp.StatusCode != 200 {
		t.Errorf("rotated key: %d", resp.StatusCode)
	}
}

// TestIntegrationGatewayConcurrency sends 200 concurrent requests on one
// key with a limit of 3: Lemonade holds every admitted request until all
// 200 have their answer, so exactly 3 are admitted and Lemonade never has
// more than 3 at once.
func TestIntegrationGatewayConcurrency(t *testing.T) {
	gate := make(chan struct{})
	e := startGateway(t, lemonadetest.Options{Gate: gate, CompletionTokens: 2}, `{"concurrency_limit": 3}`)
	key := e.keys["alpha-alice"]
	const clients = 200
	var admitted, refused, answered atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, clients)
	for range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := e.post(context.Background(), "/v1/chat/completions", key, chatBody(true, 2))
			if err != nil {
				errs <- err
				answered.Add(1)
				return
			}
			defer resp.Body.Close()
			switch resp.StatusCode {
			case 200:
				admitted.Add(1)
				answered.Add(1)
				b, err := io.ReadAll(resp.Body) // held by Lemonade until the gate opens
				if err != nil || !strings.HasSuffix(string(b), "data: [DONE]\n\n") {
					errs <- fmt.Errorf("admitted stream: %v %q", err, b)
				}
			case 429:
				b, _ := io.ReadAll(resp.Body)
				refused.Add(1)
				answered.Add(1)
				if !strings.Contains(string(b), gateway.ConcurrencyMessage) || resp.Header.Get("Retry-After") == "" ||
					resp.Header.Get("X-AI-RateLimit-Limit-Concurrency") != "3" {
					errs <- fmt.Errorf("429: %v %s", resp.Header, b)
				}
			default:
				b, _ := io.ReadAll(resp.Body)
				answered.Add(1)
				errs <- fmt.Errorf("status %d: %s", resp.StatusCode, b)
			}
		}()
	}
	waitFor(t, "every client answered", func() bool { return answered.Load() == clients })
	close(gate)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	_, most := e.lemonade.InFlight()
	if admitted.Load() != 3 || refused.Load() != clients-3 || most > 3 {
		t.Errorf("admitted %d, refused %d, at most %d at Lemonade; want 3, %d, at most 3", admitted.Load(), refused.Load(), most, clients-3)
	}
	if n, _ := inFlight(t, "alpha-alice"); n != 0 {
		t.Errorf("%d slots still held", n)
	}
}

// sseEvents reads the data lines of a stream into a channel.
func sseEvents(body io.Reader) <-chan string {
	ch := make(chan string, 64)
	go func() {
		defer close(ch)
		sc := bufio.NewScanner(body)
		for sc.Scan() {
			if data, ok := strings.CutPrefix(sc.Text(), "data: "); ok {
				ch <- data
			}
		}
	}()
	return ch
}

// TestIntegrationGatewayStreamUnbuffered lets Lemonade send one chunk at
// a time, and the next only once the client has the last one: a gateway
// that held chunks back would stall the handshake.
func TestIntegrationGatewayStreamUnbuffered(t *testing.T) {
	gate := make(chan struct{})
	e := startGateway(t, lemonadetest.Options{Gate: gate, CompletionTokens: 4}, `{}`)
	resp, err := e.post(context.Background(), "/v1/chat/completions", e.keys["beta-carol"], chatBody(true, 4))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	events := sseEvents(resp.Body)
	// role chunk, 4 content chunks, finish chunk, usage chunk (asked for by
	// the gateway); then [DONE] without a gate.
	for i := range 7 {
		gate <- struct{}{}
		select {
		case ev, ok := <-events:
			if !ok {
				t.Fatalf("stream ended before chunk %d", i)
			}
			if i == 6 && !strings.Contains(ev, `"usage"`) {
				t.Errorf("chunk %d is not the usage chunk: %s", i, ev)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("chunk %d sent by Lemonade never reached the client: the gateway holds events back", i)
		}
	}
	if ev := <-events; ev != "[DONE]" {
		t.Errorf("last event %q", ev)
	}
}

// TestIntegrationGatewayDisconnect drops a client mid-stream: its slot is
// freed and it is charged for what it used.
func TestIntegrationGatewayDisconnect(t *testing.T) {
	gate := make(chan struct{})
	e := startGateway(t, lemonadetest.Options{Gate: gate, CompletionTokens: 6}, `{"concurrency_limit": 1, "token_limit": 100000, "token_window": 3600}`)
	key := e.keys["alpha-bob"]
	ctx, cancel := context.WithCancel(context.Background())
	resp, err := e.post(ctx, "/v1/chat/completions", key, chatBody(true, 6))
	if err != nil {
		t.Fatal(err)
	}
	events := sseEvents(resp.Body)
	for i := range 2 { // role chunk and one content chunk
		gate <- struct{}{}
		if _, ok := <-events; !ok {
			t.Fatalf("stream ended at chunk %d", i)
		}
	}
	if n, _ := inFlight(t, "alpha-bob"); n != 1 {
		t.Fatalf("in flight = %d during the stream", n)
	}
	// While the stream runs, a second request is refused.
	if r, _ := e.send(t, "/v1/chat/completions", key, chatBody(false, 1)); r.StatusCode != 429 {
		t.Errorf("second request during the stream: %d", r.StatusCode)
	}
	cancel()
	resp.Body.Close()
	waitFor(t, "the slot freed after the client left", func() bool { n, _ := inFlight(t, "alpha-bob"); return n == 0 })
	_, tokens := inFlight(t, "alpha-bob")
	if tokens <= 0 || tokens >= 6+512 {
		t.Errorf("charged %d tokens; want what was used (the prompt and a chunk), not nothing nor the reservation", tokens)
	}
	waitFor(t, "the usage recorded with status 499", func() bool {
		u, _ := activeApp(t).Store().UsageSummary(context.Background(), store.UsageFilter{Consumer: "alpha-bob"})
		return len(u) == 1 && u[0].Requests == 1 && u[0].Errors == 1 && u[0].TotalTokens == tokens
	})
	close(gate)
	if r, body := e.send(t, "/v1/chat/completions", key, chatBody(false, 1)); r.StatusCode != 200 {
		t.Errorf("after the disconnect: %d %s", r.StatusCode, body)
	}
}

// TestIntegrationGatewayTokenLimit: a request whose estimate does not fit
// in what is left of the window is refused before it reaches Lemonade,
// and a config reload keeps the window.
func TestIntegrationGatewayTokenLimit(t *testing.T) {
	e := startGateway(t, lemonadetest.Options{}, `{"token_limit": 600, "token_window": 3600, "concurrency_limit": 0}`)
	key := e.keys["alpha-alice"]
	if r, body := e.send(t, "/v1/chat/completions", key, chatBody(false, 500)); r.StatusCode != 200 {
		t.Fatalf("first: %d %s", r.StatusCode, body)
	}
	_, used := inFlight(t, "alpha-alice")
	if used <= 0 || used > 100 {
		t.Fatalf("settled to %d tokens, want the real usage (a few)", used)
	}

	// Reload: the window and the metrics survive.
	metric := func() string {
		_, b := e.do(http.MethodGet, e.admin+"/metrics", "", nil)
		for _, line := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(line, `thon_gateway_requests_total{consumer="alpha-alice",endpoint="chat"} `) {
				return line
			}
		}
		return ""
	}
	before := metric()
	if before == "" {
		t.Error("no request metric for alpha-alice")
	}
	site, admin := e.sitePort(t), e.adminPort(t)
	cfg := gatewayConfig(e.dataDir, e.lemonade.URL(), "gateway {\n\t\t\ton_redis_error closed\n\t\t}")(site, admin)
	if err := caddy.Load(adapt(t, cfg), false); err != nil {
		t.Fatal(err)
	}
	e.waitReady()
	if _, after := inFlight(t, "alpha-alice"); after != used {
		t.Errorf("window after reload = %d, want %d", after, used)
	}
	if after := metric(); after != before {
		t.Errorf("request metric after reload = %q, want %q", after, before)
	}

	upstreamBefore := e.chatRequests()
	r, body := e.send(t, "/v1/chat/completions", key, chatBody(false, 590))
	if r.StatusCode != 429 {
		t.Fatalf("over the limit: %d %s", r.StatusCode, body)
	}
	if msg, _ := openAIError(t, body); !strings.Contains(msg, "Token limit exceeded") {
		t.Errorf("message %q", msg)
	}
	remaining := fmt.Sprint(600 - used)
	for h, want := range map[string]string{
		"X-AI-RateLimit-Limit": "600", "X-AI-RateLimit-Remaining": remaining, "X-Ratelimit-Limit-Tokens": "600",
		"X-Ratelimit-Remaining-Tokens": remaining,
	} {
		if got := r.Header.Get(h); got != want {
			t.Errorf("%s = %q, want %q", h, got, want)
		}
	}
	if r.Header.Get("Retry-After") == "" || r.Header.Get("X-AI-RateLimit-Reset") == "" {
		t.Errorf("reset headers: %v", r.Header)
	}
	if n := e.chatRequests(); n != upstreamBefore {
		t.Errorf("the refused request reached Lemonade (%d requests, was %d)", n, upstreamBefore)
	}
	if r, body := e.send(t, "/v1/chat/completions", key, chatBody(false, 10)); r.StatusCode != 200 {
		t.Errorf("a request that fits: %d %s", r.StatusCode, body)
	}
}

// TestIntegrationGatewayUpstreamFailures: broken answers are passed on or
// broken off as Lemonade broke them, the slot is freed each time, and an
// unreachable Lemonade is a 502.
func TestIntegrationGatewayUpstreamFailures(t *testing.T) {
	e := startGateway(t, lemonadetest.Options{}, `{"concurrency_limit": 1, "token_limit": 100000, "token_window": 3600}`)
	key := e.keys["alpha-alice"]

	e.lemonade.SetFail(lemonadetest.FailMalformedJSON)
	r, body := e.send(t, "/v1/chat/completions", key, chatBody(false, 5))
	if r.StatusCode != 200 || json.Valid([]byte(body)) {
		t.Errorf("malformed JSON: %d %q, want it passed on as it came", r.StatusCode, body)
	}
	_, charged := inFlight(t, "alpha-alice")
	if charged <= 0 {
		t.Error("an answer without usage was charged nothing")
	}
	r, body = e.send(t, "/v1/chat/completions", key, chatBody(true, 6))
	if r.StatusCode != 200 || !strings.Contains(body, `"id":"broken"`) || !strings.Contains(body, "[DONE]") {
		t.Errorf("malformed stream: %d %q", r.StatusCode, body)
	}

	e.lemonade.SetFail(lemonadetest.FailServerError)
	if r, body := e.send(t, "/v1/chat/completions", key, chatBody(false, 5)); r.StatusCode != 500 || !strings.Contains(body, "backend exited") {
		t.Errorf("server error: %d %s, want Lemonade's 500 passed on", r.StatusCode, body)
	}

	e.lemonade.SetFail(lemonadetest.FailTruncatedStream)
	for _, stream := range []bool{true, false} {
		resp, err := e.post(context.Background(), "/v1/chat/completions", key, chatBody(stream, 6))
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		// Lemonade broke off after its headers (the answer is broken off
		// too) or before anything reached the gateway (a 502).
		if err == nil && resp.StatusCode != http.StatusBadGateway {
			t.Errorf("stream %v: a truncated answer read as complete: %d %q", stream, resp.StatusCode, b)
		}
		waitFor(t, "the slot freed after a truncated answer", func() bool { n, _ := inFlight(t, "alpha-alice"); return n == 0 })
	}

	e.lemonade.SetFail(lemonadetest.FailNone)
	e.lemonade.Close()
	r, body = e.send(t, "/v1/chat/completions", key, chatBody(false, 5))
	if msg, code := openAIError(t, body); r.StatusCode != 502 || code != "upstream_error" || !strings.Contains(msg, e.lemonade.URL()) {
		t.Errorf("Lemonade down: %d %s", r.StatusCode, body)
	}
	if n, _ := inFlight(t, "alpha-alice"); n != 0 {
		t.Errorf("%d slots held after the failures", n)
	}
}

// TestIntegrationGatewayKiloInSandbox launches real sandboxes with the
// gateway on: each gets a kilo.jsonc pointing Kilo at the gateway with its
// own consumer's key, a user imported after the setup included.
func TestIntegrationGatewayKiloInSandbox(t *testing.T) {
	dockertest.Client(t)
	in := startCaddy(t, proxyConfig(t.TempDir(), dockertest.PortRange(50), ""))
	app := activeApp(t)
	ctx := context.Background()
	group := dockertest.Name("gw")
	t.Cleanup(func() { dockertest.RemoveGroup(t, group) })
	roster := store.Roster{Groups: []store.RosterGroup{{Name: group, Users: []store.RosterUser{{Name: "alice"}, {Name: "bob"}}}}}
	if _, err := app.Store().ImportRoster(ctx, roster); err != nil {
		t.Fatal(err)
	}
	code, body := in.do(http.MethodPost, in.base+"/api/gateway/setup", "application/json", []byte(`{"mode": "per-user"}`))
	if code != http.StatusOK {
		t.Fatalf("setup: %d %s", code, body)
	}
	var out struct {
		KiloURL   string `json:"kilo_url"`
		Consumers []struct{ Username, Key string }
	}
	if err := json.Unmarshal(body, &out); err != nil {
		t.Fatal(err)
	}
	roster.Groups[0].Users = append(roster.Groups[0].Users, store.RosterUser{Name: "carol"})
	if _, err := app.Store().ImportRoster(ctx, roster); err != nil {
		t.Fatal(err)
	}

	kiloOf := func(user string) (key, baseURL, raw string) {
		inst, err := app.Sandboxes().Launch(ctx, group, user)
		if err != nil {
			t.Fatalf("launch %s: %v", user, err)
		}
		b, err := exec.Command("docker", "exec", inst.Container, "cat", "/home/vscode/.config/kilo/config.json").CombinedOutput()
		if err != nil {
			t.Fatalf("reading %s's kilo config: %v %s", user, err, b)
		}
		var doc struct {
			Provider map[string]struct {
				Options struct{ APIKey, BaseURL string }
			}
		}
		if err := json.Unmarshal(b, &doc); err != nil {
			t.Fatalf("%s's kilo config: %v\n%s", user, err, b)
		}
		p := doc.Provider["lemonade-gateway"]
		return p.Options.APIKey, p.Options.BaseURL, string(b)
	}
	key, base, raw := kiloOf("alice")
	if key != out.Consumers[0].Key || out.Consumers[0].Username != group+"-alice" || base != out.KiloURL {
		t.Errorf("alice's kilo: key %q base %q, want %s's key and %s", key, base, out.Consumers[0].Username, out.KiloURL)
	}
	if strings.Contains(raw, "$THON_USERNAME") || !strings.Contains(raw, `"GIT_USERNAME": "alice"`) {
		t.Errorf("placeholders not filled:\n%s", raw)
	}
	key, _, _ = kiloOf("carol")
	c, err := app.Store().GetConsumerByHash(ctx, gateway.HashKey(key))
	if err != nil || c.Username != group+"-carol" {
		t.Errorf("carol, imported after the setup: key of %+v (%v)", c, err)
	}
	if _, ok := app.shared.gateway.Lookup(key); !ok {
		t.Error("carol's key is not accepted by the running gateway")
	}
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

// TestIntegrationGatewayLimiterReload runs the adapter through real Caddy
// reloads: the limiter is the started config's (Redis after a reload with
// a gateway redis block), and a config Caddy rejects changes nothing: the
// status and the limiter stay the running config's. The app's lemonade
// url ends in /api/v1, which the gateway drops as the Lemonade client
// does.
func TestIntegrationGatewayLimiterReload(t *testing.T) {
	prefix := redisPrefix(t)
	lem := lemonadetest.Start(t, lemonadetest.Options{APIKey: lemonadeKey})
	dataDir, upstream := t.TempDir(), lem.URL()+"/api/v1"
	in := startCaddy(t, gatewayConfig(dataDir, upstream, ""))
	e := &gatewayEnv{instance: in, lemonade: lem, dataDir: dataDir}
	if code, body := in.do(http.MethodPost, in.base+"/api/groups/import", "application/yaml", []byte("groups:\n  alpha: [alice]\n")); code != 200 {
		t.Fatalf("import: %d %s", code, body)
	}
	code, body := in.do(http.MethodPost, in.base+"/api/gateway/setup", "application/json", []byte(`{"concurrency_limit": 1}`))
	var out struct {
		Consumers []struct{ Key string }
	}
	if code != 200 || json.Unmarshal(body, &out) != nil || len(out.Consumers) != 1 {
		t.Fatalf("setup: %d %s", code, body)
	}
	key := out.Consumers[0].Key
	status := func() (st struct {
		Runtime struct {
			Policy, Redis   string
			RedisRoundTrips uint64 `json:"redis_round_trips"`
		}
	}) {
		in.getJSON(in.base+"/api/gateway/status", &st)
		return st
	}
	chat := func(what string) {
		t.Helper()
		if r, body := e.send(t, "/v1/chat/completions", key, chatBody(false, 3)); r.StatusCode != 200 {
			t.Fatalf("%s: %d %s", what, r.StatusCode, body)
		}
		reqs := lem.Requests()
		if last := reqs[len(reqs)-1]; last.Path != "/v1/chat/completions" {
			t.Errorf("%s: Lemonade got %s, want /v1/chat/completions", what, last.Path)
		}
	}
	chat("local limits")
	if st := status(); st.Runtime.Policy != "local" {
		t.Errorf("status before Redis: %+v", st)
	}

	site, admin := e.sitePort(t), e.adminPort(t)
	redisBlock := "gateway {\n\t\t\tredis 127.0.0.1:6379\n\t\t\tredis_prefix " + prefix + "\n\t\t}"
	if err := caddy.Load(adapt(t, gatewayConfig(dataDir, upstream, redisBlock)(site, admin)), false); err != nil {
		t.Fatal(err)
	}
	e.waitReady()
	chat("Redis limits")
	st := status()
	if st.Runtime.Policy != "redis" || st.Runtime.Redis != "127.0.0.1:6379" || st.Runtime.RedisRoundTrips < 2 {
		t.Fatalf("status with Redis: %+v", st)
	}

	// A config whose gateway handler fails to provision, after the thon
	// app (without Redis) did: Caddy rejects it, and the running gateway
	// keeps its Redis limiter.
	t.Setenv("THON_TEST_BAD_UPSTREAM", "ftp://127.0.0.1:13305")
	bad := gatewaySite(dataDir, upstream, "", "thon_gateway {\n\t\tupstream {env.THON_TEST_BAD_UPSTREAM}\n\t}")(site, admin)
	if err := caddy.Load(adapt(t, bad), false); err == nil || !strings.Contains(err.Error(), "upstream") {
		t.Fatalf("loading a config with a bad upstream: %v", err)
	}
	e.waitReady()
	before := status().Runtime.RedisRoundTrips
	chat("after the rejected config")
	if st := status(); st.Runtime.Policy != "redis" || st.Runtime.RedisRoundTrips <= before {
		t.Errorf("status after a rejected config: %+v (round trips before the request: %d)", st, before)
	}
}
