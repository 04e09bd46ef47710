package oidc

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	gooidc "github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"

	"github.com/thon-dev/thon/internal/httpurl"
)

// Defaults of Options.
const (
	DefaultHTTPTimeout      = 15 * time.Second
	DefaultDiscoveryTimeout = 10 * time.Second
)

// Options tune a Provider.
type Options struct {
	// HTTPClient makes every request to the provider (discovery, keys,
	// token, user API); by default a client with DefaultHTTPTimeout.
	HTTPClient *http.Client
	// DiscoveryTimeout bounds the fetch of the discovery document;
	// default DefaultDiscoveryTimeout.
	DiscoveryTimeout time.Duration
}

// Provider runs logins at one identity provider. It is safe for
// concurrent use. New does no network I/O: an OpenID Connect provider's
// discovery document is fetched at the first Begin (or Finish) and kept;
// a failed discovery is tried again at the next login.
type Provider struct {
	cfg     Config
	client  *http.Client
	timeout time.Duration
	// pkce: send an S256 challenge and the verifier. nonceOptional:
	// accept an ID token without a nonce (one that has a nonce must still
	// match).
	pkce, nonceOptional bool

	mu   sync.Mutex
	ep   *endpoints // nil until discovered (set at New for GitHub)
	call *discovery // the discovery under way, if any
}

// endpoints are what a login needs from the provider.
type endpoints struct {
	oauth    oauth2.Config // without RedirectURL
	verifier *gooidc.IDTokenVerifier
	oidc     *gooidc.Provider
}

type discovery struct {
	done chan struct{}
	ep   *endpoints
	err  error
}

// New makes a provider from cfg (validated, defaults of its kind filled
// in). It does no network I/O.
func New(cfg Config, opts Options) (*Provider, error) {
	cfg = cfg.withDefaults()
	if err := cfg.check(func(f string) string { return f }); err != nil {
		return nil, err
	}
	p := &Provider{
		cfg:     cfg,
		client:  opts.HTTPClient,
		timeout: cmpOrDuration(opts.DiscoveryTimeout, DefaultDiscoveryTimeout),
		pkce:    true,
	}
	if p.client == nil {
		p.client = &http.Client{Timeout: DefaultHTTPTimeout}
	}
	switch cfg.Kind {
	case KindLinkedIn:
		// LinkedIn's OpenID Connect for web apps refuses a token request
		// that carries a code_verifier (invalid_client) and leaves the
		// nonce out of its ID tokens. State and the client secret are all
		// that bind its callback to this login.
		p.pkce, p.nonceOptional = false, true
	case KindGitHub:
		p.ep = &endpoints{oauth: oauth2.Config{
			ClientID:     cfg.ClientID,
			ClientSecret: cfg.ClientSecret,
			Scopes:       cfg.Scopes,
			Endpoint: oauth2.Endpoint{
				AuthURL:   strings.TrimSuffix(cfg.GitHubURL, "/") + "/login/oauth/authorize",
				TokenURL:  strings.TrimSuffix(cfg.GitHubURL, "/") + "/login/oauth/access_token",
				AuthStyle: oauth2.AuthStyleInParams,
			},
		}}
	}
	return p, nil
}

func cmpOrDuration(v, def time.Duration) time.Duration {
	if v <= 0 {
		return def
	}
	return v
}

// Name is the provider's name in thon's URLs.
func (p *Provider) Name() string { return p.cfg.Name }

// DisplayName labels the provider's login button.
func (p *Provider) DisplayName() string { return p.cfg.DisplayName }

// Kind is the provider's kind.
func (p *Provider) Kind() Kind { return p.cfg.Kind }

func (p *Provider) isOIDC() bool { return p.cfg.Kind != KindGitHub }

