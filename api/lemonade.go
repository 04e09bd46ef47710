package api

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/thon-dev/thon/llm"
)

// LemonadeOptions configures the Lemonade Server routes (/api/lemonade/...).
type LemonadeOptions struct {
	// Client talks to Lemonade Server. Required.
	Client *llm.Client
	// Watcher returns the health watcher polling Client's server, or nil
	// when none runs (yet); the status route then checks on the spot.
	// Nil means no watcher ever runs.
	Watcher func() *llm.Watcher
	// ConfigDir is Lemonade's configuration directory (config.json,
	// user_models.json, recipe_options.json), rewritten by rescale; empty
	// means llm.DefaultConfigDir.
	ConfigDir string
	// Rescaler rescales ConfigDir, one rescale at a time; every face
	// rescaling it must share one (the thon app keeps one across config
	// reloads). Nil means rescale answers 503.
	Rescaler *llm.Rescaler
}

// lemonadeRoutes registers the Lemonade Server routes: the health
// watcher's state, reads proxied to Lemonade, model actions and rescale.
func (s *Server) lemonadeRoutes() {
	s.handleLemonade("GET", "/api/lemonade/status", s.lemonadeStatus)
	s.handleLemonade("GET", "/api/lemonade/models", s.lemonadeModels)
	s.handleLemonade("GET", "/api/lemonade/health", s.lemonadeHealth)
	s.handleLemonade("GET", "/api/lemonade/stats", s.lemonadeStats)
	s.handleLemonade("GET", "/api/lemonade/slots", s.lemonadeSlots)
	s.handleLemonade("GET", "/api/lemonade/system-info", s.lemonadeSystemInfo)
	s.handleLemonade("POST", "/api/lemonade/pull", s.lemonadePull)
	s.handleLemonade("POST", "/api/lemonade/load", s.lemonadeLoad)
	s.handleLemonade("POST", "/api/lemonade/unload", s.lemonadeUnload)
	s.handleLemonade("POST", "/api/lemonade/rescale", s.lemonadeRescale)
}

// handleLemonade registers a route that needs Options.Lemonade; without it
// the route answers 503.
func (s *Server) handleLemonade(method, pattern string, h handlerFunc) {
	s.handle(method, pattern, func(w http.ResponseWriter, r *http.Request) error {
		if s.lemonade == nil || s.lemonade.Client == nil {
			return errorf(http.StatusServiceUnavailable, "", "lemonade is not configured")
		}
		return h(w, r)
	})
}

// upstream maps an error of the Lemonade client (see lemonadeHTTPError).
func (s *Server) upstream(err error) error {
	return lemonadeHTTPError(s.lemonade.Client.BaseURL(), err)
}

// lemonadeStatus is the answer of GET /api/lemonade/status.
type lemonadeStatus struct {
	// URL is the Lemonade Server thon talks to.
	URL string `json:"url"`
	// Status is up, down, unauthorized (the API key was refused) or
	// unknown (not checked yet).
	Status    string     `json:"status"`
	LastCheck *time.Time `json:"last_check,omitempty"`
	LastError string     `json:"last_error,omitempty"`
	Version   string     `json:"version,omitempty"`
	// LoadedModels are the models loaded at the last successful check.
	LoadedModels []string `json:"loaded_models"`
	// Watched is true when a background watcher keeps the state current.
	Watched bool `json:"watched"`
}

