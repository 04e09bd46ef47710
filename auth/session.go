package auth

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/thon-dev/thon/store"
)

// Cookie and header names.
const (
	// CookiePrefix begins the name of every cookie thon sets: the sandbox
	// proxy removes such cookies before a request reaches code-server.
	CookiePrefix = "thon_"
	// SessionCookieName is the session cookie. It is thon's own: strip it
	// before a request reaches a sandbox.
	SessionCookieName = "thon_session"
	// FormCookieName holds the CSRF token of a form shown before there is
	// a session (the login page).
	FormCookieName = "thon_csrf"
	// CSRFHeader carries the CSRF token of a state-changing request.
	CSRFHeader = "X-CSRF-Token"
	// CSRFField carries it in an HTML form instead.
	CSRFField = "csrf_token"
)

const sessionIDBytes = 32

// Domain-separation labels of the HMACs under the secret.
const (
	macSession = "thon session v1\x00"
	macCSRF    = "thon csrf v1\x00"
)

// Session is a live session.
type Session struct {
	// Principal is who holds it; Principal.Session is its handle.
	Principal Principal
	// CSRFToken must come with every state-changing request made with the
	// session's cookie.
	CSRFToken string
	// ExpiresAt is when it ends by itself.
	ExpiresAt time.Time
}

// Issued is a session just made: Cookie is the value of its cookie, to be
// set with SessionCookie. It is shown once: only its hash is kept.
type Issued struct {
	Session
	Cookie string
}

// StartSession makes a session for p (its Kind, Name, UserID, Group and
// Method; Session is set) lasting the kind's lifetime. Join links and
// identity providers call it once they know who p is; p's user must exist
// for a participant.
func (s *Service) StartSession(ctx context.Context, p Principal) (Issued, error) {
	ttl := s.organiserTTL
	switch p.Kind {
	case KindOrganiser:
	case KindParticipant:
		ttl = s.participantTTL
	default:
		return Issued{}, fmt.Errorf("start session: unknown kind %q", p.Kind)
	}
	id := make([]byte, sessionIDBytes)
	if _, err := rand.Read(id); err != nil {
		return Issued{}, fmt.Errorf("start session: reading random bytes: %w", err)
	}
	now := s.now()
	p.Session = hashSecret(id)
	rec := store.SessionRecord{
		IDHash: p.Session, Kind: string(p.Kind), Name: p.Name, UserID: p.UserID, Method: string(p.Method),
		CreatedAt: now, ExpiresAt: now.Add(ttl),
	}
	if p.IsParticipant() {
		rec.Name = ""
	}
	if err := s.store.CreateSession(ctx, rec); err != nil {
		return Issued{}, fmt.Errorf("start session: %w", err)
	}
	s.state.sessions.put(p.Session, cachedSession{p: p, expires: rec.ExpiresAt}, now)
	s.store.DeleteExpiredSessions(ctx, now) // housekeeping; a failure changes nothing
	return Issued{
		Session: Session{Principal: p, CSRFToken: s.CSRFToken(p), ExpiresAt: rec.ExpiresAt},
		Cookie:  s.sign(id),
	}, nil
}

// Session checks a session cookie's value: its signature first (a forged
// cookie is refused without a database read), then the cache of sessions,
// then, for a session this process has not seen yet, the database. It
// returns an error wrapping ErrUnauthenticated for a cookie that is
// forged, expired or revoked. A live session known to the cache is
// checked in memory only.
func (s *Service) Session(ctx context.Context, cookie string) (Session, error) {
	id, ok := s.verify(cookie)
	if !ok {
		return Session{}, fmt.Errorf("session cookie is not valid: %w", ErrUnauthenticated)
	}
	handle := hashSecret(id)
	now := s.now()
	e, ok := s.state.sessions.get(handle)
	if !ok {
		rec, err := s.store.GetSession(ctx, handle)
		switch {
		case errors.Is(err, store.ErrNotFound):
			s.state.sessions.kill(handle, now.Add(max(s.organiserTTL, s.participantTTL)), now)
			return Session{}, fmt.Errorf("session has ended: %w", ErrUnauthenticated)
		case err != nil:
			return Session{}, err
		}
		e = cachedSession{expires: rec.ExpiresAt, dead: rec.RevokedAt != nil, p: Principal{
			Kind: Kind(rec.Kind), Name: rec.Name, UserID: rec.UserID, Group: rec.Group,
			Method: Method(rec.Method), Session: handle,
		}}
		if e.p.IsParticipant() {
			e.p.Name = rec.User
		}
		if e.dead {
			s.state.sessions.kill(handle, e.expires, now)
		} else {
			s.state.sessions.put(handle, e, now)
		}
	}
	switch {
	case e.dead:
		return Session{}, fmt.Errorf("session has ended: %w", ErrUnauthenticated)
	case !now.Before(e.expires):
		return Session{}, fmt.Errorf("session has expired: %w", ErrUnauthenticated)
	}
	return Session{Principal: e.p, CSRFToken: s.CSRFToken(e.p), ExpiresAt: e.expires}, nil
}