// Begin starts a login: it returns the provider's authorization URL to
// send the browser to, and the pending login to keep until the callback
// (Sealer seals it into a cookie). redirectURL is the callback URL as
// registered at the provider (https://<host>/api/auth/callback/<name>).
// Every login has a fresh random state, a PKCE S256 verifier (not for
// LinkedIn, which refuses PKCE) and, for OpenID Connect, a nonce.
func (p *Provider) Begin(ctx context.Context, redirectURL string) (string, Pending, error) {
	if err := httpurl.Check(redirectURL, httpurl.Rules{NoQuery: true, NoUserInfo: true}); err != nil {
		return "", Pending{}, fmt.Errorf("%s: redirect URL: %w", p.cfg.Name, err)
	}
	ep, err := p.ready(ctx)
	if err != nil {
		return "", Pending{}, err
	}
	pend := Pending{Provider: p.cfg.Name, State: random(), RedirectURL: redirectURL}
	var opts []oauth2.AuthCodeOption
	if p.pkce {
		pend.Verifier = oauth2.GenerateVerifier()
		opts = append(opts, oauth2.S256ChallengeOption(pend.Verifier))
	}
	if p.isOIDC() {
		pend.Nonce = random()
		opts = append(opts, gooidc.Nonce(pend.Nonce))
	}
	oc := ep.oauth
	oc.RedirectURL = redirectURL
	return oc.AuthCodeURL(pend.State, opts...), pend, nil
}

// random returns 32 random bytes, base64url.
func random() string {
	b := make([]byte, 32)
	rand.Read(b) // never fails (crypto/rand)
	return base64.RawURLEncoding.EncodeToString(b)
}

// Finish completes a login at the callback: query is the callback URL's
// query, pend the login Begin returned. It checks the state, exchanges
// the code with the PKCE verifier, verifies the ID token (signature,
// issuer, audience, expiry, nonce) or reads GitHub's user API, and
// returns who the user is. Errors match the Err* values of this package.
func (p *Provider) Finish(ctx context.Context, pend Pending, query url.Values) (Identity, error) {
	name := p.cfg.Name
	if pend.Provider != name {
		return Identity{}, fmt.Errorf("%s: %w: the login began at provider %q", name, ErrStateMismatch, pend.Provider)
	}
	if pend.State == "" || subtle.ConstantTimeCompare([]byte(query.Get("state")), []byte(pend.State)) != 1 {
		return Identity{}, fmt.Errorf("%s: %w", name, ErrStateMismatch)
	}
	if e := query.Get("error"); e != "" {
		detail := quoteShort(e)
		if d := query.Get("error_description"); d != "" {
			detail += ": " + quoteShort(d)
		}
		return Identity{}, fmt.Errorf("%s: %w: %s", name, ErrDenied, detail)
	}
	code := query.Get("code")
	if code == "" {
		return Identity{}, fmt.Errorf("%s: %w: the callback carries no code", name, ErrDenied)
	}
	if (p.pkce && pend.Verifier == "") || (p.isOIDC() && pend.Nonce == "") || pend.RedirectURL == "" {
		return Identity{}, fmt.Errorf("%s: %w: it lacks the verifier, nonce or redirect URL its login needs", name, ErrPendingInvalid)
	}
	ep, err := p.ready(ctx)
	if err != nil {
		return Identity{}, err
	}
	oc := ep.oauth
	oc.RedirectURL = pend.RedirectURL
	var opts []oauth2.AuthCodeOption
	if p.pkce {
		opts = append(opts, oauth2.VerifierOption(pend.Verifier))
	}
	hctx := gooidc.ClientContext(ctx, p.client)
	tok, err := oc.Exchange(hctx, code, opts...)
	if err != nil {
		return Identity{}, p.exchangeError(ctx, oc.Endpoint.TokenURL, err)
	}
	if p.cfg.Kind == KindGitHub {
		return p.githubIdentity(ctx, tok)
	}
	return p.oidcIdentity(hctx, ep, pend, tok)
}

