package store

import (
	"context"
	"errors"
	"reflect"
	"strings"
	"testing"
)

func TestDerivedName(t *testing.T) {
	if a, b := DerivedName("a-b", "c"), DerivedName("a", "b-c"); a != "a-b-c" || b != a {
		t.Errorf("DerivedName = %q and %q, want both a-b-c", a, b)
	}
	if got := DerivedName("alpha", "alice"); got != "alpha-alice" {
		t.Errorf("DerivedName(alpha, alice) = %q", got)
	}
}

// importGroups imports groups given as name → users.
func importGroups(t *testing.T, s *Store, groups ...RosterGroup) {
	t.Helper()
	if _, err := s.ImportRoster(context.Background(), Roster{Groups: groups}); err != nil {
		t.Fatal(err)
	}
}

func rosterGroup(name string, users ...string) RosterGroup {
	g := RosterGroup{Name: name, Users: []RosterUser{}}
	for _, u := range users {
		g.Users = append(g.Users, RosterUser{Name: u})
	}
	return g
}

// wantClash checks that err refuses a write because user would share the
// derived name of other, naming both, with field.
func wantClash(t *testing.T, err error, user, other, field string) {
	t.Helper()
	var ce *NameClashError
	if !errors.As(err, &ce) {
		t.Fatalf("error %v (%T), want a *NameClashError", err, err)
	}
	if !errors.Is(err, ErrConflict) {
		t.Errorf("error %v does not match ErrConflict", err)
	}
	if ce.User != user || ce.Other != other || ce.Field != field || ce.Name != "a-b-c" {
		t.Errorf("clash = %+v, want user %q, other %q, field %q, name a-b-c", ce, user, other, field)
	}
	want := `user "` + user + `" would share the container and volume names of user "` + other + `" (both made from "a-b-c")`
	if err.Error() != want {
		t.Errorf("error = %q\nwant    %q", err, want)
	}
}

// wantUnchanged checks that nothing changed since before.
func wantUnchanged(t *testing.T, s *Store, before snapshot) {
	t.Helper()
	if after := takeSnapshot(t, s); !reflect.DeepEqual(after, before) {
		t.Errorf("a refused write changed the database:\nbefore %+v\nafter  %+v", before, after)
	}
}

func TestImportRefusesDerivedNameClash(t *testing.T) {
	ctx := context.Background()
	t.Run("against the database", func(t *testing.T) {
		s := openTest(t)
		importGroups(t, s, rosterGroup("a-b", "c"))
		before := takeSnapshot(t, s)
		_, err := s.ImportRoster(ctx, Roster{Groups: []RosterGroup{rosterGroup("x", "y"), rosterGroup("a", "z", "b-c")}})
		wantClash(t, err, "a/b-c", "a-b/c", "groups[1].users[1].name")
		wantUnchanged(t, s, before)
	})
	t.Run("within the roster", func(t *testing.T) {
		s := openTest(t)
		before := takeSnapshot(t, s)
		_, err := s.ImportRoster(ctx, Roster{Groups: []RosterGroup{rosterGroup("a-b", "c"), rosterGroup("a", "b-c")}})
		wantClash(t, err, "a/b-c", "a-b/c", "groups[1].users[0].name")
		wantUnchanged(t, s, before)
	})
	t.Run("by moving a user", func(t *testing.T) {
		// The import moves b-c from z to a, where it would clash.
		s := openTest(t)
		importGroups(t, s, rosterGroup("a-b", "c"), rosterGroup("z", "b-c"))
		before := takeSnapshot(t, s)
		_, err := s.ImportRoster(ctx, Roster{Groups: []RosterGroup{rosterGroup("a", "b-c")}})
		wantClash(t, err, "a/b-c", "a-b/c", "groups[0].users[0].name")
		wantUnchanged(t, s, before)
	})
	t.Run("from a groups file", func(t *testing.T) {
		s := openTest(t)
		importGroups(t, s, rosterGroup("a", "b-c"))
		r, err := ParseRoster("groups.yaml", []byte("groups:\n  a-b:\n    users: [c]\n"))
		if err != nil {
			t.Fatal(err)
		}
		before := takeSnapshot(t, s)
		_, err = s.ImportRoster(ctx, r)
		wantClash(t, err, "a-b/c", "a/b-c", "groups[0].users[0].name")
		wantUnchanged(t, s, before)
	})
}

