package sandboxes

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/thon-dev/thon/sandboxes/docker"
	"github.com/thon-dev/thon/store"
)

// Run keeps the records, the routing table and Docker in step until ctx
// ends: it reconciles at once and every SyncInterval, follows Docker's
// events, and kills expired sandboxes. It returns when ctx is done. An
// unreachable engine is retried with backoff, never fatal.
func (m *Manager) Run(ctx context.Context) {
	m.runMu.Lock()
	m.runCtx = ctx
	m.runMu.Unlock()
	ctx = store.WithActor(ctx, "thon")

	done := make(chan struct{})
	go func() { defer close(done); m.reapLoop(ctx) }()
	m.watchLoop(ctx)
	<-done
}

// watchLoop reconciles, then follows the event stream; when the stream
// breaks it reconnects with backoff and reconciles again, since events may
// have been missed.
func (m *Manager) watchLoop(ctx context.Context) {
	backoff := time.Second
	for ctx.Err() == nil {
		if err := m.Reconcile(ctx); err != nil {
			m.log.Warn("reconciling sandboxes with Docker", "error", err, "retry_in", backoff.String())
			if !sleep(ctx, backoff) {
				return
			}
			backoff = min(backoff*2, time.Minute)
			continue
		}
		m.reconciledOnce.Do(func() { close(m.reconciled) })
		backoff = time.Second
		err := m.followEvents(ctx)
		if ctx.Err() != nil {
			return
		}
		m.log.Warn("Docker event stream ended", "error", err)
		if !sleep(ctx, backoff) {
			return
		}
	}
}

