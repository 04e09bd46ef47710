package api

import (
	"bytes"
	"errors"
	"html/template"
	"net/http"
	"net/url"

	"github.com/thon-dev/thon/auth"
	"github.com/thon-dev/thon/store"
)

// The sign-in pages are plain HTML forms: no script, no asset, so they work
// before the dashboard exists and with scripts off. Each form carries a
// form token that must match its cookie (see auth.FormCookie).

// pageCSP allows the pages nothing but their inline style and posting
// their forms to this site.
const pageCSP = "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"

var pages = template.Must(template.New("layout").Parse(`<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{.Title}} · thon</title>
<style>
body { font: 16px/1.5 system-ui, sans-serif; max-width: 26rem; margin: 4rem auto; padding: 0 1rem; color: #222; }
h1 { font-size: 1.4rem; }
label { display: block; margin: 1rem 0 .25rem; }
input[type=text], input[type=password] { width: 100%; box-sizing: border-box; padding: .5rem; font: inherit; }
button { margin-top: 1.25rem; padding: .5rem 1.25rem; font: inherit; }
.error { color: #a00; background: #fee; padding: .5rem .75rem; border-radius: 4px; }
.note { color: #555; }
</style>
</head>
<body>
<h1>{{.Title}}</h1>
{{if .Error}}<p class="error" role="alert">{{.Error}}</p>{{end}}
{{template "body" .}}
</body>
</html>
`))

var loginTemplate = template.Must(template.Must(pages.Clone()).Parse(`{{define "body"}}
{{if .Enabled}}
<form method="post" action="/api/auth/login">
<input type="hidden" name="csrf_token" value="{{.Token}}">
<input type="hidden" name="next" value="{{.Next}}">
<label for="login">Login <span class="note">(leave empty for the shared password)</span></label>
<input type="text" id="login" name="login" value="{{.Login}}" autocomplete="username">
<label for="password">Password</label>
<input type="password" id="password" name="password" autocomplete="current-password" required autofocus>
<button type="submit">Sign in</button>
</form>
{{else}}
<p>Password login is not set up. Open the setup link thon printed in its log at start, or set
AUTH_LOCAL_PASSWORD and restart thon. Scripts can use an API token: <code>thon token create --name NAME</code>.</p>
{{end}}
{{end}}`))

var setupTemplate = template.Must(template.Must(pages.Clone()).Parse(`{{define "body"}}
{{if .SetupToken}}
<p>Choose the first organiser's login and password. This link works once.</p>
<form method="post" action="/setup">
<input type="hidden" name="csrf_token" value="{{.Token}}">
<input type="hidden" name="token" value="{{.SetupToken}}">
<label for="login">Login</label>
<input type="text" id="login" name="login" value="{{.Login}}" autocomplete="username" required>
<label for="password">Password <span class="note">(at least {{.MinPassword}} characters)</span></label>
<input type="password" id="password" name="password" autocomplete="new-password" minlength="{{.MinPassword}}" required autofocus>
<label for="confirm">Password again</label>
<input type="password" id="confirm" name="confirm" autocomplete="new-password" required>
<button type="submit">Set up</button>
</form>
{{else}}
<p><a href="/login">Sign in</a></p>
{{end}}
{{end}}`))

var errorTemplate = template.Must(template.Must(pages.Clone()).Parse(`{{define "body"}}
{{if .Link}}<p><a href="{{.Link}}">{{.LinkText}}</a></p>{{end}}
{{end}}`))

// errorPageData is what an error page shows: Error, and a way on.
type errorPageData struct {
	Title          string
	Error          string
	Link, LinkText string
}

// pageError answers err on an HTML page. A browser that is not signed in
// (401) and asked for a page with GET is sent to /login with the page to
// come back to; otherwise the page says what went wrong, with the status
// the API would answer.
func (s *Server) pageError(w http.ResponseWriter, r *http.Request, err error) {
	status, body := s.errorResponse(err)
	if status == http.StatusUnauthorized && (r.Method == http.MethodGet || r.Method == http.MethodHead) {
		http.Redirect(w, r, "/login?next="+url.QueryEscape(r.URL.RequestURI()), http.StatusSeeOther)
		return
	}
	if status == http.StatusInternalServerError {
		s.logger.Error("page request failed", "method", r.Method, "path", r.URL.Path, "error", err)
	}
	page := errorPageData{Title: http.StatusText(status), Error: sentence(body.Error)}
	switch {
	case errors.Is(err, auth.ErrCSRF):
		page.Title = "Form expired"
		page.Error = "This form has expired or was sent from another site: reload the page and send it again."
		page.Link, page.LinkText = r.URL.Path, "Reload"
	case status == http.StatusUnauthorized, status == http.StatusForbidden:
		page.Title = "Not for you"
		page.Link, page.LinkText = "/login?next="+url.QueryEscape(r.URL.RequestURI()), "Sign in as someone else"
	case status == http.StatusInternalServerError:
		page.Error = "Something went wrong on thon's side; the organisers can find it in thon's log."
	}
	if werr := writePage(w, status, errorTemplate, page); werr != nil {
		s.logger.Debug("writing an error page failed", "path", r.URL.Path, "error", werr)
	}
}

