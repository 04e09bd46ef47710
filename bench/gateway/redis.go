package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/http"
	"os/exec"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/thon-dev/thon/bench/internal/benchkit"
)

// openRedis connects to the Redis at addr for thon-redis and picks a key
// prefix of this run's own. closeRedis removes the run's keys and closes
// the connection.
func openRedis(ctx context.Context, addr string) (prefix string, closeRedis func(), err error) {
	c := redis.NewClient(&redis.Options{Addr: addr, DisableIdentity: true})
	if err := c.Ping(ctx).Err(); err != nil {
		c.Close()
		return "", nil, fmt.Errorf("redis at %s (for thon-redis; -redis '' leaves it out): %v", addr, err)
	}
	var id [6]byte
	_, _ = rand.Read(id[:])
	prefix = "thon:bench:" + hex.EncodeToString(id[:]) + ":"
	return prefix, func() {
		deleteKeys(c, prefix)
		c.Close()
	}, nil
}

// redisRoundTrips reads the Redis round trips of a thon's limiter (0 for
// other front ends and the in-process limiter).
func redisRoundTrips(ctx context.Context, fe frontEnd) (uint64, error) {
	if fe.adminPort == 0 {
		return 0, nil
	}
	var st struct {
		Runtime struct {
			RedisRoundTrips uint64 `json:"redis_round_trips"`
		} `json:"runtime"`
	}
	admin := benchkit.Admin{Port: fe.adminPort, Timeout: time.Minute}
	if err := admin.Call(ctx, http.MethodGet, "/thon/gateway/status", "", nil, &st); err != nil {
		return 0, err
	}
	return st.Runtime.RedisRoundTrips, nil
}

// deleteKeys removes the benchmark's keys from Redis.
func deleteKeys(c *redis.Client, prefix string) {
	ctx := context.Background()
	var keys []string
	it := c.Scan(ctx, 0, prefix+"*", 100).Iterator()
	for it.Next(ctx) {
		keys = append(keys, it.Val())
	}
	if len(keys) > 0 {
		c.Del(ctx, keys...)
	}
}

// redisVersion is the version of redis-server, or "-" without thon-redis
// (addr empty) or when redis-server does not tell it.
func redisVersion(ctx context.Context, addr string) string {
	v := "-"
	if addr == "" {
		return v
	}
	if out, err := exec.CommandContext(ctx, "redis-server", "--version").Output(); err == nil {
		for _, f := range strings.Fields(string(out)) {
			if s, ok := strings.CutPrefix(f, "v="); ok {
				v = s
			}
		}
	}
	return v
}
