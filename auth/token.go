package auth

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"

	"github.com/thon-dev/thon/store"
)

// TokenPrefix starts every organiser API token. Gateway keys start with
// "thon_" alone; neither is accepted where the other belongs: /api looks
// tokens up among API tokens, /v1 among gateway consumers.
const TokenPrefix = "thon_org_"

// tokenShownChars is how much of a token its Prefix shows: TokenPrefix
// and six random characters.
const tokenShownChars = len(TokenPrefix) + 6

// CreateToken makes an organiser API token named name (a DNS label, unique)
// and returns it with its stored record. The token is TokenPrefix followed
// by 32 random bytes in unpadded base64url; it is shown once: only its
// SHA-256 is kept.
func (s *Service) CreateToken(ctx context.Context, name string) (string, store.APIToken, error) {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", store.APIToken{}, fmt.Errorf("reading random bytes for a token: %w", err)
	}
	token := TokenPrefix + base64.RawURLEncoding.EncodeToString(b[:])
	t, err := s.store.CreateAPIToken(ctx, store.APIToken{Name: name, Prefix: token[:tokenShownChars], Hash: hashSecret([]byte(token))})
	if err != nil {
		return "", store.APIToken{}, err
	}
	return token, t, nil
}

// ListTokens returns the API tokens by name (never the tokens themselves).
func (s *Service) ListTokens(ctx context.Context) ([]store.APIToken, error) {
	return s.store.ListAPITokens(ctx)
}

// RevokeToken deletes the API token named name; it is refused from then
// on. An unknown name answers an error wrapping store.ErrNotFound.
func (s *Service) RevokeToken(ctx context.Context, name string) (store.APIToken, error) {
	return s.store.DeleteAPIToken(ctx, name)
}

// VerifyToken returns the organiser an API token stands for (Name is the
// token's name, Method MethodToken), or an error wrapping
// ErrUnauthenticated.
func (s *Service) VerifyToken(ctx context.Context, token string) (Principal, error) {
	if !strings.HasPrefix(token, TokenPrefix) {
		return Principal{}, fmt.Errorf("not an organiser API token (they start with %s; gateway keys work on /v1 only): %w",
			TokenPrefix, ErrUnauthenticated)
	}
	t, err := s.store.APITokenByHash(ctx, hashSecret([]byte(token)))
	if errors.Is(err, store.ErrNotFound) {
		return Principal{}, fmt.Errorf("unknown or revoked API token: %w", ErrUnauthenticated)
	}
	if err != nil {
		return Principal{}, err
	}
	return Principal{Kind: KindOrganiser, Name: t.Name, Method: MethodToken}, nil
}
