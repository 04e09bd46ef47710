package api

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/thon-dev/thon/auth"
	"github.com/thon-dev/thon/store"
)

// withCookie sends a session cookie and, when csrf is not empty, the CSRF
// header.
func withCookie(cookie, csrf string) func(*http.Request) {
	return func(r *http.Request) {
		r.AddCookie(&http.Cookie{Name: auth.SessionCookieName, Value: cookie})
		if csrf != "" {
			r.Header.Set(auth.CSRFHeader, csrf)
		}
	}
}

// sessionCookie returns the thon_session cookie a response set.
func (r response) sessionCookie(t *testing.T) *http.Cookie {
	t.Helper()
	for _, c := range (&http.Response{Header: r.header}).Cookies() {
		if c.Name == auth.SessionCookieName {
			return c
		}
	}
	t.Fatalf("no %s cookie in %v", auth.SessionCookieName, r.header)
	return nil
}

func localPasswordEnv(t *testing.T, change func(*auth.Options)) *testEnv {
	return newAuthTestEnv(t, Options{}, func(o *auth.Options) {
		o.LocalPassword = "s3cret-local-password"
		if change != nil {
			change(o)
		}
	})
}

func TestLoginAndLogout(t *testing.T) {
	e := localPasswordEnv(t, nil)
	anon := func(method, path, ct, body string) response {
		return e.send(method, path, ct, []byte(body), nil)
	}
	// Nobody.
	r := anon("GET", "/api/groups", "", "")
	r.wantError(t, 401, "", "for organisers", "Authorization: Bearer")
	if got := r.header.Get("WWW-Authenticate"); got != `Bearer realm="thon"` {
		t.Errorf("WWW-Authenticate = %q", got)
	}
	anon("GET", "/api/auth/me", "", "").wantError(t, 401, "", "no credentials")
	anon("GET", "/api/health", "", "").wantStatus(t, 200)

	// Wrong, then right password.
	anon("POST", "/api/auth/login", "application/json", `{"password": "nope"}`).wantError(t, 401, "", "wrong password")
	anon("POST", "/api/auth/login", "application/json", `{}`).wantError(t, 400, "password")
	anon("POST", "/api/auth/login", "application/json", `{"password": "x", "extra": 1}`).wantError(t, 400, "extra")
	r = anon("POST", "/api/auth/login", "application/json", `{"password": "s3cret-local-password"}`).wantStatus(t, 200)
	var sess sessionResponse
	r.decode(t, &sess)
	c := r.sessionCookie(t)
	if !c.HttpOnly || c.SameSite != http.SameSiteLaxMode || c.Secure || c.Path != "/" || c.MaxAge <= 0 {
		t.Errorf("session cookie %+v: want HttpOnly, SameSite=Lax, Path=/, not Secure over http", c)
	}
	if sess.Kind != auth.KindOrganiser || sess.Name != auth.LocalOrganiser || sess.Method != auth.MethodPassword ||
		sess.CSRFToken == "" || sess.Session == "" || sess.ExpiresAt.IsZero() {
		t.Errorf("login answer %+v", sess)
	}

	// The session reads; its changes need the CSRF token.
	e.send("GET", "/api/groups", "", nil, withCookie(c.Value, "")).wantStatus(t, 200)
	e.send("POST", "/api/groups", "application/json", []byte(`{"name":"alpha"}`), withCookie(c.Value, "")).
		wantError(t, 403, "csrf_token", "X-CSRF-Token")
	e.send("POST", "/api/groups", "application/json", []byte(`{"name":"alpha"}`), withCookie(c.Value, "wrong")).
		wantError(t, 403, "csrf_token")
	e.send("POST", "/api/groups", "application/json", []byte(`{"name":"alpha"}`), withCookie(c.Value, sess.CSRFToken)).
		wantStatus(t, 201)
	var me meResponse
	e.send("GET", "/api/auth/me", "", nil, withCookie(c.Value, "")).wantStatus(t, 200).decode(t, &me)
	if me.Name != auth.LocalOrganiser || me.CSRFToken != sess.CSRFToken || me.Session != sess.Session {
		t.Errorf("me = %+v", me)
	}
	// A token is told who it is, with no CSRF token.
	e.do("GET", "/api/auth/me", "", nil).wantStatus(t, 200).decode(t, &me)
	if me.Name != "api-tests" || me.Method != auth.MethodToken || me.CSRFToken != "" || me.Session != "" {
		t.Errorf("me with a token = %+v", me)
	}

	// Logout ends the session for good.
	var out logoutResponse
	e.send("POST", "/api/auth/logout", "application/json", []byte(`{}`), withCookie(c.Value, "")).
		wantStatus(t, 200).decode(t, &out)
	if !out.SignedOut {
		t.Error("logout did not end the session")
	}
	e.send("GET", "/api/groups", "", nil, withCookie(c.Value, "")).wantError(t, 401, "", "session has ended")
	e.send("GET", "/api/auth/me", "", nil, withCookie(c.Value, "")).wantError(t, 401, "")
	e.do("POST", "/api/auth/logout", "", nil).wantStatus(t, 200).decode(t, &out)
	if out.SignedOut {
		t.Error("logout with a token ended a session")
	}
}

