package auth

import (
	"context"
	"crypto/tls"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/thon-dev/thon/store"
)

// cheap are password costs that keep the tests quick; TestHashPassword
// checks the defaults.
var cheap = PasswordParams{Time: 1, MemoryKiB: 8 * 1024, Threads: 1}

// clock is a settable time for the tests of expiry.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

type env struct {
	store *store.Store
	state *State
	clock *clock
	svc   *Service
	opts  Options
}

var testSecret = []byte("0123456789abcdef0123456789abcdef")

// newEnv is a Service over a real SQLite store in a temporary directory.
func newEnv(t *testing.T, change func(*Options)) *env {
	t.Helper()
	st, err := store.Open(context.Background(), filepath.Join(t.TempDir(), "thon.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	c := &clock{t: time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)}
	e := &env{store: st, state: NewState(0, 0), clock: c}
	e.opts = Options{Store: st, State: e.state, Secret: testSecret, Password: cheap, Now: c.now}
	if change != nil {
		change(&e.opts)
	}
	e.svc = e.service(t, e.opts)
	return e
}

func (e *env) service(t *testing.T, o Options) *Service {
	t.Helper()
	s, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestNewValidatesOptions(t *testing.T) {
	e := newEnv(t, nil)
	for _, tc := range []struct {
		name string
		o    Options
		want string
	}{
		{"no store", Options{State: e.state, Secret: testSecret}, "store is required"},
		{"no state", Options{Store: e.store, Secret: testSecret}, "state is required"},
		{"short secret", Options{Store: e.store, State: e.state, Secret: []byte("short")}, "at least 32"},
		{"negative ttl", Options{Store: e.store, State: e.state, Secret: testSecret, OrganiserTTL: -1}, "negative"},
	} {
		if _, err := New(tc.o); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: New = %v, want an error containing %q", tc.name, err, tc.want)
		}
	}
}

func TestHashPassword(t *testing.T) {
	enc, err := HashPassword("correct horse battery", PasswordParams{})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(enc, "$argon2id$v=19$m=65536,t=3,p=4$") {
		t.Errorf("encoding %q does not carry the default parameters", enc)
	}
	other, _ := HashPassword("correct horse battery", PasswordParams{})
	if other == enc {
		t.Error("two hashes of one password are equal: no salt")
	}
	for pw, want := range map[string]bool{"correct horse battery": true, "correct horse batterY": false, "": false} {
		ok, err := VerifyPassword(enc, pw)
		if err != nil || ok != want {
			t.Errorf("VerifyPassword(%q) = %v, %v; want %v", pw, ok, err, want)
		}
	}
	for _, bad := range []string{"", "plain", "$argon2i$v=19$m=8192,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA",
		"$argon2id$v=18$m=8192,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA",
		"$argon2id$v=19$m=99999999,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA",
		"$argon2id$v=19$m=8192,t=1,p=1$!!$aGFzaGhhc2hoYXNoaGFzaA"} {
		if _, err := VerifyPassword(bad, "x"); err == nil {
			t.Errorf("VerifyPassword accepted the hash %q", bad)
		}
	}
	if _, err := HashPassword(strings.Repeat("x", 2000), cheap); err == nil {
		t.Error("a 2000-byte password was hashed")
	}
}

func TestLoadSecret(t *testing.T) {
	dir := t.TempDir()
	if _, err := LoadSecret("short", ""); err == nil || !strings.Contains(err.Error(), "at least 32") {
		t.Errorf("short value: %v", err)
	}
	v := strings.Repeat("s", 40)
	if b, err := LoadSecret(v, filepath.Join(dir, "unused")); err != nil || string(b) != v {
		t.Errorf("value: %q, %v", b, err)
	}
	if _, err := os.Stat(filepath.Join(dir, "unused")); !os.IsNotExist(err) {
		t.Errorf("a set value still wrote the file: %v", err)
	}
	file := filepath.Join(dir, "sub", SecretFileName)
	first, err := LoadSecret("", file)
	if err != nil || len(first) != 64 {
		t.Fatalf("generated secret %q, %v", first, err)
	}
	fi, err := os.Stat(file)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("secret file: %v, mode %v", err, fi.Mode())
	}
	again, err := LoadSecret("", file)
	if err != nil || string(again) != string(first) {
		t.Errorf("second load = %q, %v; want the same secret", again, err)
	}
	if err := os.Chmod(file, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadSecret("", file); err == nil || !strings.Contains(err.Error(), "chmod 600") {
		t.Errorf("world-readable file: %v", err)
	}
	if err := os.WriteFile(file, []byte("tiny\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	os.Chmod(file, 0o600)
	if _, err := LoadSecret("", file); err == nil || !strings.Contains(err.Error(), "remove it") {
		t.Errorf("short file: %v", err)
	}
}

func TestSessionLifecycle(t *testing.T) {
	e := newEnv(t, nil)
	ctx := context.Background()
	iss, err := e.svc.StartSession(ctx, Principal{Kind: KindOrganiser, Name: "ada", Method: MethodPassword})
	if err != nil {
		t.Fatal(err)
	}
	if iss.Principal.Session == "" || strings.Contains(iss.Cookie, iss.Principal.Session) {
		t.Fatalf("issued %+v: want a handle that is not in the cookie", iss)
	}
	if !iss.ExpiresAt.Equal(e.clock.now().Add(DefaultOrganiserTTL)) {
		t.Errorf("expires %v, want 12 h from now", iss.ExpiresAt)
	}
	// Only the hash of the id is stored.
	var stored string
	if err := e.store.DB().QueryRow(`SELECT id_hash FROM auth_sessions`).Scan(&stored); err != nil {
		t.Fatal(err)
	}
	id, _, _ := strings.Cut(iss.Cookie, ".")
	if stored != iss.Principal.Session || strings.Contains(stored, id) {
		t.Errorf("stored %q for cookie %q", stored, iss.Cookie)
	}

	got, err := e.svc.Session(ctx, iss.Cookie)
	if err != nil || got.Principal != iss.Principal || got.CSRFToken != iss.CSRFToken || got.CSRFToken == "" {
		t.Fatalf("Session = %+v, %v; want %+v", got, err, iss.Session)
	}
	if !e.svc.CheckCSRF(got.Principal, iss.CSRFToken) || e.svc.CheckCSRF(got.Principal, iss.CSRFToken+"x") ||
		e.svc.CheckCSRF(Principal{Kind: KindOrganiser}, "") {
		t.Error("CheckCSRF is wrong")
	}

	// A forged or damaged cookie is refused.
	first := "A"
	if iss.Cookie[0] == 'A' {
		first = "B"
	}
	for _, bad := range []string{"", "x", iss.Cookie + "x", first + iss.Cookie[1:], strings.Replace(iss.Cookie, ".", "", 1)} {
		if _, err := e.svc.Session(ctx, bad); !errors.Is(err, ErrUnauthenticated) {
			t.Errorf("Session(%q) = %v, want ErrUnauthenticated", bad, err)
		}
	}
	// Another secret does not know the cookie.
	o := e.opts
	o.Secret = []byte(strings.Repeat("z", 32))
	if _, err := e.service(t, o).Session(ctx, iss.Cookie); !errors.Is(err, ErrUnauthenticated) {
		t.Errorf("another secret accepted the cookie: %v", err)
	}

	// A known session is checked in memory: the database may be gone.
	// A fresh State (a restarted thon) reads it back from the database.
	restarted := e.opts
	restarted.State = NewState(0, 0)
	again, err := e.service(t, restarted).Session(ctx, iss.Cookie)
	if err != nil || again.Principal != iss.Principal {
		t.Fatalf("after a restart: %+v, %v", again, err)
	}

	if err := e.svc.EndSession(ctx, iss.Principal.Session); err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.Session(ctx, iss.Cookie); !errors.Is(err, ErrUnauthenticated) {
		t.Errorf("ended session accepted: %v", err)
	}
	restarted.State = NewState(0, 0)
	if _, err := e.service(t, restarted).Session(ctx, iss.Cookie); !errors.Is(err, ErrUnauthenticated) {
		t.Errorf("ended session accepted after a restart: %v", err)
	}
	if err := e.svc.EndSession(ctx, strings.Repeat("0", 64)); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("ending an unknown session: %v", err)
	}
}

func TestSessionMemoryOnly(t *testing.T) {
	e := newEnv(t, nil)
	ctx := context.Background()
	iss, err := e.svc.StartSession(ctx, Principal{Kind: KindOrganiser, Name: "ada", Method: MethodPassword})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.store.Close(); err != nil {
		t.Fatal(err)
	}
	if s, err := e.svc.Session(ctx, iss.Cookie); err != nil || s.Principal.Name != "ada" {
		t.Errorf("a known session needed the closed database: %+v, %v", s, err)
	}
	if _, err := e.svc.Session(ctx, "forged."+iss.Cookie); !errors.Is(err, ErrUnauthenticated) {
		t.Errorf("a forged cookie: %v, want ErrUnauthenticated without the database", err)
	}
}

func TestSessionExpiry(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.OrganiserTTL = time.Hour; o.ParticipantTTL = 2 * time.Hour })
	ctx := context.Background()
	g, err := e.store.CreateGroup(ctx, "alpha", "")
	if err != nil {
		t.Fatal(err)
	}
	u, err := e.store.AddUser(ctx, g.Name, store.RosterUser{Name: "alice"})
	if err != nil {
		t.Fatal(err)
	}
	org, err := e.svc.StartSession(ctx, Principal{Kind: KindOrganiser, Name: "ada", Method: MethodPassword})
	if err != nil {
		t.Fatal(err)
	}
	part, err := e.svc.StartSession(ctx, Principal{Kind: KindParticipant, Name: "alice", UserID: u.ID, Group: "alpha", Method: MethodJoinLink})
	if err != nil {
		t.Fatal(err)
	}
	// A restarted thon reads the participant's group and name from the roster.
	fresh := e.opts
	fresh.State = NewState(0, 0)
	p, err := e.service(t, fresh).Session(ctx, part.Cookie)
	if err != nil || p.Principal.Name != "alice" || p.Principal.Group != "alpha" || p.Principal.UserID != u.ID ||
		!p.Principal.IsParticipant() || p.Principal.Method != MethodJoinLink {
		t.Fatalf("participant session from the database: %+v, %v", p, err)
	}

	e.clock.add(time.Hour)
	if _, err := e.svc.Session(ctx, org.Cookie); !errors.Is(err, ErrUnauthenticated) || !strings.Contains(err.Error(), "expired") {
		t.Errorf("organiser session after its hour: %v", err)
	}
	if _, err := e.svc.Session(ctx, part.Cookie); err != nil {
		t.Errorf("participant session within its two hours: %v", err)
	}
	if err := e.svc.EndUserSessions(ctx, u.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.Session(ctx, part.Cookie); !errors.Is(err, ErrUnauthenticated) {
		t.Errorf("participant session after EndUserSessions: %v", err)
	}

	// A participant's session needs a user that exists.
	if _, err := e.svc.StartSession(ctx, Principal{Kind: KindParticipant, UserID: 9999, Method: MethodJoinLink}); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("session for a missing user: %v", err)
	}
	if _, err := e.svc.StartSession(ctx, Principal{Name: "x", Method: MethodPassword}); err == nil {
		t.Error("a session without a kind was made")
	}
	// Expired sessions leave the database when the next one starts.
	e.clock.add(3 * time.Hour)
	if _, err := e.svc.StartSession(ctx, Principal{Kind: KindOrganiser, Name: "ada", Method: MethodPassword}); err != nil {
		t.Fatal(err)
	}
	var n int
	e.store.DB().QueryRow(`SELECT count(*) FROM auth_sessions`).Scan(&n)
	if n != 1 {
		t.Errorf("%d sessions stored, want the new one only", n)
	}
}

func TestTokens(t *testing.T) {
	e := newEnv(t, nil)
	ctx := context.Background()
	tok, rec, err := e.svc.CreateToken(ctx, "ci")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(tok, TokenPrefix) || len(tok) != len(TokenPrefix)+43 || !strings.HasPrefix(tok, rec.Prefix) ||
		len(rec.Prefix) != len(TokenPrefix)+6 || rec.Name != "ci" {
		t.Fatalf("token %q, record %+v", tok, rec)
	}
	var hash string
	e.store.DB().QueryRow(`SELECT token_hash FROM api_tokens`).Scan(&hash)
	if hash != hashSecret([]byte(tok)) {
		t.Errorf("stored %q, want the SHA-256 of the token", hash)
	}
	p, err := e.svc.VerifyToken(ctx, tok)
	if err != nil || p != (Principal{Kind: KindOrganiser, Name: "ci", Method: MethodToken}) {
		t.Errorf("VerifyToken = %+v, %v", p, err)
	}
	req := httptest.NewRequest("GET", "/api/groups", nil)
	req.Header.Set("Authorization", "bearer "+tok)
	if p, err := e.svc.Authenticate(req); err != nil || p.Name != "ci" {
		t.Errorf("Authenticate with the token = %+v, %v", p, err)
	}
	for _, bad := range []string{"", "thon_" + tok[len(TokenPrefix):], tok + "x", TokenPrefix} {
		if _, err := e.svc.VerifyToken(ctx, bad); !errors.Is(err, ErrUnauthenticated) {
			t.Errorf("VerifyToken(%q) = %v", bad, err)
		}
	}
	if _, _, err := e.svc.CreateToken(ctx, "ci"); !errors.Is(err, store.ErrConflict) {
		t.Errorf("a second token named ci: %v", err)
	}
	var fe *store.FieldError
	if _, _, err := e.svc.CreateToken(ctx, "Bad Name"); !errors.As(err, &fe) || fe.Field != "name" {
		t.Errorf("a bad name: %v", err)
	}
	if _, _, err := e.svc.CreateToken(ctx, "laptop"); err != nil {
		t.Fatal(err)
	}
	list, err := e.svc.ListTokens(ctx)
	if err != nil || len(list) != 2 || list[0].Name != "ci" || list[1].Name != "laptop" {
		t.Errorf("ListTokens = %+v, %v", list, err)
	}
	if _, err := e.svc.RevokeToken(ctx, "ci"); err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.VerifyToken(ctx, tok); !errors.Is(err, ErrUnauthenticated) {
		t.Errorf("revoked token: %v", err)
	}
	if _, err := e.svc.RevokeToken(ctx, "ci"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("revoking it again: %v", err)
	}
}

func TestAuthenticate(t *testing.T) {
	e := newEnv(t, nil)
	ctx := context.Background()
	iss, err := e.svc.StartSession(ctx, Principal{Kind: KindOrganiser, Name: "ada", Method: MethodPassword})
	if err != nil {
		t.Fatal(err)
	}
	req := func(cookies ...string) *http.Request {
		r := httptest.NewRequest("GET", "/api/groups", nil)
		for _, c := range cookies {
			r.AddCookie(&http.Cookie{Name: SessionCookieName, Value: c})
		}
		return r
	}
	if p, err := e.svc.Authenticate(req()); err != nil || !p.Anonymous() {
		t.Errorf("no credentials: %+v, %v", p, err)
	}
	if p, err := e.svc.Authenticate(req(iss.Cookie)); err != nil || p.Name != "ada" || p.Session == "" {
		t.Errorf("session cookie: %+v, %v", p, err)
	}
	if p, err := e.svc.Authenticate(req("stale.cookie", iss.Cookie)); err != nil || p.Name != "ada" {
		t.Errorf("a stale cookie before the good one: %+v, %v", p, err)
	}
	if _, err := e.svc.Authenticate(req("stale.cookie")); !errors.Is(err, ErrUnauthenticated) {
		t.Errorf("only a stale cookie: %v", err)
	}
	// Other Authorization schemes are someone else's (a proxy's basic auth).
	r := req(iss.Cookie)
	r.Header.Set("Authorization", "Basic YTpi")
	if p, err := e.svc.Authenticate(r); err != nil || p.Name != "ada" {
		t.Errorf("basic auth and a cookie: %+v, %v", p, err)
	}
	// A bearer token wins over the cookie, and a bad one is refused.
	r.Header.Set("Authorization", "Bearer thon_org_nope")
	if _, err := e.svc.Authenticate(r); !errors.Is(err, ErrUnauthenticated) {
		t.Errorf("a bad bearer token: %v", err)
	}
}

func TestLogin(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.LocalPassword = "s3cret-local" })
	ctx := context.Background()
	iss, err := e.svc.Login(ctx, "192.0.2.1", "", "s3cret-local")
	if err != nil || iss.Principal != (Principal{Kind: KindOrganiser, Name: LocalOrganiser, Method: MethodPassword, Session: iss.Principal.Session}) {
		t.Fatalf("Login = %+v, %v", iss, err)
	}
	if _, err := e.svc.Session(ctx, iss.Cookie); err != nil {
		t.Errorf("the login's session: %v", err)
	}
	if _, err := e.svc.Login(ctx, "192.0.2.1", "local", "wrong"); !errors.Is(err, ErrWrongPassword) {
		t.Errorf("wrong password: %v", err)
	}
	if _, err := e.svc.Login(ctx, "192.0.2.1", "nobody", "s3cret-local"); !errors.Is(err, ErrWrongPassword) {
		t.Errorf("the local password under another login: %v", err)
	}

	off := newEnv(t, nil)
	if _, err := off.svc.Login(ctx, "192.0.2.1", "", "anything"); !errors.Is(err, ErrNoPasswordLogin) {
		t.Errorf("no password configured: %v", err)
	}
	if ok, err := off.svc.PasswordLogin(ctx); ok || err != nil {
		t.Errorf("PasswordLogin without passwords = %v, %v", ok, err)
	}
}

