package api

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/thon-dev/thon/internal/dockertest"
	"github.com/thon-dev/thon/sandboxes"
	"github.com/thon-dev/thon/sandboxes/docker"
	"github.com/thon-dev/thon/store"
)

// sandboxEnv is a testEnv whose server runs sandboxes on the real Docker
// engine with the sandbox test image, for a fresh group of users.
type sandboxEnv struct {
	*testEnv
	m         *sandboxes.Manager
	group     string
	portStart int
	portEnd   int
}

// newSandboxEnv imports a group with a unique name and the given users
// and serves an API whose manager uses a random port range. Every
// container and volume of the group is removed when the test ends.
func newSandboxEnv(t *testing.T, users []string, tweak func(*sandboxes.Config)) *sandboxEnv {
	t.Helper()
	dc := dockertest.Client(t)
	st := openStore(t)
	group := dockertest.Name("apitest-")
	importGroup(t, st, group, users)
	t.Cleanup(func() { dockertest.RemoveGroup(t, group) })

	cfg := sandboxes.Config{
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
	m, err := sandboxes.NewManager(st, dc, cfg)
	if err != nil {
		t.Fatalf("NewManager: %v", err)
	}
	e := newTestEnv(t, Options{Store: st, Sandboxes: m})
	return &sandboxEnv{testEnv: e, m: m, group: group, portStart: cfg.PortStart, portEnd: cfg.PortEnd}
}

// newUnreachableEnv serves an API whose manager's Docker engine cannot be
// reached, over a store with group alpha (alice, bob) and beta (carol).
func newUnreachableEnv(t testing.TB, opts Options) *testEnv {
	t.Helper()
	dc, err := docker.New("unix:///nonexistent.sock")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = dc.Close() })
	st := openStore(t)
	importGroup(t, st, "alpha", []string{"alice", "bob"})
	importGroup(t, st, "beta", []string{"carol"})
	m, err := sandboxes.NewManager(st, dc, sandboxes.Config{
		Image:     dockertest.Image,
		PortStart: 40000,
		Logger:    slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	opts.Store, opts.Sandboxes = st, m
	return newTestEnv(t, opts)
}

func openStore(t testing.TB) *store.Store {
	t.Helper()
	st, err := store.Open(context.Background(), filepath.Join(t.TempDir(), "thon.db"))
	if err != nil {
		t.Fatalf("opening store: %v", err)
	}
	t.Cleanup(func() { _ = st.Close() })
	return st
}

func importGroup(t testing.TB, st *store.Store, group string, users []string) {
	t.Helper()
	g := store.RosterGroup{Name: group}
	for _, u := range users {
		g.Users = append(g.Users, store.RosterUser{Name: u})
	}
	if _, err := st.ImportRoster(context.Background(), store.Roster{Groups: []store.RosterGroup{g}}); err != nil {
		t.Fatalf("importing %s: %v", group, err)
	}
}

// instance decodes an Instance answer with status.
func (e *testEnv) instance(r response, status int) sandboxes.Instance {
	e.t.Helper()
	var in sandboxes.Instance
	r.wantStatus(e.t, status).decode(e.t, &in)
	return in
}

// list answers GET /api/instances?query.
func (e *testEnv) list(query string) instanceList {
	e.t.Helper()
	var l instanceList
	e.do("GET", "/api/instances?"+query, "", nil).wantStatus(e.t, 200).decode(e.t, &l)
	return l
}

func ids(list []sandboxes.Instance) []int64 {
	var out []int64
	for _, in := range list {
		out = append(out, in.ID)
	}
	return out
}

// containerStatus is the engine's status of a container ("running",
// "paused", ...) or "absent".
func containerStatus(t *testing.T, name string) string {
	t.Helper()
	out, err := exec.Command("docker", "inspect", "-f", "{{.State.Status}}", name).CombinedOutput()
	if err != nil {
		if strings.Contains(strings.ToLower(string(out)), "no such") {
			return "absent"
		}
		t.Fatalf("docker inspect %s: %v %s", name, err, out)
	}
	return strings.TrimSpace(string(out))
}

// healthz fetches /healthz of a sandbox on its loopback port.
func healthz(t *testing.T, port int) int {
	t.Helper()
	resp, err := (&http.Client{Timeout: 5 * time.Second}).Get(fmt.Sprintf("http://127.0.0.1:%d/healthz", port))
	if err != nil {
		t.Fatalf("GET /healthz on port %d: %v", port, err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

func TestInstancesNotConfigured(t *testing.T) {
	e := newTestEnv(t, Options{})
	routes := []struct{ method, path, body string }{
		{"GET", "/api/instances", ""},
		{"POST", "/api/instances", `{"group": "alpha", "user": "alice"}`},
		{"GET", "/api/instances/1", ""},
		{"DELETE", "/api/instances/1", ""},
		{"POST", "/api/instances/1/pause", ""},
		{"POST", "/api/instances/1/resume", ""},
		{"POST", "/api/instances/1/recreate", ""},
		{"POST", "/api/instances/1/renew", `{"minutes": 5}`},
		{"POST", "/api/instances/bulk/pause", `{"ids": [1]}`},
		{"POST", "/api/instances/bulk/resume", `{"ids": [1]}`},
		{"POST", "/api/instances/bulk/kill", `{"group": "alpha"}`},
		{"POST", "/api/groups/alpha/start", ""},
		{"POST", "/api/groups/alpha/stop", ""},
		{"GET", "/api/operations/abc", ""},
		{"POST", "/api/users/1/launch", ""},
		{"POST", "/api/users/1/stop", ""},
		{"POST", "/api/groups/alpha/users/alice/launch", ""},
		{"POST", "/api/groups/alpha/users/alice/stop", ""},
	}
	for _, rt := range routes {
		t.Run(rt.method+" "+rt.path, func(t *testing.T) {
			e.doJSON(rt.method, rt.path, rt.body).wantError(t, 503, "", "sandboxes are not configured")
		})
	}
}

func TestInstancesDockerUnreachable(t *testing.T) {
	e := newUnreachableEnv(t, Options{})
	var g store.Group
	e.do("GET", "/api/groups/alpha", "", nil).wantStatus(t, 200).decode(t, &g)
	tests := []struct{ method, path, body string }{
		{"POST", "/api/instances", `{"group": "alpha", "user": "alice"}`},
		{"POST", "/api/groups/alpha/start", ""},
		{"POST", "/api/groups/alpha/start?wait=true", ""},
		{"POST", fmt.Sprintf("/api/users/%d/launch", g.Users[0].ID), ""},
		{"POST", "/api/groups/alpha/users/alice/launch", ""},
	}
	for _, tt := range tests {
		t.Run(tt.method+" "+tt.path, func(t *testing.T) {
			e.doJSON(tt.method, tt.path, tt.body).wantError(t, 503, "", "/nonexistent.sock")
		})
	}
	// Nothing was recorded, and what needs no engine still answers.
	if l := e.list("state=all"); l.Total != 0 || len(l.Instances) != 0 {
		t.Errorf("instances after failed launches: %+v", l)
	}
	e.doJSON("POST", "/api/instances", `{"group": "alpha", "user": "nobody"}`).wantError(t, 404, "", "nobody")
	var res bulkResults
	e.doJSON("POST", "/api/instances/bulk/kill", `{"group": "alpha"}`).wantStatus(t, 200).decode(t, &res)
	if len(res.Results) != 0 {
		t.Errorf("bulk kill of a group without sandboxes: %+v", res.Results)
	}
	e.doJSON("POST", "/api/groups/alpha/stop", "").wantStatus(t, 202)
}

func TestInstanceLifecycle(t *testing.T) {
	e := newSandboxEnv(t, []string{"alice", "bob", "carol"}, nil)
	g := e.group

	// Launch: 201 for a new sandbox, 200 for the one that runs already.
	r := e.doJSON("POST", "/api/instances", map[string]string{"group": g, "user": "alice"})
	alice := e.instance(r, 201)
	if loc := r.header.Get("Location"); loc != "/api/instances/"+strconv.FormatInt(alice.ID, 10) {
		t.Errorf("Location = %q", loc)
	}
	if alice.State != sandboxes.StateRunning || alice.Group != g || alice.User != "alice" ||
		alice.Port < e.portStart || alice.Port > e.portEnd || alice.URL != "/s/"+g+"/alice/" ||
		alice.Container != "thon-"+g+"-alice" {
		t.Fatalf("launched instance = %+v", alice)
	}
	if code := healthz(t, alice.Port); code != 200 {
		t.Errorf("sandbox /healthz = %d", code)
	}
	again := e.instance(e.doJSON("POST", "/api/instances", map[string]string{"group": g, "user": "alice"}), 200)
	if again.ID != alice.ID || again.Port != alice.Port {
		t.Errorf("second launch = %+v, want instance %d", again, alice.ID)
	}
	bob := e.instance(e.doJSON("POST", "/api/instances", map[string]string{"group": g, "user": "bob"}), 201)
	if bob.Port == alice.Port {
		t.Errorf("bob and alice share port %d", bob.Port)
	}
	if got := e.instance(e.do("GET", fmt.Sprintf("/api/instances/%d", bob.ID), "", nil), 200); got.ID != bob.ID || got.User != "bob" {
		t.Errorf("GET bob = %+v", got)
	}

	// List with filters and pagination.
	all := e.list("group=" + g)
	if all.Total != 2 || len(all.Instances) != 2 || all.Page != 1 || all.PerPage != 50 {
		t.Fatalf("list = %+v", all)
	}
	p1, p2 := e.list("group="+g+"&per_page=1"), e.list("group="+g+"&per_page=1&page=2")
	if p1.Total != 2 || p2.Total != 2 || len(p1.Instances) != 1 || len(p2.Instances) != 1 || p2.Page != 2 || p2.PerPage != 1 {
		t.Fatalf("pages = %+v, %+v", p1, p2)
	}
	if got := append(ids(p1.Instances), ids(p2.Instances)...); !slices.Equal(got, ids(all.Instances)) {
		t.Errorf("pages hold %v, want %v", got, ids(all.Instances))
	}
	if p3 := e.list("group=" + g + "&per_page=1&page=3"); p3.Total != 2 || len(p3.Instances) != 0 {
		t.Errorf("page past the end = %+v", p3)
	}
	if l := e.list("group=" + g + "&state=paused"); l.Total != 0 {
		t.Errorf("paused before any pause = %+v", l)
	}
	if l := e.list("group=other-group"); l.Total != 0 {
		t.Errorf("other group = %+v", l)
	}

	// Pause and resume, on the engine too; the wrong state is a 409.
	paused := e.instance(e.doJSON("POST", fmt.Sprintf("/api/instances/%d/pause", alice.ID), nil), 200)
	if paused.State != sandboxes.StatePaused || containerStatus(t, alice.Container) != "paused" {
		t.Fatalf("after pause: %+v, container %s", paused, containerStatus(t, alice.Container))
	}
	if l := e.list("group=" + g + "&state=paused"); !slices.Equal(ids(l.Instances), []int64{alice.ID}) {
		t.Errorf("paused list = %+v", l)
	}
	e.doJSON("POST", fmt.Sprintf("/api/instances/%d/pause", alice.ID), nil).wantError(t, 409, "", "paused")
	resumed := e.instance(e.doJSON("POST", fmt.Sprintf("/api/instances/%d/resume", alice.ID), "{}"), 200)
	if resumed.State != sandboxes.StateRunning || containerStatus(t, alice.Container) != "running" {
		t.Fatalf("after resume: %+v", resumed)
	}
	e.doJSON("POST", fmt.Sprintf("/api/instances/%d/resume", alice.ID), nil).wantError(t, 409, "", "running")

	// Renew extends the expiry by the minutes given.
	before := time.Now()
	renewed := e.instance(e.doJSON("POST", fmt.Sprintf("/api/instances/%d/renew", alice.ID), `{"minutes": 90}`), 200)
	if renewed.ExpiresAt == nil || renewed.ExpiresAt.Before(before.Add(89*time.Minute)) || renewed.ExpiresAt.After(time.Now().Add(91*time.Minute)) {
		t.Fatalf("expires_at after renewing by 90 minutes = %v", renewed.ExpiresAt)
	}
	renewed2 := e.instance(e.doJSON("POST", fmt.Sprintf("/api/instances/%d/renew", alice.ID), `{"minutes": 10}`), 200)
	if want := renewed.ExpiresAt.Add(10 * time.Minute); renewed2.ExpiresAt == nil || !renewed2.ExpiresAt.Equal(want) {
		t.Errorf("second renew: expires_at = %v, want %v", renewed2.ExpiresAt, want)
	}
	for _, body := range []string{`{"minutes": 0}`, `{"minutes": -5}`, `{"minutes": 10081}`, `{}`, `{"minutes": "5"}`, `{"minutes": 1.5}`} {
		e.doJSON("POST", fmt.Sprintf("/api/instances/%d/renew", alice.ID), body).wantError(t, 400, "minutes")
	}
	if got := e.instance(e.do("GET", fmt.Sprintf("/api/instances/%d", alice.ID), "", nil), 200); !got.ExpiresAt.Equal(*renewed2.ExpiresAt) {
		t.Errorf("bad renewals changed expires_at to %v", got.ExpiresAt)
	}

	// Recreate: a new container on the same port.
	recreated := e.instance(e.doJSON("POST", fmt.Sprintf("/api/instances/%d/recreate", bob.ID), nil), 200)
	if recreated.State != sandboxes.StateRunning || recreated.Port != bob.Port || recreated.ContainerID == bob.ContainerID || recreated.ContainerID == "" {
		t.Fatalf("recreated = %+v, was %+v", recreated, bob)
	}
	if code := healthz(t, recreated.Port); code != 200 {
		t.Errorf("recreated sandbox /healthz = %d", code)
	}

	// Bulk with a valid, an unknown and a valid ID: each gets its result.
	var res bulkResults
	e.doJSON("POST", "/api/instances/bulk/pause", map[string]any{"ids": []int64{alice.ID, 999999, bob.ID}}).
		wantStatus(t, 200).decode(t, &res)
	if len(res.Results) != 3 {
		t.Fatalf("bulk results = %+v", res.Results)
	}
	if r0, r1, r2 := res.Results[0], res.Results[1], res.Results[2]; !r0.OK || r0.ID != alice.ID || r0.State != sandboxes.StatePaused ||
		r1.OK || r1.ID != 999999 || !strings.Contains(r1.Error, "not found") ||
		!r2.OK || r2.ID != bob.ID || r2.State != sandboxes.StatePaused {
		t.Errorf("bulk pause results = %+v", res.Results)
	}
	for _, c := range []string{alice.Container, bob.Container} {
		if s := containerStatus(t, c); s != "paused" {
			t.Errorf("%s after bulk pause: %s", c, s)
		}
	}
	// A second pause conflicts on each, reported per item.
	e.doJSON("POST", "/api/instances/bulk/pause", map[string]any{"ids": []int64{alice.ID}}).wantStatus(t, 200).decode(t, &res)
	if len(res.Results) != 1 || res.Results[0].OK || !strings.Contains(res.Results[0].Error, "paused") {
		t.Errorf("bulk pause of a paused sandbox = %+v", res.Results)
	}
	// By group: every live instance of it.
	e.doJSON("POST", "/api/instances/bulk/resume", map[string]any{"group": g}).wantStatus(t, 200).decode(t, &res)
	var got []int64
	for _, r := range res.Results {
		if !r.OK || r.State != sandboxes.StateRunning {
			t.Errorf("bulk resume by group: %+v", r)
		}
		got = append(got, r.ID)
	}
	slices.Sort(got)
	if want := []int64{min(alice.ID, bob.ID), max(alice.ID, bob.ID)}; !slices.Equal(got, want) {
		t.Errorf("bulk resume by group acted on %v, want %v", got, want)
	}

	bulkErrors := []struct {
		name, body string
		status     int
		field      string
		substr     string
	}{
		{"nothing", `{}`, 400, "ids", "ids must list"},
		{"empty ids", `{"ids": []}`, 400, "ids", "ids must list"},
		{"both", fmt.Sprintf(`{"ids": [%d], "group": %q}`, alice.ID, g), 400, "group", "not both"},
		{"zero id", `{"ids": [0]}`, 400, "ids", "ids[0] is 0"},
		{"negative id", fmt.Sprintf(`{"ids": [%d, -1]}`, alice.ID), 400, "ids", "ids[1] is -1"},
		{"duplicate", fmt.Sprintf(`{"ids": [%d, %d]}`, alice.ID, alice.ID), 400, "ids", "ids[1] repeats"},
		{"too many", `{"ids": [` + strings.TrimSuffix(strings.Repeat("1,", 1001), ",") + `]}`, 400, "ids", "at most 1000"},
		{"string id", `{"ids": ["1"]}`, 400, "ids", "must be an integer"},
		{"unknown field", `{"ids": [1], "all": true}`, 400, "all", "unknown field"},
		{"unknown group", `{"group": "no-such-group"}`, 404, "", "no-such-group"},
		{"bad group", `{"group": "Bad_Group"}`, 400, "group", ""},
	}
	for _, tt := range bulkErrors {
		t.Run("bulk "+tt.name, func(t *testing.T) {
			e.doJSON("POST", "/api/instances/bulk/kill", tt.body).wantError(t, tt.status, tt.field, tt.substr)
		})
	}
	if l := e.list("group=" + g); l.Total != 2 {
		t.Fatalf("bad bulk requests killed something: %+v", l)
	}

	// Kill: the container goes, the record stays, terminated.
	killed := e.instance(e.doJSON("DELETE", fmt.Sprintf("/api/instances/%d", alice.ID), nil), 200)
	if killed.State != sandboxes.StateTerminated || killed.TerminatedAt == nil || containerStatus(t, alice.Container) != "absent" {
		t.Fatalf("killed = %+v, container %s", killed, containerStatus(t, alice.Container))
	}
	e.doJSON("POST", fmt.Sprintf("/api/instances/%d/pause", alice.ID), nil).wantError(t, 409, "", "terminated")
	e.doJSON("DELETE", fmt.Sprintf("/api/instances/%d", alice.ID), nil).wantError(t, 409, "", "terminated")
	if l := e.list("group=" + g); !slices.Equal(ids(l.Instances), []int64{bob.ID}) {
		t.Errorf("live list after kill = %v", ids(l.Instances))
	}
	if l := e.list("group=" + g + "&state=terminated"); !slices.Equal(ids(l.Instances), []int64{alice.ID}) {
		t.Errorf("terminated list = %v", ids(l.Instances))
	}
	if l := e.list("group=" + g + "&state=all"); l.Total != 2 {
		t.Errorf("state=all total = %d", l.Total)
	}
	// Launching again makes a new instance.
	alice2 := e.instance(e.doJSON("POST", "/api/instances", map[string]string{"group": g, "user": "alice"}), 201)
	if alice2.ID == alice.ID {
		t.Errorf("relaunch after kill reused instance %d", alice.ID)
	}

	// Errors that change nothing.
	errorCases := []struct {
		name, method, path, body string
		status                   int
		field, substr            string
	}{
		{"get unknown", "GET", "/api/instances/999999", "", 404, "", "instance 999999"},
		{"kill unknown", "DELETE", "/api/instances/999999", "", 404, "", "instance 999999"},
		{"pause unknown", "POST", "/api/instances/999999/pause", "", 404, "", "instance 999999"},
		{"resume unknown", "POST", "/api/instances/999999/resume", "", 404, "", "instance 999999"},
		{"recreate unknown", "POST", "/api/instances/999999/recreate", "", 404, "", "instance 999999"},
		{"renew unknown", "POST", "/api/instances/999999/renew", `{"minutes": 5}`, 404, "", "instance 999999"},
		{"id not a number", "GET", "/api/instances/abc", "", 400, "id", `"abc"`},
		{"id zero", "GET", "/api/instances/0", "", 400, "id", "positive integer"},
		{"id negative", "DELETE", "/api/instances/-3", "", 400, "id", "positive integer"},
		{"id too large", "POST", "/api/instances/99999999999999999999/pause", "", 400, "id", "positive integer"},
		{"action body field", "POST", fmt.Sprintf("/api/instances/%d/pause", bob.ID), `{"force": true}`, 400, "force", "unknown field"},
		{"action body array", "POST", fmt.Sprintf("/api/instances/%d/pause", bob.ID), `[]`, 400, "", "want a JSON object"},
		{"create without group", "POST", "/api/instances", `{"user": "alice"}`, 400, "group", "group is required"},
		{"create without user", "POST", "/api/instances", fmt.Sprintf(`{"group": %q}`, g), 400, "user", "user is required"},
		{"create bad user", "POST", "/api/instances", fmt.Sprintf(`{"group": %q, "user": "Bad User"}`, g), 400, "user", ""},
		{"create unknown user", "POST", "/api/instances", fmt.Sprintf(`{"group": %q, "user": "nobody"}`, g), 404, "", "nobody"},
		{"create unknown group", "POST", "/api/instances", `{"group": "no-such-group", "user": "alice"}`, 404, "", "no-such-group"},
		{"create unknown field", "POST", "/api/instances", fmt.Sprintf(`{"group": %q, "user": "carol", "image": "x"}`, g), 400, "image", "unknown field"},
		{"list bad page", "GET", "/api/instances?page=x", "", 400, "page", `"x"`},
		{"list page zero", "GET", "/api/instances?page=0", "", 400, "page", "from 1"},
		{"list page huge", "GET", "/api/instances?page=99999999999999999999999", "", 400, "page", "from 1"},
		{"list per_page zero", "GET", "/api/instances?per_page=0", "", 400, "per_page", "from 1 to 500"},
		{"list per_page too big", "GET", "/api/instances?per_page=501", "", 400, "per_page", "from 1 to 500"},
		{"list bad state", "GET", "/api/instances?state=sleeping", "", 400, "state", "sleeping"},
		{"list bad group", "GET", "/api/instances?group=Bad!", "", 400, "group", ""},
	}
	for _, tt := range errorCases {
		t.Run(tt.name, func(t *testing.T) {
			e.doJSON(tt.method, tt.path, tt.body).wantError(t, tt.status, tt.field, tt.substr)
		})
	}
	if l := e.list("group=" + g + "&state=all"); l.Total != 3 {
		t.Errorf("instances after the error cases: %+v", ids(l.Instances))
	}
	if s := containerStatus(t, "thon-"+g+"-carol"); s != "absent" {
		t.Errorf("carol's container is %s after refused requests", s)
	}
}

func TestGroupStartShowsProgress(t *testing.T) {
	users := []string{"u1", "u2", "u3", "u4"}
	// One launch at a time, so that the operation runs through visible steps.
	e := newSandboxEnv(t, users, func(c *sandboxes.Config) { c.Concurrency = 1 })
	g := e.group

	r := e.doJSON("POST", "/api/groups/"+g+"/start", nil)
	var started operationResponse
	r.wantStatus(t, 202).decode(t, &started)
	op := started.Operation
	loc := r.header.Get("Location")
	if loc != "/api/operations/"+op.ID || op.Kind != "start-group" || op.Target != g || op.Total != len(users) {
		t.Fatalf("202 answer: Location %q, operation %+v", loc, op)
	}

	// Poll while it runs: an instance seen starting, or the operation seen
	// partly done, is progress.
	var sawStarting, sawPartial bool
	deadline := time.Now().Add(4 * time.Minute) // a bound on a hung run, not a timing assertion
	for {
		for _, in := range e.list("group=" + g + "&state=all").Instances {
			sawStarting = sawStarting || in.State == sandboxes.StateStarting
		}
		var cur operationResponse
		e.do("GET", loc, "", nil).wantStatus(t, 200).decode(t, &cur)
		if cur.Operation.Status == "done" {
			op = cur.Operation
			break
		}
		if cur.Operation.Status != "running" || cur.Operation.Done > cur.Operation.Total {
			t.Fatalf("operation while running: %+v", cur.Operation)
		}
		sawPartial = sawPartial || cur.Operation.Done < cur.Operation.Total
		if time.Now().After(deadline) {
			t.Fatalf("operation still running: %+v", cur.Operation)
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Logf("progress seen while running: an instance starting %v, the operation partly done %v", sawStarting, sawPartial)
	if !sawStarting && !sawPartial {
		t.Error("no progress was visible while the group started")
	}
	if op.Done != len(users) || op.Failed != 0 || op.FinishedAt == nil || len(op.Results) != len(users) {
		t.Fatalf("finished operation: %+v", op)
	}
	for _, res := range op.Results {
		if !res.OK || res.State != sandboxes.StateRunning || res.ID == 0 {
			t.Errorf("result %+v", res)
		}
	}
	l := e.list("group=" + g + "&state=running")
	if l.Total != len(users) {
		t.Fatalf("running after start: %+v", l)
	}
	for _, in := range l.Instances {
		if code := healthz(t, in.Port); code != 200 {
			t.Errorf("%s: /healthz = %d", in.User, code)
		}
	}

	// Starting again is a no-op on running sandboxes.
	var again operationResponse
	e.doJSON("POST", "/api/groups/"+g+"/start?wait=1", nil).wantStatus(t, 200).decode(t, &again)
	if again.Operation.Status != "done" || again.Operation.Failed != 0 {
		t.Errorf("second start: %+v", again.Operation)
	}
	if l2 := e.list("group=" + g + "&state=all"); !slices.Equal(ids(l2.Instances), ids(l.Instances)) {
		t.Errorf("second start changed the instances: %v, was %v", ids(l2.Instances), ids(l.Instances))
	}

	// Stop with wait: 200 with the finished operation.
	r = e.doJSON("POST", "/api/groups/"+g+"/stop?wait=true", "{}")
	var stopped operationResponse
	r.wantStatus(t, 200).decode(t, &stopped)
	if s := stopped.Operation; s.Kind != "stop-group" || s.Status != "done" || s.Done != len(users) || s.Failed != 0 ||
		r.header.Get("Location") != "/api/operations/"+s.ID {
		t.Fatalf("stop: %+v, Location %q", s, r.header.Get("Location"))
	}
	if l := e.list("group=" + g); l.Total != 0 {
		t.Errorf("live after stop: %+v", l)
	}
	for _, u := range users {
		if s := containerStatus(t, "thon-"+g+"-"+u); s != "absent" {
			t.Errorf("container of %s after stop: %s", u, s)
		}
	}

	e.doJSON("POST", "/api/groups/no-such-group/start", nil).wantError(t, 404, "", "no-such-group")
	e.doJSON("POST", "/api/groups/no-such-group/stop", nil).wantError(t, 404, "", "no-such-group")
	e.doJSON("POST", "/api/groups/"+g+"/start?wait=maybe", nil).wantError(t, 400, "wait", "maybe")
	e.doJSON("POST", "/api/groups/"+g+"/start", `{"users": ["u1"]}`).wantError(t, 400, "users", "unknown field")
	e.do("GET", "/api/operations/no-such-operation", "", nil).wantError(t, 404, "", "no-such-operation")
	if l := e.list("group=" + g); l.Total != 0 {
		t.Errorf("refused starts launched something: %+v", l)
	}
}

func TestUserLaunchAndStop(t *testing.T) {
	e := newSandboxEnv(t, []string{"dora"}, nil)
	var grp store.Group
	e.do("GET", "/api/groups/"+e.group, "", nil).wantStatus(t, 200).decode(t, &grp)
	uid := grp.Users[0].ID
	base := fmt.Sprintf("/api/users/%d", uid)

	r := e.doJSON("POST", base+"/launch", nil)
	in := e.instance(r, 201)
	if in.User != "dora" || in.UserID != uid || in.State != sandboxes.StateRunning ||
		r.header.Get("Location") != fmt.Sprintf("/api/instances/%d", in.ID) {
		t.Fatalf("launch: %+v, Location %q", in, r.header.Get("Location"))
	}
	if again := e.instance(e.doJSON("POST", base+"/launch", "{}"), 200); again.ID != in.ID {
		t.Errorf("second launch = %+v, want instance %d", again, in.ID)
	}
	stopped := e.instance(e.doJSON("POST", base+"/stop", nil), 200)
	if stopped.ID != in.ID || stopped.State != sandboxes.StateTerminated || containerStatus(t, in.Container) != "absent" {
		t.Fatalf("stop: %+v", stopped)
	}
	e.doJSON("POST", base+"/stop", nil).wantError(t, 404, "", "no live sandbox")
	e.doJSON("POST", "/api/users/dora/launch", nil).wantError(t, 400, "user_id", "positive integer")
	e.doJSON("POST", "/api/users/0/stop", nil).wantError(t, 400, "user_id", "positive integer")
	e.doJSON("POST", "/api/users/999999/launch", nil).wantError(t, 404, "", "user 999999")
	e.doJSON("POST", base+"/launch", `{"group": "x"}`).wantError(t, 400, "group", "unknown field")
	e.do("POST", base+"/launch", "text/plain", []byte("go")).wantError(t, 415, "")
	if l := e.list("group=" + e.group); l.Total != 0 {
		t.Errorf("refused launches launched something: %+v", l)
	}
}

// TestGroupUserLaunchAndStop drives the sandbox routes that address a user
// by group and user name; they answer as the numeric ones do.
func TestGroupUserLaunchAndStop(t *testing.T) {
	e := newSandboxEnv(t, []string{"erin"}, nil)
	var grp store.Group
	e.do("GET", "/api/groups/"+e.group, "", nil).wantStatus(t, 200).decode(t, &grp)
	uid := grp.Users[0].ID
	base := "/api/groups/" + e.group + "/users/erin"

	r := e.doJSON("POST", base+"/launch", nil)
	in := e.instance(r, 201)
	if in.Group != e.group || in.User != "erin" || in.UserID != uid || in.State != sandboxes.StateRunning ||
		r.header.Get("Location") != fmt.Sprintf("/api/instances/%d", in.ID) {
		t.Fatalf("launch: %+v, Location %q", in, r.header.Get("Location"))
	}
	if code := healthz(t, in.Port); code != 200 {
		t.Errorf("the launched sandbox answers /healthz with %d", code)
	}
	if again := e.instance(e.doJSON("POST", base+"/launch", "{}"), 200); again.ID != in.ID {
		t.Errorf("second launch = %+v, want instance %d", again, in.ID)
	}
	// The numeric path and POST /api/instances reach the same sandbox.
	if byID := e.instance(e.doJSON("POST", fmt.Sprintf("/api/users/%d/launch", uid), nil), 200); byID.ID != in.ID {
		t.Errorf("launch by user ID = %+v, want instance %d", byID, in.ID)
	}
	stopped := e.instance(e.doJSON("POST", base+"/stop", nil), 200)
	if stopped.ID != in.ID || stopped.State != sandboxes.StateTerminated || containerStatus(t, in.Container) != "absent" {
		t.Fatalf("stop: %+v", stopped)
	}
	e.doJSON("POST", base+"/stop", nil).wantError(t, 404, "", "no live sandbox")

	// Unknown names are 404s that say what is unknown.
	unknown := "/api/groups/" + e.group + "/users/nobody"
	e.doJSON("POST", unknown+"/launch", nil).wantError(t, 404, "", `user "nobody" in group "`+e.group+`": not found`)
	e.doJSON("POST", unknown+"/stop", nil).wantError(t, 404, "", `user "nobody" in group "`+e.group+`": not found`)
	e.doJSON("POST", "/api/groups/no-such-group/users/erin/launch", nil).
		wantError(t, 404, "", `group "no-such-group": not found`)
	e.doJSON("POST", "/api/groups/no-such-group/users/erin/stop", nil).
		wantError(t, 404, "", `group "no-such-group": not found`)
	// Values that cannot be names, and bad bodies, are 400s and 415s.
	e.doJSON("POST", "/api/groups/"+e.group+"/users/Erin/launch", nil).wantError(t, 400, "user_id", "uppercase")
	e.doJSON("POST", "/api/groups/Bad_Group/users/erin/stop", nil).wantError(t, 400, "group_id", "Bad_Group")
	e.doJSON("POST", fmt.Sprintf("/api/groups/%s/users/%d/launch", e.group, uid), nil).
		wantError(t, 404, "", fmt.Sprintf(`user "%d" in group`, uid))
	e.doJSON("POST", base+"/launch", `{"group": "x"}`).wantError(t, 400, "group", "unknown field")
	e.do("POST", base+"/stop", "text/plain", []byte("go")).wantError(t, 415, "")
	if l := e.list("group=" + e.group); l.Total != 0 {
		t.Errorf("refused launches launched something: %+v", l)
	}
}

// instanceFuzzTargets are the instance routes FuzzInstanceBodies drives.
var instanceFuzzTargets = []struct{ method, path string }{
	{"POST", "/api/instances"},
	{"POST", "/api/instances/1/renew"},
	{"POST", "/api/instances/1/pause"},
	{"POST", "/api/instances/1/recreate"},
	{"POST", "/api/instances/bulk/pause"},
	{"POST", "/api/instances/bulk/resume"},
	{"POST", "/api/instances/bulk/kill"},
	{"POST", "/api/groups/alpha/start"},
	{"POST", "/api/groups/beta/stop?wait=true"},
	{"POST", "/api/users/1/launch"},
	{"POST", "/api/users/2/stop"},
	{"POST", "/api/groups/alpha/users/alice/launch"},
	{"POST", "/api/groups/beta/users/carol/stop"},
}

// FuzzInstanceBodies sends arbitrary bodies to the instance routes, over a
// real store and a manager whose Docker engine cannot be reached, so that
// nothing is created. Property: no panic, no 5xx but a 503 that names the
// engine, and every error is a JSON {"error": ...} body.
func FuzzInstanceBodies(f *testing.F) {
	e := newUnreachableEnv(f, Options{MaxBodyBytes: 16 << 10})
	seeds := []string{
		`{"group": "alpha", "user": "alice"}`,
		`{"group": "alpha", "user": "nobody"}`,
		`{"group": "Alpha", "user": "alice"}`,
		`{"minutes": 30}`,
		`{"minutes": 0}`,
		`{"minutes": 1e9}`,
		`{"ids": [1, 2, 3]}`,
		`{"ids": [1, 1]}`,
		`{"ids": [-1]}`,
		`{"ids": [9223372036854775807]}`,
		`{"ids": [9223372036854775808]}`,
		`{"group": "alpha"}`,
		`{"group": "beta", "ids": [1]}`,
		`{}`,
		`null`,
		`[]`,
		`{"ids": null}`,
		`{"x": 1}`,
		``,
		"{\"group\": \"\xff\"}",
	}
	for i, s := range seeds {
		f.Add(uint8(i), []byte(s))
	}
	f.Fuzz(func(t *testing.T, target uint8, body []byte) {
		tgt := instanceFuzzTargets[int(target)%len(instanceFuzzTargets)]
		req := httptest.NewRequest(tgt.method, tgt.path, bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		rec := httptest.NewRecorder()
		e.server.ServeHTTP(rec, e.authorize(req))
		data := rec.Body.Bytes()
		code := rec.Code
		if code >= 400 {
			var er Error
			if err := json.Unmarshal(data, &er); err != nil || er.Error == "" {
				t.Fatalf("%s %s with %q: status %d with a non-JSON error body %q", tgt.method, tgt.path, body, code, data)
			}
			if code == http.StatusServiceUnavailable && !strings.Contains(er.Error, "/nonexistent.sock") {
				t.Fatalf("%s %s with %q: 503 that does not name the engine: %s", tgt.method, tgt.path, body, data)
			}
			if code >= 500 && code != http.StatusServiceUnavailable {
				t.Fatalf("%s %s with %q: status %d: %s", tgt.method, tgt.path, body, code, data)
			}
		} else if code != http.StatusOK && code != http.StatusAccepted {
			t.Fatalf("%s %s with %q: unexpected status %d: %s", tgt.method, tgt.path, body, code, data)
		}
	})
}
