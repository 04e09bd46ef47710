// Package store keeps thon's state in a SQLite database: events, groups and
// users, sandbox instances, gateway consumers and usage, settings, the
// organiser's config files and an audit log.
//
// One *Store holds one *sql.DB. Reads run concurrently (WAL); writes are
// serialised inside the process and each write is one transaction, which
// begins IMMEDIATE so that another process writing the same file makes it
// wait (busy_timeout) rather than fail.
package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"
)

// Errors returned (wrapped) by the store.
var (
	// ErrNotFound means the named row does not exist.
	ErrNotFound = errors.New("not found")
	// ErrConflict means the write would violate a uniqueness rule, such as
	// creating a group that already exists.
	ErrConflict = errors.New("conflict")
)

// FieldError is bad input: Field names the offending field (a JSON field, or
// a path such as "groups.alpha.users[2]" in a file) and Msg says what is
// wrong. Errors about files start Msg with "<file>:<line>: ".
type FieldError struct {
	Field string
	Msg   string

	// loc and what are the parts of Msg for errors located in a file.
	loc, what string
}

// Error returns Field + ": " + Msg (only Msg when Field is empty).
func (e *FieldError) Error() string {
	if e.Field == "" {
		return e.Msg
	}
	return e.Field + ": " + e.Msg
}

// located returns the error as "<file>:<line>: <field>: <what>", the form
// shown for a rejected file.
func (e *FieldError) located() string {
	if e.loc == "" || e.Field == "" {
		return e.Error()
	}
	return e.loc + ": " + e.Field + ": " + e.what
}

// Store is thon's database. It is safe for concurrent use.
type Store struct {
	db   *sql.DB
	path string
	// wsem serialises write transactions of this process, so that they queue
	// in Go instead of competing for SQLite's write lock.
	wsem chan struct{}
}

// maxOpenConns bounds the connections: one writer at a time plus readers,
// which WAL lets run alongside it.
const maxOpenConns = 8

// Open opens (creating it and its directory if needed) the database at path
// and brings its schema up to date. The database must not have a schema
// version newer than this program knows.
func Open(ctx context.Context, path string) (*Store, error) {
	if path == "" {
		return nil, errors.New("open database: empty path")
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("open database %s: %w", path, err)
	}
	if err := os.MkdirAll(filepath.Dir(abs), 0o750); err != nil {
		return nil, fmt.Errorf("open database %s: %w", path, err)
	}
	db, err := sql.Open("sqlite", dsn(abs))
	if err != nil {
		return nil, fmt.Errorf("open database %s: %w", path, err)
	}
	db.SetMaxOpenConns(maxOpenConns)
	db.SetMaxIdleConns(maxOpenConns)
	s := &Store{db: db, path: abs, wsem: make(chan struct{}, 1)}
	if err := db.PingContext(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("open database %s: %w", path, err)
	}
	if err := s.migrate(ctx, migrationFS); err != nil {
		db.Close()
		return nil, fmt.Errorf("database %s: %w", path, err)
	}
	return s, nil
}

// dsn builds the modernc.org/sqlite data source name for an absolute path.
func dsn(abs string) string {
	escaped := strings.NewReplacer("%", "%25", "?", "%3f", "#", "%23").Replace(abs)
	return "file:" + escaped +
		"?_pragma=busy_timeout(5000)" +
		"&_pragma=journal_mode(WAL)" +
		"&_pragma=foreign_keys(1)" +
		"&_pragma=synchronous(NORMAL)" +
		"&_txlock=immediate"
}

// Close closes the database.
func (s *Store) Close() error { return s.db.Close() }

// Path returns the absolute path of the database file.
func (s *Store) Path() string { return s.path }

// DB returns the underlying handle, for queries of code inside this package
// and its tests. Writes through it bypass the store's write serialisation.
func (s *Store) DB() *sql.DB { return s.db }

// write runs fn in a write transaction (BEGIN IMMEDIATE), serialised with the
// other writes of this Store, and commits it when fn returns nil.
func (s *Store) write(ctx context.Context, fn func(*sql.Tx) error) error {
	select {
	case s.wsem <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	defer func() { <-s.wsem }()
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("begin transaction: %w", err)
	}
	if err := fn(tx); err != nil {
		_ = tx.Rollback()
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	return nil
}

// read runs fn in a read-only transaction, so that it sees one snapshot.
func (s *Store) read(ctx context.Context, fn func(*sql.Tx) error) error {
	tx, err := s.db.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return fmt.Errorf("begin transaction: %w", err)
	}
	defer func() { _ = tx.Rollback() }()
	return fn(tx)
}

// isUnique reports whether err is a UNIQUE or PRIMARY KEY violation.
func isUnique(err error) bool {
	var se *sqlite.Error
	if !errors.As(err, &se) {
		return false
	}
	return se.Code() == sqlite3.SQLITE_CONSTRAINT_UNIQUE || se.Code() == sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY
}

// isForeignKey reports whether err is a FOREIGN KEY violation.
func isForeignKey(err error) bool {
	var se *sqlite.Error
	return errors.As(err, &se) && se.Code() == sqlite3.SQLITE_CONSTRAINT_FOREIGNKEY
}

// timeLayout is how timestamps are stored: UTC, fixed width, sortable.
const timeLayout = "2006-01-02T15:04:05.000000000Z"

func now() time.Time { return time.Now().UTC() }

func formatTime(t time.Time) string { return t.UTC().Format(timeLayout) }

func parseTime(s string) (time.Time, error) {
	t, err := time.Parse(timeLayout, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("bad timestamp in database: %q", s)
	}
	return t, nil
}

type actorKey struct{}

// WithActor returns a context that attributes the store's audit rows to
// actor (such as "api", "cli" or a user's name).
func WithActor(ctx context.Context, actor string) context.Context {
	return context.WithValue(ctx, actorKey{}, actor)
}

// ActorFrom returns the actor set with WithActor, or "system".
func ActorFrom(ctx context.Context) string {
	if a, ok := ctx.Value(actorKey{}).(string); ok && a != "" {
		return a
	}
	return "system"
}
