package api

import (
	"context"
	"net/http"
	"net/url"
	"strconv"

	"github.com/thon-dev/thon/sandboxes"
)

// operationRoutes registers the group operations (start and stop every
// sandbox of a group, run in the background) and the route that reports
// their progress.
func (s *Server) operationRoutes() {
	s.handleSandboxes("POST", "/api/groups/{group_id}/start", s.groupOperation((*sandboxes.Manager).StartGroup))
	s.handleSandboxes("POST", "/api/groups/{group_id}/stop", s.groupOperation((*sandboxes.Manager).StopGroup))
	s.handleSandboxes("GET", "/api/operations/{id}", s.getOperation)
}

// operationResponse is the answer of the operation routes.
type operationResponse struct {
	Operation sandboxes.Operation `json:"operation"`
}

// groupOperation returns the handler that starts a group operation. It
// answers 202 with the running operation and its Location at once; with
// ?wait=true it answers 200 with the finished operation, or 202 with the
// operation as it is when the request ends first.
func (s *Server) groupOperation(start func(*sandboxes.Manager, context.Context, string) (sandboxes.Operation, error)) handlerFunc {
	return func(w http.ResponseWriter, r *http.Request) error {
		wait := false
		if v := r.URL.Query().Get("wait"); v != "" {
			b, err := strconv.ParseBool(v)
			if err != nil {
				return badRequest("wait", "wait must be true or false, got %q", v)
			}
			wait = b
		}
		if err := s.decodeOptionalJSON(w, r, &emptyRequest{}); err != nil {
			return err
		}
		op, err := start(s.sandboxes, r.Context(), r.PathValue("group_id"))
		if err != nil {
			return err
		}
		w.Header().Set("Location", "/api/operations/"+url.PathEscape(op.ID))
		if wait {
			done, err := s.sandboxes.WaitOperation(r.Context(), op.ID)
			if err == nil {
				writeJSON(w, http.StatusOK, operationResponse{Operation: done})
				return nil
			}
			if r.Context().Err() == nil {
				return err
			}
			op = done // the request ended first: report the progress so far
		}
		writeJSON(w, http.StatusAccepted, operationResponse{Operation: op})
		return nil
	}
}

func (s *Server) getOperation(w http.ResponseWriter, r *http.Request) error {
	id := r.PathValue("id")
	op, ok := s.sandboxes.Operation(id)
	if !ok {
		return errorf(http.StatusNotFound, "", "operation %q not found", id)
	}
	writeJSON(w, http.StatusOK, operationResponse{Operation: op})
	return nil
}
