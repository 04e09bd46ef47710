package oidc

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/thon-dev/thon/internal/oidctest"
)

// redirect is a callback URL that nothing serves: the tests read the
// authorization server's redirect to it instead of following it.
func redirect(name string) string { return "http://127.0.0.1:9" + CallbackPath(name) }

// setup starts a stand-in provider and a Provider of kind for it.
func setup(t *testing.T, kind Kind, opts oidctest.Options, edit func(*Config)) (*oidctest.Server, *Provider) {
	t.Helper()
	opts.RedirectURIs = append(opts.RedirectURIs, redirect(string(kind)))
	s := oidctest.New(t, opts)
	return s, providerFor(t, s, kind, edit)
}

// providerFor makes a Provider of kind for s, named after its kind.
func providerFor(t *testing.T, s *oidctest.Server, kind Kind, edit func(*Config)) *Provider {
	t.Helper()
	cfg := Config{Name: string(kind), Kind: kind, ClientID: s.ClientID, ClientSecret: s.ClientSecret}
	if kind == KindGitHub {
		cfg.GitHubURL, cfg.GitHubAPIURL = s.GitHubURL(), s.GitHubAPIURL()
	} else {
		cfg.Issuer = s.URL
	}
	if edit != nil {
		edit(&cfg)
	}
	p, err := New(cfg, Options{})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// login runs Begin and the user's visit to the authorization URL, and
// returns the pending login, the callback's query and the authorization
// URL.
func login(t *testing.T, s *oidctest.Server, p *Provider) (Pending, url.Values, *url.URL) {
	t.Helper()
	authURL, pend, err := p.Begin(context.Background(), redirect(p.Name()))
	if err != nil {
		t.Fatal(err)
	}
	back, err := s.Authorize(authURL)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(back.String(), redirect(p.Name())+"?") {
		t.Fatalf("sent back to %s", back)
	}
	u, _ := url.Parse(authURL)
	return pend, back.Query(), u
}

// finish is login then Finish.
func finish(t *testing.T, s *oidctest.Server, p *Provider, edit func(*Pending)) (Identity, error) {
	t.Helper()
	pend, q, _ := login(t, s, p)
	if edit != nil {
		edit(&pend)
	}
	return p.Finish(context.Background(), pend, q)
}

func wantErr(t *testing.T, err, target error, contains ...string) {
	t.Helper()
	if !errors.Is(err, target) {
		t.Fatalf("error %v, want %v", err, target)
	}
	for _, c := range contains {
		if !strings.Contains(err.Error(), c) {
			t.Fatalf("error %q does not say %q", err, c)
		}
	}
}

// TestLoginThroughCallback runs a whole login as thon's sign-in does: a
// login route that begins it and seals the pending login into a cookie, a
// browser (an http.Client with a cookie jar) following every redirect,
// and a callback route that opens the cookie and finishes.
func TestLoginThroughCallback(t *testing.T) {
	s := oidctest.New(t, oidctest.Options{})
	s.SetUser(oidctest.User{
		Subject: "f:1b2c", Email: "Ada@Example.org", EmailVerified: true,
		Name: "Ada Lovelace", PreferredUsername: "ada", Groups: []string{"organisers", "staff"},
	})
	sealer, err := NewSealer([]byte(strings.Repeat("k", 32)))
	if err != nil {
		t.Fatal(err)
	}
	var p *Provider
	const cookie = "thon_login"
	mux := http.NewServeMux()
	var appURL string
	mux.HandleFunc("GET /api/auth/login/keycloak", func(w http.ResponseWriter, r *http.Request) {
		authURL, pend, err := p.Begin(r.Context(), appURL+CallbackPath(p.Name()))
		if err != nil {
			http.Error(w, err.Error(), 502)
			return
		}
		pend.Next = "/me"
		v, err := sealer.Seal(pend, time.Now())
		if err != nil {
			http.Error(w, err.Error(), 500)
			return
		}
		http.SetCookie(w, &http.Cookie{Name: cookie, Value: v, Path: CallbackPath(p.Name()), HttpOnly: true, SameSite: http.SameSiteLaxMode, MaxAge: int(PendingTTL.Seconds())})
		http.Redirect(w, r, authURL, http.StatusFound)
	})
	mux.HandleFunc("GET /api/auth/callback/keycloak", func(w http.ResponseWriter, r *http.Request) {
		c, err := r.Cookie(cookie)
		if err != nil {
			http.Error(w, "no pending login", 400)
			return
		}
		pend, err := sealer.Open(c.Value, time.Now())
		if err != nil {
			http.Error(w, err.Error(), 400)
			return
		}
		id, err := p.Finish(r.Context(), pend, r.URL.Query())
		if err != nil {
			http.Error(w, err.Error(), 400)
			return
		}
		json.NewEncoder(w).Encode(map[string]any{"identity": id, "next": pend.Next})
	})
	app := httptest.NewServer(mux)
	defer app.Close()
	appURL = app.URL
	s.RegisterRedirectURI(app.URL + CallbackPath("keycloak"))
	p, err = New(Config{Name: "keycloak", Kind: KindOIDC, ClientID: s.ClientID, ClientSecret: s.ClientSecret, Issuer: s.URL, GroupsClaim: "groups"}, Options{})
	if err != nil {
		t.Fatal(err)
	}

	jar, _ := cookiejar.New(nil)
	browser := &http.Client{Jar: jar}
	resp, err := browser.Get(app.URL + "/api/auth/login/keycloak")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		var b strings.Builder
		buf := make([]byte, 1024)
		n, _ := resp.Body.Read(buf)
		b.Write(buf[:n])
		t.Fatalf("callback answered %s: %s", resp.Status, b.String())
	}
	var got struct {
		Identity Identity
		Next     string
	}
	if err := json.NewDecoder(resp.Body).Decode(&got); err != nil {
		t.Fatal(err)
	}
	want := Identity{
		Provider: "keycloak", Kind: KindOIDC, Subject: "f:1b2c", Email: "Ada@Example.org", EmailVerified: true,
		Login: "ada", Name: "Ada Lovelace", Groups: []string{"organisers", "staff"},
	}
	if !reflect.DeepEqual(got.Identity, want) || got.Next != "/me" {
		t.Fatalf("got %+v next %q, want %+v", got.Identity, got.Next, want)
	}
	if s.Requests("/.well-known/openid-configuration") != 1 || s.Requests("/userinfo") != 0 {
		t.Fatalf("discovery fetched %d times, userinfo %d", s.Requests("/.well-known/openid-configuration"), s.Requests("/userinfo"))
	}
	for _, tc := range []struct {
		entries []string
		want    bool
	}{
		{[]string{"ada@example.org"}, true},
		{[]string{"group:organisers"}, true},
		{[]string{"group:keycloak:staff"}, true},
		{[]string{"login:keycloak:ADA"}, true},
		{[]string{"group:Organisers", "bob@example.org"}, false},
	} {
		al, err := ParseAllowList(tc.entries, []Config{p.cfg})
		if err != nil {
			t.Fatal(err)
		}
		if al.Organiser(got.Identity) != tc.want {
			t.Errorf("%v: organiser %v", tc.entries, !tc.want)
		}
	}
}

