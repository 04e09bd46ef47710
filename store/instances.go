package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"
)

// Instance states as the store keeps them. The sandboxes package owns
// their meaning; the store only needs to know which ones are final.
const StateTerminated = "terminated"

// InstanceRecord is the persisted form of a sandbox instance.
type InstanceRecord struct {
	ID           int64
	Group        string
	User         string
	UserID       int64 // 0 when the user has been deleted
	ContainerID  string
	Name         string // container name
	State        string
	Port         int // 0 when the instance holds no port
	Image        string
	Password     string
	Workspace    string
	URL          string
	ExpiresAt    *time.Time
	CreatedAt    time.Time
	UpdatedAt    time.Time
	TerminatedAt *time.Time

	// Restarts counts the starts of the container that thon did not make:
	// the engine's after a crash or when it came back.
	Restarts int
	// StartedAt is when the container last started, as thon last saw it;
	// nil until it knows.
	StartedAt *time.Time
	// LastExit is how the container last ended; nil if it never did.
	LastExit *InstanceExit
	// KeepPaused records that the sandbox was paused on purpose: thon pauses
	// its container again whenever the engine runs it.
	KeepPaused bool
}

// InstanceExit is how a sandbox's container ended.
type InstanceExit struct {
	Code      int
	OOMKilled bool
	Error     string // the engine's error text; empty for a plain exit
	At        time.Time
}

// InstanceFilter selects instances for ListInstances.
type InstanceFilter struct {
	States []string // any of these; empty = any state
	// Live restricts the list to instances that are not terminated.
	Live   bool
	Group  string
	Limit  int // 0 = no limit
	Offset int
}

const instanceColumns = `id, group_name, user_name, COALESCE(user_id, 0), container_id, name, state,
	COALESCE(port, 0), image, password, workspace, url, expires_at, created_at, updated_at, terminated_at,
	restarts, started_at, exit_code, exit_oom, exit_error, exited_at, keep_paused`

func scanInstance(row scanner) (InstanceRecord, error) {
	var r InstanceRecord
	var expires, terminated, started, exited sql.NullString
	var created, updated string
	var exit InstanceExit
	err := row.Scan(&r.ID, &r.Group, &r.User, &r.UserID, &r.ContainerID, &r.Name, &r.State,
		&r.Port, &r.Image, &r.Password, &r.Workspace, &r.URL, &expires, &created, &updated, &terminated,
		&r.Restarts, &started, &exit.Code, &exit.OOMKilled, &exit.Error, &exited, &r.KeepPaused)
	if err != nil {
		return r, err
	}
	if err := parseTimes(&r.CreatedAt, created, &r.UpdatedAt, updated); err != nil {
		return r, err
	}
	if r.ExpiresAt, err = parseNullTime(expires); err != nil {
		return r, err
	}
	if r.StartedAt, err = parseNullTime(started); err != nil {
		return r, err
	}
	at, err := parseNullTime(exited)
	if err != nil {
		return r, err
	}
	if at != nil {
		exit.At = *at
		r.LastExit = &exit
	}
	r.TerminatedAt, err = parseNullTime(terminated)
	return r, err
}

// exitColumns are the values of the exit_* columns for e.
func exitColumns(e *InstanceExit) (code int, oom bool, msg string, at any) {
	if e == nil {
		return 0, false, "", nil
	}
	return e.Code, e.OOMKilled, e.Error, formatTime(e.At)
}

func parseNullTime(s sql.NullString) (*time.Time, error) {
	if !s.Valid || s.String == "" {
		return nil, nil
	}
	t, err := parseTime(s.String)
	if err != nil {
		return nil, err
	}
	return &t, nil
}

func nullTime(t *time.Time) any {
	if t == nil {
		return nil
	}
	return formatTime(*t)
}

func nullInt(v int64) any {
	if v == 0 {
		return nil
	}
	return v
}

