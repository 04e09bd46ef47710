package api

import (
	"context"
	"os"
	"reflect"
	"strings"
	"testing"

	"github.com/thon-dev/thon/store"
)

// groupNames returns the names of the groups and, per group, its users.
func groupNames(t *testing.T, e *testEnv) map[string][]string {
	t.Helper()
	var list groupList
	e.do("GET", "/api/groups", "", nil).wantStatus(t, 200).decode(t, &list)
	out := make(map[string][]string)
	for _, g := range list.Groups {
		users := []string{}
		for _, u := range g.Users {
			users = append(users, u.Name)
		}
		out[g.Name] = users
	}
	return out
}

func TestGroupsCRUD(t *testing.T) {
	e := newTestEnv(t, Options{})

	r := e.do("GET", "/api/groups", "", nil).wantStatus(t, 200)
	if got := strings.TrimSpace(string(r.body)); got != `{"groups":[]}` {
		t.Errorf("empty list = %s, want {\"groups\":[]}", got)
	}

	// Create.
	var g store.Group
	r = e.doJSON("POST", "/api/groups", map[string]string{"name": "alpha", "title": "Team Alpha"}).wantStatus(t, 201)
	r.decode(t, &g)
	if g.Name != "alpha" || g.Title != "Team Alpha" || g.ID == 0 || g.Users == nil || len(g.Users) != 0 {
		t.Errorf("created group = %+v", g)
	}
	if loc := r.header.Get("Location"); loc != "/api/groups/alpha" {
		t.Errorf("Location = %q", loc)
	}
	e.doJSON("POST", "/api/groups", map[string]string{"name": "alpha"}).wantError(t, 409, "")
	e.doJSON("POST", "/api/groups", map[string]string{"name": "bad_name"}).wantError(t, 400, "name", "bad_name")
	e.doJSON("POST", "/api/groups", map[string]string{"title": "no name"}).wantError(t, 400, "name")
	e.doJSON("POST", "/api/groups", map[string]string{"name": "gamma"}).wantStatus(t, 201)

	// Read.
	e.do("GET", "/api/groups/alpha", "", nil).wantStatus(t, 200).decode(t, &g)
	if g.Name != "alpha" || g.Title != "Team Alpha" {
		t.Errorf("GET group = %+v", g)
	}
	e.do("GET", "/api/groups/nope", "", nil).wantError(t, 404, "", "nope")

	// Update.
	e.doJSON("PUT", "/api/groups/alpha", map[string]string{}).wantError(t, 400, "name", "nothing to update")
	e.doJSON("PUT", "/api/groups/alpha", map[string]string{"name": ""}).wantError(t, 400, "name")
	e.doJSON("PUT", "/api/groups/alpha", map[string]string{"name": "gamma"}).wantError(t, 409, "")
	e.doJSON("PUT", "/api/groups/alpha", map[string]string{"name": "Beta"}).wantError(t, 400, "name", "uppercase")
	e.doJSON("PUT", "/api/groups/nope", map[string]string{"title": "x"}).wantError(t, 404, "")
	e.doJSON("PUT", "/api/groups/alpha", map[string]string{"title": "Alphas"}).wantStatus(t, 200).decode(t, &g)
	if g.Name != "alpha" || g.Title != "Alphas" {
		t.Errorf("retitled group = %+v", g)
	}
	e.doJSON("PUT", "/api/groups/alpha", map[string]string{"name": "beta"}).wantStatus(t, 200).decode(t, &g)
	if g.Name != "beta" || g.Title != "Alphas" {
		t.Errorf("renamed group = %+v", g)
	}
	e.do("GET", "/api/groups/alpha", "", nil).wantError(t, 404, "")

	// Users.
	var u store.User
	e.doJSON("POST", "/api/groups/beta/users", map[string]string{"name": "alice", "email": "alice@example.com"}).
		wantStatus(t, 201).decode(t, &u)
	if u.Name != "alice" || u.Group != "beta" || u.Email != "alice@example.com" || u.GroupID != g.ID {
		t.Errorf("added user = %+v", u)
	}
	e.doJSON("POST", "/api/groups/beta/users", map[string]string{"username": "bob"}).wantStatus(t, 201).decode(t, &u)
	if u.Name != "bob" || u.Email != "" {
		t.Errorf("added user (username form) = %+v", u)
	}
	e.doJSON("POST", "/api/groups/beta/users", map[string]string{"name": "carol", "username": "carl"}).
		wantError(t, 400, "username", "differ")
	e.doJSON("POST", "/api/groups/beta/users", map[string]string{"name": "dave", "username": "dave"}).wantStatus(t, 201)
	e.doJSON("POST", "/api/groups/beta/users", map[string]string{"name": "alice"}).wantError(t, 409, "")
	e.doJSON("POST", "/api/groups/beta/users", map[string]string{"name": "-eve"}).wantError(t, 400, "name")
	e.doJSON("POST", "/api/groups/beta/users", map[string]string{"name": "eve", "email": "nope"}).wantError(t, 400, "email")
	e.doJSON("POST", "/api/groups/beta/users", map[string]string{"name": "eve", "group": "x"}).wantError(t, 400, "group")
	e.doJSON("POST", "/api/groups/nope/users", map[string]string{"name": "eve"}).wantError(t, 404, "")
	if got, want := groupNames(t, e), map[string][]string{"beta": {"alice", "bob", "dave"}, "gamma": {}}; !reflect.DeepEqual(got, want) {
		t.Errorf("groups = %v, want %v", got, want)
	}

	// Transfer.
	e.doJSON("POST", "/api/groups/beta/users/alice/transfer", map[string]string{}).wantError(t, 400, "to_group")
	e.doJSON("POST", "/api/groups/beta/users/alice/transfer", map[string]string{"to_group": "nope"}).wantError(t, 404, "")
	e.doJSON("POST", "/api/groups/beta/users/nobody/transfer", map[string]string{"to_group": "gamma"}).wantError(t, 404, "")
	e.doJSON("POST", "/api/groups/beta/users/alice/transfer", map[string]string{"to_group": "gamma"}).
		wantStatus(t, 200).decode(t, &u)
	if u.Name != "alice" || u.Group != "gamma" || u.Email != "alice@example.com" {
		t.Errorf("transferred user = %+v", u)
	}
	e.doJSON("POST", "/api/groups/gamma/users", map[string]string{"name": "bob"}).wantStatus(t, 201)
	e.doJSON("POST", "/api/groups/beta/users/bob/transfer", map[string]string{"to_group": "gamma"}).wantError(t, 409, "")
	if got, want := groupNames(t, e), map[string][]string{"beta": {"bob", "dave"}, "gamma": {"alice", "bob"}}; !reflect.DeepEqual(got, want) {
		t.Errorf("groups after transfer = %v, want %v", got, want)
	}

	// Delete.
	var du deletedUser
	e.do("DELETE", "/api/groups/beta/users/dave", "", nil).wantStatus(t, 200).decode(t, &du)
	if du.Deleted.Name != "dave" || du.Deleted.Group != "beta" {
		t.Errorf("deleted user = %+v", du)
	}
	e.do("DELETE", "/api/groups/beta/users/dave", "", nil).wantError(t, 404, "")
	var dg deletedGroup
	e.do("DELETE", "/api/groups/gamma", "", nil).wantStatus(t, 200).decode(t, &dg)
	if dg.Deleted.Name != "gamma" || len(dg.Deleted.Users) != 2 {
		t.Errorf("deleted group = %+v, want gamma with its 2 users", dg.Deleted)
	}
	e.do("DELETE", "/api/groups/gamma", "", nil).wantError(t, 404, "")
	if got, want := groupNames(t, e), map[string][]string{"beta": {"bob"}}; !reflect.DeepEqual(got, want) {
		t.Errorf("groups after deletes = %v, want %v", got, want)
	}

	// Every change above was audited as the API.
	entries, err := e.store.ListAudit(context.Background(), 100)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) == 0 {
		t.Fatal("no audit entries")
	}
	for _, a := range entries {
		if a.Target == "token/api-tests" {
			continue // the test's own token, made before
		}
		if a.Actor != "api" {
			t.Errorf("audit entry %+v: actor %q, want api", a, a.Actor)
		}
	}
}

