package gateway

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// checkConcurrencyHeld runs 200 clients of one consumer, spread over
// limiters, each retrying until admitted once; never more than the limit
// may be in flight at once.
func checkConcurrencyHeld(t *testing.T, limiters ...Limiter) {
	t.Helper()
	const clients, limit = 200, 5
	lim := Limits{Concurrency: limit}
	ctx := context.Background()
	var inflight, peak, admitted, refused atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, clients)
	for i := range clients {
		l := limiters[i%len(limiters)]
		wg.Go(func() {
			for {
				r, d, err := l.Acquire(ctx, "alpha-alice", lim, 0)
				if err != nil {
					errs <- err
					return
				}
				if !d.Allowed {
					if d.Reason != ReasonConcurrency || d.Limit != limit {
						t.Errorf("refusal %+v, want reason %q and limit %d", d, ReasonConcurrency, limit)
						return
					}
					refused.Add(1)
					time.Sleep(time.Millisecond)
					continue
				}
				n := inflight.Add(1)
				for p := peak.Load(); n > p && !peak.CompareAndSwap(p, n); p = peak.Load() {
				}
				time.Sleep(time.Millisecond)
				inflight.Add(-1)
				admitted.Add(1)
				if err := r.Settle(ctx, 0); err != nil {
					errs <- err
				}
				return
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("limiter error: %v", err)
	}
	if p := peak.Load(); p > limit || p < 1 {
		t.Errorf("peak in flight = %d, want between 1 and %d", p, limit)
	}
	if a := admitted.Load(); a != clients {
		t.Errorf("admitted %d clients, want %d", a, clients)
	}
	if refused.Load() == 0 {
		t.Errorf("no request was refused although %d clients competed for %d slots", clients, limit)
	}
	t.Logf("peak in flight %d of %d, %d refusals", peak.Load(), limit, refused.Load())
}

// checkTokenBudget has 50 clients, spread over limiters, each reserve 37
// tokens of a 1000-token window: exactly 27 fit. Settling one down to 0
// frees room for one more; settling the rest to their real usage frees
// the difference.
func checkTokenBudget(t *testing.T, limiters ...Limiter) {
	t.Helper()
	const clients, est, limit = 50, 37, 1000
	lim := Limits{TokenLimit: limit, Window: time.Minute}
	ctx := context.Background()
	var mu sync.Mutex
	var held []*Reservation
	var wg sync.WaitGroup
	for i := range clients {
		l := limiters[i%len(limiters)]
		wg.Go(func() {
			r, d, err := l.Acquire(ctx, "beta-bob", lim, est)
			if err != nil {
				t.Errorf("Acquire: %v", err)
				return
			}
			if !d.Allowed {
				if d.Reason != ReasonTokens || d.Limit != limit || d.Remaining >= est || d.Reset <= 0 {
					t.Errorf("refusal %+v: want reason tokens, limit %d, remaining < %d, a reset", d, limit, est)
				}
				return
			}
			mu.Lock()
			held = append(held, r)
			mu.Unlock()
		})
	}
	wg.Wait()
	if got, want := len(held)*est, (limit/est)*est; got != want {
		t.Fatalf("admitted estimates sum to %d, want %d (limit %d)", got, want, limit)
	}

	_, d, err := limiters[0].Acquire(ctx, "beta-bob", lim, est)
	if err != nil || d.Allowed {
		t.Fatalf("window full: Acquire = %+v, %v; want a refusal", d, err)
	}
	if err := held[0].Settle(ctx, 0); err != nil {
		t.Fatal(err)
	}
	if err := held[0].Settle(ctx, 500); err != nil { // idempotent: no effect
		t.Fatal(err)
	}
	r, d, err := limiters[len(limiters)-1].Acquire(ctx, "beta-bob", lim, est)
	if err != nil || !d.Allowed {
		t.Fatalf("after settling one to 0: Acquire = %+v, %v; want admitted", d, err)
	}
	if d.Remaining != limit-int64(len(held))*est {
		t.Errorf("remaining = %d, want %d", d.Remaining, limit-int64(len(held))*est)
	}
	held[0] = r
	for _, r := range held {
		if err := r.Settle(ctx, 10); err != nil {
			t.Fatal(err)
		}
	}
	// 27 requests used 10 tokens each: 730 tokens are left.
	_, d, err = limiters[0].Acquire(ctx, "beta-bob", lim, 730)
	if err != nil || !d.Allowed || d.Remaining != 0 {
		t.Fatalf("after settling down: Acquire(730) = %+v, %v; want admitted with 0 remaining", d, err)
	}
	_, d, err = limiters[0].Acquire(ctx, "beta-bob", lim, 1)
	if err != nil || d.Allowed {
		t.Fatalf("budget used up: Acquire(1) = %+v, %v; want a refusal", d, err)
	}
}

// checkConsumersApart checks that limits of one consumer do not touch
// another's, and that a limit that is off admits everything.
func checkConsumersApart(t *testing.T, l Limiter) {
	t.Helper()
	ctx := context.Background()
	one := Limits{Concurrency: 1}
	r1, d, err := l.Acquire(ctx, "gamma-carol", one, 0)
	if err != nil || !d.Allowed {
		t.Fatalf("first: %+v, %v", d, err)
	}
	if _, d, _ := l.Acquire(ctx, "gamma-carol", one, 0); d.Allowed {
		t.Fatal("second request of gamma-carol admitted over a concurrency of 1")
	}
	r2, d, err := l.Acquire(ctx, "gamma-dave", one, 0)
	if err != nil || !d.Allowed {
		t.Fatalf("another consumer: %+v, %v", d, err)
	}
	var off []*Reservation
	for range 20 {
		r, d, err := l.Acquire(ctx, "gamma-erin", Limits{}, 1e9)
		if err != nil || !d.Allowed {
			t.Fatalf("no limits: %+v, %v", d, err)
		}
		off = append(off, r)
	}
	for _, r := range append(off, r1, r2) {
		if err := r.Settle(ctx, 5); err != nil {
			t.Fatal(err)
		}
	}
	if _, d, _ := l.Acquire(ctx, "gamma-carol", one, 0); !d.Allowed {
		t.Fatal("slot not freed by Settle")
	}
}

// checkOversizedEstimate checks that an estimate above the limit runs once
// the window is empty, reserving the whole limit.
func checkOversizedEstimate(t *testing.T, l Limiter) {
	t.Helper()
	ctx := context.Background()
	lim := Limits{TokenLimit: 100, Window: time.Minute}
	r, d, err := l.Acquire(ctx, "delta-dan", lim, 5000)
	if err != nil || !d.Allowed || d.Remaining != 0 || r.Estimate() != 100 {
		t.Fatalf("oversized estimate in an empty window: %+v (reserved %d), %v; want admitted with the whole limit", d, r.Estimate(), err)
	}
	if _, d, _ := l.Acquire(ctx, "delta-dan", lim, 1); d.Allowed {
		t.Fatal("admitted past a window filled by an oversized estimate")
	}
	if err := r.Settle(ctx, 30); err != nil {
		t.Fatal(err)
	}
	if _, d, _ := l.Acquire(ctx, "delta-dan", lim, 70); !d.Allowed || d.Remaining != 0 {
		t.Fatalf("after settling to 30: %+v; want 70 admitted", d)
	}
}

// checkBadInput checks that invalid limits and live reservations are
// rejected.
func checkBadInput(t *testing.T, l Limiter) {
	t.Helper()
	ctx := context.Background()
	for i, lim := range []Limits{
		{Concurrency: -1},
		{TokenLimit: 10},
		{TokenLimit: 10, Window: time.Minute, Strategy: "words"},
	} {
		if _, _, err := l.Acquire(ctx, "epsilon-eve", lim, 1); err == nil {
			t.Errorf("case %d: Acquire(%+v) accepted invalid limits", i, lim)
		}
	}
	var r Reservation
	if d, err := l.AcquireInto(ctx, &r, "epsilon-eve", Limits{Concurrency: 2}, 0); err != nil || !d.Allowed {
		t.Fatalf("AcquireInto: %+v, %v", d, err)
	}
	if _, err := l.AcquireInto(ctx, &r, "epsilon-eve", Limits{Concurrency: 2}, 0); err != ErrReservationLive {
		t.Errorf("AcquireInto with a live reservation: err = %v, want ErrReservationLive", err)
	}
	if err := r.Settle(ctx, 0); err != nil {
		t.Fatal(err)
	}
	if d, err := l.AcquireInto(ctx, &r, "epsilon-eve", Limits{Concurrency: 1}, 0); err != nil || !d.Allowed {
		t.Fatalf("reusing a settled reservation: %+v, %v", d, err)
	}
	if err := r.Settle(ctx, 0); err != nil {
		t.Fatal(err)
	}
	var nilRes *Reservation
	if err := nilRes.Settle(ctx, 3); err != nil {
		t.Errorf("Settle on nil: %v", err)
	}
}
