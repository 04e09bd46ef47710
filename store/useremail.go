package store

import (
	"context"
	"fmt"
	"strings"
)

// UsersByEmail returns the roster users whose email is email, compared
// without regard to case (Unicode case folding, as strings.EqualFold),
// ordered by group name, then user name: how a participant signed in at
// an identity provider is found. A roster may give one address to
// several users; the caller decides what that means. An empty email
// matches nobody.
func (s *Store) UsersByEmail(ctx context.Context, email string) ([]User, error) {
	email = strings.TrimSpace(email)
	found := []User{}
	if email == "" {
		return found, nil
	}
	// SQLite's lower() folds ASCII only: compare in Go.
	rows, err := s.db.QueryContext(ctx, `SELECT `+userColumns+
		` FROM users u JOIN groups g ON g.id = u.group_id WHERE u.email <> '' ORDER BY g.name, u.name`)
	if err != nil {
		return nil, fmt.Errorf("find users by email: %w", err)
	}
	for rows.Next() {
		u, err := scanUser(rows)
		if err != nil {
			rows.Close()
			return nil, fmt.Errorf("find users by email: %w", err)
		}
		if strings.EqualFold(strings.TrimSpace(u.Email), email) {
			found = append(found, u)
		}
	}
	if err := closeRows(rows); err != nil {
		return nil, fmt.Errorf("find users by email: %w", err)
	}
	return found, nil
}
