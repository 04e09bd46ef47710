package gateway

import (
	"context"
	"crypto/rand"
	_ "embed"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"
)

// Defaults of RedisConfig.
const (
	DefaultRedisPrefix  = "thon:gw:"
	DefaultSlotTTL      = time.Minute
	DefaultRedisTimeout = time.Second
)

// ErrUnavailable wraps the error of a limiter that could not reach its
// shared state and fails closed.
var ErrUnavailable = errors.New("rate limiter unavailable")

var (
	//go:embed redis_acquire.lua
	acquireSource string
	//go:embed redis_settle.lua
	settleSource string
	//go:embed redis_refresh.lua
	refreshSource string

	acquireScript = redis.NewScript(acquireSource)
	settleScript  = redis.NewScript(settleSource)
	refreshScript = redis.NewScript(refreshSource)
)

// RedisConfig configures a RedisLimiter.
type RedisConfig struct {
	// Addr is the host:port of the Redis server.
	Addr string
	// Username and Password authenticate to Redis, if set.
	Username, Password string
	// DB is the Redis database number.
	DB int
	// Prefix starts every key; DefaultRedisPrefix when empty. A consumer's
	// keys are <Prefix>{<consumer>}:..., so that they share a cluster slot.
	Prefix string
	// SlotTTL is how long a concurrency slot outlives the last sign of life
	// of its process (at least 1s; DefaultSlotTTL when 0). A live process
	// extends its slots every SlotTTL/3, so a slot leaks for at most SlotTTL
	// after a process dies.
	SlotTTL time.Duration
	// Timeout bounds connecting to Redis and each command;
	// DefaultRedisTimeout when 0.
	Timeout time.Duration
	// FailOpen admits requests while Redis cannot be reached; the default
	// (fail closed) refuses them with ReasonUnavailable.
	FailOpen bool
	// OnError, if set, is told every Redis failure (for logging); it must
	// be safe for concurrent use.
	OnError func(error)
}

// Validate reports the first invalid field of c, as NewRedisLimiter
// would; it makes nothing and connects to nothing.
func (c RedisConfig) Validate() error {
	if c.Addr == "" {
		return errors.New("addr: required")
	}
	if _, _, err := net.SplitHostPort(c.Addr); err != nil {
		return fmt.Errorf("addr: %w", err)
	}
	if c.DB < 0 {
		return fmt.Errorf("db: must not be negative, got %d", c.DB)
	}
	if c.SlotTTL != 0 && c.SlotTTL < time.Second {
		return fmt.Errorf("slot_ttl: must be at least 1s, got %v", c.SlotTTL)
	}
	if c.Timeout < 0 {
		return fmt.Errorf("timeout: must not be negative, got %v", c.Timeout)
	}
	return nil
}

// RedisLimiter is a Limiter whose state lives in Redis, shared by every
// thon instance using the same server and prefix. Each decision is one
// round trip: one Lua script checks and reserves concurrency and tokens
// atomically. Settling is one more. Concurrency slots are ZSET members
// scored by their expiry, extended while their process lives, so that a
// process that dies leaks no slot for longer than SlotTTL; every key has a
// TTL.
type RedisLimiter struct {
	cfg        RedisConfig
	client     *redis.Client
	roundTrips atomic.Uint64
	instance   string
	seq        atomic.Uint64

	mu   sync.Mutex
	live map[*Reservation]liveSlot

	stop      chan struct{}
	done      chan struct{}
	closeOnce sync.Once
}

// liveSlot is a concurrency slot the heartbeat keeps alive.
type liveSlot struct {
	key, slot string
}

// NewRedisLimiter returns a RedisLimiter for cfg. It does not connect: the
// first request does (see Ping to check the server early). Close it when
// done.
func NewRedisLimiter(cfg RedisConfig) (*RedisLimiter, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Prefix == "" {
		cfg.Prefix = DefaultRedisPrefix
	}
	if cfg.SlotTTL == 0 {
		cfg.SlotTTL = DefaultSlotTTL
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = DefaultRedisTimeout
	}
	var id [8]byte
	if _, err := rand.Read(id[:]); err != nil {
		return nil, fmt.Errorf("reading random bytes for an instance id: %w", err)
	}
	l := &RedisLimiter{
		cfg:      cfg,
		instance: hex.EncodeToString(id[:]),
		live:     make(map[*Reservation]liveSlot),
		stop:     make(chan struct{}),
		done:     make(chan struct{}),
	}
	l.client = redis.NewClient(&redis.Options{
		Addr:                  cfg.Addr,
		Username:              cfg.Username,
		Password:              cfg.Password,
		DB:                    cfg.DB,
		DialTimeout:           cfg.Timeout,
		DialerRetries:         1, // an unreachable Redis fails the decision at once
		ReadTimeout:           cfg.Timeout,
		WriteTimeout:          cfg.Timeout,
		ContextTimeoutEnabled: true,
		// A retried script could reserve twice; a failed decision
		// follows FailOpen instead.
		MaxRetries:               -1,
		DisableIdentity:          true,
		MaintNotificationsConfig: &maintnotifications.Config{Mode: maintnotifications.ModeDisabled},
	})
	l.client.AddHook(roundTripCounter{&l.roundTrips})
	go l.heartbeat()
	return l, nil
}

