package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strconv"
	"time"
)

// Group is a team of users.
type Group struct {
	ID      int64  `json:"id"`
	Name    string `json:"name"`
	Title   string `json:"title,omitempty"`
	EventID string `json:"event_id,omitempty"`
	// Shared lets the group's members open each other's sandboxes.
	Shared    bool      `json:"shared"`
	Users     []User    `json:"users"`
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
}

// User is a participant; a user name is unique within its group.
type User struct {
	ID        int64     `json:"id"`
	GroupID   int64     `json:"group_id"`
	Group     string    `json:"group"`
	Name      string    `json:"name"`
	Email     string    `json:"email,omitempty"`
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
}

const groupColumns = `g.id, g.name, g.title, g.event_id, g.shared, g.created_at, g.updated_at`

const userColumns = `u.id, u.group_id, g.name, u.name, u.email, u.created_at, u.updated_at`

type scanner interface{ Scan(dest ...any) error }

func scanGroup(row scanner) (Group, error) {
	var g Group
	var created, updated string
	if err := row.Scan(&g.ID, &g.Name, &g.Title, &g.EventID, &g.Shared, &created, &updated); err != nil {
		return g, err
	}
	g.Users = []User{}
	return g, parseTimes(&g.CreatedAt, created, &g.UpdatedAt, updated)
}

func scanUser(row scanner) (User, error) {
	var u User
	var created, updated string
	if err := row.Scan(&u.ID, &u.GroupID, &u.Group, &u.Name, &u.Email, &created, &updated); err != nil {
		return u, err
	}
	return u, parseTimes(&u.CreatedAt, created, &u.UpdatedAt, updated)
}

func parseTimes(created *time.Time, cs string, updated *time.Time, us string) error {
	var err error
	if *created, err = parseTime(cs); err != nil {
		return err
	}
	*updated, err = parseTime(us)
	return err
}

// queryer is what both *sql.DB and *sql.Tx offer.
type queryer interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// loadGroups returns the groups matching where (a SQL condition on g, or "")
// with their users, ordered by name.
func loadGroups(ctx context.Context, q queryer, where string, args ...any) ([]Group, error) {
	cond := ""
	if where != "" {
		cond = " WHERE " + where
	}
	rows, err := q.QueryContext(ctx, `SELECT `+groupColumns+` FROM groups g`+cond+` ORDER BY g.name`, args...)
	if err != nil {
		return nil, fmt.Errorf("list groups: %w", err)
	}
	groups := []Group{}
	index := map[int64]int{}
	for rows.Next() {
		g, err := scanGroup(rows)
		if err != nil {
			rows.Close()
			return nil, fmt.Errorf("list groups: %w", err)
		}
		index[g.ID] = len(groups)
		groups = append(groups, g)
	}
	if err := closeRows(rows); err != nil {
		return nil, fmt.Errorf("list groups: %w", err)
	}
	if len(groups) == 0 {
		return groups, nil
	}
	rows, err = q.QueryContext(ctx, `SELECT `+userColumns+` FROM users u JOIN groups g ON g.id = u.group_id`+cond+
		` ORDER BY g.name, u.name`, args...)
	if err != nil {
		return nil, fmt.Errorf("list users: %w", err)
	}
	for rows.Next() {
		u, err := scanUser(rows)
		if err != nil {
			rows.Close()
			return nil, fmt.Errorf("list users: %w", err)
		}
		if i, ok := index[u.GroupID]; ok {
			groups[i].Users = append(groups[i].Users, u)
		}
	}
	if err := closeRows(rows); err != nil {
		return nil, fmt.Errorf("list users: %w", err)
	}
	return groups, nil
}

func closeRows(rows *sql.Rows) error {
	if err := rows.Err(); err != nil {
		rows.Close()
		return err
	}
	return rows.Close()
}

func getGroup(ctx context.Context, q queryer, name string) (Group, error) {
	gs, err := loadGroups(ctx, q, "g.name = ?", name)
	if err != nil {
		return Group{}, err
	}
	if len(gs) == 0 {
		return Group{}, fmt.Errorf("group %q: %w", name, ErrNotFound)
	}
	return gs[0], nil
}

