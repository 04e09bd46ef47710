package auth

import (
	"context"
	"crypto/tls"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/thon-dev/thon/auth/oidc"
	"github.com/thon-dev/thon/internal/oidctest"
	"github.com/thon-dev/thon/store"
)

// idpEnv is a Service with one OpenID Connect provider ("acme") at an
// oidctest server, organisers by allow-list, and a roster.
type idpEnv struct {
	*env
	idp *oidctest.Server
}

const testHost = "thon.test:8080"

func newIDPEnv(t *testing.T, organisers []string, change func(*Options)) *idpEnv {
	t.Helper()
	idp := oidctest.New(t, oidctest.Options{RedirectURIs: []string{"http://" + testHost + oidc.CallbackPath("acme")}})
	providers := []oidc.Config{{Name: "acme", Kind: oidc.KindOIDC, DisplayName: "Acme SSO",
		ClientID: idp.ClientID, ClientSecret: idp.ClientSecret, Issuer: idp.URL, GroupsClaim: "groups"}}
	allow, err := oidc.ParseAllowList(organisers, providers)
	if err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, func(o *Options) {
		o.Providers, o.Organisers = providers, allow
		if change != nil {
			change(o)
		}
	})
	ctx := store.WithActor(context.Background(), "test")
	for _, g := range []string{"alpha", "beta"} {
		if _, err := e.store.CreateGroup(ctx, g, ""); err != nil {
			t.Fatal(err)
		}
	}
	for _, u := range []struct{ group, name, email string }{
		{"alpha", "alice", "Alice@Example.org"},
		{"alpha", "carol", "shared@example.org"},
		{"beta", "carol", "shared@example.org"},
	} {
		if _, err := e.store.AddUser(ctx, u.group, store.RosterUser{Name: u.name, Email: u.email}); err != nil {
			t.Fatal(err)
		}
	}
	return &idpEnv{env: e, idp: idp}
}

// begin starts a login and returns the provider's callback to thon (the
// URL the provider sends the browser back to) and the pending cookie.
func (e *idpEnv) begin(t *testing.T, next string) (*url.URL, *http.Cookie) {
	t.Helper()
	authURL, cookie, err := e.svc.BeginLogin(httptest.NewRequest("GET", "http://"+testHost+LoginPath("acme"), nil), "acme", next)
	if err != nil {
		t.Fatal(err)
	}
	back, err := e.idp.Authorize(authURL)
	if err != nil {
		t.Fatal(err)
	}
	return back, cookie
}

// callback sends the callback with cookie (nil: none) to FinishLogin.
func (e *idpEnv) callback(back *url.URL, cookie *http.Cookie) (Issued, string, error) {
	r := httptest.NewRequest("GET", back.String(), nil)
	if cookie != nil {
		r.AddCookie(cookie)
	}
	return e.svc.FinishLogin(r, "acme")
}

// login is a whole login of the oidctest server's user u.
func (e *idpEnv) login(t *testing.T, u oidctest.User) (Issued, string, error) {
	t.Helper()
	e.idp.SetUser(u)
	back, cookie := e.begin(t, "/next")
	return e.callback(back, cookie)
}

func TestProvidersListed(t *testing.T) {
	e := newIDPEnv(t, nil, nil)
	got := e.svc.Providers()
	want := []ProviderInfo{{Name: "acme", DisplayName: "Acme SSO", Kind: oidc.KindOIDC, LoginURL: "/api/auth/login/acme"}}
	if len(got) != 1 || got[0] != want[0] {
		t.Errorf("Providers() = %+v, want %+v", got, want)
	}
	if n := len(newEnv(t, nil).svc.Providers()); n != 0 {
		t.Errorf("a service without providers lists %d", n)
	}
}

func TestNewRefusesBadProviders(t *testing.T) {
	e := newEnv(t, nil)
	for i, tc := range []struct {
		change func(*Options)
		want   string
	}{
		{func(o *Options) {
			o.Providers = []oidc.Config{{Name: "x", Kind: oidc.KindOIDC, ClientID: "id", ClientSecret: "s"}}
		}, "providers[0].issuer: required"},
		{func(o *Options) {
			c := oidc.Config{Name: "gh", Kind: oidc.KindGitHub, ClientID: "id", ClientSecret: "s"}
			o.Providers = []oidc.Config{c, c}
		}, `providers[1].name: "gh" names two providers`},
		{func(o *Options) { o.RedirectBase = "https://thon.example.org/sub" }, "redirect_base"},
		{func(o *Options) { o.RedirectBase = "ftp://thon.example.org" }, "redirect_base"},
		{func(o *Options) { o.RedirectBase = "https://u:p@thon.example.org" }, "redirect_base"},
	} {
		o := e.opts
		tc.change(&o)
		if _, err := New(o); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("case %d: %v, want an error with %q", i, err, tc.want)
		}
	}
	for v, want := range map[string]string{"": "", "https://thon.example.org/": "https://thon.example.org", "http://127.0.0.1:8080": "http://127.0.0.1:8080"} {
		if got, err := CheckRedirectBase(v); err != nil || got != want {
			t.Errorf("CheckRedirectBase(%q) = %q, %v; want %q", v, got, err, want)
		}
	}
}

