package gateway

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestRedisConcurrencyTwoInstances(t *testing.T) {
	_, prefix := redisForTest(t)
	a := newTestRedisLimiter(t, prefix, nil)
	b := newTestRedisLimiter(t, prefix, nil)
	checkConcurrencyHeld(t, a, b)
}

func TestRedisTokenBudgetTwoInstances(t *testing.T) {
	_, prefix := redisForTest(t)
	a := newTestRedisLimiter(t, prefix, nil)
	b := newTestRedisLimiter(t, prefix, nil)
	checkTokenBudget(t, a, b)
}

func TestRedisConsumersApart(t *testing.T) {
	_, prefix := redisForTest(t)
	checkConsumersApart(t, newTestRedisLimiter(t, prefix, nil))
}

func TestRedisOversizedEstimate(t *testing.T) {
	_, prefix := redisForTest(t)
	checkOversizedEstimate(t, newTestRedisLimiter(t, prefix, nil))
}

func TestRedisBadInput(t *testing.T) {
	_, prefix := redisForTest(t)
	l := newTestRedisLimiter(t, prefix, nil)
	checkBadInput(t, l)
	if _, _, err := l.Acquire(context.Background(), "a}b", Limits{}, 0); err == nil || !strings.Contains(err.Error(), "consumer") {
		t.Errorf("consumer name with a brace: err = %v, want an error naming consumer", err)
	}
}

func TestNewRedisLimiterErrors(t *testing.T) {
	for i, tc := range []struct {
		cfg  RedisConfig
		want string
	}{
		{RedisConfig{}, "addr: required"},
		{RedisConfig{Addr: "localhost"}, "addr:"},
		{RedisConfig{Addr: testRedisAddr, DB: -1}, "db:"},
		{RedisConfig{Addr: testRedisAddr, SlotTTL: time.Millisecond}, "slot_ttl:"},
		{RedisConfig{Addr: testRedisAddr, Timeout: -time.Second}, "timeout:"},
	} {
		l, err := NewRedisLimiter(tc.cfg)
		if err == nil {
			l.Close()
			t.Errorf("case %d: no error, want %q", i, tc.want)
			continue
		}
		if !strings.HasPrefix(err.Error(), tc.want) {
			t.Errorf("case %d: error %q, want it to start with %q", i, err, tc.want)
		}
	}
}

// TestRedisWindowSlides uses a 2 s window on Redis server time: a refused
// request fits once its Reset has passed, and the window empties.
func TestRedisWindowSlides(t *testing.T) {
	_, prefix := redisForTest(t)
	l := newTestRedisLimiter(t, prefix, nil)
	ctx := context.Background()
	lim := Limits{TokenLimit: 100, Window: 2 * time.Second}
	r, d, err := l.Acquire(ctx, "zeta", lim, 100)
	if err != nil || !d.Allowed || d.Remaining != 0 {
		t.Fatalf("Acquire(100) = %+v, %v", d, err)
	}
	if d.Reset < 2*time.Second || d.Reset > 2*time.Second+2*34*time.Millisecond {
		t.Errorf("admitted: reset = %v, want about a window", d.Reset)
	}
	if err := r.Settle(ctx, 90); err != nil {
		t.Fatal(err)
	}
	_, d, err = l.Acquire(ctx, "zeta", lim, 50)
	if err != nil || d.Allowed || d.Reason != ReasonTokens || d.Remaining != 10 {
		t.Fatalf("Acquire(50) over the window = %+v, %v; want a refusal with 10 remaining", d, err)
	}
	if d.Reset <= 0 || d.Reset > 2*time.Second+2*34*time.Millisecond {
		t.Fatalf("refused: reset = %v, want within a window and two buckets", d.Reset)
	}
	time.Sleep(d.Reset)
	deadline := time.Now().Add(10 * time.Second)
	for {
		r, d2, err := l.Acquire(ctx, "zeta", lim, 50)
		if err != nil {
			t.Fatal(err)
		}
		if d2.Allowed {
			r.Settle(ctx, 0)
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("still refused 10s after the reset (%v) it was given: %+v", d.Reset, d2)
		}
		t.Logf("refused %v after the reset: %+v", time.Since(deadline.Add(-10*time.Second)), d2)
		time.Sleep(50 * time.Millisecond)
	}
}