// quoteShort quotes s, cut to 200 bytes: provider text in an error.
func quoteShort(s string) string {
	if len(s) > 200 {
		s = s[:200] + "..."
	}
	return fmt.Sprintf("%q", s)
}

// exchangeError classifies an error of the token request.
func (p *Provider) exchangeError(ctx context.Context, tokenURL string, err error) error {
	name := p.cfg.Name
	if ctx.Err() != nil {
		return fmt.Errorf("%s: token request: %w", name, ctx.Err())
	}
	var re *oauth2.RetrieveError
	if errors.As(err, &re) && (re.Response == nil || re.Response.StatusCode < 500) {
		what := re.ErrorCode
		if what == "" && re.Response != nil {
			what = re.Response.Status
		}
		msg := quoteShort(what)
		if re.ErrorDescription != "" {
			msg += ": " + quoteShort(re.ErrorDescription)
		}
		return fmt.Errorf("%s: %w: %s", name, ErrExchange, msg)
	}
	return fmt.Errorf("%s: %w: token endpoint %s: %w", name, ErrUnavailable, tokenURL, err)
}

// oidcIdentity verifies the ID token of tok and reads the identity from
// it, and from the userinfo endpoint for what the token lacks.
func (p *Provider) oidcIdentity(ctx context.Context, ep *endpoints, pend Pending, tok *oauth2.Token) (Identity, error) {
	name := p.cfg.Name
	raw, _ := tok.Extra("id_token").(string)
	if raw == "" {
		return Identity{}, fmt.Errorf("%s: %w: the token answer carries no id_token", name, ErrIDToken)
	}
	idt, err := ep.verifier.Verify(ctx, raw)
	if err != nil {
		return Identity{}, fmt.Errorf("%s: %w: %w", name, ErrIDToken, err)
	}
	if idt.Subject == "" {
		return Identity{}, fmt.Errorf("%s: %w: no subject", name, ErrIDToken)
	}
	if !(idt.Nonce == "" && p.nonceOptional) && subtle.ConstantTimeCompare([]byte(idt.Nonce), []byte(pend.Nonce)) != 1 {
		return Identity{}, fmt.Errorf("%s: %w", name, ErrNonce)
	}
	if idt.AccessTokenHash != "" {
		if err := idt.VerifyAccessToken(tok.AccessToken); err != nil {
			return Identity{}, fmt.Errorf("%s: %w: %w", name, ErrIDToken, err)
		}
	}
	var claims map[string]any
	if err := idt.Claims(&claims); err != nil {
		return Identity{}, fmt.Errorf("%s: %w: %w", name, ErrIDToken, err)
	}
	id := Identity{Provider: name, Kind: p.cfg.Kind, Subject: idt.Subject}
	if err := id.fromClaims(claims, p.cfg.GroupsClaim); err != nil {
		return Identity{}, fmt.Errorf("%s: ID token: %w", name, err)
	}
	_, hasGroups := claims[p.cfg.GroupsClaim]
	if (id.Email != "" && (p.cfg.GroupsClaim == "" || hasGroups)) || ep.oidc.UserInfoEndpoint() == "" {
		return id, nil
	}
	ui, err := ep.oidc.UserInfo(ctx, oauth2.StaticTokenSource(tok))
	if err != nil {
		return Identity{}, fmt.Errorf("%s: %w: userinfo %s: %w", name, ErrProfile, ep.oidc.UserInfoEndpoint(), err)
	}
	if ui.Subject != idt.Subject {
		return Identity{}, fmt.Errorf("%s: %w: userinfo is for subject %q, the ID token for %q", name, ErrIDToken, ui.Subject, idt.Subject)
	}
	claims = nil
	if err := ui.Claims(&claims); err != nil {
		return Identity{}, fmt.Errorf("%s: %w: userinfo: %w", name, ErrProfile, err)
	}
	if err := id.fromClaims(claims, p.cfg.GroupsClaim); err != nil {
		return Identity{}, fmt.Errorf("%s: userinfo: %w", name, err)
	}
	return id, nil
}

