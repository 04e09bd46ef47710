package gateway

import (
	"context"
	"strconv"
	"testing"
	"time"
)

func TestLocalConcurrency(t *testing.T) {
	checkConcurrencyHeld(t, NewLocalLimiter(0))
}

func TestLocalTokenBudget(t *testing.T) {
	clk := newFakeClock()
	l := NewLocalLimiter(0)
	l.Now = clk.Now
	checkTokenBudget(t, l)
}

func TestLocalConsumersApart(t *testing.T) {
	checkConsumersApart(t, new(LocalLimiter)) // the zero value works
}

func TestLocalOversizedEstimate(t *testing.T) {
	checkOversizedEstimate(t, NewLocalLimiter(0))
}

func TestLocalBadInput(t *testing.T) {
	checkBadInput(t, NewLocalLimiter(0))
}

// TestLocalWindowSlides moves an injected clock through a window: usage
// leaves it a window after it was charged, and Reset says exactly when a
// refused request fits.
func TestLocalWindowSlides(t *testing.T) {
	ctx := context.Background()
	clk := newFakeClock()
	l := NewLocalLimiter(0)
	l.Now = clk.Now
	const window = time.Minute
	lim := Limits{TokenLimit: 100, Window: window}
	width := window / windowBuckets

	use := func(n int64) {
		t.Helper()
		r, d, err := l.Acquire(ctx, "zeta", lim, n)
		if err != nil || !d.Allowed {
			t.Fatalf("Acquire(%d) = %+v, %v; want admitted", n, d, err)
		}
		if err := r.Settle(ctx, n); err != nil {
			t.Fatal(err)
		}
	}
	use(60)
	clk.Advance(window / 2)
	use(40)

	_, d, err := l.Acquire(ctx, "zeta", lim, 50)
	if err != nil || d.Allowed || d.Reason != ReasonTokens || d.Remaining != 0 {
		t.Fatalf("full window: %+v, %v; want a token refusal with 0 remaining", d, err)
	}
	// The 60 tokens charged half a window ago must leave first.
	if d.Reset < window/2 || d.Reset > window/2+2*width {
		t.Fatalf("reset = %v, want between %v and %v", d.Reset, window/2, window/2+2*width)
	}
	clk.Advance(d.Reset - 1)
	if _, d2, _ := l.Acquire(ctx, "zeta", lim, 50); d2.Allowed {
		t.Fatalf("admitted 1ns before the reset it was given (%v)", d.Reset)
	}
	clk.Advance(1)
	r, d2, err := l.Acquire(ctx, "zeta", lim, 50)
	if err != nil || !d2.Allowed || d2.Remaining != 10 {
		t.Fatalf("at the reset: %+v, %v; want admitted with 10 remaining", d2, err)
	}
	if err := r.Settle(ctx, 50); err != nil {
		t.Fatal(err)
	}
	// A window and two buckets later everything has left.
	clk.Advance(window + 2*width)
	if got, tokens := l.InFlight("zeta"); got != 0 || tokens != 0 {
		t.Fatalf("InFlight = %d requests, %d tokens; want 0, 0", got, tokens)
	}
	_, d, _ = l.Acquire(ctx, "zeta", lim, 100)
	if !d.Allowed {
		t.Fatalf("empty window: %+v", d)
	}

	// A clock far in the future clears the ring in one step; one that
	// goes back charges the current bucket.
	clk.Advance(100 * window)
	use(100)
	clk.Advance(-window)
	if _, d, _ := l.Acquire(ctx, "zeta", lim, 1); d.Allowed {
		t.Fatal("clock went back: admitted over a full window")
	}
}

// TestLocalWindowChange checks that a new window keeps the usage counted
// so far, and that a reservation made before it settles sanely.
func TestLocalWindowChange(t *testing.T) {
	ctx := context.Background()
	clk := newFakeClock()
	l := NewLocalLimiter(0)
	l.Now = clk.Now
	minute := Limits{TokenLimit: 100, Window: time.Minute}
	hour := Limits{TokenLimit: 100, Window: time.Hour}
	r, d, err := l.Acquire(ctx, "eta", minute, 80)
	if err != nil || !d.Allowed {
		t.Fatal(d, err)
	}
	if _, d, _ := l.Acquire(ctx, "eta", hour, 30); d.Allowed {
		t.Fatal("a new window forgot the usage counted so far")
	}
	if err := r.Settle(ctx, 10); err != nil {
		t.Fatal(err)
	}
	if _, tokens := l.InFlight("eta"); tokens != 90 {
		t.Fatalf("tokens after settling across a window change = %d, want 90 (estimate kept, usage added)", tokens)
	}
	clk.Advance(time.Hour + 2*time.Minute)
	if _, d, _ := l.Acquire(ctx, "eta", hour, 100); !d.Allowed {
		t.Fatalf("an hour later: %+v", d)
	}
}

