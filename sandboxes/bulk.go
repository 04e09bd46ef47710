package sandboxes

import (
	"context"
	"crypto/rand"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/thon-dev/thon/store"
)

// Action is a bulk action.
type Action string

// Bulk actions.
const (
	ActionPause  Action = "pause"
	ActionResume Action = "resume"
	ActionKill   Action = "kill"
)

// Result is the outcome of an action on one sandbox.
type Result struct {
	ID    int64  `json:"id,omitempty"`
	Group string `json:"group"`
	User  string `json:"user"`
	OK    bool   `json:"ok"`
	State State  `json:"state,omitempty"`
	Error string `json:"error,omitempty"`
}

func result(in Instance, err error) Result {
	r := Result{ID: in.ID, Group: in.Group, User: in.User, OK: err == nil, State: in.State}
	if err != nil {
		r.Error = err.Error()
	}
	return r
}

// Bulk applies an action to many sandboxes at once, at most Concurrency at
// a time, and reports each one's result in the order of ids.
func (m *Manager) Bulk(ctx context.Context, a Action, ids []int64) []Result {
	var do func(context.Context, int64) (Instance, error)
	switch a {
	case ActionPause:
		do = m.Pause
	case ActionResume:
		do = m.Resume
	case ActionKill:
		do = m.Kill
	default:
		out := make([]Result, len(ids))
		for i, id := range ids {
			out[i] = Result{ID: id, Error: fmt.Sprintf("unknown action %q", a)}
		}
		return out
	}
	out := make([]Result, len(ids))
	m.parallel(len(ids), func(i int) {
		in, err := do(ctx, ids[i])
		if in.ID == 0 {
			in.ID = ids[i]
			if cur, gerr := m.Get(ctx, ids[i]); gerr == nil {
				in = cur
			}
		}
		out[i] = result(in, err)
	})
	return out
}

// parallel runs fn(0..n-1) with at most Concurrency at a time.
func (m *Manager) parallel(n int, fn func(i int)) {
	sem := make(chan struct{}, m.conf().Concurrency)
	var wg sync.WaitGroup
	for i := range n {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			fn(i)
		}()
	}
	wg.Wait()
}

// Operation is a long action on a group, run in the background; its
// results fill in as each sandbox is done.
type Operation struct {
	ID         string     `json:"id"`
	Kind       string     `json:"kind"`   // start-group | stop-group
	Target     string     `json:"target"` // the group
	Status     string     `json:"status"` // running | done
	Total      int        `json:"total"`
	Done       int        `json:"done"`
	Failed     int        `json:"failed"`
	Results    []Result   `json:"results"`
	StartedAt  time.Time  `json:"started_at"`
	FinishedAt *time.Time `json:"finished_at,omitempty"`
}

type opState struct {
	mu   sync.Mutex
	op   Operation
	done chan struct{}
}

func (o *opState) snapshot() Operation {
	o.mu.Lock()
	defer o.mu.Unlock()
	c := o.op
	c.Results = slices.Clone(o.op.Results)
	return c
}

// keptOperations bounds the finished operations kept for GET.
const keptOperations = 200

// StartGroup launches the sandboxes of every user of a group in the
// background and returns at once. Each instance shows up as starting in
// List while it comes up.
func (m *Manager) StartGroup(ctx context.Context, group string) (Operation, error) {
	g, err := m.store.GetGroup(ctx, group)
	if err != nil {
		return Operation{}, err
	}
	if err := m.ready(ctx); err != nil {
		return Operation{}, err
	}
	users := make([]string, len(g.Users))
	for i, u := range g.Users {
		users[i] = u.Name
	}
	return m.runOperation("start-group", group, users, func(ctx context.Context, user string) (Instance, error) {
		return m.Launch(ctx, group, user)
	}), nil
}

// StopGroup kills the live sandboxes of a group in the background.
func (m *Manager) StopGroup(ctx context.Context, group string) (Operation, error) {
	if _, err := m.store.GetGroup(ctx, group); err != nil {
		return Operation{}, err
	}
	recs, _, err := m.store.ListInstances(ctx, store.InstanceFilter{Live: true, Group: group})
	if err != nil {
		return Operation{}, err
	}
	users := make([]string, len(recs))
	ids := make(map[string]int64, len(recs))
	for i, r := range recs {
		users[i] = r.User
		ids[r.User] = r.ID
	}
	return m.runOperation("stop-group", group, users, func(ctx context.Context, user string) (Instance, error) {
		return m.Kill(ctx, ids[user])
	}), nil
}

func (m *Manager) runOperation(kind, group string, users []string, do func(context.Context, string) (Instance, error)) Operation {
	o := &opState{done: make(chan struct{})}
	o.op = Operation{
		ID: newOpID(), Kind: kind, Target: group, Status: "running", Total: len(users),
		Results: make([]Result, len(users)), StartedAt: time.Now().UTC(),
	}
	for i, u := range users {
		o.op.Results[i] = Result{Group: group, User: u}
	}
	m.opsMu.Lock()
	m.ops[o.op.ID] = o
	m.order = append(m.order, o.op.ID)
	for len(m.order) > keptOperations {
		delete(m.ops, m.order[0])
		m.order = m.order[1:]
	}
	m.opsMu.Unlock()

	ctx := m.background()
	snap := o.snapshot()
	go func() {
		defer close(o.done)
		m.parallel(len(users), func(i int) {
			in, err := do(ctx, users[i])
			if in.User == "" {
				in.Group, in.User = group, users[i]
			}
			o.mu.Lock()
			o.op.Results[i] = result(in, err)
			o.op.Done++
			if err != nil {
				o.op.Failed++
			}
			o.mu.Unlock()
		})
		o.mu.Lock()
		t := time.Now().UTC()
		o.op.Status, o.op.FinishedAt = "done", &t
		o.mu.Unlock()
		m.log.Info("group operation finished", "kind", kind, "group", group, "total", len(users), "failed", o.snapshot().Failed)
	}()
	return snap
}

// Operation returns a group operation by ID.
func (m *Manager) Operation(id string) (Operation, bool) {
	m.opsMu.Lock()
	o, ok := m.ops[id]
	m.opsMu.Unlock()
	if !ok {
		return Operation{}, false
	}
	return o.snapshot(), true
}

// WaitOperation waits until an operation is done.
func (m *Manager) WaitOperation(ctx context.Context, id string) (Operation, error) {
	m.opsMu.Lock()
	o, ok := m.ops[id]
	m.opsMu.Unlock()
	if !ok {
		return Operation{}, fmt.Errorf("operation %q: %w", id, ErrNotFound)
	}
	select {
	case <-o.done:
		return o.snapshot(), nil
	case <-ctx.Done():
		return o.snapshot(), ctx.Err()
	}
}

// background is the context of work that outlives a request.
func (m *Manager) background() context.Context {
	m.runMu.Lock()
	defer m.runMu.Unlock()
	return store.WithActor(m.runCtx, "thon")
}

func newOpID() string { return strings.ToLower(rand.Text()) }
