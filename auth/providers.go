package auth

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/thon-dev/thon/auth/oidc"
	"github.com/thon-dev/thon/internal/httpurl"
	"github.com/thon-dev/thon/store"
)

// Sign-in at identity providers (package oidc) takes two requests:
// BeginLogin at LoginPath(name) sends the browser to the provider, and
// FinishLogin at oidc.CallbackPath(name) turns the identity the provider
// vouches for into a session. Between them the pending login (state,
// PKCE verifier, nonce, where to go next) lives sealed in a cookie that
// only the callback's path receives.

// PendingCookieName is the cookie that holds a pending login, sealed.
const PendingCookieName = "thon_login"

// maxNextLen bounds the page a login goes on to: it travels in the
// pending cookie.
const maxNextLen = 1024

// ErrUnknownProvider means no identity provider has the name (404).
var ErrUnknownProvider = errors.New("no such identity provider")

// LoginPath is where a login at the named provider begins.
func LoginPath(provider string) string { return "/api/auth/login/" + provider }

// ProviderInfo is an identity provider as sign-in pages list it.
type ProviderInfo struct {
	// Name is the provider's name in the URLs.
	Name string `json:"name"`
	// DisplayName labels its login button ("GitHub").
	DisplayName string    `json:"display_name"`
	Kind        oidc.Kind `json:"kind"`
	// LoginURL is where its login begins (LoginPath).
	LoginURL string `json:"login_url"`
}

// NotAdmittedError refuses an identity its provider vouched for but that
// is neither on the organisers' allow-list nor the one roster user with
// its verified email (403). Error says who they are and why.
type NotAdmittedError struct {
	// Identity is who the provider says the user is; Provider is the
	// provider's display name.
	Identity oidc.Identity
	Provider string
	// Reason says why they are no participant.
	Reason string
	// cause is oidc.ErrEmailUnverified, store.ErrNotFound or
	// store.ErrConflict.
	cause error
}

// Error says who was refused and why.
func (e *NotAdmittedError) Error() string {
	return fmt.Sprintf("you are signed in at %s as %s, who is not on the organisers' allow-list, and %s",
		e.Provider, e.Who(), e.Reason)
}

// Unwrap gives ErrForbidden and the cause.
func (e *NotAdmittedError) Unwrap() []error { return []error{ErrForbidden, e.cause} }

// Who describes the identity: "Jane Doe (login jane, email
// jane@example.org)".
func (e *NotAdmittedError) Who() string {
	id := e.Identity
	main := id.Name
	var details []string
	if id.Login != "" {
		if main == "" {
			main = id.Login
		} else {
			details = append(details, "login "+id.Login)
		}
	}
	if id.Email != "" {
		email := id.Email
		if !id.EmailVerified {
			email += ", not verified"
		}
		if main == "" {
			main = email
		} else {
			details = append(details, "email "+email)
		}
	}
	if main == "" {
		main = "subject " + id.Subject
	}
	if len(details) == 0 {
		return main
	}
	return main + " (" + strings.Join(details, ", ") + ")"
}

// identityProviders are a Service's identity providers.
type identityProviders struct {
	list         []*oidc.Provider
	byName       map[string]*oidc.Provider
	organisers   oidc.AllowList
	sealer       *oidc.Sealer
	redirectBase string
}

// setup makes the providers of opts (no network I/O).
func (idp *identityProviders) setup(opts Options) error {
	base, err := CheckRedirectBase(opts.RedirectBase)
	if err != nil {
		return fmt.Errorf("auth: %w", err)
	}
	if err := oidc.ValidateAll(opts.Providers); err != nil {
		return fmt.Errorf("auth: identity providers: %w", err)
	}
	idp.byName = make(map[string]*oidc.Provider, len(opts.Providers))
	for _, c := range opts.Providers {
		p, err := oidc.New(c, opts.ProviderOptions)
		if err != nil {
			return fmt.Errorf("auth: identity provider %q: %w", c.Name, err)
		}
		idp.list = append(idp.list, p)
		idp.byName[p.Name()] = p
	}
	idp.sealer, err = oidc.NewSealer(opts.Secret)
	if err != nil {
		return fmt.Errorf("auth: %w", err)
	}
	idp.organisers, idp.redirectBase = opts.Organisers, base
	return nil
}