func TestSessionExpiresOverHTTP(t *testing.T) {
	var mu sync.Mutex
	now := time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)
	e := localPasswordEnv(t, func(o *auth.Options) {
		o.Now = func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	})
	r := e.send("POST", "/api/auth/login", "application/json", []byte(`{"password": "s3cret-local-password"}`), nil).wantStatus(t, 200)
	c := r.sessionCookie(t)
	e.send("GET", "/api/groups", "", nil, withCookie(c.Value, "")).wantStatus(t, 200)
	mu.Lock()
	now = now.Add(auth.DefaultOrganiserTTL)
	mu.Unlock()
	e.send("GET", "/api/groups", "", nil, withCookie(c.Value, "")).wantError(t, 401, "", "expired")
}

func TestParticipantAtOrganiserRoutes(t *testing.T) {
	e := newTestEnv(t, Options{})
	ctx := context.Background()
	if _, err := e.store.CreateGroup(ctx, "alpha", ""); err != nil {
		t.Fatal(err)
	}
	u, err := e.store.AddUser(ctx, "alpha", store.RosterUser{Name: "alice"})
	if err != nil {
		t.Fatal(err)
	}
	iss, err := e.auth.StartSession(ctx, auth.Principal{Kind: auth.KindParticipant, Name: "alice", UserID: u.ID, Group: "alpha", Method: auth.MethodJoinLink})
	if err != nil {
		t.Fatal(err)
	}
	as := withCookie(iss.Cookie, iss.CSRFToken)
	e.send("GET", "/api/instances", "", nil, as).wantError(t, 403, "", "for organisers")
	e.send("POST", "/api/groups", "application/json", []byte(`{"name":"beta"}`), as).wantError(t, 403, "", "for organisers")
	var me meResponse
	e.send("GET", "/api/auth/me", "", nil, as).wantStatus(t, 200).decode(t, &me)
	if !me.IsParticipant() || me.UserID != u.ID || me.Group != "alpha" || me.Name != "alice" || me.CSRFToken == "" {
		t.Errorf("me = %+v", me)
	}
}

// TestOwnerCheck registers a participant route the way later routes do
// (handleOwn) and checks who gets through.
func TestOwnerCheck(t *testing.T) {
	e := newTestEnv(t, Options{})
	ctx := context.Background()
	e.store.CreateGroup(ctx, "alpha", "")
	alice, _ := e.store.AddUser(ctx, "alpha", store.RosterUser{Name: "alice"})
	bob, _ := e.store.AddUser(ctx, "alpha", store.RosterUser{Name: "bob"})
	ownsUser := func(p auth.Principal, r *http.Request) bool {
		return r.PathValue("user_id") == strconv.FormatInt(p.UserID, 10)
	}
	e.server.handleOwn("POST", "/api/test-own/{user_id}", ownsUser, func(w http.ResponseWriter, r *http.Request) error {
		p, _ := auth.FromContext(r.Context())
		writeJSON(w, 200, p)
		return nil
	})
	e.server.handleOwn("GET", "/api/test-self", nil, func(w http.ResponseWriter, r *http.Request) error {
		writeJSON(w, 200, emptyRequest{})
		return nil
	})
	session := func(id int64, name string) func(*http.Request) {
		iss, err := e.auth.StartSession(ctx, auth.Principal{Kind: auth.KindParticipant, Name: name, UserID: id, Group: "alpha", Method: auth.MethodJoinLink})
		if err != nil {
			t.Fatal(err)
		}
		return withCookie(iss.Cookie, iss.CSRFToken)
	}
	path := "/api/test-own/" + strconv.FormatInt(alice.ID, 10)
	var p auth.Principal
	e.send("POST", path, "application/json", []byte(`{}`), session(alice.ID, "alice")).wantStatus(t, 200).decode(t, &p)
	if p.UserID != alice.ID {
		t.Errorf("the handler saw %+v", p)
	}
	e.send("POST", path, "application/json", []byte(`{}`), session(bob.ID, "bob")).wantError(t, 403, "", "not yours")
	e.do("POST", path, "application/json", []byte(`{}`)).wantStatus(t, 200)
	e.send("POST", path, "application/json", []byte(`{}`), nil).wantError(t, 401, "")
	e.send("GET", "/api/test-self", "", nil, session(bob.ID, "bob")).wantStatus(t, 200)
	for _, rt := range e.server.Routes() {
		if rt.Pattern == "/api/test-own/{user_id}" && rt.Access != LevelParticipant {
			t.Errorf("route %+v: want the participant level", rt)
		}
	}
}