func TestBeginSendsStatePKCEAndNonce(t *testing.T) {
	s, p := setup(t, KindOIDC, oidctest.Options{}, nil)
	a, pa, err := p.Begin(context.Background(), redirect("oidc"))
	if err != nil {
		t.Fatal(err)
	}
	_, pb, err := p.Begin(context.Background(), redirect("oidc"))
	if err != nil {
		t.Fatal(err)
	}
	u, _ := url.Parse(a)
	q := u.Query()
	if !strings.HasPrefix(a, s.URL+"/authorize?") || q.Get("response_type") != "code" || q.Get("client_id") != s.ClientID ||
		q.Get("redirect_uri") != redirect("oidc") || q.Get("scope") != "openid profile email" ||
		q.Get("state") != pa.State || q.Get("nonce") != pa.Nonce ||
		q.Get("code_challenge_method") != "S256" || q.Get("code_challenge") != oauth2.S256ChallengeFromVerifier(pa.Verifier) {
		t.Fatalf("authorization URL %s for %+v", a, pa)
	}
	if pa.Provider != "oidc" || pa.RedirectURL != redirect("oidc") || len(pa.State) < 43 || len(pa.Nonce) < 43 || len(pa.Verifier) < 43 {
		t.Fatalf("pending %+v", pa)
	}
	if pa.State == pb.State || pa.Nonce == pb.Nonce || pa.Verifier == pb.Verifier {
		t.Fatal("two logins share a secret")
	}
	if _, _, err := p.Begin(context.Background(), "/api/auth/callback/oidc"); err == nil {
		t.Fatal("a relative redirect URL was taken")
	}
}

