package caddymodule

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"mime"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/dustin/go-humanize"
	"go.uber.org/zap"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/thon-dev/thon/gateway"
	"github.com/thon-dev/thon/store"
)

func init() {
	caddy.RegisterModule(Gateway{})
	httpcaddyfile.RegisterHandlerDirective("thon_gateway", parseGatewayHandler)
}

// Defaults of the gateway handler.
const (
	defaultGatewayMaxBody = 32 << 20 // request bodies; images travel as base64
	maxKeptAnswer         = 8 << 20  // a JSON answer kept to read its usage
	gatewayCopyBuffer     = 32 << 10
)

// Gateway is thon's AI gateway: it serves POST /v1/chat/completions, POST
// /v1/embeddings and GET /v1/models, OpenAI's API, to the holders of
// consumer keys, and proxies them to Lemonade Server with Lemonade's own
// key. Other paths go to the next handler.
//
// A request's key is read from "Authorization: Bearer", the apikey header
// or ?apikey=; a missing or unknown key is answered 401. The consumer's
// concurrency slot and the request's estimated tokens (prompt size plus
// max_tokens) are reserved before anything reaches Lemonade: a request
// over a limit is refused with 429 and rate limit headers. Answers are
// passed through unchanged; server-sent events are flushed event by
// event, with stream_options.include_usage asked for so that the usage
// chunk can be read. The reservation is then settled to the tokens
// actually used (estimated when Lemonade reports none, counted up to the
// moment a client goes away) and the usage recorded per consumer.
type Gateway struct {
	// Upstream is Lemonade Server's root URL. Default: the thon app's
	// lemonade url, else http://127.0.0.1:13305.
	Upstream string `json:"upstream,omitempty"`

	// UpstreamAPIKey is sent to Lemonade in place of the client's key.
	// Default: the thon app's lemonade api_key. Use an {env.*}
	// placeholder.
	UpstreamAPIKey string `json:"upstream_api_key,omitempty"`

	// MaxRequestBody bounds request bodies in bytes (413 above). Default:
	// 32 MiB.
	MaxRequestBody int64 `json:"max_request_body,omitempty"`

	// DefaultMaxTokens is the completion size reserved for a request that
	// sets no max_tokens. Default: 512.
	DefaultMaxTokens int64 `json:"default_max_tokens,omitempty"`

	gw        *gatewayState
	limiter   gateway.Limiter
	base      string // upstream root without a trailing slash
	auth      string // "Bearer <key>", or "" for none
	transport *http.Transport
	estimator gateway.Estimator
	maxBody   int64
	logger    *zap.Logger
}

// CaddyModule returns the Caddy module information.
func (Gateway) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.thon_gateway",
		New: func() caddy.Module { return new(Gateway) },
	}
}

// Provision finds the thon app, its keys and limiter, and sets up the
// connection to Lemonade. It does no network I/O.
func (g *Gateway) Provision(ctx caddy.Context) error {
	g.logger = ctx.Logger()
	a, err := ctx.App("thon")
	if err != nil {
		return fmt.Errorf("getting thon app: %v", err)
	}
	app := a.(*App)
	if app.shared == nil || app.Gateway == nil || app.Gateway.limiter == nil {
		return errors.New("the thon app is not provisioned")
	}
	if err := registerGatewayMetrics(ctx.GetMetricsRegistry()); err != nil {
		return fmt.Errorf("registering gateway metrics: %v", err)
	}
	upstream, key := expand(g.Upstream, ""), expand(g.UpstreamAPIKey, "")
	if lc := app.Lemonade; lc != nil {
		if upstream == "" {
			upstream = expand(lc.URL, "")
		}
		if key == "" {
			key = expand(lc.APIKey, "")
		}
	}
	if upstream == "" {
		upstream = defaultLemonadeURL
	}
	return g.setup(&app.shared.gateway, app.Gateway.limiter, upstream, key)
}

