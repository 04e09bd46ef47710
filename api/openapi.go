package api

import (
	_ "embed"
	"net/http"
)

// openAPIDocument is the OpenAPI 3.0.3 description of every route. It is
// maintained by hand next to the handlers; TestOpenAPICoversRoutes fails when
// a registered route is missing from it or it names a route that is not
// registered.
//
//go:embed openapi.json
var openAPIDocument []byte

// OpenAPI returns the OpenAPI document served at /openapi.json.
func OpenAPI() []byte {
	return append([]byte(nil), openAPIDocument...)
}

func (s *Server) serveOpenAPI(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Cache-Control", "no-cache")
	w.WriteHeader(http.StatusOK)
	if r.Method != http.MethodHead {
		_, _ = w.Write(openAPIDocument)
	}
}
