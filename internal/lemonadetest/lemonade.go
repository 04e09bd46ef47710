package lemonadetest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
)

const maxBody = 8 << 20

// readBody reads the request body and puts it back for the handlers.
func readBody(r *http.Request) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(r.Body, maxBody))
	r.Body.Close()
	r.Body = io.NopCloser(bytes.NewReader(b))
	return b, err
}

// decode reads a JSON object body; an empty body is an empty object.
func decode(r *http.Request, v any) error {
	b, err := io.ReadAll(r.Body)
	if err != nil {
		return err
	}
	if len(bytes.TrimSpace(b)) == 0 {
		b = []byte("{}")
	}
	return json.Unmarshal(b, v)
}

// resolve finds a model by canonical id or bare name (user models win).
// The caller holds s.mu.
func (s *Server) resolve(name string) *Model {
	if m, ok := s.models[name]; ok {
		return m
	}
	if m, ok := s.models["user."+name]; ok {
		return m
	}
	return s.models[strings.TrimPrefix(name, "builtin.")]
}

// publicID is the id /v1/models shows: bare for user models.
func publicID(m *Model) string { return strings.TrimPrefix(m.Name, "user.") }

func modelType(m *Model) string {
	if slices.Contains(m.Labels, "embeddings") || slices.Contains(m.Labels, "embedding") {
		return "embedding"
	}
	if slices.Contains(m.Labels, "reranking") {
		return "reranking"
	}
	return "llm"
}

func (s *Server) handleHealth(w http.ResponseWriter) {
	s.mu.Lock()
	defer s.mu.Unlock()
	all := make([]map[string]any, 0, len(s.loaded))
	recent := ""
	var recentUse time.Time
	for _, l := range s.loaded {
		if l.lastUse.After(recentUse) || recent == "" {
			recent, recentUse = l.name, l.lastUse
		}
		all = append(all, map[string]any{
			"model_name":     l.name,
			"checkpoint":     l.model.Checkpoint,
			"last_use":       float64(l.lastUse.UnixMilli()) / 1000,
			"type":           l.typ,
			"device":         "gpu",
			"pinned":         false,
			"is_busy":        false,
			"is_streaming":   false,
			"recipe":         l.model.Recipe,
			"pid":            l.pid,
			"launch_command": []string{"llama-server", "-m", l.model.Checkpoint, "--port", strconv.Itoa(8000 + l.pid%1000)},
			"recipe_options": l.options,
			"backend_url":    l.backendURL,
		})
	}
	var loaded any
	if recent != "" {
		loaded = recent
	}
	limit := s.opts.MaxLoadedModels
	writeJSON(w, http.StatusOK, map[string]any{
		"status":            "ok",
		"version":           s.opts.Version,
		"model_loaded":      loaded,
		"all_models_loaded": all,
		"pinned_models":     map[string]int{"llm": 0, "embedding": 0, "reranking": 0, "transcription": 0, "image": 0, "tts": 0},
		"max_models":        map[string]int{"llm": limit, "embedding": limit, "reranking": limit, "transcription": limit, "image": limit, "tts": limit},
		"telemetry":         map[string]any{"enabled": false},
		"update_check_done": true,
	})
}

func (s *Server) modelJSON(m *Model) map[string]any {
	return map[string]any{
		"id":                 publicID(m),
		"created":            1767225600,
		"object":             "model",
		"owned_by":           "lemonade",
		"checkpoint":         m.Checkpoint,
		"recipe":             m.Recipe,
		"size":               m.Size,
		"max_context_window": 262144,
		"context_length":     262144,
		"downloaded":         m.Downloaded,
		"suggested":          true,
		"update_available":   false,
		"labels":             m.Labels,
	}
}

func (s *Server) handleModels(w http.ResponseWriter, r *http.Request) {
	showAll := r.URL.Query().Get("show_all") == "true"
	s.mu.Lock()
	names := make([]string, 0, len(s.models))
	for n := range s.models {
		names = append(names, n)
	}
	slices.Sort(names)
	data := []map[string]any{}
	for _, n := range names {
		if m := s.models[n]; m.Downloaded || showAll {
			data = append(data, s.modelJSON(m))
		}
	}
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, map[string]any{"object": "list", "data": data})
}

