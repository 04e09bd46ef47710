package gateway

import (
	"context"
	"sync"
	"time"
)

// localShards is the number of independently locked parts of a LocalLimiter.
const localShards = 64

// ringSize is the number of buckets kept per consumer: a window's buckets
// and the current one.
const ringSize = windowBuckets + 1

// LocalLimiter is a Limiter whose state lives in this process. It is a plain
// object: keep one for the life of the process (not of a configuration) so
// that a reload keeps every consumer's window and in-flight count.
//
// Token windows are sliding-window counters: each consumer has a ring of
// time buckets (a sixtieth of the window each) whose sum is the usage in
// the window; memory does not depend on the number of tokens or requests.
//
// The zero value is ready to use.
type LocalLimiter struct {
	// Now returns the current time; nil means time.Now. Set it before the
	// limiter is used.
	Now func() time.Time

	start  time.Time
	shards [localShards]localShard
}

type localShard struct {
	mu sync.RWMutex
	m  map[string]*localState
	_  [40]byte // keep shards on separate cache lines
}

// localState is one consumer's state.
type localState struct {
	mu       sync.Mutex
	dead     bool // removed by Sweep; look the consumer up again
	inflight int64

	// Token window. width and nb are in nanoseconds and buckets; epoch
	// changes when the window changes, so that older reservations are not
	// taken out of the wrong bucket.
	window time.Duration
	width  int64
	nb     int64
	epoch  uint64
	cur    int64 // the latest bucket the ring has been advanced to
	sum    int64
	ring   [ringSize]int64
}

// NewLocalLimiter returns a LocalLimiter on the system clock, with room for
// about consumers consumers before its maps grow.
func NewLocalLimiter(consumers int) *LocalLimiter {
	l := &LocalLimiter{start: time.Now()}
	per := consumers/localShards + 1
	for i := range l.shards {
		l.shards[i].m = make(map[string]*localState, per)
	}
	return l
}

// now returns the current time in nanoseconds: from Now when set, else from
// the monotonic clock.
func (l *LocalLimiter) now() int64 {
	if l.Now != nil {
		return l.Now().UnixNano()
	}
	if l.start.IsZero() {
		return time.Now().UnixNano()
	}
	return l.start.UnixNano() + int64(time.Since(l.start))
}

// shard returns the shard of consumer (FNV-1a).
func (l *LocalLimiter) shard(consumer string) *localShard {
	h := uint32(2166136261)
	for i := 0; i < len(consumer); i++ {
		h ^= uint32(consumer[i])
		h *= 16777619
	}
	return &l.shards[h%localShards]
}

// lockState returns the locked state of consumer, creating it if needed.
func (l *LocalLimiter) lockState(consumer string) *localState {
	sh := l.shard(consumer)
	for {
		sh.mu.RLock()
		st := sh.m[consumer]
		sh.mu.RUnlock()
		if st == nil {
			sh.mu.Lock()
			if st = sh.m[consumer]; st == nil {
				if sh.m == nil {
					sh.m = make(map[string]*localState)
				}
				st = new(localState)
				sh.m[consumer] = st
			}
			sh.mu.Unlock()
		}
		st.mu.Lock()
		if !st.dead {
			return st
		}
		st.mu.Unlock()
	}
}

// Acquire implements Limiter.
func (l *LocalLimiter) Acquire(ctx context.Context, consumer string, lim Limits, estimate int64) (*Reservation, Decision, error) {
	r := new(Reservation)
	d, err := l.AcquireInto(ctx, r, consumer, lim, estimate)
	if err != nil || !d.Allowed {
		return nil, d, err
	}
	return r, d, nil
}

// AcquireInto implements Limiter. It allocates nothing once the consumer is
// known.
func (l *LocalLimiter) AcquireInto(_ context.Context, r *Reservation, consumer string, lim Limits, estimate int64) (Decision, error) {
	if r.live.Load() {
		return Decision{}, ErrReservationLive
	}
	if err := lim.Validate(); err != nil {
		return Decision{}, err
	}
	est := clampEstimate(lim, estimate)
	now := l.now()

	st := l.lockState(consumer)
	defer st.mu.Unlock()

	if lim.Concurrency > 0 && st.inflight >= int64(lim.Concurrency) {
		return Decision{Reason: ReasonConcurrency, Limit: int64(lim.Concurrency)}, nil
	}
	d := Decision{Allowed: true}
	var unit int64
	if lim.TokenLimit > 0 {
		st.setWindow(lim.Window, now)
		st.advance(now / st.width)
		unit = st.cur // a clock that went back still charges the current bucket
		d.Limit = lim.TokenLimit
		if st.sum+est > lim.TokenLimit {
			d.Allowed = false
			d.Reason = ReasonTokens
			d.Remaining = max(lim.TokenLimit-st.sum, 0)
			d.Reset = st.resetAfter(st.sum+est-lim.TokenLimit, now)
			return d, nil
		}
		st.ring[unit%ringSize] += est
		st.sum += est
		d.Remaining = lim.TokenLimit - st.sum
		d.Reset = st.emptyAfter(now)
	}
	st.inflight++

	r.settler = l
	r.estimate = est
	r.unit = unit
	r.tokens = lim.TokenLimit > 0
	r.state = st
	r.epoch = st.epoch
	r.live.Store(true)
	return d, nil
}

