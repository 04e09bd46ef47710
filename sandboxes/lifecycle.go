package sandboxes

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/thon-dev/thon/llm"
	"github.com/thon-dev/thon/sandboxes/docker"
	"github.com/thon-dev/thon/store"
)

// Paths inside the sandbox, as in the original image.
const (
	workspaceMount     = "/workspace"
	kiloConfigPath     = "/home/vscode/.config/kilo/config.json"
	vscodeSettingsPath = "/home/vscode/.local/share/code-server/User/settings.json"
	codeServerConfig   = "/home/vscode/.config/code-server/config.yaml"
	sandboxUID         = 1001
	sandboxGID         = 1001
	passwordLength     = 24
)

// Launch starts the sandbox of a user, or returns it if it runs already: a
// paused one is resumed, a stopped or vanished one started again with the
// same workspace and port.
func (m *Manager) Launch(ctx context.Context, group, user string) (Instance, error) {
	if err := store.ValidateName("group", group); err != nil {
		return Instance{}, err
	}
	if err := store.ValidateName("user", user); err != nil {
		return Instance{}, err
	}
	u, err := m.store.GetUser(ctx, group, user)
	if err != nil {
		return Instance{}, err
	}
	unlock := m.lockUser(group, user)
	defer unlock()

	rec, err := m.store.LiveInstance(ctx, group, user)
	switch {
	case err == nil:
		r, err := m.ensureRunning(ctx, rec)
		return toInstance(r), err
	case !errors.Is(err, store.ErrNotFound):
		return Instance{}, err
	}
	if err := m.ready(ctx); err != nil {
		return Instance{}, err
	}

	rec = store.InstanceRecord{
		Group: group, User: user, UserID: u.ID, Name: ContainerName(group, user),
		State: string(StateStarting), Image: m.conf().Image, Workspace: m.WorkspaceName(group, user),
		URL: m.url(group, user),
	}
	if m.conf().Secure {
		if rec.Password, err = newPassword(); err != nil {
			return Instance{}, err
		}
	}
	if m.conf().DefaultTTL > 0 {
		t := time.Now().Add(m.conf().DefaultTTL).UTC()
		rec.ExpiresAt = &t
	}
	if rec, err = m.createRecord(ctx, rec); err != nil {
		return Instance{}, err
	}
	m.routes.Set(routeOf(rec, StateStarting))

	r, err := m.provision(ctx, rec, u.Email)
	if err != nil {
		// Leave nothing behind: no container, no route, no record.
		m.routes.Delete(idString(rec.ID))
		m.removeContainer(context.WithoutCancel(ctx), r.ContainerID)
		if derr := m.store.DeleteInstance(context.WithoutCancel(ctx), rec.ID); derr != nil {
			m.log.Error("removing the record of a failed launch", "instance", rec.ID, "error", derr)
		}
		return Instance{}, err
	}
	return toInstance(r), nil
}

// LaunchUserID launches the sandbox of a user given by ID.
func (m *Manager) LaunchUserID(ctx context.Context, userID int64) (Instance, error) {
	u, err := m.store.GetUserByID(ctx, userID)
	if err != nil {
		return Instance{}, err
	}
	return m.Launch(ctx, u.Group, u.Name)
}

// StopUserID kills the live sandbox of a user given by ID.
func (m *Manager) StopUserID(ctx context.Context, userID int64) (Instance, error) {
	u, err := m.store.GetUserByID(ctx, userID)
	if err != nil {
		return Instance{}, err
	}
	return m.stopUser(ctx, u.Group, u.Name)
}

// StopUser kills the live sandbox of the named user of a group. An unknown
// group or user is store.ErrNotFound, a user without a live sandbox
// ErrNotFound.
func (m *Manager) StopUser(ctx context.Context, group, user string) (Instance, error) {
	if err := store.ValidateName("group", group); err != nil {
		return Instance{}, err
	}
	if err := store.ValidateName("user", user); err != nil {
		return Instance{}, err
	}
	if _, err := m.store.GetUser(ctx, group, user); err != nil {
		return Instance{}, err
	}
	return m.stopUser(ctx, group, user)
}

func (m *Manager) stopUser(ctx context.Context, group, user string) (Instance, error) {
	rec, err := m.store.LiveInstance(ctx, group, user)
	if errors.Is(err, store.ErrNotFound) {
		return Instance{}, fmt.Errorf("user %s/%s has no live sandbox: %w", group, user, ErrNotFound)
	}
	if err != nil {
		return Instance{}, err
	}
	return m.Kill(ctx, rec.ID)
}

