package gateway

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/thon-dev/thon/llm"
	"github.com/thon-dev/thon/store"
)

// Defaults of the gateway handler.
const (
	// DefaultMaxRequestBody bounds request bodies; images travel as
	// base64.
	DefaultMaxRequestBody = 32 << 20
	maxKeptAnswer         = 8 << 20 // a JSON answer kept to read its usage
	copyBuffer            = 32 << 10
)

// HandlerOptions configure a Handler.
type HandlerOptions struct {
	// Upstream is Lemonade Server's URL. It is normalised as the Lemonade
	// client does (llm.NewClient): a trailing /api/v1 (or /v1, ...) is the
	// API's, not the server's root, and is dropped. Required.
	Upstream string
	// APIKey is sent to Lemonade in place of the client's key; empty
	// sends none.
	APIKey string
	// MaxRequestBody bounds request bodies in bytes (413 above); 0 means
	// DefaultMaxRequestBody.
	MaxRequestBody int64
	// DefaultMaxTokens is the completion size reserved for a request that
	// sets no max_tokens; 0 means DefaultMaxTokens.
	DefaultMaxTokens int64
	// Logger receives upstream and limiter failures; nil means the
	// runtime's logger.
	Logger *slog.Logger
}

// Handler is thon's AI gateway: it serves POST /v1/chat/completions, POST
// /v1/embeddings and GET /v1/models, OpenAI's API, to the holders of
// consumer keys, and proxies them to Lemonade Server with Lemonade's own
// key.
//
// A request's key is read from "Authorization: Bearer", the apikey header
// or ?apikey=; a missing or unknown key is answered 401. The consumer's
// concurrency slot and the request's estimated tokens (prompt size plus
// max_tokens) are reserved on the runtime's active limiter before anything
// reaches Lemonade: a request over a limit is refused with 429 and rate
// limit headers. Answers are passed through unchanged; server-sent events
// are flushed event by event, with stream_options.include_usage asked for
// so that the usage chunk can be read. The reservation is then settled to
// the tokens actually used (estimated when Lemonade reports none, counted
// up to the moment a client goes away) on the limiter it was acquired from,
// and the usage recorded per consumer.
//
// A Handler belongs to one config; its Runtime outlives it.
type Handler struct {
	rt        *Runtime
	base      string // upstream root without a trailing slash
	auth      string // "Bearer <key>", or "" for none
	transport *http.Transport
	estimator Estimator
	maxBody   int64
	logger    *slog.Logger
}

// NewHandler returns a handler serving the gateway with rt's keys,
// limiter and usage recorder. It does no network I/O.
func (rt *Runtime) NewHandler(o HandlerOptions) (*Handler, error) {
	c, err := llm.NewClient(o.Upstream, o.APIKey, "", nil)
	if err != nil {
		return nil, fmt.Errorf("upstream: %w", err)
	}
	if o.MaxRequestBody < 0 || o.DefaultMaxTokens < 0 {
		return nil, errors.New("max_request_body and default_max_tokens must not be negative")
	}
	h := &Handler{
		rt:        rt,
		base:      strings.TrimRight(c.BaseURL(), "/"),
		maxBody:   o.MaxRequestBody,
		estimator: Estimator{DefaultMaxTokens: o.DefaultMaxTokens},
		logger:    o.Logger,
	}
	if o.APIKey != "" {
		h.auth = "Bearer " + o.APIKey
	}
	if h.maxBody == 0 {
		h.maxBody = DefaultMaxRequestBody
	}
	initMetrics()
	h.transport = &http.Transport{
		Proxy: nil, // Lemonade is local: never through an environment proxy
		DialContext: (&net.Dialer{
			Timeout:   10 * time.Second,
			KeepAlive: 30 * time.Second,
		}).DialContext,
		MaxIdleConns:        0,
		MaxIdleConnsPerHost: 1024,
		IdleConnTimeout:     90 * time.Second,
		TLSHandshakeTimeout: 10 * time.Second,
		// Answers pass through as they come: no transparent gzip, which
		// would hold events back and hide the usage.
		DisableCompression: true,
		WriteBufferSize:    16 << 10,
		ReadBufferSize:     16 << 10,
	}
	return h, nil
}

// Close closes the idle connections to Lemonade.
func (h *Handler) Close() {
	h.transport.CloseIdleConnections()
}