// exampleRoster is what the original groups.yaml.example holds.
var exampleRoster = store.Roster{
	EventID: "hackathon-2025-spring",
	Title:   "Spring Hackathon 2025",
	Groups: []store.RosterGroup{
		{Name: "alpha", Title: "Team Alpha", Users: []store.RosterUser{
			{Name: "alice", Email: "alice@example.com"},
			{Name: "bob", Email: "bob@example.com"},
			{Name: "carol"},
		}},
		{Name: "beta", Title: "Team Beta", Users: []store.RosterUser{{Name: "dave"}, {Name: "eve"}}},
		{Name: "gamma", Users: []store.RosterUser{{Name: "frank"}}},
	},
}

func TestGroupsImportExportOriginalExample(t *testing.T) {
	example, err := os.ReadFile("testdata/groups.yaml.example")
	if err != nil {
		t.Fatal(err)
	}
	e := newTestEnv(t, Options{})

	var res store.ImportResult
	e.do("POST", "/api/groups/import", "application/yaml", example).wantStatus(t, 200).decode(t, &res)
	if want := (store.ImportResult{GroupsCreated: 3, UsersCreated: 6}); res != want {
		t.Errorf("first import = %+v, want %+v", res, want)
	}
	// Re-importing changes nothing, whichever accepted form carries it.
	ct, body := multipartBody(t, "file", "groups.yaml", example)
	e.do("POST", "/api/groups/import", ct, body).wantStatus(t, 200).decode(t, &res)
	if res != (store.ImportResult{}) {
		t.Errorf("re-import = %+v, want no changes", res)
	}
	for _, ct := range []string{"text/yaml", "application/x-yaml", "text/plain; charset=utf-8"} {
		e.do("POST", "/api/groups/import", ct, example).wantStatus(t, 200).decode(t, &res)
		if res != (store.ImportResult{}) {
			t.Errorf("re-import as %s = %+v, want no changes", ct, res)
		}
	}

	// YAML export is the original form and reads back to the same roster.
	r := e.do("GET", "/api/groups/export", "", nil).wantStatus(t, 200)
	if ct := r.header.Get("Content-Type"); !strings.HasPrefix(ct, "application/yaml") {
		t.Errorf("export Content-Type = %q", ct)
	}
	exported, err := store.ParseRoster("export", r.body)
	if err != nil {
		t.Fatalf("parsing export: %v\n%s", err, r.body)
	}
	if !reflect.DeepEqual(exported, exampleRoster) {
		t.Errorf("exported roster =\n%+v\nwant\n%+v\nYAML:\n%s", exported, exampleRoster, r.body)
	}
	original, err := store.ParseRoster("groups.yaml.example", example)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(exported, original) {
		t.Errorf("export differs from the original file's roster")
	}
	for _, want := range []string{"event_id: hackathon-2025-spring", "alpha:", "title: Team Alpha", "- carol"} {
		if !strings.Contains(string(r.body), want) {
			t.Errorf("YAML export lacks %q:\n%s", want, r.body)
		}
	}
	if r2 := e.do("GET", "/api/groups/export?format=yaml", "", nil).wantStatus(t, 200); string(r2.body) != string(r.body) {
		t.Error("format=yaml differs from the default export")
	}

	// JSON export.
	var roster store.Roster
	e.do("GET", "/api/groups/export?format=json", "", nil).wantStatus(t, 200).decode(t, &roster)
	if !reflect.DeepEqual(roster, exampleRoster) {
		t.Errorf("JSON export = %+v, want %+v", roster, exampleRoster)
	}
	e.do("GET", "/api/groups/export?format=xml", "", nil).wantError(t, 400, "format", "xml")

	// Exporting and importing into a fresh database gives the same groups.
	e2 := newTestEnv(t, Options{})
	e2.do("POST", "/api/groups/import", "application/yaml", r.body).wantStatus(t, 200).decode(t, &res)
	if want := (store.ImportResult{GroupsCreated: 3, UsersCreated: 6}); res != want {
		t.Errorf("import of the export = %+v, want %+v", res, want)
	}
	if got, want := groupNames(t, e2), groupNames(t, e); !reflect.DeepEqual(got, want) {
		t.Errorf("groups after round trip = %v, want %v", got, want)
	}
}

