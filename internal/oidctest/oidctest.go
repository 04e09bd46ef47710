// Package oidctest is an in-process identity provider for tests. It
// stands in for the real providers thon signs users in at — GitHub,
// GitLab, LinkedIn and OpenID Connect issuers such as Keycloak or
// Authentik — which cannot be reached from the test machines.
//
// It follows their protocols as documented, on 127.0.0.1:
//
//   - OpenID Connect (Core 1.0, Discovery 1.0): the discovery document at
//     /.well-known/openid-configuration, a JWKS with an RSA key at /jwks,
//     /authorize (client id and registered redirect URI checked, then the
//     user is signed in at once and sent back with code and state),
//     /token (client secret by client_secret_basic or client_secret_post,
//     codes single-use and bound to their client and redirect URI, the
//     PKCE verifier checked against the S256 challenge, RFC 7636) answering
//     an RS256 ID token with iss, sub, aud, exp, iat, nonce, at_hash and
//     the profile claims, and /userinfo.
//   - GitHub's OAuth web flow and REST API: /login/oauth/authorize,
//     /login/oauth/access_token (errors answered with status 200, as
//     GitHub does; JSON or form-encoded by the Accept header), and
//     /api/user and /api/user/emails (the API base for GitHub Enterprise
//     Server is /api/v3; here it is /api).
//
// It is stricter than some providers where that tests the client: every
// authorization request must carry a PKCE S256 challenge (GitLab and
// Keycloak enforce it when configured to; GitHub takes it but does not
// require it), except in LinkedIn mode, which behaves as LinkedIn's
// OpenID Connect does: no PKCE (a token request carrying a code_verifier
// is refused with invalid_client), no nonce in ID tokens, email_verified
// as a string, client_secret_post only.
package oidctest

import (
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// User is the account the stand-in signs in.
type User struct {
	Subject           string // the OIDC "sub"
	Email             string
	EmailVerified     bool
	Name              string
	PreferredUsername string
	Groups            []string // nil: no groups claim

	// GitHub's view of the account.
	GitHubID    int64
	GitHubLogin string
	// GitHubEmails are /user/emails; nil gives Email as the primary
	// address, verified when EmailVerified.
	GitHubEmails []GitHubEmail
}

// GitHubEmail is an entry of GitHub's /user/emails.
type GitHubEmail struct {
	Email      string  `json:"email"`
	Primary    bool    `json:"primary"`
	Verified   bool    `json:"verified"`
	Visibility *string `json:"visibility"`
}

// Options configure a Server.
type Options struct {
	// ClientID and ClientSecret of the one registered client; random by
	// default.
	ClientID, ClientSecret string
	// RedirectURIs are the client's registered redirect URIs, matched
	// exactly.
	RedirectURIs []string
	// TokenAuthMethods the token endpoint takes (client_secret_basic,
	// client_secret_post); both by default.
	TokenAuthMethods []string
	// GroupsClaim names the claim that lists the user's groups; default
	// "groups".
	GroupsClaim string
	// ClaimsInUserinfoOnly leaves email, name, username and groups out of
	// the ID token; /userinfo still gives them.
	ClaimsInUserinfoOnly bool
	// LinkedIn makes the server behave as LinkedIn's OpenID Connect.
	LinkedIn bool
}

// Server is the stand-in identity provider.
type Server struct {
	// URL is the issuer and the base of every endpoint, and also the
	// GitHub web base; the GitHub API base is URL+"/api".
	URL                    string
	ClientID, ClientSecret string

	opts Options
	srv  *httptest.Server
	key  *rsa.PrivateKey
	kid  string

	mu          sync.Mutex
	user        User
	codes       map[string]*grant
	tokens      map[string]*grant
	requests    map[string]int
	unavailable bool
	editIDToken func(map[string]any)
	rogue       *rsa.PrivateKey // signs instead of key when set
}

// grant is an authorization: its code, then its access token.
type grant struct {
	github      bool
	clientID    string
	redirectURI string
	scopes      []string
	nonce       string
	challenge   string
	user        User
	issued      time.Time
	used        bool
}

// codeTTL is how long a code can be exchanged (GitHub: 10 minutes).
const codeTTL = 10 * time.Minute

// New starts a server on 127.0.0.1, stopped when the test ends.
func New(t testing.TB, opts Options) *Server {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	if len(opts.TokenAuthMethods) == 0 {
		opts.TokenAuthMethods = []string{"client_secret_basic", "client_secret_post"}
		if opts.LinkedIn {
			opts.TokenAuthMethods = []string{"client_secret_post"}
		}
	}
	if opts.GroupsClaim == "" {
		opts.GroupsClaim = "groups"
	}
	s := &Server{
		ClientID:     opts.ClientID,
		ClientSecret: opts.ClientSecret,
		opts:         opts,
		key:          key,
		kid:          randomString(8),
		codes:        map[string]*grant{},
		tokens:       map[string]*grant{},
		requests:     map[string]int{},
		user: User{
			Subject: "248289761001", Email: "jane@example.org", EmailVerified: true,
			Name: "Jane Doe", PreferredUsername: "jane",
			GitHubID: 1001, GitHubLogin: "jane-doe",
		},
	}
	if s.ClientID == "" {
		s.ClientID = randomString(16)
	}
	if s.ClientSecret == "" {
		s.ClientSecret = randomString(32)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /.well-known/openid-configuration", s.discovery)
	mux.HandleFunc("GET /jwks", s.jwks)
	mux.HandleFunc("/authorize", s.authorize(false))
	mux.HandleFunc("/token", s.token)
	mux.HandleFunc("/userinfo", s.userinfo)
	mux.HandleFunc("GET /login/oauth/authorize", s.authorize(true))
	mux.HandleFunc("/login/oauth/access_token", s.githubToken)
	mux.HandleFunc("GET /api/user", s.githubUser)
	mux.HandleFunc("GET /api/user/emails", s.githubEmails)
	s.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		s.requests[r.URL.Path]++
		down := s.unavailable
		s.mu.Unlock()
		if down {
			http.Error(w, "service unavailable", http.StatusServiceUnavailable)
			return
		}
		mux.ServeHTTP(w, r)
	}))
	s.URL = s.srv.URL
	t.Cleanup(s.srv.Close)
	return s
}

