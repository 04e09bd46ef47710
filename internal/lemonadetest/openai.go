package lemonadetest

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"strings"
	"time"
)

type chatBody struct {
	Model               string          `json:"model"`
	Messages            []chatMessage   `json:"messages"`
	Stream              bool            `json:"stream"`
	StreamOptions       *streamOptions  `json:"stream_options"`
	MaxTokens           int             `json:"max_tokens"`
	MaxCompletionTokens int             `json:"max_completion_tokens"`
	Extra               json.RawMessage `json:"-"`
}

type chatMessage struct {
	Role    string          `json:"role"`
	Content json.RawMessage `json:"content"`
}

type streamOptions struct {
	IncludeUsage bool `json:"include_usage"`
}

// countWords counts the words of the text in a message content (a string
// or an array of parts with "text").
func countWords(raw json.RawMessage) int {
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return len(strings.Fields(s))
	}
	var parts []struct {
		Text string `json:"text"`
	}
	if json.Unmarshal(raw, &parts) == nil {
		n := 0
		for _, p := range parts {
			n += len(strings.Fields(p.Text))
		}
		return n
	}
	return 0
}

// useModel resolves and auto-loads a model for an OpenAI request, writing
// the error answer and returning nil when it cannot be used.
func (s *Server) useModel(w http.ResponseWriter, name, wantType string) *Model {
	if name == "" {
		openAIError(w, http.StatusBadRequest, "invalid_request_error", "", "'model' is required")
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	m := s.resolve(name)
	if m == nil {
		openAIError(w, http.StatusNotFound, "not_found", "model_not_found", fmt.Sprintf(
			"Model '%s' was not found. Use GET /api/v1/models?show_all=true to see the available models.", name))
		return nil
	}
	if typ := modelType(m); typ != wantType {
		openAIError(w, http.StatusBadRequest, "invalid_request_error", "", fmt.Sprintf(
			"Model '%s' is a %s model and cannot serve this endpoint", name, typ))
		return nil
	}
	var l *loadedModel
	for _, x := range s.loaded {
		if x.name == m.Name {
			l = x
		}
	}
	if l == nil { // Lemonade loads a model on first use
		l = s.loadLocked(m, map[string]any{})
	}
	l.lastUse = time.Now()
	return m
}

func (s *Server) failMode() FailMode {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.fail
}

func (s *Server) recordUsage(prompt, completion int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stats.ttft = 0.05
	s.stats.tps = 50
	s.stats.input, s.stats.output, s.stats.prompt = int64(prompt), int64(completion), int64(prompt)
	s.stats.requests++
	s.stats.inputTotal += int64(prompt)
	s.stats.outputTot += int64(completion)
	s.stats.promptTotal += int64(prompt)
}

func (s *Server) handleChat(w http.ResponseWriter, r *http.Request) {
	var b chatBody
	if err := decode(r, &b); err != nil {
		openAIError(w, http.StatusBadRequest, "invalid_request_error", "", "Invalid JSON in request body: "+err.Error())
		return
	}
	if len(b.Messages) == 0 {
		openAIError(w, http.StatusBadRequest, "invalid_request_error", "", "'messages' must be a non-empty array")
		return
	}
	m := s.useModel(w, b.Model, "llm")
	if m == nil {
		return
	}
	fail := s.failMode()
	if fail == FailServerError {
		openAIError(w, http.StatusInternalServerError, "server_error", "", "llama-server backend exited unexpectedly")
		return
	}

	prompt := s.opts.PromptTokens
	if prompt <= 0 {
		for _, msg := range b.Messages {
			prompt += countWords(msg.Content) + 3
		}
	}
	completion, finish := s.opts.CompletionTokens, "stop"
	limit := b.MaxCompletionTokens
	if limit <= 0 {
		limit = b.MaxTokens
	}
	if limit > 0 && limit < completion {
		completion, finish = limit, "length"
	}
	usage := map[string]any{
		"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion,
		"prompt_tokens_details": map[string]any{"cached_tokens": 0},
	}
	timings := map[string]any{
		"cache_n": 0, "prompt_n": prompt, "prompt_ms": 10.0, "predicted_n": completion, "predicted_ms": 20.0 * float64(completion),
	}
	id := fmt.Sprintf("chatcmpl-%d", time.Now().UnixNano())
	created := time.Now().Unix()
	s.recordUsage(prompt, completion)

	if !b.Stream {
		if fail == FailMalformedJSON {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusOK)
			fmt.Fprintf(w, `{"id":%q,"object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"tok0 `, id)
			return
		}
		var text strings.Builder
		for i := range completion {
			fmt.Fprintf(&text, "tok%d ", i)
		}
		resp := map[string]any{
			"id": id, "object": "chat.completion", "created": created, "model": b.Model,
			"choices": []any{map[string]any{
				"index": 0, "finish_reason": finish,
				"message": map[string]any{"role": "assistant", "content": strings.TrimSpace(text.String())},
			}},
			"usage": usage, "timings": timings,
		}
		if fail == FailTruncatedStream {
			full, _ := json.Marshal(resp)
			w.Header().Set("Content-Type", "application/json")
			w.Header().Set("Content-Length", fmt.Sprint(len(full)))
			w.WriteHeader(http.StatusOK)
			_, _ = w.Write(full[:len(full)/2])
			panic(http.ErrAbortHandler) // drop the connection mid-body
		}
		writeJSON(w, http.StatusOK, resp)
		return
	}

	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-cache")
	w.WriteHeader(http.StatusOK)
	fl, _ := w.(http.Flusher)
	for range max(s.opts.Pings, 0) {
		fmt.Fprint(w, ": ping\n\n")
		flush(fl)
	}
	chunk := func(delta map[string]any, finish any) map[string]any {
		return map[string]any{
			"id": id, "object": "chat.completion.chunk", "created": created, "model": b.Model,
			"choices": []any{map[string]any{"index": 0, "delta": delta, "finish_reason": finish}},
		}
	}
	send := func(v any) bool {
		if !s.wait(r) {
			return false
		}
		data, _ := json.Marshal(v)
		fmt.Fprintf(w, "data: %s\n\n", data)
		flush(fl)
		return true
	}
	if !send(chunk(map[string]any{"role": "assistant", "content": nil}, nil)) {
		return
	}
	for i := range completion {
		if fail == FailTruncatedStream && i >= completion/2 {
			panic(http.ErrAbortHandler)
		}
		if fail == FailMalformedJSON && i == completion/2 {
			fmt.Fprint(w, "data: {\"id\":\"broken\",\"choices\":[{\"delta\":\n\n")
			flush(fl)
			continue
		}
		if !send(chunk(map[string]any{"content": fmt.Sprintf("tok%d ", i)}, nil)) {
			return
		}
	}
	if fail == FailTruncatedStream {
		panic(http.ErrAbortHandler)
	}
	if !send(chunk(map[string]any{}, finish)) {
		return
	}
	// llama-server (since PR #16052) sends the usage chunk, with empty
	// choices, only when the client asks for it.
	if b.StreamOptions != nil && b.StreamOptions.IncludeUsage {
		if !send(map[string]any{
			"id": id, "object": "chat.completion.chunk", "created": created, "model": b.Model,
			"choices": []any{}, "usage": usage, "timings": timings,
		}) {
			return
		}
	}
	fmt.Fprint(w, "data: [DONE]\n\n")
	flush(fl)
}