// setup makes the handler ready with its state, limiter and upstream.
func (g *Gateway) setup(gs *gatewayState, limiter gateway.Limiter, upstream, key string) error {
	u, err := url.Parse(upstream)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
		return fmt.Errorf("upstream: %q is not an http(s) URL such as %s", upstream, defaultLemonadeURL)
	}
	if strings.ContainsAny(key, "\r\n") {
		return errors.New("upstream_api_key: contains a line break")
	}
	if g.MaxRequestBody < 0 || g.DefaultMaxTokens < 0 {
		return errors.New("max_request_body and default_max_tokens must not be negative")
	}
	g.gw, g.limiter = gs, limiter
	g.base = strings.TrimRight(u.String(), "/")
	g.auth = ""
	if key != "" {
		g.auth = "Bearer " + key
	}
	g.maxBody = g.MaxRequestBody
	if g.maxBody == 0 {
		g.maxBody = defaultGatewayMaxBody
	}
	g.estimator = gateway.Estimator{DefaultMaxTokens: g.DefaultMaxTokens}
	if g.logger == nil {
		g.logger = zap.NewNop()
	}
	initGatewayMetrics()
	g.transport = &http.Transport{
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
	return nil
}

// Cleanup closes the idle connections to Lemonade.
func (g *Gateway) Cleanup() error {
	if g.transport != nil {
		g.transport.CloseIdleConnections()
	}
	return nil
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

// ServeHTTP serves the gateway's routes and passes on the rest.
func (g *Gateway) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	var ep endpoint
	switch r.URL.Path {
	case "/v1/chat/completions":
		ep = epChat
	case "/v1/embeddings":
		ep = epEmbeddings
	case "/v1/models":
		ep = epModels
	default:
		return next.ServeHTTP(w, r)
	}
	if r.Method != ep.method() && !(ep == epModels && r.Method == http.MethodHead) {
		w.Header().Set("Allow", ep.method())
		gateway.WriteError(w, &gateway.Error{
			Status:  http.StatusMethodNotAllowed,
			Message: fmt.Sprintf("%s %s is not supported: use %s", r.Method, r.URL.Path, ep.method()),
			Type:    "invalid_request_error",
			Code:    "method_not_allowed",
		})
		return nil
	}
	key := gateway.KeyFromRequest(r)
	if key == "" {
		rejectKey("missing_key")
		gateway.WriteError(w, gateway.ErrMissingKey())
		return nil
	}
	c, ok := g.gw.keyring.Lookup(key)
	if !ok {
		rejectKey("invalid_key")
		gateway.WriteError(w, gateway.ErrInvalidKey())
		return nil
	}
	m := metricsFor(c.Name)
	if ep == epModels {
		m.requests[ep].Inc()
		st := getGatewayRequest()
		defer putGatewayRequest(st)
		_, status, abort := g.proxy(w, r, nil, false, gateway.Usage{}, st)
		if status == http.StatusBadGateway {
			m.upstreamErrors.Inc()
		}
		if abort {
			panic(http.ErrAbortHandler)
		}
		return nil
	}
	g.complete(w, r, ep, &c, m)
	return nil
}

// gatewayRequest is the per-request state, pooled: the reservation, the
// meter, and the buffers this request's goroutine alone uses. (The request
// body is not pooled: the transport may still be writing it upstream
// after the answer came.)
type gatewayRequest struct {
	res   gateway.Reservation
	meter gateway.SSEMeter
	buf   []byte
	kept  []byte
}

var gatewayRequests = sync.Pool{New: func() any {
	return &gatewayRequest{buf: make([]byte, gatewayCopyBuffer)}
}}

func getGatewayRequest() *gatewayRequest { return gatewayRequests.Get().(*gatewayRequest) }

// putGatewayRequest returns st to the pool; its reservation is settled.
func putGatewayRequest(st *gatewayRequest) {
	if st.res.Live() {
		return // never reuse a live reservation
	}
	if cap(st.kept) > 1<<20 {
		st.kept = nil
	}
	st.meter = gateway.SSEMeter{}
	gatewayRequests.Put(st)
}

