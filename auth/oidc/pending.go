package oidc

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strings"
	"time"
)

// Pending is a login between Begin and Finish. It holds the secrets of
// the login (the PKCE verifier above all): keep it server-side or sealed
// (Sealer), never readable by the browser.
type Pending struct {
	Provider    string `json:"p"`           // Config.Name
	State       string `json:"s"`           // sent as state
	Nonce       string `json:"n,omitempty"` // sent as nonce (OpenID Connect)
	Verifier    string `json:"v,omitempty"` // PKCE code verifier
	RedirectURL string `json:"r"`           // the redirect_uri sent
	// Next is the caller's: where to send the user after the login (a
	// local path). This package keeps it sealed and never reads it.
	Next string `json:"x,omitempty"`
}

// PendingTTL is how long a sealed pending login can be opened.
const PendingTTL = 10 * time.Minute

// MaxSealedLen is the longest sealed value Open reads: a cookie's value
// (browsers keep 4096 bytes per cookie, name included).
const MaxSealedLen = 4000

const (
	sealedPrefix = "v1."
	sealAAD      = "thon auth/oidc pending v1"
	sealInfo     = "thon auth/oidc pending login key v1"
)

// MinSecretLen is the shortest secret NewSealer takes.
const MinSecretLen = 32

// Sealer seals pending logins with AES-256-GCM under a key derived
// (HKDF-SHA256) from a secret, so that one secret (AUTH_SESSION_SECRET)
// can key sessions and pending logins without the keys being the same.
// A sealed value is encrypted and authenticated: the browser that holds
// it can neither read the verifier nor alter anything.
type Sealer struct {
	aead cipher.AEAD
}

// NewSealer makes a sealer from secret (at least MinSecretLen bytes).
func NewSealer(secret []byte) (*Sealer, error) {
	if len(secret) < MinSecretLen {
		return nil, fmt.Errorf("pending login secret: %d bytes, at least %d needed", len(secret), MinSecretLen)
	}
	key, err := hkdf.Key(sha256.New, secret, nil, sealInfo, 32)
	if err != nil {
		return nil, fmt.Errorf("pending login key: %w", err)
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("pending login key: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("pending login key: %w", err)
	}
	return &Sealer{aead: aead}, nil
}

// sealed is what a sealed value holds.
type sealed struct {
	Pending
	Expires int64 `json:"e"` // unix seconds
}

// Seal returns p sealed, valid until now+PendingTTL: a string of
// cookie-safe characters ("v1." and base64url).
func (s *Sealer) Seal(p Pending, now time.Time) (string, error) {
	plain, err := json.Marshal(sealed{Pending: p, Expires: now.Add(PendingTTL).Unix()})
	if err != nil {
		return "", fmt.Errorf("seal pending login: %w", err)
	}
	nonce := make([]byte, s.aead.NonceSize(), s.aead.NonceSize()+len(plain)+s.aead.Overhead())
	rand.Read(nonce) // never fails (crypto/rand)
	out := s.aead.Seal(nonce, nonce, plain, []byte(sealAAD))
	v := sealedPrefix + base64.RawURLEncoding.EncodeToString(out)
	if len(v) > MaxSealedLen {
		return "", fmt.Errorf("seal pending login: %d bytes sealed, at most %d fit a cookie", len(v), MaxSealedLen)
	}
	return v, nil
}

// Open returns the pending login sealed in v (a cookie's value, outside
// input) by a sealer with the same secret. It refuses anything else with
// ErrPendingInvalid, and a login sealed PendingTTL or more before now with
// ErrPendingExpired.
func (s *Sealer) Open(v string, now time.Time) (Pending, error) {
	invalid := func(why string) (Pending, error) {
		return Pending{}, fmt.Errorf("%w: %s", ErrPendingInvalid, why)
	}
	if len(v) > MaxSealedLen {
		return invalid("too long")
	}
	b64, ok := strings.CutPrefix(v, sealedPrefix)
	if !ok {
		return invalid("not a sealed login")
	}
	// The decoder skips CR and LF; refuse them (and all else outside the
	// alphabet) so that one sealed login has one spelling.
	for i := 0; i < len(b64); i++ {
		c := b64[i]
		if !('A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
			return invalid("not base64url")
		}
	}
	raw, err := base64.RawURLEncoding.Strict().DecodeString(b64)
	if err != nil {
		return invalid("not base64url")
	}
	ns := s.aead.NonceSize()
	if len(raw) < ns+s.aead.Overhead() {
		return invalid("too short")
	}
	plain, err := s.aead.Open(nil, raw[:ns], raw[ns:], []byte(sealAAD))
	if err != nil {
		return invalid("not sealed by this key, or altered")
	}
	var sl sealed
	dec := json.NewDecoder(bytes.NewReader(plain))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&sl); err != nil || dec.More() {
		return invalid("unreadable")
	}
	if sl.Provider == "" || sl.State == "" || sl.RedirectURL == "" || sl.Expires == 0 {
		return invalid("incomplete")
	}
	if !now.Before(time.Unix(sl.Expires, 0)) {
		return Pending{}, fmt.Errorf("%w: it was begun more than %s ago", ErrPendingExpired, PendingTTL)
	}
	return sl.Pending, nil
}
