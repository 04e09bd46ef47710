package caddymodule

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	"github.com/thon-dev/thon/api"
	"github.com/thon-dev/thon/auth"
	"github.com/thon-dev/thon/internal/lemonadetest"
)

// exchange is a finished request through Caddy.
type exchange struct {
	status int
	header http.Header
	body   string
}

// call sends a request as prepare makes it (no credentials unless it adds
// them) and does not follow redirects.
func call(t *testing.T, method, target, contentType, body string, prepare func(*http.Request)) exchange {
	t.Helper()
	req, err := http.NewRequest(method, target, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	if prepare != nil {
		prepare(req)
	}
	client := &http.Client{Timeout: 30 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, target, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return exchange{status: resp.StatusCode, header: resp.Header, body: string(b)}
}

// jsonError decodes an API error body, failing when it is none.
func (x exchange) jsonError(t *testing.T) api.Error {
	t.Helper()
	var e api.Error
	if x.header.Get("Content-Type") != "application/json" || json.Unmarshal([]byte(x.body), &e) != nil || e.Error == "" {
		t.Fatalf("not a JSON error (%d, %s): %s", x.status, x.header.Get("Content-Type"), x.body)
	}
	return e
}

func (x exchange) cookie(t *testing.T, name string) *http.Cookie {
	t.Helper()
	for _, c := range (&http.Response{Header: x.header}).Cookies() {
		if c.Name == name {
			return c
		}
	}
	t.Fatalf("no %s cookie in %v", name, x.header)
	return nil
}

func bearer(token string) func(*http.Request) {
	return func(r *http.Request) { r.Header.Set("Authorization", "Bearer "+token) }
}

func sessionOf(cookie, csrf string) func(*http.Request) {
	return func(r *http.Request) {
		r.AddCookie(&http.Cookie{Name: auth.SessionCookieName, Value: cookie})
		if csrf != "" {
			r.Header.Set(auth.CSRFHeader, csrf)
		}
	}
}

// routePath fills a route pattern's parameters with values that name
// nothing, so that a request that gets past the check changes nothing.
func routePath(pattern string) string {
	values := map[string]string{"group_id": "nosuch", "user_id": "999999", "id": "999999", "key": "nosuch",
		"username": "nosuch", "name": "nosuch"}
	return regexp.MustCompile(`\{([a-z_]+)\}`).ReplaceAllStringFunc(pattern, func(m string) string {
		return values[m[1:len(m)-1]]
	})
}

// TestIntegrationEveryRouteNeedsAuth walks every registered API route
// through a real Caddy: without credentials each answers 401 (but the
// open ones), with a participant's session 403, with an organiser's token
// something else; the admin endpoint asks for nothing.
func TestIntegrationEveryRouteNeedsAuth(t *testing.T) {
	in := startCaddy(t, siteConfig(t.TempDir(), ""))
	if code, body := in.do(http.MethodPost, in.base+"/api/groups/import", "application/yaml", []byte("groups:\n  alpha: [alice]\n")); code != 200 {
		t.Fatalf("import: %d %s", code, body)
	}
	app := activeApp(t)
	u, err := app.Store().GetUser(context.Background(), "alpha", "alice")
	if err != nil {
		t.Fatal(err)
	}
	part, err := app.AuthService().StartSession(context.Background(), auth.Principal{
		Kind: auth.KindParticipant, Name: "alice", UserID: u.ID, Group: "alpha", Method: auth.MethodJoinLink})
	if err != nil {
		t.Fatal(err)
	}
	routes := app.API().Routes()
	if len(routes) < 50 {
		t.Fatalf("only %d routes registered", len(routes))
	}
	public := 0
	for _, rt := range routes {
		target := in.base + routePath(rt.Pattern)
		body, ct := "", ""
		if rt.Method != http.MethodGet {
			body, ct = "{}", "application/json"
		}
		x := call(t, rt.Method, target, ct, body, nil)
		if rt.Access == api.LevelPublic {
			public++
			if x.status == http.StatusForbidden {
				t.Errorf("open route %s %s: %d %s", rt.Method, rt.Pattern, x.status, x.body)
			}
			continue
		}
		if x.status != http.StatusUnauthorized || x.header.Get("WWW-Authenticate") != `Bearer realm="thon"` {
			t.Errorf("%s %s without credentials: %d %v %s, want 401 with WWW-Authenticate", rt.Method, rt.Pattern, x.status, x.header, x.body)
			continue
		}
		x.jsonError(t)
		if rt.Access != api.LevelOrganiser {
			continue
		}
		x = call(t, rt.Method, target, ct, body, sessionOf(part.Cookie, part.CSRFToken))
		if x.status != http.StatusForbidden {
			t.Errorf("%s %s with a participant's session: %d %s, want 403", rt.Method, rt.Pattern, x.status, x.body)
			continue
		}
		x.jsonError(t)
	}
	if public != 5 { // health and the four sign-in routes
		t.Errorf("%d open routes, want 5", public)
	}
	// Past the check, an organiser's token reaches the handler; so does the
	// admin endpoint with no credentials.
	for _, rt := range routes {
		if rt.Access == api.LevelPublic {
			continue
		}
		body, ct := "", ""
		if rt.Method != http.MethodGet {
			body, ct = "{}", "application/json"
		}
		x := call(t, rt.Method, in.base+routePath(rt.Pattern), ct, body, bearer(in.token))
		if x.status == http.StatusUnauthorized || x.status == http.StatusForbidden {
			t.Errorf("%s %s with an organiser's token: %d %s", rt.Method, rt.Pattern, x.status, x.body)
		}
		adminPath := "/thon/" + strings.TrimPrefix(routePath(rt.Pattern), "/api/")
		x = call(t, rt.Method, in.admin+adminPath, ct, body, nil)
		if x.status == http.StatusUnauthorized || x.status == http.StatusForbidden {
			t.Errorf("%s %s on the admin endpoint: %d %s", rt.Method, adminPath, x.status, x.body)
		}
	}
}

// loginForm opens /login and returns the form token and its cookie.
func loginForm(t *testing.T, base string) (string, *http.Cookie) {
	t.Helper()
	x := call(t, "GET", base+"/login", "", "", nil)
	if x.status != 200 || !strings.Contains(x.body, `<form method="post" action="/api/auth/login">`) {
		t.Fatalf("GET /login: %d %s", x.status, x.body)
	}
	m := regexp.MustCompile(`name="csrf_token" value="([^"]+)"`).FindStringSubmatch(x.body)
	if m == nil {
		t.Fatalf("no form token in %s", x.body)
	}
	return m[1], x.cookie(t, auth.FormCookieName)
}

func TestIntegrationLoginLogout(t *testing.T) {
	t.Setenv("THON_TEST_LOCAL_PASSWORD", "the organisers' password")
	in := startCaddy(t, siteConfig(t.TempDir(), "auth {\n\t\t\tlocal_password {env.THON_TEST_LOCAL_PASSWORD}\n\t\t}"))

	// The login page's form signs in and goes on to next.
	token, formCookie := loginForm(t, in.base)
	form := url.Values{"csrf_token": {token}, "password": {"the organisers' password"}, "next": {"/docs/"}}
	x := call(t, "POST", in.base+"/api/auth/login", "application/x-www-form-urlencoded", form.Encode(),
		func(r *http.Request) { r.AddCookie(formCookie) })
	if x.status != http.StatusSeeOther || x.header.Get("Location") != "/docs/" {
		t.Fatalf("form login: %d %v %s", x.status, x.header, x.body)
	}
	c := x.cookie(t, auth.SessionCookieName)
	if !c.HttpOnly || c.SameSite != http.SameSiteLaxMode || c.Path != "/" {
		t.Errorf("session cookie %+v", c)
	}
	// Without its form token, the same form is refused.
	form.Del("csrf_token")
	if x := call(t, "POST", in.base+"/api/auth/login", "application/x-www-form-urlencoded", form.Encode(), nil); x.status != 403 {
		t.Errorf("form login without its token: %d %s", x.status, x.body)
	}

	var me struct {
		Name      string `json:"name"`
		CSRFToken string `json:"csrf_token"`
	}
	x = call(t, "GET", in.base+"/api/auth/me", "", "", sessionOf(c.Value, ""))
	if x.status != 200 || json.Unmarshal([]byte(x.body), &me) != nil || me.Name != auth.LocalOrganiser || me.CSRFToken == "" {
		t.Fatalf("me: %d %s", x.status, x.body)
	}
	if x := call(t, "GET", in.base+"/api/groups", "", "", sessionOf(c.Value, "")); x.status != 200 {
		t.Errorf("a read with the session: %d %s", x.status, x.body)
	}

	// CSRF: the session's changes carry its token, whatever their type.
	if x := call(t, "POST", in.base+"/api/groups", "application/json", `{"name":"alpha"}`, sessionOf(c.Value, "")); x.status != 403 ||
		x.jsonError(t).Field != "csrf_token" {
		t.Errorf("a change without the CSRF token: %d %s", x.status, x.body)
	}
	yaml := "groups:\n  beta: [bob]\n"
	for _, ct := range []string{"text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=b", ""} {
		if x := call(t, "POST", in.base+"/api/groups/import", ct, yaml, sessionOf(c.Value, "")); x.status != 403 {
			t.Errorf("a %q body without the CSRF token: %d %s", ct, x.status, x.body)
		}
	}
	if x := call(t, "POST", in.base+"/api/groups", "application/json", `{"name":"alpha"}`, sessionOf(c.Value, me.CSRFToken)); x.status != 201 {
		t.Errorf("a change with the CSRF token: %d %s", x.status, x.body)
	}
	if x := call(t, "POST", in.base+"/api/groups/import", "text/plain", yaml, sessionOf(c.Value, me.CSRFToken)); x.status != 200 {
		t.Errorf("a text/plain import with the CSRF token: %d %s", x.status, x.body)
	}

	// Logout ends the session: its cookie is refused from then on.
	x = call(t, "POST", in.base+"/api/auth/logout", "application/json", "{}", sessionOf(c.Value, ""))
	if x.status != 200 || !strings.Contains(x.body, `"signed_out":true`) {
		t.Fatalf("logout: %d %s", x.status, x.body)
	}
	if cleared := x.cookie(t, auth.SessionCookieName); cleared.MaxAge >= 0 || cleared.Value != "" {
		t.Errorf("logout's cookie %+v does not remove the session cookie", cleared)
	}
	if x := call(t, "GET", in.base+"/api/groups", "", "", sessionOf(c.Value, "")); x.status != 401 {
		t.Errorf("after logout: %d %s", x.status, x.body)
	}

	// A wrong password, and then too many.
	for i := range auth.DefaultLoginAttempts {
		x := call(t, "POST", in.base+"/api/auth/login", "application/json", `{"password":"guess `+strconv.Itoa(i)+`"}`, nil)
		if x.status != 401 {
			t.Fatalf("wrong password %d: %d %s", i, x.status, x.body)
		}
	}
	x = call(t, "POST", in.base+"/api/auth/login", "application/json", `{"password":"the organisers' password"}`, nil)
	if x.status != http.StatusTooManyRequests || x.header.Get("Retry-After") == "" {
		t.Errorf("sixth attempt: %d %v %s, want 429 with Retry-After", x.status, x.header, x.body)
	}
	x.jsonError(t)
}

func TestIntegrationSessionExpires(t *testing.T) {
	t.Setenv("THON_TEST_LOCAL_PASSWORD", "the organisers' password")
	in := startCaddy(t, siteConfig(t.TempDir(), "auth {\n\t\t\tlocal_password {env.THON_TEST_LOCAL_PASSWORD}\n\t\t\torganiser_session 1s\n\t\t}"))
	x := call(t, "POST", in.base+"/api/auth/login", "application/json", `{"password":"the organisers' password"}`, nil)
	if x.status != 200 {
		t.Fatalf("login: %d %s", x.status, x.body)
	}
	c := x.cookie(t, auth.SessionCookieName)
	if x := call(t, "GET", in.base+"/api/groups", "", "", sessionOf(c.Value, "")); x.status != 200 {
		t.Fatalf("a fresh session: %d %s", x.status, x.body)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		x := call(t, "GET", in.base+"/api/groups", "", "", sessionOf(c.Value, ""))
		if x.status == 401 {
			if !strings.Contains(x.jsonError(t).Error, "expired") {
				t.Errorf("expired session: %s", x.body)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the one-second session still works: %d %s", x.status, x.body)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// lastURLs are the site URLs of the last setup link setupLinks read.
var lastURLs []string

// setupLinks reads the setup links thon logged to file.
func setupLinks(t *testing.T, file string) []string {
	t.Helper()
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var links []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var line struct {
			Msg  string   `json:"msg"`
			Path string   `json:"path"`
			URLs []string `json:"urls"`
		}
		if json.Unmarshal(sc.Bytes(), &line) == nil && strings.HasPrefix(line.Path, "/setup?token=") {
			links = append(links, line.Path)
			if len(line.URLs) == 0 || !strings.HasSuffix(line.Msg, line.URLs[0]) || !strings.HasSuffix(line.URLs[0], line.Path) {
				t.Errorf("setup link line: %s", sc.Bytes())
			}
			lastURLs = line.URLs
		}
	}
	return links
}

func TestIntegrationSetupLink(t *testing.T) {
	dataDir, logFile := t.TempDir(), filepath.Join(t.TempDir(), "caddy.log")
	tmpl := func(site, admin int) string {
		cfg := siteConfig(dataDir, "")(site, admin)
		return strings.Replace(cfg, "\tpersist_config off\n", "\tpersist_config off\n\tlog {\n\t\toutput file "+logFile+"\n\t\tformat json\n\t}\n", 1)
	}
	in := startCaddy(t, tmpl)
	links := setupLinks(t, logFile)
	if len(links) != 1 {
		t.Fatalf("setup links logged: %v, want one", links)
	}
	if want := in.base + links[0]; len(lastURLs) != 1 || lastURLs[0] != want {
		t.Errorf("setup link URLs %v, want [%s]", lastURLs, want)
	}
	// The session secret was made, for thon's user only.
	if fi, err := os.Stat(filepath.Join(dataDir, auth.SecretFileName)); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("session secret file: %v %v", fi, err)
	}
	// A reload keeps the link: it logs no other.
	if err := caddy.Load(adapt(t, tmpl(in.sitePort(t), in.adminPort(t))), true); err != nil {
		t.Fatal(err)
	}
	in.waitReady()
	if again := setupLinks(t, logFile); len(again) != 1 {
		t.Errorf("after a reload: %v, want the one link", again)
	}

	x := call(t, "GET", in.base+links[0], "", "", nil)
	if x.status != 200 || !strings.Contains(x.body, `action="/setup"`) {
		t.Fatalf("GET %s: %d %s", links[0], x.status, x.body)
	}
	csrf := regexp.MustCompile(`name="csrf_token" value="([^"]+)"`).FindStringSubmatch(x.body)
	formCookie := x.cookie(t, auth.FormCookieName)
	setupToken := strings.TrimPrefix(links[0], "/setup?token=")
	form := url.Values{"csrf_token": {csrf[1]}, "token": {setupToken}, "login": {"ada"},
		"password": {"a password long enough"}, "confirm": {"a password long enough"}}
	post := func() exchange {
		return call(t, "POST", in.base+"/setup", "application/x-www-form-urlencoded", form.Encode(),
			func(r *http.Request) { r.AddCookie(formCookie) })
	}
	x = post()
	if x.status != http.StatusSeeOther {
		t.Fatalf("setup: %d %s", x.status, x.body)
	}
	c := x.cookie(t, auth.SessionCookieName)
	if x := call(t, "GET", in.base+"/api/groups", "", "", sessionOf(c.Value, "")); x.status != 200 {
		t.Errorf("the session setup made: %d %s", x.status, x.body)
	}
	// Used twice: refused.
	if x := post(); x.status != http.StatusGone || !strings.Contains(x.body, "used already") {
		t.Errorf("the link used again: %d %s", x.status, x.body)
	}
	if x := call(t, "GET", in.base+links[0], "", "", nil); x.status != http.StatusGone {
		t.Errorf("opening the used link: %d %s", x.status, x.body)
	}
	// The password it set signs in.
	x = call(t, "POST", in.base+"/api/auth/login", "application/json", `{"login":"ada","password":"a password long enough"}`, nil)
	if x.status != 200 {
		t.Errorf("login with the new password: %d %s", x.status, x.body)
	}
}

// TestIntegrationKeysStayApart: a gateway key is refused on /api, an
// organiser token on /v1.
func TestIntegrationKeysStayApart(t *testing.T) {
	e := startGateway(t, lemonadetest.Options{}, `{"mode": "per-user"}`)
	key := e.keys["alpha-alice"]
	if key == "" {
		t.Fatalf("no key for alpha-alice: %v", e.keys)
	}
	if x := call(t, "GET", e.base+"/api/groups", "", "", bearer(key)); x.status != 401 {
		t.Errorf("a gateway key on /api: %d %s", x.status, x.body)
	}
	if x := call(t, "POST", e.base+"/v1/chat/completions", "application/json", chatBody(false, 8), bearer(e.token)); x.status != 401 {
		t.Errorf("an organiser token on /v1: %d %s", x.status, x.body)
	}
	if x := call(t, "POST", e.base+"/v1/chat/completions", "application/json", chatBody(false, 8), bearer(key)); x.status != 200 {
		t.Errorf("the key on /v1: %d %s", x.status, x.body)
	}
}

// TestIntegrationHostileHost: the loopback listener refuses a Host that is
// not its own (DNS rebinding) on every thon handler.
func TestIntegrationHostileHost(t *testing.T) {
	in := startCaddy(t, proxyConfig(t.TempDir(), 20000, ""))
	port := in.sitePort(t)
	withHost := func(host string) func(*http.Request) {
		return func(r *http.Request) {
			r.Host = host
			bearer(in.token)(r)
		}
	}
	for _, path := range []string{"/api/health", "/api/groups", "/login", "/docs/", "/openapi.json", "/s/alpha/alice/", "/20001/"} {
		for _, host := range []string{"evil.example", fmt.Sprintf("evil.example:%d", port), "rebind.attacker.test", "127.0.0.1.evil.example", "192.0.2.1"} {
			x := call(t, "GET", in.base+path, "", "", withHost(host))
			if x.status != http.StatusMisdirectedRequest {
				t.Errorf("GET %s with Host %s: %d %s, want 421", path, host, x.status, x.body)
				continue
			}
			if e := x.jsonError(t); e.Field != "Host" || !strings.Contains(e.Error, "DNS rebinding") {
				t.Errorf("GET %s with Host %s: %s", path, host, x.body)
			}
		}
	}
	// Its own names pass.
	for _, host := range []string{fmt.Sprintf("127.0.0.1:%d", port), fmt.Sprintf("localhost:%d", port), "localhost", "LOCALHOST.",
		fmt.Sprintf("[::1]:%d", port)} {
		if x := call(t, "GET", in.base+"/api/health", "", "", withHost(host)); x.status != 200 {
			t.Errorf("Host %s: %d %s", host, x.status, x.body)
		}
	}
	// A sandbox's name under .localhost reaches the sandbox router (which
	// knows no such sandbox).
	if x := call(t, "GET", in.base+"/", "", "", withHost("alice.alpha.sandbox.localhost")); x.status != 404 || !strings.Contains(x.body, "No sandbox here") {
		t.Errorf("a sandbox's .localhost name: %d %s", x.status, x.body)
	}
	// A state-changing request from another Host is refused the same way.
	x := call(t, "POST", in.base+"/api/groups", "application/json", `{"name":"evil"}`, withHost("evil.example"))
	if x.status != http.StatusMisdirectedRequest {
		t.Errorf("POST with a hostile Host: %d %s", x.status, x.body)
	}
}

func TestLoopbackHost(t *testing.T) {
	for host, want := range map[string]bool{
		"": true, "localhost": true, "localhost:8080": true, "a.b.localhost:1": true, "127.0.0.1": true, "127.1.2.3:80": true,
		"[::1]:8080": true, "::1": true, "[::ffff:127.0.0.1]:1": true, "Localhost.": true,
		"example.com": false, "localhost.example.com": false, "10.0.0.1:8080": false, "[::2]:1": false, "notlocalhost": false,
	} {
		if got := loopbackHost(host); got != want {
			t.Errorf("loopbackHost(%q) = %v, want %v", host, got, want)
		}
	}
}

func TestAuthOption(t *testing.T) {
	for i, tc := range []struct {
		input   string
		want    AuthConfig
		wantErr string
	}{
		{input: "thon {\n auth {\n  local_password {env.AUTH_LOCAL_PASSWORD}\n  session_secret {env.AUTH_SESSION_SECRET}\n  organiser_session 8h\n  participant_session 3d\n }\n}",
			want: AuthConfig{LocalPassword: "{env.AUTH_LOCAL_PASSWORD}", SessionSecret: "{env.AUTH_SESSION_SECRET}",
				OrganiserSession: caddy.Duration(8 * time.Hour), ParticipantSession: caddy.Duration(72 * time.Hour)}},
		{input: "thon {\n auth {\n  local_password\n }\n}", want: AuthConfig{}},
		{input: "thon {\n auth {\n  organiser_session soon\n }\n}", wantErr: `auth organiser_session: "soon"`},
		{input: "thon {\n auth {\n  participant_session -1h\n }\n}", wantErr: "participant_session"},
		{input: "thon {\n auth {\n  oidc github\n }\n}", wantErr: `unrecognized auth option "oidc"`},
		{input: "thon {\n auth x\n}", wantErr: "wrong argument count"},
	} {
		var got App
		err := got.UnmarshalCaddyfile(caddyfile.NewTestDispenser(tc.input))
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("case %d: error %v, want %q", i, err, tc.wantErr)
			}
			continue
		}
		if err != nil || got.Auth == nil || *got.Auth != tc.want {
			t.Errorf("case %d: %+v, %v; want %+v", i, got.Auth, err, tc.want)
		}
	}
}
