package oidctest

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"

	gooidc "github.com/coreos/go-oidc/v3/oidc"
)

const callback = "http://127.0.0.1:9/api/auth/callback/oidc"

// verifier is a fixed PKCE verifier (RFC 7636 appendix B) and its S256
// challenge.
const (
	verifier  = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
	challenge = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
)

func TestS256MatchesRFC7636(t *testing.T) {
	if got := s256(verifier); got != challenge {
		t.Fatalf("s256 = %s, want %s", got, challenge)
	}
}

func authURL(s *Server, path string, set map[string]string) string {
	q := url.Values{
		"response_type":         {"code"},
		"client_id":             {s.ClientID},
		"redirect_uri":          {callback},
		"scope":                 {"openid profile email"},
		"state":                 {"st-1"},
		"nonce":                 {"no-1"},
		"code_challenge":        {challenge},
		"code_challenge_method": {"S256"},
	}
	for k, v := range set {
		if v == "" {
			q.Del(k)
		} else {
			q.Set(k, v)
		}
	}
	return s.URL + path + "?" + q.Encode()
}

// code runs an authorization request and returns the code it gives.
func code(t *testing.T, s *Server, path string, set map[string]string) string {
	t.Helper()
	back, err := s.Authorize(authURL(s, path, set))
	if err != nil {
		t.Fatal(err)
	}
	q := back.Query()
	if q.Get("error") != "" || q.Get("state") != "st-1" || q.Get("code") == "" {
		t.Fatalf("authorize redirected to %s", back)
	}
	return q.Get("code")
}

type tokenAnswer struct {
	status int
	body   map[string]any
}

func postToken(t *testing.T, s *Server, path string, form url.Values, basic bool, accept string) tokenAnswer {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, s.URL+path, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if basic {
		req.SetBasicAuth(url.QueryEscape(s.ClientID), url.QueryEscape(s.ClientSecret))
	}
	if accept != "" {
		req.Header.Set("Accept", accept)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	a := tokenAnswer{status: resp.StatusCode, body: map[string]any{}}
	if strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
		if err := json.NewDecoder(resp.Body).Decode(&a.body); err != nil {
			t.Fatal(err)
		}
	} else {
		var b strings.Builder
		buf := make([]byte, 4096)
		n, _ := resp.Body.Read(buf)
		b.Write(buf[:n])
		v, err := url.ParseQuery(b.String())
		if err != nil {
			t.Fatal(err)
		}
		for k := range v {
			a.body[k] = v.Get(k)
		}
	}
	return a
}

func exchangeForm(code string) url.Values {
	return url.Values{"grant_type": {"authorization_code"}, "code": {code}, "redirect_uri": {callback}, "code_verifier": {verifier}}
}

func TestOIDCCodeFlow(t *testing.T) {
	s := New(t, Options{RedirectURIs: []string{callback}})
	s.SetUser(User{Subject: "u-1", Email: "ann@example.org", EmailVerified: true, Name: "Ann", PreferredUsername: "ann", Groups: []string{"staff"}})
	c := code(t, s, "/authorize", nil)

	a := postToken(t, s, "/token", exchangeForm(c), true, "")
	if a.status != http.StatusOK {
		t.Fatalf("token: %d %v", a.status, a.body)
	}
	raw, _ := a.body["id_token"].(string)
	access, _ := a.body["access_token"].(string)

	// The real verifier accepts the ID token from the discovered keys.
	ctx := context.Background()
	prov, err := gooidc.NewProvider(ctx, s.URL)
	if err != nil {
		t.Fatal(err)
	}
	idt, err := prov.Verifier(&gooidc.Config{ClientID: s.ClientID}).Verify(ctx, raw)
	if err != nil {
		t.Fatal(err)
	}
	if err := idt.VerifyAccessToken(access); err != nil {
		t.Fatal(err)
	}
	var claims struct {
		Email    string   `json:"email"`
		Verified bool     `json:"email_verified"`
		Username string   `json:"preferred_username"`
		Groups   []string `json:"groups"`
	}
	idt.Claims(&claims)
	if idt.Subject != "u-1" || idt.Nonce != "no-1" || claims.Email != "ann@example.org" || !claims.Verified || claims.Username != "ann" || len(claims.Groups) != 1 {
		t.Fatalf("ID token %+v, claims %+v", idt, claims)
	}
	// Another key signs: the published keys refuse it.
	s.SignWithUnpublishedKey()
	a = postToken(t, s, "/token", exchangeForm(code(t, s, "/authorize", nil)), true, "")
	if _, err := prov.Verifier(&gooidc.Config{ClientID: s.ClientID}).Verify(ctx, a.body["id_token"].(string)); err == nil {
		t.Fatal("a token signed by an unpublished key verified")
	}

	// userinfo answers for the access token, and nothing else.
	req, _ := http.NewRequest(http.MethodGet, s.URL+"/userinfo", nil)
	req.Header.Set("Authorization", "Bearer "+access)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var ui map[string]any
	json.NewDecoder(resp.Body).Decode(&ui)
	resp.Body.Close()
	if ui["sub"] != "u-1" || ui["email"] != "ann@example.org" {
		t.Fatalf("userinfo %v", ui)
	}
	req.Header.Set("Authorization", "Bearer nope")
	resp, _ = http.DefaultClient.Do(req)
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("userinfo with a bad token: %d", resp.StatusCode)
	}
}