func TestGroupsImportEmptyExport(t *testing.T) {
	e := newTestEnv(t, Options{})
	r := e.do("GET", "/api/groups/export?format=json", "", nil).wantStatus(t, 200)
	if !strings.Contains(string(r.body), `"groups":[]`) {
		t.Errorf("empty JSON export = %s, want an empty groups array", r.body)
	}
}

func TestGroupsImportIsAllOrNothing(t *testing.T) {
	e := newTestEnv(t, Options{MaxUploadBytes: 4096})
	e.do("POST", "/api/groups/import", "application/yaml", []byte("groups:\n  alpha: [alice]\n")).wantStatus(t, 200)
	before := groupNames(t, e)

	tests := []struct {
		name        string
		contentType string
		body        []byte
		status      int
		field       string
		substrs     []string
	}{
		{"bad user name on line 5", "application/yaml",
			[]byte("groups:\n  beta:\n    users:\n      - dave\n      - Bad_User\n  alpha: [alice, zed]\n"),
			400, "groups.beta.users[1]", []string{"body:5", "Bad_User"}},
		{"bad group name", "application/yaml",
			[]byte("groups:\n  beta: [dave]\n  -gamma: [x]\n"),
			400, "groups.-gamma", []string{"body:3", "-gamma"}},
		{"broken YAML", "application/yaml",
			[]byte("groups:\n  beta: [dave\n  gamma: x\n"),
			400, "", []string{"body:"}},
		{"bad user in multipart", "",
			nil, 400, "groups.beta[0]", []string{"roster.yaml:2", "Dave"}},
		{"multipart without file", "", nil, 400, "file", []string{`missing multipart field "file"`}},
		{"json body", "application/json", []byte(`{"groups": {}}`), 415, "", []string{"application/json"}},
		{"too large", "application/yaml", []byte("groups:\n  beta: [" + strings.Repeat("u, ", 2000) + "]\n"),
			413, "", []string{"limit is 4096 bytes"}},
		{"not UTF-8", "application/yaml", []byte("groups:\n  beta: [\xff\xfe]\n"), 400, "body", []string{"UTF-8"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ct, body := tt.contentType, tt.body
			switch tt.name {
			case "bad user in multipart":
				ct, body = multipartBody(t, "file", "roster.yaml", []byte("groups:\n  beta: [Dave]\n"))
			case "multipart without file":
				ct, body = multipartBody(t, "upload", "roster.yaml", []byte("groups:\n  beta: [dave]\n"))
			}
			e.do("POST", "/api/groups/import", ct, body).wantError(t, tt.status, tt.field, tt.substrs...)
			if got := groupNames(t, e); !reflect.DeepEqual(got, before) {
				t.Errorf("groups after a failed import = %v, want %v", got, before)
			}
		})
	}
}

