package gateway

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"time"
)

// ConcurrencyMessage is the message of a concurrency refusal, the one the
// original gateway gave.
const ConcurrencyMessage = "Concurrency limit exceeded. Please wait for your current request to complete."

// Error is an error answer in the shape OpenAI clients understand:
// {"error": {"message", "type", "code", "param"}}.
type Error struct {
	// Status is the HTTP status code of the answer.
	Status int
	// Message is for people.
	Message string
	// Type is the OpenAI error type, e.g. "invalid_request_error".
	Type string
	// Code is a machine-readable code, e.g. "invalid_api_key".
	Code string
	// Param names the request field at fault, if any.
	Param string
}

// Error implements error.
func (e *Error) Error() string {
	return fmt.Sprintf("%d %s: %s", e.Status, e.Code, e.Message)
}

// Body returns the JSON body of the answer.
func (e *Error) Body() []byte {
	type inner struct {
		Message string  `json:"message"`
		Type    string  `json:"type"`
		Code    string  `json:"code"`
		Param   *string `json:"param"`
	}
	in := inner{Message: e.Message, Type: e.Type, Code: e.Code}
	if e.Param != "" {
		in.Param = &e.Param
	}
	b, _ := json.Marshal(struct {
		Error inner `json:"error"`
	}{in})
	return b
}

// WriteError writes e as the answer, with its status and JSON body.
func WriteError(w http.ResponseWriter, e *Error) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("X-Content-Type-Options", "nosniff")
	if e.Status == http.StatusUnauthorized {
		h.Set("WWW-Authenticate", `Bearer realm="thon"`)
	}
	body := e.Body()
	h.Set("Content-Length", strconv.Itoa(len(body)+1))
	w.WriteHeader(e.Status)
	_, _ = w.Write(append(body, '\n'))
}

// ErrMissingKey is the answer to a request without an API key.
func ErrMissingKey() *Error {
	return &Error{
		Status:  http.StatusUnauthorized,
		Message: "Missing API key in request: send it as \"Authorization: Bearer <key>\"",
		Type:    "invalid_request_error",
		Code:    "missing_api_key",
	}
}

// ErrInvalidKey is the answer to a request with an unknown API key.
func ErrInvalidKey() *Error {
	return &Error{
		Status:  http.StatusUnauthorized,
		Message: "Invalid API key in request",
		Type:    "invalid_request_error",
		Code:    "invalid_api_key",
	}
}

// ErrBadRequest is the answer to a request body the gateway cannot use;
// param names the field at fault, if known.
func ErrBadRequest(message, param string) *Error {
	return &Error{
		Status:  http.StatusBadRequest,
		Message: message,
		Type:    "invalid_request_error",
		Code:    "invalid_request",
		Param:   param,
	}
}

// ErrRateLimited is the answer to a request the limiter refused: a 429 for
// a concurrency or token refusal, a 503 when the limiter is unavailable.
func ErrRateLimited(d Decision) *Error {
	switch d.Reason {
	case ReasonConcurrency:
		return &Error{
			Status:  http.StatusTooManyRequests,
			Message: ConcurrencyMessage,
			Type:    "requests",
			Code:    "rate_limit_exceeded",
		}
	case ReasonTokens:
		return &Error{
			Status: http.StatusTooManyRequests,
			Message: fmt.Sprintf("Token limit exceeded: %d of %d tokens left in the window, not enough for this request. Please try again in %ds.",
				d.Remaining, d.Limit, ceilSeconds(d.Reset)),
			Type: "tokens",
			Code: "rate_limit_exceeded",
		}
	default:
		return &Error{
			Status:  http.StatusServiceUnavailable,
			Message: "The rate limiter is unavailable. Please try again later.",
			Type:    "server_error",
			Code:    "limiter_unavailable",
		}
	}
}

// ErrUpstream is the answer when the upstream could not be reached or gave
// an unusable answer.
func ErrUpstream(message string) *Error {
	return &Error{
		Status:  http.StatusBadGateway,
		Message: message,
		Type:    "server_error",
		Code:    "upstream_error",
	}
}

// ceilSeconds returns d in whole seconds, rounded up.
func ceilSeconds(d time.Duration) int64 {
	if d <= 0 {
		return 0
	}
	return int64((d + time.Second - 1) / time.Second)
}

// RateLimitHeaders sets the rate limit headers of an answer from the
// limiter's decision d under lim. For a token limit it sets the headers the
// original gateway sent (X-AI-RateLimit-Limit, -Remaining, -Reset in
// seconds) and OpenAI's (x-ratelimit-limit-tokens, -remaining-tokens,
// -reset-tokens as a duration). A refused request also gets Retry-After in
// seconds, rounded up and at least 1.
func RateLimitHeaders(h http.Header, d Decision, lim Limits) {
	if lim.TokenLimit > 0 && d.Reason != ReasonConcurrency && d.Reason != ReasonUnavailable {
		limit := strconv.FormatInt(lim.TokenLimit, 10)
		remaining := strconv.FormatInt(max(d.Remaining, 0), 10)
		reset := ceilSeconds(d.Reset)
		h.Set("X-AI-RateLimit-Limit", limit)
		h.Set("X-AI-RateLimit-Remaining", remaining)
		h.Set("X-AI-RateLimit-Reset", strconv.FormatInt(reset, 10))
		h.Set("X-Ratelimit-Limit-Tokens", limit)
		h.Set("X-Ratelimit-Remaining-Tokens", remaining)
		h.Set("X-Ratelimit-Reset-Tokens", (time.Duration(reset) * time.Second).String())
	}
	if d.Reason == ReasonConcurrency && lim.Concurrency > 0 {
		h.Set("X-AI-RateLimit-Limit-Concurrency", strconv.Itoa(lim.Concurrency))
	}
	if !d.Allowed {
		h.Set("Retry-After", strconv.FormatInt(max(ceilSeconds(d.Reset), 1), 10))
	}
}