func TestCSRFFormTypes(t *testing.T) {
	e := localPasswordEnv(t, nil)
	r := e.send("POST", "/api/auth/login", "application/json", []byte(`{"password": "s3cret-local-password"}`), nil).wantStatus(t, 200)
	var sess sessionResponse
	r.decode(t, &sess)
	cookie := r.sessionCookie(t).Value
	yaml := []byte("groups:\n  alpha: [alice]\n")

	// What a plain HTML form can send, with the cookie: refused without
	// the token, whatever the type.
	for _, ct := range []string{"text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", "", "application/yaml"} {
		e.send("POST", "/api/groups/import", ct, yaml, withCookie(cookie, "")).wantError(t, 403, "csrf_token")
	}
	e.send("POST", "/api/groups/import", "text/plain", yaml, withCookie(cookie, sess.CSRFToken)).wantStatus(t, 200)
	// An HTML form may carry the token as its csrf_token field: the check
	// passes and the route answers for itself (it takes no form).
	form := url.Values{"csrf_token": {sess.CSRFToken}, "name": {"beta"}}.Encode()
	e.send("POST", "/api/groups", "application/x-www-form-urlencoded", []byte(form), withCookie(cookie, "")).
		wantError(t, 415, "", "application/x-www-form-urlencoded")
	form = url.Values{"csrf_token": {"wrong"}, "name": {"beta"}}.Encode()
	e.send("POST", "/api/groups", "application/x-www-form-urlencoded", []byte(form), withCookie(cookie, "")).
		wantError(t, 403, "csrf_token")
	// A token in the URL does not count.
	e.send("POST", "/api/groups/import?csrf_token="+url.QueryEscape(sess.CSRFToken), "text/plain", yaml, withCookie(cookie, "")).
		wantError(t, 403, "csrf_token")
	// Reads need no token; a Bearer token needs none for changes.
	e.send("GET", "/api/groups", "", nil, withCookie(cookie, "")).wantStatus(t, 200)
	e.do("POST", "/api/groups/import", "text/plain", yaml).wantStatus(t, 200)

	// The open routes: a form-type body needs a token too; JSON does not.
	e.send("POST", "/api/auth/login", "text/plain", []byte(`{"password": "s3cret-local-password"}`), nil).wantError(t, 403, "csrf_token")
	e.send("POST", "/api/auth/login", "", []byte(`{"password": "s3cret-local-password"}`), nil).wantError(t, 403, "csrf_token")
	login := url.Values{"password": {"s3cret-local-password"}, "csrf_token": {"made-up-token-made-up-token-made-up"}}.Encode()
	e.send("POST", "/api/auth/login", "application/x-www-form-urlencoded", []byte(login), nil).wantError(t, 403, "csrf_token")
	e.send("POST", "/api/auth/logout", "", nil, withCookie(cookie, "")).wantError(t, 403, "csrf_token")
	e.send("GET", "/api/groups", "", nil, withCookie(cookie, "")).wantStatus(t, 200) // still signed in
	e.send("POST", "/api/auth/logout", "", nil, withCookie(cookie, sess.CSRFToken)).wantStatus(t, 200)

	// A browser's cross-origin change is refused even with the token.
	r = e.send("POST", "/api/auth/login", "application/json", []byte(`{"password": "s3cret-local-password"}`), nil).wantStatus(t, 200)
	r.decode(t, &sess)
	cookie = r.sessionCookie(t).Value
	e.send("POST", "/api/groups", "application/json", []byte(`{"name":"gamma"}`), func(req *http.Request) {
		withCookie(cookie, sess.CSRFToken)(req)
		req.Header.Set("Sec-Fetch-Site", "cross-site")
	}).wantError(t, 403, "", "cross-origin")
	e.send("POST", "/api/groups", "application/json", []byte(`{"name":"gamma"}`), func(req *http.Request) {
		withCookie(cookie, sess.CSRFToken)(req)
		req.Header.Set("Sec-Fetch-Site", "same-origin")
	}).wantStatus(t, 201)
}

