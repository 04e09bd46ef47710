package store

import (
	"context"
	"errors"
	"reflect"
	"strings"
	"testing"
)

// snapshot is everything an import may touch, for "changed nothing" checks.
type snapshot struct {
	Roster Roster
	Groups []Group
	Audit  int
	Events int
}

func takeSnapshot(t *testing.T, s *Store) snapshot {
	t.Helper()
	ctx := context.Background()
	var snap snapshot
	var err error
	if snap.Roster, err = s.ExportRoster(ctx); err != nil {
		t.Fatal(err)
	}
	if snap.Groups, err = s.ListGroups(ctx); err != nil {
		t.Fatal(err)
	}
	if err := s.DB().QueryRowContext(ctx, `SELECT count(*) FROM audit`).Scan(&snap.Audit); err != nil {
		t.Fatal(err)
	}
	if err := s.DB().QueryRowContext(ctx, `SELECT count(*) FROM events`).Scan(&snap.Events); err != nil {
		t.Fatal(err)
	}
	return snap
}

func TestImportExampleIdempotent(t *testing.T) {
	s := openTest(t)
	ctx := WithActor(context.Background(), "api")
	r, err := ParseRoster("groups.yaml", readTestdata(t, "groups.yaml.example"))
	if err != nil {
		t.Fatal(err)
	}
	res, err := s.ImportRoster(ctx, r)
	if err != nil {
		t.Fatal(err)
	}
	if want := (ImportResult{GroupsCreated: 3, UsersCreated: 6}); res != want {
		t.Errorf("first import: %+v, want %+v", res, want)
	}
	got, err := s.ExportRoster(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !rosterEqual(got, exampleRoster) {
		t.Errorf("export after import:\n%+v\nwant\n%+v", got, exampleRoster)
	}
	g, err := s.GetGroup(ctx, "alpha")
	if err != nil {
		t.Fatal(err)
	}
	if g.EventID != "hackathon-2025-spring" || g.Title != "Team Alpha" {
		t.Errorf("group alpha: %+v", g)
	}

	before := takeSnapshot(t, s)
	res, err = s.ImportRoster(ctx, r)
	if err != nil {
		t.Fatal(err)
	}
	if res != (ImportResult{}) {
		t.Errorf("re-import counted %+v", res)
	}
	if after := takeSnapshot(t, s); !reflect.DeepEqual(before, after) {
		t.Errorf("re-import changed the database:\n%+v\n%+v", before, after)
	}

	entries, _ := s.ListAudit(ctx, 0)
	if len(entries) != 1 || entries[0].Action != "roster.import" || entries[0].Target != "event:hackathon-2025-spring" ||
		entries[0].Actor != "api" || !strings.Contains(entries[0].Detail, `"groups_created":3`) {
		t.Errorf("audit: %+v", entries)
	}

	// export -> marshal -> parse -> import into a new database: same content
	out, err := MarshalRoster(got)
	if err != nil {
		t.Fatal(err)
	}
	again, err := ParseRoster("export.yaml", out)
	if err != nil {
		t.Fatal(err)
	}
	s2 := openTest(t)
	if _, err := s2.ImportRoster(ctx, again); err != nil {
		t.Fatal(err)
	}
	got2, _ := s2.ExportRoster(ctx)
	if !reflect.DeepEqual(got, got2) {
		t.Errorf("export round trip:\n%+v\n%+v", got, got2)
	}
}

func TestImportThonYAMLThenGroupsYAML(t *testing.T) {
	s := openTest(t)
	ctx := context.Background()
	flat, err := ParseRoster("thon.yaml", readTestdata(t, "thon.yaml.example"))
	if err != nil {
		t.Fatal(err)
	}
	if res, err := s.ImportRoster(ctx, flat); err != nil || res != (ImportResult{GroupsCreated: 3, UsersCreated: 6}) {
		t.Fatalf("flat import: %+v %v", res, err)
	}
	full, err := ParseRoster("groups.yaml", readTestdata(t, "groups.yaml.example"))
	if err != nil {
		t.Fatal(err)
	}
	// titles, event and two emails are added: 3 groups and 2 users updated
	res, err := s.ImportRoster(ctx, full)
	if err != nil {
		t.Fatal(err)
	}
	if want := (ImportResult{GroupsUpdated: 3, UsersUpdated: 2}); res != want {
		t.Errorf("got %+v, want %+v", res, want)
	}
	// the flat form again has no titles nor emails: they are kept
	if res, err := s.ImportRoster(ctx, flat); err != nil || res != (ImportResult{}) {
		t.Errorf("flat re-import: %+v %v", res, err)
	}
	got, _ := s.ExportRoster(ctx)
	if !rosterEqual(got, exampleRoster) {
		t.Errorf("got %+v", got)
	}
}

func TestImportMovesUsers(t *testing.T) {
	s := openTest(t)
	ctx := context.Background()
	if _, err := s.ImportRoster(ctx, Roster{Groups: []RosterGroup{
		{Name: "alpha", Users: []RosterUser{{Name: "alice"}, {Name: "bob"}}},
		{Name: "beta", Users: []RosterUser{{Name: "carol"}}},
	}}); err != nil {
		t.Fatal(err)
	}
	bob, _ := s.GetUser(ctx, "alpha", "bob")
	// bob moves to beta; alice stays (listed in alpha); dave is new
	res, err := s.ImportRoster(ctx, Roster{Groups: []RosterGroup{
		{Name: "alpha", Users: []RosterUser{{Name: "alice"}}},
		{Name: "beta", Users: []RosterUser{{Name: "bob", Email: "bob@example.com"}, {Name: "dave"}}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	if want := (ImportResult{UsersCreated: 1, UsersMoved: 1}); res != want {
		t.Errorf("got %+v, want %+v", res, want)
	}
	moved, err := s.GetUser(ctx, "beta", "bob")
	if err != nil {
		t.Fatal(err)
	}
	if moved.ID != bob.ID || moved.Email != "bob@example.com" {
		t.Errorf("moved user %+v (was id %d)", moved, bob.ID)
	}
	if _, err := s.GetUser(ctx, "alpha", "bob"); !errors.Is(err, ErrNotFound) {
		t.Errorf("bob still in alpha: %v", err)
	}
	// a name listed in two groups: the existing user stays, a second is created
	res, err = s.ImportRoster(ctx, Roster{Groups: []RosterGroup{
		{Name: "alpha", Users: []RosterUser{{Name: "alice"}}},
		{Name: "gamma", Users: []RosterUser{{Name: "alice"}}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	if want := (ImportResult{GroupsCreated: 1, UsersCreated: 1}); res != want {
		t.Errorf("got %+v, want %+v", res, want)
	}
}

func TestImportInvalidChangesNothing(t *testing.T) {
	s := openTest(t)
	ctx := context.Background()
	if _, err := s.ImportRoster(ctx, exampleRoster); err != nil {
		t.Fatal(err)
	}
	before := takeSnapshot(t, s)
	for i, tc := range []struct {
		r     Roster
		field string
	}{
		{Roster{Groups: []RosterGroup{{Name: "delta", Users: []RosterUser{{Name: "ok"}, {Name: "Not_OK"}}}}}, "groups[0].users[1].name"},
		{Roster{Groups: []RosterGroup{{Name: "delta"}, {Name: "delta"}}}, "groups[1].name"},
		{Roster{Groups: []RosterGroup{{Name: "alpha", Users: []RosterUser{{Name: "zed", Email: "nope"}}}}}, "groups[0].users[0].email"},
	} {
		_, err := s.ImportRoster(ctx, tc.r)
		var fe *FieldError
		if !errors.As(err, &fe) || fe.Field != tc.field {
			t.Errorf("case %d: got %v, want a *FieldError for %s", i, err, tc.field)
		}
	}
	if after := takeSnapshot(t, s); !reflect.DeepEqual(before, after) {
		t.Errorf("invalid import changed the database")
	}
}

// TestImportFailureRollsBack makes the database refuse one row halfway
// through an import (a trigger), and checks that nothing of it remains.
func TestImportFailureRollsBack(t *testing.T) {
	s := openTest(t)
	ctx := context.Background()
	if _, err := s.ImportRoster(ctx, exampleRoster); err != nil {
		t.Fatal(err)
	}
	if _, err := s.DB().ExecContext(ctx, `CREATE TRIGGER refuse BEFORE INSERT ON users WHEN NEW.name = 'boom'
		BEGIN SELECT RAISE(ABORT, 'refused by test trigger'); END`); err != nil {
		t.Fatal(err)
	}
	before := takeSnapshot(t, s)
	_, err := s.ImportRoster(ctx, Roster{EventID: "other-event", Title: "Other", Groups: []RosterGroup{
		{Name: "alpha", Title: "New Title", Users: []RosterUser{{Name: "alice", Email: "new@example.com"}, {Name: "new1"}}},
		{Name: "delta", Users: []RosterUser{{Name: "dave"}, {Name: "new2"}}}, // dave would move
		{Name: "omega", Users: []RosterUser{{Name: "boom"}}},
	}})
	if err == nil || !strings.Contains(err.Error(), "refused by test trigger") {
		t.Fatalf("got %v, want the trigger's error", err)
	}
	if after := takeSnapshot(t, s); !reflect.DeepEqual(before, after) {
		t.Errorf("failed import left changes:\n%+v\n%+v", before, after)
	}
}

func TestImportEvent(t *testing.T) {
	s := openTest(t)
	ctx := context.Background()
	if _, err := s.ImportRoster(ctx, Roster{EventID: "ev1", Title: "First", Groups: []RosterGroup{}}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.ImportRoster(ctx, Roster{EventID: "ev1", Title: "Renamed", Groups: []RosterGroup{}}); err != nil {
		t.Fatal(err)
	}
	r, err := s.ExportRoster(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if r.EventID != "ev1" || r.Title != "Renamed" || len(r.Groups) != 0 || r.Groups == nil {
		t.Errorf("export: %+v", r)
	}
	var n int
	if err := s.DB().QueryRowContext(ctx, `SELECT count(*) FROM events`).Scan(&n); err != nil || n != 1 {
		t.Errorf("%d events, %v", n, err)
	}
}
