package main

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"io"
	"io/fs"
	"log"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
)

// sessionCookie is the cookie code-server sets after a password login.
const sessionCookie = "code-server-session"

// maxFileSize bounds PUT /files bodies and WebSocket messages.
const maxFileSize = 16 << 20

// server is the HTTP handler of the test server.
type server struct {
	cfg config
	// session is the cookie value that proves a login: like code-server,
	// which stores a hash of the password, it survives restarts.
	session string
	// roots are the directories /files and ?file= may read from; writes go
	// to the workspace (roots[0]) only.
	roots []string
	// heartbeat is the Unix time in milliseconds of the last activity.
	heartbeat atomic.Int64
	// exit ends the process, for POST /exit: os.Exit but in tests.
	exit func(code int)
}

func newServer(cfg config) (*server, error) {
	if fi, err := os.Stat(cfg.workspace); err != nil {
		return nil, fmt.Errorf("workspace: %w", err)
	} else if !fi.IsDir() {
		return nil, fmt.Errorf("workspace %s: not a directory", cfg.workspace)
	}
	s := &server{cfg: cfg, roots: []string{cfg.workspace}, exit: os.Exit}
	if cfg.home != "" && cfg.home != cfg.workspace {
		s.roots = append(s.roots, cfg.home)
	}
	if cfg.auth == "password" {
		sum := sha256.Sum256([]byte("code-server-session:" + cfg.password))
		s.session = hex.EncodeToString(sum[:])
	}
	s.heartbeat.Store(time.Now().UnixMilli())
	return s, nil
}

func (s *server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == "/healthz" {
		s.serveHealthz(w)
		return
	}
	s.heartbeat.Store(time.Now().UnixMilli())

	if isWebSocket(r) {
		if !s.authorized(r) {
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		s.serveEcho(w, r)
		return
	}

	switch r.URL.Path {
	case "/login":
		s.serveLogin(w, r)
		return
	case "/logout":
		http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: "", Path: "/", MaxAge: -1, HttpOnly: true, SameSite: http.SameSiteLaxMode})
		redirect(w, r, "login", "")
		return
	}

	if !s.authorized(r) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		to := ""
		if r.URL.Path != "/" {
			to = r.URL.Path
		}
		redirect(w, r, "login", to)
		return
	}

	switch r.URL.Path {
	case "/headers":
		serveHeaders(w, r)
		return
	case "/files":
		s.serveFiles(w, r)
		return
	case "/exit":
		s.serveExit(w, r)
		return
	}
	s.servePage(w, r)
}

// serveHeaders answers GET /headers with the request's headers as JSON,
// so that tests see what the proxy in front passed on (its cookies, its
// Authorization, its X-Forwarded-* headers). code-server has no such
// route: this is the test server's own.
func serveHeaders(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(r.Header)
}

// serveExit answers POST /exit?code=N and then ends the process at once
// with exit code N, the way a crash ends code-server.
func (s *server) serveExit(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", "POST")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	code, err := strconv.Atoi(r.URL.Query().Get("code"))
	if err != nil || code < 0 || code > 255 {
		http.Error(w, "query parameter code must be an exit code from 0 to 255", http.StatusBadRequest)
		return
	}
	w.WriteHeader(http.StatusAccepted)
	fmt.Fprintf(w, "exiting with code %d\n", code)
	if f, ok := w.(http.Flusher); ok {
		f.Flush()
	}
	log.Printf("exiting with code %d, as POST /exit asked", code)
	s.exit(code)
}

// serveHealthz answers like code-server's /healthz, which needs no login.
func (s *server) serveHealthz(w http.ResponseWriter) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]any{
		"status":        "alive",
		"lastHeartbeat": s.heartbeat.Load(),
	})
}

func (s *server) authorized(r *http.Request) bool {
	if s.cfg.auth == "none" {
		return true
	}
	c, err := r.Cookie(sessionCookie)
	if err != nil {
		return false
	}
	return subtle.ConstantTimeCompare([]byte(c.Value), []byte(s.session)) == 1
}