// TestDerivedNameClash checks the answer to a write that would give two
// users the same container and volume names: group a-b with user c and
// group a with user b-c both make thon-a-b-c.
func TestDerivedNameClash(t *testing.T) {
	e := newTestEnv(t, Options{})
	for _, g := range []string{"a-b", "a", "z", "m-n", "w"} {
		e.doJSON("POST", "/api/groups", map[string]string{"name": g}).wantStatus(t, 201)
	}
	e.doJSON("POST", "/api/groups/a-b/users", map[string]string{"name": "c"}).wantStatus(t, 201)
	e.doJSON("POST", "/api/groups/z/users", map[string]string{"name": "b-c"}).wantStatus(t, 201)
	e.doJSON("POST", "/api/groups/m-n/users", map[string]string{"name": "o"}).wantStatus(t, 201)
	e.doJSON("POST", "/api/groups/w/users", map[string]string{"name": "n-o"}).wantStatus(t, 201)
	before := groupNames(t, e)

	both := []string{`user "a/b-c" would share the container and volume names of user "a-b/c"`, `"a-b-c"`}
	e.doJSON("POST", "/api/groups/a/users", map[string]string{"name": "b-c"}).wantError(t, 409, "name", both...)
	e.doJSON("POST", "/api/groups/z/users/b-c/transfer", map[string]string{"to_group": "a"}).
		wantError(t, 409, "to_group", both...)
	e.doJSON("PUT", "/api/groups/w", map[string]string{"name": "m"}).wantError(t, 409, "name",
		`user "m/n-o" would share the container and volume names of user "m-n/o"`, `"m-n-o"`)
	// The import would move b-c from z (not in the file) to a.
	e.do("POST", "/api/groups/import", "application/yaml", []byte("groups:\n  a:\n    users: [b-c]\n")).
		wantError(t, 409, "groups[0].users[0].name", both...)

	if after := groupNames(t, e); !reflect.DeepEqual(after, before) {
		t.Errorf("refused writes changed the groups: %v, want %v", after, before)
	}
}