// log is the handler's logger.
func (h *Handler) log() *slog.Logger {
	if h.logger != nil {
		return h.logger
	}
	return h.rt.log()
}

// endpoint is a route of the gateway.
type endpoint int

const (
	epChat endpoint = iota
	epEmbeddings
	epModels
	numEndpoints
)

func (ep endpoint) String() string {
	switch ep {
	case epChat:
		return "chat"
	case epEmbeddings:
		return "embeddings"
	default:
		return "models"
	}
}

func (ep endpoint) method() string {
	if ep == epModels {
		return http.MethodGet
	}
	return http.MethodPost
}

// Serve serves the gateway's routes and reports true, or reports false
// without touching w for any other path, which is not the gateway's.
func (h *Handler) Serve(w http.ResponseWriter, r *http.Request) bool {
	var ep endpoint
	switch r.URL.Path {
	case "/v1/chat/completions":
		ep = epChat
	case "/v1/embeddings":
		ep = epEmbeddings
	case "/v1/models":
		ep = epModels
	default:
		return false
	}
	if r.Method != ep.method() && !(ep == epModels && r.Method == http.MethodHead) {
		w.Header().Set("Allow", ep.method())
		WriteError(w, &Error{
			Status:  http.StatusMethodNotAllowed,
			Message: fmt.Sprintf("%s %s is not supported: use %s", r.Method, r.URL.Path, ep.method()),
			Type:    "invalid_request_error",
			Code:    "method_not_allowed",
		})
		return true
	}
	key := KeyFromRequest(r)
	if key == "" {
		rejectKey("missing_key")
		WriteError(w, ErrMissingKey())
		return true
	}
	c, ok := h.rt.keyring.Lookup(key)
	if !ok {
		rejectKey("invalid_key")
		WriteError(w, ErrInvalidKey())
		return true
	}
	m := metricsFor(c.Name)
	if ep == epModels {
		m.requests[ep].Inc()
		st := getRequestState()
		defer putRequestState(st)
		_, status, abort := h.proxy(w, r, nil, false, Usage{}, st)
		if status == http.StatusBadGateway {
			m.upstreamErrors.Inc()
		}
		if abort {
			panic(http.ErrAbortHandler)
		}
		return true
	}
	h.complete(w, r, ep, &c, m)
	return true
}

// requestState is the per-request state, pooled: the reservation, the
// meter, and the buffers this request's goroutine alone uses. (The request
// body is not pooled: the transport may still be writing it upstream
// after the answer came.)
type requestState struct {
	res   Reservation
	meter SSEMeter
	buf   []byte
	kept  []byte
}

var requestStates = sync.Pool{New: func() any {
	return &requestState{buf: make([]byte, copyBuffer)}
}}

func getRequestState() *requestState { return requestStates.Get().(*requestState) }

// putRequestState returns st to the pool; its reservation is settled.
func putRequestState(st *requestState) {
	if st.res.Live() {
		return // never reuse a live reservation
	}
	if cap(st.kept) > 1<<20 {
		st.kept = nil
	}
	st.meter = SSEMeter{}
	requestStates.Put(st)
}

