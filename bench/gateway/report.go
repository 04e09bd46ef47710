package main

import (
	"fmt"
	"strings"
	"time"

	"github.com/thon-dev/thon/bench/internal/benchkit"
)

// report is the outcome of a run: the wrk rounds and the limiter benchmarks.
type report struct {
	frontEnds    []frontEnd
	answerBytes  int
	opts         options
	redis        string // redis-server's version
	benchCommand string
	benches      []goBench
	benchkit.Run
	benchkit.Rounds[sample]
}

// medians are one front end's median figures over the rounds.
func (r report) medians(name string) benchkit.WrkResult {
	var ws []benchkit.WrkResult
	for _, s := range r.Samples[name] {
		ws = append(ws, s.wrk)
	}
	return benchkit.MedianWrk(ws)
}

// roundTripsPerRequest is thon-redis's Redis round trips per request
// answered, over every round.
func (r report) roundTripsPerRequest() (float64, bool) {
	var trips uint64
	var reqs int64
	for _, s := range r.Samples["thon-redis"] {
		trips += s.roundTrips
		reqs += s.wrk.Requests
	}
	if reqs == 0 {
		return 0, false
	}
	return float64(trips) / float64(reqs), true
}

// Goals of issue 6.
const (
	goalRatio    = 0.95 // gateway requests/s ÷ plain Caddy's
	goalLimiter  = 200  // ns per in-process decision and settlement
	limiterBench = "BenchmarkLocalAcquireSettle/reused"
)

