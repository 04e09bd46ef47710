package gateway

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/thon-dev/thon/store"
)

// Intervals of the runtime's background work.
const (
	usageFlushInterval = time.Second
	usageFlushBatch    = 512     // records that trigger a flush at once
	usageMaxPending    = 1 << 17 // records kept while the database fails
	syncEvery          = 15 * time.Second
	limiterSweepEvery  = 5 * time.Minute
)

// Values of on_redis_error: what the Redis limiter does with requests
// while Redis cannot be reached.
const (
	RedisFailOpen   = "open"
	RedisFailClosed = "closed"
)

// Runtime is the gateway's state of one database, shared by the configs
// that use it so that a config reload loses nothing: the keys the gateway
// accepts, the in-process limiter (every window and in-flight count), the
// Redis limiters made so far, the limiter in use, the usage waiting to be
// written, the lock serialising consumer changes, and the background loop
// (usage batching, consumers kept in line with the roster, limiter sweep).
// It is safe for concurrent use.
type Runtime struct {
	st      *store.Store
	keyring Keyring
	local   LocalLimiter
	active  atomic.Pointer[activeLimiter]
	logger  atomic.Pointer[slog.Logger]

	// consumersMu serialises the consumer changes of every Service of
	// this runtime (setup, sync, create, rotate, revoke, delete, cleanup).
	consumersMu sync.Mutex
	reloadMu    sync.Mutex
	svc         atomic.Pointer[Service] // the running config's, for the roster sync

	redisMu sync.Mutex
	redis   map[string]*RedisLimiter

	usageMu   sync.Mutex
	usage     []store.UsageRecord
	usageKick chan struct{}
	dropped   int

	startOnce sync.Once
	cancel    context.CancelFunc
	done      chan struct{}
}

// activeLimiter is the limiter requests reserve on, with what the status
// shows of it.
type activeLimiter struct {
	lim   Limiter
	redis *RedisLimiter // nil for the in-process limiter
	cfg   RedisConfig
}

// NewRuntime returns the runtime of the database st, with limits kept in
// process until Start picks another limiter. It starts nothing; logger nil
// means slog.Default().
func NewRuntime(st *store.Store, logger *slog.Logger) *Runtime {
	rt := &Runtime{st: st, usageKick: make(chan struct{}, 1)}
	if logger == nil {
		logger = slog.Default()
	}
	rt.logger.Store(logger)
	rt.active.Store(&activeLimiter{lim: &rt.local})
	return rt
}

func (rt *Runtime) log() *slog.Logger { return rt.logger.Load() }

// StartOptions are what a config gives the runtime when it starts.
type StartOptions struct {
	// Service keeps consumers in line with the roster in the background;
	// nil leaves the last one given.
	Service *Service
	// Redis, when set, keeps limits in Redis with this configuration (the
	// limiter of equal settings is made once and kept); nil keeps them in
	// this process.
	Redis *RedisConfig
	// Logger replaces the runtime's logger when set.
	Logger *slog.Logger
}