// createRecord allocates a free port and records the instance with it.
// The port is free in the records and, when probed, on 127.0.0.1.
func (m *Manager) createRecord(ctx context.Context, rec store.InstanceRecord) (store.InstanceRecord, error) {
	m.portMu.Lock()
	defer m.portMu.Unlock()
	port, err := m.freePort(ctx, 0)
	if err != nil {
		return rec, err
	}
	rec.Port = port
	return m.store.CreateInstance(ctx, rec)
}

// freePort finds a port of the range no record holds and nothing listens
// on, skipping avoid. Callers hold portMu.
func (m *Manager) freePort(ctx context.Context, avoid int) (int, error) {
	used, err := m.store.UsedPorts(ctx)
	if err != nil {
		return 0, err
	}
	for p := m.conf().PortStart; p <= m.conf().PortEnd; p++ {
		if used[p] || p == avoid || !portFree(p) {
			continue
		}
		return p, nil
	}
	return 0, &unavailableError{fmt.Errorf("no free port left in %d-%d", m.conf().PortStart, m.conf().PortEnd)}
}

// portFree reports whether nothing listens on 127.0.0.1:p.
func portFree(p int) bool {
	ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p)))
	if err != nil {
		return false
	}
	ln.Close()
	return true
}

// provision creates, fills and starts the container of rec and waits until
// code-server answers. On a port taken in the meantime it moves to another
// port. It returns the record as it now is.
func (m *Manager) provision(ctx context.Context, rec store.InstanceRecord, email string) (store.InstanceRecord, error) {
	if m.conf().Workspace == WorkspaceBind { // a volume is made with the container
		if err := m.ensureWorkspace(ctx, rec.Group, rec.User); err != nil {
			return rec, err
		}
	}
	files, err := m.sandboxFiles(ctx, rec, email)
	if err != nil {
		return rec, err
	}
	node, err := m.nodeID(ctx)
	if err != nil {
		return rec, err
	}
	for attempt := 0; ; attempt++ {
		id, err := m.dc().Create(ctx, m.spec(rec, node))
		if errors.Is(err, docker.ErrConflict) {
			// A container of that name without a live record: an earlier
			// thon's leftover. Replace it, unless it is somebody else's.
			if err = m.replaceLeftover(ctx, rec.Name); err == nil {
				id, err = m.dc().Create(ctx, m.spec(rec, node))
			}
		}
		if err != nil {
			return rec, dockerErr(err)
		}
		rec.ContainerID = id
		if rec, err = m.store.UpdateInstance(ctx, rec.ID, "", func(r *store.InstanceRecord) error {
			r.ContainerID = id
			return nil
		}); err != nil {
			return rec, err
		}
		// One archive for every file: each copy call costs the engine a
		// process of its own.
		if err := m.dc().CopyFiles(ctx, id, files); err != nil {
			return rec, fmt.Errorf("writing the sandbox's configuration: %w", dockerErr(err))
		}
		err = m.dc().Start(ctx, id)
		if errors.Is(err, docker.ErrPortInUse) && attempt < 3 {
			m.log.Warn("sandbox port taken, moving", "instance", rec.ID, "port", rec.Port)
			m.removeContainer(ctx, id)
			if rec, err = m.movePort(ctx, rec); err != nil {
				return rec, err
			}
			continue
		}
		if err != nil {
			return rec, dockerErr(err)
		}
		break
	}
	started := m.startedAt(ctx, rec.ContainerID)
	if err := m.waitHealthy(ctx, rec.Port); err != nil {
		return rec, fmt.Errorf("sandbox %s did not become ready: %w", rec.Name, err)
	}
	rec, err = m.store.UpdateInstance(ctx, rec.ID, "instance.running", func(r *store.InstanceRecord) error {
		r.State, r.StartedAt, r.KeepPaused = string(StateRunning), &started, false
		return nil
	})
	if err != nil {
		return rec, err
	}
	m.routes.Set(routeOf(rec, StateRunning))
	return rec, nil
}

