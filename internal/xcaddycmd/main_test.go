package main

import (
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// TestManifestMatchesGoMod keeps xcaddy.json and go.mod on the same Caddy
// release, and the xcaddy build on the same module as cmd/thon.
func TestManifestMatchesGoMod(t *testing.T) {
	m, err := load(filepath.Join("..", "..", "xcaddy.json"))
	if err != nil {
		t.Fatal(err)
	}
	gomod, err := os.ReadFile(filepath.Join("..", "..", "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	want := regexp.MustCompile(`(?m)^\s*(?:require\s+)?github\.com/caddyserver/caddy/v2 (v\S+)`).FindSubmatch(gomod)
	if want == nil {
		t.Fatal("go.mod does not require caddy")
	}
	if m.CaddyVersion != string(want[1]) {
		t.Errorf("xcaddy.json caddy_version = %s, go.mod requires %s", m.CaddyVersion, want[1])
	}
	modLine := regexp.MustCompile(`(?m)^module (\S+)`).FindSubmatch(gomod)
	if len(m.With) == 0 || m.With[0].Module != string(modLine[1]) {
		t.Errorf("xcaddy.json builds %+v, want module %s", m.With, modLine[1])
	}
	args, env := m.Command()
	if !slices.Contains(args, "--with") || args[0] != "build" || args[1] != m.CaddyVersion {
		t.Errorf("args = %v", args)
	}
	if len(env) != 1 || !strings.Contains(env[0], "-tags nobadger,nomysql,nopgx") {
		t.Errorf("env = %v", env)
	}
}

func TestLoadRejectsBadManifest(t *testing.T) {
	dir := t.TempDir()
	for i, tc := range []struct{ body, want string }{
		{`{"with":[{"module":"x"}]}`, "caddy_version"},
		{`{"caddy_version":"v2.11.9","with":[]}`, "with"},
		{`{"caddy_version":"v2.11.9","with":[{}]}`, "with[0].module"},
		{`{"caddy_version":"v2.11.9","with":[{"module":"x"}],"typo":1}`, "typo"},
	} {
		p := filepath.Join(dir, "x.json")
		if err := os.WriteFile(p, []byte(tc.body), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := load(p); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("case %d: error %v, want it to mention %q", i, err, tc.want)
		}
	}
}
