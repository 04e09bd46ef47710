package api

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/thon-dev/thon/auth"
	"github.com/thon-dev/thon/store"
)

// testEnv is a Server over a real SQLite store, served by httptest on
// 127.0.0.1. Its requests carry an organiser API token, made for it.
type testEnv struct {
	t      testing.TB
	server *Server
	store  *store.Store
	auth   *auth.Service
	http   *httptest.Server
	logs   *syncBuffer
	token  string // the organiser API token do sends
}

// syncBuffer is a bytes.Buffer safe for the server's concurrent log writes.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// newTestEnv serves a Server with opts over opts.Store or, when that is
// nil, a store opened in a temporary directory. Unless opts.Auth is set,
// it gets an auth.Service over that store with a fixed secret.
func newTestEnv(t testing.TB, opts Options) *testEnv {
	t.Helper()
	return newAuthTestEnv(t, opts, nil)
}

// testSecret signs the test servers' sessions.
var testSecret = []byte("api-test-secret-0123456789abcdef")

// newAuthTestEnv is newTestEnv with the auth.Options changed by change.
func newAuthTestEnv(t testing.TB, opts Options, change func(*auth.Options)) *testEnv {
	t.Helper()
	st := opts.Store
	if st == nil {
		var err error
		st, err = store.Open(context.Background(), filepath.Join(t.TempDir(), "thon.db"))
		if err != nil {
			t.Fatalf("opening store: %v", err)
		}
		t.Cleanup(func() { _ = st.Close() })
	}
	logs := &syncBuffer{}
	opts.Store = st
	opts.Logger = slog.New(slog.NewTextHandler(logs, nil))
	if opts.Auth == nil {
		ao := auth.Options{Store: st, State: auth.NewState(0, 0), Secret: testSecret}
		if change != nil {
			change(&ao)
		}
		svc, err := auth.New(ao)
		if err != nil {
			t.Fatalf("auth.New: %v", err)
		}
		opts.Auth = svc
	}
	token, _, err := opts.Auth.CreateToken(context.Background(), "api-tests")
	if err != nil {
		t.Fatalf("making the organiser token: %v", err)
	}
	s, err := New(opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	ts := httptest.NewServer(s)
	t.Cleanup(ts.Close)
	return &testEnv{t: t, server: s, store: st, auth: opts.Auth, http: ts, logs: logs, token: token}
}

// authorize makes req an organiser's (the env's API token).
func (e *testEnv) authorize(req *http.Request) *http.Request {
	req.Header.Set("Authorization", "Bearer "+e.token)
	return req
}

// response is a finished HTTP exchange.
type response struct {
	status int
	header http.Header
	body   []byte
}

// do sends a request as an organiser (with the env's API token), with a
// body of the given content type ("" for none).
func (e *testEnv) do(method, path, contentType string, body []byte) response {
	e.t.Helper()
	return e.exchange(method, path, contentType, body, func(r *http.Request) { e.authorize(r) }, true)
}

// send sends a request with a body of the given content type ("" for
// none), after prepare (which may be nil) changed it; it does not follow
// redirects.
func (e *testEnv) send(method, path, contentType string, body []byte, prepare func(*http.Request)) response {
	e.t.Helper()
	return e.exchange(method, path, contentType, body, prepare, false)
}

func (e *testEnv) exchange(method, path, contentType string, body []byte, prepare func(*http.Request), follow bool) response {
	e.t.Helper()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequest(method, e.http.URL+path, rd)
	if err != nil {
		e.t.Fatalf("new request: %v", err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	if prepare != nil {
		prepare(req)
	}
	client := *e.http.Client()
	if !follow {
		client.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	}
	resp, err := client.Do(req)
	if err != nil {
		e.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		e.t.Fatalf("%s %s: reading body: %v", method, path, err)
	}
	return response{status: resp.StatusCode, header: resp.Header, body: data}
}

// doJSON sends v marshalled as JSON (a string or []byte is sent as is).
func (e *testEnv) doJSON(method, path string, v any) response {
	e.t.Helper()
	var body []byte
	switch v := v.(type) {
	case nil:
	case string:
		body = []byte(v)
	case []byte:
		body = v
	default:
		var err error
		if body, err = json.Marshal(v); err != nil {
			e.t.Fatalf("marshal: %v", err)
		}
	}
	ct := ""
	if body != nil {
		ct = "application/json"
	}
	return e.do(method, path, ct, body)
}

// multipartBody builds a multipart/form-data body with one file part.
func multipartBody(t testing.TB, field, filename string, content []byte) (string, []byte) {
	t.Helper()
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	if err := mw.WriteField("note", "ignored"); err != nil {
		t.Fatal(err)
	}
	fw, err := mw.CreateFormFile(field, filename)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := fw.Write(content); err != nil {
		t.Fatal(err)
	}
	if err := mw.Close(); err != nil {
		t.Fatal(err)
	}
	return mw.FormDataContentType(), buf.Bytes()
}

// decode unmarshals the response body into v (zeroed first, so that no
// earlier value shows through), failing on a non-JSON body.
func (r response) decode(t testing.TB, v any) {
	t.Helper()
	reflect.ValueOf(v).Elem().SetZero()
	if ct := r.header.Get("Content-Type"); ct != "application/json" {
		t.Fatalf("Content-Type = %q, want application/json (body %s)", ct, r.body)
	}
	if err := json.Unmarshal(r.body, v); err != nil {
		t.Fatalf("decoding %s: %v", r.body, err)
	}
}

// wantStatus fails unless the response has status.
func (r response) wantStatus(t testing.TB, status int) response {
	t.Helper()
	if r.status != status {
		t.Fatalf("status = %d, want %d; body: %s", r.status, status, r.body)
	}
	return r
}

// wantError fails unless the response is a JSON error with status, field
// and a message containing every one of substrs.
func (r response) wantError(t testing.TB, status int, field string, substrs ...string) Error {
	t.Helper()
	r.wantStatus(t, status)
	var e Error
	r.decode(t, &e)
	if e.Error == "" {
		t.Fatalf("error message is empty: %s", r.body)
	}
	if e.Field != field {
		t.Errorf("field = %q, want %q (error %q)", e.Field, field, e.Error)
	}
	for _, s := range substrs {
		if !strings.Contains(e.Error, s) {
			t.Errorf("error %q does not contain %q", e.Error, s)
		}
	}
	return e
}

func TestNewValidatesOptions(t *testing.T) {
	st, err := store.Open(context.Background(), filepath.Join(t.TempDir(), "thon.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	svc, err := auth.New(auth.Options{Store: st, State: auth.NewState(0, 0), Secret: testSecret})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		opts Options
		want string
	}{
		{"no store", Options{}, "store is required"},
		{"no auth", Options{Store: st}, "auth is required"},
		{"negative body limit", Options{Store: st, Auth: svc, MaxBodyBytes: -1}, "max body bytes"},
		{"negative upload limit", Options{Store: st, Auth: svc, MaxUploadBytes: -1}, "max upload bytes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := New(tt.opts)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("New error = %v, want one containing %q", err, tt.want)
			}
		})
	}
	s, err := New(Options{Store: st, Auth: svc})
	if err != nil {
		t.Fatal(err)
	}
	if s.maxBody != DefaultMaxBodyBytes || s.maxUpload != DefaultMaxUploadBytes {
		t.Errorf("limits = %d, %d; want the defaults", s.maxBody, s.maxUpload)
	}
}

func TestRoutes(t *testing.T) {
	e := newTestEnv(t, Options{})
	type pair struct{ method, pattern string }
	pairs := []pair{
		{"GET", "/api/health"},
		{"POST", "/api/auth/login"},
		{"POST", "/api/auth/logout"},
		{"GET", "/api/auth/me"},
		{"POST", "/api/auth/setup"},
		{"GET", "/api/tokens"},
		{"POST", "/api/tokens"},
		{"DELETE", "/api/tokens/{name}"},
		{"GET", "/api/groups"},
		{"POST", "/api/groups"},
		{"GET", "/api/groups/export"},
		{"POST", "/api/groups/import"},
		{"GET", "/api/groups/{group_id}"},
		{"PUT", "/api/groups/{group_id}"},
		{"DELETE", "/api/groups/{group_id}"},
		{"POST", "/api/groups/{group_id}/users"},
		{"DELETE", "/api/groups/{group_id}/users/{user_id}"},
		{"POST", "/api/groups/{group_id}/users/{user_id}/transfer"},
		{"GET", "/api/config-files"},
		{"GET", "/api/config-files/{key}"},
		{"PUT", "/api/config-files/{key}"},
		{"DELETE", "/api/config-files/{key}"},
		{"POST", "/api/config-files/{key}/upload"},
		{"GET", "/api/instances"},
		{"POST", "/api/instances"},
		{"POST", "/api/instances/bulk/pause"},
		{"POST", "/api/instances/bulk/resume"},
		{"POST", "/api/instances/bulk/kill"},
		{"GET", "/api/instances/{id}"},
		{"DELETE", "/api/instances/{id}"},
		{"POST", "/api/instances/{id}/pause"},
		{"POST", "/api/instances/{id}/resume"},
		{"POST", "/api/instances/{id}/recreate"},
		{"POST", "/api/instances/{id}/renew"},
		{"POST", "/api/users/{user_id}/launch"},
		{"POST", "/api/users/{user_id}/stop"},
		{"POST", "/api/groups/{group_id}/users/{user_id}/launch"},
		{"POST", "/api/groups/{group_id}/users/{user_id}/stop"},
		{"POST", "/api/groups/{group_id}/start"},
		{"POST", "/api/groups/{group_id}/stop"},
		{"GET", "/api/operations/{id}"},
		{"GET", "/api/nginx/status"},
		{"POST", "/api/nginx/refresh"},
		{"POST", "/api/nginx/cleanup"},
		{"GET", "/api/lemonade/status"},
		{"GET", "/api/lemonade/models"},
		{"GET", "/api/lemonade/health"},
		{"GET", "/api/lemonade/stats"},
		{"GET", "/api/lemonade/slots"},
		{"GET", "/api/lemonade/system-info"},
		{"POST", "/api/lemonade/pull"},
		{"POST", "/api/lemonade/load"},
		{"POST", "/api/lemonade/unload"},
		{"POST", "/api/lemonade/rescale"},
		{"POST", "/api/gateway/setup"},
		{"GET", "/api/gateway/status"},
		{"GET", "/api/gateway/consumers"},
		{"POST", "/api/gateway/consumers"},
		{"DELETE", "/api/gateway/consumers/{username}"},
		{"POST", "/api/gateway/consumers/{username}/rotate"},
		{"POST", "/api/gateway/consumers/{username}/revoke"},
		{"POST", "/api/gateway/cleanup"},
		{"GET", "/api/gateway/usage"},
	}
	// Health and the sign-in routes are open; the rest is the organisers'.
	var want []Route
	for _, p := range pairs {
		level := LevelOrganiser
		if p.pattern == "/api/health" || strings.HasPrefix(p.pattern, "/api/auth/") {
			level = LevelPublic
		}
		want = append(want, Route{p.method, p.pattern, level})
	}
	got := e.server.Routes()
	if !slices.Equal(got, want) {
		t.Errorf("Routes() =\n%v\nwant\n%v", got, want)
	}
	got[0].Pattern = "/changed"
	if e.server.Routes()[0].Pattern != "/api/health" {
		t.Error("Routes() returned the server's own slice")
	}
}

func TestHealth(t *testing.T) {
	e := newTestEnv(t, Options{})
	var h struct {
		Status        string `json:"status"`
		SchemaVersion int    `json:"schema_version"`
	}
	e.do("GET", "/api/health", "", nil).wantStatus(t, 200).decode(t, &h)
	want, err := e.store.SchemaVersion(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if h.Status != "ok" || h.SchemaVersion != want || want < 1 {
		t.Errorf("health = %+v, want ok with schema version %d", h, want)
	}
}

func TestNotFoundAndMethodNotAllowed(t *testing.T) {
	e := newTestEnv(t, Options{})
	tests := []struct {
		method, path string
		status       int
		allow        string
	}{
		{"GET", "/api/nope", 404, ""},
		{"GET", "/api/groups/", 404, ""},
		{"GET", "/api/groups/a/b/c", 404, ""},
		{"GET", "/elsewhere", 404, ""},
		{"GET", "/docs/nope.js", 404, ""},
		{"DELETE", "/api/health", 405, "GET, HEAD"},
		{"PATCH", "/api/groups", 405, "GET, HEAD, POST"},
		{"GET", "/api/groups/a/users", 405, "POST"},
		{"POST", "/api/groups/alpha", 405, "GET, HEAD, PUT, DELETE"},
		{"POST", "/openapi.json", 405, "GET, HEAD"},
		{"PUT", "/api/config-files/config_kilo_json/upload", 405, "POST"},
		{"GET", "/api/instances/1/pause", 405, "POST"},
		{"PUT", "/api/instances/1", 405, "GET, HEAD, DELETE"},
		{"GET", "/api/groups/alpha/start", 405, "POST"},
		{"DELETE", "/api/operations/x", 405, "GET, HEAD"},
		{"GET", "/api/instances/1/2/3", 404, ""},
	}
	for _, tt := range tests {
		t.Run(tt.method+" "+tt.path, func(t *testing.T) {
			r := e.do(tt.method, tt.path, "", nil)
			r.wantError(t, tt.status, "")
			if got := r.header.Get("Allow"); got != tt.allow {
				t.Errorf("Allow = %q, want %q", got, tt.allow)
			}
		})
	}
}

func TestJSONBodyErrors(t *testing.T) {
	e := newTestEnv(t, Options{MaxBodyBytes: 64})
	tests := []struct {
		name        string
		contentType string
		body        string
		status      int
		field       string
		substrs     []string
	}{
		{"syntax", "application/json", `{"name": x}`, 400, "",
			[]string{"invalid JSON body: line 1, column 10:", "invalid character 'x'"}},
		{"syntax on line 2", "application/json", "{\n  \"name\": \"a\",,\n}", 400, "",
			[]string{"invalid JSON body: line 2, column 15:"}},
		{"unknown field", "application/json", `{"name": "a", "colour": "red"}`, 400, "colour",
			[]string{"invalid JSON body: line 1, column 15:", `unknown field "colour"`}},
		{"wrong type", "application/json", `{"name": 5}`, 400, "name",
			[]string{"invalid JSON body: line 1", `field "name" must be a string, got number`}},
		{"array", "application/json", `["a"]`, 400, "",
			[]string{"want a JSON object, got array"}},
		{"empty", "application/json", ``, 400, "", []string{"body is empty"}},
		{"truncated", "application/json", `{"name": "a"`, 400, "", []string{"unexpected end of input"}},
		{"trailing data", "application/json", `{"name": "a"} {}`, 400, "",
			[]string{"line 1, column 15: unexpected data after the JSON object"}},
		{"too large", "application/json", `{"name": "` + strings.Repeat("a", 100) + `"}`, 413, "",
			[]string{"request body too large: limit is 64 bytes"}},
		{"form content type", "application/x-www-form-urlencoded", `name=a`, 415, "",
			[]string{`unsupported content type "application/x-www-form-urlencoded"`}},
		{"broken content type", "application/json; =", `{}`, 415, "", []string{"invalid content type"}},
		{"bad name", "application/json", `{"name": "Alpha"}`, 400, "name", []string{"uppercase"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e.do("POST", "/api/groups", tt.contentType, []byte(tt.body)).
				wantError(t, tt.status, tt.field, tt.substrs...)
		})
	}
	// None of them created anything.
	var list groupList
	e.do("GET", "/api/groups", "", nil).wantStatus(t, 200).decode(t, &list)
	if len(list.Groups) != 0 {
		t.Errorf("groups after bad requests = %+v, want none", list.Groups)
	}
	// A JSON body with a charset parameter and a +json type are fine.
	e.do("POST", "/api/groups", "application/json; charset=utf-8", []byte(`{"name":"a"}`)).wantStatus(t, 201)
	e.do("POST", "/api/groups", "application/merge-patch+json", []byte(`{"name":"b"}`)).wantStatus(t, 201)
	e.do("POST", "/api/groups", "", []byte(`{"name":"c"}`)).wantStatus(t, 201)
}

func TestInternalErrorsAreHidden(t *testing.T) {
	e := newTestEnv(t, Options{})
	if err := e.store.Close(); err != nil {
		t.Fatal(err)
	}
	r := e.do("GET", "/api/groups", "", nil)
	r.wantError(t, 500, "")
	if got := string(bytes.TrimSpace(r.body)); got != `{"error":"internal error"}` {
		t.Errorf("body = %s, want only the generic error", got)
	}
	if logs := e.logs.String(); !strings.Contains(logs, "api request failed") || !strings.Contains(logs, "/api/groups") {
		t.Errorf("the failure was not logged; logs: %s", logs)
	}
	e.do("GET", "/api/health", "", nil).wantError(t, 503, "", "database unavailable")
}