var hiddenToken = regexp.MustCompile(`name="csrf_token" value="([^"]+)"`)

// formPage opens a sign-in page and returns its form token and cookie.
func formPage(t *testing.T, e *testEnv, path string, status int) (string, *http.Cookie, string) {
	t.Helper()
	r := e.send("GET", path, "", nil, nil).wantStatus(t, status)
	if ct := r.header.Get("Content-Type"); ct != "text/html; charset=utf-8" {
		t.Fatalf("Content-Type = %q", ct)
	}
	if csp := r.header.Get("Content-Security-Policy"); !strings.Contains(csp, "frame-ancestors 'none'") {
		t.Errorf("Content-Security-Policy = %q", csp)
	}
	var formCookie *http.Cookie
	for _, c := range (&http.Response{Header: r.header}).Cookies() {
		if c.Name == auth.FormCookieName {
			formCookie = c
		}
	}
	m := hiddenToken.FindStringSubmatch(string(r.body))
	if formCookie == nil || m == nil || m[1] != formCookie.Value {
		t.Fatalf("page %s: form token %v, cookie %v:\n%s", path, m, formCookie, r.body)
	}
	if !formCookie.HttpOnly || formCookie.SameSite != http.SameSiteStrictMode {
		t.Errorf("form cookie %+v", formCookie)
	}
	return m[1], formCookie, string(r.body)
}

func TestLoginPage(t *testing.T) {
	e := localPasswordEnv(t, nil)
	token, formCookie, page := formPage(t, e, "/login?next=/docs/", 200)
	if !strings.Contains(page, `action="/api/auth/login"`) || !strings.Contains(page, `name="next" value="/docs/"`) {
		t.Errorf("login page:\n%s", page)
	}
	post := func(values url.Values) response {
		return e.send("POST", "/api/auth/login", "application/x-www-form-urlencoded", []byte(values.Encode()), func(r *http.Request) {
			r.AddCookie(formCookie)
		})
	}
	r := post(url.Values{"csrf_token": {token}, "password": {"wrong"}, "next": {"/docs/"}}).wantStatus(t, 401)
	if !strings.Contains(string(r.body), "Wrong password.") || !strings.Contains(string(r.body), `value="`+token+`"`) {
		t.Errorf("the page after a wrong password:\n%s", r.body)
	}
	post(url.Values{"csrf_token": {token}, "next": {"/docs/"}}).wantStatus(t, 400)
	r = post(url.Values{"csrf_token": {token}, "password": {"s3cret-local-password"}, "next": {"/docs/"}}).wantStatus(t, 303)
	if loc := r.header.Get("Location"); loc != "/docs/" {
		t.Errorf("Location = %q", loc)
	}
	c := r.sessionCookie(t)
	e.send("GET", "/api/groups", "", nil, withCookie(c.Value, "")).wantStatus(t, 200)
	// next must stay on this site.
	for _, next := range []string{"//evil.example/", "https://evil.example/", "/\\evil.example", "docs"} {
		r := post(url.Values{"csrf_token": {token}, "password": {"s3cret-local-password"}, "next": {next}}).wantStatus(t, 303)
		if loc := r.header.Get("Location"); loc != "/" {
			t.Errorf("next %q: Location = %q, want /", next, loc)
		}
	}
	// The form's logout goes back to the login page.
	form := url.Values{"csrf_token": {e.auth.CSRFToken(mustSession(t, e, c.Value))}}.Encode()
	r = e.send("POST", "/api/auth/logout", "application/x-www-form-urlencoded", []byte(form), withCookie(c.Value, "")).wantStatus(t, 303)
	if loc := r.header.Get("Location"); loc != "/login" {
		t.Errorf("logout Location = %q", loc)
	}
	e.send("GET", "/api/groups", "", nil, withCookie(c.Value, "")).wantError(t, 401, "")

	// Without any password, the page says how to set one up.
	off := newTestEnv(t, Options{})
	page = string(off.send("GET", "/login", "", nil, nil).wantStatus(t, 200).body)
	if !strings.Contains(page, "not set up") || strings.Contains(page, `name="password"`) {
		t.Errorf("login page without passwords:\n%s", page)
	}
}

