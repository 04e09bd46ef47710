package store

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func readTestdata(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// exampleRoster is testdata/groups.yaml.example, the original project's file.
var exampleRoster = Roster{
	EventID: "hackathon-2025-spring",
	Title:   "Spring Hackathon 2025",
	Groups: []RosterGroup{
		{Name: "alpha", Title: "Team Alpha", Users: []RosterUser{
			{Name: "alice", Email: "alice@example.com"},
			{Name: "bob", Email: "bob@example.com"},
			{Name: "carol"},
		}},
		{Name: "beta", Title: "Team Beta", Users: []RosterUser{{Name: "dave"}, {Name: "eve"}}},
		{Name: "gamma", Users: []RosterUser{{Name: "frank"}}},
	},
}

func TestParseRosterOriginalExample(t *testing.T) {
	r, err := ParseRoster("groups.yaml", readTestdata(t, "groups.yaml.example"))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(r, exampleRoster) {
		t.Errorf("got %+v\nwant %+v", r, exampleRoster)
	}
}

func TestParseRosterThonYAML(t *testing.T) {
	// a whole thon.yaml: the other sections are ignored, groups is flat
	r, err := ParseRoster("thon.yaml", readTestdata(t, "thon.yaml.example"))
	if err != nil {
		t.Fatal(err)
	}
	want := Roster{Groups: []RosterGroup{
		{Name: "alpha", Users: []RosterUser{{Name: "alice"}, {Name: "bob"}, {Name: "carol"}}},
		{Name: "beta", Users: []RosterUser{{Name: "dave"}, {Name: "eve"}}},
		{Name: "gamma", Users: []RosterUser{{Name: "frank"}}},
	}}
	if !reflect.DeepEqual(r, want) {
		t.Errorf("got %+v\nwant %+v", r, want)
	}
}

func TestParseRosterForms(t *testing.T) {
	for i, tc := range []struct {
		in   string
		want Roster
	}{
		{
			// the older root groups.yaml form
			in: "groups: {alpha: {users: [alice, bob]}, beta: {users: [dave]}}",
			want: Roster{Groups: []RosterGroup{
				{Name: "alpha", Users: []RosterUser{{Name: "alice"}, {Name: "bob"}}},
				{Name: "beta", Users: []RosterUser{{Name: "dave"}}},
			}},
		},
		{
			// null groups, null users, users given by username, file order kept
			in: "groups:\n  zeta:\n  alpha: ~\n  mid:\n    title: Mid\n    users:\n  last:\n    users:\n      - username: u1\n        email: u1@example.com\n      - {name: u2, email: ~}\n",
			want: Roster{Groups: []RosterGroup{
				{Name: "zeta", Users: []RosterUser{}},
				{Name: "alpha", Users: []RosterUser{}},
				{Name: "mid", Title: "Mid", Users: []RosterUser{}},
				{Name: "last", Users: []RosterUser{{Name: "u1", Email: "u1@example.com"}, {Name: "u2"}}},
			}},
		},
		{in: "groups:", want: Roster{Groups: []RosterGroup{}}},
		{in: "groups: {}\nevent_id: 2025\ntitle: ~", want: Roster{EventID: "2025", Groups: []RosterGroup{}}},
		{
			// numeric names are names; anchors and aliases resolve
			in: "base: &team [a1, b2]\ngroups:\n  g1: *team\n  g2: [007]\n",
			want: Roster{Groups: []RosterGroup{
				{Name: "g1", Users: []RosterUser{{Name: "a1"}, {Name: "b2"}}},
				{Name: "g2", Users: []RosterUser{{Name: "007"}}},
			}},
		},
		{
			// same user name in two groups is allowed
			in: "groups: {a: [x], b: [x]}",
			want: Roster{Groups: []RosterGroup{
				{Name: "a", Users: []RosterUser{{Name: "x"}}},
				{Name: "b", Users: []RosterUser{{Name: "x"}}},
			}},
		},
	} {
		got, err := ParseRoster("g.yaml", []byte(tc.in))
		if err != nil {
			t.Errorf("case %d: %v", i, err)
			continue
		}
		if !reflect.DeepEqual(got, tc.want) {
			t.Errorf("case %d: got %+v\nwant %+v", i, got, tc.want)
		}
	}
}

// badRosters are invalid groups files: each error must name the file and
// line, and the field of the offending entry.
var badRosters = []struct {
	in    string
	field string
	msg   string // Msg must start with this
	has   string // and contain this
}{
	{
		in:    "groups:\n  alpha:\n    users:\n      - alice\n      - bob\n      - Bob_1\n",
		field: "groups.alpha.users[2]", msg: "groups.yaml:6: ", has: `invalid user name "Bob_1"`,
	},
	{
		in:    "groups:\n  alpha:\n    users: [Alice]\n",
		field: "groups.alpha.users[0]", msg: "groups.yaml:3: ", has: `uppercase letters are not allowed (use "alice")`,
	},
	{
		in:    "groups:\n  alpha: [alice, bob, alice]\n",
		field: "groups.alpha[2]", msg: "groups.yaml:2: ", has: `duplicate user "alice"`,
	},
	{
		in:    "groups:\n  alpha:\n    users:\n      - alice\n      - name: alice\n",
		field: "groups.alpha.users[1]", msg: "groups.yaml:5: ", has: `duplicate user "alice" (first at line 4)`,
	},
	{
		in:    "groups:\n  alpha:\n    users:\n      - email: x@example.com\n",
		field: "groups.alpha.users[0]", msg: "groups.yaml:4: ", has: `user entry has no "name"`,
	},
	{
		in:    "groups:\n  alpha:\n    users:\n      - name: bob\n        email: nope\n",
		field: "groups.alpha.users[0].email", msg: "groups.yaml:5: ", has: `invalid email "nope"`,
	},
	{
		in:    "groups:\n  alpha:\n    users:\n      - name: bob\n        role: admin\n",
		field: "groups.alpha.users[0].role", msg: "groups.yaml:5: ", has: `unknown key "role"`,
	},
	{
		in:    "groups:\n  alpha:\n    name: x\n",
		field: "groups.alpha.name", msg: "groups.yaml:3: ", has: `unknown key "name" in group "alpha"`,
	},
	{
		in:    "groups:\n  alpha: {users: []}\n  alpha: {users: []}\n",
		field: "groups.alpha", msg: "groups.yaml:3: ", has: `duplicate group "alpha" (first at line 2)`,
	},
	{
		in:    "groups:\n  Team_A: [x]\n",
		field: "groups.Team_A", msg: "groups.yaml:2: ", has: `invalid group name "Team_A"`,
	},
	{
		in:    "groups:\n  -bad: [x]\n",
		field: "groups.-bad", msg: "groups.yaml:2: ", has: `must not start or end with '-'`,
	},
	{
		in:    "groups:\n  " + strings.Repeat("a", 64) + ": [x]\n",
		field: "groups." + strings.Repeat("a", 64), msg: "groups.yaml:2: ", has: "longer than 63 characters",
	},
	{
		in:    "groups:\n  alpha: just-a-string\n",
		field: "groups.alpha", msg: "groups.yaml:2: ", has: "expected a mapping (title, users), a list of users or nothing",
	},
	{
		in:    "groups:\n  alpha:\n    users: alice\n",
		field: "groups.alpha.users", msg: "groups.yaml:3: ", has: "expected a list of users",
	},
	{
		in:    "groups:\n  alpha:\n    users:\n      - [a, b]\n",
		field: "groups.alpha.users[0]", msg: "groups.yaml:4: ", has: "got a list",
	},
	{
		in:    "groups:\n  alpha:\n    users:\n      - true\n",
		field: "groups.alpha.users[0]", msg: "groups.yaml:4: ", has: "got a boolean",
	},
	{
		in:    "groups:\n  alpha:\n    users:\n      - name: {x: 1}\n",
		field: "groups.alpha.users[0].name", msg: "groups.yaml:4: ", has: "expected a user name, got a mapping",
	},
	{
		in:    "groups:\n  alpha:\n    users:\n      - name: a\n        username: b\n",
		field: "groups.alpha.users[0].username", msg: "groups.yaml:5: ", has: "both name and username",
	},
	{
		in:    "groups:\n  alpha:\n    title: [x]\n",
		field: "groups.alpha.title", msg: "groups.yaml:3: ", has: "expected a string, got a list",
	},
	{
		in:    "groups:\n  alpha:\n    title: \"a\\nb\"\n",
		field: "groups.alpha.title", msg: "groups.yaml:3: ", has: "must not contain control characters",
	},
	{
		in:    "groups: [alpha, beta]\n",
		field: "groups", msg: "groups.yaml:1: ", has: "expected a mapping of group names, got a list",
	},
	{
		in:    "event_id: [1]\ngroups: {}\n",
		field: "event_id", msg: "groups.yaml:1: ", has: "expected a string",
	},
	{
		in:    "title: a\ntitle: b\ngroups: {}\n",
		field: "title", msg: "groups.yaml:2: ", has: `duplicate key "title"`,
	},
	{
		in:    "sandbox: {}\nalpha: [alice]\n",
		field: "groups", msg: "groups.yaml:1: ", has: `no "groups" key`,
	},
	{
		in:    "- alice\n- bob\n",
		field: "", msg: "groups.yaml:1: ", has: "expected a mapping",
	},
	{
		in:    "groups:\n  alpha: [alice\n",
		field: "", msg: "groups.yaml:", has: "did not find expected",
	},
	{
		in:    "groups:\n  alpha:\n\tusers: []\n",
		field: "", msg: "groups.yaml:3: ", has: "does not allow tabs",
	},
	{
		in:    "",
		field: "", msg: "groups.yaml: ", has: "empty file",
	},
	{
		in:    "groups: {}\n---\ngroups: {}\n",
		field: "", msg: "groups.yaml:2: ", has: "more than one YAML document",
	},
}

func TestParseRosterErrors(t *testing.T) {
	for i, tc := range badRosters {
		_, err := ParseRoster("groups.yaml", []byte(tc.in))
		var fe *FieldError
		if !errors.As(err, &fe) {
			t.Errorf("case %d: got %v (%T), want a *FieldError", i, err, err)
			continue
		}
		if fe.Field != tc.field {
			t.Errorf("case %d: field %q, want %q (%v)", i, fe.Field, tc.field, err)
		}
		if !strings.HasPrefix(fe.Msg, tc.msg) || !strings.Contains(fe.Msg, tc.has) {
			t.Errorf("case %d: msg %q, want prefix %q containing %q", i, fe.Msg, tc.msg, tc.has)
		}
		if tc.field != "" && err.Error() != tc.field+": "+fe.Msg {
			t.Errorf("case %d: Error() = %q", i, err.Error())
		}
	}
}

func TestValidateName(t *testing.T) {
	for i, tc := range []struct {
		name string
		ok   bool
		has  string
	}{
		{"alice", true, ""},
		{"a", true, ""},
		{"0", true, ""},
		{"team-7", true, ""},
		{strings.Repeat("x", 63), true, ""},
		{"", false, "must not be empty"},
		{strings.Repeat("x", 64), false, "longer than 63"},
		{"Alice", false, `use "alice"`},
		{"ALICE-1", false, `use "alice-1"`},
		{"bob_1", false, `character '_' at position 4`},
		{"a.b", false, `character '.'`},
		{"é", false, `character 'é'`},
		{"-a", false, "must not start or end with '-'"},
		{"a-", false, "must not start or end with '-'"},
		{"a b", false, `character ' '`},
	} {
		err := ValidateName("name", tc.name)
		if tc.ok {
			if err != nil {
				t.Errorf("case %d: %q: unexpected error %v", i, tc.name, err)
			}
			continue
		}
		var fe *FieldError
		if !errors.As(err, &fe) || fe.Field != "name" || !strings.Contains(fe.Msg, tc.has) {
			t.Errorf("case %d: %q: got %v, want a *FieldError for name containing %q", i, tc.name, err, tc.has)
		}
	}
}

func TestMarshalRoster(t *testing.T) {
	b, err := MarshalRoster(exampleRoster)
	if err != nil {
		t.Fatal(err)
	}
	want := `event_id: hackathon-2025-spring
title: Spring Hackathon 2025
groups:
  alpha:
    title: Team Alpha
    users:
      - name: alice
        email: alice@example.com
      - name: bob
        email: bob@example.com
      - carol
  beta:
    title: Team Beta
    users:
      - dave
      - eve
  gamma:
    users:
      - frank
`
	if string(b) != want {
		t.Errorf("got\n%s\nwant\n%s", b, want)
	}

	empty, err := MarshalRoster(Roster{})
	if err != nil {
		t.Fatal(err)
	}
	if string(empty) != "groups: {}\n" {
		t.Errorf("empty roster: got %q", empty)
	}
}

func TestRosterRoundTrip(t *testing.T) {
	inputs := [][]byte{
		readTestdata(t, "groups.yaml.example"),
		readTestdata(t, "thon.yaml.example"),
		[]byte("title: \"yes\"\nevent_id: \"null\"\ngroups:\n  a: {title: '123', users: [{name: '1e3', email: 'a:b@c'}]}\n  b:\n"),
		[]byte("groups:\n  x:\n    title: \"  spaced #not-a-comment: 'q' \\\"d\\\" é  \"\n    users: [true-ish, \"0x10\"]\n"),
	}
	for i, in := range inputs {
		r, err := ParseRoster("in.yaml", in)
		if err != nil {
			t.Errorf("case %d: %v", i, err)
			continue
		}
		out, err := MarshalRoster(r)
		if err != nil {
			t.Errorf("case %d: %v", i, err)
			continue
		}
		back, err := ParseRoster("out.yaml", out)
		if err != nil {
			t.Errorf("case %d: marshaled roster does not parse: %v\n%s", i, err, out)
			continue
		}
		if !reflect.DeepEqual(back, r) {
			t.Errorf("case %d: round trip changed the roster:\n%+v\n%+v\n%s", i, r, back, out)
		}
	}
}

func TestValidateRoster(t *testing.T) {
	for i, tc := range []struct {
		r     Roster
		field string
	}{
		{Roster{Groups: []RosterGroup{{Name: "Bad"}}}, "groups[0].name"},
		{Roster{Groups: []RosterGroup{{Name: "a"}, {Name: "a"}}}, "groups[1].name"},
		{Roster{Groups: []RosterGroup{{Name: "a", Users: []RosterUser{{Name: "x"}, {Name: ""}}}}}, "groups[0].users[1].name"},
		{Roster{Groups: []RosterGroup{{Name: "a", Users: []RosterUser{{Name: "x"}, {Name: "x"}}}}}, "groups[0].users[1].name"},
		{Roster{Groups: []RosterGroup{{Name: "a", Users: []RosterUser{{Name: "x", Email: "x"}}}}}, "groups[0].users[0].email"},
		{Roster{Groups: []RosterGroup{{Name: "a", Title: "\x00"}}}, "groups[0].title"},
		{Roster{EventID: "a\nb"}, "event_id"},
		{Roster{Title: strings.Repeat("t", 201)}, "title"},
	} {
		err := validateRoster(tc.r)
		var fe *FieldError
		if !errors.As(err, &fe) || fe.Field != tc.field {
			t.Errorf("case %d: got %v, want a *FieldError for %s", i, err, tc.field)
		}
	}
	if err := validateRoster(exampleRoster); err != nil {
		t.Errorf("example roster: %v", err)
	}
}

func FuzzParseRoster(f *testing.F) {
	for _, name := range []string{"groups.yaml.example", "thon.yaml.example"} {
		f.Add(readTestdata(f, name))
	}
	for _, tc := range badRosters {
		f.Add([]byte(tc.in))
	}
	f.Add([]byte("groups: {a: [x], b: {title: T, users: [{username: y, email: y@z}]}}"))
	f.Fuzz(func(t *testing.T, in []byte) {
		r, err := ParseRoster("fuzz.yaml", in)
		if err != nil {
			var fe *FieldError
			if !errors.As(err, &fe) {
				t.Fatalf("error %v is not a *FieldError", err)
			}
			if !strings.HasPrefix(fe.Msg, "fuzz.yaml") {
				t.Fatalf("error %q does not name the file", fe.Msg)
			}
			return
		}
		if err := validateRoster(r); err != nil {
			t.Fatalf("parsed roster does not validate: %v", err)
		}
		out, err := MarshalRoster(r)
		if err != nil {
			t.Fatalf("marshal: %v", err)
		}
		back, err := ParseRoster("out.yaml", out)
		if err != nil {
			t.Fatalf("marshaled roster does not parse: %v\n%s", err, out)
		}
		if !reflect.DeepEqual(back, r) {
			t.Fatalf("round trip changed the roster:\n%#v\n%#v\n%s", r, back, out)
		}
	})
}