// EndSession revokes the session with handle (Principal.Session), in the
// database and in the cache; its cookie is refused from then on. An
// unknown handle answers an error wrapping store.ErrNotFound.
func (s *Service) EndSession(ctx context.Context, handle string) error {
	now := s.now()
	if err := s.store.RevokeSession(ctx, handle, now); err != nil {
		return err
	}
	s.state.sessions.kill(handle, now.Add(max(s.organiserTTL, s.participantTTL)), now)
	return nil
}

// EndUserSessions revokes every session of a participant, as when the user
// is removed or their join link withdrawn.
func (s *Service) EndUserSessions(ctx context.Context, userID int64) error {
	now := s.now()
	hs, err := s.store.RevokeUserSessions(ctx, userID, now)
	if err != nil {
		return err
	}
	until := now.Add(max(s.organiserTTL, s.participantTTL))
	// The cache may know sessions the database lost with the user.
	for _, h := range append(hs, s.state.sessions.handlesOf(userID)...) {
		s.state.sessions.kill(h, until, now)
	}
	return nil
}

// CSRFToken returns the CSRF token of p's session ("" without one): an
// HMAC of the session's handle under the secret, so it is never stored.
func (s *Service) CSRFToken(p Principal) string {
	if p.Session == "" {
		return ""
	}
	m := hmac.New(sha256.New, s.secret)
	m.Write([]byte(macCSRF))
	m.Write([]byte(p.Session))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// CheckCSRF reports whether token is the CSRF token of p's session, in
// constant time.
func (s *Service) CheckCSRF(p Principal, token string) bool {
	want := s.CSRFToken(p)
	return want != "" && hmac.Equal([]byte(token), []byte(want))
}

// SessionCookie returns the cookie that carries iss for a response to r:
// HttpOnly, SameSite=Lax (Strict would drop it on the redirect back from
// an identity provider), Secure when r came over HTTPS, Path=/, expiring
// with the session.
func (s *Service) SessionCookie(r *http.Request, iss Issued) *http.Cookie {
	return &http.Cookie{
		Name: SessionCookieName, Value: iss.Cookie, Path: "/",
		Expires: iss.ExpiresAt, MaxAge: max(1, int(iss.ExpiresAt.Sub(s.now())/time.Second)),
		HttpOnly: true, Secure: r.TLS != nil, SameSite: http.SameSiteLaxMode,
	}
}

// ClearSessionCookie returns the cookie that removes the session cookie.
func ClearSessionCookie(r *http.Request) *http.Cookie {
	return &http.Cookie{
		Name: SessionCookieName, Value: "", Path: "/", MaxAge: -1,
		HttpOnly: true, Secure: r.TLS != nil, SameSite: http.SameSiteLaxMode,
	}
}

// sign returns the cookie value of a session id: id.mac, both unpadded
// base64url.
func (s *Service) sign(id []byte) string {
	return base64.RawURLEncoding.EncodeToString(id) + "." + base64.RawURLEncoding.EncodeToString(s.mac(id))
}

// verify returns the id of a cookie value whose signature holds.
func (s *Service) verify(cookie string) ([]byte, bool) {
	a, b, ok := strings.Cut(cookie, ".")
	if !ok {
		return nil, false
	}
	id, err := base64.RawURLEncoding.DecodeString(a)
	if err != nil || len(id) != sessionIDBytes {
		return nil, false
	}
	mac, err := base64.RawURLEncoding.DecodeString(b)
	if err != nil || !hmac.Equal(mac, s.mac(id)) {
		return nil, false
	}
	return id, true
}

func (s *Service) mac(id []byte) []byte {
	m := hmac.New(sha256.New, s.secret)
	m.Write([]byte(macSession))
	m.Write(id)
	return m.Sum(nil)
}

// handleOf is the stored form of a secret: its hex SHA-256.
func hashSecret(secret []byte) string {
	sum := sha256.Sum256(secret)
	return hex.EncodeToString(sum[:])
}
