// Package api is thon's REST API: the /api/... routes, the OpenAPI document at
// /openapi.json and Swagger UI at /docs. It uses only net/http; the caddymodule
// package mounts it as the http.handlers.thon_api handler and on the admin API.
package api

import (
	"errors"
	"log/slog"
	"net/http"
	"strings"

	"github.com/thon-dev/thon/auth"
	"github.com/thon-dev/thon/gateway"
	"github.com/thon-dev/thon/sandboxes"
	"github.com/thon-dev/thon/store"
)

// Default request size limits.
const (
	DefaultMaxBodyBytes   int64 = 1 << 20 // JSON bodies
	DefaultMaxUploadBytes int64 = 4 << 20 // file uploads and raw file bodies
)

// Options configures a Server.
type Options struct {
	// Store is the database every route reads and writes. Required.
	Store *store.Store
	// Auth decides who each request is (see guard in access.go). Required.
	Auth *auth.Service
	// Sandboxes runs the sandboxes of the instance, group operation and
	// user launch routes; it must keep its records in Store. Nil means
	// those routes answer 503 (sandboxes are not configured).
	Sandboxes *sandboxes.Manager
	// Logger receives internal errors; nil means slog.Default().
	Logger *slog.Logger
	// MaxBodyBytes limits JSON request bodies; 0 means DefaultMaxBodyBytes.
	MaxBodyBytes int64
	// MaxUploadBytes limits uploaded files and raw file bodies (YAML imports,
	// text/plain config files); 0 means DefaultMaxUploadBytes.
	MaxUploadBytes int64
	// Nginx configures the nginx emission routes (/api/nginx/...); nil
	// means they answer 503.
	Nginx *NginxOptions
	// Lemonade configures the Lemonade Server routes (/api/lemonade/...);
	// nil means they answer 503.
	Lemonade *LemonadeOptions
	// Gateway is the AI gateway's consumer service, which the gateway
	// routes (/api/gateway/...) call; nil means they answer 503.
	Gateway *gateway.Service
}

// Route is one registered API route, as given to http.ServeMux:
// a method and a path pattern such as "/api/groups/{group_id}", with who
// may call it.
type Route struct {
	Method  string `json:"method"`
	Pattern string `json:"pattern"`
	Access  Level  `json:"access"`
}

// Server serves the REST API, the OpenAPI document and Swagger UI.
// It is safe for concurrent use.
type Server struct {
	store     *store.Store
	auth      *auth.Service
	sandboxes *sandboxes.Manager
	logger    *slog.Logger
	maxBody   int64
	maxUpload int64
	nginx     *NginxOptions
	lemonade  *LemonadeOptions
	gateway   *gateway.Service

	mux         *http.ServeMux
	routes      []Route // API routes
	pages       []Route // HTML pages
	crossOrigin *http.CrossOriginProtection
}

// handlerFunc is the signature of API handlers: a returned error is written
// as a JSON error response by Server.writeError.
type handlerFunc func(w http.ResponseWriter, r *http.Request) error

// routeGroups lists the functions that register each resource's routes.
// A new resource adds its file and one entry here.
var routeGroups = []func(*Server){
	(*Server).healthRoutes,
	(*Server).authRoutes,
	(*Server).tokenRoutes,
	(*Server).groupRoutes,
	(*Server).configFileRoutes,
	(*Server).instanceRoutes,
	(*Server).operationRoutes,
	(*Server).nginxRoutes,
	(*Server).lemonadeRoutes,
	(*Server).gatewayRoutes,
}

// New returns a Server for opts.
func New(opts Options) (*Server, error) {
	if opts.Store == nil {
		return nil, errors.New("api: store is required")
	}
	if opts.Auth == nil {
		return nil, errors.New("api: auth is required")
	}
	if opts.MaxBodyBytes < 0 {
		return nil, errors.New("api: max body bytes must not be negative")
	}
	if opts.MaxUploadBytes < 0 {
		return nil, errors.New("api: max upload bytes must not be negative")
	}
	s := &Server{
		store:     opts.Store,
		auth:      opts.Auth,
		sandboxes: opts.Sandboxes,
		logger:    opts.Logger,
		maxBody:   opts.MaxBodyBytes,
		maxUpload: opts.MaxUploadBytes,
		nginx:     opts.Nginx,
		lemonade:  opts.Lemonade,
		gateway:   opts.Gateway,
		mux:       http.NewServeMux(),

		crossOrigin: http.NewCrossOriginProtection(),
	}
	if s.logger == nil {
		s.logger = slog.Default()
	}
	if s.maxBody == 0 {
		s.maxBody = DefaultMaxBodyBytes
	}
	if s.maxUpload == 0 {
		s.maxUpload = DefaultMaxUploadBytes
	}
	for _, register := range routeGroups {
		register(s)
	}
	// The OpenAPI document and Swagger UI hold no data: open to all.
	s.mux.HandleFunc("GET /openapi.json", s.serveOpenAPI)
	s.mux.HandleFunc("GET /docs", s.serveDocs)
	s.mux.HandleFunc("GET /docs/{file...}", s.serveDocs)
	s.mux.HandleFunc("/", s.serveFallback)
	return s, nil
}

// ServeHTTP serves /api/..., the sign-in pages (/login, /setup),
// /openapi.json, /docs and /docs/*. Any other path, and an unknown /api
// path, answers a JSON 404; a known path with the wrong method answers a
// JSON 405 with an Allow header. Every route checks who the request is
// (see guard).
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mux.ServeHTTP(w, r)
}

// Routes returns every registered API route in registration order.
func (s *Server) Routes() []Route {
	return append([]Route(nil), s.routes...)
}

// Pages returns the HTML pages (such as /login and /me), with who may
// open them. They go through the same access check as the routes but
// answer errors as pages, and are not in the OpenAPI document.
func (s *Server) Pages() []Route {
	return append([]Route(nil), s.pages...)
}

// probeMethods are tried to tell a 405 from a 404.
var probeMethods = []string{
	http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut,
	http.MethodPatch, http.MethodDelete, http.MethodOptions,
}

// serveFallback answers requests that no route matched: 405 when the path
// exists for other methods, 404 otherwise, both as JSON.
func (s *Server) serveFallback(w http.ResponseWriter, r *http.Request) {
	var allow []string
	for _, m := range probeMethods {
		if m == r.Method {
			continue
		}
		probe := &http.Request{Method: m, URL: r.URL, Host: r.Host, Header: http.Header{}}
		if _, pattern := s.mux.Handler(probe); pattern != "" && pattern != "/" {
			allow = append(allow, m)
		}
	}
	if len(allow) > 0 {
		w.Header().Set("Allow", strings.Join(allow, ", "))
		s.writeError(w, r, errorf(http.StatusMethodNotAllowed, "", "method %s not allowed for %s; allowed: %s",
			r.Method, r.URL.Path, strings.Join(allow, ", ")))
		return
	}
	s.writeError(w, r, errorf(http.StatusNotFound, "", "no route for %s %s", r.Method, r.URL.Path))
}
