package auth

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"

	"github.com/thon-dev/thon/store"
)

// Login signs an organiser in with a password, from the client address
// addr (which the limiter counts): AUTH_LOCAL_PASSWORD (as
// LocalOrganiser), or the password of the organiser named login, or, when
// login is empty, of any organiser. It answers a *RateLimitError when addr
// tried too often, an error wrapping ErrWrongPassword when nothing matches
// and ErrNoPasswordLogin when there is no password to match.
func (s *Service) Login(ctx context.Context, addr, login, password string) (Issued, error) {
	if wait, ok := s.state.logins.begin(addr, s.now()); !ok {
		return Issued{}, &RateLimitError{RetryAfter: wait}
	}
	name, err := s.checkPassword(ctx, login, password)
	if err != nil {
		return Issued{}, err
	}
	s.state.logins.succeeded(addr)
	return s.StartSession(ctx, Principal{Kind: KindOrganiser, Name: name, Method: MethodPassword})
}

// PasswordLogin reports whether a password can sign an organiser in:
// AUTH_LOCAL_PASSWORD is set or an organiser has a password.
func (s *Service) PasswordLogin(ctx context.Context) (bool, error) {
	if s.localPassword != "" {
		return true, nil
	}
	return s.store.HasOrganiserPassword(ctx)
}

// checkPassword returns the name of the organiser password signs in.
func (s *Service) checkPassword(ctx context.Context, login, password string) (string, error) {
	if s.localPassword != "" && (login == "" || login == LocalOrganiser) {
		a, b := sha256.Sum256([]byte(password)), sha256.Sum256([]byte(s.localPassword))
		if subtle.ConstantTimeCompare(a[:], b[:]) == 1 {
			return LocalOrganiser, nil
		}
		if login == LocalOrganiser {
			return "", ErrWrongPassword
		}
	}
	var candidates []store.Organiser
	if login != "" {
		o, err := s.store.GetOrganiser(ctx, login)
		switch {
		case errors.Is(err, store.ErrNotFound):
		case err != nil:
			return "", err
		default:
			candidates = append(candidates, o)
		}
	} else {
		all, err := s.store.ListOrganisers(ctx)
		if err != nil {
			return "", err
		}
		candidates = all
	}
	tried := false
	for _, o := range candidates {
		if o.PasswordHash == "" {
			continue
		}
		tried = true
		ok, err := s.verifyPassword(ctx, o.PasswordHash, password)
		if err != nil {
			return "", fmt.Errorf("organiser %q: %w", o.Login, err)
		}
		if ok {
			return o.Login, nil
		}
	}
	if !tried {
		if s.localPassword == "" && login == "" {
			return "", ErrNoPasswordLogin
		}
		// An unknown login costs what a known one does, so that the time
		// of the answer does not tell logins apart.
		if _, err := s.verifyPassword(ctx, dummyHash(s.password), password); err != nil {
			return "", err
		}
	}
	return "", ErrWrongPassword
}

// verifyPassword is VerifyPassword bounded by the State's hashing slots.
func (s *Service) verifyPassword(ctx context.Context, encoded, password string) (bool, error) {
	select {
	case s.state.hashing <- struct{}{}:
	case <-ctx.Done():
		return false, ctx.Err()
	}
	defer func() { <-s.state.hashing }()
	return VerifyPassword(encoded, password)
}

// hashPassword is HashPassword bounded by the State's hashing slots.
func (s *Service) hashPassword(ctx context.Context, password string) (string, error) {
	select {
	case s.state.hashing <- struct{}{}:
	case <-ctx.Done():
		return "", ctx.Err()
	}
	defer func() { <-s.state.hashing }()
	return HashPassword(password, s.password)
}

// dummyHash is a fixed hash with the costs of p, verified in place of a
// missing organiser's.
func dummyHash(p PasswordParams) string {
	return fmt.Sprintf("$argon2id$v=19$m=%d,t=%d,p=%d$dGhvbiBkdW1teSBzYWx0$dGhvbiBkdW1teSBoYXNoIG9mIG5vIHBhc3N3b3JkIQ",
		p.MemoryKiB, p.Time, p.Threads)
}
