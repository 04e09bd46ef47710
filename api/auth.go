package api

import (
	"errors"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/thon-dev/thon/auth"
	"github.com/thon-dev/thon/store"
)

// authRoutes registers the sign-in routes and pages. They are open: they
// are how one gets credentials.
func (s *Server) authRoutes() {
	s.handlePublic("POST", "/api/auth/login", s.login)
	s.handlePublic("POST", "/api/auth/logout", s.logout)
	s.handlePublic("GET", "/api/auth/me", s.me)
	s.handlePublic("POST", "/api/auth/setup", s.setup)
	s.handlePage("GET", "/login", s.loginPage)
	s.handlePage("GET", auth.SetupPath, s.setupPage)
	s.handlePage("POST", auth.SetupPath, s.setupForm)
}

// loginRequest is the body of POST /api/auth/login.
type loginRequest struct {
	// Login is the organiser's name; empty tries AUTH_LOCAL_PASSWORD and
	// every organiser's password.
	Login    string `json:"login,omitempty"`
	Password string `json:"password"`
}

// setupRequest is the body of POST /api/auth/setup.
type setupRequest struct {
	Token    string `json:"token"`
	Login    string `json:"login,omitempty"`
	Password string `json:"password"`
}

// meResponse is who the request is, with the CSRF token its session's
// changes must carry (none for a token).
type meResponse struct {
	auth.Principal
	CSRFToken string `json:"csrf_token,omitempty"`
}

// sessionResponse answers a sign-in: who, the CSRF token, the end of the
// session.
type sessionResponse struct {
	meResponse
	ExpiresAt time.Time `json:"expires_at"`
}

// logoutResponse answers POST /api/auth/logout.
type logoutResponse struct {
	// SignedOut tells whether a session ended.
	SignedOut bool `json:"signed_out"`
}

func newSessionResponse(iss auth.Issued) sessionResponse {
	return sessionResponse{
		meResponse: meResponse{Principal: iss.Principal, CSRFToken: iss.CSRFToken},
		ExpiresAt:  iss.ExpiresAt,
	}
}

// isForm reports whether r has an HTML form body.
func isForm(r *http.Request) bool {
	mt, err := mediaType(r)
	return err == nil && mt == "application/x-www-form-urlencoded"
}

// login signs an organiser in with a password: a JSON body answers the
// session as JSON, the form of /login a redirect to its next page (or the
// page again, saying what went wrong).
func (s *Server) login(w http.ResponseWriter, r *http.Request) error {
	if isForm(r) {
		return s.loginForm(w, r)
	}
	var req loginRequest
	if err := s.decodeJSON(w, r, &req); err != nil {
		return err
	}
	if req.Password == "" {
		return badRequest("password", "password must not be empty")
	}
	iss, err := s.auth.Login(r.Context(), clientAddr(r), req.Login, req.Password)
	if err != nil {
		return err
	}
	http.SetCookie(w, s.auth.SessionCookie(r, iss))
	writeJSON(w, http.StatusOK, newSessionResponse(iss))
	return nil
}

func (s *Server) loginForm(w http.ResponseWriter, r *http.Request) error {
	if err := s.parseForm(r); err != nil {
		return err
	}
	next := localPath(r.PostForm.Get("next"))
	page := loginPage{Next: next, Login: r.PostForm.Get("login"), Token: r.PostForm.Get(auth.CSRFField), Enabled: true}
	password := r.PostForm.Get("password")
	if password == "" {
		page.Error = "Enter the password."
		return s.renderLogin(w, http.StatusBadRequest, page)
	}
	iss, err := s.auth.Login(r.Context(), clientAddr(r), page.Login, password)
	if err != nil {
		status, body := s.errorResponse(err)
		if status == http.StatusInternalServerError {
			return err
		}
		var rl *auth.RateLimitError
		if errors.As(err, &rl) {
			w.Header().Set("Retry-After", strconv.Itoa(rl.RetrySeconds()))
		}
		page.Error = sentence(body.Error)
		return s.renderLogin(w, status, page)
	}
	http.SetCookie(w, s.auth.SessionCookie(r, iss))
	http.Redirect(w, r, next, http.StatusSeeOther)
	return nil
}

// logout ends the request's session, if it has one, and removes its
// cookie; the form of a page is sent back to /login.
func (s *Server) logout(w http.ResponseWriter, r *http.Request) error {
	form := isForm(r)
	if !form {
		var req emptyRequest
		if err := s.decodeOptionalJSON(w, r, &req); err != nil {
			return err
		}
	}
	p, _ := auth.FromContext(r.Context())
	ended := false
	if p.Session != "" {
		if err := s.auth.EndSession(r.Context(), p.Session); err != nil && !errors.Is(err, store.ErrNotFound) {
			return err
		}
		ended = true
	}
	http.SetCookie(w, auth.ClearSessionCookie(r))
	if form {
		http.Redirect(w, r, "/login", http.StatusSeeOther)
		return nil
	}
	writeJSON(w, http.StatusOK, logoutResponse{SignedOut: ended})
	return nil
}

// me answers who the request is: 401 for nobody.
func (s *Server) me(w http.ResponseWriter, r *http.Request) error {
	p, _ := auth.FromContext(r.Context())
	if p.Anonymous() {
		return errorf(http.StatusUnauthorized, "", "no credentials: send an API token (Authorization: Bearer) or sign in at /login")
	}
	writeJSON(w, http.StatusOK, meResponse{Principal: p, CSRFToken: s.auth.CSRFToken(p)})
	return nil
}

// setup spends the setup link's token to set the first organiser's
// password, and signs them in.
func (s *Server) setup(w http.ResponseWriter, r *http.Request) error {
	var req setupRequest
	if err := s.decodeJSON(w, r, &req); err != nil {
		return err
	}
	if req.Token == "" {
		return badRequest("token", "token must not be empty: it is the token of the setup link thon printed")
	}
	iss, err := s.auth.CompleteSetup(r.Context(), req.Token, req.Login, req.Password)
	if err != nil {
		return err
	}
	http.SetCookie(w, s.auth.SessionCookie(r, iss))
	writeJSON(w, http.StatusOK, newSessionResponse(iss))
	return nil
}

// clientAddr is the address the login limiter counts: the connection's
// peer.
func clientAddr(r *http.Request) string {
	if host, _, err := net.SplitHostPort(r.RemoteAddr); err == nil {
		return host
	}
	return r.RemoteAddr
}

// localPath returns p when it is a path on this site, else "/": a form
// cannot send a browser elsewhere.
func localPath(p string) string {
	if !strings.HasPrefix(p, "/") || strings.HasPrefix(p, "//") || strings.ContainsAny(p, "\\\r\n") {
		return "/"
	}
	return p
}

// sentence makes an error message a sentence for a page.
func sentence(msg string) string {
	if msg == "" {
		return msg
	}
	msg = strings.ToUpper(msg[:1]) + msg[1:]
	if !strings.HasSuffix(msg, ".") {
		msg += "."
	}
	return msg
}