// complete serves a chat completion or embeddings request: estimate,
// reserve, proxy, settle, record.
func (g *Gateway) complete(w http.ResponseWriter, r *http.Request, ep endpoint, c *gateway.Consumer, m *consumerMetrics) {
	st := getGatewayRequest()
	defer putGatewayRequest(st)

	if r.ContentLength > g.maxBody {
		gateway.WriteError(w, errTooLarge(g.maxBody))
		return
	}
	hint := int64(4 << 10)
	if r.ContentLength > 0 {
		hint = r.ContentLength
	}
	body, err := readLimited(make([]byte, 0, hint+1), r.Body, g.maxBody)
	switch {
	case errors.Is(err, errBodyTooLarge):
		gateway.WriteError(w, errTooLarge(g.maxBody))
		return
	case err != nil:
		gateway.WriteError(w, gateway.ErrBadRequest("reading the request body: "+err.Error(), ""))
		return
	}
	model, est, err := g.estimator.Estimate(body)
	if err != nil {
		gateway.WriteError(w, gateway.ErrBadRequest(err.Error(), errorParam(err)))
		return
	}
	stream := false
	if ep == epChat {
		if body, stream, err = gateway.InjectIncludeUsage(body); err != nil {
			gateway.WriteError(w, gateway.ErrBadRequest(err.Error(), errorParam(err)))
			return
		}
	}

	lim := c.EffectiveLimits()
	d, err := g.limiter.AcquireInto(r.Context(), &st.res, c.Name, lim, lim.Cost(est))
	if err != nil {
		if r.Context().Err() != nil {
			return // the client went away while Redis was asked
		}
		d = gateway.Decision{Reason: gateway.ReasonUnavailable}
		if !errors.Is(err, gateway.ErrUnavailable) {
			g.logger.Error("limiter refused to decide", zap.String("consumer", c.Name), zap.Error(err))
		}
	}
	gateway.RateLimitHeaders(w.Header(), d, lim)
	if !d.Allowed {
		m.rejected(d.Reason)
		gateway.WriteError(w, gateway.ErrRateLimited(d))
		return
	}

	m.requests[ep].Inc()
	gwInFlight.Inc()
	st.meter.PromptEstimate = est.Prompt
	used, status, abort := g.proxy(w, r, body, stream, est, st)
	gwInFlight.Dec()
	if err := st.res.Settle(context.WithoutCancel(r.Context()), lim.Cost(used)); err != nil {
		g.logger.Warn("settling a reservation", zap.String("consumer", c.Name), zap.Error(err))
	}
	m.prompt.Add(float64(used.Prompt))
	m.completion.Add(float64(used.Completion))
	if status == http.StatusBadGateway || abort {
		m.upstreamErrors.Inc()
	}
	g.gw.record(store.UsageRecord{
		Consumer: c.Name, At: time.Now(), Model: model,
		Prompt: used.Prompt, Completion: used.Completion, Total: used.Total, Status: status,
	})
	if abort {
		panic(http.ErrAbortHandler) // Lemonade broke off: so does the answer
	}
}

