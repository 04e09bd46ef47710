package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
)

// ImportResult counts what an import changed.
type ImportResult struct {
	GroupsCreated int `json:"groups_created"`
	GroupsUpdated int `json:"groups_updated"`
	UsersCreated  int `json:"users_created"`
	UsersUpdated  int `json:"users_updated"`
	UsersMoved    int `json:"users_moved"`
}

func (r ImportResult) changed() bool { return r != ImportResult{} }

// ImportRoster adds the roster's groups and users, in one transaction: on
// any error nothing is written. The roster is validated first (a
// *FieldError names the offending entry). Groups and users are matched by
// name; existing ones are updated (a non-empty title or email in the roster
// replaces the stored one, an empty one keeps it), missing ones are created,
// and nothing is deleted. A user that the roster puts in group G, and that
// exists only in another group H where the roster does not list it, is
// moved from H to G (keeping its id). A user created or moved whose
// DerivedName another user has is a *NameClashError naming the roster
// entry (field "groups[i].users[j].name"). Importing the same roster again
// changes nothing and counts nothing. When EventID is set, the event row is
// created or its title updated, and the groups of the roster are tagged
// with the event.
func (s *Store) ImportRoster(ctx context.Context, r Roster) (ImportResult, error) {
	if err := validateRoster(r); err != nil {
		return ImportResult{}, err
	}
	var res ImportResult
	err := s.write(ctx, func(tx *sql.Tx) error {
		res = ImportResult{}
		eventChanged, err := upsertEvent(ctx, tx, r.EventID, r.Title)
		if err != nil {
			return err
		}
		im, err := loadImportState(ctx, tx)
		if err != nil {
			return err
		}
		inRoster := map[[2]string]bool{}
		for _, g := range r.Groups {
			for _, u := range g.Users {
				inRoster[[2]string{g.Name, u.Name}] = true
			}
		}
		// changed holds the users this import creates or moves, with the
		// roster field that names them, for the derived-name check.
		changed := map[int64]string{}
		for i, g := range r.Groups {
			gid, err := im.group(ctx, tx, g, r.EventID, &res)
			if err != nil {
				return err
			}
			for j, u := range g.Users {
				id, err := im.user(ctx, tx, gid, g.Name, u, inRoster, &res)
				if err != nil {
					return err
				}
				if id != 0 {
					changed[id] = fmt.Sprintf("groups[%d].users[%d].name", i, j)
				}
			}
		}
		if err := checkNewNames(ctx, tx, changed); err != nil {
			return err
		}
		if !res.changed() && !eventChanged {
			return nil
		}
		target := "groups"
		if r.EventID != "" {
			target = "event:" + r.EventID
		}
		return audit(ctx, tx, "roster.import", target, detailJSON(res))
	})
	if err != nil {
		return ImportResult{}, err
	}
	return res, nil
}

// upsertEvent creates the event or updates its title (when title is set);
// it reports whether it wrote anything.
func upsertEvent(ctx context.Context, tx *sql.Tx, eventID, title string) (bool, error) {
	if eventID == "" {
		return false, nil
	}
	var old string
	err := tx.QueryRowContext(ctx, `SELECT title FROM events WHERE event_id = ?`, eventID).Scan(&old)
	t := formatTime(now())
	switch {
	case errors.Is(err, sql.ErrNoRows):
		_, err = tx.ExecContext(ctx, `INSERT INTO events (event_id, title, created_at, updated_at) VALUES (?, ?, ?, ?)`,
			eventID, title, t, t)
	case err != nil:
	case title == "" || title == old:
		return false, nil
	default:
		_, err = tx.ExecContext(ctx, `UPDATE events SET title = ?, updated_at = ? WHERE event_id = ?`, title, t, eventID)
	}
	if err != nil {
		return false, fmt.Errorf("save event %q: %w", eventID, err)
	}
	return true, nil
}

type importGroup struct {
	id             int64
	title, eventID string
	shared         bool
}

type importUser struct {
	id    int64
	group string
	name  string
	email string
	moved bool
}

// importState is the database's groups and users, as an import sees them.
type importState struct {
	groups map[string]*importGroup
	users  map[[2]string]*importUser // {group, name}
	byName map[string][]*importUser  // ordered by group name
}

