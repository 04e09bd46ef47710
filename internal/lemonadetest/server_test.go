package lemonadetest

import (
	"bufio"
	"encoding/base64"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"
)

func do(t *testing.T, s *Server, method, path, key, body string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, s.URL()+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, b
}

func jsonMap(t *testing.T, b []byte) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("not JSON: %s: %v", b, err)
	}
	return m
}

func TestListensOnLoopback(t *testing.T) {
	s := Start(t, Options{})
	u, err := url.Parse(s.URL())
	if err != nil {
		t.Fatal(err)
	}
	host, _, _ := net.SplitHostPort(u.Host)
	if host != "127.0.0.1" {
		t.Errorf("listening on %s, want 127.0.0.1", host)
	}
}

func TestRoutesAndAuth(t *testing.T) {
	s := Start(t, Options{APIKey: "k-api", AdminKey: "k-admin"})
	for i, tc := range []struct {
		method, path, key string
		status            int
		body              string
	}{
		{"GET", "/live", "", 200, `"status":"ok"`},
		{"HEAD", "/live", "", 200, ""},
		{"GET", "/api/v1/health", "", 401, `{"error":"Invalid or missing API key"}`},
		{"GET", "/v1/health", "nope", 401, `Invalid or missing API key`},
		{"GET", "/api/v1/health", "k-api", 200, `"version":"10.8.0"`},
		{"GET", "/v1/health", "k-admin", 200, `"all_models_loaded":[]`},
		{"GET", "/api/v0/models", "k-api", 200, `"object":"list"`},
		{"GET", "/v0/stats", "k-api", 200, `"cache_tokens":null`},
		{"GET", "/v1/system-info", "k-api", 200, `"devices"`},
		{"GET", "/api/v1/pull", "k-api", 405, `{"error":"Method Not Allowed. Use POST for this endpoint"}`},
		{"GET", "/v1/chat/completions", "k-api", 405, `Use POST for this endpoint`},
		{"GET", "/v1/load", "k-api", 405, `Use POST`},
		{"GET", "/v1/nothing", "k-api", 404, `"type":"not_found"`},
		{"GET", "/elsewhere", "", 404, `The requested endpoint does not exist`},
		{"GET", "/v1/models/gemma-4-31b-it", "k-api", 200, `"id":"gemma-4-31b-it"`},
		{"GET", "/v1/models/missing", "k-api", 404, `"code":"model_not_found"`},
		{"GET", "/v1/models?show_all=true", "k-api", 200, `harrier-oss-v1-0.6b`},
	} {
		resp, b := do(t, s, tc.method, tc.path, tc.key, "")
		if resp.StatusCode != tc.status || !strings.Contains(string(b), tc.body) {
			t.Errorf("case %d: %s %s: %d %s; want %d with %s", i, tc.method, tc.path, resp.StatusCode, b, tc.status, tc.body)
		}
	}
}

func TestChatCompletion(t *testing.T) {
	s := Start(t, Options{CompletionTokens: 5, PromptTokens: 11})
	resp, b := do(t, s, "POST", "/api/v1/chat/completions", "", `{"model": "gemma-4-31b-it", "messages": [{"role": "user", "content": "hi"}]}`)
	if resp.StatusCode != 200 {
		t.Fatalf("%d %s", resp.StatusCode, b)
	}
	m := jsonMap(t, b)
	usage := m["usage"].(map[string]any)
	if usage["prompt_tokens"] != 11.0 || usage["completion_tokens"] != 5.0 || usage["total_tokens"] != 16.0 {
		t.Errorf("usage = %v", usage)
	}
	ch := m["choices"].([]any)[0].(map[string]any)
	if ch["finish_reason"] != "stop" || ch["message"].(map[string]any)["content"] != "tok0 tok1 tok2 tok3 tok4" {
		t.Errorf("choice = %v", ch)
	}
	if s.Loaded()[0] != "user.gemma-4-31b-it" {
		t.Errorf("the model was not auto-loaded: %v", s.Loaded())
	}
	// max_tokens caps the answer
	_, b = do(t, s, "POST", "/v1/chat/completions", "", `{"model": "user.gemma-4-31b-it", "max_tokens": 2, "messages": [{"role": "user", "content": "hi"}]}`)
	if m := jsonMap(t, b); m["usage"].(map[string]any)["completion_tokens"] != 2.0 || m["choices"].([]any)[0].(map[string]any)["finish_reason"] != "length" {
		t.Errorf("capped answer = %s", b)
	}
	// word counting when PromptTokens is not fixed
	s2 := Start(t, Options{})
	_, b = do(t, s2, "POST", "/v1/chat/completions", "", `{"model": "gemma-4-31b-it", "messages": [{"role": "user", "content": "one two three"}]}`)
	if m := jsonMap(t, b); m["usage"].(map[string]any)["prompt_tokens"] != 6.0 {
		t.Errorf("prompt tokens = %v", m["usage"])
	}

	for i, tc := range []struct {
		body   string
		status int
		want   string
	}{
		{`{"model": "nope", "messages": [{"role": "user", "content": "x"}]}`, 404, `"code":"model_not_found"`},
		{`{"model": "harrier-oss-v1-0.6b", "messages": [{"role": "user", "content": "x"}]}`, 400, "embedding model"},
		{`{"model": "gemma-4-31b-it", "messages": []}`, 400, "messages"},
		{`{"messages": [{"role": "user", "content": "x"}]}`, 400, "'model' is required"},
		{`{not json`, 400, "Invalid JSON"},
	} {
		resp, b := do(t, s, "POST", "/v1/chat/completions", "", tc.body)
		if resp.StatusCode != tc.status || !strings.Contains(string(b), tc.want) {
			t.Errorf("case %d: %d %s", i, resp.StatusCode, b)
		}
	}
	st := jsonMap(t, func() []byte { _, b := do(t, s, "GET", "/v1/stats", "", ""); return b }())
	if st["request_count_total"] != 2.0 || st["output_tokens_total"] != 7.0 || st["input_tokens"] != 11.0 {
		t.Errorf("stats = %v", st)
	}
}