func (s *Server) handleModel(w http.ResponseWriter, id string) {
	s.mu.Lock()
	m := s.resolve(id)
	var out map[string]any
	if m != nil {
		out = s.modelJSON(m)
	}
	s.mu.Unlock()
	if m == nil {
		openAIError(w, http.StatusNotFound, "not_found", "model_not_found", fmt.Sprintf("Model '%s' was not found.", id))
		return
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) handleStats(w http.ResponseWriter) {
	s.mu.Lock()
	st := s.stats
	s.mu.Unlock()
	var cache any // null: llama-server in the stand-in reports no cache use
	writeJSON(w, http.StatusOK, map[string]any{
		"time_to_first_token":     st.ttft,
		"tokens_per_second":       st.tps,
		"input_tokens":            st.input,
		"output_tokens":           st.output,
		"prompt_tokens":           st.prompt,
		"cache_tokens":            cache,
		"request_count_total":     st.requests,
		"input_tokens_total":      st.inputTotal,
		"output_tokens_total":     st.outputTot,
		"prompt_tokens_total":     st.promptTotal,
		"cache_tokens_total":      0,
		"routing_decisions_total": 0,
		"routing_switches_total":  0,
	})
}

// handleSlots answers like llama-server's /slots of the most recently used
// loaded model: one slot per -np, each with ctx_size / np context.
func (s *Server) handleSlots(w http.ResponseWriter) {
	s.mu.Lock()
	var recent *loadedModel
	for _, l := range s.loaded {
		if l.typ == "llm" && (recent == nil || l.lastUse.After(recent.lastUse)) {
			recent = l
		}
	}
	var np, ctx int
	if recent != nil {
		np, ctx = slotsOf(recent.options)
	}
	s.mu.Unlock()
	if recent == nil {
		openAIError(w, http.StatusNotFound, "not_found", "", "No model loaded")
		return
	}
	slots := make([]map[string]any, 0, np)
	for i := range np {
		slots = append(slots, map[string]any{
			"id": i, "id_task": -1, "n_ctx": ctx / np, "speculative": false, "is_processing": false,
			"params":     map[string]any{"temperature": 1.0, "top_k": 64, "top_p": 0.95},
			"next_token": map[string]any{"has_next_token": false, "has_new_line": false, "n_remain": -1, "n_decoded": 0},
		})
	}
	writeJSON(w, http.StatusOK, slots)
}

// slotsOf reads -np and the context size from a model's load options.
func slotsOf(opts map[string]any) (np, ctx int) {
	np, ctx = 1, 4096
	if c, ok := opts["ctx_size"].(float64); ok && c > 0 {
		ctx = int(c)
	}
	args, _ := opts["llamacpp_args"].(string)
	f := strings.Fields(args)
	for i, a := range f {
		if (a == "-np" || a == "--parallel") && i+1 < len(f) {
			if n, err := strconv.Atoi(f[i+1]); err == nil && n > 0 {
				np = n
			}
		}
	}
	return np, ctx
}

type pullBody struct {
	ModelName  string   `json:"model_name"`
	Checkpoint string   `json:"checkpoint"`
	Recipe     string   `json:"recipe"`
	MMProj     string   `json:"mmproj"`
	Vision     bool     `json:"vision"`
	Embedding  bool     `json:"embedding"`
	Reranking  bool     `json:"reranking"`
	Reasoning  bool     `json:"reasoning"`
	Labels     []string `json:"labels"`
	Stream     bool     `json:"stream"`
}

func (s *Server) handlePull(w http.ResponseWriter, r *http.Request) {
	var b pullBody
	if err := decode(r, &b); err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]any{"error": "Invalid JSON: " + err.Error()})
		return
	}
	if b.ModelName == "" {
		writeJSON(w, http.StatusBadRequest, map[string]any{"error": "model_name is required"})
		return
	}
	s.mu.Lock()
	m := s.resolve(b.ModelName)
	fail := s.fail
	s.mu.Unlock()
	if b.Checkpoint != "" {
		if !strings.HasPrefix(b.ModelName, "user.") {
			writeJSON(w, http.StatusBadRequest, map[string]any{"error": fmt.Sprintf("Model name '%s' must use the 'user.' namespace to register a new model", b.ModelName)})
			return
		}
		labels := append([]string(nil), b.Labels...)
		if b.Vision || b.MMProj != "" {
			labels = appendUnique(labels, "vision")
		}
		if b.Embedding {
			labels = appendUnique(labels, "embeddings")
		}
		if b.Reranking {
			labels = appendUnique(labels, "reranking")
		}
		if b.Reasoning {
			labels = appendUnique(labels, "reasoning")
		}
		if (slices.Contains(labels, "embeddings") || slices.Contains(labels, "embedding")) && slices.Contains(labels, "reranking") {
			writeJSON(w, http.StatusBadRequest, map[string]any{"error": fmt.Sprintf("Model '%s': a model deploys in exactly one mode, but these labels name two: 'embeddings' and 'reranking'. Register one model per mode.", b.ModelName)})
			return
		}
		recipe := b.Recipe
		if recipe == "" {
			writeJSON(w, http.StatusBadRequest, map[string]any{"error": "recipe is required to register a model"})
			return
		}
		nm := Model{Name: b.ModelName, Checkpoint: b.Checkpoint, Recipe: recipe, Labels: labels, MMProj: b.MMProj, Size: 1}
		if m != nil {
			nm.Downloaded = m.Downloaded && m.Checkpoint == b.Checkpoint
		}
		s.AddModel(nm)
		s.mu.Lock()
		m = s.models[b.ModelName]
		s.mu.Unlock()
	}
	if m == nil {
		writeJSON(w, http.StatusNotFound, map[string]any{"status": "error", "message": "Model not found: " + b.ModelName})
		return
	}
	name := m.Name
	if !b.Stream {
		if fail == FailPull {
			writeJSON(w, http.StatusInternalServerError, map[string]any{"status": "error", "message": "Download failed: connection reset by Hugging Face"})
			return
		}
		s.finishPull(name)
		writeJSON(w, http.StatusOK, map[string]any{"status": "success", "message": "Installed model: " + b.ModelName})
		return
	}
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-cache")
	w.WriteHeader(http.StatusOK)
	fl, _ := w.(http.Flusher)
	const fileSize = 1 << 30
	steps := s.opts.PullSteps
	for i := 1; i <= steps; i++ {
		if !s.wait(r) {
			return
		}
		if fail == FailPull && i > steps/2 {
			writeEvent(w, "error", map[string]any{"error": "Download failed: connection reset by Hugging Face"})
			flush(fl)
			return
		}
		writeEvent(w, "progress", map[string]any{
			"file": "model.gguf", "file_index": 1, "total_files": 1,
			"bytes_downloaded": int64(fileSize) * int64(i) / int64(steps), "bytes_total": fileSize,
			"percent": 100 * i / steps,
		})
		flush(fl)
	}
	s.finishPull(name)
	writeEvent(w, "complete", map[string]any{"file_index": 1, "total_files": 1, "percent": 100})
	flush(fl)
}

