package api

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"
)

// fuzzTargets are the JSON-body routes FuzzJSONBody drives.
var fuzzTargets = []struct{ method, path string }{
	{"POST", "/api/groups"},
	{"POST", "/api/groups/alpha/users"},
	{"PUT", "/api/groups/alpha"},
	{"POST", "/api/groups/alpha/users/alice/transfer"},
	{"PUT", "/api/config-files/config_kilo_json"},
	{"PUT", "/api/config-files/config_groups_yaml"},
	{"PUT", "/api/config-files/config_vscode_settings"},
}

// FuzzJSONBody sends arbitrary bodies to the JSON routes through the
// handler, over a real store. Property: no panic, never a 5xx, and every
// error is a JSON {"error": ...} body.
func FuzzJSONBody(f *testing.F) {
	e := newTestEnv(f, Options{MaxBodyBytes: 4096})
	e.do("POST", "/api/groups/import", "application/yaml",
		[]byte("groups:\n  alpha: [alice, bob]\n  beta: [carol]\n")).wantStatus(f, 200)
	seeds := []string{
		`{"name": "alpha", "title": "Team Alpha"}`,
		`{"name": "alice", "email": "alice@example.com"}`,
		`{"username": "bob"}`,
		`{"to_group": "beta"}`,
		`{"name": "beta"}`,
		`{"title": null}`,
		`{"content": "{\"a\": 1, // c\n}"}`,
		`{"content": "groups:\n  alpha: [alice]\n"}`,
		`{"content": "event_id: x\ngroups:\n  g:\n    title: T\n    users:\n      - name: u\n        email: u@x\n"}`,
		`{"name": "Alpha"}`,
		`{"name": 5}`,
		`{"name": "a", "x": 1}`,
		`[]`,
		`{"name": "a"} trailing`,
		`{"content": "\u0000"}`,
		"{\"name\": \"\xff\"}",
		``,
	}
	for i, s := range seeds {
		f.Add(uint8(i), []byte(s))
	}
	f.Fuzz(func(t *testing.T, target uint8, body []byte) {
		tgt := fuzzTargets[int(target)%len(fuzzTargets)]
		req := httptest.NewRequest(tgt.method, tgt.path, bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		rec := httptest.NewRecorder()
		e.server.ServeHTTP(rec, e.authorize(req))
		if rec.Code >= 500 {
			t.Fatalf("%s %s with %q: status %d: %s", tgt.method, tgt.path, body, rec.Code, rec.Body)
		}
		if rec.Code >= 400 {
			var er Error
			if err := json.Unmarshal(rec.Body.Bytes(), &er); err != nil || er.Error == "" {
				t.Fatalf("%s %s with %q: status %d with a non-JSON error body %q", tgt.method, tgt.path, body, rec.Code, rec.Body)
			}
		}
		if rec.Code != http.StatusOK && rec.Code != http.StatusCreated && rec.Code < 400 {
			t.Fatalf("%s %s with %q: unexpected status %d", tgt.method, tgt.path, body, rec.Code)
		}
	})
}
