package caddymodule

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"

	"github.com/thon-dev/thon/internal/dockertest"
	"github.com/thon-dev/thon/internal/exclusive"
	"github.com/thon-dev/thon/internal/lemonadetest"
	"github.com/thon-dev/thon/internal/serverproc"
	"github.com/thon-dev/thon/sandboxes"
	"github.com/thon-dev/thon/store"
)

// sandboxSettings is what a thon block sets for sandboxes and the gateway.
type sandboxSettings struct {
	image               string
	portStart, portEnd  int
	memory, cpus, pids  string
	gateway             string // the gateway sub-block
	lemonadeURL, siteIn string // siteIn: more directives in the site
	extraSite           string // another site block
}

func (s sandboxSettings) caddyfile(dataDir string) func(site, admin int) string {
	return func(site, admin int) string {
		return fmt.Sprintf(`{
	admin localhost:%d
	persist_config off
	thon {
		data_dir %s
		image %s
		port_range %d %d
		memory %s
		cpus %s
		pids %s
		lemonade {
			url %s
			api_key %s
			health_interval 1h
		}
		%s
	}
}

http://:%d {
	bind 127.0.0.1
	thon_sandbox
	thon_api
	thon_gateway
	%s
	respond "site" 200
}
%s
`, admin, dataDir, s.image, s.portStart, s.portEnd, s.memory, s.cpus, s.pids, s.lemonadeURL, lemonadeKey, s.gateway, site, s.siteIn, s.extraSite)
	}
}

// failingHandler is a route whose handler fails to provision (a regular
// expression that does not compile) after the thon app and thon_api have
// been provisioned: handlers are provisioned in route order.
const failingHandler = `{"handle": [{"handler": "thon_api"}, {"handler": "headers", "response": {"replace": {"X-Bad": [{"search_regexp": "(", "replace": "x"}]}}}]}`