// markdown is the Gateway section.
func (r report) markdown() string {
	var b strings.Builder
	o, m := r.opts, r.Machine
	b.WriteString(r.Heading("Gateway"))
	fmt.Fprintf(&b, "Machine: %d CPUs (%s), %s memory, Linux %s, %s; thon on Caddy %s, nginx %s, %s, Redis %s; load average %s before the rounds, %s after.\n\n",
		m.CPUs, m.CPU, m.Memory, m.Kernel, m.GoVersion, m.Thon, m.Nginx, m.Wrk, r.redis, r.LoadBefore, r.LoadAfter)
	fmt.Fprintf(&b, "The upstream is a Lemonade stand-in in the benchmark's process on 127.0.0.1, answering every chat completion "+
		"with the same %d-byte JSON (usage included) after checking its API key. Every front end listens on 127.0.0.1 and gets the same "+
		"POST of a small chat completion (%d bytes) with an `Authorization: Bearer` header, and puts the upstream's key in its place. "+
		"**thon** is the thon binary (built from ./cmd/thon) serving `thon_gateway`: key lookup, request estimate, concurrency and "+
		"token reservation in the in-process limiter (the consumer has a concurrency limit of 1000 and a token limit of 10¹² per 60 s, "+
		"so both limits are checked and none refuses), the answer passed through while its usage is read, settlement, usage queued for "+
		"the database and counted in Prometheus metrics. **thon-redis** is the same with `gateway { redis %s }`: the decision and the "+
		"settlement are one Redis script each. **caddy** is the same binary as plain Caddy with `reverse_proxy` and `header_up "+
		"Authorization`, nothing else. **nginx** has `proxy_pass` to an `upstream` with `keepalive 64`, the Authorization header set and "+
		"`proxy_buffering off` (as an LLM proxy needs for streams), `worker_processes auto`, no access log.\n\n",
		r.answerBytes, len(requestBody), o.redis)
	fmt.Fprintf(&b, "`wrk -t%d -c%d -d%ds --latency -s post.lua -H 'Authorization: Bearer <key>'`; %d round(s); in each, every front end runs "+
		"alone, in an order rotating per round; figures are medians over the rounds", o.Threads, o.Connections, int(o.Duration/time.Second), o.Rounds)
	if o.Warmup > 0 {
		fmt.Fprintf(&b, ", after an unmeasured %v warm-up of each", o.Warmup)
	}
	b.WriteString(". wrk, the front ends and the upstream share the machine's CPUs.\n\n")

	b.WriteString("| front end | requests/s | p50 | p99 | requests/s vs caddy |\n|---|--:|--:|--:|--:|\n")
	caddy := r.medians("caddy")
	for _, fe := range r.frontEnds {
		f := r.medians(fe.name)
		fmt.Fprintf(&b, "| %s | %.0f | %s | %s | %.2f× |\n", fe.name, f.RPS, benchkit.FmtDur(f.P50), benchkit.FmtDur(f.P99), benchkit.Ratio(f.RPS, caddy.RPS))
	}
	thon, ngx := r.medians("thon"), r.medians("nginx")
	fmt.Fprintf(&b, "\nRatios (medians): thon ÷ caddy: requests/s %.2f×, p50 latency %.2f×, p99 latency %.2f×. thon ÷ nginx: requests/s %.2f×, p50 latency %.2f×, p99 latency %.2f×.",
		benchkit.Ratio(thon.RPS, caddy.RPS), benchkit.Ratio(thon.P50, caddy.P50), benchkit.Ratio(thon.P99, caddy.P99),
		benchkit.Ratio(thon.RPS, ngx.RPS), benchkit.Ratio(thon.P50, ngx.P50), benchkit.Ratio(thon.P99, ngx.P99))
	if _, ok := r.Samples["thon-redis"]; ok {
		tr := r.medians("thon-redis")
		fmt.Fprintf(&b, " thon-redis ÷ thon: requests/s %.2f×.", benchkit.Ratio(tr.RPS, thon.RPS))
	}
	b.WriteString("\n\n")
	if rt, ok := r.roundTripsPerRequest(); ok {
		fmt.Fprintf(&b, "Redis round trips per request (thon-redis, from its limiter's counter in `GET /api/gateway/status`, over every round): %.3f.\n\n", rt)
	}
	b.WriteString("Every round (requests/s; requests that reached the upstream), in the order run:\n\n")
	b.WriteString(r.List(func(name string, s sample) string {
		return fmt.Sprintf("%s %.0f; %d", name, s.wrk.RPS, s.upstream)
	}))

	fmt.Fprintf(&b, "\nThe gateway package's benchmarks, `%s`, medians of %d runs:\n\n", r.benchCommand, o.benchCount)
	b.WriteString("| benchmark | ns/op | B/op | allocs/op | Redis round trips/op |\n|---|--:|--:|--:|--:|\n")
	meds := benchMedians(r.benches)
	for _, g := range meds {
		rt := "-"
		if v, ok := g.values["roundtrips/op"]; ok {
			rt = fmt.Sprintf("%.2f", v)
		}
		fmt.Fprintf(&b, "| %s | %.1f | %.0f | %.0f | %s |\n", strings.TrimPrefix(g.name, "Benchmark"), g.values["ns/op"], g.values["B/op"], g.values["allocs/op"], rt)
	}
	b.WriteString("\n" + r.verdict(meds) + "\n")
	return b.String()
}

// verdict states, from the figures, whether the goals were met.
func (r report) verdict(meds []goBench) string {
	thon, caddy := r.medians("thon"), r.medians("caddy")
	rr := benchkit.Ratio(thon.RPS, caddy.RPS)
	var parts []string
	met := "met"
	if rr < goalRatio {
		met = "not met"
	}
	parts = append(parts, fmt.Sprintf("Goal (issue 6: the gateway at least %.2f× plain Caddy's requests/s) %s: %.2f×.", goalRatio, met, rr))
	for _, g := range meds {
		if g.name != limiterBench {
			continue
		}
		ns, allocs := g.values["ns/op"], g.values["allocs/op"]
		met := "met"
		if ns > goalLimiter || allocs != 0 {
			met = "not met"
		}
		parts = append(parts, fmt.Sprintf("Goal (in-process limiter: at most %d ns and no allocation per decision and settlement) %s: %.1f ns, %.0f allocs.", goalLimiter, met, ns, allocs))
	}
	return strings.Join(parts, " ")
}
