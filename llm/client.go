package llm

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/thon-dev/thon/internal/httpurl"
)

// Default timeouts of a Client.
const (
	DefaultRequestTimeout  = 30 * time.Second
	DefaultLoadTimeout     = 15 * time.Minute
	DefaultPullIdleTimeout = 5 * time.Minute
)

// maxResponse bounds the JSON answers the client reads.
const maxResponse = 16 << 20

// ErrUnauthorized matches (errors.Is) a *LemonadeError for a 401 answer.
var ErrUnauthorized = errors.New("lemonade rejected the API key")

// LemonadeError is an error answer of Lemonade Server.
type LemonadeError struct {
	Status int    // HTTP status
	Msg    string // Lemonade's message
}

func (e *LemonadeError) Error() string {
	if e.Status == http.StatusUnauthorized {
		return fmt.Sprintf("lemonade rejected the API key (HTTP 401): %s", e.Msg)
	}
	return fmt.Sprintf("lemonade: %s (HTTP %d)", e.Msg, e.Status)
}

// Is makes errors.Is(err, ErrUnauthorized) true for 401 answers.
func (e *LemonadeError) Is(target error) bool {
	return target == ErrUnauthorized && e.Status == http.StatusUnauthorized
}

// UnreachableError means Lemonade Server did not answer: connection
// refused, DNS failure, timeout.
type UnreachableError struct {
	URL string
	Err error
}

func (e *UnreachableError) Error() string {
	return fmt.Sprintf("lemonade server at %s is unreachable: %v", e.URL, e.Err)
}

// Unwrap returns the transport error.
func (e *UnreachableError) Unwrap() error { return e.Err }

// Client talks to Lemonade Server's HTTP API. Reads use the API key (or
// the admin key when there is no API key); pull, load and unload use the
// admin key (or the API key). Lemonade accepts either key on its API.
// A Client is safe for concurrent use; set the timeouts before using it.
type Client struct {
	base     string
	apiKey   string
	adminKey string
	hc       *http.Client

	// Timeout bounds every request but Load and Pull.
	Timeout time.Duration
	// LoadTimeout bounds a Load (a large model can take minutes).
	LoadTimeout time.Duration
	// PullIdleTimeout aborts a Pull when no progress arrives for this long.
	PullIdleTimeout time.Duration
}

// NewClient returns a client for the Lemonade Server at baseURL (its root,
// e.g. http://127.0.0.1:13305; a trailing /api/v1 or /v1 is dropped). hc
// may be nil for a default client; its own Timeout, if any, also applies.
func NewClient(baseURL, apiKey, adminKey string, hc *http.Client) (*Client, error) {
	u, err := httpurl.Parse(strings.TrimSpace(baseURL), httpurl.Rules{NoQuery: true, NoUserInfo: true})
	if err != nil {
		return nil, fmt.Errorf("lemonade url: %w", err)
	}
	p := strings.TrimRight(u.Path, "/")
	for _, suffix := range []string{"/api/v1", "/api/v0", "/v1", "/v0"} {
		p = strings.TrimSuffix(p, suffix)
	}
	u.Path = p
	for _, k := range []struct{ field, v string }{{"api key", apiKey}, {"admin api key", adminKey}} {
		if strings.ContainsAny(k.v, "\x00\r\n") {
			return nil, fmt.Errorf("lemonade %s: contains a control character", k.field)
		}
	}
	if hc == nil {
		hc = &http.Client{}
	}
	return &Client{
		base:            u.String(),
		apiKey:          apiKey,
		adminKey:        adminKey,
		hc:              hc,
		Timeout:         DefaultRequestTimeout,
		LoadTimeout:     DefaultLoadTimeout,
		PullIdleTimeout: DefaultPullIdleTimeout,
	}, nil
}

// BaseURL is the server root the client talks to.
func (c *Client) BaseURL() string { return c.base }

// Live checks GET /live, which Lemonade never gates behind the API key.
func (c *Client) Live(ctx context.Context) error {
	var out struct {
		Status string `json:"status"`
	}
	if err := c.getJSON(ctx, "/live", false, &out); err != nil {
		return err
	}
	if out.Status != "ok" {
		return &LemonadeError{Status: http.StatusOK, Msg: fmt.Sprintf("live status %q", out.Status)}
	}
	return nil
}

// Health returns GET /v1/health: version and loaded models.
func (c *Client) Health(ctx context.Context) (Health, error) {
	var h Health
	err := c.getJSON(ctx, "/api/v1/health", false, &h)
	return h, err
}

