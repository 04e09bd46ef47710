package main

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// newTestServer starts the handler on a loopback httptest server with a
// temporary workspace and home.
func newTestServer(t *testing.T, auth, password string) (*httptest.Server, config) {
	t.Helper()
	dir := t.TempDir()
	cfg := config{
		bindAddr:  "127.0.0.1:0",
		auth:      auth,
		password:  password,
		workspace: filepath.Join(dir, "workspace"),
		home:      filepath.Join(dir, "home"),
	}
	for _, d := range []string{cfg.workspace, cfg.home} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	s, err := newServer(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(s)
	t.Cleanup(ts.Close)
	return ts, cfg
}

// noRedirect is a client that reports redirects instead of following them.
var noRedirect = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

func do(t *testing.T, method, u string, body io.Reader, cookies ...*http.Cookie) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(method, u, body)
	if err != nil {
		t.Fatal(err)
	}
	if method == http.MethodPost {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	for _, c := range cookies {
		req.AddCookie(c)
	}
	resp, err := noRedirect.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, string(b)
}

func TestHealthz(t *testing.T) {
	for _, auth := range []string{"none", "password"} {
		ts, _ := newTestServer(t, auth, "pw")
		resp, body := do(t, http.MethodGet, ts.URL+"/healthz", nil)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("auth %s: status %d, want 200", auth, resp.StatusCode)
		}
		if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
			t.Errorf("auth %s: content type %q", auth, ct)
		}
		var got struct {
			Status        string `json:"status"`
			LastHeartbeat int64  `json:"lastHeartbeat"`
		}
		if err := json.Unmarshal([]byte(body), &got); err != nil {
			t.Fatalf("auth %s: body %q: %v", auth, body, err)
		}
		if got.Status != "alive" || got.LastHeartbeat <= 0 {
			t.Errorf("auth %s: got %+v, want status alive and a heartbeat", auth, got)
		}
	}
}

func TestPasswordLogin(t *testing.T) {
	ts, _ := newTestServer(t, "password", "correct horse")

	// Unauthenticated pages redirect to the login page relative to the root.
	for i, tc := range []struct{ path, location string }{
		{"/", "./login"},
		{"/foo", "./login?to=%2Ffoo"},
		{"/a/b", "../login?to=%2Fa%2Fb"},
		{"/a/b/c/", "../../../login?to=%2Fa%2Fb%2Fc%2F"},
		{"/files?path=x", "./login?to=%2Ffiles"},
	} {
		resp, _ := do(t, http.MethodGet, ts.URL+tc.path, nil)
		if resp.StatusCode != http.StatusFound || resp.Header.Get("Location") != tc.location {
			t.Errorf("case %d: GET %s = %d %q, want 302 %q", i, tc.path, resp.StatusCode, resp.Header.Get("Location"), tc.location)
		}
	}
	if resp, _ := do(t, http.MethodPut, ts.URL+"/files?path=x", strings.NewReader("x")); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("unauthenticated PUT: status %d, want 401", resp.StatusCode)
	}

	resp, body := do(t, http.MethodGet, ts.URL+"/login", nil)
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, `name="password"`) || !strings.Contains(body, `method="post"`) {
		t.Fatalf("GET /login = %d %q, want a login form", resp.StatusCode, body)
	}

	resp, body = do(t, http.MethodPost, ts.URL+"/login", strings.NewReader(url.Values{"password": {"wrong"}}.Encode()))
	if len(resp.Cookies()) != 0 || !strings.Contains(body, "Incorrect password") {
		t.Errorf("wrong password: cookies %v, body %q", resp.Cookies(), body)
	}

	resp, _ = do(t, http.MethodPost, ts.URL+"/login", strings.NewReader(url.Values{"password": {"correct horse"}}.Encode()))
	if resp.StatusCode != http.StatusFound || resp.Header.Get("Location") != "./" {
		t.Fatalf("login: %d %q, want 302 ./", resp.StatusCode, resp.Header.Get("Location"))
	}
	var session *http.Cookie
	for _, c := range resp.Cookies() {
		if c.Name == "code-server-session" {
			session = c
		}
	}
	if session == nil || session.Value == "" || !session.HttpOnly {
		t.Fatalf("login set cookies %v, want an HttpOnly code-server-session", resp.Cookies())
	}

	resp, body = do(t, http.MethodGet, ts.URL+"/some/page", nil, session)
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, `data-testid="sandbox"`) {
		t.Errorf("authenticated page: %d %q", resp.StatusCode, body)
	}
	if resp, _ := do(t, http.MethodGet, ts.URL+"/", nil, &http.Cookie{Name: "code-server-session", Value: "forged"}); resp.StatusCode != http.StatusFound {
		t.Errorf("forged cookie: status %d, want 302", resp.StatusCode)
	}

	// The post-login target comes back relative, and only as a local path.
	for i, tc := range []struct{ to, location string }{
		{"/a/b", "./a/b"},
		{"//evil.example/", "./"},
		{"https://evil.example/", "./"},
	} {
		form := url.Values{"password": {"correct horse"}, "to": {tc.to}}
		resp, _ := do(t, http.MethodPost, ts.URL+"/login", strings.NewReader(form.Encode()))
		if got := resp.Header.Get("Location"); resp.StatusCode != http.StatusFound || got != tc.location {
			t.Errorf("case %d: to %q: %d %q, want 302 %q", i, tc.to, resp.StatusCode, got, tc.location)
		}
	}

	// Logged in, the login page sends the user back.
	if resp, _ := do(t, http.MethodGet, ts.URL+"/login", nil, session); resp.StatusCode != http.StatusFound || resp.Header.Get("Location") != "./" {
		t.Errorf("GET /login with session: %d %q", resp.StatusCode, resp.Header.Get("Location"))
	}
}

