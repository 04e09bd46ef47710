package sandboxes

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/thon-dev/thon/internal/dockertest"
	"github.com/thon-dev/thon/sandboxes/docker"
	"github.com/thon-dev/thon/store"
)

// testLog writes a manager's log to the test's.
type testLog struct{ t *testing.T }

func (w testLog) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// waitFor polls cond until it holds or a generous deadline passes; what
// describes the state for the failure message.
func waitFor(t *testing.T, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		ok, state := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: still %s after 60 s", what, state)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// healthy reports whether the sandbox on port answers /healthz now.
func healthy(port int) bool {
	resp, err := (&http.Client{Timeout: time.Second}).Get(fmt.Sprintf("http://127.0.0.1:%d/healthz", port))
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// TestEngineRestart runs sandboxes on a private dockerd, stops the engine
// under them and starts it again: the running ones run again on their
// ports, the paused one is paused, the stopped one stopped, the killed one
// gone, and records and routes say so; a sandbox that crashes is restarted
// by the engine and shows its restarts and how it ended.
func TestEngineRestart(t *testing.T) {
	eng := dockertest.StartEngine(t)
	dc := eng.Client()
	ctx := context.Background()

	st, err := store.Open(ctx, filepath.Join(t.TempDir(), "thon.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	group := dockertest.Name("rst")
	users := []string{"run", "pause", "stop", "kill", "legacy"}
	r := store.Roster{Groups: []store.RosterGroup{{Name: group}}}
	for _, u := range users {
		r.Groups[0].Users = append(r.Groups[0].Users, store.RosterUser{Name: u})
	}
	if _, err := st.ImportRoster(ctx, r); err != nil {
		t.Fatal(err)
	}
	// A manager as the other tests make it, on the private engine.
	e := &env{t: t, st: st, dc: dc, group: group, ctx: ctx}
	m := e.manager(func(c *Config) { c.Logger = slog.New(slog.NewTextHandler(testLog{t}, nil)) })
	cfg := m.Config()

	// An original-thon container, made before restart policies: adopting
	// it gives it the policy.
	legacyPort := cfg.PortEnd
	if _, err := eng.Docker("run", "-d", "--restart", "no", "--name", "thon-"+group+"-legacy",
		"--label", "managed-by=thon-client", "--label", "group="+group, "--label", "username=legacy",
		"--label", fmt.Sprintf("port=%d", legacyPort), "-p", fmt.Sprintf("127.0.0.1:%d:8443", legacyPort),
		dockertest.Image); err != nil {
		t.Fatal(err)
	}

	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); m.Run(runCtx) }()
	defer func() { cancel(); <-done }()
	<-m.Reconciled()

	in := map[string]Instance{}
	for _, u := range users[:4] {
		if in[u], err = m.Launch(ctx, group, u); err != nil {
			t.Fatalf("launch %s: %v", u, err)
		}
	}
	legacy, err := st.LiveInstance(ctx, group, "legacy")
	if err != nil {
		t.Fatalf("the original's container was not adopted: %v", err)
	}
	if c, err := dc.Inspect(ctx, legacy.ContainerID); err != nil || c.RestartPolicy != docker.RestartPolicy {
		t.Fatalf("adopted container: restart policy %q, %v; want %s", c.RestartPolicy, err, docker.RestartPolicy)
	}
	for _, u := range users[:4] {
		if c, err := dc.Inspect(ctx, in[u].ContainerID); err != nil || c.RestartPolicy != docker.RestartPolicy {
			t.Fatalf("%s: restart policy %q, %v; want %s", u, c.RestartPolicy, err, docker.RestartPolicy)
		}
	}

	// The organiser pauses one and stops one; another is stopped with the
	// engine's own `docker stop`.
	if _, err := m.Pause(ctx, in["pause"].ID); err != nil {
		t.Fatal(err)
	}
	u, err := st.GetUser(ctx, group, "kill")
	if err != nil {
		t.Fatal(err)
	}
	if k, err := m.StopUserID(ctx, u.ID); err != nil || k.State != StateTerminated {
		t.Fatalf("stop of user kill: %+v %v", k, err)
	}
	if _, err := eng.Docker("stop", "-t", "5", in["stop"].ContainerID); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "docker stop followed", func() (bool, string) {
		got, _ := m.Get(ctx, in["stop"].ID)
		return got.State == StateStopped, string(got.State)
	})

	eng.Stop()
	eng.Start()
	back := time.Now()

	// The running ones answer again on the ports they had.
	var answered time.Duration
	waitFor(t, "the running sandbox answers again", func() (bool, string) {
		return healthy(in["run"].Port), "not answering"
	})
	answered = time.Since(back)
	waitFor(t, "the original's sandbox answers again", func() (bool, string) {
		return healthy(legacyPort), "not answering"
	})

	want := map[string]State{"run": StateRunning, "pause": StatePaused, "stop": StateStopped, "kill": StateTerminated, "legacy": StateRunning}
	engineWant := map[string]string{"run": "running", "pause": "paused", "stop": "exited", "legacy": "running"}
	ids := map[string]int64{"legacy": legacy.ID}
	for u, i := range in {
		ids[u] = i.ID
	}
	waitFor(t, "records and routes follow the engine", func() (bool, string) {
		var wrong []string
		for u, id := range ids {
			got, err := m.Get(ctx, id)
			route, routed := m.Routes().ByID(idString(id))
			switch {
			case err != nil:
				wrong = append(wrong, fmt.Sprintf("%s: %v", u, err))
			case got.State != want[u]:
				wrong = append(wrong, fmt.Sprintf("%s record %s", u, got.State))
			case want[u] == StateTerminated && routed:
				wrong = append(wrong, fmt.Sprintf("%s routed", u))
			case want[u] != StateTerminated && (!routed || route.State != got.State || route.Port != got.Port):
				wrong = append(wrong, fmt.Sprintf("%s route %+v for record port %d", u, route, got.Port))
			}
			if s, ok := engineWant[u]; ok {
				if c, err := dc.Inspect(ctx, got.ContainerID); err != nil || c.State != s {
					wrong = append(wrong, fmt.Sprintf("%s engine %q %v", u, c.State, err))
				}
			}
		}
		return len(wrong) == 0, strings.Join(wrong, "; ")
	})
	settled := time.Since(back)
	t.Logf("engine back: the running sandbox answered /healthz %v later; records and routes right %v later",
		answered.Round(time.Millisecond), settled.Round(time.Millisecond))

	// Ports survived, and the killed sandbox has no container.
	for u, p := range map[string]int{"run": in["run"].Port, "pause": in["pause"].Port, "stop": in["stop"].Port, "legacy": legacyPort} {
		got, _ := m.Get(ctx, ids[u])
		c, err := dc.Inspect(ctx, got.ContainerID)
		if err != nil || got.Port != p || c.HostPort != p {
			t.Errorf("%s: port %d in the record, %d published (%v); want %d", u, got.Port, c.HostPort, err, p)
		}
	}
	if cs, err := dc.List(ctx, map[string]string{LabelGroup: group, LabelUser: "kill"}); err != nil || len(cs) != 0 {
		t.Errorf("the killed sandbox has containers again: %+v %v", cs, err)
	}
	if healthy(in["pause"].Port) {
		t.Error("the paused sandbox answers")
	}
	run, _ := m.Get(ctx, in["run"].ID)
	if run.Restarts != 1 || run.LastExit == nil || run.LastExit.Code != 0 {
		t.Errorf("running sandbox after the engine's restart: restarts %d, last exit %+v; want 1 and code 0", run.Restarts, run.LastExit)
	}
	// The paused one resumes, on the organiser's word.
	if r, err := m.Resume(ctx, in["pause"].ID); err != nil || r.State != StateRunning || !healthy(r.Port) {
		t.Errorf("resume of the paused sandbox: %+v %v", r, err)
	}

	// Crashes: the engine restarts the sandbox with backoff, and the
	// instance shows how often and how it last ended.
	for _, code := range []int{3, 7} {
		before, _ := m.Get(ctx, in["run"].ID)
		resp, err := http.Post(fmt.Sprintf("http://127.0.0.1:%d/exit?code=%d", before.Port, code), "", nil)
		if err != nil {
			t.Fatalf("crashing the sandbox: %v", err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusAccepted {
			t.Fatalf("POST /exit: %s, want 202 Accepted (is the private engine's image this tree's build?)", resp.Status)
		}
		crashed := time.Now()
		waitFor(t, fmt.Sprintf("the sandbox restarted after exiting with %d", code), func() (bool, string) {
			got, _ := m.Get(ctx, in["run"].ID)
			route, _ := m.Routes().ByID(idString(got.ID))
			ok := got.Restarts == before.Restarts+1 && got.LastExit != nil && got.LastExit.Code == code &&
				got.State == StateRunning && route.State == StateRunning && healthy(got.Port)
			return ok, fmt.Sprintf("%s, restarts %d, last exit %+v, route %s", got.State, got.Restarts, got.LastExit, route.State)
		})
		t.Logf("exit %d: the sandbox answered again and its record showed the restart %v later",
			code, time.Since(crashed).Round(time.Millisecond))
	}
	if c, err := dc.Inspect(ctx, in["run"].ContainerID); err != nil || c.RestartCount != 2 {
		t.Errorf("the engine's restart count %d (%v), want 2", c.RestartCount, err)
	}
}
