package store

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

func TestGroupCRUD(t *testing.T) {
	s := openTest(t)
	ctx := WithActor(context.Background(), "api")

	g, err := s.CreateGroup(ctx, "alpha", "Team Alpha")
	if err != nil {
		t.Fatal(err)
	}
	if g.ID == 0 || g.Name != "alpha" || g.Title != "Team Alpha" || g.Users == nil || g.CreatedAt.IsZero() {
		t.Errorf("created %+v", g)
	}
	if _, err := s.CreateGroup(ctx, "alpha", ""); !errors.Is(err, ErrConflict) {
		t.Errorf("duplicate group: got %v, want ErrConflict", err)
	}
	if _, err := s.CreateGroup(ctx, "beta", "Team Beta"); err != nil {
		t.Fatal(err)
	}

	// rename + retitle
	title := "Team A"
	g2, err := s.UpdateGroup(ctx, "alpha", GroupUpdate{Name: "team-a", Title: &title})
	if err != nil {
		t.Fatal(err)
	}
	if g2.ID != g.ID || g2.Name != "team-a" || g2.Title != "Team A" {
		t.Errorf("updated %+v", g2)
	}
	if _, err := s.GetGroup(ctx, "alpha"); !errors.Is(err, ErrNotFound) {
		t.Errorf("old name: got %v, want ErrNotFound", err)
	}
	if _, err := s.UpdateGroup(ctx, "team-a", GroupUpdate{Name: "beta"}); !errors.Is(err, ErrConflict) {
		t.Errorf("rename onto existing: got %v, want ErrConflict", err)
	}
	if _, err := s.UpdateGroup(ctx, "nope", GroupUpdate{Name: "x"}); !errors.Is(err, ErrNotFound) {
		t.Errorf("update missing: got %v, want ErrNotFound", err)
	}
	// keep the name, only the title
	empty := ""
	if g3, err := s.UpdateGroup(ctx, "team-a", GroupUpdate{Name: "", Title: &empty}); err != nil || g3.Name != "team-a" || g3.Title != "" {
		t.Errorf("retitle: %+v %v", g3, err)
	}

	groups, err := s.ListGroups(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(groups) != 2 || groups[0].Name != "beta" || groups[1].Name != "team-a" {
		t.Errorf("list = %+v", groups)
	}

	if _, err := s.AddUser(ctx, "team-a", RosterUser{Name: "zed"}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.AddUser(ctx, "team-a", RosterUser{Name: "amy", Email: "amy@example.com"}); err != nil {
		t.Fatal(err)
	}
	del, err := s.DeleteGroup(ctx, "team-a")
	if err != nil {
		t.Fatal(err)
	}
	if del.Name != "team-a" || len(del.Users) != 2 || del.Users[0].Name != "amy" {
		t.Errorf("deleted %+v", del)
	}
	users, err := s.ListUsers(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var rows int
	if err := s.DB().QueryRowContext(ctx, `SELECT count(*) FROM users`).Scan(&rows); err != nil {
		t.Fatal(err)
	}
	if len(users) != 0 || rows != 0 {
		t.Errorf("users of a deleted group remain: %+v (%d rows)", users, rows)
	}
	if _, err := s.DeleteGroup(ctx, "team-a"); !errors.Is(err, ErrNotFound) {
		t.Errorf("delete twice: got %v, want ErrNotFound", err)
	}

	entries, err := s.ListAudit(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	var actions []string
	for _, e := range entries {
		if e.Actor != "api" {
			t.Errorf("audit actor %q, want api", e.Actor)
		}
		actions = append(actions, e.Action+" "+e.Target)
	}
	want := []string{
		"group.delete group:team-a",
		"user.add user:team-a/amy",
		"user.add user:team-a/zed",
		"group.update group:team-a",
		"group.update group:alpha",
		"group.create group:beta",
		"group.create group:alpha",
	}
	if strings.Join(actions, "\n") != strings.Join(want, "\n") {
		t.Errorf("audit:\n%s\nwant:\n%s", strings.Join(actions, "\n"), strings.Join(want, "\n"))
	}
}

func TestGroupBadInput(t *testing.T) {
	s := openTest(t)
	ctx := context.Background()
	if _, err := s.CreateGroup(ctx, "alpha", ""); err != nil {
		t.Fatal(err)
	}
	for i, tc := range []struct {
		fn    func() error
		field string
	}{
		{func() error { _, err := s.CreateGroup(ctx, "Alpha", ""); return err }, "name"},
		{func() error { _, err := s.CreateGroup(ctx, "", ""); return err }, "name"},
		{func() error { _, err := s.CreateGroup(ctx, "ok", "a\nb"); return err }, "title"},
		{func() error { _, err := s.UpdateGroup(ctx, "alpha", GroupUpdate{Name: "a_b"}); return err }, "name"},
		{func() error {
			bad := "\x07"
			_, err := s.UpdateGroup(ctx, "alpha", GroupUpdate{Name: "", Title: &bad})
			return err
		}, "title"},
		{func() error { _, err := s.AddUser(ctx, "alpha", RosterUser{Name: "Bob"}); return err }, "name"},
		{func() error { _, err := s.AddUser(ctx, "alpha", RosterUser{Name: "bob", Email: "bob"}); return err }, "email"},
	} {
		err := tc.fn()
		var fe *FieldError
		if !errors.As(err, &fe) || fe.Field != tc.field {
			t.Errorf("case %d: got %v, want a *FieldError for %s", i, err, tc.field)
		}
	}
	groups, err := s.ListGroups(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(groups) != 1 || groups[0].Name != "alpha" || len(groups[0].Users) != 0 {
		t.Errorf("bad input changed the database: %+v", groups)
	}
	entries, _ := s.ListAudit(ctx, 0)
	if len(entries) != 1 || entries[0].Actor != "system" {
		t.Errorf("audit after bad input: %+v", entries)
	}
}

func TestUsers(t *testing.T) {
	s := openTest(t)
	ctx := context.Background()
	for _, g := range []string{"alpha", "beta"} {
		if _, err := s.CreateGroup(ctx, g, ""); err != nil {
			t.Fatal(err)
		}
	}
	alice, err := s.AddUser(ctx, "alpha", RosterUser{Name: "alice", Email: "alice@example.com"})
	if err != nil {
		t.Fatal(err)
	}
	if alice.ID == 0 || alice.Group != "alpha" || alice.Email != "alice@example.com" {
		t.Errorf("added %+v", alice)
	}
	if _, err := s.AddUser(ctx, "alpha", RosterUser{Name: "alice"}); !errors.Is(err, ErrConflict) {
		t.Errorf("duplicate user: got %v, want ErrConflict", err)
	}
	if _, err := s.AddUser(ctx, "nope", RosterUser{Name: "alice"}); !errors.Is(err, ErrNotFound) {
		t.Errorf("missing group: got %v, want ErrNotFound", err)
	}
	// the same name in another group is a different user
	if _, err := s.AddUser(ctx, "beta", RosterUser{Name: "alice"}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.AddUser(ctx, "beta", RosterUser{Name: "bob"}); err != nil {
		t.Fatal(err)
	}

	got, err := s.GetUser(ctx, "alpha", "alice")
	if err != nil || got != alice {
		t.Errorf("GetUser = %+v, %v", got, err)
	}
	if got, err := s.GetUserByID(ctx, alice.ID); err != nil || got != alice {
		t.Errorf("GetUserByID = %+v, %v", got, err)
	}
	if _, err := s.GetUserByID(ctx, 12345); !errors.Is(err, ErrNotFound) {
		t.Errorf("missing id: got %v", err)
	}
	if _, err := s.GetUser(ctx, "alpha", "bob"); !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), `user "bob" in group "alpha"`) {
		t.Errorf("missing user: got %v", err)
	}
	if _, err := s.GetUser(ctx, "nope", "bob"); !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), `group "nope"`) {
		t.Errorf("missing group: got %v", err)
	}

	users, err := s.ListUsers(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, u := range users {
		names = append(names, u.Group+"/"+u.Name)
	}
	if strings.Join(names, " ") != "alpha/alice beta/alice beta/bob" {
		t.Errorf("ListUsers order: %v", names)
	}

	// transfer: conflict, then success keeping id and email
	if _, err := s.TransferUser(ctx, "alpha", "alice", "beta"); !errors.Is(err, ErrConflict) {
		t.Errorf("transfer onto existing name: got %v, want ErrConflict", err)
	}
	if _, err := s.TransferUser(ctx, "alpha", "alice", "nope"); !errors.Is(err, ErrNotFound) {
		t.Errorf("transfer to missing group: got %v, want ErrNotFound", err)
	}
	moved, err := s.TransferUser(ctx, "beta", "bob", "alpha")
	if err != nil {
		t.Fatal(err)
	}
	bob, _ := s.GetUser(ctx, "alpha", "bob")
	if moved.Group != "alpha" || moved.ID != bob.ID {
		t.Errorf("moved %+v", moved)
	}
	if _, err := s.GetUser(ctx, "beta", "bob"); !errors.Is(err, ErrNotFound) {
		t.Errorf("bob still in beta: %v", err)
	}
	same, err := s.TransferUser(ctx, "alpha", "bob", "alpha")
	if err != nil || same.ID != bob.ID {
		t.Errorf("transfer to own group: %+v %v", same, err)
	}

	deleted, err := s.DeleteUser(ctx, "alpha", "alice")
	if err != nil || deleted.ID != alice.ID {
		t.Errorf("DeleteUser = %+v, %v", deleted, err)
	}
	if _, err := s.DeleteUser(ctx, "alpha", "alice"); !errors.Is(err, ErrNotFound) {
		t.Errorf("delete twice: got %v", err)
	}

	entries, _ := s.ListAudit(ctx, 2)
	if len(entries) != 2 || entries[0].Action != "user.delete" || entries[1].Action != "user.transfer" ||
		entries[1].Detail != `{"to":"alpha"}` || entries[1].Target != "user:beta/bob" {
		t.Errorf("audit: %+v", entries)
	}
}

func TestGroupJSON(t *testing.T) {
	s := openTest(t)
	ctx := context.Background()
	g, err := s.CreateGroup(ctx, "alpha", "")
	if err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(g)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	if _, ok := m["title"]; ok {
		t.Errorf("empty title present: %s", b)
	}
	if users, ok := m["users"].([]any); !ok || len(users) != 0 {
		t.Errorf("users must be an empty array: %s", b)
	}
}

func TestAudit(t *testing.T) {
	s := openTest(t)
	ctx := WithActor(context.Background(), "cli")
	if err := s.Audit(ctx, "", "instance.start", "user:a/b", "x"); err != nil {
		t.Fatal(err)
	}
	if err := s.Audit(ctx, "admin", "instance.stop", "user:a/b", ""); err != nil {
		t.Fatal(err)
	}
	var fe *FieldError
	if err := s.Audit(ctx, "", "", "", ""); !errors.As(err, &fe) {
		t.Errorf("empty action: got %v", err)
	}
	entries, err := s.ListAudit(ctx, 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 2 || entries[0].Actor != "admin" || entries[1].Actor != "cli" || entries[1].Detail != "x" ||
		entries[0].At.Before(entries[1].At) {
		t.Errorf("entries: %+v", entries)
	}
	if ActorFrom(context.Background()) != "system" {
		t.Error("default actor is not system")
	}
}