// settle implements settler.
func (l *LocalLimiter) settle(_ context.Context, r *Reservation, actual int64) error {
	st := r.state
	st.mu.Lock()
	defer st.mu.Unlock()
	st.inflight--
	if st.width == 0 {
		return nil // no token window was ever set up
	}
	st.advance(l.now() / st.width)
	if r.tokens && r.epoch == st.epoch && r.unit >= st.cur-st.nb {
		i := r.unit % ringSize
		take := min(r.estimate, st.ring[i])
		st.ring[i] -= take
		st.sum -= take
	}
	if actual > 0 {
		st.ring[st.cur%ringSize] += actual
		st.sum += actual
	}
	return nil
}

// setWindow sets the window of st. A new window keeps the usage counted so
// far, moved into the current bucket.
func (st *localState) setWindow(window time.Duration, now int64) {
	if st.window == window {
		return
	}
	st.window = window
	st.width, st.nb = bucketGeometry(int64(window))
	st.epoch++
	st.cur = now / st.width
	st.ring = [ringSize]int64{}
	st.ring[st.cur%ringSize] = st.sum
}

// advance moves the ring to bucket unit, dropping buckets that left the
// window.
func (st *localState) advance(unit int64) {
	if unit <= st.cur {
		return
	}
	if unit-st.cur > st.nb {
		st.ring = [ringSize]int64{}
		st.sum = 0
		st.cur = unit
		return
	}
	for u := st.cur + 1; u <= unit; u++ {
		// Bucket u-nb-1 leaves the window as bucket u enters it; both
		// share a slot only when the ring is full-size.
		old := (u - st.nb - 1) % ringSize
		st.sum -= st.ring[old]
		st.ring[old] = 0
		st.ring[u%ringSize] = 0
	}
	st.cur = unit
}

// resetAfter returns how long until at least need tokens have left the
// window, given the ring is at now.
func (st *localState) resetAfter(need, now int64) time.Duration {
	if need <= 0 {
		return 0
	}
	var freed int64
	for u := st.cur - st.nb; u <= st.cur; u++ {
		if u < 0 {
			continue
		}
		freed += st.ring[u%ringSize]
		if freed >= need {
			return time.Duration((u+st.nb+1)*st.width - now)
		}
	}
	return time.Duration((st.cur+st.nb+1)*st.width - now)
}

// emptyAfter returns how long until the window is empty, given the ring is
// at now: until the newest bucket holding tokens leaves it.
func (st *localState) emptyAfter(now int64) time.Duration {
	for u := st.cur; u >= st.cur-st.nb && u >= 0; u-- {
		if st.ring[u%ringSize] != 0 {
			return time.Duration((u+st.nb+1)*st.width - now)
		}
	}
	return 0
}

// Sweep forgets consumers with nothing in flight and nothing left in their
// window, and returns how many it forgot. Call it now and then (every few
// minutes) to bound memory when consumers come and go.
func (l *LocalLimiter) Sweep() int {
	now := l.now()
	n := 0
	for i := range l.shards {
		sh := &l.shards[i]
		sh.mu.Lock()
		for name, st := range sh.m {
			st.mu.Lock()
			if st.width > 0 {
				st.advance(now / st.width)
			}
			if st.inflight == 0 && st.sum == 0 {
				st.dead = true
				delete(sh.m, name)
				n++
			}
			st.mu.Unlock()
		}
		sh.mu.Unlock()
	}
	return n
}

// InFlight returns the number of requests consumer has in flight and the
// tokens counted in its window.
func (l *LocalLimiter) InFlight(consumer string) (requests, tokens int64) {
	sh := l.shard(consumer)
	sh.mu.RLock()
	st := sh.m[consumer]
	sh.mu.RUnlock()
	if st == nil {
		return 0, 0
	}
	now := l.now()
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.width > 0 {
		st.advance(now / st.width)
	}
	return st.inflight, st.sum
}