// sseLines runs a streamed chat request and returns the non-empty lines.
func sseLines(t *testing.T, s *Server, body string) ([]string, error) {
	t.Helper()
	resp, err := http.Post(s.URL()+"/v1/chat/completions", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Fatalf("content type %q", ct)
	}
	var lines []string
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if sc.Text() != "" {
			lines = append(lines, sc.Text())
		}
	}
	return lines, sc.Err()
}

func TestChatStream(t *testing.T) {
	s := Start(t, Options{CompletionTokens: 3, PromptTokens: 4, Pings: 2})
	const req = `{"model": "gemma-4-31b-it", "stream": true, "messages": [{"role": "user", "content": "hi"}]`
	for _, includeUsage := range []bool{false, true} {
		body := req + "}"
		if includeUsage {
			body = req + `, "stream_options": {"include_usage": true}}`
		}
		lines, err := sseLines(t, s, body)
		if err != nil {
			t.Fatal(err)
		}
		if lines[0] != ": ping" || lines[1] != ": ping" || lines[len(lines)-1] != "data: [DONE]" {
			t.Errorf("include_usage=%v: lines = %q", includeUsage, lines)
		}
		var content strings.Builder
		usageChunks := 0
		for _, l := range lines[2 : len(lines)-1] {
			data, ok := strings.CutPrefix(l, "data: ")
			if !ok {
				t.Fatalf("line %q", l)
			}
			var c struct {
				Object  string `json:"object"`
				Choices []struct {
					Delta        struct{ Content string } `json:"delta"`
					FinishReason *string                  `json:"finish_reason"`
				} `json:"choices"`
				Usage *struct {
					PromptTokens     int `json:"prompt_tokens"`
					CompletionTokens int `json:"completion_tokens"`
					TotalTokens      int `json:"total_tokens"`
				} `json:"usage"`
			}
			if err := json.Unmarshal([]byte(data), &c); err != nil {
				t.Fatalf("chunk %s: %v", data, err)
			}
			if c.Object != "chat.completion.chunk" {
				t.Errorf("object %q", c.Object)
			}
			if c.Usage != nil {
				usageChunks++
				if len(c.Choices) != 0 {
					t.Errorf("usage chunk has choices: %s", data)
				}
				if c.Usage.PromptTokens != 4 || c.Usage.CompletionTokens != 3 || c.Usage.TotalTokens != 7 {
					t.Errorf("usage = %+v", c.Usage)
				}
				continue
			}
			for _, ch := range c.Choices {
				content.WriteString(ch.Delta.Content)
			}
		}
		if content.String() != "tok0 tok1 tok2 " {
			t.Errorf("content %q", content.String())
		}
		if want := map[bool]int{false: 0, true: 1}[includeUsage]; usageChunks != want {
			t.Errorf("include_usage=%v: %d usage chunks, want %d", includeUsage, usageChunks, want)
		}
	}
}