func TestBeginLoginCookie(t *testing.T) {
	e := newIDPEnv(t, nil, nil)
	r := httptest.NewRequest("GET", "https://"+testHost+LoginPath("acme"), nil)
	r.TLS = &tls.ConnectionState{}
	authURL, c, err := e.svc.BeginLogin(r, "acme", "/somewhere")
	if err != nil {
		t.Fatal(err)
	}
	if c.Name != PendingCookieName || !c.HttpOnly || !c.Secure || c.SameSite != http.SameSiteLaxMode ||
		c.Path != "/api/auth/callback/acme" || c.MaxAge != int(oidc.PendingTTL.Seconds()) || c.Value == "" {
		t.Errorf("pending cookie %+v", c)
	}
	u, _ := url.Parse(authURL)
	if got := u.Query().Get("redirect_uri"); got != "https://"+testHost+"/api/auth/callback/acme" {
		t.Errorf("redirect_uri %q: not the request's scheme and host", got)
	}
	// The cookie is sealed: it does not show its secrets.
	pend, err := e.svc.idp.sealer.Open(c.Value, e.clock.now())
	if err != nil || pend.Next != "/somewhere" || strings.Contains(c.Value, pend.Verifier) {
		t.Errorf("sealed pending %+v %v", pend, err)
	}
	if _, _, err := e.svc.BeginLogin(r, "nosuch", "/"); !errors.Is(err, ErrUnknownProvider) {
		t.Errorf("unknown provider: %v", err)
	}
	if cl := ClearPendingCookie(r, "acme"); cl.MaxAge >= 0 || cl.Path != c.Path || cl.Name != c.Name {
		t.Errorf("clearing cookie %+v", cl)
	}

	// A redirect base replaces the request's scheme and host.
	e = newIDPEnv(t, nil, func(o *Options) { o.RedirectBase = "https://thon.example.org/" })
	authURL, _, err = e.svc.BeginLogin(httptest.NewRequest("GET", "http://127.0.0.1/", nil), "acme", "/")
	if err != nil {
		t.Fatal(err)
	}
	u, _ = url.Parse(authURL)
	if got := u.Query().Get("redirect_uri"); got != "https://thon.example.org/api/auth/callback/acme" {
		t.Errorf("redirect_uri %q with a redirect base", got)
	}
}

