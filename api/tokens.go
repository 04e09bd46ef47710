package api

import (
	"net/http"

	"github.com/thon-dev/thon/store"
)

// tokenRoutes registers the organiser API token routes. The admin endpoint
// serves them as /thon/tokens, for `thon token create|list|revoke`.
func (s *Server) tokenRoutes() {
	s.handle("GET", "/api/tokens", s.listTokens)
	s.handle("POST", "/api/tokens", s.createToken)
	s.handle("DELETE", "/api/tokens/{name}", s.revokeToken)
}

// tokenList answers GET /api/tokens: never the tokens, only their prefixes.
type tokenList struct {
	Tokens []store.APIToken `json:"tokens"`
}

// tokenCreateRequest is the body of POST /api/tokens.
type tokenCreateRequest struct {
	Name string `json:"name"`
}

// createdToken answers POST /api/tokens: the only time the token is shown.
type createdToken struct {
	store.APIToken
	Token string `json:"token"`
}

func (s *Server) listTokens(w http.ResponseWriter, r *http.Request) error {
	list, err := s.auth.ListTokens(r.Context())
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, tokenList{Tokens: list})
	return nil
}

func (s *Server) createToken(w http.ResponseWriter, r *http.Request) error {
	var req tokenCreateRequest
	if err := s.decodeJSON(w, r, &req); err != nil {
		return err
	}
	token, t, err := s.auth.CreateToken(r.Context(), req.Name)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusCreated, createdToken{APIToken: t, Token: token})
	return nil
}

func (s *Server) revokeToken(w http.ResponseWriter, r *http.Request) error {
	t, err := s.auth.RevokeToken(r.Context(), r.PathValue("name"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, t)
	return nil
}
