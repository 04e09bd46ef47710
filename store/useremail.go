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
	users, err := s.ListUsers(ctx)
	if err != nil {
		return nil, fmt.Errorf("find users by email: %w", err)
	}
	for _, u := range users {
		if u.Email != "" && strings.EqualFold(strings.TrimSpace(u.Email), email) {
			found = append(found, u)
		}
	}
	return found, nil
}
