package auth

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"strings"
	"time"

	"github.com/thon-dev/thon/store"
)

// Join link lifetimes.
const (
	// DefaultJoinLinkTTL is how long a join link is valid when the
	// organiser does not say.
	DefaultJoinLinkTTL = 72 * time.Hour
	// MinJoinLinkTTL and MaxJoinLinkTTL bound the lifetime an organiser
	// may give.
	MinJoinLinkTTL = time.Minute
	MaxJoinLinkTTL = 30 * 24 * time.Hour
)

// JoinPath is where join links point: JoinPath + token.
const JoinPath = "/join/"

// joinTokenBytes is the randomness of a join link's token; its text is
// joinTokenLen characters of unpadded base64url.
const (
	joinTokenBytes = 32
	joinTokenLen   = 43
)

// JoinLink is a join link just made. Token is shown once: only its hash
// is kept.
type JoinLink struct {
	store.JoinLink
	Token string
}

// CheckJoinLinkTTL reports what is wrong with a join link's lifetime, as a
// *store.FieldError on "ttl": it must be between MinJoinLinkTTL and
// MaxJoinLinkTTL (0 stands for DefaultJoinLinkTTL).
func CheckJoinLinkTTL(ttl time.Duration) error {
	if ttl != 0 && (ttl < MinJoinLinkTTL || ttl > MaxJoinLinkTTL) {
		return &store.FieldError{Field: "ttl", Msg: fmt.Sprintf("%s is out of range: a join link lasts from %s to %s (30 days)",
			shortDuration(ttl), shortDuration(MinJoinLinkTTL), shortDuration(MaxJoinLinkTTL))}
	}
	return nil
}

// CreateJoinLinks makes one join link for each of the users, valid for
// ttl (0: DefaultJoinLinkTTL; see CheckJoinLinkTTL), all in one
// transaction. A user's new link replaces the user's older unused links,
// which stop working. Each token is 32 random bytes in unpadded
// base64url; the link is JoinPath + token. The links come back in the
// order of userIDs.
func (s *Service) CreateJoinLinks(ctx context.Context, userIDs []int64, ttl time.Duration) ([]JoinLink, error) {
	if err := CheckJoinLinkTTL(ttl); err != nil {
		return nil, err
	}
	if ttl == 0 {
		ttl = DefaultJoinLinkTTL
	}
	tokens := make([]string, len(userIDs))
	links := make([]store.NewJoinLink, len(userIDs))
	for i, id := range userIDs {
		var b [joinTokenBytes]byte
		if _, err := rand.Read(b[:]); err != nil {
			return nil, fmt.Errorf("reading random bytes for a join link: %w", err)
		}
		tokens[i] = base64.RawURLEncoding.EncodeToString(b[:])
		links[i] = store.NewJoinLink{UserID: id, TokenHash: hashSecret([]byte(tokens[i]))}
	}
	now := s.now()
	made, err := s.store.CreateJoinLinks(ctx, links, now, now.Add(ttl))
	if err != nil {
		return nil, err
	}
	out := make([]JoinLink, len(made))
	for i, l := range made {
		out[i] = JoinLink{JoinLink: l, Token: tokens[i]}
	}
	return out, nil
}

// CheckJoinLink returns the user a join link's token signs in, without
// spending it, or an error wrapping store.ErrNotFound (unknown, or not a
// token at all), store.ErrSpent (used), store.ErrRevoked (withdrawn; also
// an ErrSpent) or store.ErrExpired.
func (s *Service) CheckJoinLink(ctx context.Context, token string) (store.User, error) {
	if !joinTokenShape(token) {
		return store.User{}, fmt.Errorf("join link: %w", store.ErrNotFound)
	}
	return s.store.CheckJoinLink(ctx, hashSecret([]byte(token)), s.now())
}

// RedeemJoinLink spends a join link's token and signs its user in: a
// participant session (MethodJoinLink) for the user, in the user's group
// and under the user's name. It fails as CheckJoinLink does; the link is
// spent even if starting the session then fails.
func (s *Service) RedeemJoinLink(ctx context.Context, token string) (Issued, error) {
	if !joinTokenShape(token) {
		return Issued{}, fmt.Errorf("join link: %w", store.ErrNotFound)
	}
	u, err := s.store.SpendJoinLink(ctx, hashSecret([]byte(token)), s.now())
	if err != nil {
		return Issued{}, err
	}
	return s.StartSession(ctx, Principal{
		Kind: KindParticipant, Name: u.Name, UserID: u.ID, Group: u.Group, Method: MethodJoinLink,
	})
}

// RevokeJoinLinks withdraws the user's unused join links and returns how
// many; sessions made with links used before stay (see EndUserSessions).
// An unknown user answers an error wrapping store.ErrNotFound.
func (s *Service) RevokeJoinLinks(ctx context.Context, userID int64) (int, error) {
	return s.store.RevokeJoinLinks(ctx, userID, s.now())
}

// LiveJoinLinks returns the user's join links that can still be used,
// newest first: when each was made and ends, never a token.
func (s *Service) LiveJoinLinks(ctx context.Context, userID int64) ([]store.JoinLink, error) {
	return s.store.LiveJoinLinks(ctx, userID, s.now())
}

// shortDuration is d without zero minutes and seconds: 72h, not 72h0m0s.
func shortDuration(d time.Duration) string {
	return strings.TrimSuffix(strings.TrimSuffix(d.String(), "0s"), "0m")
}

// joinTokenShape reports whether token looks like a join link's token, so
// that anything else is refused without a database read.
func joinTokenShape(token string) bool {
	if len(token) != joinTokenLen {
		return false
	}
	for i := range len(token) {
		switch c := token[i]; {
		case c >= 'A' && c <= 'Z', c >= 'a' && c <= 'z', c >= '0' && c <= '9', c == '-', c == '_':
		default:
			return false
		}
	}
	return true
}
