package api

import (
	"errors"
	"fmt"
	"net/http"

	"github.com/thon-dev/thon/sandboxes"
	"github.com/thon-dev/thon/store"
)

// Error is the body of every error response.
type Error struct {
	// Error says what went wrong, for people.
	Error string `json:"error"`
	// Field names the request field at fault, when there is one.
	Field string `json:"field,omitempty"`
}

// httpError is an error that carries its response status and field.
type httpError struct {
	status int
	field  string
	msg    string
}

func (e *httpError) Error() string { return e.msg }

// errorf returns an *httpError with status, field and a formatted message.
func errorf(status int, field, format string, args ...any) error {
	return &httpError{status: status, field: field, msg: fmt.Sprintf(format, args...)}
}

// badRequest returns a 400 error naming field.
func badRequest(field, format string, args ...any) error {
	return errorf(http.StatusBadRequest, field, format, args...)
}

// writeError maps err to a status and a JSON Error body. Errors the client
// caused carry their message; anything else is logged and answered with a
// generic 500 so that internals never leak.
func (s *Server) writeError(w http.ResponseWriter, r *http.Request, err error) {
	status, body := s.errorResponse(err)
	if status == http.StatusInternalServerError {
		s.logger.Error("api request failed",
			"method", r.Method, "path", r.URL.Path, "error", err)
	}
	writeJSON(w, status, body)
}

// errorResponse returns the status and body that answer err.
func (s *Server) errorResponse(err error) (int, Error) {
	var (
		he     *httpError
		fe     *store.FieldError
		clash  *store.NameClashError
		tooBig *http.MaxBytesError
	)
	switch {
	case errors.As(err, &he):
		return he.status, Error{Error: he.msg, Field: he.field}
	case errors.As(err, &tooBig):
		return http.StatusRequestEntityTooLarge,
			Error{Error: fmt.Sprintf("request body too large: limit is %d bytes", tooBig.Limit)}
	case errors.As(err, &fe):
		return http.StatusBadRequest, Error{Error: fe.Error(), Field: fe.Field}
	case errors.As(err, &clash):
		// Two users would share a container and volume: a conflict with
		// the stored users, caused by the named field.
		return http.StatusConflict, Error{Error: clash.Error(), Field: clash.Field}
	case errors.Is(err, sandboxes.ErrUnavailable):
		// The message names the Docker host or the missing image, which
		// the organiser needs to fix it; it holds no internal detail.
		return http.StatusServiceUnavailable, Error{Error: err.Error()}
	case errors.Is(err, store.ErrNotFound), errors.Is(err, sandboxes.ErrNotFound):
		return http.StatusNotFound, Error{Error: err.Error()}
	case errors.Is(err, store.ErrConflict), errors.Is(err, sandboxes.ErrConflict):
		return http.StatusConflict, Error{Error: err.Error()}
	default:
		return http.StatusInternalServerError, Error{Error: "internal error"}
	}
}