func randomString(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// GitHubURL is the GitHub web base (authorize and token endpoints).
func (s *Server) GitHubURL() string { return s.URL }

// GitHubAPIURL is the GitHub API base.
func (s *Server) GitHubAPIURL() string { return s.URL + "/api" }

// SetUser sets the account signed in by the next authorization requests.
func (s *Server) SetUser(u User) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.user = u
}

// RegisterRedirectURI adds a registered redirect URI.
func (s *Server) RegisterRedirectURI(uri string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.opts.RedirectURIs = append(s.opts.RedirectURIs, uri)
}

// EditIDToken makes f change the claims of every ID token issued from now
// on, before it is signed (nil: no change): a misbehaving or hostile
// provider.
func (s *Server) EditIDToken(f func(claims map[string]any)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.editIDToken = f
}

// SignWithUnpublishedKey makes ID tokens be signed from now on by a key
// that the JWKS does not publish (under the published key's id).
func (s *Server) SignWithUnpublishedKey() {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		panic(err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.rogue = k
}

// SetUnavailable makes every endpoint answer 503 (true) or work again.
func (s *Server) SetUnavailable(down bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.unavailable = down
}

// Requests is how many requests have reached path.
func (s *Server) Requests(path string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.requests[path]
}

// Authorize sends a browser's request to authURL (this server's
// authorization endpoint) and returns where the server redirects it: the
// client's redirect URI with the code and state, or with an error.
func (s *Server) Authorize(authURL string) (*url.URL, error) {
	c := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := c.Get(authURL)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusFound {
		var b strings.Builder
		fmt.Fprintf(&b, "authorize answered %s", resp.Status)
		buf := make([]byte, 512)
		n, _ := resp.Body.Read(buf)
		if n > 0 {
			fmt.Fprintf(&b, ": %s", strings.TrimSpace(string(buf[:n])))
		}
		return nil, fmt.Errorf("%s", b.String())
	}
	return resp.Location()
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

// oauthError answers a token request with an RFC 6749 §5.2 error.
func oauthError(w http.ResponseWriter, status int, code, desc string) {
	if status == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Basic realm="oidctest"`)
	}
	writeJSON(w, status, map[string]string{"error": code, "error_description": desc})
}

func (s *Server) discovery(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]any{
		"issuer":                                s.URL,
		"authorization_endpoint":                s.URL + "/authorize",
		"token_endpoint":                        s.URL + "/token",
		"userinfo_endpoint":                     s.URL + "/userinfo",
		"jwks_uri":                              s.URL + "/jwks",
		"response_types_supported":              []string{"code"},
		"subject_types_supported":               []string{"public"},
		"id_token_signing_alg_values_supported": []string{"RS256"},
		"scopes_supported":                      []string{"openid", "profile", "email"},
		"token_endpoint_auth_methods_supported": s.opts.TokenAuthMethods,
		"grant_types_supported":                 []string{"authorization_code"},
		"code_challenge_methods_supported":      []string{"S256"},
		"claims_supported":                      []string{"iss", "sub", "aud", "exp", "iat", "nonce", "email", "email_verified", "name", "preferred_username", s.opts.GroupsClaim},
	})
}

func (s *Server) jwks(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, jwks(map[string]*rsa.PrivateKey{s.kid: s.key}))
}

// authorize is the authorization endpoint (OIDC, or GitHub's).
func (s *Server) authorize(github bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if err := r.ParseForm(); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		f := r.Form
		s.mu.Lock()
		registered := slices.Contains(s.opts.RedirectURIs, f.Get("redirect_uri"))
		user := s.user
		s.mu.Unlock()
		// Without a known client and a registered redirect URI the user
		// is not sent anywhere (RFC 6749 §4.1.2.1).
		if f.Get("client_id") != s.ClientID {
			http.Error(w, "unknown client_id", http.StatusBadRequest)
			return
		}
		if !registered {
			http.Error(w, "redirect_uri is not registered for this client", http.StatusBadRequest)
			return
		}
		back, _ := url.Parse(f.Get("redirect_uri"))
		fail := func(code, desc string) {
			q := back.Query()
			q.Set("error", code)
			q.Set("error_description", desc)
			if st := f.Get("state"); st != "" {
				q.Set("state", st)
			}
			back.RawQuery = q.Encode()
			http.Redirect(w, r, back.String(), http.StatusFound)
		}
		scopes := strings.Fields(f.Get("scope"))
		g := &grant{
			github:      github,
			clientID:    s.ClientID,
			redirectURI: f.Get("redirect_uri"),
			scopes:      scopes,
			nonce:       f.Get("nonce"),
			user:        user,
			issued:      time.Now(),
		}
		if !github {
			if f.Get("response_type") != "code" {
				fail("unsupported_response_type", "only the authorization code flow")
				return
			}
			if !slices.Contains(scopes, "openid") {
				fail("invalid_scope", "openid is required")
				return
			}
		}
		if !s.opts.LinkedIn {
			switch ch, m := f.Get("code_challenge"), f.Get("code_challenge_method"); {
			case ch == "":
				fail("invalid_request", "PKCE is required: code_challenge missing")
				return
			case m != "S256":
				fail("invalid_request", "code_challenge_method must be S256")
				return
			case len(ch) != 43 || strings.Trim(ch, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_") != "":
				fail("invalid_request", "code_challenge is not a base64url SHA-256")
				return
			default:
				g.challenge = ch
			}
		}
		code := randomString(24)
		s.mu.Lock()
		s.codes[code] = g
		s.mu.Unlock()
		q := back.Query()
		q.Set("code", code)
		if st := f.Get("state"); st != "" {
			q.Set("state", st)
		}
		back.RawQuery = q.Encode()
		http.Redirect(w, r, back.String(), http.StatusFound)
	}
}

// clientAuth authenticates the client of a token request by the methods
// the server takes. It returns the OAuth error code on failure.
func (s *Server) clientAuth(r *http.Request, methods []string) (string, string) {
	user, pass, basic := r.BasicAuth()
	_, inForm := r.PostForm["client_secret"]
	switch {
	case basic && inForm:
		return "invalid_request", "more than one client authentication method"
	case basic:
		if !slices.Contains(methods, "client_secret_basic") {
			return "invalid_client", "client_secret_basic is not accepted"
		}
		// RFC 6749 §2.3.1: both are form-urlencoded first.
		var err1, err2 error
		user, err1 = url.QueryUnescape(user)
		pass, err2 = url.QueryUnescape(pass)
		if err1 != nil || err2 != nil {
			return "invalid_client", "malformed credentials"
		}
	case inForm:
		if !slices.Contains(methods, "client_secret_post") {
			return "invalid_client", "client_secret_post is not accepted"
		}
		user, pass = r.PostForm.Get("client_id"), r.PostForm.Get("client_secret")
	default:
		return "invalid_client", "no client authentication"
	}
	if user != s.ClientID || pass != s.ClientSecret {
		return "invalid_client", "client authentication failed"
	}
	return "", ""
}

// redeem takes the code of a token request and checks it against the
// request: single use, unexpired, same client and redirect URI, PKCE.
// The code is spent even when a check fails.
func (s *Server) redeem(f url.Values, github bool) (*grant, string, string) {
	s.mu.Lock()
	g := s.codes[f.Get("code")]
	var used bool
	if g != nil {
		used, g.used = g.used, true
	}
	s.mu.Unlock()
	switch {
	case g == nil || g.github != github:
		return nil, "invalid_grant", "unknown code"
	case used:
		return nil, "invalid_grant", "code already used"
	case time.Since(g.issued) > codeTTL:
		return nil, "invalid_grant", "code expired"
	case g.clientID != s.ClientID || (f.Has("client_id") && f.Get("client_id") != g.clientID):
		return nil, "invalid_grant", "code issued to another client"
	case f.Get("redirect_uri") != g.redirectURI:
		return nil, "invalid_grant", "redirect_uri differs from the authorization request's"
	}
	v := f.Get("code_verifier")
	switch {
	case g.challenge == "" && v != "":
		return nil, "invalid_grant", "code_verifier without a code_challenge"
	case g.challenge == "":
	case v == "":
		return nil, "invalid_grant", "code_verifier missing"
	case len(v) < 43 || len(v) > 128 || strings.Trim(v, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~") != "":
		return nil, "invalid_grant", "code_verifier is not 43 to 128 unreserved characters"
	case s256(v) != g.challenge:
		return nil, "invalid_grant", "PKCE verification failed: code_verifier does not match code_challenge"
	}
	return g, "", ""
}

// token is the OIDC token endpoint.
func (s *Server) token(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		oauthError(w, http.StatusMethodNotAllowed, "invalid_request", "POST only")
		return
	}
	if err := r.ParseForm(); err != nil {
		oauthError(w, http.StatusBadRequest, "invalid_request", err.Error())
		return
	}
	f := r.PostForm
	if code, desc := s.clientAuth(r, s.opts.TokenAuthMethods); code != "" {
		status := http.StatusUnauthorized
		if code == "invalid_request" {
			status = http.StatusBadRequest
		}
		oauthError(w, status, code, desc)
		return
	}
	if s.opts.LinkedIn && f.Has("code_verifier") {
		// What LinkedIn answers a web app that sends PKCE.
		oauthError(w, http.StatusUnauthorized, "invalid_client", "Client authentication failed")
		return
	}
	if f.Get("grant_type") != "authorization_code" {
		oauthError(w, http.StatusBadRequest, "unsupported_grant_type", "only authorization_code")
		return
	}
	g, code, desc := s.redeem(f, false)
	if g == nil {
		oauthError(w, http.StatusBadRequest, code, desc)
		return
	}
	access := randomString(32)
	s.mu.Lock()
	s.tokens[access] = g
	edit, signer := s.editIDToken, s.key
	if s.rogue != nil {
		signer = s.rogue
	}
	s.mu.Unlock()
	out := map[string]any{
		"access_token": access,
		"token_type":   "Bearer",
		"expires_in":   3600,
		"scope":        strings.Join(g.scopes, " "),
	}
	if slices.Contains(g.scopes, "openid") {
		now := time.Now()
		claims := map[string]any{
			"iss":       s.URL,
			"sub":       g.user.Subject,
			"aud":       s.ClientID,
			"exp":       now.Add(time.Hour).Unix(),
			"iat":       now.Unix(),
			"auth_time": g.issued.Unix(),
			"at_hash":   atHash(access),
		}
		if g.nonce != "" && !s.opts.LinkedIn {
			claims["nonce"] = g.nonce
		}
		if !s.opts.ClaimsInUserinfoOnly {
			for k, v := range s.profile(g) {
				claims[k] = v
			}
		}
		if edit != nil {
			edit(claims)
		}
		idt, err := signJWT(signer, s.kid, claims)
		if err != nil {
			oauthError(w, http.StatusInternalServerError, "server_error", err.Error())
			return
		}
		out["id_token"] = idt
	}
	w.Header().Set("Pragma", "no-cache")
	writeJSON(w, http.StatusOK, out)
}

// profile is the user's claims for the grant's scopes.
func (s *Server) profile(g *grant) map[string]any {
	c := map[string]any{}
	u := g.user
	if slices.Contains(g.scopes, "email") && u.Email != "" {
		c["email"] = u.Email
		if s.opts.LinkedIn {
			c["email_verified"] = fmt.Sprint(u.EmailVerified)
		} else {
			c["email_verified"] = u.EmailVerified
		}
	}
	if slices.Contains(g.scopes, "profile") {
		if u.Name != "" {
			c["name"] = u.Name
		}
		if u.PreferredUsername != "" && !s.opts.LinkedIn {
			c["preferred_username"] = u.PreferredUsername
		}
	}
	if u.Groups != nil {
		c[s.opts.GroupsClaim] = u.Groups
	}
	return c
}

// bearer returns the grant of the request's access token.
func (s *Server) bearer(r *http.Request, schemes ...string) *grant {
	scheme, tok, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	if !ok || !slices.ContainsFunc(schemes, func(s string) bool { return strings.EqualFold(s, scheme) }) {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.tokens[tok]
}

func (s *Server) userinfo(w http.ResponseWriter, r *http.Request) {
	g := s.bearer(r, "Bearer")
	if g == nil || g.github {
		w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token"`)
		http.Error(w, "invalid token", http.StatusUnauthorized)
		return
	}
	c := s.profile(g)
	c["sub"] = g.user.Subject
	writeJSON(w, http.StatusOK, c)
}