// movePort gives rec another free port.
func (m *Manager) movePort(ctx context.Context, rec store.InstanceRecord) (store.InstanceRecord, error) {
	m.portMu.Lock()
	defer m.portMu.Unlock()
	p, err := m.freePort(ctx, rec.Port)
	if err != nil {
		return rec, err
	}
	rec, err = m.store.UpdateInstance(ctx, rec.ID, "instance.port", func(r *store.InstanceRecord) error {
		r.Port = p
		return nil
	})
	if err == nil {
		m.routes.Set(routeOf(rec, StateStarting))
	}
	return rec, err
}

// replaceLeftover removes a container that holds a sandbox's name but has
// no live record, if thon made it.
func (m *Manager) replaceLeftover(ctx context.Context, name string) error {
	c, err := m.dc().Inspect(ctx, name)
	if err != nil {
		return dockerErr(err)
	}
	if c.Labels[LabelManagedBy] != managedByValue && c.Labels[legacyManagedBy] != legacyManagedVal {
		return fmt.Errorf("a container named %s exists and was not made by thon: %w", name, ErrConflict)
	}
	node, err := m.nodeID(ctx)
	if err != nil {
		return err
	}
	if n := c.Labels[LabelNode]; n != "" && n != node {
		return fmt.Errorf("a container named %s belongs to another thon on this Docker engine (node %s): %w", name, n, ErrConflict)
	}
	m.log.Info("replacing a leftover sandbox container", "container", name)
	return dockerErr(m.dc().Remove(ctx, c.ID, false))
}

func (m *Manager) spec(rec store.InstanceRecord, node string) docker.Spec {
	auth := "none"
	if rec.Password != "" {
		auth = "password"
	}
	s := docker.Spec{
		Name:  rec.Name,
		Image: rec.Image,
		Labels: map[string]string{
			LabelManagedBy: managedByValue,
			LabelGroup:     rec.Group,
			LabelUser:      rec.User,
			LabelPort:      portLabel(rec.Port),
			LabelInstance:  idString(rec.ID),
			LabelWorkspace: rec.Workspace,
			LabelNode:      node,
		},
		Env: []string{"THON_GROUP=" + rec.Group, "THON_USERNAME=" + rec.User},
		Cmd: []string{"code-server", "--bind-addr", "0.0.0.0:" + strconv.Itoa(m.conf().ContainerPort),
			"--auth", auth, "--disable-telemetry", workspaceMount},
		HostPort:      rec.Port,
		ContainerPort: m.conf().ContainerPort,
		MemoryBytes:   m.conf().MemoryBytes,
		NanoCPUs:      m.conf().NanoCPUs,
		PidsLimit:     m.conf().PidsLimit,
		CapAdd:        m.conf().CapAdd,
	}
	switch m.conf().Workspace {
	case WorkspaceVolume:
		// The engine makes the volume, labelled, if the user's first
		// launch comes before any import made it.
		s.Mounts = []docker.Mount{{Type: "volume", Source: VolumeName(rec.Group, rec.User), Target: workspaceMount,
			VolumeLabels: volumeLabels(rec.Group, rec.User)}}
	case WorkspaceBind:
		s.Mounts = []docker.Mount{{Type: "bind", Source: m.bindDir(rec.Group, rec.User), Target: workspaceMount}}
	}
	return s
}

// WorkspaceName names the workspace of a user in the configured mode: its
// volume, its host directory, or WorkspaceEphemeral.
func (m *Manager) WorkspaceName(group, user string) string {
	switch m.conf().Workspace {
	case WorkspaceVolume:
		return VolumeName(group, user)
	case WorkspaceBind:
		return m.bindDir(group, user)
	}
	return WorkspaceEphemeral
}

func (m *Manager) bindDir(group, user string) string {
	return filepath.Join(m.conf().WorkspaceDir, group, user)
}

// volumeLabels are the labels of a user's workspace volume.
func volumeLabels(group, user string) map[string]string {
	return map[string]string{LabelManagedBy: managedByValue, LabelGroup: group, LabelUser: user}
}

// EnsureWorkspace creates the persistent workspace of a user if the mode
// has one: the labelled named volume, or the host directory owned by the
// sandbox user.
func (m *Manager) EnsureWorkspace(ctx context.Context, group, user string) error {
	if err := store.ValidateName("group", group); err != nil {
		return err
	}
	if err := store.ValidateName("user", user); err != nil {
		return err
	}
	return m.ensureWorkspace(ctx, group, user)
}