// errTooLarge is the answer to a body over the limit.
func errTooLarge(limit int64) *gateway.Error {
	return &gateway.Error{
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
func (g *Gateway) proxy(w http.ResponseWriter, r *http.Request, body []byte, stream bool, est gateway.Usage, st *gatewayRequest) (used gateway.Usage, status int, abort bool) {
	ctx := r.Context()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, r.Method, g.upstreamURL(r), rd)
	if err != nil {
		gateway.WriteError(w, gateway.ErrUpstream("building the request to Lemonade: "+err.Error()))
		return gateway.Usage{}, http.StatusBadGateway, false
	}
	copyRequestHeaders(req.Header, r.Header)
	if body != nil && req.Header.Get("Content-Type") == "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if g.auth != "" {
		req.Header.Set("Authorization", g.auth)
	}
	resp, err := g.transport.RoundTrip(req)
	if err != nil {
		if ctx.Err() != nil {
			return gateway.Usage{}, 499, false // the client went away first
		}
		err = unwrapURLError(err)
		msg := fmt.Sprintf("Lemonade at %s could not be reached: %v", g.base, err)
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			msg = fmt.Sprintf("Lemonade at %s closed the connection without answering", g.base)
		}
		gateway.WriteError(w, gateway.ErrUpstream(msg))
		return gateway.Usage{}, http.StatusBadGateway, false
	}
	defer resp.Body.Close()

	h := w.Header()
	copyResponseHeaders(h, resp.Header)
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
		used = gateway.Usage{}
	case sse:
		used, _ = st.meter.Usage()
	case keep:
		u, reported := gateway.ParseUsage(kept)
		if !reported {
			u.Prompt = est.Prompt
			u.Total = u.Prompt + u.Completion
		}
		used = u
	case len(kept) == 0 && !clientGone && readErr == nil:
		used = est // an answer too big to keep: the estimate is charged
	default:
		used = gateway.Usage{Prompt: est.Prompt, Total: est.Prompt}
	}
	if clientGone {
		return used, 499, false
	}
	if readErr != nil {
		g.logger.Warn("lemonade broke off its answer", zap.String("upstream", g.base), zap.Error(readErr))
		return used, http.StatusBadGateway, true
	}
	return used, status, false
}

// upstreamURL is the request's URL at Lemonade: the same path and query,
// without an apikey parameter.
func (g *Gateway) upstreamURL(r *http.Request) string {
	q := r.URL.RawQuery
	if q != "" && strings.Contains(q, "apikey") {
		v := r.URL.Query()
		v.Del("apikey")
		q = v.Encode()
	}
	if q == "" {
		return g.base + r.URL.Path
	}
	return g.base + r.URL.Path + "?" + q
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

// UnmarshalCaddyfile sets up the handler. Syntax:
//
//	thon_gateway {
//		upstream           <url>
//		upstream_api_key   <key>
//		max_request_body   <size>
//		default_max_tokens <number>
//	}
//
// Every setting is optional: by default the gateway proxies to the thon
// app's Lemonade with its key. A setting given no value (as an empty
// environment variable leaves it) stays unset.
func (g *Gateway) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // directive name
	if d.NextArg() {
		return d.ArgErr()
	}
	seen := map[string]bool{}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		opt := d.Val()
		if seen[opt] {
			return d.Errf("thon_gateway option %q already specified", opt)
		}
		seen[opt] = true
		args := d.RemainingArgs()
		if len(args) > 1 {
			return d.Errf("thon_gateway %s: expected one value, got %d", opt, len(args))
		}
		v := ""
		if len(args) == 1 {
			v = args[0]
		}
		switch opt {
		case "upstream":
			if v != "" && !strings.Contains(v, "{") {
				u, err := url.Parse(v)
				if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
					return d.Errf("thon_gateway upstream: %q is not an http(s) URL such as %s", v, defaultLemonadeURL)
				}
			}
			g.Upstream = v
		case "upstream_api_key":
			g.UpstreamAPIKey = v
		case "max_request_body":
			if v == "" {
				continue
			}
			n, err := humanize.ParseBytes(v)
			if err != nil || n < 1024 || n > 1<<40 {
				return d.Errf("thon_gateway max_request_body: %q is not a size of at least 1KiB, such as 32MiB", v)
			}
			g.MaxRequestBody = int64(n)
		case "default_max_tokens":
			if v == "" {
				continue
			}
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil || n < 1 || n > gateway.MaxTokenLimit {
				return d.Errf("thon_gateway default_max_tokens: %q is not a positive number of tokens", v)
			}
			g.DefaultMaxTokens = n
		default:
			return d.Errf("unrecognized thon_gateway option %q", opt)
		}
	}
	return nil
}

func parseGatewayHandler(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
	g := new(Gateway)
	return g, g.UnmarshalCaddyfile(h.Dispenser)
}

// Interface guards
var (
	_ caddy.Provisioner           = (*Gateway)(nil)
	_ caddy.CleanerUpper          = (*Gateway)(nil)
	_ caddyhttp.MiddlewareHandler = (*Gateway)(nil)
	_ caddyfile.Unmarshaler       = (*Gateway)(nil)
)
