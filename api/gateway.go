package api

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"time"

	"github.com/thon-dev/thon/gateway"
	"github.com/thon-dev/thon/store"
)

// GatewayOptions configures the AI gateway routes (/api/gateway/...).
type GatewayOptions struct {
	// Changed is called after consumers changed, so that the running
	// gateway reloads its keys; nil means nothing is told.
	Changed func(ctx context.Context) error
	// Runtime describes the running gateway for GET /api/gateway/status;
	// nil leaves it out.
	Runtime func() GatewayRuntime
	// KiloURL is the gateway's OpenAI base URL (ending in /v1) as Kilo
	// inside a sandbox reaches it, written into each consumer's
	// kilo.jsonc; empty means http://<ExternalIP or localhost>:9080/v1.
	KiloURL string
	// ExternalIP is the host used when KiloURL is empty.
	ExternalIP string
	// KiloFile is the kilo.jsonc file given in the Caddyfile, if any; it
	// (else the database slot) is the skeleton of consumers' kilo.jsonc.
	KiloFile string
}

// GatewayRuntime describes the running gateway.
type GatewayRuntime struct {
	// Policy is where limits are kept: "local" (this process) or "redis".
	Policy string `json:"policy"`
	// Redis is the Redis server's host:port with the redis policy.
	Redis string `json:"redis,omitempty"`
	// OnRedisError is "open" or "closed": what happens to requests while
	// Redis cannot be reached.
	OnRedisError string `json:"on_redis_error,omitempty"`
	// Keys is the number of keys the running gateway accepts.
	Keys int `json:"keys"`
	// RedisRoundTrips counts the commands and pipelines sent to Redis by
	// this process's limiter since it started (two per admitted request:
	// the decision and the settlement).
	RedisRoundTrips uint64 `json:"redis_round_trips,omitempty"`
}

// gatewayRoutes registers the AI gateway routes: setup, consumers, keys,
// status, cleanup and usage.
func (s *Server) gatewayRoutes() {
	s.handleGateway("POST", "/api/gateway/setup", s.gatewaySetup)
	s.handleGateway("GET", "/api/gateway/status", s.gatewayStatus)
	s.handleGateway("GET", "/api/gateway/consumers", s.listConsumers)
	s.handleGateway("POST", "/api/gateway/consumers", s.createConsumer)
	s.handleGateway("DELETE", "/api/gateway/consumers/{username}", s.deleteConsumer)
	s.handleGateway("POST", "/api/gateway/consumers/{username}/rotate", s.rotateConsumer)
	s.handleGateway("POST", "/api/gateway/consumers/{username}/revoke", s.revokeConsumer)
	s.handleGateway("POST", "/api/gateway/cleanup", s.gatewayCleanup)
	s.handleGateway("GET", "/api/gateway/usage", s.gatewayUsage)
}

// handleGateway registers a route that needs Options.Gateway; without it
// the route answers 503.
func (s *Server) handleGateway(method, pattern string, h handlerFunc) {
	s.handle(method, pattern, func(w http.ResponseWriter, r *http.Request) error {
		if s.gateway == nil {
			return errorf(http.StatusServiceUnavailable, "", "the AI gateway is not configured")
		}
		return h(w, r)
	})
}

// gatewayConsumer is a consumer as the API shows it, with the limits the
// gateway applies (a per-group consumer's are the per-user limits times
// its members).
type gatewayConsumer struct {
	store.Consumer
	EffectiveTokenLimit       int64 `json:"effective_token_limit"`
	EffectiveConcurrencyLimit int   `json:"effective_concurrency_limit"`
}

// issuedConsumer is a consumer with its key, shown only when made.
type issuedConsumer struct {
	gatewayConsumer
	// Key is the API key; it is shown this once and stored only hashed.
	Key string `json:"key"`
}

func viewConsumer(c store.Consumer) gatewayConsumer {
	v := gatewayConsumer{Consumer: c}
	lim := gateway.Limits{Concurrency: c.ConcurrencyLimit, TokenLimit: c.TokenLimit}
	if c.Mode == store.ConsumerPerGroup {
		lim = gateway.ScaleLimits(lim, c.Members)
	}
	v.EffectiveTokenLimit, v.EffectiveConcurrencyLimit = lim.TokenLimit, lim.Concurrency
	return v
}

// gatewaySetupRequest is the body of POST /api/gateway/setup.
type gatewaySetupRequest struct {
	// Mode is per-user (default) or per-group.
	Mode string `json:"mode"`
	// TokenLimit is the tokens a user may use per window; 0 (default) is
	// no limit.
	TokenLimit *int64 `json:"token_limit"`
	// TokenWindow is the window in seconds; default 60.
	TokenWindow *int64 `json:"token_window"`
	// ConcurrencyLimit is the requests a user may have in flight; default
	// 1, 0 is no limit.
	ConcurrencyLimit *int `json:"concurrency_limit"`
	// Strategy is what a token limit counts: total_tokens (default),
	// prompt_tokens or completion_tokens.
	Strategy string `json:"strategy"`
}

