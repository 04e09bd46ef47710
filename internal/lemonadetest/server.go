// Package lemonadetest provides a stand-in for Lemonade Server in tests,
// since the real server (with its llama.cpp backends and GPU models) cannot
// run here. The Server follows Lemonade's documented HTTP API: /live,
// health, models, stats, system-info, slots, pull (JSON and SSE progress),
// load, unload, OpenAI chat completions (JSON, and SSE with ": ping"
// heartbeats, "[DONE]" and the usage chunk with empty choices only when
// stream_options.include_usage is true, as llama-server does) and
// embeddings, mounted under /api/v0, /api/v1, /v0 and /v1; API-key checks
// with Lemonade's 401 bodies; 405 for GET on POST-only endpoints. It
// listens on 127.0.0.1 only.
package lemonadetest

import (
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

// FailMode makes the server misbehave in a chosen way.
type FailMode string

// Failure modes.
const (
	// FailNone answers normally.
	FailNone FailMode = ""
	// FailMalformedJSON answers chat and embeddings with invalid JSON (in
	// a stream: a data line that is not JSON).
	FailMalformedJSON FailMode = "malformed-json"
	// FailTruncatedStream drops the connection halfway through a chat
	// stream (no finish chunk, no [DONE]) or a non-streamed answer.
	FailTruncatedStream FailMode = "truncated-stream"
	// FailServerError answers chat and embeddings with a 500 error.
	FailServerError FailMode = "server-error"
	// FailPull makes pulls fail with an SSE error event (or an error
	// answer when not streamed).
	FailPull FailMode = "pull-error"
)

// Model is a model known to the server.
type Model struct {
	// Name is the canonical id: "user.<name>" for user models, a bare name
	// for built-in ones.
	Name       string
	Checkpoint string
	Recipe     string   // default "llamacpp"
	Labels     []string // "embeddings" makes it an embedding model
	MMProj     string
	Downloaded bool
	Size       float64 // GB
}

// Options configure a Server.
type Options struct {
	// APIKey gates the API (LEMONADE_API_KEY); empty leaves it open.
	APIKey string
	// AdminKey is LEMONADE_ADMIN_API_KEY, also accepted on the API;
	// it defaults to APIKey.
	AdminKey string
	// Version is reported by /v1/health; default "10.8.0".
	Version string
	// Models are registered at start. When nil and NoDefaultModels is
	// false, user.gemma-4-31b-it (chat) and user.harrier-oss-v1-0.6b
	// (embeddings) are registered and downloaded.
	Models          []Model
	NoDefaultModels bool
	// MaxLoadedModels per model type (max_loaded_models); default 1.
	MaxLoadedModels int
	// PromptTokens fixes the prompt token count of every request; 0
	// counts the words of the input.
	PromptTokens int
	// CompletionTokens is the number of tokens (one per stream chunk) of a
	// chat answer, capped by max_tokens; default 8.
	CompletionTokens int
	// Pings is the number of ": ping" comments sent before the first
	// chunk of a stream; default 1, negative for none.
	Pings int
	// ChunkDelay is waited before each stream chunk and pull event.
	ChunkDelay time.Duration
	// Gate, when set, is received from before each stream chunk and pull
	// event (after ChunkDelay): a test sends a value to let one chunk go,
	// or closes it to let everything go.
	Gate chan struct{}
	// PullSteps is the number of progress events of a pull; default 3.
	PullSteps int
	// EmbeddingDims is the embedding vector size; default 16.
	EmbeddingDims int
	// Fail selects a failure mode; see SetFail.
	Fail FailMode
}

// Request is a request the server received.
type Request struct {
	Method        string
	Path          string
	Authorization string
	Body          []byte
}

// Server is a running Lemonade stand-in.
type Server struct {
	srv  *httptest.Server
	opts Options

	mu       sync.Mutex
	fail     FailMode
	models   map[string]*Model
	loaded   []*loadedModel
	pulls    map[string]int
	loads    map[string]int
	requests []Request
	stats    stats

	inflight, maxInflight int // chat and embeddings requests being answered
}

type loadedModel struct {
	name       string
	model      *Model
	typ        string
	lastUse    time.Time
	options    map[string]any
	pid        int
	backendURL string
}

type stats struct {
	ttft, tps                       float64
	input, output, prompt           int64
	requests, inputTotal, outputTot int64
	promptTotal                     int64
}

const maxRecorded = 1000

// DefaultModels are the models registered when Options.Models is nil.
func DefaultModels() []Model {
	return []Model{
		{Name: "user.gemma-4-31b-it", Checkpoint: "unsloth/gemma-4-31B-it-GGUF:Q8_K_XL", Labels: []string{"custom", "vision"}, MMProj: "mmproj-BF16.gguf", Downloaded: true, Size: 33.2},
		{Name: "user.harrier-oss-v1-0.6b", Checkpoint: "SuperPauly/harrier-oss-v1-0.6b-gguf:harrier-oss-v1-0.6B-BF16", Labels: []string{"custom", "embeddings"}, Downloaded: true, Size: 1.2},
	}
}

// New starts a server on 127.0.0.1 on a free port. Close it when done.
func New(opts Options) *Server {
	if opts.Version == "" {
		opts.Version = "10.8.0"
	}
	if opts.AdminKey == "" {
		opts.AdminKey = opts.APIKey
	}
	if opts.MaxLoadedModels == 0 {
		opts.MaxLoadedModels = 1
	}
	if opts.CompletionTokens == 0 {
		opts.CompletionTokens = 8
	}
	if opts.Pings == 0 {
		opts.Pings = 1
	}
	if opts.PullSteps <= 0 {
		opts.PullSteps = 3
	}
	if opts.EmbeddingDims <= 0 {
		opts.EmbeddingDims = 16
	}
	s := &Server{
		opts:   opts,
		fail:   opts.Fail,
		models: map[string]*Model{},
		pulls:  map[string]int{},
		loads:  map[string]int{},
	}
	models := opts.Models
	if models == nil && !opts.NoDefaultModels {
		models = DefaultModels()
	}
	for _, m := range models {
		s.AddModel(m)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic("lemonadetest: listening on 127.0.0.1: " + err.Error())
	}
	s.srv = httptest.NewUnstartedServer(http.HandlerFunc(s.serveHTTP))
	s.srv.Listener.Close()
	s.srv.Listener = ln
	s.srv.Start()
	return s
}

// Start starts a server for a test and closes it when the test ends.
func Start(t testing.TB, opts Options) *Server {
	t.Helper()
	s := New(opts)
	t.Cleanup(s.Close)
	return s
}

// URL is the server's root, e.g. http://127.0.0.1:41234.
func (s *Server) URL() string { return s.srv.URL }

// Close shuts the server down, closing open connections.
func (s *Server) Close() {
	s.srv.CloseClientConnections()
	s.srv.Close()
}

// SetFail changes the failure mode.
func (s *Server) SetFail(m FailMode) {
	s.mu.Lock()
	s.fail = m
	s.mu.Unlock()
}

// AddModel registers (or replaces) a model.
func (s *Server) AddModel(m Model) {
	if m.Recipe == "" {
		m.Recipe = "llamacpp"
	}
	m.Labels = append([]string(nil), m.Labels...)
	s.mu.Lock()
	s.models[m.Name] = &m
	s.mu.Unlock()
}

// Requests returns the last requests received (at most 1000), oldest first.
func (s *Server) Requests() []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Request(nil), s.requests...)
}

