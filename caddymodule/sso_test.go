package caddymodule

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/thon-dev/thon/auth"
	"github.com/thon-dev/thon/internal/dockertest"
)

// participantSession starts a session for a roster user of the running
// app, as a join link or an identity provider does once it knows them.
func participantSession(t *testing.T, group, user string) auth.Issued {
	t.Helper()
	app := activeApp(t)
	u, err := app.Store().GetUser(context.Background(), group, user)
	if err != nil {
		t.Fatal(err)
	}
	iss, err := app.AuthService().StartSession(context.Background(), auth.Principal{
		Kind: auth.KindParticipant, Name: u.Name, UserID: u.ID, Group: u.Group, Method: auth.MethodJoinLink,
	})
	if err != nil {
		t.Fatal(err)
	}
	return iss
}

// headersSeen decodes what the test sandbox's /headers saw.
func headersSeen(t *testing.T, x exchange) http.Header {
	t.Helper()
	var h http.Header
	if x.status != http.StatusOK || json.Unmarshal([]byte(x.body), &h) != nil {
		t.Fatalf("/headers: %d %s", x.status, x.body)
	}
	return h
}

// TestIntegrationSandboxSingleSignOn checks who the sandbox proxy lets in,
// over HTTP and WebSocket: the owner's participant session, organisers
// (token), group-mates only while the group shares; a browser without a
// session goes to the login page and back, a script gets 401, anyone else
// 403. What gets in reaches code-server without thon's cookies and token.
func TestIntegrationSandboxSingleSignOn(t *testing.T) {
	dockertest.Client(t)
	in := startCaddy(t, proxyConfig(t.TempDir(), dockertest.PortRange(50), ""))
	group, inst := launchGroup(t, "alice", "bob")
	bob := inst[1]
	alice := participantSession(t, group, "alice")
	aliceCookie := func(r *http.Request) {
		r.Header.Set("Cookie", fmt.Sprintf("%s=%s; theme=dark; %s=form-token; code-server-session=cs",
			auth.SessionCookieName, alice.Cookie, auth.FormCookieName))
	}
	sandbox := func(user, rest string) string { return in.base + "/s/" + group + "/" + user + "/" + rest }

	// Nobody: a browser is sent to sign in and back; a script gets 401.
	browser := func(r *http.Request) {
		r.Header.Set("Accept", "text/html,application/xhtml+xml")
		r.Header.Set("Sec-Fetch-Mode", "navigate")
	}
	x := call(t, "GET", sandbox("alice", "some/page?x=1"), "", "", browser)
	if want := "/login?next=" + url.QueryEscape("/s/"+group+"/alice/some/page?x=1"); x.status != http.StatusSeeOther || x.header.Get("Location") != want {
		t.Errorf("browser without a session: %d %q, want 303 %q", x.status, x.header.Get("Location"), want)
	}
	if x := call(t, "GET", sandbox("alice", "headers"), "", "", nil); x.status != http.StatusUnauthorized || x.header.Get("WWW-Authenticate") == "" {
		t.Errorf("script without a session: %d %s", x.status, x.body)
	}
	forged := func(r *http.Request) { r.AddCookie(&http.Cookie{Name: auth.SessionCookieName, Value: "forged"}) }
	if x := call(t, "GET", sandbox("alice", "headers"), "", "", forged); x.status != http.StatusUnauthorized {
		t.Errorf("forged session: %d %s", x.status, x.body)
	}

	// The owner gets in; thon's cookies stay behind, code-server's pass.
	seen := headersSeen(t, call(t, "GET", sandbox("alice", "headers"), "", "", aliceCookie))
	if c := seen.Get("Cookie"); c != "theme=dark; code-server-session=cs" {
		t.Errorf("cookies code-server saw: %q", c)
	}

	// Another participant's sandbox: 403, by name and by port.
	if x := call(t, "GET", sandbox("bob", ""), "", "", aliceCookie); x.status != http.StatusForbidden || !strings.Contains(x.body, "Not your sandbox") {
		t.Errorf("alice at bob's sandbox: %d %s", x.status, x.body)
	}
	if x := call(t, "GET", fmt.Sprintf("%s/%d/", in.base, bob.Port), "", "", aliceCookie); x.status != http.StatusForbidden {
		t.Errorf("alice at bob's port path: %d", x.status)
	}
	// ... and the API's list of every sandbox.
	if x := call(t, "GET", in.base+"/api/instances", "", "", aliceCookie); x.status != http.StatusForbidden {
		t.Errorf("alice at /api/instances: %d %s", x.status, x.body)
	}

	// An organiser's token opens any sandbox; code-server does not see it.
	seen = headersSeen(t, call(t, "GET", sandbox("bob", "headers"), "", "", bearer(in.token)))
	if a := seen.Get("Authorization"); a != "" {
		t.Errorf("code-server saw Authorization %q", a)
	}

	// A group that shares lets its members in; unsharing closes it again.
	share := func(on bool) {
		t.Helper()
		x := call(t, "PUT", in.base+"/api/groups/"+group, "application/json", fmt.Sprintf(`{"shared": %v}`, on), bearer(in.token))
		if x.status != http.StatusOK {
			t.Fatalf("share %v: %d %s", on, x.status, x.body)
		}
	}
	share(true)
	if x := call(t, "GET", sandbox("bob", "headers"), "", "", aliceCookie); x.status != http.StatusOK {
		t.Errorf("group-mate of a sharing group: %d %s", x.status, x.body)
	}
	share(false)
	if x := call(t, "GET", sandbox("bob", "headers"), "", "", aliceCookie); x.status != http.StatusForbidden {
		t.Errorf("group-mate after unsharing: %d", x.status)
	}

	// WebSockets: the same rules at the upgrade.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	wsURL := func(user string) string { return strings.Replace(sandbox(user, "headers"), "http://", "ws://", 1) }
	dial := func(user string, h http.Header) (*websocket.Conn, int) {
		t.Helper()
		c, resp, err := websocket.Dial(ctx, wsURL(user), &websocket.DialOptions{HTTPHeader: h})
		if err != nil {
			if resp == nil {
				t.Fatalf("websocket to %s: %v", user, err)
			}
			return nil, resp.StatusCode
		}
		return c, http.StatusSwitchingProtocols
	}
	if _, code := dial("alice", nil); code != http.StatusUnauthorized {
		t.Errorf("websocket without a session: %d", code)
	}
	withAlice := http.Header{"Cookie": {auth.SessionCookieName + "=" + alice.Cookie + "; theme=dark"}}
	if _, code := dial("bob", withAlice); code != http.StatusForbidden {
		t.Errorf("websocket to bob's sandbox as alice: %d", code)
	}
	c, code := dial("alice", withAlice)
	if c == nil {
		t.Fatalf("websocket to her own sandbox: %d", code)
	}
	defer c.CloseNow()
	_, data, err := c.Read(ctx)
	var wh http.Header
	if err != nil || json.Unmarshal(data, &wh) != nil || wh.Get("Cookie") != "theme=dark" {
		t.Errorf("websocket headers code-server saw: %s, %v", data, err)
	}
	echo(t, ctx, c, "hello alice")

	// A session that ended opens nothing.
	if err := activeApp(t).AuthService().EndSession(ctx, alice.Principal.Session); err != nil {
		t.Fatal(err)
	}
	if x := call(t, "GET", sandbox("alice", "headers"), "", "", aliceCookie); x.status != http.StatusUnauthorized {
		t.Errorf("ended session: %d", x.status)
	}
}
