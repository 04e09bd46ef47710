package store

import (
	"context"
	"slices"
	"testing"
)

func TestUsersByEmail(t *testing.T) {
	s := openTest(t)
	ctx := WithActor(context.Background(), "test")
	for _, g := range []string{"alpha", "beta"} {
		if _, err := s.CreateGroup(ctx, g, ""); err != nil {
			t.Fatal(err)
		}
	}
	for _, u := range []struct{ group, name, email string }{
		{"alpha", "alice", "Alice@Example.org"},
		{"alpha", "bob", ""},
		{"alpha", "jorg", "JÖRG@example.org"},
		{"beta", "carol", "SHARED@example.org"},
		{"alpha", "carol", "shared@example.org"},
	} {
		if _, err := s.AddUser(ctx, u.group, RosterUser{Name: u.name, Email: u.email}); err != nil {
			t.Fatal(err)
		}
	}
	for i, tc := range []struct {
		email string
		want  []string
	}{
		{"alice@example.org", []string{"alpha/alice"}},
		{"ALICE@EXAMPLE.ORG", []string{"alpha/alice"}},
		{" alice@example.org ", []string{"alpha/alice"}},
		{"jörg@example.org", []string{"alpha/jorg"}}, // folded beyond ASCII
		{"shared@example.org", []string{"alpha/carol", "beta/carol"}},
		{"nobody@example.org", []string{}},
		{"alice@example.or", []string{}},
		{"", []string{}}, // bob's empty address matches nothing
	} {
		users, err := s.UsersByEmail(ctx, tc.email)
		if err != nil {
			t.Fatalf("case %d: %v", i, err)
		}
		got := []string{}
		for _, u := range users {
			if u.ID == 0 {
				t.Errorf("case %d: user without id %+v", i, u)
			}
			got = append(got, u.Group+"/"+u.Name)
		}
		if !slices.Equal(got, tc.want) {
			t.Errorf("case %d: UsersByEmail(%q) = %v, want %v", i, tc.email, got, tc.want)
		}
	}
}
