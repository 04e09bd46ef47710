package gateway

import (
	"context"
	"errors"
	"sync/atomic"
	"time"
)

// Reasons a Decision refuses a request.
const (
	// ReasonConcurrency: the consumer already has its limit of requests in
	// flight.
	ReasonConcurrency = "concurrency"
	// ReasonTokens: the estimate does not fit in what is left of the
	// consumer's token window.
	ReasonTokens = "tokens"
	// ReasonUnavailable: the shared limiter could not be reached and the
	// limiter is set to fail closed.
	ReasonUnavailable = "unavailable"
)

// Limiter admits requests of consumers within their Limits. Both methods
// reserve one concurrency slot and estimate tokens (in the units of
// Limits.Strategy, see Limits.Cost) for the consumer, or refuse: a request
// that would cross a limit is refused before it reaches the upstream.
//
// An admitted request ends with exactly one Reservation.Settle, passing the
// tokens it actually used; that frees the slot and replaces the estimate.
//
// An estimate larger than the token limit is reserved as the whole limit, so
// such a request runs when the window is empty rather than never.
type Limiter interface {
	// Acquire reserves for a request and returns a new Reservation, or nil
	// and the refusing Decision.
	Acquire(ctx context.Context, consumer string, lim Limits, estimate int64) (*Reservation, Decision, error)
	// AcquireInto is Acquire with a Reservation owned by the caller, which
	// must not be live; a caller that knows when a request ends can keep
	// the Reservation in its per-request state and reuse it once settled,
	// so that the in-process limiter allocates nothing.
	AcquireInto(ctx context.Context, r *Reservation, consumer string, lim Limits, estimate int64) (Decision, error)
}

// Decision is a limiter's answer to one request.
type Decision struct {
	// Allowed reports whether the request was admitted.
	Allowed bool
	// Reason says why a request was refused: ReasonConcurrency,
	// ReasonTokens or ReasonUnavailable.
	Reason string
	// Limit is the limit the decision is about: the token limit, or the
	// concurrency limit when Reason is ReasonConcurrency. 0 when no limit
	// applies.
	Limit int64
	// Remaining is the number of tokens left in the window after this
	// decision (0 for a concurrency refusal).
	Remaining int64
	// Reset is, for a token refusal, how long until the window has freed
	// enough tokens for this request; for an admitted request, how long
	// until the window is empty again if nothing else is used.
	Reset time.Duration
}

// ErrReservationLive is returned by AcquireInto when given a Reservation
// that has not been settled yet.
var ErrReservationLive = errors.New("reservation is still live: settle it before reusing it")

// Reservation is what an admitted request holds: a concurrency slot and its
// estimated tokens. Settle is the single way out.
type Reservation struct {
	live    atomic.Bool
	settler settler

	// estimate is the number of tokens reserved, after clamping to the
	// limit; unit is the time bucket it was added to.
	estimate int64
	unit     int64
	tokens   bool // a token limit applied

	// LocalLimiter.
	state *localState
	epoch uint64

	// RedisLimiter.
	slotKey, tokKey string
	slot            string
	bucketMS, nb    int64
	unchecked       bool // admitted without Redis: nothing to settle
}

// settler is implemented by the limiters a Reservation returns to.
type settler interface {
	settle(ctx context.Context, r *Reservation, actual int64) error
}

// Settle ends the reservation: it replaces the estimate by actual, the
// tokens the request used (in the units of Limits.Strategy; a client that
// went away is charged what it used until then), and frees the concurrency
// slot. Settle is idempotent: calls after the first, and calls on a nil
// Reservation, do nothing. Tokens are charged even when the error is not
// nil, as far as the limiter could record them.
func (r *Reservation) Settle(ctx context.Context, actual int64) error {
	if r == nil || !r.live.CompareAndSwap(true, false) {
		return nil
	}
	return r.settler.settle(ctx, r, max(actual, 0))
}

// Estimate returns the number of tokens the reservation holds until it is
// settled.
func (r *Reservation) Estimate() int64 {
	if r == nil {
		return 0
	}
	return r.estimate
}

// Live reports whether the reservation has been admitted and not settled.
func (r *Reservation) Live() bool {
	return r != nil && r.live.Load()
}

// clampEstimate returns the tokens to reserve for estimate under lim.
func clampEstimate(lim Limits, estimate int64) int64 {
	if estimate < 0 {
		return 0
	}
	if lim.TokenLimit > 0 && estimate > lim.TokenLimit {
		return lim.TokenLimit
	}
	return estimate
}

// windowBuckets is the number of buckets a token window is divided into.
const windowBuckets = 60

// bucketGeometry returns the bucket width and the number of buckets nb for
// window, both in the unit of window (nanoseconds or milliseconds). A
// charge made in bucket k is counted until the current bucket is past k+nb,
// that is for at least one whole window: the sum never undercounts any
// sliding window, and forgets a charge at most two buckets late.
func bucketGeometry(window int64) (width, nb int64) {
	width = (window + windowBuckets - 1) / windowBuckets
	if width < 1 {
		width = 1
	}
	nb = (window + width - 1) / width
	return width, nb
}

// Interface guards.
var (
	_ Limiter = (*LocalLimiter)(nil)
	_ Limiter = (*RedisLimiter)(nil)
)