func (m *Manager) ensureWorkspace(ctx context.Context, group, user string) error {
	switch m.conf().Workspace {
	case WorkspaceVolume:
		return dockerErr(m.dc().EnsureVolume(ctx, VolumeName(group, user), volumeLabels(group, user)))
	case WorkspaceBind:
		dir := m.bindDir(group, user)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return fmt.Errorf("workspace directory: %w", err)
		}
		if err := os.Chown(dir, sandboxUID, sandboxGID); err != nil {
			return fmt.Errorf("workspace directory: %w", err)
		}
	}
	return nil
}

// DeleteWorkspace removes the persistent workspace of a user: their work
// is gone. The user's sandbox must not exist.
func (m *Manager) DeleteWorkspace(ctx context.Context, group, user string) error {
	if err := store.ValidateName("group", group); err != nil {
		return err
	}
	if err := store.ValidateName("user", user); err != nil {
		return err
	}
	if _, err := m.store.LiveInstance(ctx, group, user); err == nil {
		return fmt.Errorf("user %s/%s still has a sandbox; kill it first: %w", group, user, ErrConflict)
	}
	switch m.conf().Workspace {
	case WorkspaceVolume:
		err := m.dc().RemoveVolume(ctx, VolumeName(group, user))
		if errors.Is(err, docker.ErrNotFound) {
			return nil
		}
		return dockerErr(err)
	case WorkspaceBind:
		return os.RemoveAll(m.bindDir(group, user))
	}
	return nil
}

// sandboxFiles are the files injected into a new container: the Kilo
// config with the user's values filled in, the VS Code settings, and with
// a password the code-server config.
func (m *Manager) sandboxFiles(ctx context.Context, rec store.InstanceRecord, email string) ([]docker.File, error) {
	var files []docker.File
	file := func(p string, content []byte, mode os.FileMode) docker.File {
		return docker.File{Path: p, Content: content, UID: sandboxUID, GID: sandboxGID, Mode: mode}
	}
	kilo, ok := "", false
	if m.conf().KiloFor != nil {
		var err error
		if kilo, ok, err = m.conf().KiloFor(ctx, rec.Group, rec.User); err != nil {
			return nil, err
		}
	}
	if !ok {
		res, err := m.store.ResolveConfig(ctx, store.KeyKiloJSON, m.conf().KiloFile)
		if err != nil {
			return nil, err
		}
		kilo = res.Content
	}
	if kilo != "" {
		files = append(files, file(kiloConfigPath, []byte(llm.FillPlaceholders(kilo, rec.User, email, workspaceMount)), 0o600))
	}
	res, err := m.store.ResolveConfig(ctx, store.KeyVSCodeSettings, m.conf().VSCodeSettingsFile)
	if err != nil {
		return nil, err
	}
	if res.Content != "" {
		files = append(files, file(vscodeSettingsPath, []byte(res.Content), 0o644))
	}
	if rec.Password != "" {
		conf := fmt.Sprintf("bind-addr: 0.0.0.0:%d\nauth: password\npassword: %s\ncert: false\n", m.conf().ContainerPort, rec.Password)
		files = append(files, file(codeServerConfig, []byte(conf), 0o600))
	}
	return files, nil
}

// Polling of /healthz while a sandbox starts: every healthPollFast for the
// first healthPatience (a sandbox is handed over as soon as it answers, and a
// failed poll costs next to nothing), then backing off to healthPollSlow for
// one that takes long.
const (
	healthPollFast  = 20 * time.Millisecond
	healthPatience  = 5 * time.Second
	healthPollSlow  = 250 * time.Millisecond
	healthPollFirst = 10 * time.Millisecond
)

// waitHealthy polls code-server's /healthz on the published port.
func (m *Manager) waitHealthy(ctx context.Context, port int) error {
	ctx, cancel := context.WithTimeout(ctx, m.conf().ReadyTimeout)
	defer cancel()
	url := "http://" + net.JoinHostPort("127.0.0.1", strconv.Itoa(port)) + "/healthz"
	start, delay := time.Now(), healthPollFirst
	var last error
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return err
		}
		resp, err := m.health.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			err = fmt.Errorf("/healthz answered %s", resp.Status)
		}
		last = err
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w (last: %v)", context.Cause(ctx), last)
		case <-time.After(delay):
		}
		switch {
		case time.Since(start) < healthPatience:
			delay = healthPollFast
		case delay < healthPollSlow:
			delay = min(2*delay, healthPollSlow)
		}
	}
}

