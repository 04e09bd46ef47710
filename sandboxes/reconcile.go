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
// unreachable engine is retried with backoff, never fatal: when the engine
// stops (its event stream breaks) Run tries again every watchRetryMax at
// most, and reconciles as soon as the engine answers.
func (m *Manager) Run(ctx context.Context) {
	m.runMu.Lock()
	m.runCtx = ctx
	m.runMu.Unlock()
	ctx = store.WithActor(ctx, "thon")

	done := make(chan struct{})
	go func() { defer close(done); m.reapLoop(ctx) }()
	m.watchLoop(ctx)
	<-done
	m.checks.Wait()
}

// How soon the engine is watched again after its event stream broke or it
// did not answer: after watchRetryMin, doubling up to watchRetryMax while it
// keeps failing. The maximum bounds how long after the engine is back the
// records and routes of its sandboxes are right again.
const (
	watchRetryMin = 250 * time.Millisecond
	watchRetryMax = 2 * time.Second
)

// watchLoop watches the engine; when the event stream breaks (the engine
// stopped, say) it tries again with backoff until the engine answers, and
// reconciles then, since events were missed.
func (m *Manager) watchLoop(ctx context.Context) {
	backoff := watchRetryMin
	var failing time.Time // since when watching fails; zero while it works
	for ctx.Err() == nil {
		err := m.watch(ctx, func() {
			m.reconciledOnce.Do(func() { close(m.reconciled) })
			if !failing.IsZero() {
				m.log.Info("watching the Docker engine again; sandboxes reconciled",
					"after", time.Since(failing).Round(time.Millisecond).String())
				failing = time.Time{}
			}
			backoff = watchRetryMin
		})
		if ctx.Err() != nil {
			return
		}
		if failing.IsZero() {
			failing = time.Now()
			m.log.Warn("lost the Docker engine's events, or could not reconcile; retrying until it answers", "error", err)
		} else {
			m.log.Debug("Docker engine still not watched", "error", err, "retry_in", backoff.String())
		}
		if !sleep(ctx, backoff) {
			return
		}
		backoff = min(backoff*2, watchRetryMax)
	}
}

