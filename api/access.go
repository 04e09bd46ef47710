package api

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	"github.com/thon-dev/thon/auth"
	"github.com/thon-dev/thon/store"
)

// Level says who may call a route. Every route has one; the check runs in
// Server.register, before the handler, for every route and page.
type Level string

// Access levels.
const (
	// LevelPublic routes answer anyone (health, the sign-in routes). The
	// request's principal, if any, is still known to the handler.
	LevelPublic Level = "public"
	// LevelOrganiser routes answer organisers only: a token, or a session
	// with its CSRF token for changes. The default.
	LevelOrganiser Level = "organiser"
	// LevelParticipant routes answer organisers, and participants for what
	// is theirs, as the route's OwnerCheck decides.
	LevelParticipant Level = "participant"
)

// OwnerCheck decides whether participant p may use what r addresses (its
// path values, such as r.PathValue("user_id")). It must read memory or the
// database only and must not write. Compare users by p.UserID.
type OwnerCheck func(p auth.Principal, r *http.Request) bool

// access is a route's rule: its level and, for LevelParticipant, its owner
// check (nil: any participant, for routes about the caller themself).
type access struct {
	level Level
	owns  OwnerCheck
}

var (
	publicAccess    = access{level: LevelPublic}
	organiserAccess = access{level: LevelOrganiser}
)

// participantAccess is LevelParticipant with owns (nil: routes about the
// caller themself, such as their own page).
func participantAccess(owns OwnerCheck) access {
	return access{level: LevelParticipant, owns: owns}
}

// handle registers an organiser route; see register.
func (s *Server) handle(method, pattern string, h handlerFunc) {
	s.register(method, pattern, organiserAccess, true, h)
}

// handlePublic registers a route that anyone may call; see register.
func (s *Server) handlePublic(method, pattern string, h handlerFunc) {
	s.register(method, pattern, publicAccess, true, h)
}

// handleOwn registers a route for organisers and for the participants
// owns admits (nil: every participant); see register.
func (s *Server) handleOwn(method, pattern string, owns OwnerCheck, h handlerFunc) {
	s.register(method, pattern, participantAccess(owns), true, h)
}

// handlePage registers an HTML page that anyone may open: it goes through
// the same checks as the routes but is not an API route (not in Routes
// nor in the OpenAPI document).
func (s *Server) handlePage(method, pattern string, h handlerFunc) {
	s.register(method, pattern, publicAccess, false, h)
}

// handleOrganiserPage registers an HTML page for organisers only: a
// browser without a session is sent to /login and back (see pageError).
func (s *Server) handleOrganiserPage(method, pattern string, h handlerFunc) {
	s.register(method, pattern, organiserAccess, false, h)
}

// handleOwnPage registers an HTML page for organisers and for the
// participants owns admits (nil: every participant); a browser without a
// session is sent to /login and back (see pageError).
func (s *Server) handleOwnPage(method, pattern string, owns OwnerCheck, h handlerFunc) {
	s.register(method, pattern, participantAccess(owns), false, h)
}

// register registers h for method and pattern (e.g. "GET",
// "/api/groups/{group_id}"), records API routes for Routes, and wraps h in
// the one access check of the API (see guard). The handler's context
// carries the principal (auth.FromContext) and the audit actor. An error
// of an API route is answered as JSON (writeError), one of a page as a
// page (pageError).
func (s *Server) register(method, pattern string, a access, isRoute bool, h handlerFunc) {
	rt := Route{Method: method, Pattern: pattern, Access: a.level}
	if isRoute {
		s.routes = append(s.routes, rt)
	} else {
		s.pages = append(s.pages, rt)
	}
	s.mux.HandleFunc(method+" "+pattern, func(w http.ResponseWriter, r *http.Request) {
		r, err := s.guard(r, a)
		if err == nil {
			err = h(w, r)
		}
		switch {
		case err == nil:
		case isRoute:
			s.writeError(w, r, err)
		default:
			s.pageError(w, r, err)
		}
	})
}

// trustedKey marks requests of the admin endpoint (ServeAdmin).
type trustedKey struct{}

// adminPrincipal is who a request of the admin endpoint is.
var adminPrincipal = auth.Principal{Kind: auth.KindOrganiser, Name: "admin endpoint", Method: auth.MethodAdmin}

// ServeAdmin serves r for a process on the host, through Caddy's admin
// endpoint: as an organiser, with no credentials, as Caddy's admin API
// trusts its callers. Never call it for requests from a site.
func (s *Server) ServeAdmin(w http.ResponseWriter, r *http.Request) {
	s.mux.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), trustedKey{}, true)))
}