func TestLoginRateLimit(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.LocalPassword = "s3cret-local" })
	ctx := context.Background()
	for i := range DefaultLoginAttempts {
		if _, err := e.svc.Login(ctx, "192.0.2.1", "", "wrong"); !errors.Is(err, ErrWrongPassword) {
			t.Fatalf("attempt %d: %v", i+1, err)
		}
	}
	e.clock.add(10 * time.Second)
	_, err := e.svc.Login(ctx, "192.0.2.1", "", "s3cret-local")
	var rl *RateLimitError
	if !errors.As(err, &rl) || rl.RetryAfter != 50*time.Second || rl.RetrySeconds() != 50 {
		t.Fatalf("sixth attempt, even with the right password: %v", err)
	}
	// Another address is not held back.
	if _, err := e.svc.Login(ctx, "192.0.2.2", "", "s3cret-local"); err != nil {
		t.Errorf("another address: %v", err)
	}
	e.clock.add(50 * time.Second)
	if _, err := e.svc.Login(ctx, "192.0.2.1", "", "s3cret-local"); err != nil {
		t.Errorf("after the window: %v", err)
	}
	// A success clears the count.
	for range DefaultLoginAttempts - 1 {
		e.svc.Login(ctx, "192.0.2.1", "", "wrong")
	}
	if _, err := e.svc.Login(ctx, "192.0.2.1", "", "s3cret-local"); err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.Login(ctx, "192.0.2.1", "", "wrong"); !errors.Is(err, ErrWrongPassword) {
		t.Errorf("after a success: %v", err)
	}
	// The limit is kept in the State, across Services (config reloads).
	for range DefaultLoginAttempts {
		e.svc.Login(ctx, "192.0.2.3", "", "wrong")
	}
	if _, err := e.service(t, e.opts).Login(ctx, "192.0.2.3", "", "s3cret-local"); !errors.As(err, &rl) {
		t.Errorf("a new Service on the same State forgot the limit: %v", err)
	}
}