// watch subscribes to the engine's container events, reconciles, calls
// connected, and then applies the events, reconciling every SyncInterval,
// until the stream breaks or ctx ends. Subscribing before reconciling means
// no change between the two is missed.
func (m *Manager) watch(ctx context.Context, connected func()) error {
	evctx, cancel := context.WithCancel(ctx)
	defer cancel()
	events, errs := m.dc().Events(evctx, map[string]string{LabelManagedBy: managedByValue})
	m.forgetKills() // what was seen of kills before belongs to a stream that ended
	if err := m.Reconcile(ctx); err != nil {
		return err
	}
	select {
	case err := <-errs:
		return err // the subscription failed while the rest answered
	default:
	}
	connected()
	m.subscribedOnce.Do(func() { close(m.subscribed) })
	sync := time.NewTicker(m.conf().SyncInterval)
	defer sync.Stop()
	for {
		select {
		case ev, ok := <-events:
			if !ok {
				if err := <-errs; err != nil {
					return err
				}
				return errors.New("docker event stream closed")
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
// lock, after the action that caused them has recorded its outcome, and so
// change nothing; the others are the engine's (a crash, its restart policy,
// its own stop or start) or somebody's outside thon.
func (m *Manager) handleEvent(ctx context.Context, ev docker.Event) {
	group, user := ev.Labels[LabelGroup], ev.Labels[LabelUser]
	if store.ValidateName("group", group) != nil || store.ValidateName("user", user) != nil {
		return
	}
	switch ev.Action {
	case "start", "unpause", "pause", "kill", "die", "stop", "destroy":
	default:
		return // "oom" among them: a killed child process ends no container; a "die" follows if it did
	}
	unlock := m.lockUser(group, user)
	defer unlock()
	rec, err := m.store.LiveInstance(ctx, group, user)
	if err != nil || rec.ContainerID != ev.ID {
		m.forgetKill(ev.ID)
		return // not ours any more, or an action replaced the container
	}
	if State(rec.State) == StateStarting {
		return // a launch in progress records its own outcome
	}
	changed := func(st State) {
		m.log.Info("sandbox changed outside thon", "group", group, "user", user, "event", ev.Action, "state", st)
	}
	switch ev.Action {
	case "kill":
		// The engine ends a paused container by unpausing it after the
		// signal (on `docker stop` or `kill`, and for all of them when it
		// stops itself): that "unpause" is nobody's resume, and the sandbox
		// stays one to keep paused.
		if State(rec.State) == StatePaused {
			m.noteKill(ev.ID)
		}
	case "pause":
		if State(rec.State) != StatePaused || !rec.KeepPaused {
			changed(StatePaused)
			_, err = m.setState(ctx, rec, StatePaused, "instance.docker-pause")
		}
	case "unpause":
		if State(rec.State) == StatePaused && !m.killing(ev.ID) {
			m.confirmRunning(ctx, rec, ev.Action)
		}
	case "start":
		err = m.started(ctx, rec)
	case "die":
		m.forgetKill(ev.ID)
		err = m.died(ctx, rec, ev)
	case "stop":
		if st := State(rec.State); st == StateRunning || st == StatePaused {
			changed(StateStopped)
			_, err = m.setState(ctx, rec, StateStopped, "instance.docker-stop")
		}
	case "destroy":
		m.forgetKill(ev.ID)
		if State(rec.State) != StateMissing {
			changed(StateMissing)
			_, err = m.setState(ctx, rec, StateMissing, "instance.docker-destroy")
		}
	}
	if err != nil {
		m.log.Warn("recording a Docker event", "group", group, "user", user, "event", ev.Action, "error", err)
	}
}

// started handles a start of a sandbox's container that thon did not make
// (the record of its own starts is written by the time the event is
// handled): the engine restarted it after a crash or as it came back, or
// somebody started it by hand. It counts as a restart; a sandbox kept paused
// is paused again at once, any other is believed running once code-server
// answers.
func (m *Manager) started(ctx context.Context, rec store.InstanceRecord) error {
	c, err := m.dc().Inspect(ctx, rec.ContainerID)
	if err != nil {
		return dockerErr(err) // the next reconciliation catches up
	}
	if c.State != "running" {
		return nil // ended again already (its "die" follows), or paused
	}
	if next := rec; observe(&next, c) {
		if rec, err = m.store.UpdateInstance(ctx, rec.ID, "", func(r *store.InstanceRecord) error {
			observe(r, c)
			return nil
		}); err != nil {
			return err
		}
		m.log.Info("sandbox container started again by the engine", "group", rec.Group, "user", rec.User, "restarts", rec.Restarts)
	}
	if rec.KeepPaused {
		_, err = m.repause(ctx, rec)
		return err
	}
	if State(rec.State) != StateRunning {
		m.confirmRunning(ctx, rec, "start")
	}
	return nil
}

// died records how a sandbox's container ended, and that it is down; the
// engine starts it again by its restart policy unless it was stopped on
// purpose.
func (m *Manager) died(ctx context.Context, rec store.InstanceRecord, ev docker.Event) error {
	exit := store.InstanceExit{Code: ev.ExitCode, At: ev.Time.UTC()}
	if c, err := m.dc().Inspect(ctx, ev.ID); err == nil && c.Exit != nil {
		exit.OOMKilled, exit.Error = c.Exit.OOMKilled, c.Exit.Error
	}
	m.log.Info("sandbox container ended", "group", rec.Group, "user", rec.User,
		"exit_code", exit.Code, "oom_killed", exit.OOMKilled, "error", exit.Error)
	_, err := m.setStateWith(ctx, rec, StateStopped, "instance.docker-die", func(r *store.InstanceRecord) {
		r.LastExit = &exit
	})
	return err
}

// confirmRunning records a sandbox running once code-server answers on its
// port. It waits in the background, so that the events of other sandboxes
// are not held up, and records nothing if meanwhile the record changed or
// the container stopped running.
func (m *Manager) confirmRunning(ctx context.Context, rec store.InstanceRecord, action string) {
	m.checks.Add(1)
	go func() {
		defer m.checks.Done()
		if err := m.waitHealthy(ctx, rec.Port); err != nil {
			return
		}
		unlock := m.lockUser(rec.Group, rec.User)
		defer unlock()
		cur, err := m.store.GetInstance(ctx, rec.ID)
		if err != nil || cur.TerminatedAt != nil || cur.ContainerID != rec.ContainerID ||
			State(cur.State) == StateRunning || State(cur.State) == StateStarting {
			return
		}
		if c, err := m.dc().Inspect(ctx, cur.ContainerID); err != nil || c.State != "running" {
			return
		}
		m.log.Info("sandbox changed outside thon", "group", cur.Group, "user", cur.User, "event", action, "state", StateRunning)
		if _, err := m.setState(ctx, cur, StateRunning, "instance.docker-"+action); err != nil {
			m.log.Warn("recording a Docker event", "group", cur.Group, "user", cur.User, "event", action, "error", err)
		}
	}()
}

// repause pauses again the container of a sandbox kept paused that the
// engine runs.
func (m *Manager) repause(ctx context.Context, rec store.InstanceRecord) (store.InstanceRecord, error) {
	if err := m.dc().Pause(ctx, rec.ContainerID); err != nil {
		return rec, dockerErr(err)
	}
	m.log.Info("paused again a paused sandbox the engine ran", "group", rec.Group, "user", rec.User)
	return m.setState(ctx, rec, StatePaused, "instance.repause")
}

func (m *Manager) noteKill(id string) {
	m.killMu.Lock()
	defer m.killMu.Unlock()
	m.killed[id] = true
}

func (m *Manager) killing(id string) bool {
	m.killMu.Lock()
	defer m.killMu.Unlock()
	return m.killed[id]
}

func (m *Manager) forgetKill(id string) {
	m.killMu.Lock()
	defer m.killMu.Unlock()
	delete(m.killed, id)
}

func (m *Manager) forgetKills() {
	m.killMu.Lock()
	defer m.killMu.Unlock()
	clear(m.killed)
}

// observe applies to r what c, its container, shows of the engine's doings:
// a start later than the one r knows is a restart (starts missed while
// nobody watched count once), and the exit of a container that is down is
// its last exit (the engine clears the code of one that runs again). It
// reports whether r changed.
func observe(r *store.InstanceRecord, c docker.Container) bool {
	changed := false
	if !c.StartedAt.IsZero() && (r.StartedAt == nil || c.StartedAt.After(*r.StartedAt)) {
		if r.StartedAt != nil && r.ContainerID == c.ID {
			r.Restarts++
		}
		t := c.StartedAt.UTC()
		r.StartedAt, changed = &t, true
	}
	if e := c.Exit; e != nil && c.State != "running" && c.State != "paused" {
		if r.LastExit == nil || e.At.After(r.LastExit.At) || (e.Error != "" && e.Error != r.LastExit.Error) {
			r.LastExit = &store.InstanceExit{Code: e.Code, OOMKilled: e.OOMKilled, Error: e.Error, At: e.At.UTC()}
			changed = true
		}
	}
	return changed
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
	m.routes.Set(routeOf(r, State(r.State)))
}

// engineState is the state of a sandbox whose container is in the engine's
// state s. A container waiting to be restarted by its policy is down.
func engineState(s string) State {
	switch s {
	case "running":
		return StateRunning
	case "paused":
		return StatePaused
	}
	return StateStopped
}

// containerPort is the host port of c: the one it publishes, or its label's.
func containerPort(c docker.Container) int {
	if c.HostPort > 0 {
		return c.HostPort
	}
	p, _ := strconv.Atoi(c.Labels[LabelPort])
	return p
}

// stale reports whether rec does not show c as it is.
func stale(rec store.InstanceRecord, c docker.Container) bool {
	st := engineState(c.State)
	port := containerPort(c)
	if rec.ContainerID != c.ID || State(rec.State) != st || (port > 0 && rec.Port != port) ||
		(st == StateRunning && rec.KeepPaused) || (st == StatePaused && !rec.KeepPaused) {
		return true
	}
	return observe(&rec, c)
}

func (m *Manager) reconcileContainer(ctx context.Context, group, user string, c docker.Container) error {
	unlock, ok := m.tryLockUser(group, user)
	if !ok {
		return nil // an action is busy with this sandbox and records its own outcome
	}
	defer unlock()
	if c.RestartPolicy != docker.RestartPolicy {
		// Made by an older thon, or the original: it comes back by itself
		// from now on, like the containers thon makes.
		if err := m.dc().UpdateRestartPolicy(ctx, c.ID); err != nil {
			m.log.Warn("could not give a sandbox container the restart policy", "container", c.Name,
				"policy", docker.RestartPolicy, "error", err)
		} else {
			m.log.Info("gave a sandbox container the restart policy", "container", c.Name, "policy", docker.RestartPolicy)
		}
	}
	rec, err := m.store.LiveInstance(ctx, group, user)
	switch {
	case err == nil:
		if State(rec.State) == StateStarting && rec.ContainerID == "" {
			return nil // a launch is creating it right now
		}
		if !stale(rec, c) {
			return nil
		}
		// The listing may predate an action that ran since: look again,
		// under the user's lock.
		if c, err = m.dc().Inspect(ctx, c.ID); errors.Is(err, docker.ErrNotFound) {
			return nil // removed since; the pass over the records sees to it
		} else if err != nil {
			return dockerErr(err)
		}
		st := engineState(c.State)
		if st == StateRunning && rec.KeepPaused && rec.ContainerID == c.ID {
			// The engine runs a sandbox paused on purpose (it came back
			// and restarted it): pause it again.
			if err := m.dc().Pause(ctx, c.ID); err != nil {
				return dockerErr(err)
			}
			m.log.Info("paused again a paused sandbox the engine ran", "group", group, "user", user)
			st = StatePaused
		}
		_, err = m.store.UpdateInstance(ctx, rec.ID, "instance.reconcile", func(r *store.InstanceRecord) error {
			observe(r, c)
			r.ContainerID, r.Name, r.State = c.ID, c.Name, string(st)
			if st == StatePaused {
				r.KeepPaused = true
			}
			if port := containerPort(c); port > 0 {
				r.Port = port
			}
			return nil
		})
		return err
	case !errors.Is(err, store.ErrNotFound):
		return err
	}
	// Adopt it.
	st := engineState(c.State)
	var userID int64
	if u, err := m.store.GetUser(ctx, group, user); err == nil {
		userID = u.ID
	}
	ws := c.Labels[LabelWorkspace]
	if ws == "" {
		ws = m.WorkspaceName(group, user)
	}
	port := containerPort(c)
	rec = store.InstanceRecord{
		Group: group, User: user, UserID: userID, ContainerID: c.ID, Name: c.Name, State: string(st),
		Port: port, Image: c.Image, Workspace: ws, URL: m.url(group, user), KeepPaused: st == StatePaused,
	}
	observe(&rec, c)
	if _, err = m.store.CreateInstance(ctx, rec); err != nil {
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

// startedAt is when the engine says container id started, read right after
// thon started it: a later start is a restart. If the engine does not say,
// now.
func (m *Manager) startedAt(ctx context.Context, id string) time.Time {
	if c, err := m.dc().Inspect(ctx, id); err == nil && !c.StartedAt.IsZero() {
		return c.StartedAt.UTC()
	}
	return time.Now().UTC()
}