// loginPage is what the login page shows.
type loginPage struct {
	Title   string
	Error   string
	Enabled bool   // password login is set up
	Token   string // the form token
	Next    string // where to go after signing in
	Login   string
}

// setupPageData is what the setup page shows; no SetupToken means the link
// cannot be used (Error says why).
type setupPageData struct {
	Title       string
	Error       string
	Token       string
	SetupToken  string
	Login       string
	MinPassword int
}

// writePage renders t with data as an HTML page with status.
func writePage(w http.ResponseWriter, status int, t *template.Template, data any) error {
	var buf bytes.Buffer
	if err := t.Execute(&buf, data); err != nil {
		return err
	}
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("Content-Security-Policy", pageCSP)
	h.Set("Referrer-Policy", "no-referrer") // the setup link's token is in its URL
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	w.WriteHeader(status)
	_, err := w.Write(buf.Bytes())
	return err
}

// formToken returns the form token of r's browser, making one (and its
// cookie) when it has none, so that several open pages share one.
func formToken(w http.ResponseWriter, r *http.Request) (string, error) {
	if c, err := r.Cookie(auth.FormCookieName); err == nil && len(c.Value) >= 32 && len(c.Value) <= 128 {
		return c.Value, nil
	}
	token, err := auth.NewFormToken()
	if err != nil {
		return "", err
	}
	http.SetCookie(w, auth.FormCookie(r, token))
	return token, nil
}

// loginPage shows the organisers' login form (GET /login?next=/path).
func (s *Server) loginPage(w http.ResponseWriter, r *http.Request) error {
	token, err := formToken(w, r)
	if err != nil {
		return err
	}
	enabled, err := s.auth.PasswordLogin(r.Context())
	if err != nil {
		return err
	}
	return s.renderLogin(w, http.StatusOK, loginPage{
		Enabled: enabled, Token: token, Next: localPath(r.URL.Query().Get("next")),
	})
}

func (s *Server) renderLogin(w http.ResponseWriter, status int, page loginPage) error {
	page.Title = "Sign in"
	return writePage(w, status, loginTemplate, page)
}

// setupPage shows the setup link's form, or why the link cannot be used
// (GET /setup?token=...).
func (s *Server) setupPage(w http.ResponseWriter, r *http.Request) error {
	token, err := formToken(w, r)
	if err != nil {
		return err
	}
	page := setupPageData{Token: token, SetupToken: r.URL.Query().Get("token"), Login: auth.DefaultSetupLogin}
	if page.SetupToken == "" {
		return s.renderSetup(w, http.StatusBadRequest, page, badRequest("token", "this page needs the setup link's token: open the whole link thon printed"))
	}
	if err := s.auth.CheckSetupToken(r.Context(), page.SetupToken); err != nil {
		return s.renderSetup(w, 0, page, err)
	}
	return s.renderSetup(w, http.StatusOK, page, nil)
}

// setupForm takes the setup form: sets the first organiser's password,
// signs them in and goes to the start page.
func (s *Server) setupForm(w http.ResponseWriter, r *http.Request) error {
	if err := s.parseForm(r); err != nil {
		return err
	}
	f := r.PostForm
	page := setupPageData{Token: f.Get(auth.CSRFField), SetupToken: f.Get("token"), Login: f.Get("login")}
	if f.Get("password") != f.Get("confirm") {
		return s.renderSetup(w, http.StatusBadRequest, page, badRequest("confirm", "the two passwords differ"))
	}
	iss, err := s.auth.CompleteSetup(r.Context(), page.SetupToken, page.Login, f.Get("password"))
	if err != nil {
		return s.renderSetup(w, 0, page, err)
	}
	http.SetCookie(w, s.auth.SessionCookie(r, iss))
	http.Redirect(w, r, "/", http.StatusSeeOther)
	return nil
}

// renderSetup shows the setup page with err, if any, at status (0: the
// status of err). A link that is used, out of time or unknown loses its
// form.
func (s *Server) renderSetup(w http.ResponseWriter, status int, page setupPageData, err error) error {
	page.Title = "Set up thon"
	page.MinPassword = auth.MinPasswordLen
	if err != nil {
		st, body := s.errorResponse(err)
		if st == http.StatusInternalServerError {
			return err
		}
		if status == 0 {
			status = st
		}
		page.Error = sentence(body.Error)
		switch {
		case errors.Is(err, store.ErrSpent):
			page.Error = "This setup link was used already: sign in with the password it set."
		case errors.Is(err, store.ErrExpired):
			page.Error = "This setup link has expired: restart thon to have a new one printed."
		case errors.Is(err, store.ErrNotFound):
			page.Error = "This setup link is not known: use the last link thon printed."
		}
		if errors.Is(err, store.ErrSpent) || errors.Is(err, store.ErrExpired) || errors.Is(err, store.ErrNotFound) ||
			errors.Is(err, store.ErrConflict) {
			page.SetupToken = ""
		}
	}
	return writePage(w, status, setupTemplate, page)
}
