package caddymodule

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	"github.com/thon-dev/thon/api"
	"github.com/thon-dev/thon/gateway"
	"github.com/thon-dev/thon/store"
)

// GatewayConfig is the AI gateway's policy: where the limits of its
// consumers are kept, and where sandboxes reach it.
type GatewayConfig struct {
	// Redis is the host:port of a Redis server shared by every thon
	// serving the gateway, which then hold one set of limits together
	// (one script, one round trip per decision). Empty (the default) keeps
	// limits in this process, across config reloads.
	Redis string `json:"redis,omitempty"`

	// Credentials, database and key prefix on the Redis server. Use
	// {env.*} placeholders for the password: they are resolved when the
	// config loads.
	RedisUsername string `json:"redis_username,omitempty"`
	RedisPassword string `json:"redis_password,omitempty"`
	RedisDB       int    `json:"redis_db,omitempty"`
	RedisPrefix   string `json:"redis_prefix,omitempty"`

	// OnRedisError is what happens to requests while Redis cannot be
	// reached: "closed" (the default) refuses them with 503, "open" lets
	// them through unchecked. Either way, each failure is logged.
	OnRedisError string `json:"on_redis_error,omitempty"`

	// KiloURL is the gateway's OpenAI base URL (ending in /v1) as Kilo
	// inside a sandbox reaches it, written into every consumer's
	// kilo.jsonc. Default: https://<domain>/v1, else
	// https://<external_ip>/v1 (the container must then trust thon's
	// root), else http://localhost:9080/v1.
	KiloURL string `json:"kilo_url,omitempty"`

	// resolved by provision
	limiter   gateway.Limiter
	policy    string
	redisAddr string
}

// Values of on_redis_error.
const (
	redisFailOpen   = "open"
	redisFailClosed = "closed"
)

