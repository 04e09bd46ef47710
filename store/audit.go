package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"time"
)

// AuditEntry is one row of the audit log.
type AuditEntry struct {
	ID     int64     `json:"id"`
	At     time.Time `json:"at"`
	Actor  string    `json:"actor"`
	Action string    `json:"action"`
	Target string    `json:"target"`
	Detail string    `json:"detail"`
}

// defaultAuditLimit is how many entries ListAudit returns for limit <= 0.
const defaultAuditLimit = 100

// Audit records an action. An empty actor means the actor of ctx (see
// WithActor). Action must not be empty.
func (s *Store) Audit(ctx context.Context, actor, action, target, detail string) error {
	if action == "" {
		return &FieldError{Field: "action", Msg: "must not be empty"}
	}
	if actor == "" {
		actor = ActorFrom(ctx)
	}
	return s.write(ctx, func(tx *sql.Tx) error {
		return insertAudit(ctx, tx, actor, action, target, detail)
	})
}

// audit writes an audit row for the actor of ctx inside tx.
func audit(ctx context.Context, tx *sql.Tx, action, target, detail string) error {
	return insertAudit(ctx, tx, ActorFrom(ctx), action, target, detail)
}

func insertAudit(ctx context.Context, tx *sql.Tx, actor, action, target, detail string) error {
	_, err := tx.ExecContext(ctx, `INSERT INTO audit (at, actor, action, target, detail) VALUES (?, ?, ?, ?, ?)`,
		formatTime(now()), actor, action, target, detail)
	if err != nil {
		return fmt.Errorf("write audit log: %w", err)
	}
	return nil
}

// ListAudit returns the newest entries first, at most limit of them
// (100 when limit <= 0).
func (s *Store) ListAudit(ctx context.Context, limit int) ([]AuditEntry, error) {
	if limit <= 0 {
		limit = defaultAuditLimit
	}
	rows, err := s.db.QueryContext(ctx, `SELECT id, at, actor, action, target, detail FROM audit
		ORDER BY id DESC LIMIT ?`, limit)
	if err != nil {
		return nil, fmt.Errorf("list audit log: %w", err)
	}
	entries := []AuditEntry{}
	for rows.Next() {
		var e AuditEntry
		var at string
		if err := rows.Scan(&e.ID, &at, &e.Actor, &e.Action, &e.Target, &e.Detail); err != nil {
			rows.Close()
			return nil, fmt.Errorf("list audit log: %w", err)
		}
		if e.At, err = parseTime(at); err != nil {
			rows.Close()
			return nil, err
		}
		entries = append(entries, e)
	}
	if err := closeRows(rows); err != nil {
		return nil, fmt.Errorf("list audit log: %w", err)
	}
	return entries, nil
}

// detail returns a JSON object {k: v} for an audit row, or "" when v is "".
func detail(k, v string) string {
	if v == "" {
		return ""
	}
	return detailMap(map[string]string{k: v})
}

// detailMap returns d as a JSON object (keys sorted), or "" when empty.
func detailMap(d map[string]string) string {
	if len(d) == 0 {
		return ""
	}
	b, err := json.Marshal(d)
	if err != nil {
		return ""
	}
	return string(b)
}

// detailJSON returns v as JSON for an audit row.
func detailJSON(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		return ""
	}
	return string(b)
}
