package caddymodule

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/coder/websocket"

	"github.com/thon-dev/thon/internal/dockertest"
	"github.com/thon-dev/thon/sandboxes"
	"github.com/thon-dev/thon/store"
)

// proxyConfig is a Caddyfile with the API and the sandbox proxy on one
// loopback site, sandboxes on a random port range of the real Docker
// engine, and a second loopback address listening by port.
func proxyConfig(dataDir string, portStart int, extra string) func(site, admin int) string {
	return func(site, admin int) string {
		return fmt.Sprintf(`{
	admin localhost:%d
	persist_config off
	thon {
		data_dir %s
		image %s
		port_range %d %d
		memory 256MiB
		cpus 0.5
		pids 128
	}
}

http://:%d {
	bind 127.0.0.1
	thon_sandbox {
		subdomain {user}.{group}.sandbox.localhost
		%s
	}
	thon_api
	respond "site" 200
}
`, admin, dataDir, dockertest.Image, portStart, portStart+49, site, extra)
	}
}

// launchGroup imports a group of users and launches their sandboxes
// through the running app.
func launchGroup(t *testing.T, users ...string) (string, []sandboxes.Instance) {
	t.Helper()
	app := activeApp(t)
	group := dockertest.Name("px")
	t.Cleanup(func() { dockertest.RemoveGroup(t, group) })
	r := store.Roster{Groups: []store.RosterGroup{{Name: group}}}
	for _, u := range users {
		r.Groups[0].Users = append(r.Groups[0].Users, store.RosterUser{Name: u})
	}
	if _, err := app.Store().ImportRoster(context.Background(), r); err != nil {
		t.Fatal(err)
	}
	var out []sandboxes.Instance
	for _, u := range users {
		in, err := app.Sandboxes().Launch(context.Background(), group, u)
		if err != nil {
			t.Fatalf("launch %s: %v", u, err)
		}
		out = append(out, in)
	}
	return group, out
}

func echo(t *testing.T, ctx context.Context, c *websocket.Conn, msg string) {
	t.Helper()
	if err := c.Write(ctx, websocket.MessageText, []byte(msg)); err != nil {
		t.Fatalf("websocket write %q: %v", msg, err)
	}
	_, got, err := c.Read(ctx)
	if err != nil {
		t.Fatalf("websocket read: %v", err)
	}
	if string(got) != msg {
		t.Fatalf("echo = %q, want %q", got, msg)
	}
}