// complete serves a chat completion or embeddings request: estimate,
// reserve, proxy, settle, record.
func (h *Handler) complete(w http.ResponseWriter, r *http.Request, ep endpoint, c *Consumer, m *consumerMetrics) {
	st := getRequestState()
	defer putRequestState(st)

	if r.ContentLength > h.maxBody {
		WriteError(w, errTooLarge(h.maxBody))
		return
	}
	hint := int64(4 << 10)
	if r.ContentLength > 0 {
		hint = r.ContentLength
	}
	body, err := readLimited(make([]byte, 0, hint+1), r.Body, h.maxBody)
	switch {
	case errors.Is(err, errBodyTooLarge):
		WriteError(w, errTooLarge(h.maxBody))
		return
	case err != nil:
		WriteError(w, ErrBadRequest("reading the request body: "+err.Error(), ""))
		return
	}
	model, est, err := h.estimator.Estimate(body)
	if err != nil {
		WriteError(w, ErrBadRequest(err.Error(), errorParam(err)))
		return
	}
	stream := false
	if ep == epChat {
		if body, stream, err = InjectIncludeUsage(body); err != nil {
			WriteError(w, ErrBadRequest(err.Error(), errorParam(err)))
			return
		}
	}

	lim := c.EffectiveLimits()
	d, err := h.rt.Limiter().AcquireInto(r.Context(), &st.res, c.Name, lim, lim.Cost(est))
	if err != nil {
		if r.Context().Err() != nil {
			return // the client went away while Redis was asked
		}
		d = Decision{Reason: ReasonUnavailable}
		if !errors.Is(err, ErrUnavailable) {
			h.log().Error("limiter refused to decide", "consumer", c.Name, "error", err)
		}
	}
	RateLimitHeaders(w.Header(), d, lim)
	if !d.Allowed {
		m.rejected(d.Reason)
		WriteError(w, ErrRateLimited(d))
		return
	}

	m.requests[ep].Inc()
	gwInFlight.Inc()
	st.meter.PromptEstimate = est.Prompt
	used, status, abort := h.proxy(w, r, body, stream, est, st)
	gwInFlight.Dec()
	if err := st.res.Settle(context.WithoutCancel(r.Context()), lim.Cost(used)); err != nil {
		h.log().Warn("settling a reservation", "consumer", c.Name, "error", err)
	}
	m.prompt.Add(float64(used.Prompt))
	m.completion.Add(float64(used.Completion))
	if status == http.StatusBadGateway || abort {
		m.upstreamErrors.Inc()
	}
	h.rt.record(store.UsageRecord{
		Consumer: c.Name, At: time.Now(), Model: model,
		Prompt: used.Prompt, Completion: used.Completion, Total: used.Total, Status: status,
	})
	if abort {
		panic(http.ErrAbortHandler) // Lemonade broke off: so does the answer
	}
}

// errTooLarge is the answer to a body over the limit.
func errTooLarge(limit int64) *Error {
	return &Error{
		Status:  http.StatusRequestEntityTooLarge,
		Message: fmt.Sprintf("Request body larger than %d bytes", limit),
		Type:    "invalid_request_error",
		Code:    "request_too_large",
	}
}

// errorParam returns the field an estimator or parser error names, such
// as "messages[2].content", or "".
func errorParam(err error) string {
	field, _, ok := strings.Cut(err.Error(), ": ")
	if !ok || field == "body" || strings.ContainsAny(field, " \"") {
		return ""
	}
	return field
}

var errBodyTooLarge = errors.New("request body too large")

// readLimited reads r to its end into dst, failing with errBodyTooLarge
// past limit bytes.
func readLimited(dst []byte, r io.Reader, limit int64) ([]byte, error) {
	for {
		if len(dst) == cap(dst) {
			dst = append(dst, 0)[:len(dst)]
		}
		n, err := r.Read(dst[len(dst):cap(dst)])
		dst = dst[:len(dst)+n]
		if int64(len(dst)) > limit {
			return dst, errBodyTooLarge
		}
		if err == io.EOF {
			return dst, nil
		}
		if err != nil {
			return dst, err
		}
	}
}