// parseGatewayOption reads the gateway sub-block of the thon global
// option. Syntax:
//
//	gateway {
//		redis          <host:port>
//		redis_username <name>
//		redis_password <password>
//		redis_db       <number>
//		redis_prefix   <prefix>
//		on_redis_error open|closed
//		kilo_url       <url>
//	}
//
// Every setting is optional; without redis the limits are kept in this
// process. A setting given no value (as an empty environment variable
// leaves it) stays unset.
func parseGatewayOption(d *caddyfile.Dispenser) (*GatewayConfig, error) {
	c := new(GatewayConfig)
	err := blockOptions(d, "gateway", true, func(opt, v string) error {
		switch opt {
		case "redis":
			if v != "" && !strings.Contains(v, "{") {
				if err := checkHostPort(v); err != nil {
					return d.Errf("gateway redis: %v", err)
				}
			}
			c.Redis = v
		case "redis_username":
			c.RedisUsername = v
		case "redis_password":
			c.RedisPassword = v
		case "redis_prefix":
			c.RedisPrefix = v
		case "redis_db":
			if v == "" {
				return nil
			}
			n, err := strconv.Atoi(v)
			if err != nil || n < 0 {
				return d.Errf("gateway redis_db: %q is not a database number (0 or more)", v)
			}
			c.RedisDB = n
		case "on_redis_error":
			if v != "" && v != redisFailOpen && v != redisFailClosed {
				return d.Errf("gateway on_redis_error: %q is not open or closed", v)
			}
			c.OnRedisError = v
		case "kilo_url":
			if v != "" && !strings.Contains(v, "{") {
				if err := checkKiloURL(v); err != nil {
					return d.Errf("gateway kilo_url: %v", err)
				}
			}
			c.KiloURL = v
		default:
			return d.Errf("unrecognized gateway option %q", opt)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return c, nil
}

// checkHostPort accepts host:port with a port number.
func checkHostPort(v string) error {
	host, port, err := net.SplitHostPort(v)
	if err != nil {
		return fmt.Errorf("%q is not host:port, such as 127.0.0.1:6379", v)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 || host == "" {
		return fmt.Errorf("%q is not host:port, such as 127.0.0.1:6379", v)
	}
	return nil
}

// checkKiloURL accepts an http(s) URL with a host.
func checkKiloURL(v string) error {
	u, err := url.Parse(v)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("%q is not an http(s) URL such as https://thon.example.org/v1", v)
	}
	return nil
}

// provision resolves placeholders and picks the limiter: the process's
// own, or the Redis limiter of these settings (made once, kept in the
// shared state). It does no network I/O.
func (c *GatewayConfig) provision(gs *gatewayState) error {
	for _, f := range []*string{&c.Redis, &c.RedisUsername, &c.RedisPassword, &c.RedisPrefix, &c.OnRedisError, &c.KiloURL} {
		*f = expand(*f, "")
	}
	if c.KiloURL != "" {
		if err := checkKiloURL(c.KiloURL); err != nil {
			return fmt.Errorf("gateway kilo_url: %v", err)
		}
	}
	switch c.OnRedisError {
	case "", redisFailOpen, redisFailClosed:
	default:
		return fmt.Errorf("gateway on_redis_error: %q is not open or closed", c.OnRedisError)
	}
	if c.Redis == "" {
		c.limiter, c.policy, c.redisAddr = &gs.local, "local", ""
		return nil
	}
	if err := checkHostPort(c.Redis); err != nil {
		return fmt.Errorf("gateway redis: %v", err)
	}
	rl, err := gs.redisLimiter(gateway.RedisConfig{
		Addr:     c.Redis,
		Username: c.RedisUsername,
		Password: c.RedisPassword,
		DB:       c.RedisDB,
		Prefix:   c.RedisPrefix,
		FailOpen: c.OnRedisError == redisFailOpen,
	})
	if err != nil {
		return fmt.Errorf("gateway redis: %v", err)
	}
	c.limiter, c.policy, c.redisAddr = rl, "redis", c.Redis
	return nil
}

// onRedisError is the effective on_redis_error.
func (c *GatewayConfig) onRedisError() string {
	if c.OnRedisError == "" {
		return redisFailClosed
	}
	return c.OnRedisError
}

// gatewayOptions provisions the app's gateway (a default one, limits in
// process, when the Caddyfile has no gateway block) and returns the REST
// API's gateway options.
func (a *App) gatewayOptions() (*api.GatewayOptions, error) {
	if a.Gateway == nil {
		a.Gateway = new(GatewayConfig)
	}
	gs := &a.shared.gateway
	if err := a.Gateway.provision(gs); err != nil {
		return nil, err
	}
	kiloURL := a.Gateway.KiloURL
	switch {
	case kiloURL != "":
	case a.Domain != "":
		kiloURL = "https://" + a.Domain + "/v1"
	case a.ExternalIP != "":
		kiloURL = "https://" + a.ExternalIP + "/v1"
	}
	cfg := a.Gateway
	return &api.GatewayOptions{
		Changed: gs.reload,
		Runtime: func() api.GatewayRuntime {
			rt := api.GatewayRuntime{Policy: cfg.policy, Redis: cfg.redisAddr, Keys: gs.keyring.Len()}
			if rl, ok := cfg.limiter.(*gateway.RedisLimiter); ok {
				rt.OnRedisError = cfg.onRedisError()
				rt.RedisRoundTrips = rl.RoundTrips()
			}
			return rt
		},
		KiloURL:    kiloURL,
		ExternalIP: a.ExternalIP,
		KiloFile:   a.KiloFile,
	}, nil
}

// startGateway loads the gateway's keys and starts its background work
// (usage batching, keeping consumers in line with the roster) once; later
// configs only hand it their REST API.
func (a *App) startGateway() {
	a.shared.gateway.start(a.shared.store, a.api)
}

// gatewayKilo is the sandboxes' KiloFor hook: the user's kilo.jsonc from
// the gateway, when it is on.
func (a *App) gatewayKilo(ctx context.Context, group, user string) (string, bool, error) {
	if a.api == nil {
		return "", false, nil
	}
	return a.api.GatewayKilo(ctx, group, user)
}

// Intervals of the gateway's background work.
const (
	usageFlushInterval = time.Second
	usageFlushBatch    = 512     // records that trigger a flush at once
	usageMaxPending    = 1 << 17 // records kept while the database fails
	gatewaySyncEvery   = 15 * time.Second
	limiterSweepEvery  = 5 * time.Minute
)

// gatewayState is the gateway's part of the state shared across config
// reloads: the keys, the in-process limiter (so that a reload keeps every
// window and in-flight count), the Redis limiters, and the usage waiting
// to be written.
type gatewayState struct {
	keyring gateway.Keyring
	local   gateway.LocalLimiter

	st       *store.Store
	api      atomic.Pointer[api.Server] // the running config's, for consumer sync
	reloadMu sync.Mutex

	redisMu sync.Mutex
	redis   map[string]*gateway.RedisLimiter

	usageMu   sync.Mutex
	usage     []store.UsageRecord
	usageKick chan struct{}
	dropped   int

	once   sync.Once
	cancel context.CancelFunc
	done   chan struct{}
}

// start loads the keys and runs the background loop, once; every call
// makes srv the API used to keep consumers in line with the roster.
func (gs *gatewayState) start(st *store.Store, srv *api.Server) {
	if srv != nil {
		gs.api.Store(srv)
	}
	gs.once.Do(func() {
		gs.reloadMu.Lock()
		gs.st = st
		gs.reloadMu.Unlock()
		gs.usageKick = make(chan struct{}, 1)
		log := caddy.Log().Named("thon.gateway")
		if srv != nil {
			if created, deleted, err := srv.SyncGateway(context.Background()); err != nil {
				log.Error("bringing consumers in line with the roster", zap.Error(err))
			} else if created+deleted > 0 {
				log.Info("consumers brought in line with the roster", zap.Int("created", created), zap.Int("deleted", deleted))
			}
		}
		if err := gs.reload(context.Background()); err != nil {
			log.Error("loading the gateway's keys", zap.Error(err))
		}
		ctx, cancel := context.WithCancel(context.Background())
		gs.cancel, gs.done = cancel, make(chan struct{})
		go gs.loop(ctx)
	})
}

// stop ends the background loop, writes the usage still pending and
// closes the Redis limiters.
func (gs *gatewayState) stop() {
	if gs.cancel != nil {
		gs.cancel()
		<-gs.done
	}
	gs.redisMu.Lock()
	defer gs.redisMu.Unlock()
	for k, rl := range gs.redis {
		_ = rl.Close()
		delete(gs.redis, k)
	}
}

// loop writes usage in batches, keeps consumers in line with the roster
// (users imported later get theirs) and the keys current (a group's
// member count changes its limits), and sweeps idle consumers out of the
// in-process limiter.
func (gs *gatewayState) loop(ctx context.Context) {
	defer close(gs.done)
	flush := time.NewTicker(usageFlushInterval)
	defer flush.Stop()
	resync := time.NewTicker(gatewaySyncEvery)
	defer resync.Stop()
	sweep := time.NewTicker(limiterSweepEvery)
	defer sweep.Stop()
	for {
		select {
		case <-ctx.Done():
			gs.flushUsage(context.Background())
			return
		case <-flush.C:
			gs.flushUsage(ctx)
		case <-gs.usageKick:
			gs.flushUsage(ctx)
		case <-resync.C:
			log := caddy.Log().Named("thon.gateway")
			if srv := gs.api.Load(); srv != nil {
				if created, deleted, err := srv.SyncGateway(ctx); err != nil {
					log.Error("bringing consumers in line with the roster", zap.Error(err))
				} else if created+deleted > 0 {
					log.Info("consumers brought in line with the roster", zap.Int("created", created), zap.Int("deleted", deleted))
				}
			}
			if err := gs.reload(ctx); err != nil {
				log.Error("reloading the gateway's keys", zap.Error(err))
			}
		case <-sweep.C:
			gs.local.Sweep()
		}
	}
}

// reload replaces the keys the gateway accepts with the consumers in the
// database that are not revoked.
func (gs *gatewayState) reload(ctx context.Context) error {
	gs.reloadMu.Lock()
	defer gs.reloadMu.Unlock()
	if gs.st == nil {
		return errors.New("the gateway has not started")
	}
	settings, err := api.LoadGatewaySettings(ctx, gs.st)
	if err != nil {
		return err
	}
	rows, err := gs.st.ListConsumers(ctx)
	if err != nil {
		return err
	}
	list := make([]gateway.Consumer, 0, len(rows))
	for _, c := range rows {
		if c.RevokedAt != nil {
			continue
		}
		gc := gateway.Consumer{
			Name: c.Username, Mode: c.Mode, Group: c.Group, User: c.User,
			Members: max(c.Members, 1), KeyHash: c.KeyHash,
			Limits: gateway.Limits{
				Concurrency: c.ConcurrencyLimit,
				TokenLimit:  c.TokenLimit,
				Window:      time.Duration(c.TokenWindow) * time.Second,
				Strategy:    settings.Strategy,
			},
		}
		if err := gc.Validate(); err != nil {
			caddy.Log().Named("thon.gateway").Error("consumer left out of the gateway", zap.String("consumer", c.Username), zap.Error(err))
			continue
		}
		list = append(list, gc)
	}
	return gs.keyring.Set(list)
}

// redisLimiter returns the Redis limiter of cfg, made on first use and
// kept until the shared state goes: in-flight requests of an older config
// settle on the limiter they acquired from.
func (gs *gatewayState) redisLimiter(cfg gateway.RedisConfig) (*gateway.RedisLimiter, error) {
	sum := sha256.Sum256([]byte(cfg.Username + "\x00" + cfg.Password))
	key := strings.Join([]string{cfg.Addr, hex.EncodeToString(sum[:8]), strconv.Itoa(cfg.DB), cfg.Prefix, strconv.FormatBool(cfg.FailOpen)}, "\x00")
	gs.redisMu.Lock()
	defer gs.redisMu.Unlock()
	if rl, ok := gs.redis[key]; ok {
		return rl, nil
	}
	cfg.OnError = redisErrorLogger(cfg.Addr, cfg.FailOpen)
	rl, err := gateway.NewRedisLimiter(cfg)
	if err != nil {
		return nil, err
	}
	if gs.redis == nil {
		gs.redis = make(map[string]*gateway.RedisLimiter)
	}
	gs.redis[key] = rl
	return rl, nil
}

// redisErrorLogger logs Redis failures clearly, saying what happens to
// requests meanwhile, at most once every ten seconds with the count of
// failures since the last line.
func redisErrorLogger(addr string, failOpen bool) func(error) {
	var mu sync.Mutex
	var last time.Time
	var missed int
	what := "failing closed: requests are refused with 503 until Redis answers"
	if failOpen {
		what = "failing open: requests are let through unchecked until Redis answers"
	}
	return func(err error) {
		mu.Lock()
		defer mu.Unlock()
		if time.Since(last) < 10*time.Second {
			missed++
			return
		}
		caddy.Log().Named("thon.gateway").Error("redis limiter unreachable; "+what,
			zap.String("redis", addr), zap.Int("failures_not_logged", missed), zap.Error(err))
		last, missed = time.Now(), 0
	}
}

// record queues a usage record for the next batch.
func (gs *gatewayState) record(r store.UsageRecord) {
	gs.usageMu.Lock()
	if len(gs.usage) >= usageMaxPending {
		gs.usage = gs.usage[1:]
		gs.dropped++
	}
	gs.usage = append(gs.usage, r)
	kick := len(gs.usage) >= usageFlushBatch
	gs.usageMu.Unlock()
	if kick && gs.usageKick != nil {
		select {
		case gs.usageKick <- struct{}{}:
		default:
		}
	}
}

// flushUsage writes the pending usage in one transaction; on failure the
// records are kept for the next try.
func (gs *gatewayState) flushUsage(ctx context.Context) {
	gs.usageMu.Lock()
	batch, dropped := gs.usage, gs.dropped
	gs.usage, gs.dropped = nil, 0
	gs.usageMu.Unlock()
	log := caddy.Log().Named("thon.gateway")
	if dropped > 0 {
		log.Error("usage records dropped: the database did not take them in time", zap.Int("dropped", dropped))
	}
	if len(batch) == 0 || gs.st == nil {
		return
	}
	if err := gs.st.RecordUsage(ctx, batch); err != nil {
		log.Error("writing usage", zap.Int("records", len(batch)), zap.Error(err))
		gs.usageMu.Lock()
		gs.usage = append(batch, gs.usage...)
		gs.usageMu.Unlock()
	}
}