// CheckRedirectBase checks a redirect base (Options.RedirectBase): empty,
// or an http(s) URL of a scheme and host (and port) alone, such as
// https://thon.example.org. It returns the base without a trailing
// slash; errors are *oidc.FieldError on "redirect_base".
func CheckRedirectBase(v string) (string, error) {
	if v == "" {
		return "", nil
	}
	bad := func(msg string) (string, error) {
		return "", &oidc.FieldError{Field: "redirect_base", Msg: msg}
	}
	u, err := httpurl.Parse(v, httpurl.Rules{NoQuery: true, NoUserInfo: true})
	if err != nil {
		return bad(err.Error())
	}
	if u.Path != "" && u.Path != "/" {
		return bad(fmt.Sprintf("%q must be a scheme and host alone, such as https://thon.example.org: thon's callbacks are at /api/auth/callback/<provider>", v))
	}
	return u.Scheme + "://" + u.Host, nil
}

// Providers lists the identity providers, in the configuration's order.
func (s *Service) Providers() []ProviderInfo {
	out := make([]ProviderInfo, 0, len(s.idp.list))
	for _, p := range s.idp.list {
		out = append(out, ProviderInfo{Name: p.Name(), DisplayName: p.DisplayName(), Kind: p.Kind(), LoginURL: LoginPath(p.Name())})
	}
	return out
}

func (s *Service) provider(name string) (*oidc.Provider, error) {
	p, ok := s.idp.byName[name]
	if !ok {
		return nil, fmt.Errorf("%q: %w", name, ErrUnknownProvider)
	}
	return p, nil
}

// redirectURL is the callback URL of provider name for a login begun by
// r: the redirect base, else r's scheme and Host, and the callback path.
func (s *Service) redirectURL(r *http.Request, name string) (string, error) {
	base := s.idp.redirectBase
	if base == "" {
		scheme := "http"
		if r.TLS != nil {
			scheme = "https"
		}
		base = scheme + "://" + r.Host
		if err := httpurl.Check(base, httpurl.Rules{NoQuery: true, NoUserInfo: true}); err != nil {
			return "", &store.FieldError{Field: "Host", Msg: fmt.Sprintf("cannot make the callback URL of this request's Host: %v", err)}
		}
	}
	return base + oidc.CallbackPath(name), nil
}

// BeginLogin starts a login of r's browser at the provider name: it
// returns the provider's URL to send the browser to and the cookie that
// holds the pending login (sealed, HttpOnly, SameSite=Lax, Secure over
// HTTPS, for the callback's path, lasting oidc.PendingTTL). next is
// where the login goes on to, a local path the caller has checked (a
// longer one than 1 KiB is dropped). An unknown name answers
// ErrUnknownProvider; a provider that cannot be reached, oidc's
// ErrUnavailable.
func (s *Service) BeginLogin(r *http.Request, name, next string) (string, *http.Cookie, error) {
	p, err := s.provider(name)
	if err != nil {
		return "", nil, err
	}
	redirect, err := s.redirectURL(r, name)
	if err != nil {
		return "", nil, err
	}
	authURL, pend, err := p.Begin(r.Context(), redirect)
	if err != nil {
		return "", nil, err
	}
	if len(next) <= maxNextLen {
		pend.Next = next
	}
	sealed, err := s.idp.sealer.Seal(pend, s.now())
	if err != nil {
		return "", nil, err
	}
	return authURL, pendingCookie(r, name, sealed, int(oidc.PendingTTL/time.Second)), nil
}

// ClearPendingCookie returns the cookie that removes the pending login of
// provider name: the callback answers it whatever the outcome.
func ClearPendingCookie(r *http.Request, name string) *http.Cookie {
	return pendingCookie(r, name, "", -1)
}

func pendingCookie(r *http.Request, name, value string, maxAge int) *http.Cookie {
	return &http.Cookie{
		Name: PendingCookieName, Value: value, Path: oidc.CallbackPath(name), MaxAge: maxAge,
		HttpOnly: true, Secure: r.TLS != nil, SameSite: http.SameSiteLaxMode,
	}
}

