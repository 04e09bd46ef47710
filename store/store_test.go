package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/fstest"
)

// openTest opens a fresh database file in a temporary directory.
func openTest(t *testing.T) *Store {
	t.Helper()
	s, err := Open(context.Background(), filepath.Join(t.TempDir(), "thon.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestOpenEmpty(t *testing.T) {
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "nested", "data") // created by Open
	s, err := Open(ctx, filepath.Join(dir, "thon.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := os.Stat(filepath.Join(dir, "thon.db")); err != nil {
		t.Fatalf("database file not created: %v", err)
	}
	if !filepath.IsAbs(s.Path()) || filepath.Base(s.Path()) != "thon.db" {
		t.Errorf("Path() = %q", s.Path())
	}
	v, err := s.SchemaVersion(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if v != LatestSchemaVersion() || v < 1 {
		t.Errorf("schema version %d, want %d", v, LatestSchemaVersion())
	}
	for _, table := range []string{"events", "groups", "users", "instances", "settings", "consumers", "usage", "audit", "schema_migrations"} {
		var n int
		if err := s.DB().QueryRowContext(ctx, `SELECT count(*) FROM sqlite_schema WHERE type = 'table' AND name = ?`, table).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n != 1 {
			t.Errorf("table %s missing", table)
		}
	}
}

// TestPragmas checks the connection settings on several pooled connections.
func TestPragmas(t *testing.T) {
	s := openTest(t)
	ctx := context.Background()
	var conns []*sql.Conn
	for range 3 {
		c, err := s.DB().Conn(ctx)
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
	}
	for i, c := range conns {
		for _, p := range []struct {
			pragma string
			want   string
		}{
			{"journal_mode", "wal"},
			{"busy_timeout", "5000"},
			{"foreign_keys", "1"},
			{"synchronous", "1"}, // NORMAL
		} {
			var got string
			if err := c.QueryRowContext(ctx, "PRAGMA "+p.pragma).Scan(&got); err != nil {
				t.Fatal(err)
			}
			if got != p.want {
				t.Errorf("conn %d: %s = %s, want %s", i, p.pragma, got, p.want)
			}
		}
		c.Close()
	}
}

func TestOpenPathWithSpecialCharacters(t *testing.T) {
	path := filepath.Join(t.TempDir(), "we?ird #dir %20", "thon.db")
	s, err := Open(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := os.Stat(path); err != nil {
		t.Errorf("database not at %s: %v", path, err)
	}
}

func TestOpenErrors(t *testing.T) {
	ctx := context.Background()
	if _, err := Open(ctx, ""); err == nil {
		t.Error("empty path: no error")
	}
	// a file that is not a database
	bad := filepath.Join(t.TempDir(), "bad.db")
	if err := os.WriteFile(bad, []byte(strings.Repeat("not a database ", 100)), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(ctx, bad); err == nil {
		t.Error("not a database: no error")
	}
}

// TestReopenKeepsData opens a database, writes to it, and opens it again:
// the migrations are not applied twice and the data is intact.
func TestReopenKeepsData(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "thon.db")
	s, err := Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.ImportRoster(ctx, exampleRoster); err != nil {
		t.Fatal(err)
	}
	if err := s.SetSetting(ctx, "external_ip", "203.0.113.7"); err != nil {
		t.Fatal(err)
	}
	before, err := s.ExportRoster(ctx)
	if err != nil {
		t.Fatal(err)
	}
	s.Close()

	for range 2 {
		s, err = Open(ctx, path)
		if err != nil {
			t.Fatal(err)
		}
		after, err := s.ExportRoster(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if !rosterEqual(before, after) {
			t.Errorf("data changed on reopen:\n%+v\n%+v", before, after)
		}
		if v, ok, err := s.Setting(ctx, "external_ip"); err != nil || !ok || v != "203.0.113.7" {
			t.Errorf("setting after reopen: %q %v %v", v, ok, err)
		}
		var rows int
		if err := s.DB().QueryRowContext(ctx, `SELECT count(*) FROM schema_migrations`).Scan(&rows); err != nil {
			t.Fatal(err)
		}
		if rows != LatestSchemaVersion() {
			t.Errorf("%d schema_migrations rows, want %d", rows, LatestSchemaVersion())
		}
		s.Close()
	}
}

// testMigrations returns the embedded migrations plus extra ones.
func testMigrations(t *testing.T, extra map[string]string) fstest.MapFS {
	t.Helper()
	fsys := fstest.MapFS{}
	ms, err := loadMigrations(migrationFS)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range ms {
		fsys["migrations/"+m.name] = &fstest.MapFile{Data: []byte(m.sql)}
	}
	for name, sql := range extra {
		fsys["migrations/"+name] = &fstest.MapFile{Data: []byte(sql)}
	}
	return fsys
}

// TestMigrateExistingDatabase upgrades a database that has migration 1
// applied and data in it with a newer migration.
func TestMigrateExistingDatabase(t *testing.T) {
	ctx := context.Background()
	s := openTest(t)
	if _, err := s.ImportRoster(ctx, exampleRoster); err != nil {
		t.Fatal(err)
	}
	next := LatestSchemaVersion() + 1
	name := fmt.Sprintf("%04d_test.sql", next)
	fsys := testMigrations(t, map[string]string{
		name: `ALTER TABLE users ADD COLUMN nickname TEXT NOT NULL DEFAULT '';
			UPDATE users SET nickname = upper(name);
			CREATE TABLE extra (id INTEGER PRIMARY KEY);`,
	})
	if err := s.migrate(ctx, fsys); err != nil {
		t.Fatal(err)
	}
	if v, _ := s.SchemaVersion(ctx); v != next {
		t.Errorf("schema version %d, want %d", v, next)
	}
	var nick string
	if err := s.DB().QueryRowContext(ctx, `SELECT nickname FROM users WHERE name = 'alice'`).Scan(&nick); err != nil {
		t.Fatal(err)
	}
	if nick != "ALICE" {
		t.Errorf("nickname %q", nick)
	}
	got, err := s.ExportRoster(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !rosterEqual(got, exampleRoster) {
		t.Errorf("data changed by migration: %+v", got)
	}
	// applying again is a no-op
	if err := s.migrate(ctx, fsys); err != nil {
		t.Fatal(err)
	}
	// the embedded migrations now know less than the database: refused
	err = s.migrate(ctx, migrationFS)
	if !errors.Is(err, errNewerSchema) || !strings.Contains(err.Error(), "upgrade thon") {
		t.Errorf("older program on newer database: got %v", err)
	}
}

func TestFailedMigrationRollsBack(t *testing.T) {
	ctx := context.Background()
	s := openTest(t)
	before := LatestSchemaVersion()
	name := fmt.Sprintf("%04d_bad.sql", before+1)
	fsys := testMigrations(t, map[string]string{
		name: `CREATE TABLE half (id INTEGER); INSERT INTO no_such_table VALUES (1);`,
	})
	err := s.migrate(ctx, fsys)
	if err == nil || !strings.Contains(err.Error(), name) {
		t.Fatalf("got %v, want an error naming %s", err, name)
	}
	if v, _ := s.SchemaVersion(ctx); v != before {
		t.Errorf("schema version %d after failed migration, want %d", v, before)
	}
	var n int
	if err := s.DB().QueryRowContext(ctx, `SELECT count(*) FROM sqlite_schema WHERE name = 'half'`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 0 {
		t.Error("failed migration left a table behind")
	}
}

func TestOpenNewerDatabase(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "thon.db")
	s, err := Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.DB().ExecContext(ctx, `INSERT INTO schema_migrations (version, applied_at) VALUES (999, '2030-01-01T00:00:00.000000000Z')`); err != nil {
		t.Fatal(err)
	}
	s.Close()
	_, err = Open(ctx, path)
	if err == nil || !strings.Contains(err.Error(), "schema version 999 is newer") {
		t.Errorf("got %v, want a clear error about the newer schema", err)
	}
}

func TestLoadMigrationsRejectsBadNames(t *testing.T) {
	for i, fsys := range []fstest.MapFS{
		{"migrations/init.sql": {}},
		{"migrations/0002_x.sql": {}},
		{"migrations/0001_a.sql": {}, "migrations/0001_b.sql": {}},
	} {
		if _, err := loadMigrations(fsys); err == nil {
			t.Errorf("case %d: no error", i)
		}
	}
}

// rosterEqual compares rosters ignoring group and user order.
func rosterEqual(a, b Roster) bool {
	if a.EventID != b.EventID || a.Title != b.Title || len(a.Groups) != len(b.Groups) {
		return false
	}
	index := map[string]RosterGroup{}
	for _, g := range a.Groups {
		index[g.Name] = g
	}
	for _, g := range b.Groups {
		h, ok := index[g.Name]
		if !ok || h.Title != g.Title || len(h.Users) != len(g.Users) {
			return false
		}
		users := map[RosterUser]bool{}
		for _, u := range h.Users {
			users[u] = true
		}
		for _, u := range g.Users {
			if !users[u] {
				return false
			}
		}
	}
	return true
}