// Models lists the downloaded models, or all known models with showAll.
func (c *Client) Models(ctx context.Context, showAll bool) ([]Model, error) {
	path := "/api/v1/models"
	if showAll {
		path += "?show_all=true"
	}
	var out struct {
		Data []Model `json:"data"`
	}
	if err := c.getJSON(ctx, path, false, &out); err != nil {
		return nil, err
	}
	if out.Data == nil {
		out.Data = []Model{}
	}
	return out.Data, nil
}

// Stats returns GET /v1/stats.
func (c *Client) Stats(ctx context.Context) (Stats, error) {
	var s Stats
	err := c.getJSON(ctx, "/api/v1/stats", false, &s)
	return s, err
}

// SystemInfo returns GET /v1/system-info as is (its keys vary by system).
func (c *Client) SystemInfo(ctx context.Context) (json.RawMessage, error) {
	var raw json.RawMessage
	if err := c.getJSON(ctx, "/api/v1/system-info", false, &raw); err != nil {
		return nil, err
	}
	return raw, nil
}

// Slots returns the llama-server slots of the most recently used model.
func (c *Client) Slots(ctx context.Context) ([]Slot, error) {
	var s []Slot
	if err := c.getJSON(ctx, "/api/v1/slots", false, &s); err != nil {
		return nil, err
	}
	if s == nil {
		s = []Slot{}
	}
	return s, nil
}

// Load loads a model (installing it if needed) and waits until it is ready.
func (c *Client) Load(ctx context.Context, req LoadRequest) error {
	if req.ModelName == "" {
		return errors.New("lemonade load: model_name: required")
	}
	return c.action(ctx, "/api/v1/load", req, c.LoadTimeout)
}

// Unload unloads a model; an empty name unloads every model.
func (c *Client) Unload(ctx context.Context, name string) error {
	body := map[string]string{}
	if name != "" {
		body["model_name"] = name
	}
	return c.action(ctx, "/api/v1/unload", body, c.Timeout)
}

// Pull downloads (and registers, when a checkpoint is given) a model,
// streaming progress to fn (which may be nil). It returns when the
// download completes or fails. The pull is aborted when no progress
// arrives for PullIdleTimeout.
func (c *Client) Pull(ctx context.Context, req PullRequest, fn func(PullProgress)) error {
	if req.ModelName == "" {
		return errors.New("lemonade pull: model_name: required")
	}
	if req.Checkpoint != "" && !strings.HasPrefix(req.ModelName, UserPrefix) {
		return fmt.Errorf("lemonade pull: model_name: %q must use the user. namespace to register a checkpoint", req.ModelName)
	}
	body := struct {
		PullRequest
		Stream bool `json:"stream"`
	}{req, true}

	idle := c.PullIdleTimeout
	if idle <= 0 {
		idle = DefaultPullIdleTimeout
	}
	errIdle := fmt.Errorf("no progress for %v", idle)
	pctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	timer := time.AfterFunc(idle, func() { cancel(errIdle) })
	defer timer.Stop()

	resp, err := c.send(pctx, http.MethodPost, "/api/v1/pull", true, body)
	if err != nil {
		if context.Cause(pctx) == errIdle {
			return &UnreachableError{URL: c.base, Err: errIdle}
		}
		return err
	}
	defer resp.Body.Close()
	if !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		return decodeAction(resp, "pull")
	}
	complete := false
	err = ReadSSE(resp.Body, func(ev SSEEvent) error {
		timer.Reset(idle)
		switch ev.Event {
		case "progress", "":
			var p PullProgress
			if err := json.Unmarshal([]byte(ev.Data), &p); err != nil {
				return fmt.Errorf("lemonade pull: bad progress event: %w", err)
			}
			if fn != nil {
				fn(p)
			}
		case "complete":
			var p PullProgress
			_ = json.Unmarshal([]byte(ev.Data), &p) // the event itself is what counts
			p.Complete = true
			if p.Percent == 0 {
				p.Percent = 100
			}
			complete = true
			if fn != nil {
				fn(p)
			}
			return errStopSSE
		case "error":
			var e struct {
				Error   string `json:"error"`
				Message string `json:"message"`
			}
			_ = json.Unmarshal([]byte(ev.Data), &e)
			msg := cmp.Or(e.Error, e.Message, ev.Data)
			return &LemonadeError{Status: resp.StatusCode, Msg: "pull failed: " + msg}
		}
		return nil
	})
	if err != nil {
		if context.Cause(pctx) == errIdle {
			return &UnreachableError{URL: c.base, Err: fmt.Errorf("pull of %s: %w", req.ModelName, errIdle)}
		}
		if ctx.Err() != nil {
			return fmt.Errorf("lemonade pull of %s: %w", req.ModelName, ctx.Err())
		}
		var le *LemonadeError
		if errors.As(err, &le) {
			return err
		}
		return fmt.Errorf("lemonade pull of %s: %w", req.ModelName, err)
	}
	if !complete {
		return fmt.Errorf("lemonade pull of %s: the stream ended before the download completed", req.ModelName)
	}
	return nil
}