// guard is the access check of every route and page:
//
//  1. A state-changing request (not GET, HEAD, OPTIONS) that a browser
//     marks cross-origin (Sec-Fetch-Site, Origin) is refused (403).
//  2. The credentials are read: an organiser API token (Bearer), else the
//     session cookie. Bad ones are a 401 except on public routes, where
//     the request goes on as nobody's.
//  3. The level: organiser routes want an organiser (401 without
//     credentials, 403 for a participant); participant routes want an
//     organiser or a participant the owner check admits.
//  4. CSRF: a state-changing request made with a session cookie carries
//     the session's CSRF token (X-CSRF-Token, or the form field
//     csrf_token); on a public route, one whose body a plain HTML form can
//     send (form, multipart, text/plain, no type) carries the session's
//     token or the form token of the page it came from. A Bearer token
//     needs none: a browser never sends it by itself.
func (s *Server) guard(r *http.Request, a access) (*http.Request, error) {
	ctx := store.WithActor(r.Context(), "api")
	if trusted, _ := r.Context().Value(trustedKey{}).(bool); trusted {
		return r.WithContext(auth.WithPrincipal(ctx, adminPrincipal)), nil
	}
	unsafe := r.Method != http.MethodGet && r.Method != http.MethodHead && r.Method != http.MethodOptions
	if unsafe {
		if err := s.crossOrigin.Check(r); err != nil {
			return r, errorf(http.StatusForbidden, "", "cross-origin request refused: %v", err)
		}
	}
	p, err := s.auth.Authenticate(r)
	if err != nil {
		if a.level != LevelPublic {
			return r, err
		}
		// A public route answers nobody as well: health must say what is
		// wrong with the database, not fail on the token lookup.
		if !errors.Is(err, auth.ErrUnauthenticated) {
			s.logger.Error("checking credentials failed", "method", r.Method, "path", r.URL.Path, "error", err)
		}
		p = auth.Principal{}
	}
	switch a.level {
	case LevelOrganiser:
		if p.Anonymous() {
			return r, fmt.Errorf("%s %s is for organisers: send an API token (Authorization: Bearer) or sign in at /login: %w",
				r.Method, r.URL.Path, auth.ErrUnauthenticated)
		}
		if !p.IsOrganiser() {
			return r, fmt.Errorf("%s %s is for organisers: %w", r.Method, r.URL.Path, auth.ErrForbidden)
		}
	case LevelParticipant:
		if p.Anonymous() {
			return r, fmt.Errorf("%s %s: send an API token (Authorization: Bearer) or sign in first: %w",
				r.Method, r.URL.Path, auth.ErrUnauthenticated)
		}
		if p.IsParticipant() && a.owns != nil && !a.owns(p, r) {
			return r, fmt.Errorf("%s %s is not yours: %w", r.Method, r.URL.Path, auth.ErrForbidden)
		}
	}
	if unsafe {
		if err := s.checkCSRF(r, a, p); err != nil {
			return r, err
		}
	}
	return r.WithContext(auth.WithPrincipal(ctx, p)), nil
}

// checkCSRF is step 4 of guard.
func (s *Server) checkCSRF(r *http.Request, a access, p auth.Principal) error {
	bySession := p.Session != ""
	if !p.Anonymous() && !bySession {
		return nil // a Bearer token (or the admin endpoint)
	}
	mt, err := mediaType(r)
	formSendable := err != nil || mt == "" || mt == "application/x-www-form-urlencoded" ||
		mt == "multipart/form-data" || mt == "text/plain"
	if a.level == LevelPublic && !formSendable {
		return nil // a browser sends other types only to its own origin (CORS)
	}
	token := r.Header.Get(auth.CSRFHeader)
	if token == "" && err == nil && mt == "application/x-www-form-urlencoded" {
		if err := s.parseForm(r); err != nil {
			return err
		}
		token = r.PostForm.Get(auth.CSRFField)
	}
	if bySession && s.auth.CheckCSRF(p, token) {
		return nil
	}
	if a.level == LevelPublic && auth.CheckFormToken(r, token) {
		return nil
	}
	if bySession {
		return fmt.Errorf("%w: a request made with a session cookie must send the session's token in the %s header (GET /api/auth/me gives it)",
			auth.ErrCSRF, auth.CSRFHeader)
	}
	return fmt.Errorf("%w: send a JSON body, or the form of the page this request comes from", auth.ErrCSRF)
}

// parseForm parses an HTML form body of at most the JSON body limit into
// r.PostForm (once: a parsed form stays parsed).
func (s *Server) parseForm(r *http.Request) error {
	if r.PostForm != nil {
		return nil
	}
	r.Body = http.MaxBytesReader(nil, r.Body, s.maxBody)
	if err := r.ParseForm(); err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return err
		}
		return badRequest("", "invalid form body: %v", err)
	}
	return nil
}