func TestSetupLink(t *testing.T) {
	e := newEnv(t, nil)
	ctx := context.Background()
	token, expires, issued, err := e.svc.SetupLink(ctx)
	if err != nil || !issued || token == "" || !expires.Equal(e.clock.now().Add(time.Hour)) {
		t.Fatalf("SetupLink = %q, %v, %v, %v", token, expires, issued, err)
	}
	var stored string
	e.store.DB().QueryRow(`SELECT token_hash FROM setup_tokens`).Scan(&stored)
	if stored != hashSecret([]byte(token)) {
		t.Errorf("stored %q, want the token's hash", stored)
	}
	// A reload (a new Service on the same State) does not issue another.
	if _, _, issued, err := e.service(t, e.opts).SetupLink(ctx); issued || err != nil {
		t.Errorf("second SetupLink issued=%v, %v", issued, err)
	}
	if err := e.svc.CheckSetupToken(ctx, token); err != nil {
		t.Errorf("CheckSetupToken: %v", err)
	}
	var fe *store.FieldError
	if _, err := e.svc.CompleteSetup(ctx, token, "", "short"); !errors.As(err, &fe) || fe.Field != "password" {
		t.Errorf("a short password: %v", err)
	}
	if _, err := e.svc.CompleteSetup(ctx, "nope", "", "long enough password"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("an unknown token: %v", err)
	}
	iss, err := e.svc.CompleteSetup(ctx, token, "", "long enough password")
	if err != nil || iss.Principal.Name != DefaultSetupLogin || iss.Principal.Method != MethodPassword {
		t.Fatalf("CompleteSetup = %+v, %v", iss, err)
	}
	if _, err := e.svc.CompleteSetup(ctx, token, "eve", "another long password"); !errors.Is(err, store.ErrSpent) {
		t.Errorf("the link used twice: %v", err)
	}
	if err := e.svc.CheckSetupToken(ctx, token); !errors.Is(err, store.ErrSpent) {
		t.Errorf("CheckSetupToken after use: %v", err)
	}
	// The password signs in; no link is issued any more.
	if iss, err := e.svc.Login(ctx, "192.0.2.1", "", "long enough password"); err != nil || iss.Principal.Name != "admin" {
		t.Errorf("login with the new password: %+v, %v", iss, err)
	}
	if iss, err := e.svc.Login(ctx, "192.0.2.1", "admin", "long enough password"); err != nil || iss.Principal.Name != "admin" {
		t.Errorf("login by name: %+v, %v", iss, err)
	}
	if _, err := e.svc.Login(ctx, "192.0.2.1", "admin", "wrong password"); !errors.Is(err, ErrWrongPassword) {
		t.Errorf("wrong password: %v", err)
	}
	fresh := e.opts
	fresh.State = NewState(0, 0)
	if _, _, issued, err := e.service(t, fresh).SetupLink(ctx); issued || err != nil {
		t.Errorf("SetupLink with an organiser: issued=%v, %v", issued, err)
	}
	var hash string
	e.store.DB().QueryRow(`SELECT password_hash FROM organisers WHERE login = 'admin'`).Scan(&hash)
	if !strings.HasPrefix(hash, "$argon2id$") || strings.Contains(hash, "long enough") {
		t.Errorf("stored password %q", hash)
	}
}