// ensureRunning brings a live record's sandbox to running.
func (m *Manager) ensureRunning(ctx context.Context, rec store.InstanceRecord) (store.InstanceRecord, error) {
	switch State(rec.State) {
	case StateRunning:
		return rec, nil
	case StatePaused:
		return m.unpause(ctx, rec)
	case StateStopped:
		if err := m.dc().Start(ctx, rec.ContainerID); err == nil {
			started := m.startedAt(ctx, rec.ContainerID)
			if err := m.waitHealthy(ctx, rec.Port); err != nil {
				return rec, err
			}
			return m.setStateWith(ctx, rec, StateRunning, "instance.start", func(r *store.InstanceRecord) {
				r.StartedAt = &started
			})
		} else if !errors.Is(err, docker.ErrNotFound) && !errors.Is(err, docker.ErrPortInUse) {
			return rec, dockerErr(err)
		}
	}
	// Starting (an interrupted launch), missing, or a container that cannot
	// start again: build it anew on the same workspace.
	return m.recreate(ctx, rec)
}

// Pause freezes a running sandbox.
func (m *Manager) Pause(ctx context.Context, id int64) (Instance, error) {
	r, err := m.act(ctx, id, func(rec store.InstanceRecord) (store.InstanceRecord, error) {
		if State(rec.State) != StateRunning {
			return rec, fmt.Errorf("instance %d is %s, not running: %w", id, rec.State, ErrConflict)
		}
		if err := m.dc().Pause(ctx, rec.ContainerID); err != nil {
			return rec, dockerErr(err)
		}
		return m.setState(ctx, rec, StatePaused, "instance.pause")
	})
	return toInstance(r), err
}

// Resume unfreezes a paused sandbox, or starts a stopped one.
func (m *Manager) Resume(ctx context.Context, id int64) (Instance, error) {
	r, err := m.act(ctx, id, func(rec store.InstanceRecord) (store.InstanceRecord, error) {
		switch State(rec.State) {
		case StatePaused, StateStopped, StateMissing:
			return m.ensureRunning(ctx, rec)
		}
		return rec, fmt.Errorf("instance %d is %s; only paused or stopped sandboxes resume: %w", id, rec.State, ErrConflict)
	})
	return toInstance(r), err
}

func (m *Manager) unpause(ctx context.Context, rec store.InstanceRecord) (store.InstanceRecord, error) {
	if err := m.dc().Unpause(ctx, rec.ContainerID); err != nil {
		return rec, dockerErr(err)
	}
	return m.setState(ctx, rec, StateRunning, "instance.resume")
}

// Kill removes a sandbox's container; its workspace stays. The record is
// kept as history, terminated, and its port is free again.
func (m *Manager) Kill(ctx context.Context, id int64) (Instance, error) {
	return m.kill(ctx, id, nil)
}

// kill kills a sandbox if check, given its current record under the
// user's lock, allows it.
func (m *Manager) kill(ctx context.Context, id int64, check func(store.InstanceRecord) error) (Instance, error) {
	r, err := m.act(ctx, id, func(rec store.InstanceRecord) (store.InstanceRecord, error) {
		if check != nil {
			if err := check(rec); err != nil {
				return rec, err
			}
		}
		if err := m.removeSandboxContainer(ctx, rec); err != nil {
			return rec, err
		}
		m.routes.Delete(idString(rec.ID))
		return m.store.TerminateInstance(ctx, rec.ID)
	})
	return toInstance(r), err
}

// Renew extends a sandbox's lifetime by d from now or from its current
// expiry, whichever is later.
func (m *Manager) Renew(ctx context.Context, id int64, d time.Duration) (Instance, error) {
	if d <= 0 {
		return Instance{}, &store.FieldError{Field: "minutes", Msg: "must be positive"}
	}
	r, err := m.act(ctx, id, func(rec store.InstanceRecord) (store.InstanceRecord, error) {
		return m.store.UpdateInstance(ctx, rec.ID, "instance.renew", func(r *store.InstanceRecord) error {
			from := time.Now().UTC()
			if r.ExpiresAt != nil && r.ExpiresAt.After(from) {
				from = *r.ExpiresAt
			}
			t := from.Add(d)
			r.ExpiresAt = &t
			return nil
		})
	})
	return toInstance(r), err
}

// Recreate replaces a sandbox's container with a new one on the same
// workspace and port, with freshly injected files.
func (m *Manager) Recreate(ctx context.Context, id int64) (Instance, error) {
	r, err := m.act(ctx, id, func(rec store.InstanceRecord) (store.InstanceRecord, error) {
		return m.recreate(ctx, rec)
	})
	return toInstance(r), err
}

