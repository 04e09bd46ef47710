package caddymodule

import (
	"context"
	"path/filepath"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"

	"github.com/thon-dev/thon/store"
)

// TestStartRefusesDerivedNameClash checks that thon does not start on a
// database in which two users share a container and volume name (written
// by hand here, past the store's checks), and names both users.
func TestStartRefusesDerivedNameClash(t *testing.T) {
	dataDir := t.TempDir()
	db := filepath.Join(dataDir, "thon.db")
	ctx := context.Background()
	st, err := store.Open(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	const ts = "2025-03-01T10:00:00.000000000Z" // the store's time format
	for _, q := range []string{
		`INSERT INTO groups (id, name, created_at, updated_at) VALUES (1, 'a-b', ?1, ?1), (2, 'a', ?1, ?1)`,
		`INSERT INTO users (id, group_id, name, created_at, updated_at) VALUES (1, 1, 'c', ?1, ?1), (2, 2, 'b-c', ?1, ?1)`,
	} {
		if _, err := st.DB().ExecContext(ctx, q, ts); err != nil {
			t.Fatal(err)
		}
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}

	site, admin := freePort(t), freePort(t)
	err = caddy.Load(adapt(t, siteConfig(dataDir, "")(site, admin)), true)
	if err == nil {
		_ = caddy.Stop()
		t.Fatal("thon started on a database where a-b/c and a/b-c share thon-a-b-c")
	}
	for _, want := range []string{`"a-b/c" (id 1)`, `"a/b-c" (id 2)`, `"a-b-c"`, db, "WHERE id = 2"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("start error %q does not contain %q", err, want)
		}
	}

	// Renamed as the error says, the database starts.
	st, err = store.Open(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.DB().ExecContext(ctx, `UPDATE users SET name = 'b-c2' WHERE id = 2`); err != nil {
		t.Fatal(err)
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	in := startCaddy(t, siteConfig(dataDir, ""))
	var gl groupList
	in.getJSON(in.base+"/api/groups", &gl)
	if len(gl.Groups) != 2 {
		t.Errorf("groups after the rename: %+v", gl)
	}
}