func TestStateMismatchRefused(t *testing.T) {
	s, p := setup(t, KindOIDC, oidctest.Options{}, nil)
	_, other, err := p.Begin(context.Background(), redirect("oidc"))
	if err != nil {
		t.Fatal(err)
	}
	pend, q, _ := login(t, s, p)
	// The callback of one login with the pending login of another.
	_, err = p.Finish(context.Background(), other, q)
	wantErr(t, err, ErrStateMismatch)
	// No state at all.
	q2 := url.Values{"code": {q.Get("code")}}
	_, err = p.Finish(context.Background(), pend, q2)
	wantErr(t, err, ErrStateMismatch)
	// A pending login of another provider.
	pend.Provider = "github"
	_, err = p.Finish(context.Background(), pend, q)
	wantErr(t, err, ErrStateMismatch, `"github"`)
	if n := s.Requests("/token"); n != 0 {
		t.Fatalf("%d token requests for refused callbacks", n)
	}
}

func TestPKCEVerifierMismatchRefused(t *testing.T) {
	s, p := setup(t, KindOIDC, oidctest.Options{}, nil)
	_, err := finish(t, s, p, func(pd *Pending) { pd.Verifier = oauth2.GenerateVerifier() })
	wantErr(t, err, ErrExchange, "invalid_grant", "PKCE")
	_, err = finish(t, s, p, func(pd *Pending) { pd.Verifier = "" })
	wantErr(t, err, ErrPendingInvalid)
}

func TestNonceChecked(t *testing.T) {
	s, p := setup(t, KindOIDC, oidctest.Options{}, nil)
	_, err := finish(t, s, p, func(pd *Pending) { pd.Nonce = random() })
	wantErr(t, err, ErrNonce)
	// A provider that drops the nonce is refused too.
	s.EditIDToken(func(c map[string]any) { delete(c, "nonce") })
	_, err = finish(t, s, p, nil)
	wantErr(t, err, ErrNonce)
}

func TestIDTokenChecks(t *testing.T) {
	s, p := setup(t, KindOIDC, oidctest.Options{}, nil)
	if _, err := finish(t, s, p, nil); err != nil {
		t.Fatal(err)
	}
	for name, edit := range map[string]func(map[string]any){
		"audience": func(c map[string]any) { c["aud"] = "another-client" },
		"issuer":   func(c map[string]any) { c["iss"] = "http://127.0.0.1:1" },
		"expired":  func(c map[string]any) { c["exp"] = time.Now().Add(-time.Minute).Unix() },
		"at_hash":  func(c map[string]any) { c["at_hash"] = "AAAAAAAAAAAAAAAAAAAAAA" },
		"subject":  func(c map[string]any) { c["sub"] = "" },
	} {
		s.EditIDToken(edit)
		_, err := finish(t, s, p, nil)
		if !errors.Is(err, ErrIDToken) {
			t.Errorf("%s: error %v, want ErrIDToken", name, err)
		}
	}
	s.EditIDToken(nil)
	s.SignWithUnpublishedKey()
	_, err := finish(t, s, p, nil)
	wantErr(t, err, ErrIDToken)
}