// CreateInstance records a new instance. A port another instance holds,
// or a second live instance of the same user, is ErrConflict.
func (s *Store) CreateInstance(ctx context.Context, r InstanceRecord) (InstanceRecord, error) {
	if err := ValidateName("group", r.Group); err != nil {
		return r, err
	}
	if err := ValidateName("user", r.User); err != nil {
		return r, err
	}
	t := now()
	r.CreatedAt, r.UpdatedAt = t, t
	code, oom, msg, at := exitColumns(r.LastExit)
	err := s.write(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `INSERT INTO instances (group_name, user_name, user_id, container_id, name,
			state, port, image, password, workspace, url, expires_at, created_at, updated_at, terminated_at,
			restarts, started_at, exit_code, exit_oom, exit_error, exited_at, keep_paused)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
			r.Group, r.User, nullInt(r.UserID), r.ContainerID, r.Name, r.State, nullInt(int64(r.Port)),
			r.Image, r.Password, r.Workspace, r.URL, nullTime(r.ExpiresAt), formatTime(t), formatTime(t),
			nullTime(r.TerminatedAt), r.Restarts, nullTime(r.StartedAt), code, oom, msg, at, r.KeepPaused)
		if isUnique(err) {
			return fmt.Errorf("instance of %s/%s on port %d: %w", r.Group, r.User, r.Port, ErrConflict)
		}
		if err != nil {
			return fmt.Errorf("insert instance: %w", err)
		}
		if r.ID, err = res.LastInsertId(); err != nil {
			return err
		}
		return audit(ctx, tx, "instance.create", userTarget(r.Group, r.User),
			detailMap(map[string]string{"id": fmt.Sprint(r.ID), "port": fmt.Sprint(r.Port), "state": r.State}))
	})
	return r, err
}

// GetInstance returns an instance by ID.
func (s *Store) GetInstance(ctx context.Context, id int64) (InstanceRecord, error) {
	r, err := scanInstance(s.db.QueryRowContext(ctx, `SELECT `+instanceColumns+` FROM instances WHERE id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return r, fmt.Errorf("instance %d: %w", id, ErrNotFound)
	}
	return r, err
}

// LiveInstance returns the user's instance that is not terminated.
func (s *Store) LiveInstance(ctx context.Context, group, user string) (InstanceRecord, error) {
	r, err := scanInstance(s.db.QueryRowContext(ctx, `SELECT `+instanceColumns+` FROM instances
		WHERE group_name = ? AND user_name = ? AND terminated_at IS NULL`, group, user))
	if errors.Is(err, sql.ErrNoRows) {
		return r, fmt.Errorf("live instance of %s/%s: %w", group, user, ErrNotFound)
	}
	return r, err
}

// UpdateInstance changes an instance in one transaction: change gets the
// current record and edits it; action names the change in the audit log
// ("" writes no audit row). The ID and creation time cannot change.
func (s *Store) UpdateInstance(ctx context.Context, id int64, action string, change func(*InstanceRecord) error) (InstanceRecord, error) {
	var r InstanceRecord
	err := s.write(ctx, func(tx *sql.Tx) error {
		var err error
		r, err = scanInstance(tx.QueryRowContext(ctx, `SELECT `+instanceColumns+` FROM instances WHERE id = ?`, id))
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("instance %d: %w", id, ErrNotFound)
		}
		if err != nil {
			return err
		}
		if err := change(&r); err != nil {
			return err
		}
		r.ID = id
		r.UpdatedAt = now()
		code, oom, msg, at := exitColumns(r.LastExit)
		_, err = tx.ExecContext(ctx, `UPDATE instances SET group_name = ?, user_name = ?, user_id = ?,
			container_id = ?, name = ?, state = ?, port = ?, image = ?, password = ?, workspace = ?, url = ?,
			expires_at = ?, updated_at = ?, terminated_at = ?, restarts = ?, started_at = ?, exit_code = ?,
			exit_oom = ?, exit_error = ?, exited_at = ?, keep_paused = ? WHERE id = ?`,
			r.Group, r.User, nullInt(r.UserID), r.ContainerID, r.Name, r.State, nullInt(int64(r.Port)), r.Image,
			r.Password, r.Workspace, r.URL, nullTime(r.ExpiresAt), formatTime(r.UpdatedAt), nullTime(r.TerminatedAt),
			r.Restarts, nullTime(r.StartedAt), code, oom, msg, at, r.KeepPaused, id)
		if isUnique(err) {
			return fmt.Errorf("instance %d: port %d or user %s/%s taken: %w", id, r.Port, r.Group, r.User, ErrConflict)
		}
		if err != nil {
			return fmt.Errorf("update instance: %w", err)
		}
		if action == "" {
			return nil
		}
		return audit(ctx, tx, action, userTarget(r.Group, r.User),
			detailMap(map[string]string{"id": fmt.Sprint(id), "state": r.State}))
	})
	return r, err
}