func mustSession(t *testing.T, e *testEnv, cookie string) auth.Principal {
	t.Helper()
	s, err := e.auth.Session(context.Background(), cookie)
	if err != nil {
		t.Fatal(err)
	}
	return s.Principal
}

func TestLoginRateLimitOverHTTP(t *testing.T) {
	e := localPasswordEnv(t, nil)
	for i := range auth.DefaultLoginAttempts {
		r := e.send("POST", "/api/auth/login", "application/json", []byte(`{"password": "guess-`+strconv.Itoa(i)+`"}`), nil)
		r.wantError(t, 401, "")
	}
	r := e.send("POST", "/api/auth/login", "application/json", []byte(`{"password": "s3cret-local-password"}`), nil)
	r.wantError(t, 429, "", "too many login attempts")
	if n, err := strconv.Atoi(r.header.Get("Retry-After")); err != nil || n < 1 || n > 60 {
		t.Errorf("Retry-After = %q, want 1 to 60 seconds", r.header.Get("Retry-After"))
	}
	// The form says so on its page.
	token, formCookie, _ := formPage(t, e, "/login", 200)
	r = e.send("POST", "/api/auth/login", "application/x-www-form-urlencoded",
		[]byte(url.Values{"csrf_token": {token}, "password": {"s3cret-local-password"}}.Encode()),
		func(r *http.Request) { r.AddCookie(formCookie) }).wantStatus(t, 429)
	if !strings.Contains(string(r.body), "Too many login attempts") || r.header.Get("Retry-After") == "" {
		t.Errorf("rate-limited form: %s %v", r.body, r.header)
	}
}

func TestSetupOverHTTP(t *testing.T) {
	var mu sync.Mutex
	now := time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)
	e := newAuthTestEnv(t, Options{}, func(o *auth.Options) {
		o.Now = func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	})
	ctx := context.Background()
	setupToken, _, issued, err := e.auth.SetupLink(ctx)
	if err != nil || !issued {
		t.Fatalf("SetupLink: %v, %v", issued, err)
	}
	link := "/setup?token=" + url.QueryEscape(setupToken)
	token, formCookie, page := formPage(t, e, link, 200)
	if !strings.Contains(page, `name="token" value="`+setupToken+`"`) {
		t.Errorf("setup page:\n%s", page)
	}
	if r := e.send("GET", link, "", nil, nil); r.header.Get("Referrer-Policy") != "no-referrer" {
		t.Errorf("Referrer-Policy = %q: the link's token would leak", r.header.Get("Referrer-Policy"))
	}
	post := func(values url.Values, withForm bool) response {
		return e.send("POST", "/setup", "application/x-www-form-urlencoded", []byte(values.Encode()), func(r *http.Request) {
			if withForm {
				r.AddCookie(formCookie)
			}
		})
	}
	good := url.Values{"csrf_token": {token}, "token": {setupToken}, "login": {"ada"},
		"password": {"a long enough password"}, "confirm": {"a long enough password"}}
	if r := post(good, false).wantStatus(t, 403); !strings.Contains(string(r.body), "Form expired") {
		t.Errorf("a form without its token:\n%s", r.body)
	}
	differ := url.Values{"csrf_token": {token}, "token": {setupToken}, "login": {"ada"}, "password": {"a long enough password"}, "confirm": {"other"}}
	if r := post(differ, true).wantStatus(t, 400); !strings.Contains(string(r.body), "differ") {
		t.Errorf("passwords that differ:\n%s", r.body)
	}
	short := url.Values{"csrf_token": {token}, "token": {setupToken}, "login": {"ada"}, "password": {"short"}, "confirm": {"short"}}
	if r := post(short, true).wantStatus(t, 400); !strings.Contains(string(r.body), "at least 12") {
		t.Errorf("a short password:\n%s", r.body)
	}
	r := post(good, true).wantStatus(t, 303)
	if loc := r.header.Get("Location"); loc != "/" {
		t.Errorf("Location = %q", loc)
	}
	c := r.sessionCookie(t)
	var me meResponse
	e.send("GET", "/api/auth/me", "", nil, withCookie(c.Value, "")).wantStatus(t, 200).decode(t, &me)
	if me.Name != "ada" || me.Method != auth.MethodPassword {
		t.Errorf("me after setup = %+v", me)
	}

	// Used twice: refused, on the page and in JSON.
	r = e.send("GET", link, "", nil, nil).wantStatus(t, 410)
	if !strings.Contains(string(r.body), "used already") || strings.Contains(string(r.body), `name="password"`) {
		t.Errorf("the used link's page:\n%s", r.body)
	}
	if r := post(good, true).wantStatus(t, 410); !strings.Contains(string(r.body), "used already") {
		t.Errorf("the used link posted again:\n%s", r.body)
	}
	body, _ := json.Marshal(setupRequest{Token: setupToken, Password: "another long password"})
	e.send("POST", "/api/auth/setup", "application/json", body, nil).wantError(t, 410, "", "already used")
	e.send("POST", "/api/auth/setup", "application/json", []byte(`{"token": "nope", "password": "another long password"}`), nil).
		wantError(t, 404, "")
	e.send("GET", "/setup?token=nope", "", nil, nil).wantStatus(t, 404)
	e.send("GET", "/setup", "", nil, nil).wantStatus(t, 400)

	// The password the link set signs in.
	e.send("POST", "/api/auth/login", "application/json", []byte(`{"login": "ada", "password": "a long enough password"}`), nil).wantStatus(t, 200)
}