// lemonadeStatus answers the health watcher's last state; ?refresh=true
// (or no running watcher) checks Lemonade now. Lemonade being down is a
// state, answered with 200.
func (s *Server) lemonadeStatus(w http.ResponseWriter, r *http.Request) error {
	refresh, err := lemonadeFlag(r, "refresh")
	if err != nil {
		return err
	}
	var wt *llm.Watcher
	if s.lemonade.Watcher != nil {
		wt = s.lemonade.Watcher()
	}
	watched := wt != nil
	var st llm.WatcherState
	switch {
	case wt == nil:
		st = llm.NewWatcher(s.lemonade.Client, 0).Check(r.Context())
	case refresh:
		st = wt.Check(r.Context())
	default:
		st = wt.State()
	}
	out := lemonadeStatus{
		URL:          s.lemonade.Client.BaseURL(),
		Status:       st.Status,
		LastError:    st.LastError,
		Version:      st.Version,
		LoadedModels: st.LoadedModels,
		Watched:      watched,
	}
	if !st.LastCheck.IsZero() {
		t := st.LastCheck.UTC()
		out.LastCheck = &t
	}
	if out.LoadedModels == nil {
		out.LoadedModels = []string{}
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

// lemonadeModelList is the answer of GET /api/lemonade/models.
type lemonadeModelList struct {
	Models []llm.Model `json:"models"`
}

func (s *Server) lemonadeModels(w http.ResponseWriter, r *http.Request) error {
	all, err := lemonadeFlag(r, "show_all")
	if err != nil {
		return err
	}
	models, err := s.lemonade.Client.Models(r.Context(), all)
	if err != nil {
		return s.upstream(err)
	}
	writeJSON(w, http.StatusOK, lemonadeModelList{Models: models})
	return nil
}

func (s *Server) lemonadeHealth(w http.ResponseWriter, r *http.Request) error {
	h, err := s.lemonade.Client.Health(r.Context())
	if err != nil {
		return s.upstream(err)
	}
	if h.AllModelsLoaded == nil {
		h.AllModelsLoaded = []llm.LoadedModel{}
	}
	writeJSON(w, http.StatusOK, h)
	return nil
}

func (s *Server) lemonadeStats(w http.ResponseWriter, r *http.Request) error {
	st, err := s.lemonade.Client.Stats(r.Context())
	if err != nil {
		return s.upstream(err)
	}
	writeJSON(w, http.StatusOK, st)
	return nil
}

// lemonadeSlotList is the answer of GET /api/lemonade/slots.
type lemonadeSlotList struct {
	Slots []llm.Slot `json:"slots"`
}

func (s *Server) lemonadeSlots(w http.ResponseWriter, r *http.Request) error {
	slots, err := s.lemonade.Client.Slots(r.Context())
	if err != nil {
		return s.upstream(err)
	}
	writeJSON(w, http.StatusOK, lemonadeSlotList{Slots: slots})
	return nil
}

func (s *Server) lemonadeSystemInfo(w http.ResponseWriter, r *http.Request) error {
	info, err := s.lemonade.Client.SystemInfo(r.Context())
	if err != nil {
		return s.upstream(err)
	}
	var obj map[string]json.RawMessage
	if json.Unmarshal(info, &obj) != nil || obj == nil {
		return errorf(http.StatusBadGateway, "", "lemonade at %s: system-info is not a JSON object", s.lemonade.Client.BaseURL())
	}
	writeJSON(w, http.StatusOK, info)
	return nil
}

// lemonadeAction is the answer of pull, load and unload.
type lemonadeAction struct {
	Status    string `json:"status"`
	ModelName string `json:"model_name"`
	Message   string `json:"message"`
}

// lemonadeModelName checks a model name given to Lemonade: required unless
// empty is allowed, bounded, and free of control characters.
func lemonadeModelName(name string, required bool) error {
	switch {
	case name == "" && required:
		return badRequest("model_name", "model_name: required")
	case len(name) > 256:
		return badRequest("model_name", "model_name: longer than 256 bytes")
	case strings.ContainsFunc(name, func(r rune) bool { return r < ' ' || r == 0x7f }):
		return badRequest("model_name", "model_name: contains a control character")
	}
	return nil
}

// checkPull checks a pull request before it goes to Lemonade.
func checkPull(req llm.PullRequest) error {
	if err := lemonadeModelName(req.ModelName, true); err != nil {
		return err
	}
	if req.Checkpoint != "" && !strings.HasPrefix(req.ModelName, llm.UserPrefix) {
		return badRequest("model_name", "model_name: %q must be in the user. namespace (user.<name>) to register a checkpoint", req.ModelName)
	}
	for _, f := range []struct{ name, v string }{
		{"checkpoint", req.Checkpoint}, {"recipe", req.Recipe}, {"mmproj", req.MMProj},
	} {
		if strings.ContainsFunc(f.v, func(r rune) bool { return r <= ' ' || r == 0x7f }) {
			return badRequest(f.name, "%s: %q must not contain spaces or control characters", f.name, f.v)
		}
	}
	return nil
}

// pullEvent is one event of a streamed pull, as an SSE event's data or an
// NDJSON line.
type pullEvent struct {
	// Event is progress, complete or error.
	Event     string `json:"event"`
	ModelName string `json:"model_name"`
	*llm.PullProgress
	Error string `json:"error,omitempty"`
}

// lemonadePull downloads a model through Lemonade. With Accept:
// text/event-stream (SSE) or application/x-ndjson, progress is streamed
// as it comes; otherwise the answer waits for the end of the download.
// The status of a stream is 200 once the first event is written; a
// failure after that is an error event.
func (s *Server) lemonadePull(w http.ResponseWriter, r *http.Request) error {
	var req llm.PullRequest
	if err := s.decodeJSON(w, r, &req); err != nil {
		return err
	}
	if err := checkPull(req); err != nil {
		return err
	}
	mode := streamMode(r.Header.Get("Accept"))
	if mode == "" {
		if err := s.lemonade.Client.Pull(r.Context(), req, nil); err != nil {
			return s.upstream(err)
		}
		writeJSON(w, http.StatusOK, lemonadeAction{Status: "success", ModelName: req.ModelName, Message: "pulled " + req.ModelName})
		return nil
	}

	st := &eventStream{w: w, mode: mode}
	err := s.lemonade.Client.Pull(r.Context(), req, func(p llm.PullProgress) {
		ev := pullEvent{Event: "progress", ModelName: req.ModelName, PullProgress: &p}
		if p.Complete {
			ev.Event = "complete"
		}
		st.send(ev)
	})
	if err == nil {
		if !st.started { // Lemonade answered without progress events
			st.send(pullEvent{Event: "complete", ModelName: req.ModelName, PullProgress: &llm.PullProgress{Percent: 100, Complete: true}})
		}
		return nil
	}
	err = s.upstream(err)
	if !st.started {
		return err // nothing written yet: a plain JSON error
	}
	msg := err.Error()
	st.send(pullEvent{Event: "error", ModelName: req.ModelName, Error: msg})
	return nil
}

// streamMode picks the streaming format the client asked for in Accept:
// "sse", "ndjson" or "" (no streaming).
func streamMode(accept string) string {
	for part := range strings.SplitSeq(strings.ToLower(accept), ",") {
		mt, _, _ := strings.Cut(part, ";")
		switch strings.TrimSpace(mt) {
		case "text/event-stream":
			return "sse"
		case "application/x-ndjson", "application/ndjson":
			return "ndjson"
		}
	}
	return ""
}

// eventStream writes pull events as SSE or NDJSON, starting the answer
// with the first event.
type eventStream struct {
	w       http.ResponseWriter
	mode    string
	started bool
}

func (e *eventStream) send(ev pullEvent) {
	if !e.started {
		h := e.w.Header()
		if e.mode == "sse" {
			h.Set("Content-Type", "text/event-stream")
		} else {
			h.Set("Content-Type", "application/x-ndjson")
		}
		h.Set("Cache-Control", "no-store")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("X-Accel-Buffering", "no")
		e.w.WriteHeader(http.StatusOK)
		e.started = true
	}
	b, _ := json.Marshal(ev) // plain strings and numbers: always marshals
	if e.mode == "sse" {
		fmt.Fprintf(e.w, "event: %s\ndata: %s\n\n", ev.Event, b)
	} else {
		e.w.Write(append(b, '\n'))
	}
	_ = http.NewResponseController(e.w).Flush()
}

// lemonadeLoad loads a model, with optional recipe options that take
// precedence over recipe_options.json.
func (s *Server) lemonadeLoad(w http.ResponseWriter, r *http.Request) error {
	var req llm.LoadRequest
	if err := s.decodeJSON(w, r, &req); err != nil {
		return err
	}
	if err := checkLoad(req); err != nil {
		return err
	}
	if err := s.lemonade.Client.Load(r.Context(), req); err != nil {
		return s.upstream(err)
	}
	writeJSON(w, http.StatusOK, lemonadeAction{Status: "success", ModelName: req.ModelName, Message: "loaded " + req.ModelName})
	return nil
}

// checkLoad checks a load request before it goes to Lemonade.
func checkLoad(req llm.LoadRequest) error {
	if err := lemonadeModelName(req.ModelName, true); err != nil {
		return err
	}
	if req.CtxSize < -1 || req.CtxSize > math.MaxInt32 {
		return badRequest("ctx_size", "ctx_size: %d is not -1 (automatic) or a context size up to %d", req.CtxSize, math.MaxInt32)
	}
	if strings.ContainsFunc(req.LlamacppBackend, func(r rune) bool { return r <= ' ' || r == 0x7f }) {
		return badRequest("llamacpp_backend", "llamacpp_backend: %q is not a backend name", req.LlamacppBackend)
	}
	args, err := llm.SplitArgs(req.LlamacppArgs)
	if err != nil {
		return badRequest("llamacpp_args", "llamacpp_args: %v", err)
	}
	// -np is thon's in extra arguments, but a load gives the whole set, as
	// recipe_options.json holds it.
	args = slices.DeleteFunc(args, func(a string) bool {
		name, _, _ := strings.Cut(a, "=")
		return name == "-np" || name == "--parallel"
	})
	if err := llm.CheckLlamacppArgs(args); err != nil {
		return badRequest("llamacpp_args", "%v", err)
	}
	return nil
}

// lemonadeUnloadRequest is the optional body of POST /api/lemonade/unload.
type lemonadeUnloadRequest struct {
	// ModelName is the model to unload; empty unloads every model.
	ModelName string `json:"model_name"`
}

func (s *Server) lemonadeUnload(w http.ResponseWriter, r *http.Request) error {
	var req lemonadeUnloadRequest
	if err := s.decodeOptionalJSON(w, r, &req); err != nil {
		return err
	}
	if err := lemonadeModelName(req.ModelName, false); err != nil {
		return err
	}
	if err := s.lemonade.Client.Unload(r.Context(), req.ModelName); err != nil {
		return s.upstream(err)
	}
	msg := "unloaded " + req.ModelName
	if req.ModelName == "" {
		msg = "unloaded every model"
	}
	writeJSON(w, http.StatusOK, lemonadeAction{Status: "success", ModelName: req.ModelName, Message: msg})
	return nil
}

// lemonadeRescaleRequest is the optional body of POST /api/lemonade/rescale.
type lemonadeRescaleRequest struct {
	// Users is the number of users to size for; absent means the number
	// of users in the database.
	Users *int `json:"users"`
	// DryRun reports what would change and changes nothing.
	DryRun bool `json:"dry_run"`
}

// lemonadeRescale regenerates Lemonade's configuration for a number of
// users and reloads the loaded models with the new options.
func (s *Server) lemonadeRescale(w http.ResponseWriter, r *http.Request) error {
	if s.lemonade.Rescaler == nil {
		return errorf(http.StatusServiceUnavailable, "", "lemonade rescale is not configured")
	}
	var req lemonadeRescaleRequest
	if err := s.decodeOptionalJSON(w, r, &req); err != nil {
		return err
	}
	var users int
	if req.Users != nil {
		users = *req.Users
	} else {
		list, err := s.store.ListUsers(r.Context())
		if err != nil {
			return err
		}
		if len(list) == 0 {
			return badRequest("users", "users: the database has no users; import groups first or give {\"users\": N}")
		}
		users = len(list)
	}
	// Finish even when the client goes away, so that files and loaded
	// models are never left half done.
	res, err := s.lemonade.Rescaler.Rescale(context.WithoutCancel(r.Context()), llm.RescaleOptions{
		ConfigDir: s.lemonade.ConfigDir,
		Users:     users,
		DryRun:    req.DryRun,
		Client:    s.lemonade.Client,
	})
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, res)
	return nil
}

// lemonadeFlag reads an optional boolean query parameter.
func lemonadeFlag(r *http.Request, name string) (bool, error) {
	v := r.URL.Query().Get(name)
	if v == "" {
		return false, nil
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		return false, badRequest(name, "%s: %q is not true or false", name, v)
	}
	return b, nil
}
