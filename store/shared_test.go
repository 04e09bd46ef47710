package store

import (
	"context"
	"strings"
	"testing"
)

// TestGroupShared follows a group's shared flag through the groups file,
// the import (set, kept when absent, cleared), UpdateGroup and the export.
func TestGroupShared(t *testing.T) {
	s := openTest(t)
	ctx := WithActor(context.Background(), "api")

	r, err := ParseRoster("groups.yaml", []byte("groups:\n  alpha:\n    shared: true\n    users: [alice, bob]\n  beta:\n    users: [carol]\n"))
	if err != nil {
		t.Fatal(err)
	}
	if r.Groups[0].Shared == nil || !*r.Groups[0].Shared || r.Groups[1].Shared != nil {
		t.Fatalf("parsed shared: %+v", r.Groups)
	}
	if _, err := s.ImportRoster(ctx, r); err != nil {
		t.Fatal(err)
	}
	check := func(group string, want bool) {
		t.Helper()
		got, err := s.GroupShared(ctx, group)
		if err != nil || got != want {
			t.Errorf("GroupShared(%s) = %v, %v; want %v", group, got, err, want)
		}
		if g, err := s.GetGroup(ctx, group); err != nil || g.Shared != want {
			t.Errorf("GetGroup(%s).Shared = %v, %v; want %v", group, g.Shared, err, want)
		}
	}
	check("alpha", true)
	check("beta", false)

	// A file without the key keeps the flag; one with false clears it.
	again, _ := ParseRoster("groups.yaml", []byte("groups:\n  alpha: [alice, bob]\n"))
	if _, err := s.ImportRoster(ctx, again); err != nil {
		t.Fatal(err)
	}
	check("alpha", true)
	off, _ := ParseRoster("groups.yaml", []byte("groups:\n  alpha:\n    shared: false\n    users: [alice]\n"))
	if _, err := s.ImportRoster(ctx, off); err != nil {
		t.Fatal(err)
	}
	check("alpha", false)

	yes := true
	if _, err := s.UpdateGroup(ctx, "beta", GroupUpdate{Shared: &yes}); err != nil {
		t.Fatal(err)
	}
	check("beta", true)
	if got, err := s.GroupShared(ctx, "nope"); err != nil || got {
		t.Errorf("GroupShared of no group = %v, %v", got, err)
	}

	exp, err := s.ExportRoster(ctx)
	if err != nil {
		t.Fatal(err)
	}
	data, err := MarshalRoster(exp)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(data), "shared: true") {
		t.Errorf("export lost the flag:\n%s", data)
	}
	back, err := ParseRoster("export.yaml", data)
	if err != nil || back.Groups[1].Shared == nil || !*back.Groups[1].Shared {
		t.Errorf("export round trip: %+v, %v", back.Groups, err)
	}

	if _, err := ParseRoster("groups.yaml", []byte("groups:\n  alpha:\n    shared: maybe\n")); err == nil ||
		!strings.Contains(err.Error(), "groups.alpha.shared") {
		t.Errorf("shared: maybe: %v", err)
	}
}