// settings validates the request into gateway settings.
func (req gatewaySetupRequest) settings() (GatewaySettings, error) {
	g := GatewaySettings{Enabled: true, Mode: req.Mode, TokenWindow: DefaultGatewayWindow,
		ConcurrencyLimit: DefaultGatewayConcurrency, Strategy: req.Strategy}
	if g.Mode == "" {
		g.Mode = gateway.ModePerUser
	}
	if g.Strategy == "" {
		g.Strategy = gateway.StrategyTotalTokens
	}
	if req.TokenLimit != nil {
		g.TokenLimit = *req.TokenLimit
	}
	if req.TokenWindow != nil {
		g.TokenWindow = *req.TokenWindow
	}
	if req.ConcurrencyLimit != nil {
		g.ConcurrencyLimit = *req.ConcurrencyLimit
	}
	return g, g.validate()
}

// validate reports the first invalid setting, naming its field.
func (g GatewaySettings) validate() error {
	if g.Mode != gateway.ModePerUser && g.Mode != gateway.ModePerGroup {
		return badRequest("mode", "mode: must be %s or %s, got %q", gateway.ModePerUser, gateway.ModePerGroup, g.Mode)
	}
	if g.TokenWindow < 1 || g.TokenWindow > 366*86400 {
		return badRequest("token_window", "token_window: must be from 1 to %d seconds, got %d", 366*86400, g.TokenWindow)
	}
	lim := gateway.Limits{Concurrency: g.ConcurrencyLimit, TokenLimit: g.TokenLimit,
		Window: time.Duration(g.TokenWindow) * time.Second, Strategy: g.Strategy}
	if err := lim.Validate(); err != nil {
		field, _, _ := strings.Cut(err.Error(), ":")
		switch field {
		case "concurrency":
			field = "concurrency_limit"
		case "window":
			field = "token_window"
		}
		return badRequest(field, "%s", strings.Replace(err.Error(), "concurrency:", "concurrency_limit:", 1))
	}
	return nil
}

// gatewaySetupResponse answers POST /api/gateway/setup.
type gatewaySetupResponse struct {
	GatewaySettings
	// KiloURL is where each consumer's kilo.jsonc points Kilo.
	KiloURL string `json:"kilo_url"`
	// Consumers are every consumer with its key, shown this once.
	Consumers []issuedConsumer `json:"consumers"`
	// Skipped are consumer names that two users of the roster would share;
	// they get no consumer.
	Skipped []string `json:"skipped"`
}

