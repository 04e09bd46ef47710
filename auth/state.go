package auth

import (
	"sync"
	"time"
)

// State is what outlives one configuration: the cache of sessions, the
// login limiter, the bound on concurrent password hashes and the setup
// link issued by this process. Keep one per database for the life of the
// process and give it to every Service built on that database.
type State struct {
	sessions sessionCache
	logins   limiter
	// finished are the identity-provider logins that made a session.
	finished finishedLogins
	// hashing bounds the password hashes computed at once: each takes
	// tens of MiB.
	hashing chan struct{}

	mu           sync.Mutex
	setupExpires time.Time // when the setup link this process issued expires
}

// maxConcurrentHashes bounds the argon2id computations running at once.
const maxConcurrentHashes = 2

// NewState returns an empty State whose login limiter allows attempts
// failed attempts per address within window (0 means DefaultLoginAttempts
// and DefaultLoginWindow).
func NewState(attempts int, window time.Duration) *State {
	if attempts <= 0 {
		attempts = DefaultLoginAttempts
	}
	if window <= 0 {
		window = DefaultLoginWindow
	}
	return &State{
		sessions: sessionCache{m: make(map[string]*cachedSession)},
		logins:   limiter{max: attempts, window: window, m: make(map[string]*loginWindow)},
		hashing:  make(chan struct{}, maxConcurrentHashes),
	}
}

// cachedSession is a session as the cache knows it. A dead one (revoked,
// or unknown to the database) is kept until it would have expired, so
// that its cookie is refused from memory too.
type cachedSession struct {
	p       Principal
	expires time.Time
	dead    bool
}

// sessionCache maps session handles (hex SHA-256 of the id) to sessions.
type sessionCache struct {
	mu        sync.RWMutex
	m         map[string]*cachedSession
	lastSweep time.Time
}

// sweepEvery is how often a write to the cache drops expired entries.
const sweepEvery = time.Minute

func (c *sessionCache) get(handle string) (cachedSession, bool) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	e, ok := c.m[handle]
	if !ok {
		return cachedSession{}, false
	}
	return *e, true
}

func (c *sessionCache) put(handle string, e cachedSession, now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if old, ok := c.m[handle]; ok && old.dead {
		return // a revoked session never comes back
	}
	c.m[handle] = &e
	c.sweep(now)
}

// kill marks the session dead until expires (or keeps it dead).
func (c *sessionCache) kill(handle string, expires, now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.m[handle]; ok {
		e.dead = true
		if expires.After(e.expires) {
			e.expires = expires
		}
	} else {
		c.m[handle] = &cachedSession{expires: expires, dead: true}
	}
	c.sweep(now)
}

// sweep drops expired entries, at most once per sweepEvery. c.mu is held.
func (c *sessionCache) sweep(now time.Time) {
	if now.Sub(c.lastSweep) < sweepEvery {
		return
	}
	c.lastSweep = now
	for h, e := range c.m {
		if !now.Before(e.expires) {
			delete(c.m, h)
		}
	}
}

// handlesOf returns the handles of the live cached sessions of a user.
func (c *sessionCache) handlesOf(userID int64) []string {
	c.mu.RLock()
	defer c.mu.RUnlock()
	var hs []string
	for h, e := range c.m {
		if !e.dead && e.p.UserID == userID && e.p.IsParticipant() {
			hs = append(hs, h)
		}
	}
	return hs
}

// loginWindow counts the login attempts of one address in its window.
type loginWindow struct {
	n     int
	start time.Time
}

// limiter limits login attempts per client address: an address may try
// max times in a window that starts at its first attempt; a success
// clears its count. Every attempt counts while it runs, so parallel
// attempts cannot pass the limit.
type limiter struct {
	mu        sync.Mutex
	max       int
	window    time.Duration
	m         map[string]*loginWindow
	lastSweep time.Time
}

// begin counts an attempt by addr at now, or answers how long addr must
// wait.
func (l *limiter) begin(addr string, now time.Time) (wait time.Duration, ok bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if now.Sub(l.lastSweep) >= l.window {
		l.lastSweep = now
		for k, a := range l.m {
			if now.Sub(a.start) >= l.window {
				delete(l.m, k)
			}
		}
	}
	a, found := l.m[addr]
	if !found || now.Sub(a.start) >= l.window {
		a = &loginWindow{start: now}
		l.m[addr] = a
	}
	if a.n >= l.max {
		return a.start.Add(l.window).Sub(now), false
	}
	a.n++
	return 0, true
}

// succeeded clears the count of addr.
func (l *limiter) succeeded(addr string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.m, addr)
}