// TestRedisSlotsExpire checks that the slots of a limiter that stops (a
// process that died without settling) expire, while a live limiter keeps
// its slots past their TTL.
func TestRedisSlotsExpire(t *testing.T) {
	raw, prefix := redisForTest(t)
	ctx := context.Background()
	lim := Limits{Concurrency: 1}
	ttl := func(c *RedisConfig) { c.SlotTTL = 2 * time.Second }
	alive := newTestRedisLimiter(t, prefix, ttl)
	other := newTestRedisLimiter(t, prefix, ttl)
	dying, err := NewRedisLimiter(RedisConfig{Addr: testRedisAddr, Prefix: prefix, SlotTTL: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}

	held, d, err := alive.Acquire(ctx, "kept", lim, 0)
	if err != nil || !d.Allowed {
		t.Fatal(d, err)
	}
	if _, d, err := dying.Acquire(ctx, "lost", lim, 0); err != nil || !d.Allowed {
		t.Fatal(d, err)
	}
	dying.Close() // no Settle: the slot is left behind

	deadline := time.Now().Add(15 * time.Second)
	for {
		r, d, err := other.Acquire(ctx, "lost", lim, 0)
		if err != nil {
			t.Fatal(err)
		}
		if d.Allowed {
			r.Settle(ctx, 0)
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the slot of a stopped limiter never expired")
		}
		time.Sleep(100 * time.Millisecond)
	}
	// By now more than a TTL has passed: the live limiter's slot must
	// have been extended.
	if _, d, _ := other.Acquire(ctx, "kept", lim, 0); d.Allowed {
		t.Fatal("the slot of a live limiter expired while its request was in flight")
	}
	if err := held.Settle(ctx, 0); err != nil {
		t.Fatal(err)
	}
	if n, err := raw.Exists(ctx, prefix+"{kept}:slots").Result(); err != nil || n != 0 {
		t.Fatalf("slot set still exists after the last settle: %d, %v", n, err)
	}
}

// TestRedisKeysExpire checks that every key the limiter writes has a TTL.
func TestRedisKeysExpire(t *testing.T) {
	raw, prefix := redisForTest(t)
	l := newTestRedisLimiter(t, prefix, nil)
	ctx := context.Background()
	lim := Limits{Concurrency: 3, TokenLimit: 1000, Window: time.Minute}
	r1, _, _ := l.Acquire(ctx, "kappa", lim, 100)
	r2, _, _ := l.Acquire(ctx, "kappa", lim, 100)
	r1.Settle(ctx, 120)
	keys, err := raw.Keys(ctx, prefix+"*").Result()
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) != 2 {
		t.Fatalf("keys under the prefix: %v, want a slot set and a token hash", keys)
	}
	for _, k := range keys {
		ttl, err := raw.PTTL(ctx, k).Result()
		if err != nil || ttl <= 0 {
			t.Errorf("key %s: ttl %v, %v; want a positive TTL", k, ttl, err)
		}
	}
	r2.Settle(ctx, 0)
}

// TestRedisSettleAfterCancel checks that a client that went away (its
// context cancelled) still frees its slot and is charged.
func TestRedisSettleAfterCancel(t *testing.T) {
	_, prefix := redisForTest(t)
	l := newTestRedisLimiter(t, prefix, nil)
	lim := Limits{Concurrency: 1, TokenLimit: 100, Window: time.Minute}
	ctx, cancel := context.WithCancel(context.Background())
	r, d, err := l.Acquire(ctx, "lambda", lim, 50)
	if err != nil || !d.Allowed {
		t.Fatal(d, err)
	}
	cancel()
	if err := r.Settle(ctx, 70); err != nil {
		t.Fatalf("Settle with a cancelled context: %v", err)
	}
	_, d, err = l.Acquire(context.Background(), "lambda", lim, 30)
	if err != nil || !d.Allowed || d.Remaining != 0 {
		t.Fatalf("after settling to 70: %+v, %v; want 30 admitted with 0 left", d, err)
	}
}