// FinishLogin completes the login at the callback r of provider name. It
// opens the pending login of r's cookie, has the provider check the
// callback (state, code exchanged with the PKCE verifier, ID token and
// nonce) and admits the identity:
//
//   - an organiser when the allow-list (Options.Organisers) has it;
//   - else a participant when its verified email is one roster user's
//     (without regard to case);
//   - else nobody: a *NotAdmittedError (an unverified email, no roster
//     user, or several with that address).
//
// It then starts the session (MethodOIDC) and returns it with the page
// the login began for. A pending login makes one session at most: its
// callback again is refused. Errors match ErrUnknownProvider, the Err*
// of package oidc (oidc.ErrPendingInvalid also for a missing cookie and
// a login finished already) or *NotAdmittedError; no session is made.
func (s *Service) FinishLogin(r *http.Request, name string) (Issued, string, error) {
	p, err := s.provider(name)
	if err != nil {
		return Issued{}, "", err
	}
	c, err := r.Cookie(PendingCookieName)
	if err != nil || c.Value == "" {
		return Issued{}, "", fmt.Errorf("%w: this browser has no sign-in at %s under way (it began more than %s ago, in another browser, or not at all)",
			oidc.ErrPendingInvalid, p.DisplayName(), oidc.PendingTTL)
	}
	now := s.now()
	pend, err := s.idp.sealer.Open(c.Value, now)
	if err != nil {
		return Issued{}, "", err
	}
	finished := fmt.Errorf("%w: this sign-in was finished already", oidc.ErrPendingInvalid)
	if s.state.finished.done(pend.State, now) {
		return Issued{}, "", finished
	}
	ctx := r.Context()
	id, err := p.Finish(ctx, pend, r.URL.Query())
	if err != nil {
		return Issued{}, "", err
	}
	pr, err := s.admit(ctx, p, id)
	if err != nil {
		return Issued{}, "", err
	}
	if !s.state.finished.claim(pend.State, now.Add(oidc.PendingTTL), now) {
		return Issued{}, "", finished
	}
	iss, err := s.StartSession(ctx, pr)
	return iss, pend.Next, err
}

// admit decides who id is; see FinishLogin.
func (s *Service) admit(ctx context.Context, p *oidc.Provider, id oidc.Identity) (Principal, error) {
	if s.idp.organisers.Organiser(id) {
		return Principal{Kind: KindOrganiser, Name: organiserName(id), Method: MethodOIDC}, nil
	}
	refuse := func(cause error, format string, args ...any) (Principal, error) {
		return Principal{}, &NotAdmittedError{Identity: id, Provider: p.DisplayName(), Reason: fmt.Sprintf(format, args...), cause: cause}
	}
	email, err := id.VerifiedEmail()
	if err != nil {
		if id.Email == "" {
			return refuse(err, "%s gave no email address to find you on the roster by", p.DisplayName())
		}
		return refuse(err, "%s has not verified your email address %s, so it cannot find you on the roster: verify it there and sign in again",
			p.DisplayName(), id.Email)
	}
	users, err := s.store.UsersByEmail(ctx, email)
	if err != nil {
		return Principal{}, err
	}
	switch len(users) {
	case 0:
		return refuse(store.ErrNotFound, "no participant on the roster has the email %s: ask an organiser to add it", email)
	case 1:
		u := users[0]
		return Principal{Kind: KindParticipant, Name: u.Name, UserID: u.ID, Group: u.Group, Method: MethodOIDC}, nil
	}
	names := make([]string, len(users))
	for i, u := range users {
		names[i] = u.Group + "/" + u.Name
	}
	return refuse(store.ErrConflict, "%d participants on the roster have the email %s (%s), which cannot tell them apart: ask an organiser to give each their own",
		len(users), email, strings.Join(names, ", "))
}

// organiserName is the name of an organiser signed in as id: the verified
// email, else provider:login, else provider:subject.
func organiserName(id oidc.Identity) string {
	if email, err := id.VerifiedEmail(); err == nil {
		return email
	}
	if id.Login != "" {
		return id.Provider + ":" + id.Login
	}
	return id.Provider + ":" + id.Subject
}

// finishedLogins are the states of the pending logins that made a
// session, kept until the pending logins expire. The zero value is
// empty.
type finishedLogins struct {
	mu        sync.Mutex
	m         map[string]time.Time // state → when its pending login expires
	lastSweep time.Time
}

// done reports whether the login of state made a session.
func (f *finishedLogins) done(state string, now time.Time) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	until, ok := f.m[state]
	return ok && now.Before(until)
}

// claim records that the login of state makes a session, until until; it
// reports false when it did already.
func (f *finishedLogins) claim(state string, until, now time.Time) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.m == nil {
		f.m = make(map[string]time.Time)
	}
	if now.Sub(f.lastSweep) >= sweepEvery {
		f.lastSweep = now
		for k, u := range f.m {
			if !now.Before(u) {
				delete(f.m, k)
			}
		}
	}
	if u, ok := f.m[state]; ok && now.Before(u) {
		return false
	}
	f.m[state] = until
	return true
}
