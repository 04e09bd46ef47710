package api

import (
	"errors"
	"fmt"
	"net/http"
	"strconv"

	"github.com/thon-dev/thon/auth"
	"github.com/thon-dev/thon/gateway"
	"github.com/thon-dev/thon/llm"
	"github.com/thon-dev/thon/sandboxes"
	"github.com/thon-dev/thon/sandboxes/nginx"
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
	switch status {
	case http.StatusUnauthorized:
		w.Header().Set("WWW-Authenticate", `Bearer realm="thon"`)
	case http.StatusTooManyRequests:
		var rl *auth.RateLimitError
		if errors.As(err, &rl) {
			w.Header().Set("Retry-After", strconv.Itoa(rl.RetrySeconds()))
		}
	}
	if status == http.StatusInternalServerError {
		s.logger.Error("api request failed",
			"method", r.Method, "path", r.URL.Path, "error", err)
	}
	writeJSON(w, status, body)
}

// errorResponse returns the status and body that answer err.
func (s *Server) errorResponse(err error) (int, Error) {
	var (
		he        *httpError
		fe        *store.FieldError
		clash     *store.NameClashError
		tooBig    *http.MaxBytesError
		llmField  *llm.FieldError
		llmDir    *llm.ConfigDirError
		llmReload *llm.ReloadError
		nginxStep *nginx.StepError
		nginxFe   *nginx.FieldError
		nginxErr  *nginx.Error
		rateLimit *auth.RateLimitError
	)
	switch {
	case errors.As(err, &he):
		return he.status, Error{Error: he.msg, Field: he.field}
	case errors.Is(err, auth.ErrUnauthenticated), errors.Is(err, auth.ErrWrongPassword),
		errors.Is(err, auth.ErrNoPasswordLogin):
		return http.StatusUnauthorized, Error{Error: err.Error()}
	case errors.Is(err, auth.ErrCSRF):
		return http.StatusForbidden, Error{Error: err.Error(), Field: auth.CSRFField}
	case errors.Is(err, auth.ErrForbidden):
		return http.StatusForbidden, Error{Error: err.Error()}
	case errors.As(err, &rateLimit):
		return http.StatusTooManyRequests, Error{Error: rateLimit.Error()}
	case errors.Is(err, store.ErrSpent), errors.Is(err, store.ErrExpired):
		// A one-time link used or out of time: gone for good.
		return http.StatusGone, Error{Error: err.Error()}
	case errors.As(err, &tooBig):
		return http.StatusRequestEntityTooLarge,
			Error{Error: fmt.Sprintf("request body too large: limit is %d bytes", tooBig.Limit)}
	case errors.As(err, &fe):
		return http.StatusBadRequest, Error{Error: fe.Error(), Field: fe.Field}
	case errors.As(err, &clash):
		// Two users would share a container and volume: a conflict with
		// the stored users, caused by the named field.
		return http.StatusConflict, Error{Error: clash.Error(), Field: clash.Field}
	case errors.As(err, &llmField):
		return http.StatusBadRequest, Error{Error: llmField.Error(), Field: llmField.Field}
	case errors.As(err, &llmDir):
		// The organiser fixes the directory: the message says what is
		// wrong with it. Not being able to write it is the server's
		// failure; the rest is the state of the machine.
		if llmDir.Write {
			return http.StatusInternalServerError, Error{Error: llmDir.Error()}
		}
		return http.StatusConflict, Error{Error: llmDir.Error()}
	case errors.As(err, &llmReload):
		errors.As(lemonadeHTTPError(llmReload.URL, llmReload.Err), &he)
		if llmReload.Changed {
			return he.status, Error{Error: fmt.Sprintf("configuration written for %d users; %s", llmReload.Users, he.msg), Field: he.field}
		}
		return he.status, Error{Error: he.msg, Field: he.field}
	case errors.As(err, &nginxStep):
		// nginx refused or failed: its own message, for the organiser.
		return http.StatusBadGateway, Error{Error: nginxStep.Error()}
	case errors.As(err, &nginxFe):
		// A site that cannot be rendered from thon's configuration.
		return http.StatusInternalServerError, Error{Error: "nginx site: " + nginxFe.Error(), Field: nginxFe.Field}
	case errors.As(err, &nginxErr):
		// A file in the way, no certificate: the message says what to fix.
		return http.StatusInternalServerError, Error{Error: "nginx: " + nginxErr.Error()}
	case errors.Is(err, sandboxes.ErrUnavailable):
		// The message names the Docker host or the missing image, which
		// the organiser needs to fix it; it holds no internal detail.
		return http.StatusServiceUnavailable, Error{Error: err.Error()}
	case errors.Is(err, store.ErrNotFound), errors.Is(err, sandboxes.ErrNotFound):
		return http.StatusNotFound, Error{Error: err.Error()}
	case errors.Is(err, store.ErrConflict), errors.Is(err, sandboxes.ErrConflict),
		errors.Is(err, gateway.ErrConflict), errors.Is(err, gateway.ErrOff):
		return http.StatusConflict, Error{Error: err.Error()}
	default:
		return http.StatusInternalServerError, Error{Error: "internal error"}
	}
}

// lemonadeHTTPError maps an error of the Lemonade client to its answer,
// naming Lemonade and its URL: unreachable is 503; a refused API key (401)
// or forbidden request (403) is 502, since thon's key is at fault, not the
// client's request; Lemonade refusing the request itself (400, 404, 409,
// 422: an unknown model, bad arguments) keeps its status; any other answer
// is 502.
func lemonadeHTTPError(base string, err error) error {
	var (
		he *httpError
		ue *llm.UnreachableError
		le *llm.LemonadeError
	)
	switch {
	case errors.As(err, &he):
		return err
	case errors.As(err, &ue):
		return errorf(http.StatusServiceUnavailable, "", "lemonade at %s is unreachable: %v", base, ue.Err)
	case errors.As(err, &le):
		switch le.Status {
		case http.StatusUnauthorized:
			return errorf(http.StatusBadGateway, "", "lemonade at %s rejected the API key (401): %s", base, le.Msg)
		case http.StatusForbidden:
			return errorf(http.StatusBadGateway, "", "lemonade at %s refused the request (403): %s", base, le.Msg)
		case http.StatusBadRequest, http.StatusNotFound, http.StatusConflict, http.StatusUnprocessableEntity:
			return errorf(le.Status, "", "lemonade at %s: %s", base, le.Msg)
		}
		if le.Status < 300 { // an error reported in a successful answer
			return errorf(http.StatusBadGateway, "", "lemonade at %s: %s", base, le.Msg)
		}
		return errorf(http.StatusBadGateway, "", "lemonade at %s answered with an error (HTTP %d): %s", base, le.Status, le.Msg)
	}
	return errorf(http.StatusBadGateway, "", "lemonade at %s: %v", base, err)
}