func TestAddUserRefusesDerivedNameClash(t *testing.T) {
	ctx := context.Background()
	s := openTest(t)
	importGroups(t, s, rosterGroup("a-b", "c"), rosterGroup("a"))
	before := takeSnapshot(t, s)
	_, err := s.AddUser(ctx, "a", RosterUser{Name: "b-c", Email: "bc@example.com"})
	wantClash(t, err, "a/b-c", "a-b/c", "name")
	wantUnchanged(t, s, before)
	// Names that only look alike are fine.
	if _, err := s.AddUser(ctx, "a", RosterUser{Name: "b-d"}); err != nil {
		t.Errorf("AddUser(a, b-d): %v", err)
	}
}

func TestRenameGroupRefusesDerivedNameClash(t *testing.T) {
	ctx := context.Background()
	s := openTest(t)
	importGroups(t, s, rosterGroup("a-b", "c"), rosterGroup("x", "b-c"), rosterGroup("q", "c"))
	before := takeSnapshot(t, s)
	title := "new title"
	// Renaming the group of b-c to a gives it the name of a-b/c.
	_, err := s.UpdateGroup(ctx, "x", GroupUpdate{Name: "a", Title: &title})
	wantClash(t, err, "a/b-c", "a-b/c", "name")
	wantUnchanged(t, s, before)

	// Renaming a group whose user c would take the name of a/b-c.
	s2 := openTest(t)
	importGroups(t, s2, rosterGroup("a", "b-c"), rosterGroup("q", "c"))
	before = takeSnapshot(t, s2)
	_, err = s2.UpdateGroup(ctx, "q", GroupUpdate{Name: "a-b"})
	wantClash(t, err, "a-b/c", "a/b-c", "name")
	wantUnchanged(t, s2, before)

	// A rename that clashes with nobody goes through.
	if g, err := s.UpdateGroup(ctx, "x", GroupUpdate{Name: "a-c"}); err != nil || g.Name != "a-c" {
		t.Errorf("rename x to a-c: %+v %v", g, err)
	}
}

func TestTransferRefusesDerivedNameClash(t *testing.T) {
	ctx := context.Background()
	s := openTest(t)
	importGroups(t, s, rosterGroup("a-b", "c"), rosterGroup("a"), rosterGroup("z", "b-c"))
	before := takeSnapshot(t, s)
	_, err := s.TransferUser(ctx, "z", "b-c", "a")
	wantClash(t, err, "a/b-c", "a-b/c", "to_group")
	wantUnchanged(t, s, before)
	if u, err := s.GetUser(ctx, "z", "b-c"); err != nil || u.Group != "z" {
		t.Errorf("user after a refused transfer: %+v %v", u, err)
	}
}

// insertRaw writes a group and its users with SQL, past the store's
// checks, as a database written by an older thon may hold them.
func insertRaw(t *testing.T, s *Store, group string, users ...string) {
	t.Helper()
	ctx := context.Background()
	ts := formatTime(now())
	res, err := s.DB().ExecContext(ctx, `INSERT INTO groups (name, created_at, updated_at) VALUES (?, ?, ?)`, group, ts, ts)
	if err != nil {
		t.Fatal(err)
	}
	gid, err := res.LastInsertId()
	if err != nil {
		t.Fatal(err)
	}
	for _, u := range users {
		if _, err := s.DB().ExecContext(ctx, `INSERT INTO users (group_id, name, created_at, updated_at) VALUES (?, ?, ?, ?)`,
			gid, u, ts, ts); err != nil {
			t.Fatal(err)
		}
	}
}