func TestAuthorizeRefusals(t *testing.T) {
	s := New(t, Options{RedirectURIs: []string{callback}})
	// No redirect for an unknown client or redirect URI.
	for _, set := range []map[string]string{{"client_id": "other"}, {"redirect_uri": "http://127.0.0.1:9/evil"}} {
		if back, err := s.Authorize(authURL(s, "/authorize", set)); err == nil {
			t.Fatalf("%v: redirected to %s", set, back)
		}
	}
	for _, tc := range []struct {
		set  map[string]string
		want string
	}{
		{map[string]string{"code_challenge": ""}, "invalid_request"},
		{map[string]string{"code_challenge_method": "plain"}, "invalid_request"},
		{map[string]string{"code_challenge_method": ""}, "invalid_request"},
		{map[string]string{"code_challenge": "short"}, "invalid_request"},
		{map[string]string{"scope": "profile email"}, "invalid_scope"},
		{map[string]string{"response_type": "token"}, "unsupported_response_type"},
	} {
		back, err := s.Authorize(authURL(s, "/authorize", tc.set))
		if err != nil {
			t.Fatal(err)
		}
		if q := back.Query(); q.Get("error") != tc.want || q.Get("code") != "" || q.Get("state") != "st-1" {
			t.Errorf("%v: redirected to %s, want error %s", tc.set, back, tc.want)
		}
	}
}

func TestTokenRefusals(t *testing.T) {
	s := New(t, Options{RedirectURIs: []string{callback, callback + "2"}})
	for _, tc := range []struct {
		name  string
		edit  func(url.Values)
		basic bool
		code  int
		want  string
	}{
		{"wrong verifier", func(f url.Values) { f.Set("code_verifier", strings.Repeat("a", 43)) }, true, 400, "invalid_grant"},
		{"no verifier", func(f url.Values) { f.Del("code_verifier") }, true, 400, "invalid_grant"},
		{"short verifier", func(f url.Values) { f.Set("code_verifier", "abc") }, true, 400, "invalid_grant"},
		{"other redirect", func(f url.Values) { f.Set("redirect_uri", callback+"2") }, true, 400, "invalid_grant"},
		{"wrong secret", func(f url.Values) { f.Set("client_id", s.ClientID); f.Set("client_secret", "x") }, false, 401, "invalid_client"},
		{"no client auth", func(url.Values) {}, false, 401, "invalid_client"},
		{"two auth methods", func(f url.Values) { f.Set("client_secret", s.ClientSecret) }, true, 400, "invalid_request"},
		{"grant type", func(f url.Values) { f.Set("grant_type", "password") }, true, 400, "unsupported_grant_type"},
	} {
		f := exchangeForm(code(t, s, "/authorize", nil))
		tc.edit(f)
		a := postToken(t, s, "/token", f, tc.basic, "")
		if a.status != tc.code || a.body["error"] != tc.want || a.body["access_token"] != nil {
			t.Errorf("%s: %d %v, want %d %s", tc.name, a.status, a.body, tc.code, tc.want)
		}
	}
	// A code is single-use, even after a failed attempt.
	c := code(t, s, "/authorize", nil)
	f := exchangeForm(c)
	if a := postToken(t, s, "/token", f, true, ""); a.status != 200 {
		t.Fatalf("first use: %v", a.body)
	}
	if a := postToken(t, s, "/token", f, true, ""); a.body["error"] != "invalid_grant" {
		t.Fatalf("second use: %v", a.body)
	}
	c = code(t, s, "/authorize", nil)
	bad := exchangeForm(c)
	bad.Set("code_verifier", strings.Repeat("b", 43))
	postToken(t, s, "/token", bad, true, "")
	if a := postToken(t, s, "/token", exchangeForm(c), true, ""); a.body["error"] != "invalid_grant" {
		t.Fatalf("a code survived a failed PKCE check: %v", a.body)
	}
	// client_secret_post works too.
	f = exchangeForm(code(t, s, "/authorize", nil))
	f.Set("client_id", s.ClientID)
	f.Set("client_secret", s.ClientSecret)
	if a := postToken(t, s, "/token", f, false, ""); a.status != 200 {
		t.Fatalf("client_secret_post: %v", a.body)
	}
}