func getUser(ctx context.Context, q queryer, group, user string) (User, error) {
	u, err := scanUser(q.QueryRowContext(ctx, `SELECT `+userColumns+
		` FROM users u JOIN groups g ON g.id = u.group_id WHERE g.name = ? AND u.name = ?`, group, user))
	if errors.Is(err, sql.ErrNoRows) {
		if _, gerr := groupID(ctx, q, group); gerr != nil {
			return User{}, gerr
		}
		return User{}, fmt.Errorf("user %q in group %q: %w", user, group, ErrNotFound)
	}
	if err != nil {
		return User{}, fmt.Errorf("get user %s/%s: %w", group, user, err)
	}
	return u, nil
}

func groupID(ctx context.Context, q queryer, name string) (int64, error) {
	var id int64
	err := q.QueryRowContext(ctx, `SELECT id FROM groups WHERE name = ?`, name).Scan(&id)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, fmt.Errorf("group %q: %w", name, ErrNotFound)
	}
	if err != nil {
		return 0, fmt.Errorf("get group %q: %w", name, err)
	}
	return id, nil
}

// ListGroups returns every group with its users, groups by name and users
// by name.
func (s *Store) ListGroups(ctx context.Context) ([]Group, error) {
	var groups []Group
	err := s.read(ctx, func(tx *sql.Tx) error {
		var err error
		groups, err = loadGroups(ctx, tx, "")
		return err
	})
	return groups, err
}

// GetGroup returns the named group with its users.
func (s *Store) GetGroup(ctx context.Context, name string) (Group, error) {
	var g Group
	err := s.read(ctx, func(tx *sql.Tx) error {
		var err error
		g, err = getGroup(ctx, tx, name)
		return err
	})
	return g, err
}

// CreateGroup creates an empty group. It returns ErrConflict if the name is
// taken and a *FieldError for a bad name or title.
func (s *Store) CreateGroup(ctx context.Context, name, title string) (Group, error) {
	if err := ValidateName("name", name); err != nil {
		return Group{}, err
	}
	if err := validateText("title", "title", title); err != nil {
		return Group{}, err
	}
	var g Group
	err := s.write(ctx, func(tx *sql.Tx) error {
		if _, err := groupID(ctx, tx, name); err == nil {
			return fmt.Errorf("group %q: %w", name, ErrConflict)
		} else if !errors.Is(err, ErrNotFound) {
			return err
		}
		if _, err := insertGroup(ctx, tx, name, title, "", false); err != nil {
			return err
		}
		var err error
		if g, err = getGroup(ctx, tx, name); err != nil {
			return err
		}
		return audit(ctx, tx, "group.create", groupTarget(name), detail("title", title))
	})
	return g, err
}

func insertGroup(ctx context.Context, tx *sql.Tx, name, title, eventID string, shared bool) (int64, error) {
	t := formatTime(now())
	res, err := tx.ExecContext(ctx, `INSERT INTO groups (name, title, event_id, shared, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?)`,
		name, title, eventID, shared, t, t)
	if isUnique(err) {
		return 0, fmt.Errorf("group %q: %w", name, ErrConflict)
	}
	if err != nil {
		return 0, fmt.Errorf("create group %q: %w", name, err)
	}
	return res.LastInsertId()
}

// GroupShared reports whether the named group shares its sandboxes among
// its members (false for a group that does not exist).
func (s *Store) GroupShared(ctx context.Context, name string) (bool, error) {
	var shared bool
	err := s.db.QueryRowContext(ctx, `SELECT shared FROM groups WHERE name = ?`, name).Scan(&shared)
	if errors.Is(err, sql.ErrNoRows) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("group %q: %w", name, err)
	}
	return shared, nil
}

// GroupUpdate is a change to a group; a zero field is left as it is.
type GroupUpdate struct {
	// Name renames the group ("" or the same name: no rename).
	Name string
	// Title sets its title; Shared whether its members may open each
	// other's sandboxes.
	Title  *string
	Shared *bool
}