type embeddingsBody struct {
	Model          string          `json:"model"`
	Input          json.RawMessage `json:"input"`
	EncodingFormat string          `json:"encoding_format"`
}

func (s *Server) handleEmbeddings(w http.ResponseWriter, r *http.Request) {
	var b embeddingsBody
	if err := decode(r, &b); err != nil {
		openAIError(w, http.StatusBadRequest, "invalid_request_error", "", "Invalid JSON in request body: "+err.Error())
		return
	}
	var inputs []string
	var one string
	switch {
	case len(b.Input) == 0:
		openAIError(w, http.StatusBadRequest, "invalid_request_error", "", "'input' is required")
		return
	case json.Unmarshal(b.Input, &one) == nil:
		inputs = []string{one}
	case json.Unmarshal(b.Input, &inputs) == nil:
	default:
		var tokens []json.RawMessage // token arrays: embed their JSON text
		if json.Unmarshal(b.Input, &tokens) != nil {
			openAIError(w, http.StatusBadRequest, "invalid_request_error", "", "'input' must be a string or an array")
			return
		}
		for _, t := range tokens {
			inputs = append(inputs, string(t))
		}
	}
	if len(inputs) == 0 {
		openAIError(w, http.StatusBadRequest, "invalid_request_error", "", "'input' must not be empty")
		return
	}
	if b.EncodingFormat != "" && b.EncodingFormat != "float" && b.EncodingFormat != "base64" {
		openAIError(w, http.StatusBadRequest, "invalid_request_error", "", "'encoding_format' must be float or base64")
		return
	}
	if s.useModel(w, b.Model, "embedding") == nil {
		return
	}
	fail := s.failMode()
	switch fail {
	case FailServerError:
		openAIError(w, http.StatusInternalServerError, "server_error", "", "llama-server backend exited unexpectedly")
		return
	case FailMalformedJSON, FailTruncatedStream:
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusOK)
		fmt.Fprint(w, `{"object":"list","data":[{"object":"embedding","index":0,"embedding":[0.1,`)
		if fail == FailTruncatedStream {
			panic(http.ErrAbortHandler)
		}
		return
	}
	prompt := 0
	data := make([]any, 0, len(inputs))
	for i, in := range inputs {
		prompt += max(len(strings.Fields(in)), 1)
		vec := embed(in, s.opts.EmbeddingDims)
		var emb any = vec
		if b.EncodingFormat == "base64" {
			buf := make([]byte, 4*len(vec))
			for j, f := range vec {
				binary.LittleEndian.PutUint32(buf[4*j:], math.Float32bits(f))
			}
			emb = base64.StdEncoding.EncodeToString(buf)
		}
		data = append(data, map[string]any{"object": "embedding", "index": i, "embedding": emb})
	}
	if s.opts.PromptTokens > 0 {
		prompt = s.opts.PromptTokens
	}
	s.recordUsage(prompt, 0)
	writeJSON(w, http.StatusOK, map[string]any{
		"object": "list", "data": data, "model": b.Model,
		"usage": map[string]any{"prompt_tokens": prompt, "total_tokens": prompt},
	})
}

// embed derives a deterministic L2-normalised vector from the text.
func embed(text string, dims int) []float32 {
	vec := make([]float32, dims)
	var norm float64
	seed := sha256.Sum256([]byte(text))
	for i := range vec {
		h := sha256.Sum256(append(seed[:], byte(i), byte(i>>8)))
		v := float64(binary.LittleEndian.Uint32(h[:4]))/float64(math.MaxUint32)*2 - 1
		vec[i] = float32(v)
		norm += v * v
	}
	norm = math.Sqrt(norm)
	if norm == 0 {
		norm = 1
	}
	for i := range vec {
		vec[i] = float32(float64(vec[i]) / norm)
	}
	return vec
}