// gatewaySetup turns the gateway on with a consumer mode and limits, and
// gives every user (or group) of the roster a consumer with a new key: all
// earlier consumers and keys are replaced, in one transaction.
func (s *Server) gatewaySetup(w http.ResponseWriter, r *http.Request) error {
	var req gatewaySetupRequest
	if err := s.decodeOptionalJSON(w, r, &req); err != nil {
		return err
	}
	g, err := req.settings()
	if err != nil {
		return err
	}
	unlock := s.gatewayLock()
	defer unlock()
	groups, err := s.store.ListGroups(r.Context())
	if err != nil {
		return err
	}
	want, clashes := wantedConsumers(groups, g.Mode)
	kilo, err := s.kiloMaker(r.Context())
	if err != nil {
		return err
	}
	rows := make([]store.Consumer, 0, len(want))
	kilos := make(map[string]string, len(want))
	keys := make(map[string]string, len(want))
	for _, wc := range want {
		is, err := issue(newConsumerRow(wc, g), kilo)
		if err != nil {
			return err
		}
		rows = append(rows, is.consumer)
		kilos[wc.name], keys[wc.name] = is.kilo, is.key
	}
	stored, err := s.store.ReplaceConsumers(r.Context(), rows, kilos, g.settingsMap())
	if err != nil {
		return err
	}
	s.gatewayChanged(r.Context())
	out := gatewaySetupResponse{GatewaySettings: g, KiloURL: s.kiloURL(), Consumers: []issuedConsumer{}, Skipped: clashes}
	if out.Skipped == nil {
		out.Skipped = []string{}
	}
	for _, c := range stored {
		out.Consumers = append(out.Consumers, issuedConsumer{gatewayConsumer: viewConsumer(c), Key: keys[c.Username]})
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

// kiloURL is the base URL written into consumers' kilo.jsonc.
func (s *Server) kiloURL() string {
	if s.gateway.KiloURL != "" {
		return s.gateway.KiloURL
	}
	host := s.gateway.ExternalIP
	if host == "" {
		host = "localhost"
	}
	return "http://" + host + ":9080/v1"
}

// gatewayStatus is the answer of GET /api/gateway/status.
type gatewayStatus struct {
	GatewaySettings
	KiloURL   string          `json:"kilo_url"`
	Consumers int             `json:"consumers"`
	Revoked   int             `json:"revoked"`
	Runtime   *GatewayRuntime `json:"runtime,omitempty"`
}

func (s *Server) gatewayStatus(w http.ResponseWriter, r *http.Request) error {
	if _, _, err := s.SyncGateway(r.Context()); err != nil {
		return err
	}
	g, err := LoadGatewaySettings(r.Context(), s.store)
	if err != nil {
		return err
	}
	cs, err := s.store.ListConsumers(r.Context())
	if err != nil {
		return err
	}
	out := gatewayStatus{GatewaySettings: g, KiloURL: s.kiloURL(), Consumers: len(cs)}
	for _, c := range cs {
		if c.RevokedAt != nil {
			out.Revoked++
		}
	}
	if s.gateway.Runtime != nil {
		rt := s.gateway.Runtime()
		out.Runtime = &rt
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

// consumerList is the answer of GET /api/gateway/consumers.
type consumerList struct {
	Consumers []gatewayConsumer `json:"consumers"`
}

// listConsumers lists the consumers, without their keys; users imported
// since the last change get their consumer first.
func (s *Server) listConsumers(w http.ResponseWriter, r *http.Request) error {
	if _, _, err := s.SyncGateway(r.Context()); err != nil {
		return err
	}
	cs, err := s.store.ListConsumers(r.Context())
	if err != nil {
		return err
	}
	out := consumerList{Consumers: make([]gatewayConsumer, 0, len(cs))}
	for _, c := range cs {
		out.Consumers = append(out.Consumers, viewConsumer(c))
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

// consumerCreateRequest is the body of POST /api/gateway/consumers.
type consumerCreateRequest struct {
	// Group is the consumer's group; User its user in per-user mode.
	Group string `json:"group"`
	User  string `json:"user"`
	// Limits; unset ones are the gateway's defaults (see setup).
	TokenLimit       *int64 `json:"token_limit"`
	TokenWindow      *int64 `json:"token_window"`
	ConcurrencyLimit *int   `json:"concurrency_limit"`
}

// createConsumer adds one consumer, in the gateway's mode, for an existing
// user or group, with a new key shown once.
func (s *Server) createConsumer(w http.ResponseWriter, r *http.Request) error {
	var req consumerCreateRequest
	if err := s.decodeJSON(w, r, &req); err != nil {
		return err
	}
	unlock := s.gatewayLock()
	defer unlock()
	g, err := LoadGatewaySettings(r.Context(), s.store)
	if err != nil {
		return err
	}
	if !g.Enabled {
		return errorf(http.StatusConflict, "", "the gateway is off: POST /api/gateway/setup first")
	}
	if err := store.ValidateName("group", req.Group); err != nil {
		return err
	}
	wc := wantConsumer{group: req.Group}
	switch g.Mode {
	case gateway.ModePerGroup:
		if req.User != "" {
			return badRequest("user", "user: must be empty: the gateway is per-group")
		}
		grp, err := s.store.GetGroup(r.Context(), req.Group)
		if err != nil {
			return err
		}
		if len(grp.Users) == 0 {
			return badRequest("group", "group: %q has no users", req.Group)
		}
		wc.name = gateway.GroupConsumerName(req.Group)
	default:
		if err := store.ValidateName("user", req.User); err != nil {
			return err
		}
		if _, err := s.store.GetUser(r.Context(), req.Group, req.User); err != nil {
			return err
		}
		wc.name, wc.user = gateway.UserConsumerName(req.Group, req.User), req.User
	}
	if req.TokenLimit != nil {
		g.TokenLimit = *req.TokenLimit
	}
	if req.TokenWindow != nil {
		g.TokenWindow = *req.TokenWindow
	}
	if req.ConcurrencyLimit != nil {
		g.ConcurrencyLimit = *req.ConcurrencyLimit
	}
	if err := g.validate(); err != nil {
		return err
	}
	kilo, err := s.kiloMaker(r.Context())
	if err != nil {
		return err
	}
	is, err := issue(newConsumerRow(wc, g), kilo)
	if err != nil {
		return err
	}
	stored, err := s.store.CreateConsumers(r.Context(), []store.Consumer{is.consumer}, map[string]string{wc.name: is.kilo})
	if errors.Is(err, store.ErrConflict) {
		return errorf(http.StatusConflict, "", "consumer %q exists: rotate its key or delete it first", wc.name)
	}
	if err != nil {
		return err
	}
	s.gatewayChanged(r.Context())
	writeJSON(w, http.StatusCreated, issuedConsumer{gatewayConsumer: viewConsumer(stored[0]), Key: is.key})
	return nil
}

// deletedConsumer answers DELETE /api/gateway/consumers/{username}.
type deletedConsumer struct {
	Deleted gatewayConsumer `json:"deleted"`
}

func (s *Server) deleteConsumer(w http.ResponseWriter, r *http.Request) error {
	unlock := s.gatewayLock()
	defer unlock()
	c, err := s.store.DeleteConsumer(r.Context(), r.PathValue("username"))
	if err != nil {
		return err
	}
	s.gatewayChanged(r.Context())
	writeJSON(w, http.StatusOK, deletedConsumer{Deleted: viewConsumer(c)})
	return nil
}

// rotateConsumer gives a consumer a new key (shown once) and a new
// kilo.jsonc, and lifts a revocation. The old key stops working at once;
// sandboxes made before keep the old key until they are recreated.
func (s *Server) rotateConsumer(w http.ResponseWriter, r *http.Request) error {
	if err := s.decodeOptionalJSON(w, r, &emptyRequest{}); err != nil {
		return err
	}
	unlock := s.gatewayLock()
	defer unlock()
	c, err := s.store.GetConsumer(r.Context(), r.PathValue("username"))
	if err != nil {
		return err
	}
	kilo, err := s.kiloMaker(r.Context())
	if err != nil {
		return err
	}
	is, err := issue(c, kilo)
	if err != nil {
		return err
	}
	c, err = s.store.RotateConsumer(r.Context(), c.Username, is.consumer.KeyHash, is.consumer.KeyPrefix, is.kilo)
	if err != nil {
		return err
	}
	s.gatewayChanged(r.Context())
	writeJSON(w, http.StatusOK, issuedConsumer{gatewayConsumer: viewConsumer(c), Key: is.key})
	return nil
}

// revokeConsumer disables a consumer's key; rotating gives it a new one.
func (s *Server) revokeConsumer(w http.ResponseWriter, r *http.Request) error {
	if err := s.decodeOptionalJSON(w, r, &emptyRequest{}); err != nil {
		return err
	}
	unlock := s.gatewayLock()
	defer unlock()
	c, err := s.store.RevokeConsumer(r.Context(), r.PathValue("username"))
	if err != nil {
		return err
	}
	s.gatewayChanged(r.Context())
	writeJSON(w, http.StatusOK, viewConsumer(c))
	return nil
}

// gatewayCleaned answers POST /api/gateway/cleanup.
type gatewayCleaned struct {
	Deleted int `json:"deleted"`
}

// gatewayCleanup turns the gateway off and deletes every consumer; usage
// recorded so far is kept. New sandboxes get the organiser's kilo.jsonc.
func (s *Server) gatewayCleanup(w http.ResponseWriter, r *http.Request) error {
	if err := s.decodeOptionalJSON(w, r, &emptyRequest{}); err != nil {
		return err
	}
	unlock := s.gatewayLock()
	defer unlock()
	n, err := s.store.DeleteAllConsumers(r.Context(), map[string]string{settingGatewayEnabled: "false"})
	if err != nil {
		return err
	}
	s.gatewayChanged(r.Context())
	writeJSON(w, http.StatusOK, gatewayCleaned{Deleted: n})
	return nil
}

// gatewayUsage is the answer of GET /api/gateway/usage.
type gatewayUsage struct {
	From  *time.Time            `json:"from,omitempty"`
	To    *time.Time            `json:"to,omitempty"`
	Usage []store.ConsumerUsage `json:"usage"`
}

// gatewayUsage sums the usage per consumer, for ?from= and ?to= (RFC 3339
// times; default: all) and ?consumer= (default: all).
func (s *Server) gatewayUsage(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	var f store.UsageFilter
	var out gatewayUsage
	for _, p := range []struct {
		name string
		dst  *time.Time
		show **time.Time
	}{{"from", &f.From, &out.From}, {"to", &f.To, &out.To}} {
		v := q.Get(p.name)
		if v == "" {
			continue
		}
		t, err := time.Parse(time.RFC3339, v)
		if err != nil {
			return badRequest(p.name, "%s: %q is not an RFC 3339 time such as 2026-05-01T09:00:00Z", p.name, v)
		}
		t = t.UTC()
		*p.dst, *p.show = t, &t
	}
	f.Consumer = q.Get("consumer")
	u, err := s.store.UsageSummary(r.Context(), f)
	if err != nil {
		return err
	}
	out.Usage = u
	writeJSON(w, http.StatusOK, out)
	return nil
}