// githubToken is GitHub's token endpoint: client credentials in the form
// (or Basic), errors answered 200 with an error field.
func (s *Server) githubToken(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		http.NotFound(w, r)
		return
	}
	if err := r.ParseForm(); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	answer := func(v url.Values) {
		w.Header().Set("Cache-Control", "no-store")
		if strings.Contains(r.Header.Get("Accept"), "application/json") {
			m := map[string]string{}
			for k := range v {
				m[k] = v.Get(k)
			}
			writeJSON(w, http.StatusOK, m)
			return
		}
		w.Header().Set("Content-Type", "application/x-www-form-urlencoded; charset=utf-8")
		w.Write([]byte(v.Encode()))
	}
	fail := func(code, desc string) {
		answer(url.Values{"error": {code}, "error_description": {desc}, "error_uri": {"https://docs.github.com/apps/managing-oauth-apps/troubleshooting-oauth-app-access-token-request-errors"}})
	}
	if code, _ := s.clientAuth(r, []string{"client_secret_basic", "client_secret_post"}); code != "" {
		fail("incorrect_client_credentials", "The client_id and/or client_secret passed are incorrect.")
		return
	}
	g, _, desc := s.redeem(r.PostForm, true)
	if g == nil {
		if strings.HasPrefix(desc, "redirect_uri") {
			fail("redirect_uri_mismatch", "The redirect_uri MUST match the registered callback URL for this application.")
			return
		}
		fail("bad_verification_code", "The code passed is incorrect or expired. ("+desc+")")
		return
	}
	access := "gho_" + randomString(27)
	s.mu.Lock()
	s.tokens[access] = g
	s.mu.Unlock()
	answer(url.Values{"access_token": {access}, "token_type": {"bearer"}, "scope": {strings.Join(g.scopes, ",")}})
}