func TestSetupLinkExpires(t *testing.T) {
	e := newEnv(t, nil)
	ctx := context.Background()
	first, _, _, err := e.svc.SetupLink(ctx)
	if err != nil {
		t.Fatal(err)
	}
	e.clock.add(time.Hour)
	if _, err := e.svc.CompleteSetup(ctx, first, "", "long enough password"); !errors.Is(err, store.ErrExpired) {
		t.Errorf("an expired link: %v", err)
	}
	// Once expired, the next start issues a new link, and the old one
	// stays refused.
	second, _, issued, err := e.svc.SetupLink(ctx)
	if err != nil || !issued || second == first {
		t.Fatalf("SetupLink after expiry = %v, %v", issued, err)
	}
	if err := e.svc.CheckSetupToken(ctx, first); err == nil {
		t.Error("the first link works again")
	}
	if _, err := e.svc.CompleteSetup(ctx, second, "grace", "long enough password"); err != nil {
		t.Errorf("the new link: %v", err)
	}

	local := newEnv(t, func(o *Options) { o.LocalPassword = "s3cret-local" })
	if _, _, issued, err := local.svc.SetupLink(ctx); issued || err != nil {
		t.Errorf("SetupLink with AUTH_LOCAL_PASSWORD: issued=%v, %v", issued, err)
	}
}