func (m *Manager) followEvents(ctx context.Context) error {
	evctx, cancel := context.WithCancel(ctx)
	defer cancel()
	events, errs := m.dc().Events(evctx, map[string]string{LabelManagedBy: managedByValue})
	m.subscribedOnce.Do(func() { close(m.subscribed) })
	sync := time.NewTicker(m.conf().SyncInterval)
	defer sync.Stop()
	for {
		select {
		case ev, ok := <-events:
			if !ok {
				return errors.New("closed")
			}
			m.handleEvent(ctx, ev)
		case err := <-errs:
			return err
		case <-sync.C:
			if err := m.Reconcile(ctx); err != nil {
				return err
			}
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// handleEvent applies one container event to the record and route of its
// sandbox. Changes thon makes itself arrive here too, under the user's
// lock, after the action that caused them has recorded its outcome.
func (m *Manager) handleEvent(ctx context.Context, ev docker.Event) {
	group, user := ev.Labels[LabelGroup], ev.Labels[LabelUser]
	if store.ValidateName("group", group) != nil || store.ValidateName("user", user) != nil {
		return
	}
	var st State
	switch ev.Action {
	case "start", "unpause":
		st = StateRunning
	case "pause":
		st = StatePaused
	case "die", "stop", "kill", "oom":
		st = StateStopped
	case "destroy":
		st = StateMissing
	default:
		return
	}
	unlock := m.lockUser(group, user)
	defer unlock()
	rec, err := m.store.LiveInstance(ctx, group, user)
	if err != nil || rec.ContainerID != ev.ID {
		return // not ours any more, or an action replaced the container
	}
	if State(rec.State) == StateStarting {
		return // a launch in progress records its own outcome
	}
	if ev.Action == "kill" {
		return // a "die" follows if the kill ended the container
	}
	if State(rec.State) == st {
		return
	}
	if st == StateRunning {
		// Started outside thon: believe it once code-server answers.
		if err := m.waitHealthy(ctx, rec.Port); err != nil {
			return
		}
	}
	m.log.Info("sandbox changed outside thon", "group", group, "user", user, "event", ev.Action, "state", st)
	if _, err := m.setState(ctx, rec, st, "instance.docker-"+ev.Action); err != nil {
		m.log.Warn("recording a Docker event", "error", err)
	}
}

// Reconcile makes the records and the routing table agree with Docker:
// containers thon made (or the original's, labelled managed-by=thon-client)
// without a live record are adopted, records whose container is gone are
// marked missing, and states follow the engine. Running it twice changes
// nothing the second time; it never creates duplicates.
func (m *Manager) Reconcile(ctx context.Context) error {
	containers, err := m.dc().List(ctx, map[string]string{LabelManagedBy: managedByValue})
	if err != nil {
		return dockerErr(err)
	}
	legacy, err := m.dc().List(ctx, map[string]string{legacyManagedBy: legacyManagedVal})
	if err != nil {
		return dockerErr(err)
	}
	containers = append(containers, legacy...)

	node, err := m.nodeID(ctx)
	if err != nil {
		return err
	}
	seen := map[string]bool{}
	for _, c := range containers {
		n := c.Labels[LabelNode]
		if n != "" && n != node {
			continue // another thon's, on the same engine
		}
		group, user := c.Labels[LabelGroup], c.Labels[LabelUser]
		if c.Labels[LabelManagedBy] != managedByValue {
			group, user = c.Labels["group"], c.Labels["username"]
		}
		if store.ValidateName("group", group) != nil || store.ValidateName("user", user) != nil {
			m.log.Warn("ignoring a sandbox container with bad labels", "container", c.Name)
			continue
		}
		if n == "" {
			// The original's, or an older thon's: whose it is shows only in
			// the users it serves. Adopt it for a user of this database.
			if _, err := m.store.GetUser(ctx, group, user); errors.Is(err, store.ErrNotFound) {
				continue
			} else if err != nil {
				return err
			}
		}
		key := group + "/" + user
		if seen[key] {
			m.log.Warn("two sandbox containers for one user; keeping the first", "group", group, "user", user, "container", c.Name)
			continue
		}
		seen[key] = true
		if err := m.reconcileContainer(ctx, group, user, c); err != nil {
			m.log.Warn("reconciling sandbox", "group", group, "user", user, "error", err)
		}
	}

	// Live records without a container, and the routing table: each
	// record is re-read under its user's lock, so a launch or action that
	// ran meanwhile is never overwritten with what was listed before it.
	recs, _, err := m.store.ListInstances(ctx, store.InstanceFilter{Live: true})
	if err != nil {
		return err
	}
	live := make(map[string]bool, len(recs))
	for _, r := range recs {
		live[idString(r.ID)] = true
		unlock, ok := m.tryLockUser(r.Group, r.User)
		if !ok {
			continue // an action is busy with it and records its own outcome
		}
		cur, err := m.store.GetInstance(ctx, r.ID)
		if err == nil && cur.TerminatedAt == nil && !seen[cur.Group+"/"+cur.User] && State(cur.State) != StateMissing &&
			!(State(cur.State) == StateStarting && time.Since(cur.UpdatedAt) < m.conf().ReadyTimeout) &&
			m.containerGone(ctx, cur.ContainerID) {
			m.log.Warn("sandbox container vanished", "group", cur.Group, "user", cur.User, "container", cur.Name)
			cur, err = m.store.UpdateInstance(ctx, cur.ID, "instance.missing", func(x *store.InstanceRecord) error {
				x.State = string(StateMissing)
				return nil
			})
		}
		if err == nil {
			m.syncRoute(cur)
		}
		unlock()
	}
	// Routes whose record is no longer live.
	for _, route := range m.routes.All() {
		if live[route.ID] {
			continue
		}
		unlock, ok := m.tryLockUser(route.Group, route.User)
		if !ok {
			continue
		}
		id, _ := strconv.ParseInt(route.ID, 10, 64)
		if cur, err := m.store.GetInstance(ctx, id); err != nil || cur.TerminatedAt != nil {
			m.routes.Delete(route.ID)
		}
		unlock()
	}
	return nil
}

// containerGone checks with the engine, now, that a container no longer
// exists: the listing Reconcile started from may predate a launch that
// finished meanwhile.
func (m *Manager) containerGone(ctx context.Context, id string) bool {
	if id == "" {
		return true
	}
	_, err := m.dc().Inspect(ctx, id)
	return errors.Is(err, docker.ErrNotFound)
}

// syncRoute makes the routing table show a record as it is.
func (m *Manager) syncRoute(r store.InstanceRecord) {
	if r.TerminatedAt != nil || r.Port == 0 || State(r.State) == StateMissing {
		m.routes.Delete(idString(r.ID))
		return
	}
	m.routes.Set(Route{ID: idString(r.ID), Group: r.Group, User: r.User, Port: r.Port, State: State(r.State)})
}

func engineState(s string) State {
	switch s {
	case "running":
		return StateRunning
	case "paused":
		return StatePaused
	case "restarting":
		return StateStarting
	}
	return StateStopped
}

func (m *Manager) reconcileContainer(ctx context.Context, group, user string, c docker.Container) error {
	unlock, ok := m.tryLockUser(group, user)
	if !ok {
		return nil // an action is busy with this sandbox and records its own outcome
	}
	defer unlock()
	st := engineState(c.State)
	port := c.HostPort
	if port == 0 {
		port, _ = strconv.Atoi(c.Labels[LabelPort])
	}
	rec, err := m.store.LiveInstance(ctx, group, user)
	switch {
	case err == nil:
		if State(rec.State) == StateStarting && rec.ContainerID == "" {
			return nil // a launch is creating it right now
		}
		if rec.ContainerID == c.ID && State(rec.State) == st && rec.Port == port {
			return nil
		}
		_, err = m.store.UpdateInstance(ctx, rec.ID, "instance.reconcile", func(r *store.InstanceRecord) error {
			r.ContainerID, r.Name, r.State = c.ID, c.Name, string(st)
			if port > 0 {
				r.Port = port
			}
			return nil
		})
		return err
	case !errors.Is(err, store.ErrNotFound):
		return err
	}
	// Adopt it.
	var userID int64
	if u, err := m.store.GetUser(ctx, group, user); err == nil {
		userID = u.ID
	}
	ws := c.Labels[LabelWorkspace]
	if ws == "" {
		ws = m.WorkspaceName(group, user)
	}
	_, err = m.store.CreateInstance(ctx, store.InstanceRecord{
		Group: group, User: user, UserID: userID, ContainerID: c.ID, Name: c.Name, State: string(st),
		Port: port, Image: c.Image, Workspace: ws, URL: m.url(group, user),
	})
	if err != nil {
		return fmt.Errorf("adopting container %s: %w", c.Name, err)
	}
	m.log.Info("adopted sandbox container", "group", group, "user", user, "container", c.Name, "port", port, "state", st)
	return nil
}

// reapLoop kills sandboxes whose TTL ran out.
func (m *Manager) reapLoop(ctx context.Context) {
	t := time.NewTicker(m.conf().ReapInterval)
	defer t.Stop()
	for {
		m.Reap(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Reap kills the sandboxes whose TTL has run out and returns how many.
func (m *Manager) Reap(ctx context.Context) int {
	recs, err := m.store.ExpiredInstances(ctx, time.Now())
	if err != nil {
		m.log.Warn("listing expired sandboxes", "error", err)
		return 0
	}
	n := 0
	now := time.Now()
	stillExpired := func(r store.InstanceRecord) error {
		if r.ExpiresAt == nil || r.ExpiresAt.After(now) {
			return fmt.Errorf("instance %d was renewed: %w", r.ID, ErrConflict)
		}
		return nil
	}
	for _, r := range recs {
		if _, err := m.kill(ctx, r.ID, stillExpired); err != nil {
			m.log.Warn("killing an expired sandbox", "instance", r.ID, "error", err)
			continue
		}
		n++
		m.log.Info("killed expired sandbox", "group", r.Group, "user", r.User, "expired_at", r.ExpiresAt)
	}
	return n
}

func sleep(ctx context.Context, d time.Duration) bool {
	select {
	case <-ctx.Done():
		return false
	case <-time.After(d):
		return true
	}
}