var loginPage = template.Must(template.New("login").Parse(`<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>code-server login</title></head>
<body>
<form method="post" action="">
<input type="hidden" name="to" value="{{.To}}">
<label>Password <input type="password" name="password" autofocus required></label>
<button type="submit">Submit</button>
</form>
{{if .Error}}<div class="error" role="alert">{{.Error}}</div>{{end}}
</body></html>
`))

func (s *server) serveLogin(w http.ResponseWriter, r *http.Request) {
	if s.cfg.auth == "none" || s.authorized(r) {
		redirect(w, r, safeTarget(r.FormValue("to")), "")
		return
	}
	data := struct{ To, Error string }{To: r.URL.Query().Get("to")}
	switch r.Method {
	case http.MethodGet, http.MethodHead:
	case http.MethodPost:
		r.Body = http.MaxBytesReader(w, r.Body, 1<<16)
		if err := r.ParseForm(); err != nil {
			http.Error(w, "bad form: "+err.Error(), http.StatusBadRequest)
			return
		}
		if subtle.ConstantTimeCompare([]byte(r.PostForm.Get("password")), []byte(s.cfg.password)) == 1 {
			http.SetCookie(w, &http.Cookie{
				Name:     sessionCookie,
				Value:    s.session,
				Path:     "/",
				HttpOnly: true,
				SameSite: http.SameSiteLaxMode,
			})
			redirect(w, r, safeTarget(r.FormValue("to")), "")
			return
		}
		data.To = r.FormValue("to")
		data.Error = "Incorrect password"
	default:
		w.Header().Set("Allow", "GET, HEAD, POST")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	_ = loginPage.Execute(w, data)
}

var page = template.Must(template.New("page").Parse(`<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>code-server</title></head>
<body>
<main data-testid="sandbox">
<p>path: <span data-testid="path">{{.Path}}</span></p>
<p>host: <span data-testid="host">{{.Host}}</span></p>
{{if .File}}<pre data-testid="file" data-name="{{.File}}">{{.Content}}</pre>{{end}}
</main>
</body></html>
`))

func (s *server) servePage(w http.ResponseWriter, r *http.Request) {
	data := struct{ Path, Host, File, Content string }{Path: r.URL.Path, Host: r.Host}
	if name := r.URL.Query().Get("file"); name != "" {
		content, err := s.readFile(name)
		if err != nil {
			http.Error(w, err.Error(), fileErrorStatus(err))
			return
		}
		data.File = name
		data.Content = string(content)
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	_ = page.Execute(w, data)
}

func (s *server) serveFiles(w http.ResponseWriter, r *http.Request) {
	name := r.URL.Query().Get("path")
	if name == "" {
		http.Error(w, "missing query parameter path", http.StatusBadRequest)
		return
	}
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		content, err := s.readFile(name)
		if err != nil {
			http.Error(w, err.Error(), fileErrorStatus(err))
			return
		}
		w.Header().Set("Content-Type", "application/octet-stream")
		_, _ = w.Write(content)
	case http.MethodPut:
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxFileSize))
		if err != nil {
			http.Error(w, "body: "+err.Error(), http.StatusRequestEntityTooLarge)
			return
		}
		if err := s.writeFile(name, body); err != nil {
			http.Error(w, err.Error(), fileErrorStatus(err))
			return
		}
		w.WriteHeader(http.StatusNoContent)
	default:
		w.Header().Set("Allow", "GET, HEAD, PUT")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
	}
}

// errOutside reports a path outside the directories a request may touch.
var errOutside = errors.New("path is outside the workspace and home directories")

func fileErrorStatus(err error) int {
	switch {
	case errors.Is(err, errOutside):
		return http.StatusForbidden
	case errors.Is(err, fs.ErrNotExist):
		return http.StatusNotFound
	case errors.Is(err, fs.ErrPermission):
		return http.StatusForbidden
	default:
		return http.StatusInternalServerError
	}
}

