package llm

import (
	"bytes"
	"encoding/json"
	"strings"
)

// Health is Lemonade Server's GET /v1/health answer.
type Health struct {
	Status          string         `json:"status"`
	Version         string         `json:"version"`
	WebsocketPort   int            `json:"websocket_port,omitempty"`
	ModelLoaded     string         `json:"model_loaded"`
	AllModelsLoaded []LoadedModel  `json:"all_models_loaded"`
	MaxModels       map[string]int `json:"max_models,omitempty"`
}

// LoadedModel is a model Lemonade Server has loaded.
type LoadedModel struct {
	ModelName   string  `json:"model_name"`
	Checkpoint  string  `json:"checkpoint"`
	LastUse     float64 `json:"last_use"`
	Type        string  `json:"type"`
	Device      string  `json:"device"`
	Pinned      bool    `json:"pinned"`
	IsBusy      bool    `json:"is_busy"`
	IsStreaming bool    `json:"is_streaming"`
	Recipe      string  `json:"recipe"`
	PID         int     `json:"pid"`
	// RecipeOptions are the options the model was loaded with (ctx_size,
	// llamacpp_backend, llamacpp_args, ...).
	RecipeOptions json.RawMessage `json:"recipe_options,omitempty"`
	BackendURL    string          `json:"backend_url"`
}

// Model is an entry of GET /v1/models.
type Model struct {
	ID               string   `json:"id"`
	Object           string   `json:"object"`
	Created          int64    `json:"created"`
	OwnedBy          string   `json:"owned_by"`
	Checkpoint       string   `json:"checkpoint"`
	Recipe           string   `json:"recipe"`
	Size             float64  `json:"size"`
	MaxContextWindow int64    `json:"max_context_window"`
	ContextLength    int64    `json:"context_length"`
	Downloaded       bool     `json:"downloaded"`
	Suggested        bool     `json:"suggested"`
	UpdateAvailable  bool     `json:"update_available"`
	Labels           []string `json:"labels"`
}

// Stats is Lemonade Server's GET /v1/stats answer: the last request and
// cumulative counters.
type Stats struct {
	TimeToFirstToken float64 `json:"time_to_first_token"`
	TokensPerSecond  float64 `json:"tokens_per_second"`
	InputTokens      int64   `json:"input_tokens"`
	OutputTokens     int64   `json:"output_tokens"`
	PromptTokens     int64   `json:"prompt_tokens"`
	// CacheTokens is nil when the last request did not report cache use.
	CacheTokens *int64 `json:"cache_tokens"`
	// Totals are the cumulative "*_total" counters by name.
	Totals map[string]float64 `json:"totals,omitempty"`
}

// UnmarshalJSON reads the flat /v1/stats object, gathering every numeric
// "*_total" key into Totals.
func (s *Stats) UnmarshalJSON(b []byte) error {
	type plain Stats
	var p plain
	if err := json.Unmarshal(b, &p); err != nil {
		return err
	}
	var all map[string]json.RawMessage
	if err := json.Unmarshal(b, &all); err != nil {
		return err
	}
	for k, v := range all {
		if !strings.HasSuffix(k, "_total") {
			continue
		}
		var f float64
		if json.Unmarshal(v, &f) == nil {
			if p.Totals == nil {
				p.Totals = map[string]float64{}
			}
			p.Totals[k] = f
		}
	}
	*s = Stats(p)
	return nil
}

// Slot is a llama-server slot as forwarded by GET /v1/slots. Raw keeps the
// whole object, which differs between llama.cpp versions.
type Slot struct {
	ID           int             `json:"id"`
	IDTask       int             `json:"id_task"`
	NCtx         int             `json:"n_ctx"`
	IsProcessing bool            `json:"is_processing"`
	State        string          `json:"state,omitempty"`
	Raw          json.RawMessage `json:"-"`
}

// UnmarshalJSON keeps the raw object next to the known fields.
func (s *Slot) UnmarshalJSON(b []byte) error {
	type plain Slot
	var p plain
	if err := json.Unmarshal(b, &p); err != nil {
		return err
	}
	p.Raw = append(json.RawMessage(nil), bytes.TrimSpace(b)...)
	*s = Slot(p)
	return nil
}

// MarshalJSON writes the raw object when there is one.
func (s Slot) MarshalJSON() ([]byte, error) {
	if len(s.Raw) > 0 {
		return s.Raw, nil
	}
	type plain Slot
	return json.Marshal(plain(s))
}

// PullRequest is the body of POST /v1/pull. ModelName must use the "user."
// namespace when a checkpoint is given (registering a new model).
type PullRequest struct {
	ModelName  string   `json:"model_name"`
	Checkpoint string   `json:"checkpoint,omitempty"`
	Recipe     string   `json:"recipe,omitempty"`
	MMProj     string   `json:"mmproj,omitempty"`
	Vision     bool     `json:"vision,omitempty"`
	Embedding  bool     `json:"embedding,omitempty"`
	Reasoning  bool     `json:"reasoning,omitempty"`
	Labels     []string `json:"labels,omitempty"`
}

// PullProgress is a progress event of a streamed pull.
type PullProgress struct {
	File            string  `json:"file"`
	FileIndex       int     `json:"file_index"`
	TotalFiles      int     `json:"total_files"`
	BytesDownloaded int64   `json:"bytes_downloaded"`
	BytesTotal      int64   `json:"bytes_total"`
	Percent         float64 `json:"percent"`
	// Complete is set on the final event.
	Complete bool `json:"complete,omitempty"`
}

// LoadRequest is the body of POST /v1/load. Zero values are left out, so
// Lemonade uses the model's recipe_options.json entry for them.
type LoadRequest struct {
	ModelName       string `json:"model_name"`
	Pinned          bool   `json:"pinned,omitempty"`
	SaveOptions     bool   `json:"save_options,omitempty"`
	CtxSize         int    `json:"ctx_size,omitempty"`
	LlamacppBackend string `json:"llamacpp_backend,omitempty"`
	LlamacppArgs    string `json:"llamacpp_args,omitempty"`
}