func TestDeniedAndWrongSecret(t *testing.T) {
	s, p := setup(t, KindOIDC, oidctest.Options{}, nil)
	pend, _, _ := login(t, s, p)
	_, err := p.Finish(context.Background(), pend, url.Values{"state": {pend.State}, "error": {"access_denied"}, "error_description": {"the user said no"}})
	wantErr(t, err, ErrDenied, "access_denied", "the user said no")
	_, err = p.Finish(context.Background(), pend, url.Values{"state": {pend.State}})
	wantErr(t, err, ErrDenied, "no code")

	bad := providerFor(t, s, KindOIDC, func(c *Config) { c.ClientSecret = "not-the-secret" })
	_, err = finish(t, s, bad, nil)
	wantErr(t, err, ErrExchange, "invalid_client")
}

func TestUnverifiedEmailIsNotAnOrganiser(t *testing.T) {
	s, p := setup(t, KindOIDC, oidctest.Options{}, func(c *Config) { c.GroupsClaim = "groups" })
	s.SetUser(oidctest.User{Subject: "u7", Email: "boss@example.org", EmailVerified: false, Groups: []string{"staff"}})
	id, err := finish(t, s, p, nil)
	if err != nil {
		t.Fatal(err)
	}
	if id.Email != "boss@example.org" || id.EmailVerified {
		t.Fatalf("identity %+v", id)
	}
	if _, err := id.VerifiedEmail(); !errors.Is(err, ErrEmailUnverified) {
		t.Fatalf("VerifiedEmail: %v", err)
	}
	al, err := ParseAllowList([]string{"boss@example.org"}, []Config{p.cfg})
	if err != nil {
		t.Fatal(err)
	}
	if al.Organiser(id) {
		t.Fatal("an unverified email made an organiser")
	}
	s.SetUser(oidctest.User{Subject: "u7", Email: "boss@example.org", EmailVerified: true})
	if id, err = finish(t, s, p, nil); err != nil || !al.Organiser(id) {
		t.Fatalf("verified: organiser %v, %v", al.Organiser(id), err)
	}
	if e, err := id.VerifiedEmail(); e != "boss@example.org" || err != nil {
		t.Fatalf("VerifiedEmail %q %v", e, err)
	}
}

func TestUserinfoFillsWhatTheIDTokenLacks(t *testing.T) {
	s, p := setup(t, KindOIDC, oidctest.Options{ClaimsInUserinfoOnly: true}, func(c *Config) { c.GroupsClaim = "groups" })
	s.SetUser(oidctest.User{Subject: "u9", Email: "eve@example.org", EmailVerified: true, Name: "Eve", PreferredUsername: "eve", Groups: []string{"g1"}})
	id, err := finish(t, s, p, nil)
	if err != nil {
		t.Fatal(err)
	}
	want := Identity{Provider: "oidc", Kind: KindOIDC, Subject: "u9", Email: "eve@example.org", EmailVerified: true, Login: "eve", Name: "Eve", Groups: []string{"g1"}}
	if !reflect.DeepEqual(id, want) || s.Requests("/userinfo") != 1 {
		t.Fatalf("identity %+v (userinfo asked %d times), want %+v", id, s.Requests("/userinfo"), want)
	}
	// userinfo about someone else than the ID token is refused.
	s.EditIDToken(func(c map[string]any) { c["sub"] = "someone-else" })
	_, err = finish(t, s, p, nil)
	wantErr(t, err, ErrIDToken, "someone-else")
}