// getJSON runs a GET and decodes the JSON answer into out.
func (c *Client) getJSON(ctx context.Context, path string, admin bool, out any) error {
	ctx, cancel := withTimeout(ctx, c.Timeout)
	defer cancel()
	resp, err := c.send(ctx, http.MethodGet, path, admin, nil)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(io.LimitReader(resp.Body, maxResponse)).Decode(out); err != nil {
		return c.readError(ctx, path, err)
	}
	return nil
}

// action runs a POST answering {"status": "success"|"error", "message"}.
func (c *Client) action(ctx context.Context, path string, body any, timeout time.Duration) error {
	ctx, cancel := withTimeout(ctx, timeout)
	defer cancel()
	resp, err := c.send(ctx, http.MethodPost, path, true, body)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	return decodeAction(resp, strings.TrimPrefix(path, "/api/v1/"))
}

func decodeAction(resp *http.Response, what string) error {
	var out struct {
		Status  string          `json:"status"`
		Message string          `json:"message"`
		Error   json.RawMessage `json:"error"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, maxResponse)).Decode(&out); err != nil {
		return fmt.Errorf("lemonade %s: reading the answer: %w", what, err)
	}
	if out.Status == "error" || len(out.Error) > 0 {
		msg := out.Message
		if msg == "" {
			msg = errorMessage(out.Error)
		}
		return &LemonadeError{Status: resp.StatusCode, Msg: msg}
	}
	return nil
}

// send runs one request; a non-2xx answer becomes a *LemonadeError and a
// transport failure an *UnreachableError.
func (c *Client) send(ctx context.Context, method, path string, admin bool, body any) (*http.Response, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, rd)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/json, text/event-stream")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if key := c.key(admin); key != "" && path != "/live" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		if ctxErr := context.Cause(ctx); ctxErr != nil && !errors.Is(ctxErr, context.DeadlineExceeded) {
			return nil, fmt.Errorf("lemonade %s: %w", strings.TrimPrefix(path, "/api/v1/"), ctxErr)
		}
		return nil, &UnreachableError{URL: c.base, Err: unwrapURLError(err)}
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		defer resp.Body.Close()
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		return nil, &LemonadeError{Status: resp.StatusCode, Msg: errorMessage(b)}
	}
	return resp, nil
}

func (c *Client) key(admin bool) string {
	if admin {
		return cmp.Or(c.adminKey, c.apiKey)
	}
	return cmp.Or(c.apiKey, c.adminKey)
}

func (c *Client) readError(ctx context.Context, path string, err error) error {
	if ctx.Err() != nil {
		return &UnreachableError{URL: c.base, Err: fmt.Errorf("reading %s: %w", path, ctx.Err())}
	}
	return fmt.Errorf("lemonade %s: reading the answer: %w", strings.TrimPrefix(path, "/api/v1/"), err)
}

// errorMessage extracts the message of Lemonade's error bodies:
// {"error": "..."}, {"error": {"message": "..."}}, {"status": "error",
// "message": "..."}, or plain text.
func errorMessage(b []byte) string {
	b = bytes.TrimSpace(b)
	var v struct {
		Error   json.RawMessage `json:"error"`
		Message string          `json:"message"`
	}
	if json.Unmarshal(b, &v) == nil {
		var s string
		if len(v.Error) > 0 && json.Unmarshal(v.Error, &s) == nil && s != "" {
			return s
		}
		var o struct {
			Message string `json:"message"`
		}
		if len(v.Error) > 0 && json.Unmarshal(v.Error, &o) == nil && o.Message != "" {
			return o.Message
		}
		if v.Message != "" {
			return v.Message
		}
	}
	s := strings.TrimSpace(string(b))
	if len(s) > 300 {
		s = s[:300] + "…"
	}
	if s == "" {
		return "empty answer"
	}
	return s
}

func unwrapURLError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

func withTimeout(ctx context.Context, d time.Duration) (context.Context, context.CancelFunc) {
	if d <= 0 {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, d)
}