// Close stops extending this limiter's slots and closes its connections.
// Reservations not settled by then expire after SlotTTL.
func (l *RedisLimiter) Close() error {
	var err error
	l.closeOnce.Do(func() {
		close(l.stop)
		<-l.done
		err = l.client.Close()
	})
	return err
}

// Ping checks that Redis answers.
func (l *RedisLimiter) Ping(ctx context.Context) error {
	if err := l.client.Ping(ctx).Err(); err != nil {
		return fmt.Errorf("redis limiter at %s: %w", l.cfg.Addr, err)
	}
	return nil
}

// RoundTrips returns the number of commands and pipelines sent to Redis.
func (l *RedisLimiter) RoundTrips() uint64 { return l.roundTrips.Load() }

// keys returns the slot ZSET and token HASH keys of consumer for buckets
// of width milliseconds.
func (l *RedisLimiter) keys(consumer string, width int64) (slotKey, tokKey string) {
	base := l.cfg.Prefix + "{" + consumer + "}:"
	return base + "slots", base + "tokens:" + strconv.FormatInt(width, 10)
}

// Acquire implements Limiter.
func (l *RedisLimiter) Acquire(ctx context.Context, consumer string, lim Limits, estimate int64) (*Reservation, Decision, error) {
	r := new(Reservation)
	d, err := l.AcquireInto(ctx, r, consumer, lim, estimate)
	if err != nil || !d.Allowed {
		return nil, d, err
	}
	return r, d, nil
}

// AcquireInto implements Limiter.
func (l *RedisLimiter) AcquireInto(ctx context.Context, r *Reservation, consumer string, lim Limits, estimate int64) (Decision, error) {
	if r.live.Load() {
		return Decision{}, ErrReservationLive
	}
	if err := validateConsumerName(consumer); err != nil {
		return Decision{}, fmt.Errorf("consumer: %w", err)
	}
	if err := lim.Validate(); err != nil {
		return Decision{}, err
	}
	if lim.Concurrency == 0 && lim.TokenLimit == 0 {
		l.admitUnchecked(r) // nothing to check: no round trip
		return Decision{Allowed: true}, nil
	}
	est := clampEstimate(lim, estimate)
	var width, nb int64
	if lim.TokenLimit > 0 {
		width, nb = bucketGeometry(lim.Window.Milliseconds())
	}
	slotKey, tokKey := l.keys(consumer, width)
	var slot string
	if lim.Concurrency > 0 {
		slot = l.instance + ":" + strconv.FormatUint(l.seq.Add(1), 36)
	}
	res, err := acquireScript.Run(ctx, l.client, []string{slotKey, tokKey},
		slot, lim.Concurrency, l.cfg.SlotTTL.Milliseconds(), lim.TokenLimit, width, nb, est).Slice()
	if err != nil {
		return l.unavailable(ctx, r, err)
	}
	d, unit, err := parseAcquireReply(res)
	if err != nil {
		return l.unavailable(ctx, r, err)
	}
	if !d.Allowed {
		return d, nil
	}
	r.settler = l
	r.estimate = est
	r.unit = unit
	r.tokens = lim.TokenLimit > 0
	r.state = nil
	r.slotKey, r.tokKey, r.slot = slotKey, tokKey, slot
	r.bucketMS, r.nb = width, nb
	r.unchecked = false
	if slot != "" {
		l.mu.Lock()
		l.live[r] = liveSlot{key: slotKey, slot: slot}
		l.mu.Unlock()
	}
	r.live.Store(true)
	return d, nil
}

