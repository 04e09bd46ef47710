package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// ErrRevoked means a join link was withdrawn: a newer link for the same
// user replaced it, or an organiser revoked it. It is an ErrSpent too
// (errors.Is), so that whoever treats a used link treats a withdrawn one
// the same way; test for ErrRevoked first to tell them apart.
var ErrRevoked error = revokedError{}

type revokedError struct{}

func (revokedError) Error() string { return "withdrawn" }

// Is makes ErrRevoked an ErrSpent as well.
func (revokedError) Is(target error) bool { return target == ErrSpent }

// JoinLink is a participant's one-time join link as stored: never its
// token, only the token's SHA-256. A link is live while it is unused,
// not revoked and not expired.
type JoinLink struct {
	UserID    int64      `json:"user_id"`
	Group     string     `json:"group"`
	User      string     `json:"user"`
	CreatedAt time.Time  `json:"created_at"`
	ExpiresAt time.Time  `json:"expires_at"`
	UsedAt    *time.Time `json:"used_at,omitempty"`
	RevokedAt *time.Time `json:"revoked_at,omitempty"`
}

// NewJoinLink is a join link to store: its user and the hex SHA-256 of its
// token.
type NewJoinLink struct {
	UserID    int64
	TokenHash string
}

// CreateJoinLinks stores links, made at t and valid until expires, in one
// transaction: all of them or, on any error, none. Each user may appear
// once. A new link replaces its user's older unused links: they are
// revoked at t (printing a join sheet again voids the sheet printed
// before). An unknown user answers ErrNotFound. It returns the stored
// links in the order given.
func (s *Store) CreateJoinLinks(ctx context.Context, links []NewJoinLink, t, expires time.Time) ([]JoinLink, error) {
	seen := make(map[int64]bool, len(links))
	for i, l := range links {
		if err := checkHash(fmt.Sprintf("links[%d].token_hash", i), l.TokenHash); err != nil {
			return nil, err
		}
		if seen[l.UserID] {
			return nil, &FieldError{Field: fmt.Sprintf("links[%d].user_id", i), Msg: fmt.Sprintf("user %d has a link earlier in the list", l.UserID)}
		}
		seen[l.UserID] = true
	}
	if !expires.After(t) {
		return nil, &FieldError{Field: "expires_at", Msg: "must be after the link is made"}
	}
	out := make([]JoinLink, 0, len(links))
	err := s.write(ctx, func(tx *sql.Tx) error {
		for _, l := range links {
			u, err := userByID(ctx, tx, l.UserID)
			if err != nil {
				return err
			}
			if _, err := tx.ExecContext(ctx, `UPDATE join_links SET revoked_at = ?
				WHERE user_id = ? AND used_at IS NULL AND revoked_at IS NULL`, formatTime(t), u.ID); err != nil {
				return fmt.Errorf("join link for %s/%s: %w", u.Group, u.Name, err)
			}
			_, err = tx.ExecContext(ctx, `INSERT INTO join_links (token_hash, user_id, created_at, expires_at) VALUES (?, ?, ?, ?)`,
				l.TokenHash, u.ID, formatTime(t), formatTime(expires))
			if isUnique(err) {
				return fmt.Errorf("join link for %s/%s: token in use: %w", u.Group, u.Name, ErrConflict)
			}
			if err != nil {
				return fmt.Errorf("join link for %s/%s: %w", u.Group, u.Name, err)
			}
			if err := audit(ctx, tx, "joinlink.create", userTarget(u.Group, u.Name), detail("expires_at", formatTime(expires))); err != nil {
				return err
			}
			out = append(out, JoinLink{UserID: u.ID, Group: u.Group, User: u.Name, CreatedAt: t.UTC(), ExpiresAt: expires.UTC()})
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// CheckJoinLink returns the user of the join link with tokenHash if it can
// be used at t, else an error wrapping ErrNotFound (no such link),
// ErrSpent (used), ErrRevoked (withdrawn) or ErrExpired. It changes
// nothing.
func (s *Store) CheckJoinLink(ctx context.Context, tokenHash string, t time.Time) (User, error) {
	var u User
	err := s.read(ctx, func(tx *sql.Tx) error {
		var err error
		u, err = checkJoinLink(ctx, tx, tokenHash, t)
		return err
	})
	return u, err
}

// SpendJoinLink uses the join link with tokenHash at t and returns its
// user. It is atomic: of two requests spending one link, one gets the
// user and the other ErrSpent. The errors are CheckJoinLink's.
func (s *Store) SpendJoinLink(ctx context.Context, tokenHash string, t time.Time) (User, error) {
	var u User
	err := s.write(ctx, func(tx *sql.Tx) error {
		var err error
		if u, err = checkJoinLink(ctx, tx, tokenHash, t); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `UPDATE join_links SET used_at = ? WHERE token_hash = ?`, formatTime(t), tokenHash); err != nil {
			return fmt.Errorf("use join link: %w", err)
		}
		return audit(ctx, tx, "joinlink.use", userTarget(u.Group, u.Name), "")
	})
	if err != nil {
		return User{}, err
	}
	return u, nil
}

func checkJoinLink(ctx context.Context, q queryer, tokenHash string, t time.Time) (User, error) {
	var (
		userID        int64
		expires       string
		used, revoked sql.NullString
	)
	err := q.QueryRowContext(ctx, `SELECT user_id, expires_at, used_at, revoked_at FROM join_links WHERE token_hash = ?`, tokenHash).
		Scan(&userID, &expires, &used, &revoked)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return User{}, fmt.Errorf("join link: %w", ErrNotFound)
	case err != nil:
		return User{}, fmt.Errorf("join link: %w", err)
	case used.Valid:
		return User{}, fmt.Errorf("join link: %w", ErrSpent)
	case revoked.Valid:
		return User{}, fmt.Errorf("join link: %w", ErrRevoked)
	case expires <= formatTime(t):
		return User{}, fmt.Errorf("join link: %w", ErrExpired)
	}
	return userByID(ctx, q, userID)
}

// RevokeJoinLinks withdraws the unused, unrevoked links of the user at t
// and returns how many it withdrew; their holders can no longer use them.
// Sessions made with links used before stay (end them apart). An unknown
// user answers ErrNotFound.
func (s *Store) RevokeJoinLinks(ctx context.Context, userID int64, t time.Time) (int, error) {
	var n int64
	err := s.write(ctx, func(tx *sql.Tx) error {
		u, err := userByID(ctx, tx, userID)
		if err != nil {
			return err
		}
		res, err := tx.ExecContext(ctx, `UPDATE join_links SET revoked_at = ?
			WHERE user_id = ? AND used_at IS NULL AND revoked_at IS NULL`, formatTime(t), userID)
		if err != nil {
			return fmt.Errorf("revoke join links of %s/%s: %w", u.Group, u.Name, err)
		}
		if n, _ = res.RowsAffected(); n == 0 {
			return nil
		}
		return audit(ctx, tx, "joinlink.revoke", userTarget(u.Group, u.Name), detail("count", fmt.Sprint(n)))
	})
	return int(n), err
}

// LiveJoinLinks returns the links of the user that can still be used at
// t (unused, not revoked, not expired), newest first: only when they were
// made and when they end, never a token. An unknown user answers
// ErrNotFound.
func (s *Store) LiveJoinLinks(ctx context.Context, userID int64, t time.Time) ([]JoinLink, error) {
	out := []JoinLink{}
	err := s.read(ctx, func(tx *sql.Tx) error {
		u, err := userByID(ctx, tx, userID)
		if err != nil {
			return err
		}
		rows, err := tx.QueryContext(ctx, `SELECT created_at, expires_at FROM join_links
			WHERE user_id = ? AND used_at IS NULL AND revoked_at IS NULL AND expires_at > ?
			ORDER BY created_at DESC, rowid DESC`, userID, formatTime(t))
		if err != nil {
			return fmt.Errorf("list join links of %s/%s: %w", u.Group, u.Name, err)
		}
		for rows.Next() {
			l := JoinLink{UserID: u.ID, Group: u.Group, User: u.Name}
			var created, expires string
			if err := rows.Scan(&created, &expires); err != nil {
				rows.Close()
				return fmt.Errorf("list join links of %s/%s: %w", u.Group, u.Name, err)
			}
			if l.CreatedAt, err = parseTime(created); err != nil {
				rows.Close()
				return err
			}
			if l.ExpiresAt, err = parseTime(expires); err != nil {
				rows.Close()
				return err
			}
			out = append(out, l)
		}
		return closeRows(rows)
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}