func (s *Server) finishPull(name string) {
	s.mu.Lock()
	if m := s.models[name]; m != nil {
		m.Downloaded = true
	}
	s.pulls[name]++
	s.mu.Unlock()
}

func writeEvent(w io.Writer, event string, v any) {
	b, _ := json.Marshal(v)
	fmt.Fprintf(w, "event: %s\ndata: %s\n\n", event, b)
}

func flush(f http.Flusher) {
	if f != nil {
		f.Flush()
	}
}

// wait sleeps ChunkDelay, then receives from Gate when set; false when
// the client went away.
func (s *Server) wait(r *http.Request) bool {
	if s.opts.ChunkDelay > 0 {
		t := time.NewTimer(s.opts.ChunkDelay)
		defer t.Stop()
		select {
		case <-t.C:
		case <-r.Context().Done():
			return false
		}
	}
	if s.opts.Gate != nil {
		select {
		case <-s.opts.Gate:
		case <-r.Context().Done():
			return false
		}
	}
	return r.Context().Err() == nil
}

// reservedArgs are llama-server flags Lemonade refuses in llamacpp_args.
var reservedArgs = []string{
	"-m", "--model", "-hf", "--hf-repo", "-mr", "--hf-file", "-mf", "--ctx-size", "-c", "--device", "-dev",
	"--port", "--jinja", "--no-jinja", "--metrics", "--mmproj", "-mm", "-mmu", "--mmproj-url", "--no-mmproj",
	"--mmproj-auto", "--no-mmproj-auto", "--model-draft", "-md", "--spec-draft-model", "--embeddings",
	"--embedding", "--reranking", "--rerank",
}

type loadBody struct {
	ModelName       string          `json:"model_name"`
	Pinned          bool            `json:"pinned"`
	SaveOptions     bool            `json:"save_options"`
	CtxSize         json.RawMessage `json:"ctx_size"`
	LlamacppBackend string          `json:"llamacpp_backend"`
	LlamacppArgs    *string         `json:"llamacpp_args"`
}

