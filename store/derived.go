package store

import (
	"context"
	"database/sql"
	"fmt"
)

// DerivedName is the key that names a user's resources outside the
// database: its sandbox container (thon-<key>), its workspace volume
// (thon-workspace-<key>) and its per-user gateway consumer (<key>). It is
// group + "-" + user, so different users can derive the same key: group
// "a-b" with user "c" and group "a" with user "b-c" both give "a-b-c". The
// store refuses every write that would give two users the same key.
func DerivedName(group, user string) string { return group + "-" + user }

// NameClashError reports two users that would share a DerivedName, and so
// a container, a workspace volume and a gateway key. It matches
// ErrConflict.
type NameClashError struct {
	// Field is the input field at fault, such as "name", "to_group" or
	// "groups[1].users[0].name"; "" for a clash found in the database.
	Field string
	// User is the user the write would create, rename or move ("a/b-c"),
	// or, for a clash found in the database, the newer of the two.
	User   string
	UserID int64
	// Other is the user that already has the name ("a-b/c").
	Other   string
	OtherID int64
	// Name is the DerivedName both would have ("a-b-c").
	Name string
	// Sandbox is set when Other is the user a live sandbox was made for,
	// under the names Other had then: the sandbox still holds the
	// container and volume, whatever happened to Other since.
	Sandbox bool

	found bool // found in the database rather than refused on a write
}

// Error names both users and the name they would share.
func (e *NameClashError) Error() string {
	if e.found {
		return fmt.Sprintf("users %q (id %d) and %q (id %d) share the container and volume names made from %q",
			e.Other, e.OtherID, e.User, e.UserID, e.Name)
	}
	if e.Sandbox {
		return fmt.Sprintf("user %q would share the container and volume names of the live sandbox made for %q (both made from %q): kill that sandbox first",
			e.User, e.Other, e.Name)
	}
	return fmt.Sprintf("user %q would share the container and volume names of user %q (both made from %q)",
		e.User, e.Other, e.Name)
}

// Is makes a NameClashError match ErrConflict.
func (e *NameClashError) Is(target error) bool { return target == ErrConflict }

// nameHolder is a user as the derived-name check sees it.
type nameHolder struct {
	id          int64
	group, user string
}

func (h nameHolder) String() string { return h.group + "/" + h.user }

// findNameClashes returns the pairs of users, as q sees them, that share a
// DerivedName: all of them when changed is nil, otherwise only those that
// involve a user of changed (user id → input field). In a pair, User is
// the changed user when only one of the two is, the newer one (higher id)
// otherwise. Pairs come in the order of the users' ids.
func findNameClashes(ctx context.Context, q queryer, changed map[int64]string) ([]*NameClashError, error) {
	rows, err := q.QueryContext(ctx, `SELECT u.id, g.name, u.name FROM users u JOIN groups g ON g.id = u.group_id ORDER BY u.id`)
	if err != nil {
		return nil, fmt.Errorf("check derived names: %w", err)
	}
	byName := map[string][]nameHolder{}
	var clashes []*NameClashError
	for rows.Next() {
		var h nameHolder
		if err := rows.Scan(&h.id, &h.group, &h.user); err != nil {
			rows.Close()
			return nil, fmt.Errorf("check derived names: %w", err)
		}
		key := DerivedName(h.group, h.user)
		for _, older := range byName[key] {
			_, newChanged := changed[h.id]
			_, oldChanged := changed[older.id]
			if changed != nil && !newChanged && !oldChanged {
				continue // a clash this write did not make
			}
			user, other := h, older
			if oldChanged && !newChanged {
				user, other = older, h
			}
			clashes = append(clashes, &NameClashError{
				Field: changed[user.id],
				User:  user.String(), UserID: user.id,
				Other: other.String(), OtherID: other.id,
				Name: key,
			})
		}
		byName[key] = append(byName[key], h)
	}
	if err := closeRows(rows); err != nil {
		return nil, fmt.Errorf("check derived names: %w", err)
	}
	if changed == nil {
		return clashes, nil
	}
	// A live sandbox keeps the names it was made with, even after its
	// user was renamed, moved or deleted: a changed user must not take them.
	rows, err = q.QueryContext(ctx, `SELECT group_name, user_name, COALESCE(user_id, 0) FROM instances WHERE state != ? ORDER BY id`, StateTerminated)
	if err != nil {
		return nil, fmt.Errorf("check derived names: %w", err)
	}
	for rows.Next() {
		var live nameHolder
		if err := rows.Scan(&live.group, &live.user, &live.id); err != nil {
			rows.Close()
			return nil, fmt.Errorf("check derived names: %w", err)
		}
		key := DerivedName(live.group, live.user)
		for _, h := range byName[key] {
			if field, ok := changed[h.id]; ok && h.id != live.id {
				clashes = append(clashes, &NameClashError{
					Field: field, User: h.String(), UserID: h.id,
					Other: live.String(), OtherID: live.id, Name: key, Sandbox: true,
				})
			}
		}
	}
	if err := closeRows(rows); err != nil {
		return nil, fmt.Errorf("check derived names: %w", err)
	}
	return clashes, nil
}

// checkNewNames fails with a *NameClashError when a user of changed (user
// id → input field), as tx sees it after a write, shares its DerivedName
// with another user. Every write that creates, renames or moves users
// calls it before it commits, so the clash is refused and rolled back.
func checkNewNames(ctx context.Context, tx *sql.Tx, changed map[int64]string) error {
	if len(changed) == 0 {
		return nil
	}
	clashes, err := findNameClashes(ctx, tx, changed)
	if err != nil {
		return err
	}
	if len(clashes) > 0 {
		return clashes[0]
	}
	return nil
}

// CheckDerivedNames fails when two users of the database share a
// DerivedName, as a database written before thon refused such names may
// have them: their sandboxes would use one container and one workspace.
// The error wraps the first such pair (a *NameClashError, matching
// ErrConflict) and says how to resolve it; thon refuses to start on such a
// database.
func (s *Store) CheckDerivedNames(ctx context.Context) error {
	var clashes []*NameClashError
	err := s.read(ctx, func(tx *sql.Tx) error {
		var err error
		clashes, err = findNameClashes(ctx, tx, nil)
		return err
	})
	if err != nil {
		return err
	}
	if len(clashes) == 0 {
		return nil
	}
	c := clashes[0]
	c.found = true
	more := ""
	if n := len(clashes) - 1; n > 0 {
		more = fmt.Sprintf(" (and %d more such pairs)", n)
	}
	return fmt.Errorf("database %s: %w%s; their sandboxes would take each other's container and workspace: "+
		"rename or delete one of them in the database, for example with "+
		`sqlite3 %s "UPDATE users SET name = '<new name>' WHERE id = %d", and start again`,
		s.path, c, more, s.path, c.UserID)
}
