package store

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func TestConfigSlots(t *testing.T) {
	s := openTest(t)
	ctx := context.Background()
	if !reflect.DeepEqual(ConfigKeys(), []string{"config_groups_yaml", "config_kilo_json", "config_vscode_settings"}) {
		t.Errorf("ConfigKeys() = %v", ConfigKeys())
	}
	files, err := s.ConfigFiles(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(files) != 3 {
		t.Fatalf("%d slots", len(files))
	}
	for i, f := range files {
		if f.Key != ConfigKeys()[i] || f.Set || f.Size != 0 || f.Description == "" || !f.UpdatedAt.IsZero() {
			t.Errorf("slot %d: %+v", i, f)
		}
	}
	if files[0].Format != "yaml" || files[1].Format != "jsonc" || files[2].Format != "jsonc" {
		t.Errorf("formats: %+v", files)
	}
	if _, err := s.ConfigFile(ctx, "config_nope"); !errors.Is(err, ErrNotFound) {
		t.Errorf("unknown key: got %v", err)
	}
	if _, err := s.PutConfigFile(ctx, "config_nope", "{}"); !errors.Is(err, ErrNotFound) {
		t.Errorf("put unknown key: got %v", err)
	}
	if err := s.DeleteConfigFile(ctx, "config_nope"); !errors.Is(err, ErrNotFound) {
		t.Errorf("delete unknown key: got %v", err)
	}

	// the original example files are accepted as they are
	for _, tc := range []struct{ key, file string }{
		{KeyGroupsYAML, "groups.yaml.example"},
		{KeyGroupsYAML, "thon.yaml.example"},
		{KeyKiloJSON, "kilo.jsonc.example"},
		{KeyKiloJSON, "kilo.jsonc.skeleton"},
		{KeyVSCodeSettings, "vscode-settings.jsonc.example"},
	} {
		content := string(readTestdata(t, tc.file))
		f, err := s.PutConfigFile(ctx, tc.key, content)
		if err != nil {
			t.Errorf("%s: %v", tc.file, err)
			continue
		}
		if !f.Set || f.Content != content || f.Size != len(content) || f.UpdatedAt.IsZero() {
			t.Errorf("%s: put returned %+v", tc.file, f)
		}
		got, err := s.ConfigFile(ctx, tc.key)
		if err != nil || got.Content != content {
			t.Errorf("%s: read back %v", tc.file, err)
		}
	}
	files, _ = s.ConfigFiles(ctx)
	for _, f := range files {
		if !f.Set || f.Content != "" || f.Size == 0 {
			t.Errorf("listed slot %+v", f)
		}
	}
}

func TestPutConfigFileRejectsBadContent(t *testing.T) {
	s := openTest(t)
	ctx := context.Background()
	good := map[string]string{
		KeyGroupsYAML:     string(readTestdata(t, "groups.yaml.example")),
		KeyKiloJSON:       string(readTestdata(t, "kilo.jsonc.example")),
		KeyVSCodeSettings: `{"editor.formatOnSave": true}`,
	}
	for k, v := range good {
		if _, err := s.PutConfigFile(ctx, k, v); err != nil {
			t.Fatal(err)
		}
	}
	auditBefore, _ := s.ListAudit(ctx, 0)
	for i, tc := range []struct {
		key, content string
		has          []string
	}{
		{KeyGroupsYAML, "groups:\n  alpha:\n    users:\n      - alice\n      - Bob_1\n",
			[]string{`groups.yaml:5: groups.alpha.users[1]: invalid user name "Bob_1"`}},
		{KeyGroupsYAML, "groups:\n  alpha:\n    users:\n      - {email: a@b}\n",
			[]string{`groups.yaml:4: groups.alpha.users[0]: user entry has no "name"`}},
		{KeyGroupsYAML, "groups: [a]", []string{"groups.yaml:1: groups: expected a mapping"}},
		{KeyGroupsYAML, "", []string{"groups.yaml: empty file"}},
		{KeyKiloJSON, "{\n  \"model\": \"x\"\n  \"provider\": {}\n}", []string{"kilo.jsonc: line 3, column 3: invalid character"}},
		{KeyKiloJSON, "[1, 2]", []string{"kilo.jsonc: line 1, column 1: expected a JSON object"}},
		{KeyVSCodeSettings, "{\n /* open", []string{"settings.json: line 2, column 2: unterminated /* comment"}},
		{KeyVSCodeSettings, "", []string{"settings.json: line 1, column 1"}},
	} {
		_, err := s.PutConfigFile(ctx, tc.key, tc.content)
		var fe *FieldError
		if !errors.As(err, &fe) || fe.Field != "content" {
			t.Errorf("case %d: got %v, want a *FieldError for content", i, err)
			continue
		}
		for _, h := range tc.has {
			if !strings.Contains(fe.Msg, h) {
				t.Errorf("case %d: %q does not contain %q", i, fe.Msg, h)
			}
		}
		f, err := s.ConfigFile(ctx, tc.key)
		if err != nil || f.Content != good[tc.key] {
			t.Errorf("case %d: old content not kept: %q %v", i, f.Content, err)
		}
	}
	auditAfter, _ := s.ListAudit(ctx, 0)
	if len(auditAfter) != len(auditBefore) {
		t.Errorf("rejected writes were audited")
	}
}

func TestDeleteConfigFile(t *testing.T) {
	s := openTest(t)
	ctx := context.Background()
	if _, err := s.PutConfigFile(ctx, KeyKiloJSON, "{}"); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteConfigFile(ctx, KeyKiloJSON); err != nil {
		t.Fatal(err)
	}
	f, err := s.ConfigFile(ctx, KeyKiloJSON)
	if err != nil || f.Set {
		t.Errorf("after delete: %+v %v", f, err)
	}
	if err := s.DeleteConfigFile(ctx, KeyKiloJSON); err != nil {
		t.Errorf("delete unset slot: %v", err)
	}
	entries, _ := s.ListAudit(ctx, 0)
	if len(entries) != 2 || entries[0].Action != "config.delete" || entries[1].Action != "config.put" ||
		entries[0].Target != "config:config_kilo_json" {
		t.Errorf("audit: %+v", entries)
	}
}

func TestResolveConfig(t *testing.T) {
	s := openTest(t)
	ctx := context.Background()
	dir := t.TempDir()
	file := filepath.Join(dir, "kilo.jsonc")
	if err := os.WriteFile(file, []byte(`{"from": "file"} // comment`), 0o600); err != nil {
		t.Fatal(err)
	}

	// nothing anywhere
	r, err := s.ResolveConfig(ctx, KeyKiloJSON, "")
	if err != nil || r.Source != "none" || r.Content != "" || r.Key != KeyKiloJSON {
		t.Errorf("none: %+v %v", r, err)
	}
	// database
	if _, err := s.PutConfigFile(ctx, KeyKiloJSON, `{"from": "database"}`); err != nil {
		t.Fatal(err)
	}
	r, err = s.ResolveConfig(ctx, KeyKiloJSON, "")
	if err != nil || r.Source != "database" || r.Content != `{"from": "database"}` {
		t.Errorf("database: %+v %v", r, err)
	}
	// the file wins over the database
	r, err = s.ResolveConfig(ctx, KeyKiloJSON, file)
	if err != nil || r.Source != "file:"+file || r.Content != `{"from": "file"} // comment` {
		t.Errorf("file: %+v %v", r, err)
	}
	// a missing file is an error, not a fall-through to the database
	_, err = s.ResolveConfig(ctx, KeyKiloJSON, filepath.Join(dir, "missing.jsonc"))
	if !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("missing file: got %v", err)
	}
	// so is an invalid one, with file and line in the message
	bad := filepath.Join(dir, "groups.yaml")
	if err := os.WriteFile(bad, []byte("groups:\n  Alpha: [x]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = s.ResolveConfig(ctx, KeyGroupsYAML, bad)
	var fe *FieldError
	if !errors.As(err, &fe) || fe.Field != "groups.Alpha" || !strings.Contains(err.Error(), bad+":2: ") {
		t.Errorf("invalid file: got %v", err)
	}
	if _, err := s.ResolveConfig(ctx, "config_nope", ""); !errors.Is(err, ErrNotFound) {
		t.Errorf("unknown key: got %v", err)
	}
}

func TestSettings(t *testing.T) {
	s := openTest(t)
	ctx := context.Background()
	if _, ok, err := s.Setting(ctx, "external_ip"); ok || err != nil {
		t.Errorf("unset setting: %v %v", ok, err)
	}
	for _, v := range []string{"203.0.113.1", "203.0.113.2", ""} {
		if err := s.SetSetting(ctx, "external_ip", v); err != nil {
			t.Fatal(err)
		}
		got, ok, err := s.Setting(ctx, "external_ip")
		if err != nil || !ok || got != v {
			t.Errorf("setting = %q %v %v, want %q", got, ok, err, v)
		}
	}
	var fe *FieldError
	if err := s.SetSetting(ctx, "", "x"); !errors.As(err, &fe) {
		t.Errorf("empty key: %v", err)
	}
	if err := s.SetSetting(ctx, KeyKiloJSON, "not json"); !errors.As(err, &fe) {
		t.Errorf("config slot through SetSetting: %v", err)
	}
	if f, _ := s.ConfigFile(ctx, KeyKiloJSON); f.Set {
		t.Error("SetSetting wrote a config slot")
	}
}