// TerminateInstance marks an instance terminated and gives its port back.
func (s *Store) TerminateInstance(ctx context.Context, id int64) (InstanceRecord, error) {
	return s.UpdateInstance(ctx, id, "instance.terminate", func(r *InstanceRecord) error {
		t := now()
		r.State, r.Port, r.TerminatedAt = StateTerminated, 0, &t
		return nil
	})
}

// DeleteInstance removes an instance record entirely, for a launch that
// failed before anything existed.
func (s *Store) DeleteInstance(ctx context.Context, id int64) error {
	return s.write(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `DELETE FROM instances WHERE id = ?`, id)
		return err
	})
}

// ListInstances returns the instances f selects, newest first by ID
// within group and user order, and how many match in all.
func (s *Store) ListInstances(ctx context.Context, f InstanceFilter) ([]InstanceRecord, int, error) {
	var where []string
	var args []any
	if len(f.States) > 0 {
		where = append(where, "state IN (?"+strings.Repeat(", ?", len(f.States)-1)+")")
		for _, st := range f.States {
			args = append(args, st)
		}
	}
	if f.Live {
		where = append(where, "terminated_at IS NULL")
	}
	if f.Group != "" {
		where = append(where, "group_name = ?")
		args = append(args, f.Group)
	}
	cond := ""
	if len(where) > 0 {
		cond = " WHERE " + strings.Join(where, " AND ")
	}
	var out []InstanceRecord
	var total int
	err := s.read(ctx, func(tx *sql.Tx) error {
		if err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM instances`+cond, args...).Scan(&total); err != nil {
			return err
		}
		q := `SELECT ` + instanceColumns + ` FROM instances` + cond + ` ORDER BY group_name, user_name, id DESC`
		qargs := args
		if f.Limit > 0 {
			q += ` LIMIT ? OFFSET ?`
			qargs = append(append([]any(nil), args...), f.Limit, f.Offset)
		}
		rows, err := tx.QueryContext(ctx, q, qargs...)
		if err != nil {
			return err
		}
		for rows.Next() {
			r, err := scanInstance(rows)
			if err != nil {
				rows.Close()
				return err
			}
			out = append(out, r)
		}
		return closeRows(rows)
	})
	return out, total, err
}

// UsedPorts returns the ports live instances hold.
func (s *Store) UsedPorts(ctx context.Context) (map[int]bool, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT port FROM instances WHERE port IS NOT NULL`)
	if err != nil {
		return nil, err
	}
	used := map[int]bool{}
	for rows.Next() {
		var p int
		if err := rows.Scan(&p); err != nil {
			rows.Close()
			return nil, err
		}
		used[p] = true
	}
	return used, closeRows(rows)
}

// ExpiredInstances returns the live instances whose TTL ran out before t.
func (s *Store) ExpiredInstances(ctx context.Context, t time.Time) ([]InstanceRecord, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT `+instanceColumns+` FROM instances
		WHERE terminated_at IS NULL AND expires_at IS NOT NULL AND expires_at <= ?`, formatTime(t))
	if err != nil {
		return nil, err
	}
	var out []InstanceRecord
	for rows.Next() {
		r, err := scanInstance(rows)
		if err != nil {
			rows.Close()
			return nil, err
		}
		out = append(out, r)
	}
	return out, closeRows(rows)
}