// UpdateGroup renames the group, sets its title and whether it shares, as
// up says. It returns ErrConflict if up.Name is taken, and a *NameClashError (field "name") if the rename
// would give one of its users the DerivedName of another user. Users stay
// with the group.
func (s *Store) UpdateGroup(ctx context.Context, name string, up GroupUpdate) (Group, error) {
	newName, title := up.Name, up.Title
	if newName != "" {
		if err := ValidateName("name", newName); err != nil {
			return Group{}, err
		}
	}
	if title != nil {
		if err := validateText("title", "title", *title); err != nil {
			return Group{}, err
		}
	}
	var g Group
	err := s.write(ctx, func(tx *sql.Tx) error {
		old, err := getGroup(ctx, tx, name)
		if err != nil {
			return err
		}
		target, newTitle, shared := old.Name, old.Title, old.Shared
		if newName != "" && newName != old.Name {
			if _, err := groupID(ctx, tx, newName); err == nil {
				return fmt.Errorf("group %q: %w", newName, ErrConflict)
			} else if !errors.Is(err, ErrNotFound) {
				return err
			}
			target = newName
		}
		if title != nil {
			newTitle = *title
		}
		if up.Shared != nil {
			shared = *up.Shared
		}
		if target == old.Name && newTitle == old.Title && shared == old.Shared {
			g = old
			return nil
		}
		_, err = tx.ExecContext(ctx, `UPDATE groups SET name = ?, title = ?, shared = ?, updated_at = ? WHERE id = ?`,
			target, newTitle, shared, formatTime(now()), old.ID)
		if isUnique(err) {
			return fmt.Errorf("group %q: %w", target, ErrConflict)
		}
		if err != nil {
			return fmt.Errorf("update group %q: %w", name, err)
		}
		if target != old.Name {
			renamed := make(map[int64]string, len(old.Users))
			for _, u := range old.Users {
				renamed[u.ID] = "name"
			}
			if err := checkNewNames(ctx, tx, renamed); err != nil {
				return err
			}
		}
		if g, err = getGroup(ctx, tx, target); err != nil {
			return err
		}
		d := map[string]string{}
		if target != old.Name {
			d["name"] = target
		}
		if newTitle != old.Title {
			d["title"] = newTitle
		}
		if shared != old.Shared {
			d["shared"] = strconv.FormatBool(shared)
		}
		return audit(ctx, tx, "group.update", groupTarget(old.Name), detailMap(d))
	})
	return g, err
}