func TestGitHubLogin(t *testing.T) {
	s, p := setup(t, KindGitHub, oidctest.Options{}, nil)
	s.SetUser(oidctest.User{
		GitHubID: 583231, GitHubLogin: "Octocat", Name: "The Octocat",
		GitHubEmails: []oidctest.GitHubEmail{
			{Email: "old@example.org", Verified: true},
			{Email: "octo@example.org", Primary: true, Verified: true},
		},
	})
	pend, q, u := login(t, s, p)
	if aq := u.Query(); u.Path != "/login/oauth/authorize" || aq.Get("scope") != "read:user user:email" || aq.Get("code_challenge_method") != "S256" || aq.Has("nonce") || pend.Nonce != "" {
		t.Fatalf("authorization URL %s", u)
	}
	id, err := p.Finish(context.Background(), pend, q)
	if err != nil {
		t.Fatal(err)
	}
	want := Identity{Provider: "github", Kind: KindGitHub, Subject: "583231", Email: "octo@example.org", EmailVerified: true, Login: "Octocat", Name: "The Octocat"}
	if !reflect.DeepEqual(id, want) {
		t.Fatalf("identity %+v, want %+v", id, want)
	}
	al, err := ParseAllowList([]string{"login:octocat"}, []Config{p.cfg})
	if err != nil || !al.Organiser(id) {
		t.Fatalf("login:octocat: %v %v", al.Organiser(id), err)
	}

	// GitHub answers a wrong verifier with status 200 and an error.
	_, err = finish(t, s, p, func(pd *Pending) { pd.Verifier = oauth2.GenerateVerifier() })
	wantErr(t, err, ErrExchange, "bad_verification_code")

	// An unverified primary address is not vouched for, even when
	// another address is verified.
	s.SetUser(oidctest.User{GitHubID: 7, GitHubLogin: "mallory", GitHubEmails: []oidctest.GitHubEmail{
		{Email: "ceo@example.org", Primary: true, Verified: false},
		{Email: "mallory@example.org", Verified: true},
	}})
	id, err = finish(t, s, p, nil)
	if err != nil {
		t.Fatal(err)
	}
	if id.Email != "ceo@example.org" || id.EmailVerified {
		t.Fatalf("identity %+v", id)
	}
	// The scope "user" holds user:email.
	wide := providerFor(t, s, KindGitHub, func(c *Config) { c.Scopes = []string{"user"} })
	if _, err := finish(t, s, wide, nil); err != nil {
		t.Fatalf("scope user: %v", err)
	}
	// An API that does not answer /user is an error, not an identity.
	noAPI := providerFor(t, s, KindGitHub, func(c *Config) { c.GitHubAPIURL = s.URL + "/nothing" })
	_, err = finish(t, s, noAPI, nil)
	wantErr(t, err, ErrProfile, "/user", "404")
}

func TestLinkedInQuirks(t *testing.T) {
	s, p := setup(t, KindLinkedIn, oidctest.Options{LinkedIn: true}, nil)
	s.SetUser(oidctest.User{Subject: "li-1", Email: "lin@example.org", EmailVerified: true, Name: "Lin Kedin"})
	pend, q, u := login(t, s, p)
	if u.Query().Has("code_challenge") || pend.Verifier != "" || pend.Nonce == "" || u.Query().Get("nonce") != pend.Nonce {
		t.Fatalf("LinkedIn authorization URL %s, pending %+v", u, pend)
	}
	id, err := p.Finish(context.Background(), pend, q)
	if err != nil {
		t.Fatal(err)
	}
	want := Identity{Provider: "linkedin", Kind: KindLinkedIn, Subject: "li-1", Email: "lin@example.org", EmailVerified: true, Name: "Lin Kedin"}
	if !reflect.DeepEqual(id, want) {
		t.Fatalf("identity %+v, want %+v", id, want)
	}
	// A nonce it does send must be ours.
	s.EditIDToken(func(c map[string]any) { c["nonce"] = "not-ours" })
	_, err = finish(t, s, p, nil)
	wantErr(t, err, ErrNonce)
	// email_verified "false" as a string is false.
	s.EditIDToken(nil)
	s.SetUser(oidctest.User{Subject: "li-2", Email: "x@example.org", EmailVerified: false})
	if id, err := finish(t, s, p, nil); err != nil || id.EmailVerified {
		t.Fatalf("identity %+v, %v", id, err)
	}
}

