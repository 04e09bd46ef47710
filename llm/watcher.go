package llm

import (
	"context"
	"errors"
	"sync"
	"time"
)

// Watcher states.
const (
	StatusUnknown      = "unknown"
	StatusUp           = "up"
	StatusDown         = "down"
	StatusUnauthorized = "unauthorized"
)

// DefaultWatchInterval is the polling interval when none is given.
const DefaultWatchInterval = 15 * time.Second

// WatcherState is what the last check found.
type WatcherState struct {
	// Status is "up", "down", "unauthorized" (the API key was refused) or
	// "unknown" (not checked yet).
	Status    string    `json:"status"`
	LastCheck time.Time `json:"last_check"`
	LastError string    `json:"last_error,omitempty"`
	// Version and LoadedModels come from the last successful health check.
	Version      string   `json:"version,omitempty"`
	LoadedModels []string `json:"loaded_models"`
}

// Watcher polls Lemonade Server's /live and /v1/health and keeps the
// outcome for the API and dashboard. It is safe for concurrent use.
type Watcher struct {
	client   *Client
	interval time.Duration

	mu    sync.RWMutex
	state WatcherState
}

// NewWatcher returns a watcher polling every interval (DefaultWatchInterval
// when interval <= 0).
func NewWatcher(c *Client, interval time.Duration) *Watcher {
	if interval <= 0 {
		interval = DefaultWatchInterval
	}
	return &Watcher{
		client:   c,
		interval: interval,
		state:    WatcherState{Status: StatusUnknown, LoadedModels: []string{}},
	}
}

// Run checks at once, then every interval, until ctx is done.
func (w *Watcher) Run(ctx context.Context) {
	t := time.NewTicker(w.interval)
	defer t.Stop()
	for {
		w.Check(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Check polls Lemonade once, records and returns the new state. A check
// cut short by ctx records nothing and returns the previous state.
func (w *Watcher) Check(ctx context.Context) WatcherState {
	st := WatcherState{LastCheck: time.Now(), LoadedModels: []string{}}
	err := w.client.Live(ctx)
	var h Health
	if err == nil {
		h, err = w.client.Health(ctx)
	}
	if ctx.Err() != nil {
		return w.State()
	}
	switch {
	case err == nil:
		st.Status = StatusUp
		st.Version = h.Version
		for _, m := range h.AllModelsLoaded {
			st.LoadedModels = append(st.LoadedModels, m.ModelName)
		}
	case errors.Is(err, ErrUnauthorized):
		st.Status = StatusUnauthorized
		st.LastError = err.Error()
	default:
		st.Status = StatusDown
		st.LastError = err.Error()
	}
	w.mu.Lock()
	if st.Status != StatusUp {
		// keep what was last known about the server
		st.Version = w.state.Version
	}
	w.state = st
	w.mu.Unlock()
	return cloneState(st)
}

// State returns the outcome of the last check.
func (w *Watcher) State() WatcherState {
	w.mu.RLock()
	defer w.mu.RUnlock()
	return cloneState(w.state)
}

func cloneState(s WatcherState) WatcherState {
	s.LoadedModels = append([]string{}, s.LoadedModels...)
	return s
}