// DeleteGroup deletes the group and its users, and returns what it deleted.
func (s *Store) DeleteGroup(ctx context.Context, name string) (Group, error) {
	var g Group
	err := s.write(ctx, func(tx *sql.Tx) error {
		var err error
		if g, err = getGroup(ctx, tx, name); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM groups WHERE id = ?`, g.ID); err != nil {
			return fmt.Errorf("delete group %q: %w", name, err)
		}
		return audit(ctx, tx, "group.delete", groupTarget(name), detail("users", fmt.Sprint(len(g.Users))))
	})
	return g, err
}

// AddUser adds a user to a group. It returns ErrConflict if the group
// already has a user of that name, a *NameClashError (field "name") if
// another user has its DerivedName, and a *FieldError (field "name" or
// "email") for bad input.
func (s *Store) AddUser(ctx context.Context, group string, u RosterUser) (User, error) {
	if msg := nameProblem("user", u.Name); msg != "" {
		return User{}, &FieldError{Field: "name", Msg: msg}
	}
	if err := validateEmail("email", u.Email); err != nil {
		return User{}, err
	}
	var out User
	err := s.write(ctx, func(tx *sql.Tx) error {
		gid, err := groupID(ctx, tx, group)
		if err != nil {
			return err
		}
		if _, err := getUser(ctx, tx, group, u.Name); err == nil {
			return fmt.Errorf("user %q in group %q: %w", u.Name, group, ErrConflict)
		} else if !errors.Is(err, ErrNotFound) {
			return err
		}
		id, err := insertUser(ctx, tx, gid, group, u)
		if err != nil {
			return err
		}
		if err := checkNewNames(ctx, tx, map[int64]string{id: "name"}); err != nil {
			return err
		}
		if out, err = getUser(ctx, tx, group, u.Name); err != nil {
			return err
		}
		return audit(ctx, tx, "user.add", userTarget(group, u.Name), detail("email", u.Email))
	})
	return out, err
}

// insertUser adds a user and returns its id. The caller checks its
// derived name (checkNewNames).
func insertUser(ctx context.Context, tx *sql.Tx, groupID int64, group string, u RosterUser) (int64, error) {
	t := formatTime(now())
	res, err := tx.ExecContext(ctx, `INSERT INTO users (group_id, name, email, created_at, updated_at) VALUES (?, ?, ?, ?, ?)`,
		groupID, u.Name, u.Email, t, t)
	if isUnique(err) {
		return 0, fmt.Errorf("user %q in group %q: %w", u.Name, group, ErrConflict)
	}
	if err != nil {
		return 0, fmt.Errorf("add user %s/%s: %w", group, u.Name, err)
	}
	return res.LastInsertId()
}

// GetUser returns the named user of the named group.
func (s *Store) GetUser(ctx context.Context, group, user string) (User, error) {
	return getUser(ctx, s.db, group, user)
}

// GetUserByID returns the user with the given id.
func (s *Store) GetUserByID(ctx context.Context, id int64) (User, error) {
	return userByID(ctx, s.db, id)
}

// ListUsers returns every user, ordered by group name, then user name.
func (s *Store) ListUsers(ctx context.Context) ([]User, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT `+userColumns+
		` FROM users u JOIN groups g ON g.id = u.group_id ORDER BY g.name, u.name`)
	if err != nil {
		return nil, fmt.Errorf("list users: %w", err)
	}
	users := []User{}
	for rows.Next() {
		u, err := scanUser(rows)
		if err != nil {
			rows.Close()
			return nil, fmt.Errorf("list users: %w", err)
		}
		users = append(users, u)
	}
	if err := closeRows(rows); err != nil {
		return nil, fmt.Errorf("list users: %w", err)
	}
	return users, nil
}

// DeleteUser deletes a user and returns what it deleted.
func (s *Store) DeleteUser(ctx context.Context, group, user string) (User, error) {
	var u User
	err := s.write(ctx, func(tx *sql.Tx) error {
		var err error
		if u, err = getUser(ctx, tx, group, user); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM users WHERE id = ?`, u.ID); err != nil {
			return fmt.Errorf("delete user %s/%s: %w", group, user, err)
		}
		return audit(ctx, tx, "user.delete", userTarget(group, user), "")
	})
	return u, err
}

// TransferUser moves a user to another group, keeping its id and email. It
// returns ErrConflict if the target group already has a user of that name,
// and a *NameClashError (field "to_group") if the move would give it the
// DerivedName of another user.
// Moving a user to its own group changes nothing.
func (s *Store) TransferUser(ctx context.Context, group, user, toGroup string) (User, error) {
	var u User
	err := s.write(ctx, func(tx *sql.Tx) error {
		var err error
		if u, err = getUser(ctx, tx, group, user); err != nil {
			return err
		}
		to, err := groupID(ctx, tx, toGroup)
		if err != nil {
			return err
		}
		if to == u.GroupID {
			return nil
		}
		if _, err := getUser(ctx, tx, toGroup, user); err == nil {
			return fmt.Errorf("user %q in group %q: %w", user, toGroup, ErrConflict)
		} else if !errors.Is(err, ErrNotFound) {
			return err
		}
		if err := moveUser(ctx, tx, u.ID, to, ""); err != nil {
			return err
		}
		if err := checkNewNames(ctx, tx, map[int64]string{u.ID: "to_group"}); err != nil {
			return err
		}
		if u, err = getUser(ctx, tx, toGroup, user); err != nil {
			return err
		}
		return audit(ctx, tx, "user.transfer", userTarget(group, user), detail("to", toGroup))
	})
	return u, err
}

// moveUser sets a user's group, and its email unless email is "".
func moveUser(ctx context.Context, tx *sql.Tx, userID, toGroupID int64, email string) error {
	_, err := tx.ExecContext(ctx, `UPDATE users SET group_id = ?, email = CASE WHEN ? = '' THEN email ELSE ? END,
		updated_at = ? WHERE id = ?`, toGroupID, email, email, formatTime(now()), userID)
	if isUnique(err) {
		return fmt.Errorf("user %d: %w", userID, ErrConflict)
	}
	if err != nil {
		return fmt.Errorf("move user %d: %w", userID, err)
	}
	return nil
}

func groupTarget(name string) string { return "group:" + name }

func userTarget(group, user string) string { return "user:" + group + "/" + user }

// userByID returns the user with id read through q, or ErrNotFound.
func userByID(ctx context.Context, q queryer, id int64) (User, error) {
	u, err := scanUser(q.QueryRowContext(ctx, `SELECT `+userColumns+
		` FROM users u JOIN groups g ON g.id = u.group_id WHERE u.id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return User{}, fmt.Errorf("user %d: %w", id, ErrNotFound)
	}
	if err != nil {
		return User{}, fmt.Errorf("get user %d: %w", id, err)
	}
	return u, nil
}