// InFlight returns the number of chat and embeddings requests being
// answered now, and the most there have been at once.
func (s *Server) InFlight() (now, most int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.inflight, s.maxInflight
}

// Pulls returns how many successful pulls a model (canonical id) had.
func (s *Server) Pulls(name string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.pulls[name]
}

// Loads returns how many loads a model (canonical id) had.
func (s *Server) Loads(name string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.loads[name]
}

// Loaded returns the canonical ids of the loaded models.
func (s *Server) Loaded() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]string, 0, len(s.loaded))
	for _, l := range s.loaded {
		out = append(out, l.name)
	}
	return out
}

// LoadedOptions returns the recipe options a loaded model was loaded with.
func (s *Server) LoadedOptions(name string) (map[string]any, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, l := range s.loaded {
		if l.name == name {
			out := map[string]any{}
			for k, v := range l.options {
				out[k] = v
			}
			return out, true
		}
	}
	return nil, false
}

var prefixes = []string{"/api/v0/", "/api/v1/", "/v0/", "/v1/"}

// postOnly are the endpoints answering GET with 405.
var postOnly = map[string]bool{
	"pull": true, "load": true, "unload": true, "delete": true, "install": true, "uninstall": true,
	"chat/completions": true, "completions": true, "embeddings": true, "responses": true, "rerank": true,
	"tokenize": true, "models/register": true,
}