func TestCheckDerivedNames(t *testing.T) {
	ctx := context.Background()
	s := openTest(t)
	insertRaw(t, s, "a-b", "c", "d")
	insertRaw(t, s, "x", "y")
	if err := s.CheckDerivedNames(ctx); err != nil {
		t.Fatalf("database without clashes: %v", err)
	}
	insertRaw(t, s, "a", "b-c")
	err := s.CheckDerivedNames(ctx)
	var ce *NameClashError
	if !errors.As(err, &ce) || !errors.Is(err, ErrConflict) {
		t.Fatalf("CheckDerivedNames = %v, want a *NameClashError", err)
	}
	if ce.User != "a/b-c" || ce.Other != "a-b/c" || ce.UserID != 4 || ce.OtherID != 1 || ce.Field != "" {
		t.Errorf("clash = %+v", ce)
	}
	for _, want := range []string{
		"database " + s.Path() + ": ",
		`users "a-b/c" (id 1) and "a/b-c" (id 4) share the container and volume names made from "a-b-c"`,
		"sqlite3 " + s.Path() + ` "UPDATE users SET name = '<new name>' WHERE id = 4"`,
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not contain %q", err, want)
		}
	}
	if strings.Contains(err.Error(), "more such pairs") {
		t.Errorf("one pair reported as more: %v", err)
	}

	// A write that does not touch the pair still goes through; one that
	// makes a second pair is refused.
	if _, err := s.AddUser(ctx, "x", RosterUser{Name: "z"}); err != nil {
		t.Errorf("unrelated AddUser on a database with a clash: %v", err)
	}
	if _, err := s.AddUser(ctx, "a", RosterUser{Name: "b-d"}); err == nil {
		t.Error("AddUser(a, b-d) next to a-b/d was accepted")
	}
	insertRaw(t, s, "p-q", "r")
	insertRaw(t, s, "p", "q-r")
	err = s.CheckDerivedNames(ctx)
	if err == nil || !strings.Contains(err.Error(), `"a-b/c" (id 1) and "a/b-c" (id 4)`) ||
		!strings.Contains(err.Error(), "(and 1 more such pairs)") {
		t.Errorf("two pairs: %v", err)
	}

	// Renaming one of the pair resolves it.
	if _, err := s.DB().ExecContext(ctx, `UPDATE users SET name = 'b-c2' WHERE id = 4`); err != nil {
		t.Fatal(err)
	}
	if _, err := s.DB().ExecContext(ctx, `DELETE FROM groups WHERE name = 'p'`); err != nil {
		t.Fatal(err)
	}
	if err := s.CheckDerivedNames(ctx); err != nil {
		t.Errorf("after the rename: %v", err)
	}
}

// TestLiveSandboxKeepsItsNames: a sandbox keeps the names it was made
// with after its user is moved away, so no other user may take them
// while it lives; once it is terminated they are free.
func TestLiveSandboxKeepsItsNames(t *testing.T) {
	ctx := context.Background()
	s := openTest(t)
	importGroups(t, s, rosterGroup("a-b", "c"), rosterGroup("a"), rosterGroup("other"))
	u, err := s.GetUser(ctx, "a-b", "c")
	if err != nil {
		t.Fatal(err)
	}
	inst, err := s.CreateInstance(ctx, InstanceRecord{Group: "a-b", User: "c", UserID: u.ID, Name: "thon-a-b-c", State: "running", Port: 20001})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.TransferUser(ctx, "a-b", "c", "other"); err != nil {
		t.Fatalf("moving a-b/c away: %v", err)
	}
	before := takeSnapshot(t, s)
	_, err = s.AddUser(ctx, "a", RosterUser{Name: "b-c"})
	var ce *NameClashError
	if !errors.As(err, &ce) || !ce.Sandbox || ce.User != "a/b-c" || ce.Other != "a-b/c" || ce.Field != "name" {
		t.Fatalf("AddUser(a, b-c) beside the live sandbox of a-b/c: %v (%+v), want a clash with the sandbox", err, ce)
	}
	if want := `user "a/b-c" would share the container and volume names of the live sandbox made for "a-b/c" (both made from "a-b-c"): kill that sandbox first`; err.Error() != want {
		t.Errorf("error = %q\nwant    %q", err, want)
	}
	wantUnchanged(t, s, before)
	if _, err := s.TerminateInstance(ctx, inst.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := s.AddUser(ctx, "a", RosterUser{Name: "b-c"}); err != nil {
		t.Errorf("AddUser(a, b-c) once the sandbox is gone: %v", err)
	}
}