// parseAcquireReply reads the acquire script's reply.
func parseAcquireReply(res []any) (d Decision, unit int64, err error) {
	if len(res) != 6 {
		return d, 0, fmt.Errorf("acquire script: %d values in reply, want 6", len(res))
	}
	var n [6]int64
	for i, v := range res {
		if i == 1 {
			s, ok := v.(string)
			if !ok {
				return d, 0, fmt.Errorf("acquire script: reply value %d is %T, want a string", i, v)
			}
			d.Reason = s
			continue
		}
		x, ok := v.(int64)
		if !ok {
			return d, 0, fmt.Errorf("acquire script: reply value %d is %T, want an integer", i, v)
		}
		n[i] = x
	}
	d.Allowed = n[0] == 1
	d.Limit, d.Remaining = n[2], n[3]
	d.Reset = time.Duration(max(n[4], 0)) * time.Millisecond
	return d, n[5], nil
}

// unavailable answers a decision Redis could not make.
func (l *RedisLimiter) unavailable(ctx context.Context, r *Reservation, err error) (Decision, error) {
	if ctx.Err() != nil {
		return Decision{}, ctx.Err() // the caller gave up: not Redis's fault
	}
	err = fmt.Errorf("redis limiter at %s: %w", l.cfg.Addr, err)
	l.report(err)
	if !l.cfg.FailOpen {
		return Decision{Reason: ReasonUnavailable}, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	l.admitUnchecked(r)
	return Decision{Allowed: true}, nil
}

// admitUnchecked makes r a reservation that Redis does not know of, whose
// Settle does nothing: for consumers without limits, and when failing open.
func (l *RedisLimiter) admitUnchecked(r *Reservation) {
	r.settler = l
	r.estimate, r.unit, r.tokens = 0, 0, false
	r.state = nil
	r.slotKey, r.tokKey, r.slot = "", "", ""
	r.unchecked = true
	r.live.Store(true)
}

func (l *RedisLimiter) report(err error) {
	if l.cfg.OnError != nil {
		l.cfg.OnError(err)
	}
}

// settle implements settler. It runs even when ctx is cancelled (a client
// that went away is charged and frees its slot), within Timeout.
func (l *RedisLimiter) settle(ctx context.Context, r *Reservation, actual int64) error {
	if r.unchecked {
		return nil
	}
	if r.slot != "" {
		l.mu.Lock()
		delete(l.live, r)
		l.mu.Unlock()
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), l.cfg.Timeout)
	defer cancel()
	width := int64(0)
	if r.tokens {
		width = r.bucketMS
	}
	err := settleScript.Run(ctx, l.client, []string{r.slotKey, r.tokKey},
		r.slot, r.unit, r.estimate, actual, width, r.nb).Err()
	if err != nil {
		err = fmt.Errorf("redis limiter at %s: settling: %w", l.cfg.Addr, err)
		l.report(err)
	}
	return err
}

// heartbeat extends the live slots of this limiter every SlotTTL/3.
func (l *RedisLimiter) heartbeat() {
	defer close(l.done)
	t := time.NewTicker(l.cfg.SlotTTL / 3)
	defer t.Stop()
	for {
		select {
		case <-l.stop:
			return
		case <-t.C:
			l.refresh()
		}
	}
}

// refresh extends the expiry of every live slot, in one pipeline.
func (l *RedisLimiter) refresh() {
	l.mu.Lock()
	byKey := make(map[string][]any, len(l.live))
	for _, s := range l.live {
		if byKey[s.key] == nil {
			byKey[s.key] = []any{l.cfg.SlotTTL.Milliseconds()}
		}
		byKey[s.key] = append(byKey[s.key], s.slot)
	}
	l.mu.Unlock()
	if len(byKey) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), l.cfg.Timeout)
	defer cancel()
	pipe := l.client.Pipeline()
	for key, args := range byKey {
		refreshScript.Eval(ctx, pipe, []string{key}, args...)
	}
	if _, err := pipe.Exec(ctx); err != nil {
		l.report(fmt.Errorf("redis limiter at %s: extending concurrency slots: %w", l.cfg.Addr, err))
	}
}

// roundTripCounter counts what a client sends to Redis: one per command,
// one per pipeline.
type roundTripCounter struct{ n *atomic.Uint64 }

func (h roundTripCounter) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h roundTripCounter) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		h.n.Add(1)
		return next(ctx, cmd)
	}
}

func (h roundTripCounter) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		h.n.Add(1)
		return next(ctx, cmds)
	}
}
