package sandboxes

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/thon-dev/thon/internal/dockertest"
	"github.com/thon-dev/thon/sandboxes/docker"
	"github.com/thon-dev/thon/store"
)

// env is a store with one fresh group of users and a manager on the real
// Docker engine.
type env struct {
	t     *testing.T
	st    *store.Store
	dc    *docker.Client
	m     *Manager
	group string
	users []string
	ctx   context.Context
}

func newEnv(t *testing.T, nUsers int, tweak func(*Config)) *env {
	t.Helper()
	dc := dockertest.Client(t)
	st, err := store.Open(context.Background(), filepath.Join(t.TempDir(), "thon.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	e := &env{t: t, st: st, dc: dc, group: dockertest.Name("mgr"), ctx: context.Background()}
	r := store.Roster{Groups: []store.RosterGroup{{Name: e.group}}}
	for i := range nUsers {
		u := fmt.Sprintf("user%d", i)
		e.users = append(e.users, u)
		r.Groups[0].Users = append(r.Groups[0].Users, store.RosterUser{Name: u, Email: u + "@example.com"})
	}
	if _, err := st.ImportRoster(e.ctx, r); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { dockertest.RemoveGroup(t, e.group) })
	e.m = e.manager(tweak)
	return e
}

func (e *env) manager(tweak func(*Config)) *Manager {
	e.t.Helper()
	cfg := Config{
		Image:        dockertest.Image,
		PortStart:    dockertest.PortRange(100),
		MemoryBytes:  256 << 20,
		NanoCPUs:     5e8,
		PidsLimit:    128,
		ReadyTimeout: time.Minute,
		Logger:       slog.New(slog.NewTextHandler(io.Discard, nil)),
	}
	cfg.PortEnd = cfg.PortStart + 99
	if tweak != nil {
		tweak(&cfg)
	}
	m, err := NewManager(e.st, e.dc, cfg)
	if err != nil {
		e.t.Fatal(err)
	}
	return m
}

func (e *env) launch(user string) Instance {
	e.t.Helper()
	in, err := e.m.Launch(e.ctx, e.group, user)
	if err != nil {
		e.t.Fatalf("launch %s: %v", user, err)
	}
	return in
}

// get fetches a path of a sandbox on its loopback port.
func get(t *testing.T, port int, path string) (int, string) {
	t.Helper()
	resp, err := (&http.Client{Timeout: 5 * time.Second}).Get(fmt.Sprintf("http://127.0.0.1:%d%s", port, path))
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestStartGroupOfFive(t *testing.T) {
	e := newEnv(t, 5, nil)
	op, err := e.m.StartGroup(e.ctx, e.group)
	if err != nil {
		t.Fatal(err)
	}
	if op.Status != "running" || op.Total != 5 {
		t.Fatalf("operation at start: %+v", op)
	}
	ctx, cancel := context.WithTimeout(e.ctx, 3*time.Minute)
	defer cancel()
	done, err := e.m.WaitOperation(ctx, op.ID)
	if err != nil {
		t.Fatal(err)
	}
	if done.Status != "done" || done.Done != 5 || done.Failed != 0 {
		t.Fatalf("operation: %+v", done)
	}
	list, total, err := e.m.List(e.ctx, ListFilter{Group: e.group})
	if err != nil || total != 5 {
		t.Fatalf("list: %d, %v", total, err)
	}
	ports := map[int]bool{}
	for _, in := range list {
		if in.State != StateRunning || in.Port < e.m.cfg.PortStart || in.Port > e.m.cfg.PortEnd {
			t.Errorf("instance %+v", in)
		}
		if ports[in.Port] {
			t.Errorf("port %d handed out twice", in.Port)
		}
		ports[in.Port] = true
		if code, _ := get(t, in.Port, "/healthz"); code != http.StatusOK {
			t.Errorf("%s: /healthz %d", in.User, code)
		}
		if r, ok := e.m.Routes().ByName(e.group, in.User); !ok || r.Port != in.Port || r.State != StateRunning {
			t.Errorf("route of %s: %+v %v", in.User, r, ok)
		}
	}
	// A second start of the group is idempotent: the same instances.
	op2, err := e.m.StartGroup(e.ctx, e.group)
	if err != nil {
		t.Fatal(err)
	}
	done2, _ := e.m.WaitOperation(ctx, op2.ID)
	if done2.Failed != 0 {
		t.Errorf("second start: %+v", done2)
	}
	if _, total, _ := e.m.List(e.ctx, ListFilter{State: "all", Group: e.group}); total != 5 {
		t.Errorf("instances after a second start: %d, want 5", total)
	}
	stop, err := e.m.StopGroup(e.ctx, e.group)
	if err != nil {
		t.Fatal(err)
	}
	if s, _ := e.m.WaitOperation(ctx, stop.ID); s.Done != 5 || s.Failed != 0 {
		t.Errorf("stop group: %+v", s)
	}
	if _, total, _ := e.m.List(e.ctx, ListFilter{Group: e.group}); total != 0 {
		t.Errorf("live instances after stop: %d", total)
	}
}

func TestLifecycleAndPersistence(t *testing.T) {
	e := newEnv(t, 1, nil)
	in := e.launch(e.users[0])
	if in.State != StateRunning || in.URL != URLPath(e.group, e.users[0]) || in.Workspace != VolumeName(e.group, e.users[0]) {
		t.Fatalf("launched %+v", in)
	}
	// Launch again: the same sandbox.
	if again := e.launch(e.users[0]); again.ID != in.ID {
		t.Errorf("second launch made instance %d, want %d", again.ID, in.ID)
	}

	// Write a file into the workspace through the sandbox.
	req, _ := http.NewRequest(http.MethodPut, fmt.Sprintf("http://127.0.0.1:%d/files?path=/workspace/keep.txt", in.Port), strings.NewReader("still here"))
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode/100 != 2 {
		t.Fatalf("writing into the workspace: %v %v", err, resp)
	}
	resp.Body.Close()

	p, err := e.m.Pause(e.ctx, in.ID)
	if err != nil || p.State != StatePaused {
		t.Fatalf("pause: %+v %v", p, err)
	}
	if r, _ := e.m.Routes().ByID(idString(in.ID)); r.State != StatePaused {
		t.Errorf("route state after pause: %s", r.State)
	}
	if _, err := e.m.Pause(e.ctx, in.ID); !errors.Is(err, ErrConflict) {
		t.Errorf("pausing a paused sandbox: %v", err)
	}
	r, err := e.m.Resume(e.ctx, in.ID)
	if err != nil || r.State != StateRunning {
		t.Fatalf("resume: %+v %v", r, err)
	}
	if code, _ := get(t, in.Port, "/healthz"); code != http.StatusOK {
		t.Errorf("healthz after resume: %d", code)
	}

	rec, err := e.m.Recreate(e.ctx, in.ID)
	if err != nil || rec.State != StateRunning || rec.ContainerID == in.ContainerID || rec.ID != in.ID {
		t.Fatalf("recreate: %+v %v", rec, err)
	}
	if code, body := get(t, rec.Port, "/files?path=/workspace/keep.txt"); code != http.StatusOK || body != "still here" {
		t.Errorf("workspace file after recreate: %d %q", code, body)
	}

	renewed, err := e.m.Renew(e.ctx, in.ID, 30*time.Minute)
	if err != nil || renewed.ExpiresAt == nil || time.Until(*renewed.ExpiresAt) < 29*time.Minute {
		t.Errorf("renew: %+v %v", renewed, err)
	}

	k, err := e.m.Kill(e.ctx, in.ID)
	if err != nil || k.State != StateTerminated || k.Port != 0 {
		t.Fatalf("kill: %+v %v", k, err)
	}
	if _, err := e.dc.Inspect(e.ctx, rec.ContainerID); !errors.Is(err, docker.ErrNotFound) {
		t.Errorf("container after kill: %v", err)
	}
	if ok, _ := e.dc.VolumeExists(e.ctx, VolumeName(e.group, e.users[0])); !ok {
		t.Error("kill removed the workspace volume")
	}
	if _, ok := e.m.Routes().ByID(idString(in.ID)); ok {
		t.Error("route of a killed sandbox")
	}
	if _, err := e.m.Resume(e.ctx, in.ID); !errors.Is(err, ErrConflict) {
		t.Errorf("resuming a terminated sandbox: %v", err)
	}
	// A new launch reattaches the same volume.
	again := e.launch(e.users[0])
	if code, body := get(t, again.Port, "/files?path=/workspace/keep.txt"); code != http.StatusOK || body != "still here" {
		t.Errorf("workspace file after kill and launch: %d %q", code, body)
	}
	if _, err := e.m.Kill(e.ctx, again.ID); err != nil {
		t.Fatal(err)
	}
	if err := e.m.DeleteWorkspace(e.ctx, e.group, e.users[0]); err != nil {
		t.Fatal(err)
	}
	if ok, _ := e.dc.VolumeExists(e.ctx, VolumeName(e.group, e.users[0])); ok {
		t.Error("workspace volume still there after DeleteWorkspace")
	}
}

// TestInjectionAndSecure checks the files thon copies into a sandbox and
// the password protection.
func TestInjectionAndSecure(t *testing.T) {
	dir := t.TempDir()
	kilo := filepath.Join(dir, "kilo.jsonc")
	if err := os.WriteFile(kilo, []byte(`{
  // the original's placeholders
  "mcp": {"git": {"environment": {"GIT_USERNAME": "$THON_USERNAME", "GIT_EMAIL": "$THON_USER_EMAIL", "GIT_BASE_DIR": "$WORKSPACE"}}},
}`), 0o600); err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, 1, func(c *Config) { c.Secure = true; c.KiloFile = kilo })
	if _, err := e.st.PutConfigFile(e.ctx, store.KeyVSCodeSettings, `{"workbench.startupEditor": "none"}`); err != nil {
		t.Fatal(err)
	}
	in := e.launch(e.users[0])
	if len(in.Password) != passwordLength {
		t.Fatalf("password %q is not %d characters", in.Password, passwordLength)
	}
	// Without the password, pages redirect to the login.
	c := &http.Client{Timeout: 5 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := c.Get(fmt.Sprintf("http://127.0.0.1:%d/", in.Port))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusFound || !strings.Contains(resp.Header.Get("Location"), "login") {
		t.Errorf("unauthenticated page: %s %s", resp.Status, resp.Header.Get("Location"))
	}
	resp, err = c.PostForm(fmt.Sprintf("http://127.0.0.1:%d/login", in.Port), url.Values{"password": {in.Password}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	var session *http.Cookie
	for _, ck := range resp.Cookies() {
		if ck.Name == "code-server-session" {
			session = ck
		}
	}
	if session == nil {
		t.Fatalf("login with the generated password set no session: %s", resp.Status)
	}
	read := func(path string) string {
		req, _ := http.NewRequest(http.MethodGet, fmt.Sprintf("http://127.0.0.1:%d/files?path=%s", in.Port, path), nil)
		req.AddCookie(session)
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("reading %s: %s %s", path, resp.Status, b)
		}
		return string(b)
	}
	k := read(kiloConfigPath)
	for _, want := range []string{`"GIT_USERNAME": "user0"`, `"GIT_EMAIL": "user0@example.com"`, `"GIT_BASE_DIR": "/workspace"`} {
		if !strings.Contains(k, want) {
			t.Errorf("kilo config lacks %s:\n%s", want, k)
		}
	}
	if s := read(vscodeSettingsPath); !strings.Contains(s, "startupEditor") {
		t.Errorf("settings.json = %q", s)
	}
}

func TestHardeningFromInspect(t *testing.T) {
	e := newEnv(t, 1, nil)
	in := e.launch(e.users[0])
	out, err := exec.Command("docker", "inspect", in.ContainerID).Output()
	if err != nil {
		t.Fatal(err)
	}
	var info []struct {
		Config struct {
			Labels map[string]string
		}
		HostConfig struct {
			CapDrop      []string
			CapAdd       []string
			SecurityOpt  []string
			Memory       int64
			NanoCpus     int64
			PidsLimit    *int64
			Privileged   bool
			PortBindings map[string][]struct{ HostIp, HostPort string }
		}
		Mounts []struct{ Type, Name, Source, Destination string }
	}
	if err := json.Unmarshal(out, &info); err != nil || len(info) != 1 {
		t.Fatalf("inspect: %v", err)
	}
	hc := info[0].HostConfig
	if len(hc.CapDrop) != 1 || hc.CapDrop[0] != "ALL" || len(hc.CapAdd) != 0 {
		t.Errorf("capabilities: drop %v add %v", hc.CapDrop, hc.CapAdd)
	}
	if !strings.Contains(strings.Join(hc.SecurityOpt, ","), "no-new-privileges") {
		t.Errorf("security options: %v", hc.SecurityOpt)
	}
	if hc.Memory != 256<<20 || hc.NanoCpus != 5e8 || hc.PidsLimit == nil || *hc.PidsLimit != 128 || hc.Privileged {
		t.Errorf("limits: memory %d cpus %d pids %v privileged %v", hc.Memory, hc.NanoCpus, hc.PidsLimit, hc.Privileged)
	}
	for port, binds := range hc.PortBindings {
		for _, b := range binds {
			if b.HostIp != "127.0.0.1" || b.HostPort != fmt.Sprint(in.Port) {
				t.Errorf("port %s bound to %s:%s", port, b.HostIp, b.HostPort)
			}
		}
	}
	for _, mnt := range info[0].Mounts {
		if strings.Contains(mnt.Source, "docker.sock") {
			t.Errorf("docker socket mounted: %+v", mnt)
		}
	}
	l := info[0].Config.Labels
	if l[LabelManagedBy] != "thon" || l[LabelGroup] != e.group || l[LabelUser] != e.users[0] || l[LabelPort] != fmt.Sprint(in.Port) {
		t.Errorf("labels: %v", l)
	}
}

// TestReconcileAfterRestart simulates a restart of thon: a new manager on
// the same database adopts every running sandbox, exactly once, marks
// vanished ones missing, and adopts the original's containers.
func TestReconcileAfterRestart(t *testing.T) {
	e := newEnv(t, 3, nil)
	a := e.launch(e.users[0])
	b := e.launch(e.users[1])
	c := e.launch(e.users[2])

	// While "thon is down": b's container is removed by hand, c's record
	// is lost, and an original-thon container appears.
	if out, err := exec.Command("docker", "rm", "-f", b.ContainerID).CombinedOutput(); err != nil {
		t.Fatalf("%v %s", err, out)
	}
	if err := e.st.DeleteInstance(e.ctx, c.ID); err != nil {
		t.Fatal(err)
	}
	legacyPort := e.m.cfg.PortEnd
	legacyUser := "legacy"
	if _, err := e.st.AddUser(e.ctx, e.group, store.RosterUser{Name: legacyUser}); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("docker", "run", "-d", "--name", "thon-"+e.group+"-"+legacyUser,
		"--label", "managed-by=thon-client", "--label", "group="+e.group, "--label", "username="+legacyUser,
		"--label", fmt.Sprintf("port=%d", legacyPort), "--label", "thon.group="+e.group,
		"-p", fmt.Sprintf("127.0.0.1:%d:8443", legacyPort), dockertest.Image).CombinedOutput()
	if err != nil {
		t.Fatalf("starting an original-thon container: %v %s", err, out)
	}

	// An original-thon container of a user this database does not know:
	// somebody else's, left alone.
	out, err = exec.Command("docker", "run", "-d", "--name", "thon-"+e.group+"-stranger",
		"--label", "managed-by=thon-client", "--label", "group="+e.group, "--label", "username=stranger",
		"--label", "thon.group="+e.group, dockertest.Image).CombinedOutput()
	if err != nil {
		t.Fatalf("starting an original-thon container: %v %s", err, out)
	}
	// And a sandbox of another thon sharing the engine: never adopted.
	foreignUser := "foreign"
	out, err = exec.Command("docker", "run", "-d", "--name", "thon-"+e.group+"-"+foreignUser,
		"--label", LabelManagedBy+"="+managedByValue, "--label", LabelGroup+"="+e.group, "--label", LabelUser+"="+foreignUser,
		"--label", LabelNode+"=0123456789abcdef", dockertest.Image).CombinedOutput()
	if err != nil {
		t.Fatalf("starting another thon's container: %v %s", err, out)
	}

	m2 := e.manager(func(cfg *Config) { cfg.PortStart, cfg.PortEnd = e.m.cfg.PortStart, e.m.cfg.PortEnd })
	for range 2 { // twice: the second run must change nothing
		if err := m2.Reconcile(e.ctx); err != nil {
			t.Fatal(err)
		}
	}
	list, total, err := m2.List(e.ctx, ListFilter{Group: e.group})
	if err != nil {
		t.Fatal(err)
	}
	if total != 4 {
		t.Fatalf("live instances after reconcile: %d %+v", total, list)
	}
	byUser := map[string]Instance{}
	for _, in := range list {
		if _, dup := byUser[in.User]; dup {
			t.Errorf("duplicate instance for %s", in.User)
		}
		byUser[in.User] = in
	}
	if in := byUser[e.users[0]]; in.ID != a.ID || in.State != StateRunning || in.ContainerID != a.ContainerID {
		t.Errorf("a: %+v", in)
	}
	if in := byUser[e.users[1]]; in.ID != b.ID || in.State != StateMissing {
		t.Errorf("b (container removed): %+v", in)
	}
	if in := byUser[e.users[2]]; in.ContainerID != c.ContainerID || in.State != StateRunning || in.Port != c.Port {
		t.Errorf("c (record lost) not adopted: %+v", in)
	}
	if in := byUser[legacyUser]; in.State != StateRunning || in.Port != legacyPort {
		t.Errorf("original-thon container not adopted: %+v", in)
	}
	for _, u := range []string{e.users[0], e.users[2], legacyUser} {
		if r, ok := m2.Routes().ByName(e.group, u); !ok || r.State != StateRunning {
			t.Errorf("route of %s after reconcile: %+v %v", u, r, ok)
		}
	}
	if _, ok := m2.Routes().ByName(e.group, e.users[1]); ok {
		t.Error("route to a missing sandbox")
	}
	if _, ok := byUser[foreignUser]; ok {
		t.Error("another thon's sandbox was adopted")
	}
	if _, ok := byUser["stranger"]; ok {
		t.Error("an original-thon sandbox of an unknown user was adopted")
	}
	// Its name is not taken over either.
	if _, err := e.st.AddUser(e.ctx, e.group, store.RosterUser{Name: foreignUser}); err != nil {
		t.Fatal(err)
	}
	if _, err := m2.Launch(e.ctx, e.group, foreignUser); !errors.Is(err, ErrConflict) || !strings.Contains(err.Error(), "another thon") {
		t.Errorf("launch over another thon's container: %v", err)
	}
	if out, err := exec.Command("docker", "inspect", "thon-"+e.group+"-"+foreignUser).CombinedOutput(); err != nil {
		t.Errorf("another thon's container was removed: %v %s", err, out)
	}
	// Launching b again rebuilds it on its workspace.
	nb, err := m2.Launch(e.ctx, e.group, e.users[1])
	if err != nil || nb.ID != b.ID || nb.State != StateRunning {
		t.Errorf("relaunch of missing sandbox: %+v %v", nb, err)
	}
}

// TestEventsFollowDocker changes a sandbox behind thon's back and waits for
// the record and route to follow.
func TestEventsFollowDocker(t *testing.T) {
	e := newEnv(t, 1, nil)
	in := e.launch(e.users[0])
	ctx, cancel := context.WithCancel(e.ctx)
	done := make(chan struct{})
	go func() { defer close(done); e.m.Run(ctx) }()
	defer func() { cancel(); <-done }()

	waitState := func(want State) {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for {
			got, err := e.m.Get(e.ctx, in.ID)
			route, _ := e.m.Routes().ByID(idString(in.ID))
			if err == nil && got.State == want && route.State == want {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("state stayed %s, want %s", got.State, want)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	select {
	case <-e.m.Subscribed():
	case <-time.After(time.Minute):
		t.Fatal("Run did not subscribe to Docker's events within a minute")
	}
	if out, err := exec.Command("docker", "pause", in.ContainerID).CombinedOutput(); err != nil {
		t.Fatalf("%v %s", err, out)
	}
	waitState(StatePaused) // the record and the route
	if out, err := exec.Command("docker", "unpause", in.ContainerID).CombinedOutput(); err != nil {
		t.Fatalf("%v %s", err, out)
	}
	waitState(StateRunning)
	if out, err := exec.Command("docker", "stop", "-t", "1", in.ContainerID).CombinedOutput(); err != nil {
		t.Fatalf("%v %s", err, out)
	}
	waitState(StateStopped)
	// Resume starts it again.
	if r, err := e.m.Resume(e.ctx, in.ID); err != nil || r.State != StateRunning {
		t.Errorf("resume of a stopped sandbox: %+v %v", r, err)
	}
}

func TestTTLReaper(t *testing.T) {
	e := newEnv(t, 1, func(c *Config) { c.DefaultTTL = time.Second })
	in := e.launch(e.users[0])
	if in.ExpiresAt == nil {
		t.Fatal("no expiry with a default TTL")
	}
	for time.Now().Before(in.ExpiresAt.Add(10 * time.Millisecond)) {
		time.Sleep(50 * time.Millisecond)
	}
	if n := e.m.Reap(e.ctx); n != 1 {
		t.Fatalf("reaped %d, want 1", n)
	}
	got, _ := e.m.Get(e.ctx, in.ID)
	if got.State != StateTerminated {
		t.Errorf("state after reap: %s", got.State)
	}
	// A renewed sandbox is not reaped.
	in2 := e.launch(e.users[0])
	if _, err := e.m.Renew(e.ctx, in2.ID, time.Hour); err != nil {
		t.Fatal(err)
	}
	if n := e.m.Reap(e.ctx); n != 0 {
		t.Errorf("reaped a renewed sandbox")
	}
}

func TestBadInputChangesNothing(t *testing.T) {
	e := newEnv(t, 1, nil)
	for i, tc := range []struct{ group, user string }{
		{"../etc", "x"}, {e.group, "Bob"}, {e.group, "a;rm -rf"}, {"", "x"}, {e.group, strings.Repeat("a", 64)},
	} {
		_, err := e.m.Launch(e.ctx, tc.group, tc.user)
		var fe *store.FieldError
		if !errors.As(err, &fe) {
			t.Errorf("case %d: %q/%q: %v, want a field error", i, tc.group, tc.user, err)
		}
	}
	if _, err := e.m.Launch(e.ctx, e.group, "nosuchuser"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("unknown user: %v", err)
	}
	if _, err := e.m.Pause(e.ctx, 999999); !errors.Is(err, ErrNotFound) {
		t.Errorf("unknown instance: %v", err)
	}
	if _, _, err := e.m.List(e.ctx, ListFilter{State: "exploded"}); err == nil {
		t.Error("bad state filter accepted")
	}
	if _, total, _ := e.m.List(e.ctx, ListFilter{State: "all"}); total != 0 {
		t.Errorf("bad input left %d instances", total)
	}
}

// TestForeignPortSkipped occupies the first port of the range with another
// process: the sandbox gets the next one.
func TestForeignPortSkipped(t *testing.T) {
	e := newEnv(t, 1, nil)
	ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", e.m.cfg.PortStart))
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	in := e.launch(e.users[0])
	if in.Port == e.m.cfg.PortStart {
		t.Fatalf("sandbox given the port another process holds")
	}
	if code, _ := get(t, in.Port, "/healthz"); code != http.StatusOK {
		t.Errorf("healthz: %d", code)
	}
}

// TestDockerUnreachable points the manager at a socket nobody serves.
func TestDockerUnreachable(t *testing.T) {
	e := newEnv(t, 1, nil)
	dead, err := docker.New("unix:///nonexistent/docker.sock")
	if err != nil {
		t.Fatal(err)
	}
	m, err := NewManager(e.st, dead, e.m.cfg)
	if err != nil {
		t.Fatal(err)
	}
	_, err = m.Launch(e.ctx, e.group, e.users[0])
	if !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), "/nonexistent/docker.sock") {
		t.Fatalf("launch with dockerd unreachable: %v", err)
	}
	if _, err := m.StartGroup(e.ctx, e.group); !errors.Is(err, ErrUnavailable) {
		t.Errorf("group start with dockerd unreachable: %v", err)
	}
	if _, total, _ := m.List(e.ctx, ListFilter{State: "all"}); total != 0 {
		t.Errorf("an unreachable engine left %d instance records", total)
	}
	if m.Routes().Len() != 0 {
		t.Error("an unreachable engine left routes")
	}
}

func TestBulk(t *testing.T) {
	e := newEnv(t, 3, nil)
	var ids []int64
	for _, u := range e.users {
		ids = append(ids, e.launch(u).ID)
	}
	res := e.m.Bulk(e.ctx, ActionPause, append(ids, 424242))
	if len(res) != 4 {
		t.Fatalf("results: %+v", res)
	}
	for i, r := range res[:3] {
		if !r.OK || r.State != StatePaused || r.ID != ids[i] {
			t.Errorf("pause %d: %+v", i, r)
		}
	}
	if res[3].OK || res[3].Error == "" {
		t.Errorf("unknown id: %+v", res[3])
	}
	for _, r := range e.m.Bulk(e.ctx, ActionResume, ids) {
		if !r.OK || r.State != StateRunning {
			t.Errorf("resume: %+v", r)
		}
	}
	for _, r := range e.m.Bulk(e.ctx, ActionKill, ids) {
		if !r.OK || r.State != StateTerminated {
			t.Errorf("kill: %+v", r)
		}
	}
}