// proxy sends the request to Lemonade with Lemonade's key and passes the
// answer through as it comes, reading its usage on the way. It returns the
// usage (reported, else estimated from est and what was generated; none
// for an error answer), the status answered, and whether the answer must
// be broken off because Lemonade broke off after the headers were sent.
func (h *Handler) proxy(w http.ResponseWriter, r *http.Request, body []byte, stream bool, est Usage, st *requestState) (used Usage, status int, abort bool) {
	ctx := r.Context()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, r.Method, h.upstreamURL(r), rd)
	if err != nil {
		WriteError(w, ErrUpstream("building the request to Lemonade: "+err.Error()))
		return Usage{}, http.StatusBadGateway, false
	}
	copyRequestHeaders(req.Header, r.Header)
	if body != nil && req.Header.Get("Content-Type") == "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if h.auth != "" {
		req.Header.Set("Authorization", h.auth)
	}
	resp, err := h.transport.RoundTrip(req)
	if err != nil {
		if ctx.Err() != nil {
			return Usage{}, 499, false // the client went away first
		}
		err = unwrapURLError(err)
		msg := fmt.Sprintf("Lemonade at %s could not be reached: %v", h.base, err)
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			msg = fmt.Sprintf("Lemonade at %s closed the connection without answering", h.base)
		}
		WriteError(w, ErrUpstream(msg))
		return Usage{}, http.StatusBadGateway, false
	}
	defer resp.Body.Close()

	copyResponseHeaders(w.Header(), resp.Header)
	w.WriteHeader(resp.StatusCode)
	status = resp.StatusCode
	ok := status >= 200 && status < 300
	sse := isEventStream(resp.Header.Get("Content-Type"))
	flush := sse || resp.ContentLength < 0 || stream
	rc := http.NewResponseController(w)
	if flush {
		_ = rc.Flush() // the status and headers go out now
	}

	kept, keep := st.kept[:0], ok && !sse && body != nil
	var readErr error
	clientGone := false
	for {
		n, err := resp.Body.Read(st.buf)
		if n > 0 {
			chunk := st.buf[:n]
			switch {
			case sse && ok:
				_, _ = st.meter.Write(chunk)
			case keep:
				if len(kept)+n <= maxKeptAnswer {
					kept = append(kept, chunk...)
				} else {
					keep, kept = false, kept[:0]
				}
			}
			if _, werr := w.Write(chunk); werr != nil {
				clientGone = true
				break
			}
			if flush {
				if ferr := rc.Flush(); ferr != nil {
					clientGone = true
					break
				}
			}
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			readErr = err
			break
		}
	}
	st.kept = kept[:0]
	if readErr != nil && ctx.Err() != nil {
		clientGone = true
	}

	switch {
	case !ok || body == nil:
		used = Usage{}
	case sse:
		used, _ = st.meter.Usage()
	case keep:
		u, reported := ParseUsage(kept)
		if !reported {
			u.Prompt = est.Prompt
			u.Total = u.Prompt + u.Completion
		}
		used = u
	case len(kept) == 0 && !clientGone && readErr == nil:
		used = est // an answer too big to keep: the estimate is charged
	default:
		used = Usage{Prompt: est.Prompt, Total: est.Prompt}
	}
	if clientGone {
		return used, 499, false
	}
	if readErr != nil {
		h.log().Warn("lemonade broke off its answer", "upstream", h.base, "error", readErr)
		return used, http.StatusBadGateway, true
	}
	return used, status, false
}

// upstreamURL is the request's URL at Lemonade: the same path and query,
// without an apikey parameter.
func (h *Handler) upstreamURL(r *http.Request) string {
	q := r.URL.RawQuery
	if q != "" && strings.Contains(q, "apikey") {
		v := r.URL.Query()
		v.Del("apikey")
		q = v.Encode()
	}
	if q == "" {
		return h.base + r.URL.Path
	}
	return h.base + r.URL.Path + "?" + q
}

// unwrapURLError drops the *url.Error wrapping, whose message repeats the
// URL.
func unwrapURLError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

// hopHeaders are the hop-by-hop headers (RFC 9110 section 7.6.1), never
// forwarded.
var hopHeaders = map[string]bool{
	"Connection": true, "Proxy-Connection": true, "Keep-Alive": true, "Proxy-Authenticate": true,
	"Proxy-Authorization": true, "Te": true, "Trailer": true, "Transfer-Encoding": true, "Upgrade": true,
}

// dropRequestHeaders are client headers Lemonade must not see: the
// client's key (replaced by Lemonade's), thon's cookies, and
// Accept-Encoding (answers are read as they come).
var dropRequestHeaders = map[string]bool{
	"Authorization": true, "Apikey": true, "Cookie": true, "Accept-Encoding": true, "Content-Length": true,
}

func copyRequestHeaders(dst, src http.Header) {
	conn := connectionTokens(src)
	for k, vv := range src {
		if hopHeaders[k] || dropRequestHeaders[k] || conn[k] {
			continue
		}
		dst[k] = vv
	}
}

func copyResponseHeaders(dst, src http.Header) {
	conn := connectionTokens(src)
	for k, vv := range src {
		if hopHeaders[k] || conn[k] {
			continue
		}
		dst[k] = vv
	}
}

// connectionTokens are the headers a Connection header names.
func connectionTokens(h http.Header) map[string]bool {
	vv := h["Connection"]
	if len(vv) == 0 {
		return nil
	}
	m := map[string]bool{}
	for _, v := range vv {
		for tok := range strings.SplitSeq(v, ",") {
			if tok = strings.TrimSpace(tok); tok != "" {
				m[http.CanonicalHeaderKey(tok)] = true
			}
		}
	}
	return m
}

// isEventStream reports whether a Content-Type is text/event-stream.
func isEventStream(ct string) bool {
	if ct == "" {
		return false
	}
	mt, _, err := mime.ParseMediaType(ct)
	return err == nil && mt == "text/event-stream"
}