func TestGitLabGroups(t *testing.T) {
	s, p := setup(t, KindGitLab, oidctest.Options{GroupsClaim: "groups_direct"}, nil)
	s.SetUser(oidctest.User{Subject: "31", Email: "gl@example.org", EmailVerified: true, PreferredUsername: "gl", Groups: []string{"hack/organisers"}})
	id, err := finish(t, s, p, nil)
	if err != nil {
		t.Fatal(err)
	}
	if id.Kind != KindGitLab || id.Login != "gl" || !reflect.DeepEqual(id.Groups, []string{"hack/organisers"}) {
		t.Fatalf("identity %+v", id)
	}
	providers := []Config{p.cfg}
	al, err := ParseAllowList([]string{"group:gitlab:hack/organisers"}, providers)
	if err != nil || !al.Organiser(id) {
		t.Fatalf("group:gitlab:hack/organisers: %v %v", al.Organiser(id), err)
	}
	// Unqualified groups are the OIDC issuer's: with only GitLab
	// configured the entry is refused rather than matching gitlab.com's
	// groups, which anyone can create.
	if _, err := ParseAllowList([]string{"group:hack/organisers"}, providers); err == nil {
		t.Fatal("an unqualified group was taken without an OIDC issuer")
	}
	withOIDC := append(providers, Config{Name: "sso", Kind: KindOIDC})
	al, err = ParseAllowList([]string{"group:hack/organisers"}, withOIDC)
	if err != nil || al.Organiser(id) {
		t.Fatalf("an unqualified group matched a GitLab group: %v", err)
	}
}

func TestDiscoveryIsLazyOnceAndRetried(t *testing.T) {
	s, p := setup(t, KindOIDC, oidctest.Options{}, nil)
	const doc = "/.well-known/openid-configuration"
	if n := s.Requests(doc); n != 0 {
		t.Fatalf("New fetched discovery %d times", n)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for range 8 {
		wg.Go(func() {
			_, _, err := p.Begin(context.Background(), redirect("oidc"))
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if n := s.Requests(doc); n != 1 {
		t.Fatalf("discovery fetched %d times for 8 logins", n)
	}

	s2, p2 := setup(t, KindOIDC, oidctest.Options{}, nil)
	s2.SetUnavailable(true)
	_, _, err := p2.Begin(context.Background(), redirect("oidc"))
	wantErr(t, err, ErrUnavailable, s2.URL, "503")
	s2.SetUnavailable(false)
	if _, _, err := p2.Begin(context.Background(), redirect("oidc")); err != nil {
		t.Fatalf("discovery not tried again: %v", err)
	}
}

func TestDiscoveryTimeoutAndMismatch(t *testing.T) {
	// A server that accepts connections and never answers.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var conns []net.Conn
	var mu sync.Mutex
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	defer func() {
		ln.Close()
		<-done
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
	}()
	issuer := "http://" + ln.Addr().String() + "/realms/thon"
	p, err := New(Config{Name: "sso", Kind: KindOIDC, ClientID: "c", ClientSecret: "s", Issuer: issuer}, Options{DiscoveryTimeout: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	_, _, err = p.Begin(context.Background(), redirect("sso"))
	wantErr(t, err, ErrUnavailable, issuer, "no answer within 300ms")
	// The caller's own deadline ends its wait, with its own error.
	p, _ = New(Config{Name: "sso", Kind: KindOIDC, ClientID: "c", ClientSecret: "s", Issuer: issuer}, Options{DiscoveryTimeout: time.Minute})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, _, err = p.Begin(ctx, redirect("sso"))
	wantErr(t, err, context.Canceled, issuer)

	// An issuer written with a trailing slash is not the issuer.
	s := oidctest.New(t, oidctest.Options{})
	p = providerFor(t, s, KindOIDC, func(c *Config) { c.Issuer = s.URL + "/" })
	_, _, err = p.Begin(context.Background(), redirect("oidc"))
	wantErr(t, err, ErrUnavailable, s.URL+"/", "did not match")
}

func TestNewRefusesBadConfig(t *testing.T) {
	if _, err := New(Config{Name: "x", Kind: KindOIDC, ClientID: "c", ClientSecret: "s", Issuer: "http://idp.example.org"}, Options{}); err == nil {
		t.Fatal("New took a plain-http issuer")
	}
}