// TestRedisUnreachable checks fail-open and fail-closed against a closed
// port.
func TestRedisUnreachable(t *testing.T) {
	ctx := context.Background()
	lim := Limits{Concurrency: 1, TokenLimit: 100, Window: time.Minute}
	for _, failOpen := range []bool{true, false} {
		var mu sync.Mutex
		var reported []error
		l, err := NewRedisLimiter(RedisConfig{
			Addr:     "127.0.0.1:1",
			FailOpen: failOpen,
			Timeout:  500 * time.Millisecond,
			OnError: func(err error) {
				mu.Lock()
				reported = append(reported, err)
				mu.Unlock()
			},
		})
		if err != nil {
			t.Fatal(err)
		}
		r, d, err := l.Acquire(ctx, "mu", lim, 10)
		if failOpen {
			if err != nil || !d.Allowed || r == nil {
				t.Errorf("fail open: %+v, %v; want admitted", d, err)
			}
			if err := r.Settle(ctx, 10); err != nil {
				t.Errorf("fail open: Settle: %v", err)
			}
		} else {
			if err == nil || !errors.Is(err, ErrUnavailable) || d.Allowed || d.Reason != ReasonUnavailable || r != nil {
				t.Errorf("fail closed: %+v, %v; want refused with ErrUnavailable", d, err)
			}
		}
		mu.Lock()
		if len(reported) != 1 || !strings.Contains(reported[0].Error(), "127.0.0.1:1") {
			t.Errorf("failOpen=%v: OnError got %v, want one error naming the address", failOpen, reported)
		}
		mu.Unlock()
		if err := l.Ping(ctx); err == nil {
			t.Errorf("Ping of a closed port succeeded")
		}

		// A caller that gave up is not the limiter's failure.
		cctx, cancel := context.WithCancel(ctx)
		cancel()
		if _, _, err := l.Acquire(cctx, "mu", lim, 10); !errors.Is(err, context.Canceled) {
			t.Errorf("cancelled context: err = %v, want context.Canceled", err)
		}
		mu.Lock()
		if len(reported) != 1 {
			t.Errorf("cancelled context was reported to OnError: %v", reported)
		}
		mu.Unlock()
		l.Close()
	}
}

func TestRedisRoundTrips(t *testing.T) {
	_, prefix := redisForTest(t)
	l := newTestRedisLimiter(t, prefix, nil)
	ctx := context.Background()
	lim := Limits{Concurrency: 2, TokenLimit: 1 << 40, Window: time.Minute}
	// Warm the connection and the script cache.
	r, _, err := l.Acquire(ctx, "nu", lim, 10)
	if err != nil {
		t.Fatal(err)
	}
	r.Settle(ctx, 10)
	before := l.RoundTrips()
	for range 10 {
		r, d, err := l.Acquire(ctx, "nu", lim, 10)
		if err != nil || !d.Allowed {
			t.Fatal(d, err)
		}
		r.Settle(ctx, 10)
	}
	if got := l.RoundTrips() - before; got != 20 {
		t.Fatalf("10 admissions and settlements took %d round trips, want 20", got)
	}
	before = l.RoundTrips()
	r, d, err := l.Acquire(ctx, "nu", Limits{}, 10)
	if err != nil || !d.Allowed {
		t.Fatal(d, err)
	}
	r.Settle(ctx, 10)
	if got := l.RoundTrips() - before; got != 0 {
		t.Fatalf("a consumer without limits took %d round trips, want 0", got)
	}
}

// BenchmarkRedisAcquireSettle measures an admission and its settlement on
// the Redis limiter, reporting round trips per request.
func BenchmarkRedisAcquireSettle(b *testing.B) {
	_, prefix := redisForTest(b)
	l := newTestRedisLimiter(b, prefix, nil)
	ctx := context.Background()
	lim := Limits{Concurrency: 64, TokenLimit: 1 << 40, Window: time.Minute}
	var r Reservation
	before := l.RoundTrips()
	b.ReportAllocs()
	for b.Loop() {
		if d, err := l.AcquireInto(ctx, &r, "alpha-alice", lim, 700); err != nil || !d.Allowed {
			b.Fatal(d, err)
		}
		if err := r.Settle(ctx, 650); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(l.RoundTrips()-before)/float64(b.N), "roundtrips/op")
}