func (s *Server) githubAuth(w http.ResponseWriter, r *http.Request) *grant {
	g := s.bearer(r, "Bearer", "token")
	if g == nil || !g.github {
		writeJSON(w, http.StatusUnauthorized, map[string]string{
			"message": "Bad credentials", "documentation_url": "https://docs.github.com/rest", "status": "401",
		})
		return nil
	}
	return g
}

func (s *Server) githubUser(w http.ResponseWriter, r *http.Request) {
	g := s.githubAuth(w, r)
	if g == nil {
		return
	}
	u := g.user
	var public any // the public email, which may be unverified
	if u.Email != "" {
		public = u.Email
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"login": u.GitHubLogin, "id": u.GitHubID, "node_id": fmt.Sprintf("U_%d", u.GitHubID),
		"type": "User", "name": u.Name, "email": public,
	})
}

func (s *Server) githubEmails(w http.ResponseWriter, r *http.Request) {
	g := s.githubAuth(w, r)
	if g == nil {
		return
	}
	if !slices.Contains(g.scopes, "user:email") && !slices.Contains(g.scopes, "user") {
		writeJSON(w, http.StatusNotFound, map[string]string{"message": "Not Found", "documentation_url": "https://docs.github.com/rest", "status": "404"})
		return
	}
	emails := g.user.GitHubEmails
	if emails == nil {
		emails = []GitHubEmail{}
		if g.user.Email != "" {
			private := "private"
			emails = append(emails, GitHubEmail{Email: g.user.Email, Primary: true, Verified: g.user.EmailVerified, Visibility: &private})
		}
	}
	writeJSON(w, http.StatusOK, emails)
}