func loadImportState(ctx context.Context, tx *sql.Tx) (*importState, error) {
	im := &importState{
		groups: map[string]*importGroup{},
		users:  map[[2]string]*importUser{},
		byName: map[string][]*importUser{},
	}
	rows, err := tx.QueryContext(ctx, `SELECT id, name, title, event_id, shared FROM groups`)
	if err != nil {
		return nil, fmt.Errorf("read groups: %w", err)
	}
	for rows.Next() {
		var g importGroup
		var name string
		if err := rows.Scan(&g.id, &name, &g.title, &g.eventID, &g.shared); err != nil {
			rows.Close()
			return nil, fmt.Errorf("read groups: %w", err)
		}
		im.groups[name] = &g
	}
	if err := closeRows(rows); err != nil {
		return nil, fmt.Errorf("read groups: %w", err)
	}
	rows, err = tx.QueryContext(ctx, `SELECT u.id, g.name, u.name, u.email FROM users u JOIN groups g ON g.id = u.group_id
		ORDER BY g.name, u.name`)
	if err != nil {
		return nil, fmt.Errorf("read users: %w", err)
	}
	for rows.Next() {
		var u importUser
		if err := rows.Scan(&u.id, &u.group, &u.name, &u.email); err != nil {
			rows.Close()
			return nil, fmt.Errorf("read users: %w", err)
		}
		im.users[[2]string{u.group, u.name}] = &u
		im.byName[u.name] = append(im.byName[u.name], &u)
	}
	if err := closeRows(rows); err != nil {
		return nil, fmt.Errorf("read users: %w", err)
	}
	return im, nil
}

// group creates or updates one roster group and returns its id.
func (im *importState) group(ctx context.Context, tx *sql.Tx, g RosterGroup, eventID string, res *ImportResult) (int64, error) {
	dg, ok := im.groups[g.Name]
	if !ok {
		shared := g.Shared != nil && *g.Shared
		id, err := insertGroup(ctx, tx, g.Name, g.Title, eventID, shared)
		if err != nil {
			return 0, err
		}
		im.groups[g.Name] = &importGroup{id: id, title: g.Title, eventID: eventID, shared: shared}
		res.GroupsCreated++
		return id, nil
	}
	title, event, shared := dg.title, dg.eventID, dg.shared
	if g.Title != "" {
		title = g.Title
	}
	if eventID != "" {
		event = eventID
	}
	if g.Shared != nil {
		shared = *g.Shared
	}
	if title == dg.title && event == dg.eventID && shared == dg.shared {
		return dg.id, nil
	}
	_, err := tx.ExecContext(ctx, `UPDATE groups SET title = ?, event_id = ?, shared = ?, updated_at = ? WHERE id = ?`,
		title, event, shared, formatTime(now()), dg.id)
	if err != nil {
		return 0, fmt.Errorf("update group %q: %w", g.Name, err)
	}
	dg.title, dg.eventID, dg.shared = title, event, shared
	res.GroupsUpdated++
	return dg.id, nil
}

// user creates, updates or moves one roster user of group (id gid). It
// returns the id of a user it created or moved, 0 otherwise.
func (im *importState) user(ctx context.Context, tx *sql.Tx, gid int64, group string, u RosterUser,
	inRoster map[[2]string]bool, res *ImportResult,
) (int64, error) {
	key := [2]string{group, u.Name}
	if du, ok := im.users[key]; ok {
		if u.Email == "" || u.Email == du.email {
			return 0, nil
		}
		_, err := tx.ExecContext(ctx, `UPDATE users SET email = ?, updated_at = ? WHERE id = ?`,
			u.Email, formatTime(now()), du.id)
		if err != nil {
			return 0, fmt.Errorf("update user %s/%s: %w", group, u.Name, err)
		}
		du.email = u.Email
		res.UsersUpdated++
		return 0, nil
	}
	for _, cand := range im.byName[u.Name] {
		if cand.moved || cand.group == group || inRoster[[2]string{cand.group, u.Name}] {
			continue
		}
		if err := moveUser(ctx, tx, cand.id, gid, u.Email); err != nil {
			return 0, fmt.Errorf("move user %s/%s to %s: %w", cand.group, u.Name, group, err)
		}
		delete(im.users, [2]string{cand.group, u.Name})
		cand.moved, cand.group = true, group
		if u.Email != "" {
			cand.email = u.Email
		}
		im.users[key] = cand
		res.UsersMoved++
		return cand.id, nil
	}
	id, err := insertUser(ctx, tx, gid, group, u)
	if err != nil {
		return 0, err
	}
	res.UsersCreated++
	return id, nil
}

// ExportRoster returns every group and user as a roster, groups and users
// by name. EventID and Title are those of the most recently updated event.
func (s *Store) ExportRoster(ctx context.Context) (Roster, error) {
	r := Roster{Groups: []RosterGroup{}}
	err := s.read(ctx, func(tx *sql.Tx) error {
		err := tx.QueryRowContext(ctx, `SELECT event_id, title FROM events ORDER BY updated_at DESC, id DESC LIMIT 1`).
			Scan(&r.EventID, &r.Title)
		if err != nil && !errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("read event: %w", err)
		}
		groups, err := loadGroups(ctx, tx, "")
		if err != nil {
			return err
		}
		for _, g := range groups {
			rg := RosterGroup{Name: g.Name, Title: g.Title, Users: make([]RosterUser, 0, len(g.Users))}
			if g.Shared {
				shared := true
				rg.Shared = &shared
			}
			for _, u := range g.Users {
				rg.Users = append(rg.Users, RosterUser{Name: u.Name, Email: u.Email})
			}
			r.Groups = append(r.Groups, rg)
		}
		return nil
	})
	if err != nil {
		return Roster{}, err
	}
	return r, nil
}