func TestFormToken(t *testing.T) {
	tok, err := NewFormToken()
	if err != nil || len(tok) < 40 {
		t.Fatalf("NewFormToken = %q, %v", tok, err)
	}
	r := httptest.NewRequest("POST", "/login", nil)
	if CheckFormToken(r, tok) {
		t.Error("a token without its cookie passed")
	}
	r.AddCookie(FormCookie(r, tok))
	if !CheckFormToken(r, tok) || CheckFormToken(r, tok+"x") || CheckFormToken(r, "") {
		t.Error("CheckFormToken is wrong")
	}
	c := FormCookie(r, tok)
	if !c.HttpOnly || c.SameSite != http.SameSiteStrictMode || c.Secure {
		t.Errorf("form cookie over http: %+v", c)
	}
	e := newEnv(t, nil)
	sc := e.svc.SessionCookie(r, Issued{Cookie: "v", Session: Session{ExpiresAt: e.clock.now().Add(time.Hour)}})
	if !sc.HttpOnly || sc.SameSite != http.SameSiteLaxMode || sc.Secure || sc.Path != "/" || sc.Name != "thon_session" ||
		sc.MaxAge != 3600 || sc.Value != "v" {
		t.Errorf("session cookie over http: %+v", sc)
	}
	r.TLS = &tls.ConnectionState{}
	if !e.svc.SessionCookie(r, Issued{}).Secure || !ClearSessionCookie(r).Secure || !FormCookie(r, tok).Secure {
		t.Error("cookies over https are not Secure")
	}
}