// Start makes the config's choices current: the limiter of o.Redis (made
// now if no earlier config made it) is swapped in for the requests that
// come next, while those in flight settle on the one they reserved on.
// The first Start also brings consumers in line with the roster, loads the
// keys and runs the background loop until Stop. An error changes nothing.
func (rt *Runtime) Start(o StartOptions) error {
	next := &activeLimiter{lim: &rt.local}
	if o.Redis != nil {
		rl, err := rt.redisLimiter(*o.Redis)
		if err != nil {
			return err
		}
		next = &activeLimiter{lim: rl, redis: rl, cfg: *o.Redis}
	}
	if o.Logger != nil {
		rt.logger.Store(o.Logger)
	}
	rt.active.Store(next)
	if o.Service != nil {
		rt.svc.Store(o.Service)
	}
	rt.startOnce.Do(func() {
		rt.syncConsumers(context.Background())
		if err := rt.Reload(context.Background()); err != nil {
			rt.log().Error("loading the gateway's keys", "error", err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		rt.cancel, rt.done = cancel, make(chan struct{})
		go rt.loop(ctx)
	})
	return nil
}

// Stop ends the background loop, writes the usage still pending and
// closes the Redis limiters. Requests must have ended.
func (rt *Runtime) Stop() {
	if rt.cancel != nil {
		rt.cancel()
		<-rt.done
	}
	rt.redisMu.Lock()
	defer rt.redisMu.Unlock()
	for k, rl := range rt.redis {
		_ = rl.Close()
		delete(rt.redis, k)
	}
}

// Limiter returns the limiter requests reserve on now.
func (rt *Runtime) Limiter() Limiter { return rt.active.Load().lim }

// Lookup returns the consumer of an API key the gateway accepts now.
func (rt *Runtime) Lookup(key string) (Consumer, bool) { return rt.keyring.Lookup(key) }

// InFlight returns a consumer's requests in flight and tokens in the
// window of the in-process limiter.
func (rt *Runtime) InFlight(consumer string) (requests, tokens int64) {
	return rt.local.InFlight(consumer)
}

// RuntimeStatus describes the running gateway.
type RuntimeStatus struct {
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

// Status describes the limiter in use and the keys accepted.
func (rt *Runtime) Status() RuntimeStatus {
	a := rt.active.Load()
	s := RuntimeStatus{Policy: "local", Keys: rt.keyring.Len()}
	if a.redis != nil {
		s.Policy, s.Redis, s.OnRedisError = "redis", a.cfg.Addr, RedisFailClosed
		if a.cfg.FailOpen {
			s.OnRedisError = RedisFailOpen
		}
		s.RedisRoundTrips = a.redis.RoundTrips()
	}
	return s
}

// loop writes usage in batches, keeps consumers in line with the roster
// (users imported later get theirs) and the keys current (a group's
// member count changes its limits), and sweeps idle consumers out of the
// in-process limiter.
func (rt *Runtime) loop(ctx context.Context) {
	defer close(rt.done)
	flush := time.NewTicker(usageFlushInterval)
	defer flush.Stop()
	resync := time.NewTicker(syncEvery)
	defer resync.Stop()
	sweep := time.NewTicker(limiterSweepEvery)
	defer sweep.Stop()
	for {
		select {
		case <-ctx.Done():
			rt.flushUsage(context.Background())
			return
		case <-flush.C:
			rt.flushUsage(ctx)
		case <-rt.usageKick:
			rt.flushUsage(ctx)
		case <-resync.C:
			rt.syncConsumers(ctx)
			if err := rt.Reload(ctx); err != nil {
				rt.log().Error("reloading the gateway's keys", "error", err)
			}
		case <-sweep.C:
			rt.local.Sweep()
		}
	}
}

// syncConsumers brings consumers in line with the roster through the
// running config's service, logging what it did.
func (rt *Runtime) syncConsumers(ctx context.Context) {
	svc := rt.svc.Load()
	if svc == nil {
		return
	}
	if created, deleted, err := svc.Sync(ctx); err != nil {
		rt.log().Error("bringing consumers in line with the roster", "error", err)
	} else if created+deleted > 0 {
		rt.log().Info("consumers brought in line with the roster", "created", created, "deleted", deleted)
	}
}

// Reload replaces the keys the gateway accepts with the consumers in the
// database that are not revoked, with their limits.
func (rt *Runtime) Reload(ctx context.Context) error {
	rt.reloadMu.Lock()
	defer rt.reloadMu.Unlock()
	if rt.st == nil {
		return errors.New("the gateway has no database")
	}
	settings, err := LoadSettings(ctx, rt.st)
	if err != nil {
		return err
	}
	rows, err := rt.st.ListConsumers(ctx)
	if err != nil {
		return err
	}
	list := make([]Consumer, 0, len(rows))
	for _, c := range rows {
		if c.RevokedAt != nil {
			continue
		}
		gc := Consumer{
			Name: c.Username, Mode: c.Mode, Group: c.Group, User: c.User,
			Members: max(c.Members, 1), KeyHash: c.KeyHash,
			Limits: Limits{
				Concurrency: c.ConcurrencyLimit,
				TokenLimit:  c.TokenLimit,
				Window:      time.Duration(c.TokenWindow) * time.Second,
				Strategy:    settings.Strategy,
			},
		}
		if err := gc.Validate(); err != nil {
			rt.log().Error("consumer left out of the gateway", "consumer", c.Username, "error", err)
			continue
		}
		list = append(list, gc)
	}
	return rt.keyring.Set(list)
}

// redisLimiter returns the Redis limiter of cfg, made on first use and
// kept until Stop: in-flight requests of an older config settle on the
// limiter they acquired from.
func (rt *Runtime) redisLimiter(cfg RedisConfig) (*RedisLimiter, error) {
	sum := sha256.Sum256([]byte(cfg.Username + "\x00" + cfg.Password))
	key := strings.Join([]string{cfg.Addr, hex.EncodeToString(sum[:8]), strconv.Itoa(cfg.DB), cfg.Prefix,
		strconv.FormatBool(cfg.FailOpen), cfg.SlotTTL.String(), cfg.Timeout.String()}, "\x00")
	rt.redisMu.Lock()
	defer rt.redisMu.Unlock()
	if rl, ok := rt.redis[key]; ok {
		return rl, nil
	}
	if cfg.OnError == nil {
		cfg.OnError = rt.redisErrorLogger(cfg.Addr, cfg.FailOpen)
	}
	rl, err := NewRedisLimiter(cfg)
	if err != nil {
		return nil, err
	}
	if rt.redis == nil {
		rt.redis = make(map[string]*RedisLimiter)
	}
	rt.redis[key] = rl
	return rl, nil
}

// redisErrorLogger logs Redis failures clearly, saying what happens to
// requests meanwhile, at most once every ten seconds with the count of
// failures since the last line.
func (rt *Runtime) redisErrorLogger(addr string, failOpen bool) func(error) {
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
		rt.log().Error("redis limiter unreachable; "+what, "redis", addr, "failures_not_logged", missed, "error", err)
		last, missed = time.Now(), 0
	}
}

// record queues a usage record for the next batch.
func (rt *Runtime) record(r store.UsageRecord) {
	rt.usageMu.Lock()
	if len(rt.usage) >= usageMaxPending {
		rt.usage = rt.usage[1:]
		rt.dropped++
	}
	rt.usage = append(rt.usage, r)
	kick := len(rt.usage) >= usageFlushBatch
	rt.usageMu.Unlock()
	if kick {
		select {
		case rt.usageKick <- struct{}{}:
		default:
		}
	}
}

// flushUsage writes the pending usage in one transaction; on failure the
// records are kept for the next try.
func (rt *Runtime) flushUsage(ctx context.Context) {
	rt.usageMu.Lock()
	batch, dropped := rt.usage, rt.dropped
	rt.usage, rt.dropped = nil, 0
	rt.usageMu.Unlock()
	if dropped > 0 {
		rt.log().Error("usage records dropped: the database did not take them in time", "dropped", dropped)
	}
	if len(batch) == 0 || rt.st == nil {
		return
	}
	if err := rt.st.RecordUsage(ctx, batch); err != nil {
		rt.log().Error("writing usage", "records", len(batch), "error", err)
		rt.usageMu.Lock()
		rt.usage = append(batch, rt.usage...)
		rt.usageMu.Unlock()
	}
}