// ready returns the provider's endpoints, discovering them at the
// first call. Concurrent first logins share one discovery; a caller
// whose ctx ends stops waiting but does not cancel it for the others.
func (p *Provider) ready(ctx context.Context) (*endpoints, error) {
	p.mu.Lock()
	if p.ep != nil {
		ep := p.ep
		p.mu.Unlock()
		return ep, nil
	}
	call := p.call
	if call == nil {
		call = &discovery{done: make(chan struct{})}
		p.call = call
		go p.discover(call)
	}
	p.mu.Unlock()
	select {
	case <-call.done:
		return call.ep, call.err
	case <-ctx.Done():
		return nil, fmt.Errorf("%s: waiting for discovery at %s: %w", p.cfg.Name, p.cfg.Issuer, ctx.Err())
	}
}

// discover fetches the discovery document, within p.timeout.
func (p *Provider) discover(call *discovery) {
	ep, err := p.fetchDiscovery()
	p.mu.Lock()
	if err == nil {
		p.ep = ep
	}
	p.call = nil
	call.ep, call.err = ep, err
	p.mu.Unlock()
	close(call.done)
}

func (p *Provider) fetchDiscovery() (*endpoints, error) {
	issuer := p.cfg.Issuer
	fail := func(format string, args ...any) error {
		return fmt.Errorf("%s: %w: discovery at %s: %s", p.cfg.Name, ErrUnavailable, issuer, fmt.Sprintf(format, args...))
	}
	ctx, cancel := context.WithTimeout(gooidc.ClientContext(context.Background(), p.client), p.timeout)
	defer cancel()
	prov, err := gooidc.NewProvider(ctx, issuer)
	if err != nil {
		if ctx.Err() != nil {
			return nil, fail("no answer within %s", p.timeout)
		}
		return nil, fail("%v", err)
	}
	var meta struct {
		JWKS        string   `json:"jwks_uri"`
		AuthMethods []string `json:"token_endpoint_auth_methods_supported"`
	}
	if err := prov.Claims(&meta); err != nil {
		return nil, fail("%v", err)
	}
	ep := prov.Endpoint()
	for _, u := range []struct{ what, v string }{
		{"authorization_endpoint", ep.AuthURL}, {"token_endpoint", ep.TokenURL}, {"jwks_uri", meta.JWKS},
	} {
		if err := httpurl.Check(u.v, httpurl.Rules{NoUserInfo: true, HTTPSOrLoopback: true}); err != nil {
			return nil, fail("%s: %v", u.what, err)
		}
	}
	if ui := prov.UserInfoEndpoint(); ui != "" {
		if err := httpurl.Check(ui, httpurl.Rules{NoUserInfo: true, HTTPSOrLoopback: true}); err != nil {
			return nil, fail("userinfo_endpoint: %v", err)
		}
	}
	// The default when the document says nothing is client_secret_basic.
	switch {
	case len(meta.AuthMethods) == 0 || slices.Contains(meta.AuthMethods, "client_secret_basic"):
		ep.AuthStyle = oauth2.AuthStyleInHeader
	case slices.Contains(meta.AuthMethods, "client_secret_post"):
		ep.AuthStyle = oauth2.AuthStyleInParams
	default:
		return nil, fail("the token endpoint takes neither client_secret_basic nor client_secret_post (it lists %q)", meta.AuthMethods)
	}
	return &endpoints{
		oauth: oauth2.Config{
			ClientID:     p.cfg.ClientID,
			ClientSecret: p.cfg.ClientSecret,
			Endpoint:     ep,
			Scopes:       p.cfg.Scopes,
		},
		verifier: prov.Verifier(&gooidc.Config{ClientID: p.cfg.ClientID}),
		oidc:     prov,
	}, nil
}