func (s *Server) handleLoad(w http.ResponseWriter, r *http.Request) {
	var b loadBody
	if err := decode(r, &b); err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]any{"status": "error", "message": "Invalid JSON: " + err.Error()})
		return
	}
	if b.ModelName == "" {
		writeJSON(w, http.StatusBadRequest, map[string]any{"status": "error", "message": "model_name is required"})
		return
	}
	opts := map[string]any{}
	if len(b.CtxSize) > 0 && string(b.CtxSize) != "null" {
		var n float64
		if err := json.Unmarshal(b.CtxSize, &n); err != nil {
			writeJSON(w, http.StatusBadRequest, map[string]any{"status": "error", "message": "ctx_size must be a number"})
			return
		}
		opts["ctx_size"] = n
	}
	if b.LlamacppBackend != "" {
		opts["llamacpp_backend"] = b.LlamacppBackend
	}
	if b.LlamacppArgs != nil {
		for _, a := range strings.Fields(*b.LlamacppArgs) {
			name, _, _ := strings.Cut(a, "=")
			if slices.Contains(reservedArgs, name) {
				writeJSON(w, http.StatusBadRequest, map[string]any{"status": "error", "message": fmt.Sprintf(
					"Invalid custom llama-server arguments: '%s' is managed by Lemonade Server. Reserved arguments: %s", name, strings.Join(reservedArgs, ", "))})
				return
			}
		}
		opts["llamacpp_args"] = *b.LlamacppArgs
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	m := s.resolve(b.ModelName)
	if m == nil {
		writeJSON(w, http.StatusNotFound, map[string]any{"status": "error", "message": "Model not found: " + b.ModelName})
		return
	}
	s.loadLocked(m, opts)
	s.loads[m.Name]++
	writeJSON(w, http.StatusOK, map[string]any{"status": "success", "message": "Loaded model: " + b.ModelName})
}

// loadLocked loads (or reloads) a model, installing it if needed and
// evicting the least recently used model of its type beyond the limit.
func (s *Server) loadLocked(m *Model, opts map[string]any) *loadedModel {
	m.Downloaded = true
	s.loaded = slices.DeleteFunc(s.loaded, func(l *loadedModel) bool { return l.name == m.Name })
	typ := modelType(m)
	for {
		var same []*loadedModel
		for _, l := range s.loaded {
			if l.typ == typ {
				same = append(same, l)
			}
		}
		if s.opts.MaxLoadedModels < 0 || len(same) < s.opts.MaxLoadedModels {
			break
		}
		oldest := slices.MinFunc(same, func(a, b *loadedModel) int { return a.lastUse.Compare(b.lastUse) })
		s.loaded = slices.DeleteFunc(s.loaded, func(l *loadedModel) bool { return l == oldest })
	}
	pid := 4000 + len(s.loads) + len(s.loaded)
	l := &loadedModel{
		name: m.Name, model: m, typ: typ, lastUse: time.Now(), options: opts,
		pid: pid, backendURL: fmt.Sprintf("http://127.0.0.1:%d/v1", 8001+len(s.loaded)),
	}
	s.loaded = append(s.loaded, l)
	return l
}

func (s *Server) handleUnload(w http.ResponseWriter, r *http.Request) {
	var b struct {
		ModelName string `json:"model_name"`
	}
	if err := decode(r, &b); err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]any{"status": "error", "message": "Invalid JSON: " + err.Error()})
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if b.ModelName == "" {
		s.loaded = nil
		writeJSON(w, http.StatusOK, map[string]any{"status": "success", "message": "Model unloaded successfully"})
		return
	}
	m := s.resolve(b.ModelName)
	n := len(s.loaded)
	if m != nil {
		s.loaded = slices.DeleteFunc(s.loaded, func(l *loadedModel) bool { return l.name == m.Name })
	}
	if m == nil || len(s.loaded) == n {
		writeJSON(w, http.StatusNotFound, map[string]any{"status": "error", "message": "Model not found: " + b.ModelName})
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"status": "success", "message": "Model unloaded successfully"})
}

func appendUnique(list []string, v string) []string {
	if slices.Contains(list, v) {
		return list
	}
	return append(list, v)
}

var systemInfo = map[string]any{
	"OS Version":      "Linux-6.8.0-x86_64-with-glibc2.39",
	"Processor":       "AMD Ryzen AI MAX+ 395 w/ Radeon 8060S",
	"Physical Memory": "128.0 GB",
	"model_storage": map[string]any{
		"path": "/var/cache/huggingface", "used_bytes": 123456789, "total_bytes": 987654321, "free_bytes": 864197532,
	},
	"devices": map[string]any{
		"cpu":     map[string]any{"name": "AMD Ryzen AI MAX+ 395 w/ Radeon 8060S", "cores": 16, "threads": 32, "available": true, "family": "x86_64"},
		"amd_gpu": []any{map[string]any{"name": "AMD Radeon 8060S", "vram_gb": 96.0, "available": true, "family": "gfx1151"}},
	},
	"recipes": map[string]any{
		"llamacpp": map[string]any{
			"default_backend": "vulkan",
			"backends": map[string]any{
				"vulkan": map[string]any{"devices": []any{"cpu", "amd_gpu"}, "state": "installed", "message": "", "action": "", "version": "b7869"},
				"cpu":    map[string]any{"devices": []any{"cpu"}, "state": "installed", "message": "", "action": "", "version": "b7869"},
			},
		},
	},
}
