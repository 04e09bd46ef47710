package gateway

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"
	"time"
)

func TestErrorBodies(t *testing.T) {
	for i, tc := range []struct {
		err    *Error
		status int
		code   string
		msg    string
	}{
		{ErrMissingKey(), 401, "missing_api_key", ""},
		{ErrInvalidKey(), 401, "invalid_api_key", "Invalid API key in request"},
		{ErrRateLimited(Decision{Reason: ReasonConcurrency, Limit: 1}), 429, "rate_limit_exceeded", ConcurrencyMessage},
		{ErrRateLimited(Decision{Reason: ReasonTokens, Limit: 1000, Remaining: 12, Reset: 1500 * time.Millisecond}), 429, "rate_limit_exceeded",
			"Token limit exceeded: 12 of 1000 tokens left in the window, not enough for this request. Please try again in 2s."},
		{ErrRateLimited(Decision{Reason: ReasonUnavailable}), 503, "limiter_unavailable", ""},
		{ErrBadRequest("messages[2].content: must be a string", "messages"), 400, "invalid_request", "messages[2].content: must be a string"},
		{ErrUpstream("lemonade: connection refused"), 502, "upstream_error", "lemonade: connection refused"},
	} {
		w := httptest.NewRecorder()
		WriteError(w, tc.err)
		if w.Code != tc.status || w.Header().Get("Content-Type") != "application/json" {
			t.Errorf("case %d: status %d, content type %q", i, w.Code, w.Header().Get("Content-Type"))
		}
		if n, _ := strconv.Atoi(w.Header().Get("Content-Length")); n != w.Body.Len() {
			t.Errorf("case %d: Content-Length %d for %d bytes", i, n, w.Body.Len())
		}
		if (tc.status == 401) != (w.Header().Get("WWW-Authenticate") != "") {
			t.Errorf("case %d: WWW-Authenticate %q", i, w.Header().Get("WWW-Authenticate"))
		}
		var body struct {
			Error struct {
				Message string  `json:"message"`
				Type    string  `json:"type"`
				Code    string  `json:"code"`
				Param   *string `json:"param"`
			} `json:"error"`
		}
		if err := json.Unmarshal(w.Body.Bytes(), &body); err != nil {
			t.Fatalf("case %d: %v: %s", i, err, w.Body)
		}
		if body.Error.Code != tc.code || body.Error.Type == "" || body.Error.Message == "" || (tc.msg != "" && body.Error.Message != tc.msg) {
			t.Errorf("case %d: body %s", i, w.Body)
		}
		if (tc.err.Param != "") != (body.Error.Param != nil) {
			t.Errorf("case %d: param %v", i, body.Error.Param)
		}
	}
}

func TestRateLimitHeaders(t *testing.T) {
	tokens := Limits{Concurrency: 2, TokenLimit: 1000, Window: time.Minute}
	for i, tc := range []struct {
		d    Decision
		lim  Limits
		want map[string]string
	}{
		{Decision{Allowed: true, Limit: 1000, Remaining: 400, Reset: 59500 * time.Millisecond}, tokens, map[string]string{
			"X-AI-RateLimit-Limit": "1000", "X-AI-RateLimit-Remaining": "400", "X-AI-RateLimit-Reset": "60",
			"x-ratelimit-limit-tokens": "1000", "x-ratelimit-remaining-tokens": "400", "x-ratelimit-reset-tokens": "1m0s",
			"Retry-After": "",
		}},
		{Decision{Reason: ReasonTokens, Limit: 1000, Remaining: 3, Reset: 2100 * time.Millisecond}, tokens, map[string]string{
			"X-AI-RateLimit-Remaining": "3", "X-AI-RateLimit-Reset": "3", "x-ratelimit-reset-tokens": "3s", "Retry-After": "3",
		}},
		{Decision{Reason: ReasonConcurrency, Limit: 2}, tokens, map[string]string{
			"X-AI-RateLimit-Limit": "", "Retry-After": "1", "X-AI-RateLimit-Limit-Concurrency": "2",
		}},
		{Decision{Reason: ReasonUnavailable}, tokens, map[string]string{"Retry-After": "1", "X-AI-RateLimit-Limit": ""}},
		{Decision{Allowed: true}, Limits{Concurrency: 1}, map[string]string{"X-AI-RateLimit-Limit": "", "Retry-After": ""}},
	} {
		h := http.Header{}
		RateLimitHeaders(h, tc.d, tc.lim)
		for k, v := range tc.want {
			if got := h.Get(k); got != v {
				t.Errorf("case %d: %s = %q, want %q", i, k, got, v)
			}
		}
	}
}