func (s *Server) serveHTTP(w http.ResponseWriter, r *http.Request) {
	s.record(r)
	if strings.HasSuffix(r.URL.Path, "/chat/completions") || strings.HasSuffix(r.URL.Path, "/embeddings") {
		s.mu.Lock()
		s.inflight++
		s.maxInflight = max(s.maxInflight, s.inflight)
		s.mu.Unlock()
		defer func() {
			s.mu.Lock()
			s.inflight--
			s.mu.Unlock()
		}()
	}
	if r.URL.Path == "/live" {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			writeJSON(w, http.StatusMethodNotAllowed, map[string]any{"error": "Method Not Allowed"})
			return
		}
		writeJSON(w, http.StatusOK, map[string]any{"status": "ok"})
		return
	}
	var route string
	for _, p := range prefixes {
		if rest, ok := strings.CutPrefix(r.URL.Path, p); ok {
			route = strings.TrimSuffix(rest, "/")
			break
		}
	}
	if route == "" {
		notFound(w, r)
		return
	}
	if !s.authorized(r) {
		writeJSON(w, http.StatusUnauthorized, map[string]any{"error": "Invalid or missing API key"})
		return
	}
	if postOnly[route] && r.Method != http.MethodPost {
		if r.Method == http.MethodGet {
			writeJSON(w, http.StatusMethodNotAllowed, map[string]any{"error": "Method Not Allowed. Use POST for this endpoint"})
		} else {
			writeJSON(w, http.StatusMethodNotAllowed, map[string]any{"error": "Method Not Allowed"})
		}
		return
	}
	switch {
	case route == "health" && r.Method == http.MethodGet:
		s.handleHealth(w)
	case route == "models" && r.Method == http.MethodGet:
		s.handleModels(w, r)
	case strings.HasPrefix(route, "models/") && r.Method == http.MethodGet:
		s.handleModel(w, strings.TrimPrefix(route, "models/"))
	case route == "stats" && r.Method == http.MethodGet:
		s.handleStats(w)
	case route == "system-info" && r.Method == http.MethodGet:
		writeJSON(w, http.StatusOK, systemInfo)
	case route == "slots" && r.Method == http.MethodGet:
		s.handleSlots(w)
	case route == "pull":
		s.handlePull(w, r)
	case route == "load":
		s.handleLoad(w, r)
	case route == "unload":
		s.handleUnload(w, r)
	case route == "chat/completions":
		s.handleChat(w, r)
	case route == "embeddings":
		s.handleEmbeddings(w, r)
	default:
		notFound(w, r)
	}
}

// authorized applies LEMONADE_API_KEY: when set, a Bearer token equal to
// the API key or the admin key is required.
func (s *Server) authorized(r *http.Request) bool {
	if s.opts.APIKey == "" {
		return true
	}
	tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	return ok && (tok == s.opts.APIKey || tok == s.opts.AdminKey)
}

func (s *Server) record(r *http.Request) {
	var body []byte
	if r.Body != nil {
		body, _ = readBody(r)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.requests) >= maxRecorded {
		s.requests = append(s.requests[:0], s.requests[1:]...)
	}
	s.requests = append(s.requests, Request{Method: r.Method, Path: r.URL.Path, Authorization: r.Header.Get("Authorization"), Body: body})
}

func notFound(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusNotFound, map[string]any{"error": map[string]any{
		"message": "The requested endpoint does not exist", "path": r.URL.Path, "type": "not_found",
	}})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// openAIError writes the OpenAI-style error object Lemonade uses on its
// OpenAI endpoints.
func openAIError(w http.ResponseWriter, status int, typ, code, msg string) {
	e := map[string]any{"message": msg, "type": typ}
	if code != "" {
		e["code"] = code
	}
	writeJSON(w, status, map[string]any{"error": e})
}