func TestAuthNone(t *testing.T) {
	ts, _ := newTestServer(t, "none", "")
	resp, body := do(t, http.MethodGet, ts.URL+"/x/y", nil)
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, "/x/y") {
		t.Errorf("GET /x/y: %d %q", resp.StatusCode, body)
	}
	if resp, _ := do(t, http.MethodGet, ts.URL+"/login", nil); resp.StatusCode != http.StatusFound || resp.Header.Get("Location") != "./" {
		t.Errorf("GET /login with auth none: %d %q", resp.StatusCode, resp.Header.Get("Location"))
	}
}

func TestPage(t *testing.T) {
	ts, cfg := newTestServer(t, "none", "")
	if err := os.WriteFile(filepath.Join(cfg.workspace, "note.txt"), []byte("<b>hello</b>"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(cfg.home, "settings.json"), []byte(`{"a":1}`), 0o644); err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest(http.MethodGet, ts.URL+"/deep/path/?file=note.txt", nil)
	req.Host = "sandbox.example:8443"
	resp, err := noRedirect.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	body := string(b)
	for _, want := range []string{`data-testid="sandbox"`, "/deep/path/", "sandbox.example:8443", "&lt;b&gt;hello&lt;/b&gt;"} {
		if !strings.Contains(body, want) {
			t.Errorf("page lacks %q: %s", want, body)
		}
	}

	for i, tc := range []struct {
		file   string
		status int
		want   string
	}{
		{filepath.Join(cfg.home, "settings.json"), http.StatusOK, "{&#34;a&#34;:1}"},
		{"missing.txt", http.StatusNotFound, ""},
		{"../home/settings.json", http.StatusOK, "{&#34;a&#34;:1}"},
		{"../../etc/passwd", http.StatusForbidden, ""},
		{"/etc/passwd", http.StatusForbidden, ""},
	} {
		resp, body := do(t, http.MethodGet, ts.URL+"/?file="+url.QueryEscape(tc.file), nil)
		if resp.StatusCode != tc.status || !strings.Contains(body, tc.want) {
			t.Errorf("case %d: file %q: %d %q, want %d containing %q", i, tc.file, resp.StatusCode, body, tc.status, tc.want)
		}
	}
}

func TestFiles(t *testing.T) {
	ts, cfg := newTestServer(t, "none", "")
	outside := filepath.Join(filepath.Dir(cfg.workspace), "secret.txt")
	if err := os.WriteFile(outside, []byte("top secret"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(outside, filepath.Join(cfg.workspace, "link")); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(cfg.home, "h.txt"), []byte("home file"), 0o644); err != nil {
		t.Fatal(err)
	}

	ws := func(p string) string { return ts.URL + "/files?path=" + url.QueryEscape(p) }

	// PUT writes under the workspace, creating directories.
	resp, body := do(t, http.MethodPut, ws(filepath.Join(cfg.workspace, "a/b/c.txt")), strings.NewReader("persist me"))
	if resp.StatusCode != http.StatusNoContent {
		t.Fatalf("PUT: %d %q", resp.StatusCode, body)
	}
	if b, err := os.ReadFile(filepath.Join(cfg.workspace, "a/b/c.txt")); err != nil || string(b) != "persist me" {
		t.Fatalf("file on disk = %q, %v", b, err)
	}
	resp, body = do(t, http.MethodPut, ws("rel.txt"), strings.NewReader("relative"))
	if resp.StatusCode != http.StatusNoContent {
		t.Fatalf("PUT relative: %d %q", resp.StatusCode, body)
	}

	for i, tc := range []struct {
		method, path, body string
		status             int
		want               string
	}{
		{http.MethodGet, filepath.Join(cfg.workspace, "a/b/c.txt"), "", http.StatusOK, "persist me"},
		{http.MethodGet, "rel.txt", "", http.StatusOK, "relative"},
		{http.MethodGet, filepath.Join(cfg.home, "h.txt"), "", http.StatusOK, "home file"},
		{http.MethodGet, filepath.Join(cfg.workspace, "nope"), "", http.StatusNotFound, ""},
		{http.MethodGet, outside, "", http.StatusForbidden, ""},
		{http.MethodGet, filepath.Join(cfg.workspace, "../secret.txt"), "", http.StatusForbidden, ""},
		{http.MethodGet, "", "", http.StatusBadRequest, ""},
		{http.MethodPut, filepath.Join(cfg.home, "x.txt"), "no", http.StatusForbidden, ""},
		{http.MethodPut, outside, "no", http.StatusForbidden, ""},
		{http.MethodPut, cfg.workspace, "no", http.StatusForbidden, ""},
		{http.MethodDelete, "rel.txt", "", http.StatusMethodNotAllowed, ""},
	} {
		u := ts.URL + "/files"
		if tc.path != "" {
			u = ws(tc.path)
		}
		resp, body := do(t, tc.method, u, strings.NewReader(tc.body))
		if resp.StatusCode != tc.status || (tc.want != "" && body != tc.want) {
			t.Errorf("case %d: %s %q = %d %q, want %d %q", i, tc.method, tc.path, resp.StatusCode, body, tc.status, tc.want)
		}
	}

	// A symlink inside the workspace does not lead out of it.
	resp, body = do(t, http.MethodGet, ws(filepath.Join(cfg.workspace, "link")), nil)
	if resp.StatusCode == http.StatusOK || strings.Contains(body, "top secret") {
		t.Errorf("symlink escape: %d %q", resp.StatusCode, body)
	}
	if b, _ := os.ReadFile(outside); string(b) != "top secret" {
		t.Errorf("file outside the workspace changed: %q", b)
	}
}

func TestWebSocketEcho(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	ts, _ := newTestServer(t, "none", "")
	wsURL := "ws" + strings.TrimPrefix(ts.URL, "http")
	for _, path := range []string{"/", "/ws", "/any/deep/path?x=1"} {
		c, _, err := websocket.Dial(ctx, wsURL+path, nil)
		if err != nil {
			t.Fatalf("dial %s: %v", path, err)
		}
		for _, m := range []struct {
			typ  websocket.MessageType
			data string
		}{
			{websocket.MessageText, "hello " + path},
			{websocket.MessageBinary, "\x00\x01\x02"},
		} {
			if err := c.Write(ctx, m.typ, []byte(m.data)); err != nil {
				t.Fatal(err)
			}
			typ, data, err := c.Read(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if typ != m.typ || string(data) != m.data {
				t.Errorf("%s: echo %v %q, want %v %q", path, typ, data, m.typ, m.data)
			}
		}
		if err := c.Close(websocket.StatusNormalClosure, ""); err != nil {
			t.Errorf("%s: close: %v", path, err)
		}
	}

	// Like code-server, a cross-origin upgrade is refused.
	_, resp, err := websocket.Dial(ctx, wsURL+"/", &websocket.DialOptions{HTTPHeader: http.Header{"Origin": {"https://evil.example"}}})
	if err == nil || resp == nil || resp.StatusCode != http.StatusForbidden {
		t.Errorf("cross-origin dial: err %v, resp %v, want 403", err, resp)
	}
}

func TestWebSocketNeedsLogin(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	ts, cfg := newTestServer(t, "password", "pw")
	wsURL := "ws" + strings.TrimPrefix(ts.URL, "http") + "/ws"
	_, resp, err := websocket.Dial(ctx, wsURL, nil)
	if err == nil || resp == nil || resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("dial without session: err %v, resp %v, want 401", err, resp)
	}

	s, _ := newServer(cfg)
	h := http.Header{"Cookie": {"code-server-session=" + s.session}}
	c, _, err := websocket.Dial(ctx, wsURL, &websocket.DialOptions{HTTPHeader: h})
	if err != nil {
		t.Fatalf("dial with session: %v", err)
	}
	defer c.CloseNow()
	if err := c.Write(ctx, websocket.MessageText, []byte("ping")); err != nil {
		t.Fatal(err)
	}
	if _, data, err := c.Read(ctx); err != nil || string(data) != "ping" {
		t.Errorf("echo = %q, %v", data, err)
	}
}

func TestRelativeRoot(t *testing.T) {
	for i, tc := range []struct{ path, want string }{
		{"", "./"},
		{"/", "./"},
		{"/login", "./"},
		{"/a/", "../"},
		{"/a/b", "../"},
		{"/a/b/c", "../../"},
	} {
		if got := relativeRoot(tc.path); got != tc.want {
			t.Errorf("case %d: relativeRoot(%q) = %q, want %q", i, tc.path, got, tc.want)
		}
	}
}

// TestExit checks POST /exit: it answers, then ends the process with the
// code asked for; bad requests end nothing.
func TestExit(t *testing.T) {
	for _, auth := range []string{"none", "password"} {
		dir := t.TempDir()
		s, err := newServer(config{auth: auth, password: "pw", workspace: dir})
		if err != nil {
			t.Fatal(err)
		}
		exited := make(chan int, 1)
		s.exit = func(code int) { exited <- code }
		ts := httptest.NewServer(s)
		t.Cleanup(ts.Close)

		if auth == "password" {
			if resp, _ := do(t, http.MethodPost, ts.URL+"/exit?code=3", nil); resp.StatusCode != http.StatusUnauthorized {
				t.Errorf("auth %s: /exit without login: %d, want 401", auth, resp.StatusCode)
			}
			resp, _ := do(t, http.MethodPost, ts.URL+"/login", strings.NewReader(url.Values{"password": {"pw"}}.Encode()))
			var cookies []*http.Cookie
			cookies = append(cookies, resp.Cookies()...)
			if resp, body := do(t, http.MethodPost, ts.URL+"/exit?code=3", nil, cookies...); resp.StatusCode != http.StatusAccepted || body != "exiting with code 3\n" {
				t.Errorf("auth %s: /exit: %d %q", auth, resp.StatusCode, body)
			}
		} else {
			for _, bad := range []string{"", "?code=", "?code=x", "?code=-1", "?code=256"} {
				if resp, _ := do(t, http.MethodPost, ts.URL+"/exit"+bad, nil); resp.StatusCode != http.StatusBadRequest {
					t.Errorf("/exit%s: %d, want 400", bad, resp.StatusCode)
				}
			}
			if resp, _ := do(t, http.MethodGet, ts.URL+"/exit?code=3", nil); resp.StatusCode != http.StatusMethodNotAllowed {
				t.Errorf("GET /exit: %d, want 405", resp.StatusCode)
			}
			if len(exited) != 0 {
				t.Fatal("a bad /exit request ended the server")
			}
			if resp, body := do(t, http.MethodPost, ts.URL+"/exit?code=3", nil); resp.StatusCode != http.StatusAccepted || body != "exiting with code 3\n" {
				t.Errorf("/exit: %d %q", resp.StatusCode, body)
			}
		}
		select {
		case code := <-exited:
			if code != 3 {
				t.Errorf("auth %s: exited with %d, want 3", auth, code)
			}
		default:
			t.Errorf("auth %s: POST /exit did not end the server", auth)
		}
	}
}

// TestHeaders checks GET /headers and the first message of a WebSocket on
// /headers: both give the request's headers.
func TestHeaders(t *testing.T) {
	ts, _ := newTestServer(t, "none", "")
	req, _ := http.NewRequest(http.MethodGet, ts.URL+"/headers", nil)
	req.Header.Set("Cookie", "a=1; b=2")
	req.Header.Set("X-Forwarded-Prefix", "/s/g/u")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var h http.Header
	if err := json.NewDecoder(resp.Body).Decode(&h); err != nil {
		t.Fatal(err)
	}
	if h.Get("Cookie") != "a=1; b=2" || h.Get("X-Forwarded-Prefix") != "/s/g/u" {
		t.Errorf("GET /headers = %v", h)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(ts.URL, "http")+"/headers",
		&websocket.DialOptions{HTTPHeader: http.Header{"Cookie": {"c=3"}}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseNow()
	_, data, err := c.Read(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var wh http.Header
	if err := json.Unmarshal(data, &wh); err != nil || wh.Get("Cookie") != "c=3" {
		t.Errorf("WebSocket /headers = %s, %v", data, err)
	}
}
