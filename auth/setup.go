package auth

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"time"
	"unicode/utf8"

	"github.com/thon-dev/thon/store"
)

// MinPasswordLen is the shortest password the setup link accepts, in
// characters.
const MinPasswordLen = 12

// DefaultSetupLogin is the login of the first organiser when the setup
// form leaves it empty.
const DefaultSetupLogin = "admin"

// SetupPath is where the setup link points; its query carries the token.
const SetupPath = "/setup"

// SetupLink issues the one-time setup link's token when the first
// organiser still has to be set up: no AUTH_LOCAL_PASSWORD, no organiser
// with a password, and no link this process issued that is still valid.
// issued is false (and token empty) when no link is needed or the one
// already issued still holds. A new link replaces links issued before it
// (by an earlier run). The link is SetupPath + "?token=" + token.
func (s *Service) SetupLink(ctx context.Context) (token string, expires time.Time, issued bool, err error) {
	if s.localPassword != "" {
		return "", time.Time{}, false, nil
	}
	has, err := s.store.HasOrganiserPassword(ctx)
	if err != nil || has {
		return "", time.Time{}, false, err
	}
	s.state.mu.Lock()
	defer s.state.mu.Unlock()
	now := s.now()
	if now.Before(s.state.setupExpires) {
		return "", time.Time{}, false, nil
	}
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", time.Time{}, false, fmt.Errorf("reading random bytes for the setup link: %w", err)
	}
	token = base64.RawURLEncoding.EncodeToString(b[:])
	expires = now.Add(s.setupTTL)
	if err := s.store.ReplaceSetupToken(ctx, hashSecret([]byte(token)), expires); err != nil {
		return "", time.Time{}, false, err
	}
	s.state.setupExpires = expires
	return token, expires, true, nil
}

// CheckSetupToken reports whether token is a setup link's that can still
// be used: nil, or an error wrapping store.ErrNotFound, store.ErrSpent or
// store.ErrExpired.
func (s *Service) CheckSetupToken(ctx context.Context, token string) error {
	return s.store.CheckSetupToken(ctx, hashSecret([]byte(token)), s.now())
}

// CompleteSetup spends the setup link's token, makes the first organiser
// with login (DefaultSetupLogin when empty) and password (at least
// MinPasswordLen characters), and signs them in. A spent, expired or
// unknown token answers an error wrapping store.ErrSpent, store.ErrExpired
// or store.ErrNotFound; a bad password a *store.FieldError on "password".
func (s *Service) CompleteSetup(ctx context.Context, token, login, password string) (Issued, error) {
	if login == "" {
		login = DefaultSetupLogin
	}
	if err := store.ValidateLogin(login); err != nil {
		return Issued{}, err
	}
	if n := utf8.RuneCountInString(password); n < MinPasswordLen {
		return Issued{}, &store.FieldError{Field: "password", Msg: fmt.Sprintf("must have at least %d characters, got %d", MinPasswordLen, n)}
	}
	if len(password) > maxPassword {
		return Issued{}, &store.FieldError{Field: "password", Msg: fmt.Sprintf("must have at most %d bytes", maxPassword)}
	}
	// Refuse a bad token before spending a hash on it.
	if err := s.CheckSetupToken(ctx, token); err != nil {
		return Issued{}, err
	}
	hash, err := s.hashPassword(ctx, password)
	if err != nil {
		return Issued{}, err
	}
	o, err := s.store.CompleteSetup(ctx, hashSecret([]byte(token)), s.now(), login, hash)
	if err != nil {
		return Issued{}, err
	}
	return s.StartSession(ctx, Principal{Kind: KindOrganiser, Name: o.Login, Method: MethodPassword})
}