// withRoute adds a route (JSON) to the end of the only HTTP server's
// routes of an adapted config.
func withRoute(t *testing.T, cfg []byte, route string) []byte {
	t.Helper()
	var c map[string]any
	if err := json.Unmarshal(cfg, &c); err != nil {
		t.Fatal(err)
	}
	servers := c["apps"].(map[string]any)["http"].(map[string]any)["servers"].(map[string]any)
	if len(servers) != 1 {
		t.Fatalf("%d servers, want 1", len(servers))
	}
	var r any
	if err := json.Unmarshal([]byte(route), &r); err != nil {
		t.Fatal(err)
	}
	for _, srv := range servers {
		s := srv.(map[string]any)
		routes, _ := s["routes"].([]any)
		s["routes"] = append(routes, r)
	}
	out, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// sandboxView is what a config decides about sandboxes, as the running
// manager has it.
type sandboxView struct {
	Image              string
	PortStart, PortEnd int
	Memory, CPUs, Pids int64
	Workspace          string
}

func viewOf(m *sandboxes.Manager) sandboxView {
	c := m.Config()
	return sandboxView{c.Image, c.PortStart, c.PortEnd, c.MemoryBytes, c.NanoCPUs, c.PidsLimit, c.Workspace}
}

func sortedRoutes(m *sandboxes.Manager) []sandboxes.Route {
	rs := m.Routes().All()
	sort.Slice(rs, func(i, j int) bool { return rs[i].ID < rs[j].ID })
	return rs
}

// TestIntegrationFailedLoadChangesNothing loads configs that Caddy refuses
// while thon runs sandboxes and the gateway: one whose handler fails to
// provision (after the thon app was provisioned with a different image,
// port range, limits and gateway settings), and one whose HTTP server
// cannot bind (so the thon app may have started before the config
// failed). The running config keeps its image, port range, limits, Docker
// client, gateway status and routes, and a sandbox still answers; then a
// good reload applies the new settings and closes the replaced client.
func TestIntegrationFailedLoadChangesNothing(t *testing.T) {
	dockertest.Client(t)
	lem := lemonadetest.Start(t, lemonadetest.Options{APIKey: lemonadeKey})
	dataDir := t.TempDir()
	portStart := dockertest.PortRange(100)
	running := sandboxSettings{
		image: dockertest.Image, portStart: portStart, portEnd: portStart + 49,
		memory: "256MiB", cpus: "0.5", pids: "128", lemonadeURL: lem.URL(),
	}
	in := startCaddy(t, running.caddyfile(dataDir))
	site, admin := in.sitePort(t), in.adminPort(t)

	group := dockertest.Name("fl")
	t.Cleanup(func() { dockertest.RemoveGroup(t, group) })
	app := activeApp(t)
	ctx := context.Background()
	if _, err := app.Store().ImportRoster(ctx, store.Roster{Groups: []store.RosterGroup{{Name: group, Users: []store.RosterUser{{Name: "alice"}, {Name: "bob"}}}}}); err != nil {
		t.Fatal(err)
	}
	alice, err := app.Sandboxes().Launch(ctx, group, "alice")
	if err != nil {
		t.Fatal(err)
	}
	code, body := in.do(http.MethodPost, in.base+"/api/gateway/setup", "application/json", []byte(`{"token_limit": 600, "token_window": 3600}`))
	if code != http.StatusOK {
		t.Fatalf("gateway setup: %d %s", code, body)
	}
	var setup struct {
		Consumers []struct{ Username, Key string }
	}
	if err := json.Unmarshal(body, &setup); err != nil {
		t.Fatal(err)
	}
	key := ""
	for _, c := range setup.Consumers {
		if c.Username == group+"-alice" {
			key = c.Key
		}
	}
	if key == "" {
		t.Fatalf("no consumer for alice: %s", body)
	}
	// remaining sends a chat completion with alice's key and returns
	// what is left of her window.
	remaining := func() int {
		t.Helper()
		req, _ := http.NewRequest(http.MethodPost, in.base+"/v1/chat/completions", strings.NewReader(chatBody(false, 5)))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer "+key)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		n, err := strconv.Atoi(resp.Header.Get("X-AI-RateLimit-Remaining"))
		if resp.StatusCode != http.StatusOK || err != nil || resp.Header.Get("X-AI-RateLimit-Limit") != "600" {
			t.Fatalf("chat: %s, limit %q remaining %q", resp.Status, resp.Header.Get("X-AI-RateLimit-Limit"), resp.Header.Get("X-AI-RateLimit-Remaining"))
		}
		return n
	}
	sandboxAnswers := func(when string) {
		t.Helper()
		code, body := in.do(http.MethodGet, in.base+"/s/"+group+"/alice/page", "", nil)
		if code != http.StatusOK || !strings.Contains(string(body), `data-testid="path">/page<`) {
			t.Fatalf("%s: alice's sandbox: %d %s", when, code, body)
		}
	}
	status := func() string {
		t.Helper()
		code, body := in.do(http.MethodGet, in.base+"/api/gateway/status", "", nil)
		if code != http.StatusOK {
			t.Fatalf("gateway status: %d %s", code, body)
		}
		return string(body)
	}

	sandboxAnswers("before")
	left := remaining()
	viewBefore, routesBefore := viewOf(app.Sandboxes()), sortedRoutes(app.Sandboxes())
	statusBefore, dockerBefore := status(), app.Sandboxes().Docker()
	if !strings.Contains(statusBefore, `"policy":"local"`) {
		t.Fatalf("gateway status before: %s", statusBefore)
	}
	if viewBefore.Image != dockertest.Image || viewBefore.PortStart != portStart || viewBefore.Memory != 256<<20 {
		t.Fatalf("running sandbox settings: %+v", viewBefore)
	}

	other := sandboxSettings{
		image: "thon/other:v9", portStart: portStart + 50, portEnd: portStart + 99,
		memory: "512MiB", cpus: "1", pids: "256", lemonadeURL: lem.URL(),
		gateway: "gateway {\n\t\t\tredis 127.0.0.1:6379\n\t\t\tredis_prefix thon-failed-load:\n\t\t\tkilo_url https://other.example.org/v1\n\t\t}",
	}
	held, err := net.Listen("tcp", "127.0.0.1:0") // a port Caddy cannot bind: no SO_REUSEPORT
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	unbindable := other
	unbindable.extraSite = fmt.Sprintf("http://:%d {\n\tbind 127.0.0.1\n\trespond \"never\"\n}\n", held.Addr().(*net.TCPAddr).Port)

	check := func(when string) {
		t.Helper()
		now := activeApp(t)
		if now != app {
			t.Fatalf("%s: the running config was replaced", when)
		}
		if v := viewOf(now.Sandboxes()); v != viewBefore {
			t.Errorf("%s: sandbox settings %+v, want %+v", when, v, viewBefore)
		}
		if now.Sandboxes().Docker() != dockerBefore {
			t.Errorf("%s: the manager's Docker client was replaced", when)
		}
		if rs := sortedRoutes(now.Sandboxes()); !reflect.DeepEqual(rs, routesBefore) {
			t.Errorf("%s: routes %+v, want %+v", when, rs, routesBefore)
		}
		if s := status(); s != statusBefore {
			t.Errorf("%s: gateway status\n%s\nwant\n%s", when, s, statusBefore)
		}
		sandboxAnswers(when)
		if refs, _ := pool.References(now.dbKey); refs != 1 {
			t.Errorf("%s: %d references to the database, want 1", when, refs)
		}
	}

	// Refused in Provision: the admin API answers 400 and nothing changed.
	bad := withRoute(t, adapt(t, other.caddyfile(dataDir)(site, admin)), failingHandler)
	resp, err := http.Post(in.admin+"/load", "application/json", strings.NewReader(string(bad)))
	if err != nil {
		t.Fatal(err)
	}
	var loadErr struct{ Error string }
	json.NewDecoder(resp.Body).Decode(&loadErr)
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest || !strings.Contains(loadErr.Error, "X-Bad") {
		t.Fatalf("loading a config whose handler fails: %s %q", resp.Status, loadErr.Error)
	}
	check("after a config refused in provisioning")

	// Refused in Start: the apps start in random order, so the thon app
	// starts (and is stopped again) in some of these loads and not in
	// others; each time the running config keeps everything.
	for i := range 4 {
		err := caddy.Load(adapt(t, unbindable.caddyfile(dataDir)(site, admin)), true)
		if err == nil || !strings.Contains(err.Error(), held.Addr().String()) {
			t.Fatalf("load %d of a config that cannot bind %s: %v", i, held.Addr(), err)
		}
		check(fmt.Sprintf("after failed start %d", i))
	}

	// The window went on, and new sandboxes still get the running settings.
	if now := remaining(); now >= left {
		t.Errorf("remaining tokens %d after the refused loads, was %d before: the window was reset", now, left)
	}
	bob, err := app.Sandboxes().Launch(ctx, group, "bob")
	if err != nil {
		t.Fatal(err)
	}
	if bob.Image != dockertest.Image || bob.Port < portStart || bob.Port > portStart+49 {
		t.Errorf("bob launched with image %s on port %d, want %s in %d-%d", bob.Image, bob.Port, dockertest.Image, portStart, portStart+49)
	}

	// A good reload applies the new settings and closes the client it
	// replaced; calls made with that client still work.
	good := running
	good.memory, good.portStart, good.portEnd = "300MiB", portStart+50, portStart+99
	if err := caddy.Load(adapt(t, good.caddyfile(dataDir)(site, admin)), true); err != nil {
		t.Fatal(err)
	}
	in.waitReady()
	next := activeApp(t)
	if v := viewOf(next.Sandboxes()); v.Memory != 300<<20 || v.PortStart != portStart+50 {
		t.Errorf("after a good reload: %+v", v)
	}
	if next.Sandboxes().Docker() != next.docker || next.docker == dockerBefore {
		t.Error("the manager does not use the new config's Docker client")
	}
	if app.docker != nil {
		t.Error("the replaced config still holds its Docker client after its cleanup")
	}
	if err := dockerBefore.Ping(ctx); err != nil {
		t.Errorf("a call on the closed client: %v", err)
	}
	if _, err := next.Sandboxes().Get(ctx, alice.ID); err != nil {
		t.Error(err)
	}
	sandboxAnswers("after a good reload")
}

// TestIntegrationDataDirLock: a running thon holds its data directory,
// across reloads; `caddy validate` takes nothing; a reload to another
// directory moves the lock; stopping releases it.
func TestIntegrationDataDirLock(t *testing.T) {
	dataDir := t.TempDir()
	in := startCaddy(t, siteConfig(dataDir, ""))
	site, admin := in.sitePort(t), in.adminPort(t)
	held := func(dir string) bool {
		t.Helper()
		l, err := exclusive.LockDir(dir)
		if err == nil {
			l.Close()
			return false
		}
		if !errors.Is(err, exclusive.ErrInUse) {
			t.Fatal(err)
		}
		return true
	}
	holder := func(dir string) string {
		b, _ := os.ReadFile(filepath.Join(dir, exclusive.LockFile))
		return string(b)
	}
	self := strconv.Itoa(os.Getpid()) + " "
	if !held(dataDir) || !strings.HasPrefix(holder(dataDir), self) {
		t.Fatalf("running: lock held %v, lock file %q", held(dataDir), holder(dataDir))
	}

	other := t.TempDir()
	var cfg caddy.Config
	if err := json.Unmarshal(adapt(t, siteConfig(other, "")(freePort(t), freePort(t))), &cfg); err != nil {
		t.Fatal(err)
	}
	if err := caddy.Validate(&cfg); err != nil {
		t.Fatal(err)
	}
	if held(other) {
		t.Error("validating a config locked its data directory")
	}

	for i := range 2 {
		if err := caddy.Load(adapt(t, siteConfig(dataDir, fmt.Sprintf("image thon/sandbox-test:v%d", i))(site, admin)), true); err != nil {
			t.Fatalf("reload %d: %v", i, err)
		}
		in.waitReady()
		if !held(dataDir) || !strings.HasPrefix(holder(dataDir), self) {
			t.Fatalf("after reload %d: lock held %v, lock file %q", i, held(dataDir), holder(dataDir))
		}
	}

	if err := caddy.Load(adapt(t, siteConfig(other, "")(site, admin)), true); err != nil {
		t.Fatal(err)
	}
	in.waitReady()
	if held(dataDir) || !held(other) {
		t.Errorf("after moving to another directory: old held %v, new held %v", held(dataDir), held(other))
	}
	if err := caddy.Stop(); err != nil {
		t.Fatal(err)
	}
	if held(other) {
		t.Error("the lock outlives the stopped thon")
	}
}

// TestIntegrationSecondThonRefused runs real thon processes: a second one
// on the first one's data directory, listen address or admin address
// refuses to start, naming the directory or address and the first one's
// pid; once the first one has stopped, the second one starts.
func TestIntegrationSecondThonRefused(t *testing.T) {
	work := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	bin, err := serverproc.BuildThon(ctx, "go", work)
	if err != nil {
		t.Fatal(err)
	}
	start := func(name, dataDir string, site, admin int) *serverproc.Proc {
		t.Helper()
		file := filepath.Join(work, name+".Caddyfile")
		if err := os.WriteFile(file, []byte(siteConfig(dataDir, "")(site, admin)), 0o600); err != nil {
			t.Fatal(err)
		}
		p, err := serverproc.Start(name, filepath.Join(work, name+".log"), serverproc.CaddyEnv(filepath.Join(work, name)), bin, "run", "--config", file, "--adapter", "caddyfile")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(p.Stop)
		return p
	}
	health := func(site int) string { return fmt.Sprintf("http://127.0.0.1:%d/api/health", site) }
	refused := func(p *serverproc.Proc, want string) {
		t.Helper()
		err, exited := p.Wait(time.Minute)
		if !exited {
			p.Stop()
			t.Fatalf("the second thon runs; want it refused with %q\n%s", want, p.Tail())
		}
		if err == nil || !strings.Contains(p.Tail(), want) {
			t.Errorf("second thon exited (%v); want an error containing %q:\n%s", err, want, p.Tail())
		}
	}

	dataDir := filepath.Join(work, "data")
	site, admin := freePort(t), freePort(t)
	first := start("first", dataDir, site, admin)
	if err := first.WaitHTTP(ctx, health(site), http.StatusOK, time.Minute); err != nil {
		t.Fatal(err)
	}
	holder := fmt.Sprintf("pid %d (%s run --config %s", first.PID(), bin, filepath.Join(work, "first.Caddyfile"))

	refused(start("same-dir", dataDir, freePort(t), freePort(t)),
		fmt.Sprintf("data directory %s is in use by another thon: %s", dataDir, holder))
	refused(start("same-site", filepath.Join(work, "data2"), site, freePort(t)),
		fmt.Sprintf("listen address 127.0.0.1:%d is already served by another process: %s", site, holder))
	refused(start("same-admin", filepath.Join(work, "data3"), freePort(t), admin),
		fmt.Sprintf("listen address 127.0.0.1:%d is already served by another process: %s", admin, holder))

	// The first one never noticed.
	if err := first.WaitHTTP(ctx, health(site), http.StatusOK, time.Minute); err != nil {
		t.Fatal(err)
	}
	first.Stop()
	second := start("after", dataDir, site, admin)
	if err := second.WaitHTTP(ctx, health(site), http.StatusOK, time.Minute); err != nil {
		t.Fatalf("after the first thon stopped: %v", err)
	}
	second.Stop()
}