func TestLinkedInMode(t *testing.T) {
	s := New(t, Options{RedirectURIs: []string{callback}, LinkedIn: true})
	var doc struct {
		Methods []string `json:"token_endpoint_auth_methods_supported"`
	}
	resp, err := http.Get(s.URL + "/.well-known/openid-configuration")
	if err != nil {
		t.Fatal(err)
	}
	json.NewDecoder(resp.Body).Decode(&doc)
	resp.Body.Close()
	if len(doc.Methods) != 1 || doc.Methods[0] != "client_secret_post" {
		t.Fatalf("auth methods %v", doc.Methods)
	}
	post := func(f url.Values) url.Values {
		f.Set("client_id", s.ClientID)
		f.Set("client_secret", s.ClientSecret)
		return f
	}
	noPKCE := map[string]string{"code_challenge": "", "code_challenge_method": ""}
	a := postToken(t, s, "/token", post(exchangeForm(code(t, s, "/authorize", noPKCE))), false, "")
	if a.status != 401 || a.body["error"] != "invalid_client" {
		t.Fatalf("a code_verifier at LinkedIn: %d %v", a.status, a.body)
	}
	f := post(exchangeForm(code(t, s, "/authorize", noPKCE)))
	f.Del("code_verifier")
	a = postToken(t, s, "/token", f, false, "")
	if a.status != 200 {
		t.Fatalf("LinkedIn exchange: %v", a.body)
	}
	prov, err := gooidc.NewProvider(context.Background(), s.URL)
	if err != nil {
		t.Fatal(err)
	}
	idt, err := prov.Verifier(&gooidc.Config{ClientID: s.ClientID}).Verify(context.Background(), a.body["id_token"].(string))
	if err != nil {
		t.Fatal(err)
	}
	var claims map[string]any
	idt.Claims(&claims)
	if idt.Nonce != "" || claims["email_verified"] != "true" {
		t.Fatalf("LinkedIn ID token: nonce %q, claims %v", idt.Nonce, claims)
	}
	// Basic auth is not among LinkedIn's methods.
	f = exchangeForm(code(t, s, "/authorize", noPKCE))
	f.Del("code_verifier")
	if a := postToken(t, s, "/token", f, true, ""); a.body["error"] != "invalid_client" {
		t.Fatalf("basic auth at LinkedIn: %v", a.body)
	}
}

func TestGitHubFlow(t *testing.T) {
	s := New(t, Options{RedirectURIs: []string{callback}})
	s.SetUser(User{GitHubID: 42, GitHubLogin: "octo", Name: "Octo Cat", Email: "octo@example.org", EmailVerified: true})
	gh := map[string]string{"response_type": "", "nonce": "", "scope": "read:user user:email"}
	c := code(t, s, "/login/oauth/authorize", gh)
	f := url.Values{"client_id": {s.ClientID}, "client_secret": {s.ClientSecret}, "code": {c}, "redirect_uri": {callback}, "code_verifier": {verifier}}
	a := postToken(t, s, "/login/oauth/access_token", f, false, "")
	tok, _ := a.body["access_token"].(string)
	if a.status != 200 || !strings.HasPrefix(tok, "gho_") || a.body["token_type"] != "bearer" {
		t.Fatalf("form answer: %v", a.body)
	}
	// Errors come with status 200, as JSON when asked.
	a = postToken(t, s, "/login/oauth/access_token", f, false, "application/json")
	if a.status != 200 || a.body["error"] != "bad_verification_code" {
		t.Fatalf("reused code: %d %v", a.status, a.body)
	}
	// An OIDC code is not a GitHub code.
	f.Set("code", code(t, s, "/authorize", nil))
	if a := postToken(t, s, "/login/oauth/access_token", f, false, ""); a.body["error"] != "bad_verification_code" {
		t.Fatalf("OIDC code at GitHub: %v", a.body)
	}

	get := func(path, auth string) (int, any) {
		req, _ := http.NewRequest(http.MethodGet, s.GitHubAPIURL()+path, nil)
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var v any
		json.NewDecoder(resp.Body).Decode(&v)
		return resp.StatusCode, v
	}
	if st, v := get("/user", "token "+tok); st != 200 || v.(map[string]any)["login"] != "octo" {
		t.Fatalf("/user: %d %v", st, v)
	}
	if st, v := get("/user/emails", "Bearer "+tok); st != 200 || len(v.([]any)) != 1 {
		t.Fatalf("/user/emails: %d %v", st, v)
	}
	if st, _ := get("/user", ""); st != 401 {
		t.Fatalf("/user without a token: %d", st)
	}
	// Without the user:email scope GitHub hides the addresses.
	c = code(t, s, "/login/oauth/authorize", map[string]string{"response_type": "", "nonce": "", "scope": "read:user"})
	f = url.Values{"client_id": {s.ClientID}, "client_secret": {s.ClientSecret}, "code": {c}, "redirect_uri": {callback}, "code_verifier": {verifier}}
	a = postToken(t, s, "/login/oauth/access_token", f, false, "application/json")
	if st, _ := get("/user/emails", "Bearer "+a.body["access_token"].(string)); st != 404 {
		t.Fatalf("/user/emails without user:email: %d", st)
	}
}