func TestFinishLoginAdmits(t *testing.T) {
	e := newIDPEnv(t, []string{"boss@example.org", "group:organisers"}, nil)

	// On the allow-list by email: an organiser, even without a roster entry.
	iss, next, err := e.login(t, oidctest.User{Subject: "1", Email: "Boss@example.org", EmailVerified: true})
	if err != nil || !iss.Principal.IsOrganiser() || iss.Principal.Name != "Boss@example.org" || iss.Principal.Method != MethodOIDC || next != "/next" {
		t.Fatalf("organiser by email: %+v %q %v", iss.Principal, next, err)
	}
	if _, err := e.svc.Session(context.Background(), iss.Cookie); err != nil {
		t.Errorf("the organiser's session: %v", err)
	}
	// By group, with an unverified address: named by login.
	iss, _, err = e.login(t, oidctest.User{Subject: "2", PreferredUsername: "olga", Email: "x@y.z", Groups: []string{"organisers"}})
	if err != nil || !iss.Principal.IsOrganiser() || iss.Principal.Name != "acme:olga" {
		t.Errorf("organiser by group: %+v %v", iss.Principal, err)
	}
	// A verified address of one roster user, without regard to case: that
	// participant.
	iss, _, err = e.login(t, oidctest.User{Subject: "3", Email: "alice@EXAMPLE.org", EmailVerified: true})
	p := iss.Principal
	if err != nil || !p.IsParticipant() || p.Name != "alice" || p.Group != "alpha" || p.UserID == 0 || p.Method != MethodOIDC {
		t.Fatalf("participant: %+v %v", p, err)
	}
	if s, err := e.svc.Session(context.Background(), iss.Cookie); err != nil || s.Principal.UserID != p.UserID {
		t.Errorf("the participant's session: %+v %v", s, err)
	}

	// Refused, each saying who and why, with no session made.
	for i, tc := range []struct {
		user  oidctest.User
		cause error
		want  []string
	}{
		{oidctest.User{Subject: "4", Name: "Alice", Email: "alice@example.org", EmailVerified: false}, oidc.ErrEmailUnverified,
			[]string{"Acme SSO as Alice (email alice@example.org, not verified)", "has not verified your email address"}},
		{oidctest.User{Subject: "5", PreferredUsername: "zed"}, oidc.ErrEmailUnverified, []string{"as zed", "gave no email address"}},
		{oidctest.User{Subject: "6", Email: "stranger@example.org", EmailVerified: true}, store.ErrNotFound,
			[]string{"as stranger@example.org", "not on the organisers' allow-list", "no participant on the roster has the email stranger@example.org"}},
		{oidctest.User{Subject: "7", Email: "shared@example.org", EmailVerified: true, Groups: []string{"others"}}, store.ErrConflict,
			[]string{"2 participants on the roster have the email shared@example.org (alpha/carol, beta/carol)"}},
	} {
		iss, _, err := e.login(t, tc.user)
		var na *NotAdmittedError
		if !errors.As(err, &na) || !errors.Is(err, ErrForbidden) || !errors.Is(err, tc.cause) || iss.Cookie != "" {
			t.Errorf("case %d: %+v %v, want a refusal", i, iss, err)
			continue
		}
		for _, w := range tc.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("case %d: %q lacks %q", i, err, w)
			}
		}
	}
}

func TestFinishLoginRefusesForgedAndReplayed(t *testing.T) {
	e := newIDPEnv(t, []string{"jane@example.org"}, nil)

	// Without the pending cookie: refused, then accepted with it.
	back, cookie := e.begin(t, "/")
	if _, _, err := e.callback(back, nil); !errors.Is(err, oidc.ErrPendingInvalid) || !strings.Contains(err.Error(), "no sign-in at Acme SSO under way") {
		t.Errorf("no pending cookie: %v", err)
	}
	// Another login's cookie: its state differs.
	_, other := e.begin(t, "/")
	if _, _, err := e.callback(back, other); !errors.Is(err, oidc.ErrStateMismatch) {
		t.Errorf("another login's cookie: %v", err)
	}
	// An altered cookie.
	altered := *cookie
	altered.Value = cookie.Value[:len(cookie.Value)-2] + "AA"
	if _, _, err := e.callback(back, &altered); !errors.Is(err, oidc.ErrPendingInvalid) {
		t.Errorf("altered cookie: %v", err)
	}
	iss, _, err := e.callback(back, cookie)
	if err != nil || !iss.Principal.IsOrganiser() {
		t.Fatalf("the login itself: %+v %v", iss.Principal, err)
	}
	// The same callback again makes no second session.
	if iss, _, err := e.callback(back, cookie); !errors.Is(err, oidc.ErrPendingInvalid) || !strings.Contains(err.Error(), "finished already") || iss.Cookie != "" {
		t.Errorf("replayed callback: %+v %v", iss, err)
	}
	// An expired pending login.
	back, cookie = e.begin(t, "/")
	e.clock.add(oidc.PendingTTL)
	if _, _, err := e.callback(back, cookie); !errors.Is(err, oidc.ErrPendingExpired) {
		t.Errorf("expired pending login: %v", err)
	}
	if _, _, err := e.svc.FinishLogin(httptest.NewRequest("GET", "/api/auth/callback/nosuch", nil), "nosuch"); !errors.Is(err, ErrUnknownProvider) {
		t.Errorf("unknown provider: %v", err)
	}
}

func TestFinishedLogins(t *testing.T) {
	var f finishedLogins
	now := time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)
	if f.done("s", now) || !f.claim("s", now.Add(oidc.PendingTTL), now) || !f.done("s", now) || f.claim("s", now.Add(oidc.PendingTTL), now) {
		t.Fatal("a claimed state is not done once")
	}
	later := now.Add(oidc.PendingTTL)
	if f.done("s", later) || !f.claim("t", later.Add(oidc.PendingTTL), later) || len(f.m) != 1 {
		t.Errorf("expired states are kept: %v", f.m)
	}
}