// locate maps name (absolute, or relative to the workspace) to one of roots
// and the path inside it.
func locate(name string, roots []string) (root, rel string, err error) {
	p := name
	if !filepath.IsAbs(p) {
		p = filepath.Join(roots[0], p)
	}
	p = filepath.Clean(p)
	for _, root := range roots {
		rel, err := filepath.Rel(root, p)
		if err != nil || rel == ".." || strings.HasPrefix(rel, ".."+string(filepath.Separator)) {
			continue
		}
		return root, rel, nil
	}
	return "", "", errOutside
}

// readFile reads name under one of the roots; os.Root refuses symlinks that
// lead out of it.
func (s *server) readFile(name string) ([]byte, error) {
	root, rel, err := locate(name, s.roots)
	if err != nil {
		return nil, err
	}
	dir, err := os.OpenRoot(root)
	if err != nil {
		return nil, err
	}
	defer dir.Close()
	return dir.ReadFile(rel)
}

// writeFile writes name under the workspace, creating its parent directories.
func (s *server) writeFile(name string, content []byte) error {
	root, rel, err := locate(name, s.roots[:1])
	if err != nil {
		return err
	}
	if rel == "." {
		return errOutside
	}
	dir, err := os.OpenRoot(root)
	if err != nil {
		return err
	}
	defer dir.Close()
	if parent := filepath.Dir(rel); parent != "." {
		if err := dir.MkdirAll(parent, 0o755); err != nil {
			return err
		}
	}
	return dir.WriteFile(rel, content, 0o644)
}

func isWebSocket(r *http.Request) bool {
	return strings.EqualFold(r.Header.Get("Upgrade"), "websocket") &&
		headerContainsToken(r.Header, "Connection", "upgrade")
}

func headerContainsToken(h http.Header, name, token string) bool {
	for _, v := range h.Values(name) {
		for t := range strings.SplitSeq(v, ",") {
			if strings.EqualFold(strings.TrimSpace(t), token) {
				return true
			}
		}
	}
	return false
}

// serveEcho sends every message back with its type until the peer closes.
// Like code-server, it refuses cross-origin upgrades.
func (s *server) serveEcho(w http.ResponseWriter, r *http.Request) {
	c, err := websocket.Accept(w, r, nil)
	if err != nil {
		return
	}
	defer c.CloseNow()
	c.SetReadLimit(maxFileSize)
	ctx := r.Context()
	if r.URL.Path == "/headers" {
		// the upgrade request's headers first, as GET /headers gives them
		b, _ := json.Marshal(r.Header)
		if err := c.Write(ctx, websocket.MessageText, b); err != nil {
			return
		}
	}
	for {
		typ, data, err := c.Read(ctx)
		if err != nil {
			if websocket.CloseStatus(err) == websocket.StatusNormalClosure {
				_ = c.Close(websocket.StatusNormalClosure, "")
			}
			return
		}
		s.heartbeat.Store(time.Now().UnixMilli())
		if err := c.Write(ctx, typ, data); err != nil {
			return
		}
	}
}

// redirect answers 302 to target relative to the root the request path sits
// under, the way code-server's redirects work behind a prefix-stripping proxy
// (a request for /a/b goes to ../login). to, if set, is added as ?to=.
func redirect(w http.ResponseWriter, r *http.Request, target, to string) {
	loc := relativeRoot(r.URL.Path) + strings.TrimPrefix(target, "/")
	if loc == "" {
		loc = "./"
	}
	if to != "" {
		loc += "?to=" + url.QueryEscape(to)
	}
	w.Header().Set("Location", loc)
	w.WriteHeader(http.StatusFound)
}

// relativeRoot is code-server's relativeRoot: "./" for a path one level deep,
// one "../" for every further level.
func relativeRoot(path string) string {
	depth := strings.Count(path, "/")
	if depth <= 1 {
		return "./"
	}
	return strings.Repeat("../", depth-1)
}

// safeTarget keeps a post-login target only when it is a plain absolute path
// on this server.
func safeTarget(to string) string {
	if !strings.HasPrefix(to, "/") || strings.HasPrefix(to, "//") || strings.ContainsAny(to, "\\\r\n") {
		return "/"
	}
	return to
}