func (m *Manager) recreate(ctx context.Context, rec store.InstanceRecord) (store.InstanceRecord, error) {
	if err := m.ready(ctx); err != nil {
		return rec, err
	}
	if err := m.removeSandboxContainer(ctx, rec); err != nil {
		return rec, err
	}
	rec, err := m.store.UpdateInstance(ctx, rec.ID, "instance.recreate", func(r *store.InstanceRecord) error {
		r.State, r.ContainerID, r.Image = string(StateStarting), "", m.conf().Image
		return nil
	})
	if err != nil {
		return rec, err
	}
	if rec.Port == 0 || !portFree(rec.Port) {
		if rec, err = m.movePort(ctx, rec); err != nil {
			return rec, err
		}
	}
	m.routes.Set(routeOf(rec, StateStarting))
	email := ""
	if u, err := m.store.GetUser(ctx, rec.Group, rec.User); err == nil {
		email = u.Email
	}
	r, err := m.provision(ctx, rec, email)
	if err != nil {
		m.routes.SetState(idString(rec.ID), StateMissing)
		if _, serr := m.setState(context.WithoutCancel(ctx), r, StateMissing, ""); serr != nil {
			m.log.Error("recording a failed recreate", "instance", rec.ID, "error", serr)
		}
	}
	return r, err
}

// act runs fn on a live instance under its user's lock.
func (m *Manager) act(ctx context.Context, id int64, fn func(store.InstanceRecord) (store.InstanceRecord, error)) (store.InstanceRecord, error) {
	rec, err := m.record(ctx, id)
	if err != nil {
		return rec, err
	}
	unlock := m.lockUser(rec.Group, rec.User)
	defer unlock()
	if rec, err = m.record(ctx, id); err != nil { // it may have changed while we waited
		return rec, err
	}
	if State(rec.State) == StateTerminated {
		return rec, fmt.Errorf("instance %d is terminated: %w", id, ErrConflict)
	}
	return fn(rec)
}

// setState records a sandbox's state and shows it in the routing table. A
// sandbox that becomes paused is kept paused, one that runs is no longer.
func (m *Manager) setState(ctx context.Context, rec store.InstanceRecord, st State, action string) (store.InstanceRecord, error) {
	return m.setStateWith(ctx, rec, st, action, nil)
}

// setStateWith is setState that also applies more, if not nil, to the
// record.
func (m *Manager) setStateWith(ctx context.Context, rec store.InstanceRecord, st State, action string, more func(*store.InstanceRecord)) (store.InstanceRecord, error) {
	r, err := m.store.UpdateInstance(ctx, rec.ID, action, func(r *store.InstanceRecord) error {
		r.State = string(st)
		switch st {
		case StateRunning:
			r.KeepPaused = false
		case StatePaused:
			r.KeepPaused = true
		}
		if more != nil {
			more(r)
		}
		return nil
	})
	if err != nil {
		return rec, err
	}
	if st == StateMissing || st == StateStopped {
		m.routes.SetState(idString(r.ID), st)
	} else {
		m.routes.Set(routeOf(r, st))
	}
	return r, nil
}

// removeContainer removes a container thon created, by ID, if it exists.
func (m *Manager) removeContainer(ctx context.Context, id string) {
	if id == "" {
		return
	}
	if err := m.dc().Remove(ctx, id, false); err != nil && !errors.Is(err, docker.ErrNotFound) {
		m.log.Warn("removing sandbox container", "container", id, "error", err)
	}
}

// removeSandboxContainer removes the container of a record: by its ID, or
// when the record has none, the container of its name if thon made it.
func (m *Manager) removeSandboxContainer(ctx context.Context, rec store.InstanceRecord) error {
	if rec.ContainerID != "" {
		err := m.dc().Remove(ctx, rec.ContainerID, false)
		if err == nil || errors.Is(err, docker.ErrNotFound) {
			return nil
		}
		return dockerErr(err)
	}
	if rec.Name == "" {
		return nil
	}
	err := m.replaceLeftover(ctx, rec.Name)
	if errors.Is(err, docker.ErrNotFound) {
		return nil
	}
	return err
}

func newPassword() (string, error) {
	b := make([]byte, passwordLength*3/4)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}

func idString(id int64) string { return strconv.FormatInt(id, 10) }