func TestLocalSettleIdempotent(t *testing.T) {
	ctx := context.Background()
	l := NewLocalLimiter(0)
	lim := Limits{Concurrency: 2}
	r, _, _ := l.Acquire(ctx, "theta", lim, 0)
	r2, _, _ := l.Acquire(ctx, "theta", lim, 0)
	for range 3 {
		if err := r.Settle(ctx, 0); err != nil {
			t.Fatal(err)
		}
	}
	if n, _ := l.InFlight("theta"); n != 1 {
		t.Fatalf("in flight after settling one of two three times = %d, want 1", n)
	}
	if r.Live() || !r2.Live() {
		t.Fatalf("Live() = %v, %v; want false, true", r.Live(), r2.Live())
	}
	r2.Settle(ctx, 0)
}

func TestLocalSweep(t *testing.T) {
	ctx := context.Background()
	clk := newFakeClock()
	l := NewLocalLimiter(10)
	l.Now = clk.Now
	lim := Limits{Concurrency: 1, TokenLimit: 100, Window: time.Minute}
	busy, _, _ := l.Acquire(ctx, "busy", lim, 10)
	used, _, _ := l.Acquire(ctx, "used", lim, 10)
	used.Settle(ctx, 10)
	idle, _, _ := l.Acquire(ctx, "idle", lim, 10)
	idle.Settle(ctx, 0)
	if n := l.Sweep(); n != 1 {
		t.Fatalf("Sweep forgot %d consumers, want 1 (idle)", n)
	}
	clk.Advance(2 * time.Minute)
	if n := l.Sweep(); n != 1 {
		t.Fatalf("Sweep a window later forgot %d consumers, want 1 (used)", n)
	}
	if _, d, _ := l.Acquire(ctx, "busy", lim, 0); d.Allowed {
		t.Fatal("busy consumer was forgotten while in flight")
	}
	busy.Settle(ctx, 0)
	if n := l.Sweep(); n != 1 {
		t.Fatalf("Sweep after settling forgot %d, want 1", n)
	}
	// A forgotten consumer starts afresh.
	if _, d, _ := l.Acquire(ctx, "busy", lim, 100); !d.Allowed {
		t.Fatalf("after sweep: %+v", d)
	}
}

// TestLocalSweepRace sweeps while requests come and go; run with -race.
func TestLocalSweepRace(t *testing.T) {
	ctx := context.Background()
	l := NewLocalLimiter(0)
	lim := Limits{Concurrency: 1}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for range 2000 {
			l.Sweep()
		}
	}()
	for i := 0; ; i++ {
		select {
		case <-done:
			return
		default:
		}
		name := "c" + strconv.Itoa(i%8)
		r, d, err := l.Acquire(ctx, name, lim, 0)
		if err != nil || !d.Allowed {
			t.Fatalf("Acquire(%s) = %+v, %v: a swept state leaked a slot", name, d, err)
		}
		r.Settle(ctx, 0)
	}
}

func TestLocalAcquireAllocs(t *testing.T) {
	ctx := context.Background()
	l := NewLocalLimiter(1)
	lim := Limits{Concurrency: 4, TokenLimit: 1 << 40, Window: time.Minute}
	var r Reservation
	allocs := testing.AllocsPerRun(1000, func() {
		if d, err := l.AcquireInto(ctx, &r, "iota", lim, 700); err != nil || !d.Allowed {
			t.Fatal(d, err)
		}
		r.Settle(ctx, 650)
	})
	if allocs != 0 {
		t.Fatalf("AcquireInto+Settle allocates %v times per request, want 0", allocs)
	}
}

// BenchmarkLocalAcquireSettle measures one admission and its settlement on
// the in-process limiter, with both limits on.
func BenchmarkLocalAcquireSettle(b *testing.B) {
	ctx := context.Background()
	lim := Limits{Concurrency: 64, TokenLimit: 1 << 40, Window: time.Minute}
	b.Run("reused", func(b *testing.B) {
		l := NewLocalLimiter(1)
		var r Reservation
		b.ReportAllocs()
		for b.Loop() {
			if d, err := l.AcquireInto(ctx, &r, "alpha-alice", lim, 700); err != nil || !d.Allowed {
				b.Fatal(d, err)
			}
			r.Settle(ctx, 650)
		}
	})
	b.Run("new", func(b *testing.B) {
		l := NewLocalLimiter(1)
		b.ReportAllocs()
		for b.Loop() {
			r, d, err := l.Acquire(ctx, "alpha-alice", lim, 700)
			if err != nil || !d.Allowed {
				b.Fatal(d, err)
			}
			r.Settle(ctx, 650)
		}
	})
	b.Run("parallel-1000-consumers", func(b *testing.B) {
		l := NewLocalLimiter(1000)
		names := make([]string, 1000)
		for i := range names {
			names[i] = "group-" + strconv.Itoa(i)
		}
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			var r Reservation
			i := 0
			for pb.Next() {
				i++
				if d, err := l.AcquireInto(ctx, &r, names[i%len(names)], lim, 700); err != nil || !d.Allowed {
					b.Error(d, err)
					return
				}
				r.Settle(ctx, 650)
			}
		})
	})
}
