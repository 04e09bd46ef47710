package api

import (
	"net/http"
)

// healthRoutes registers GET /api/health.
func (s *Server) healthRoutes() {
	s.handlePublic("GET", "/api/health", s.health)
}

// healthStatus is the answer of GET /api/health.
type healthStatus struct {
	Status        string `json:"status"`
	SchemaVersion int    `json:"schema_version"`
}

// health answers 200 when the database answers, 503 otherwise.
func (s *Server) health(w http.ResponseWriter, r *http.Request) error {
	v, err := s.store.SchemaVersion(r.Context())
	if err != nil {
		s.logger.Error("health check failed", "error", err)
		return errorf(http.StatusServiceUnavailable, "", "database unavailable")
	}
	writeJSON(w, http.StatusOK, healthStatus{Status: "ok", SchemaVersion: v})
	return nil
}
