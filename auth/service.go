package auth

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/thon-dev/thon/auth/oidc"
	"github.com/thon-dev/thon/store"
)

// Default lifetimes.
const (
	// DefaultOrganiserTTL is how long an organiser's session lasts.
	DefaultOrganiserTTL = 12 * time.Hour
	// DefaultParticipantTTL is how long a participant's session lasts: a
	// hackathon.
	DefaultParticipantTTL = 48 * time.Hour
	// DefaultSetupTTL is how long a setup link is valid.
	DefaultSetupTTL = time.Hour
	// DefaultLoginAttempts failed login attempts from one address within
	// DefaultLoginWindow make it wait until the window ends.
	DefaultLoginAttempts = 5
	DefaultLoginWindow   = time.Minute
)

// Errors returned (wrapped) by the Service; api maps them to statuses.
var (
	// ErrUnauthenticated means the request carries no valid credentials:
	// none, a forged or ended session, an unknown token (401).
	ErrUnauthenticated = errors.New("not signed in")
	// ErrWrongPassword means a login's password (or login) is wrong (401).
	ErrWrongPassword = errors.New("wrong password")
	// ErrForbidden means the principal may not do this (403).
	ErrForbidden = errors.New("forbidden")
	// ErrCSRF means a state-changing request made with a session cookie
	// (or a form before there is one) lacks its CSRF token (403).
	ErrCSRF = errors.New("missing or wrong CSRF token")
	// ErrNoPasswordLogin means password login is off: no
	// AUTH_LOCAL_PASSWORD and no organiser with a password (401).
	ErrNoPasswordLogin = errors.New("password login is not set up")
)

// RateLimitError refuses a login from an address that failed too often.
type RateLimitError struct {
	// RetryAfter is when the address may try again.
	RetryAfter time.Duration
}

func (e *RateLimitError) Error() string {
	return fmt.Sprintf("too many login attempts: try again in %d seconds", retrySeconds(e.RetryAfter))
}

// RetrySeconds is RetryAfter in whole seconds, rounded up, as the
// Retry-After header wants it.
func (e *RateLimitError) RetrySeconds() int { return retrySeconds(e.RetryAfter) }

func retrySeconds(d time.Duration) int { return int((d + time.Second - 1) / time.Second) }

// Options configures a Service.
type Options struct {
	// Store keeps organisers, sessions, tokens and one-time secrets.
	// Required.
	Store *store.Store
	// State is what outlives this configuration; see NewState. Required.
	State *State
	// Secret signs session cookies and derives CSRF tokens; see
	// LoadSecret. At least MinSecretBytes bytes. Required.
	Secret []byte
	// LocalPassword is AUTH_LOCAL_PASSWORD: when set, it signs an organiser
	// in (as LocalOrganiser) and no setup link is issued.
	LocalPassword string
	// OrganiserTTL and ParticipantTTL are session lifetimes; 0 means
	// DefaultOrganiserTTL and DefaultParticipantTTL.
	OrganiserTTL, ParticipantTTL time.Duration
	// SetupTTL is how long a setup link is valid; 0 means DefaultSetupTTL.
	SetupTTL time.Duration
	// Password is the cost of new password hashes; zero fields take
	// DefaultPasswordParams'.
	Password PasswordParams
	// Now is the clock; nil means time.Now.
	Now func() time.Time

	// Providers are the identity providers one may sign in at (see
	// BeginLogin); none turns that sign-in off. Organisers says which of
	// their identities are organisers; the others are participants when
	// their verified email is one roster user's.
	Providers  []oidc.Config
	Organisers oidc.AllowList
	// ProviderOptions tune the requests to the providers.
	ProviderOptions oidc.Options
	// RedirectBase is the scheme and host (https://thon.example.org) of
	// the redirect URL sent to the providers; empty means each request's
	// own (see CheckRedirectBase).
	RedirectBase string
}

// Service authenticates requests and manages sessions, API tokens and the
// setup link. It is safe for concurrent use.
type Service struct {
	store                        *store.Store
	state                        *State
	secret                       []byte
	localPassword                string
	organiserTTL, participantTTL time.Duration
	setupTTL                     time.Duration
	password                     PasswordParams
	now                          func() time.Time
	idp                          identityProviders
}

// New returns a Service for opts.
func New(opts Options) (*Service, error) {
	switch {
	case opts.Store == nil:
		return nil, errors.New("auth: store is required")
	case opts.State == nil:
		return nil, errors.New("auth: state is required")
	case len(opts.Secret) < MinSecretBytes:
		return nil, fmt.Errorf("auth: session secret must have at least %d bytes", MinSecretBytes)
	case opts.OrganiserTTL < 0 || opts.ParticipantTTL < 0 || opts.SetupTTL < 0:
		return nil, errors.New("auth: lifetimes must not be negative")
	}
	s := &Service{
		store:          opts.Store,
		state:          opts.State,
		secret:         append([]byte(nil), opts.Secret...),
		localPassword:  opts.LocalPassword,
		organiserTTL:   opts.OrganiserTTL,
		participantTTL: opts.ParticipantTTL,
		setupTTL:       opts.SetupTTL,
		password:       opts.Password.withDefaults(),
		now:            opts.Now,
	}
	if s.organiserTTL == 0 {
		s.organiserTTL = DefaultOrganiserTTL
	}
	if s.participantTTL == 0 {
		s.participantTTL = DefaultParticipantTTL
	}
	if s.setupTTL == 0 {
		s.setupTTL = DefaultSetupTTL
	}
	if s.now == nil {
		s.now = time.Now
	}
	if err := s.idp.setup(opts); err != nil {
		return nil, err
	}
	return s, nil
}

// Authenticate returns who r is: an organiser API token in
// "Authorization: Bearer" first, else the session cookie. It returns the
// zero Principal and nil when r carries neither, and an error wrapping
// ErrUnauthenticated when what it carries is not valid (an unknown token, a
// forged, expired or ended session). A live session is checked in memory.
// Authorization headers of other schemes are ignored.
func (s *Service) Authenticate(r *http.Request) (Principal, error) {
	if token, ok := bearerToken(r); ok {
		return s.VerifyToken(r.Context(), token)
	}
	var firstErr error
	for _, c := range r.CookiesNamed(SessionCookieName) {
		sess, err := s.Session(r.Context(), c.Value)
		if err == nil {
			return sess.Principal, nil
		}
		if firstErr == nil {
			firstErr = err
		}
	}
	return Principal{}, firstErr
}

// bearerToken returns the token of an "Authorization: Bearer" header.
func bearerToken(r *http.Request) (string, bool) {
	scheme, token, ok := strings.Cut(strings.TrimSpace(r.Header.Get("Authorization")), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	return strings.TrimSpace(token), true
}