func TestSetupLinkExpiredOverHTTP(t *testing.T) {
	var mu sync.Mutex
	now := time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)
	e := newAuthTestEnv(t, Options{}, func(o *auth.Options) {
		o.Now = func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	})
	setupToken, _, _, err := e.auth.SetupLink(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	now = now.Add(auth.DefaultSetupTTL)
	mu.Unlock()
	r := e.send("GET", "/setup?token="+url.QueryEscape(setupToken), "", nil, nil).wantStatus(t, 410)
	if !strings.Contains(string(r.body), "expired") {
		t.Errorf("the expired link's page:\n%s", r.body)
	}
	body, _ := json.Marshal(setupRequest{Token: setupToken, Password: "a long enough password"})
	e.send("POST", "/api/auth/setup", "application/json", body, nil).wantError(t, 410, "", "expired")
}

func TestTokenRoutes(t *testing.T) {
	e := newTestEnv(t, Options{})
	var made createdToken
	e.do("POST", "/api/tokens", "application/json", []byte(`{"name": "ci"}`)).wantStatus(t, 201).decode(t, &made)
	if made.Name != "ci" || !strings.HasPrefix(made.Token, auth.TokenPrefix) || !strings.HasPrefix(made.Token, made.Prefix) {
		t.Fatalf("created %+v", made)
	}
	e.do("POST", "/api/tokens", "application/json", []byte(`{"name": "ci"}`)).wantError(t, 409, "")
	e.do("POST", "/api/tokens", "application/json", []byte(`{"name": "Not OK"}`)).wantError(t, 400, "name")
	bearer := func(token string) func(*http.Request) {
		return func(r *http.Request) { r.Header.Set("Authorization", "Bearer "+token) }
	}
	e.send("GET", "/api/groups", "", nil, bearer(made.Token)).wantStatus(t, 200)
	var list tokenList
	e.do("GET", "/api/tokens", "", nil).wantStatus(t, 200).decode(t, &list)
	if len(list.Tokens) != 2 || list.Tokens[1].Name != "ci" || strings.Contains(string(mustJSON(t, list)), made.Token) {
		t.Errorf("list = %+v", list)
	}
	e.do("DELETE", "/api/tokens/ci", "", nil).wantStatus(t, 200)
	e.do("DELETE", "/api/tokens/ci", "", nil).wantError(t, 404, "")
	e.send("GET", "/api/groups", "", nil, bearer(made.Token)).wantError(t, 401, "", "unknown or revoked")
	// A gateway key is no organiser token.
	e.send("GET", "/api/groups", "", nil, bearer("thon_"+made.Token[len(auth.TokenPrefix):])).
		wantError(t, 401, "", "gateway keys work on /v1 only")
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