func TestFailModes(t *testing.T) {
	s := Start(t, Options{CompletionTokens: 6})
	chat := `{"model": "gemma-4-31b-it", "messages": [{"role": "user", "content": "hi"}]}`
	stream := `{"model": "gemma-4-31b-it", "stream": true, "messages": [{"role": "user", "content": "hi"}]}`

	s.SetFail(FailMalformedJSON)
	_, b := do(t, s, "POST", "/v1/chat/completions", "", chat)
	if json.Valid(b) {
		t.Errorf("malformed mode answered valid JSON: %s", b)
	}
	lines, err := sseLines(t, s, stream)
	if err != nil {
		t.Fatal(err)
	}
	bad := 0
	for _, l := range lines {
		if d, ok := strings.CutPrefix(l, "data: "); ok && d != "[DONE]" && !json.Valid([]byte(d)) {
			bad++
		}
	}
	if bad != 1 {
		t.Errorf("%d malformed data lines in %q", bad, lines)
	}

	s.SetFail(FailTruncatedStream)
	lines, err = sseLines(t, s, stream)
	if err == nil {
		t.Errorf("truncated stream read without error")
	}
	if len(lines) > 0 && lines[len(lines)-1] == "data: [DONE]" {
		t.Errorf("truncated stream ended with [DONE]")
	}
	resp, err := http.Post(s.URL()+"/v1/chat/completions", "application/json", strings.NewReader(chat))
	if err == nil {
		_, err = io.ReadAll(resp.Body)
		resp.Body.Close()
	}
	if err == nil {
		t.Errorf("truncated answer read without error")
	}

	s.SetFail(FailServerError)
	resp2, b := do(t, s, "POST", "/v1/embeddings", "", `{"model": "harrier-oss-v1-0.6b", "input": "x"}`)
	if resp2.StatusCode != 500 || !strings.Contains(string(b), "server_error") {
		t.Errorf("server error mode: %d %s", resp2.StatusCode, b)
	}
}

func TestEmbeddings(t *testing.T) {
	s := Start(t, Options{EmbeddingDims: 8})
	resp, b := do(t, s, "POST", "/api/v1/embeddings", "", `{"model": "harrier-oss-v1-0.6b", "input": ["a b c", "d"]}`)
	if resp.StatusCode != 200 {
		t.Fatalf("%d %s", resp.StatusCode, b)
	}
	var out struct {
		Data []struct {
			Index     int       `json:"index"`
			Embedding []float64 `json:"embedding"`
		} `json:"data"`
		Usage struct {
			PromptTokens int `json:"prompt_tokens"`
			TotalTokens  int `json:"total_tokens"`
		} `json:"usage"`
	}
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	if len(out.Data) != 2 || len(out.Data[1].Embedding) != 8 || out.Data[1].Index != 1 {
		t.Errorf("data = %+v", out.Data)
	}
	var norm float64
	for _, v := range out.Data[0].Embedding {
		norm += v * v
	}
	if norm < 0.99 || norm > 1.01 {
		t.Errorf("vector not normalised: %v", norm)
	}
	if out.Usage.PromptTokens != 4 || out.Usage.TotalTokens != 4 {
		t.Errorf("usage = %+v", out.Usage)
	}
	_, b = do(t, s, "POST", "/v1/embeddings", "", `{"model": "harrier-oss-v1-0.6b", "input": "d", "encoding_format": "base64"}`)
	var b64 struct {
		Data []struct{ Embedding string } `json:"data"`
	}
	if err := json.Unmarshal(b, &b64); err != nil {
		t.Fatal(err)
	}
	if raw, err := base64.StdEncoding.DecodeString(b64.Data[0].Embedding); err != nil || len(raw) != 32 {
		t.Errorf("base64 embedding: %d bytes, %v", len(raw), err)
	}
	resp, b = do(t, s, "POST", "/v1/embeddings", "", `{"model": "gemma-4-31b-it", "input": "x"}`)
	if resp.StatusCode != 400 {
		t.Errorf("chat model for embeddings: %d %s", resp.StatusCode, b)
	}
	resp, _ = do(t, s, "POST", "/v1/embeddings", "", `{"model": "nope", "input": "x"}`)
	if resp.StatusCode != 404 {
		t.Errorf("unknown model: %d", resp.StatusCode)
	}
}

func TestLoadEviction(t *testing.T) {
	s := Start(t, Options{Models: append(DefaultModels(), Model{Name: "Qwen3-0.6B-GGUF", Checkpoint: "unsloth/Qwen3-0.6B-GGUF:Q4_0", Downloaded: true})})
	for _, m := range []string{"gemma-4-31b-it", "harrier-oss-v1-0.6b", "Qwen3-0.6B-GGUF"} {
		if resp, b := do(t, s, "POST", "/v1/load", "", `{"model_name": "`+m+`"}`); resp.StatusCode != 200 {
			t.Fatalf("load %s: %d %s", m, resp.StatusCode, b)
		}
	}
	got := s.Loaded()
	if len(got) != 2 || got[0] != "user.harrier-oss-v1-0.6b" || got[1] != "Qwen3-0.6B-GGUF" {
		t.Errorf("loaded = %v; one llm and one embedding model fit", got)
	}
	resp, b := do(t, s, "POST", "/v1/load", "", `{"model_name": "Qwen3-0.6B-GGUF", "llamacpp_args": "--port=1"}`)
	if resp.StatusCode != 400 || !strings.Contains(string(b), "Reserved arguments") {
		t.Errorf("reserved arg: %d %s", resp.StatusCode, b)
	}
}
