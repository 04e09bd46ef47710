package main

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/thon-dev/thon/bench/internal/benchkit"
)

const goBenchOut = `goos: linux
goarch: amd64
pkg: github.com/thon-dev/thon/gateway
BenchmarkLocalAcquireSettle/reused-2         	 1967350	       121.9 ns/op	       0 B/op	       0 allocs/op
BenchmarkLocalAcquireSettle/reused-2         	 1967350	       131.9 ns/op	       0 B/op	       0 allocs/op
BenchmarkLocalAcquireSettle/reused-2         	 1967350	       101.9 ns/op	       0 B/op	       0 allocs/op
BenchmarkRedisAcquireSettle-2                	    1670	    151061 ns/op	         2.001 roundtrips/op	    2074 B/op	      51 allocs/op
PASS
ok  	github.com/thon-dev/thon/gateway	2.041s
`

func TestParseGoBench(t *testing.T) {
	runs, err := parseGoBench(goBenchOut)
	if err != nil {
		t.Fatal(err)
	}
	if len(runs) != 4 || runs[3].name != "BenchmarkRedisAcquireSettle" || runs[3].values["roundtrips/op"] != 2.001 || runs[3].values["allocs/op"] != 51 {
		t.Fatalf("runs = %+v", runs)
	}
	meds := benchMedians(runs)
	if len(meds) != 2 || meds[0].name != "BenchmarkLocalAcquireSettle/reused" || meds[0].values["ns/op"] != 121.9 {
		t.Errorf("medians = %+v", meds)
	}
	for name, out := range map[string]string{
		"nothing":   "PASS\n",
		"bad value": "BenchmarkX-2 10 fast ns/op\n",
		"no ns":     "BenchmarkX-2 10 3 B/op\n",
	} {
		if _, err := parseGoBench(out); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

func TestReportVerdict(t *testing.T) {
	r := report{Rounds: benchkit.Rounds[sample]{Samples: map[string][]sample{
		"thon":  {{wrk: benchkit.WrkResult{RPS: 960, P50: time.Millisecond}}},
		"caddy": {{wrk: benchkit.WrkResult{RPS: 1000, P50: time.Millisecond}}},
	}}}
	runs, _ := parseGoBench(goBenchOut)
	v := r.verdict(benchMedians(runs))
	if !strings.Contains(v, "requests/s) met: 0.96×") || !strings.Contains(v, "allocation per decision and settlement) met: 121.9 ns") {
		t.Errorf("verdict = %s", v)
	}
	r.Samples["thon"][0].wrk.RPS = 900
	if v := r.verdict(nil); !strings.Contains(v, "not met: 0.90×") {
		t.Errorf("verdict = %s", v)
	}
}

func TestWrkScript(t *testing.T) {
	if s := wrkScript(requestBody); !strings.Contains(s, `wrk.method = "POST"`) || !strings.Contains(s, requestBody) {
		t.Errorf("script = %s", s)
	}
}

// TestOpenRedis runs against the real redis-server: the run's keys are
// under a prefix of its own and gone once it closes.
func TestOpenRedis(t *testing.T) {
	ctx := context.Background()
	prefix, closeRedis, err := openRedis(ctx, "127.0.0.1:6379")
	if err != nil {
		t.Fatal(err)
	}
	c := redis.NewClient(&redis.Options{Addr: "127.0.0.1:6379", DisableIdentity: true})
	defer c.Close()
	if !strings.HasPrefix(prefix, "thon:bench:") || !strings.HasSuffix(prefix, ":") {
		t.Errorf("prefix %q", prefix)
	}
	for _, k := range []string{"a", "b:c"} {
		if err := c.Set(ctx, prefix+k, "1", time.Minute).Err(); err != nil {
			t.Fatal(err)
		}
	}
	other := prefix[:len(prefix)-1] + "x:kept"
	if err := c.Set(ctx, other, "1", time.Minute).Err(); err != nil {
		t.Fatal(err)
	}
	defer c.Del(ctx, other)
	closeRedis()
	if n, err := c.Exists(ctx, prefix+"a", prefix+"b:c").Result(); err != nil || n != 0 {
		t.Errorf("%d of the run's keys left, %v", n, err)
	}
	if n, err := c.Exists(ctx, other).Result(); err != nil || n != 1 {
		t.Errorf("a key outside the prefix removed: %d %v", n, err)
	}
	if _, _, err := openRedis(ctx, "127.0.0.1:1"); err == nil || !strings.HasPrefix(err.Error(), "redis at 127.0.0.1:1 (for thon-redis; -redis '' leaves it out): ") {
		t.Errorf("no Redis: %v", err)
	}
}
