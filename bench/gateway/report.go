package main

import (
	"fmt"
	"strings"
	"time"
)

// report is the outcome of a run.
type report struct {
	opts         options
	command      string
	machine      machine
	date         time.Time
	frontEnds    []frontEnd
	answerBytes  int
	orders       [][]string          // front ends in the order each round ran them
	samples      map[string][]sample // by front end, one per round
	loadBefore   string
	loadAfter    string
	benchCommand string
	benches      []goBench
}

// figures are one front end's medians over the rounds.
type figures struct {
	rps      float64
	p50, p99 time.Duration
}

func (r report) medians(name string) figures {
	var rps []float64
	var p50, p99 []time.Duration
	for _, s := range r.samples[name] {
		rps = append(rps, s.wrk.rps)
		p50 = append(p50, s.wrk.p50)
		p99 = append(p99, s.wrk.p99)
	}
	return figures{rps: median(rps), p50: median(p50), p99: median(p99)}
}

// roundTripsPerRequest is thon-redis's Redis round trips per request
// answered, over every round.
func (r report) roundTripsPerRequest() (float64, bool) {
	var trips uint64
	var reqs int64
	for _, s := range r.samples["thon-redis"] {
		trips += s.roundTrips
		reqs += s.wrk.requests
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
	o, m := r.opts, r.machine
	fmt.Fprintf(&b, "## Gateway\n\n")
	fmt.Fprintf(&b, "Measured %s with `%s`.\n\n", r.date.Format("2006-01-02 15:04 UTC"), r.command)
	fmt.Fprintf(&b, "Machine: %d CPUs (%s), %s memory, Linux %s, %s; thon on Caddy %s, nginx %s, %s, Redis %s; load average %s before the rounds, %s after.\n\n",
		m.cpus, m.cpu, m.memory, m.kernel, m.goVer, m.thon, m.nginx, m.wrk, m.redis, r.loadBefore, r.loadAfter)
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
		"alone, in an order rotating per round; figures are medians over the rounds", o.threads, o.connections, int(o.duration/time.Second), o.rounds)
	if o.warmup > 0 {
		fmt.Fprintf(&b, ", after an unmeasured %v warm-up of each", o.warmup)
	}
	b.WriteString(". wrk, the front ends and the upstream share the machine's CPUs.\n\n")

	b.WriteString("| front end | requests/s | p50 | p99 | requests/s vs caddy |\n|---|--:|--:|--:|--:|\n")
	caddy := r.medians("caddy")
	for _, fe := range r.frontEnds {
		f := r.medians(fe.name)
		fmt.Fprintf(&b, "| %s | %.0f | %s | %s | %.2f× |\n", fe.name, f.rps, fmtDur(f.p50), fmtDur(f.p99), ratio(f.rps, caddy.rps))
	}
	thon, ngx := r.medians("thon"), r.medians("nginx")
	fmt.Fprintf(&b, "\nRatios (medians): thon ÷ caddy: requests/s %.2f×, p50 latency %.2f×, p99 latency %.2f×. thon ÷ nginx: requests/s %.2f×, p50 latency %.2f×, p99 latency %.2f×.",
		ratio(thon.rps, caddy.rps), ratio(float64(thon.p50), float64(caddy.p50)), ratio(float64(thon.p99), float64(caddy.p99)),
		ratio(thon.rps, ngx.rps), ratio(float64(thon.p50), float64(ngx.p50)), ratio(float64(thon.p99), float64(ngx.p99)))
	if _, ok := r.samples["thon-redis"]; ok {
		tr := r.medians("thon-redis")
		fmt.Fprintf(&b, " thon-redis ÷ thon: requests/s %.2f×.", ratio(tr.rps, thon.rps))
	}
	b.WriteString("\n\n")
	if rt, ok := r.roundTripsPerRequest(); ok {
		fmt.Fprintf(&b, "Redis round trips per request (thon-redis, from its limiter's counter in `GET /api/gateway/status`, over every round): %.3f.\n\n", rt)
	}
	b.WriteString("Every round (requests/s; requests that reached the upstream), in the order run:\n\n")
	for i, order := range r.orders {
		parts := make([]string, len(order))
		for j, name := range order {
			s := r.samples[name][i]
			parts[j] = fmt.Sprintf("%s %.0f; %d", name, s.wrk.rps, s.upstream)
		}
		fmt.Fprintf(&b, "- round %d: %s\n", i+1, strings.Join(parts, " · "))
	}

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
	rr := ratio(thon.rps, caddy.rps)
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
