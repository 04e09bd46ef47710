package gateway

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"
)

// testRedisAddr is the redis-server the Redis limiter tests use.
const testRedisAddr = "127.0.0.1:6379"

// fakeClock is a settable clock for LocalLimiter.Now.
type fakeClock struct{ ns atomic.Int64 }

func newFakeClock() *fakeClock {
	c := new(fakeClock)
	c.ns.Store(time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC).UnixNano())
	return c
}

func (c *fakeClock) Now() time.Time          { return time.Unix(0, c.ns.Load()) }
func (c *fakeClock) Advance(d time.Duration) { c.ns.Add(int64(d)) }

// redisForTest returns a client of the test Redis and a key prefix unique
// to the test; every key under it is deleted when the test ends. The test
// fails when Redis cannot be reached.
func redisForTest(t testing.TB) (*redis.Client, string) {
	t.Helper()
	c := redis.NewClient(&redis.Options{
		Addr:                     testRedisAddr,
		DisableIdentity:          true,
		MaintNotificationsConfig: &maintnotifications.Config{Mode: maintnotifications.ModeDisabled},
	})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	if err := c.Ping(ctx).Err(); err != nil {
		c.Close()
		t.Fatalf("the Redis limiter tests need redis-server on %s (start it with `redis-server --bind 127.0.0.1 --daemonize yes`): %v", testRedisAddr, err)
	}
	var id [6]byte
	_, _ = rand.Read(id[:])
	name := strings.NewReplacer("/", "_", " ", "_", "{", "_", "}", "_").Replace(t.Name())
	prefix := "thon:test:" + name + ":" + hex.EncodeToString(id[:]) + ":"
	t.Cleanup(func() {
		ctx := context.Background()
		var keys []string
		iter := c.Scan(ctx, 0, prefix+"*", 100).Iterator()
		for iter.Next(ctx) {
			keys = append(keys, iter.Val())
		}
		if len(keys) > 0 {
			c.Del(ctx, keys...)
		}
		c.Close()
	})
	return c, prefix
}

// newTestRedisLimiter returns a RedisLimiter on the test Redis, closed when
// the test ends.
func newTestRedisLimiter(t testing.TB, prefix string, edit func(*RedisConfig)) *RedisLimiter {
	t.Helper()
	cfg := RedisConfig{Addr: testRedisAddr, Prefix: prefix}
	if edit != nil {
		edit(&cfg)
	}
	l, err := NewRedisLimiter(cfg)
	if err != nil {
		t.Fatalf("NewRedisLimiter: %v", err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}