func TestIntegrationSandboxProxy(t *testing.T) {
	dockertest.Client(t) // a real engine and the test image
	in := startCaddy(t, proxyConfig(t.TempDir(), dockertest.PortRange(50), ""))
	group, inst := launchGroup(t, "alice", "bob")
	alice, bob := inst[0], inst[1]

	noRedirect := &http.Client{Timeout: 5 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	fetch := func(url, host string) (int, http.Header, string) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, url, nil)
		if host != "" {
			req.Host = host
		}
		req.Header.Set("Authorization", "Bearer "+in.token) // an organiser
		resp, err := noRedirect.Do(req)
		if err != nil {
			t.Fatalf("GET %s: %v", url, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, resp.Header, string(b)
	}

	// By name, prefix stripped, Host kept, Service-Worker-Allowed added.
	code, hdr, body := fetch(in.base+"/s/"+group+"/alice/some/page?x=1", "")
	if code != http.StatusOK || !strings.Contains(body, `data-testid="path">/some/page<`) {
		t.Fatalf("by name: %d %s", code, body)
	}
	if hdr.Get("Service-Worker-Allowed") != "/" {
		t.Errorf("Service-Worker-Allowed = %q", hdr.Get("Service-Worker-Allowed"))
	}
	if !strings.Contains(body, strings.TrimPrefix(in.base, "http://")) {
		t.Errorf("the sandbox did not see the original Host: %s", body)
	}
	// By the original's /<port>/ path.
	code, _, body = fetch(fmt.Sprintf("%s/%d/other", in.base, bob.Port), "")
	if code != http.StatusOK || !strings.Contains(body, `data-testid="path">/other<`) {
		t.Errorf("by port path: %d %s", code, body)
	}
	// By subdomain.
	code, _, body = fetch(in.base+"/deep/path", "bob."+group+".sandbox.localhost")
	if code != http.StatusOK || !strings.Contains(body, `data-testid="path">/deep/path<`) {
		t.Errorf("by subdomain: %d %s", code, body)
	}
	// The prefix without its slash redirects to it.
	code, hdr, _ = fetch(in.base+"/s/"+group+"/alice?x=1", "")
	if code != http.StatusPermanentRedirect || hdr.Get("Location") != "/s/"+group+"/alice/?x=1" {
		t.Errorf("prefix redirect: %d %q", code, hdr.Get("Location"))
	}
	// Unknown sandboxes get a 404 page; other paths reach the next handlers.
	if code, _, body := fetch(in.base+"/s/"+group+"/nobody/", ""); code != http.StatusNotFound || !strings.Contains(body, "no sandbox") {
		t.Errorf("unknown sandbox: %d %s", code, body)
	}
	if code, _, body := fetch(in.base+"/elsewhere", ""); code != http.StatusOK || body != "site" {
		t.Errorf("non-sandbox path: %d %q", code, body)
	}

	// WebSockets by name and by port.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	wsBase := strings.Replace(in.base, "http://", "ws://", 1)
	organiser := &websocket.DialOptions{HTTPHeader: http.Header{"Authorization": {"Bearer " + in.token}}}
	wsAlice, _, err := websocket.Dial(ctx, wsBase+"/s/"+group+"/alice/ws", organiser)
	if err != nil {
		t.Fatalf("websocket to alice: %v", err)
	}
	defer wsAlice.CloseNow()
	echo(t, ctx, wsAlice, "hello alice")
	wsBob, _, err := websocket.Dial(ctx, fmt.Sprintf("%s/%d/ws", wsBase, bob.Port), organiser)
	if err != nil {
		t.Fatalf("websocket to bob: %v", err)
	}
	defer wsBob.CloseNow()
	echo(t, ctx, wsBob, "hello bob")

	// Zero reloads: pausing bob and starting carol change only the routing
	// table; alice's WebSocket is untouched.
	app := activeApp(t)
	if _, err := app.Sandboxes().Pause(ctx, bob.ID); err != nil {
		t.Fatal(err)
	}
	code, hdr, body = fetch(in.base+"/s/"+group+"/bob/", "")
	if code != http.StatusServiceUnavailable || !strings.Contains(body, "paused") || hdr.Get("Retry-After") == "" {
		t.Errorf("paused sandbox: %d %s", code, body)
	}
	if _, err := app.Store().AddUser(ctx, group, store.RosterUser{Name: "carol"}); err != nil {
		t.Fatal(err)
	}
	if _, err := app.Sandboxes().Launch(ctx, group, "carol"); err != nil {
		t.Fatal(err)
	}
	if code, _, _ := fetch(in.base+"/s/"+group+"/carol/", ""); code != http.StatusOK {
		t.Errorf("new sandbox without a reload: %d", code)
	}
	echo(t, ctx, wsAlice, "still here after routing changes")
	if _, err := app.Sandboxes().Resume(ctx, bob.ID); err != nil {
		t.Fatal(err)
	}

	// A config reload keeps live WebSockets open (stream_close_delay) and
	// the routing table with them.
	cfg := proxyConfig(app.DataDir, app.PortStart, "stream_close_delay 10m")(in.sitePort(t), in.adminPort(t))
	if err := caddy.Load(adapt(t, cfg), false); err != nil {
		t.Fatalf("reload: %v", err)
	}
	in.waitReady()
	echo(t, ctx, wsAlice, "alice survives the reload")
	echo(t, ctx, wsBob, "bob survives the reload")
	if code, _, _ := fetch(in.base+"/s/"+group+"/carol/", ""); code != http.StatusOK {
		t.Errorf("carol after the reload: %d", code)
	}
	_ = alice
}

// TestIntegrationSandboxProxyStreams checks that streamed responses pass the
// sandbox route as they come, with the directive's defaults: server-sent
// events and a chunked response of unknown length, each sent a piece at a
// time, the next piece only once the client has the last one. A proxy that
// held bytes back would stall the handshake.
//
// The upstream is a server in the test standing in for a participant's dev
// server (what code-server's /proxy/<port>/ forwards to), put into the
// routing table as a running sandbox on 127.0.0.1.
func TestIntegrationSandboxProxyStreams(t *testing.T) {
	in := startCaddy(t, proxyConfig(t.TempDir(), dockertest.PortRange(50), ""))
	gate := make(chan struct{})
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/events" {
			w.Header().Set("Content-Type", "text/event-stream")
		} else {
			w.Header().Set("Content-Type", "text/plain")
		}
		rc := http.NewResponseController(w)
		if err := rc.Flush(); err != nil { // the headers, as streaming servers do
			return
		}
		for i := range 3 {
			select {
			case <-gate:
			case <-r.Context().Done():
				return
			}
			fmt.Fprintf(w, "data: piece %d\n\n", i)
			if err := rc.Flush(); err != nil {
				return
			}
		}
	}))
	t.Cleanup(upstream.Close)
	port := upstream.Listener.Addr().(*net.TCPAddr).Port
	// After the app's first reconciliation, which drops routes without a
	// record.
	select {
	case <-activeApp(t).Sandboxes().Reconciled():
	case <-time.After(time.Minute):
		t.Fatal("the app did not reconcile with Docker")
	}
	routes := activeApp(t).Sandboxes().Routes()
	routes.Set(sandboxes.Route{ID: "stream-test", Group: "streams", User: "dev", Port: port, State: sandboxes.StateRunning})
	t.Cleanup(func() { routes.Delete("stream-test") })

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for _, path := range []string{"/events", "/chunked"} {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, in.base+"/s/streams/dev"+path, nil)
		req.Header.Set("Authorization", "Bearer "+in.token) // an organiser
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("%s: %v (a proxy holding the stream back never sends the headers)", path, err)
		}
		if resp.StatusCode != http.StatusOK {
			resp.Body.Close()
			t.Fatalf("%s: status %d", path, resp.StatusCode)
		}
		lines := make(chan string)
		go func() {
			defer close(lines)
			sc := bufio.NewScanner(resp.Body)
			for sc.Scan() {
				if sc.Text() != "" {
					lines <- sc.Text()
				}
			}
		}()
		for i := range 3 {
			gate <- struct{}{}
			select {
			case got, ok := <-lines:
				if want := fmt.Sprintf("data: piece %d", i); !ok || got != want {
					t.Fatalf("%s: piece %d: got %q (open %v), want %q", path, i, got, ok, want)
				}
			case <-time.After(10 * time.Second):
				t.Fatalf("%s: piece %d sent by the sandbox never reached the client: the proxy holds the stream back", path, i)
			}
		}
		if _, ok := <-lines; ok {
			t.Errorf("%s: more than 3 pieces", path)
		}
		resp.Body.Close()
	}
}
