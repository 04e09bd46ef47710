package api

import (
	"strings"
	"testing"

	"github.com/thon-dev/thon/store"
)

const kiloJSONC = `{
  // the provider Kilo Code talks to
  "provider": {"lemonade": {"options": {"baseURL": "http://127.0.0.1:13305/v1",}}},
}
`

func TestConfigFiles(t *testing.T) {
	e := newTestEnv(t, Options{})

	var list configFileList
	e.do("GET", "/api/config-files", "", nil).wantStatus(t, 200).decode(t, &list)
	var keys []string
	for _, f := range list.ConfigFiles {
		keys = append(keys, f.Key)
		if f.Set || f.Content != "" {
			t.Errorf("fresh slot %s = %+v, want unset", f.Key, f)
		}
	}
	if got, want := strings.Join(keys, ","), strings.Join(store.ConfigKeys(), ","); got != want {
		t.Errorf("slots = %s, want %s", got, want)
	}

	// Unknown keys answer 404 naming the valid ones, on every route.
	for _, req := range []struct{ method, path string }{
		{"GET", "/api/config-files/nope"},
		{"PUT", "/api/config-files/nope"},
		{"DELETE", "/api/config-files/nope"},
		{"POST", "/api/config-files/nope/upload"},
	} {
		e.doJSON(req.method, req.path, map[string]string{"content": "{}"}).
			wantError(t, 404, "key", `unknown config file "nope"`, "config_groups_yaml, config_kilo_json, config_vscode_settings")
	}

	// JSON PUT.
	var f store.ConfigFile
	e.doJSON("PUT", "/api/config-files/config_kilo_json", map[string]string{"content": kiloJSONC}).
		wantStatus(t, 200).decode(t, &f)
	if f.Key != store.KeyKiloJSON || !f.Set || f.Size != len(kiloJSONC) {
		t.Errorf("PUT answer = %+v", f)
	}
	e.do("GET", "/api/config-files/config_kilo_json", "", nil).wantStatus(t, 200).decode(t, &f)
	if f.Content != kiloJSONC || f.Format != "jsonc" || !f.Set {
		t.Errorf("GET after PUT = %+v", f)
	}

	// Rejected content leaves the old content.
	e.doJSON("PUT", "/api/config-files/config_kilo_json", map[string]string{"content": `{"provider": }`}).
		wantError(t, 400, "content", "line 1")
	e.doJSON("PUT", "/api/config-files/config_kilo_json", map[string]string{"content": `[1, 2]`}).
		wantError(t, 400, "content")
	e.doJSON("PUT", "/api/config-files/config_kilo_json", map[string]string{}).wantError(t, 400, "content", "required")
	e.doJSON("PUT", "/api/config-files/config_kilo_json", map[string]any{"content": 5}).wantError(t, 400, "content")
	e.doJSON("PUT", "/api/config-files/config_kilo_json", map[string]string{"content": "{}", "key": "x"}).
		wantError(t, 400, "key", "unknown field")
	e.do("PUT", "/api/config-files/config_kilo_json", "application/xml", []byte("<a/>")).wantError(t, 415, "")
	e.do("GET", "/api/config-files/config_kilo_json", "", nil).wantStatus(t, 200).decode(t, &f)
	if f.Content != kiloJSONC {
		t.Errorf("content after rejected writes = %q, want the old content", f.Content)
	}

	// Raw text PUT of a groups file.
	groups := "groups:\n  alpha: [alice, bob]\n"
	e.do("PUT", "/api/config-files/config_groups_yaml", "text/plain; charset=utf-8", []byte(groups)).
		wantStatus(t, 200).decode(t, &f)
	if f.Key != store.KeyGroupsYAML || !f.Set {
		t.Errorf("raw PUT answer = %+v", f)
	}
	e.do("PUT", "/api/config-files/config_groups_yaml", "text/plain", []byte("groups:\n  Alpha: [x]\n")).
		wantError(t, 400, "content", "Alpha")
	e.do("PUT", "/api/config-files/config_groups_yaml", "text/plain", []byte("groups: [\xff]")).
		wantError(t, 400, "content", "UTF-8")
	e.do("GET", "/api/config-files/config_groups_yaml", "", nil).wantStatus(t, 200).decode(t, &f)
	if f.Content != groups || f.Format != "yaml" {
		t.Errorf("groups slot = %+v", f)
	}

	// Multipart upload.
	settings := []byte("{\n  \"editor.fontSize\": 14, // big enough\n}\n")
	ct, body := multipartBody(t, "file", "settings.json", settings)
	e.do("POST", "/api/config-files/config_vscode_settings/upload", ct, body).wantStatus(t, 200).decode(t, &f)
	if f.Key != store.KeyVSCodeSettings || !f.Set || f.Size != len(settings) {
		t.Errorf("upload answer = %+v", f)
	}
	ct, body = multipartBody(t, "file", "settings.json", []byte("not json"))
	e.do("POST", "/api/config-files/config_vscode_settings/upload", ct, body).wantError(t, 400, "content")
	ct, body = multipartBody(t, "other", "settings.json", settings)
	e.do("POST", "/api/config-files/config_vscode_settings/upload", ct, body).wantError(t, 400, "file", "missing")
	e.doJSON("POST", "/api/config-files/config_vscode_settings/upload", map[string]string{"content": "{}"}).
		wantError(t, 415, "", "multipart/form-data")
	e.do("POST", "/api/config-files/config_vscode_settings/upload", "multipart/form-data", []byte("x")).
		wantError(t, 400, "file", "invalid multipart body")
	e.do("GET", "/api/config-files/config_vscode_settings", "", nil).wantStatus(t, 200).decode(t, &f)
	if f.Content != string(settings) {
		t.Errorf("settings after rejected upload = %q", f.Content)
	}

	// The list shows which slots are set, without content.
	e.do("GET", "/api/config-files", "", nil).wantStatus(t, 200).decode(t, &list)
	for _, f := range list.ConfigFiles {
		if !f.Set || f.Content != "" || f.Size == 0 {
			t.Errorf("listed slot = %+v, want set, sized, without content", f)
		}
	}

	// Delete.
	var d deletedConfigFile
	e.do("DELETE", "/api/config-files/config_kilo_json", "", nil).wantStatus(t, 200).decode(t, &d)
	if d.Deleted != store.KeyKiloJSON {
		t.Errorf("DELETE answer = %+v", d)
	}
	e.do("GET", "/api/config-files/config_kilo_json", "", nil).wantStatus(t, 200).decode(t, &f)
	if f.Set || f.Content != "" {
		t.Errorf("slot after DELETE = %+v, want unset", f)
	}
}

func TestConfigFileLimits(t *testing.T) {
	e := newTestEnv(t, Options{MaxBodyBytes: 100, MaxUploadBytes: 200})
	big := `{"a": "` + strings.Repeat("x", 300) + `"}`
	e.doJSON("PUT", "/api/config-files/config_kilo_json", map[string]string{"content": big}).
		wantError(t, 413, "", "limit is 100 bytes")
	e.do("PUT", "/api/config-files/config_kilo_json", "text/plain", []byte(big)).
		wantError(t, 413, "", "limit is 200 bytes")
	ct, body := multipartBody(t, "file", "kilo.jsonc", []byte(big))
	e.do("POST", "/api/config-files/config_kilo_json/upload", ct, body).wantError(t, 413, "", "limit is 200 bytes")
	// A file just under the upload limit fits, multipart envelope included.
	fits := `{"a": "` + strings.Repeat("x", 190) + `"}`
	ct, body = multipartBody(t, "file", "kilo.jsonc", []byte(fits))
	e.do("POST", "/api/config-files/config_kilo_json/upload", ct, body).wantStatus(t, 200)
}
