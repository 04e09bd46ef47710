package main

import (
	"strings"
	"testing"
	"time"

	"github.com/thon-dev/thon/bench/internal/benchkit"
)

func TestMarkdown(t *testing.T) {
	o, err := parseFlags(nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	fes := []frontEnd{{name: "thon"}, {name: "thon-flush"}, {name: "caddy"}, {name: "caddy-tuned"}, {name: "nginx"}}
	r := report{opts: o, Run: benchkit.Run{Command: "go run ./bench/proxy", Date: time.Date(2026, 1, 2, 3, 4, 0, 0, time.UTC)}, frontEnds: fes,
		Rounds: benchkit.Rounds[sample]{Orders: [][]string{{"thon", "thon-flush", "caddy", "caddy-tuned", "nginx"}}, Samples: map[string][]sample{
			"thon":        {{wrk: benchkit.WrkResult{RPS: 960, P50: time.Millisecond, P99: 4 * time.Millisecond}, ws: wsResult{messages: 9600, elapsed: time.Second}}},
			"thon-flush":  {{wrk: benchkit.WrkResult{RPS: 864, P50: 2 * time.Millisecond, P99: 4 * time.Millisecond}, ws: wsResult{messages: 9600, elapsed: time.Second}}},
			"caddy":       {{wrk: benchkit.WrkResult{RPS: 1000, P50: time.Millisecond, P99: 2 * time.Millisecond}, ws: wsResult{messages: 10000, elapsed: time.Second}}},
			"caddy-tuned": {{wrk: benchkit.WrkResult{RPS: 950, P50: time.Millisecond, P99: 2 * time.Millisecond}, ws: wsResult{messages: 9000, elapsed: time.Second}}},
			"nginx":       {{wrk: benchkit.WrkResult{RPS: 500, P50: 2 * time.Millisecond, P99: 8 * time.Millisecond}, ws: wsResult{messages: 12000, elapsed: time.Second}}},
		}}}
	md := r.markdown()
	for _, want := range []string{
		"## Proxy\n", "Measured 2026-01-02 03:04 UTC with `go run ./bench/proxy`.",
		"| thon | 960 | 1ms | 4ms | 9600 | 0.96× | 0.96× |",
		"| nginx | 500 | 2ms | 8ms | 12000 | 0.50× | 1.20× |",
		"thon ÷ caddy: requests/s 0.96×, p50 latency 1.00×, p99 latency 2.00×, WebSocket echoes/s 0.96×",
		"thon ÷ nginx: requests/s 1.92×",
		"thon-flush ÷ thon: requests/s 0.90×, p50 latency 2.00×",
		"- round 1: thon 960; 9600 · thon-flush 864; 9600 · caddy 1000; 10000",
		"met: requests/s 0.96×, WebSocket echoes/s 0.96×.",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("markdown lacks %q:\n%s", want, md)
		}
	}
	r.Samples["thon"][0].ws.messages = 9000
	if v := r.verdict(); !strings.Contains(v, "not met: WebSocket echoes/s 0.90×") {
		t.Errorf("verdict: %s", v)
	}
}
