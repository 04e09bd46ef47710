package main

import (
	"strings"
	"testing"
	"time"
)

// wrkReport is the output of `wrk -t2 -c32 -d10s --latency` (wrk 4.1.0).
const wrkReport = `Running 10s test @ http://127.0.0.1:41235/s/g/u/
  2 threads and 32 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     5.12ms    3.40ms  61.52ms   85.47%
    Req/Sec     3.21k   312.45     3.95k    71.00%
  Latency Distribution
     50%  412.00us
     75%    6.30ms
     90%    8.92ms
     99%    1.02s
  63941 requests in 10.01s, 74.56MB read
  Socket errors: connect 0, read 2, write 0, timeout 1
  Non-2xx or 3xx responses: 12
Requests/sec:   6389.21
Transfer/sec:      7.45MB
`

func TestParseWrk(t *testing.T) {
	r, err := parseWrk(wrkReport)
	if err != nil {
		t.Fatal(err)
	}
	want := wrkResult{requests: 63941, rps: 6389.21, p50: 412 * time.Microsecond, p99: 1020 * time.Millisecond, non2xx: 12, sockErrors: 3}
	if r != want {
		t.Errorf("got %+v, want %+v", r, want)
	}
	for name, tt := range map[string]struct{ out, err string }{
		"no latency":      {strings.Replace(wrkReport, "     50%  412.00us\n", "", 1), "no latency distribution"},
		"no rate":         {strings.Replace(wrkReport, "Requests/sec:   6389.21\n", "", 1), "no Requests/sec"},
		"no count":        {strings.Replace(wrkReport, "  63941 requests in", "  lots in", 1), "no request count"},
		"bad unit":        {strings.Replace(wrkReport, "412.00us", "412.00xs", 1), `"412.00xs"`},
		"bad rate":        {strings.Replace(wrkReport, "6389.21", "fast", 1), "requests/sec"},
		"bad socket":      {strings.Replace(wrkReport, "read 2,", "read x,", 1), "socket errors"},
		"negative":        {strings.Replace(wrkReport, "412.00us", "-1.00ms", 1), "not a duration"},
		"wrk usage error": {"Usage: wrk <options> <url>\n", "no Requests/sec"},
	} {
		if _, err := parseWrk(tt.out); err == nil || !strings.Contains(err.Error(), tt.err) {
			t.Errorf("%s: error %v, want %q", name, err, tt.err)
		}
	}
}

func TestParseWrkDuration(t *testing.T) {
	for in, want := range map[string]time.Duration{
		"412.00us": 412 * time.Microsecond,
		"2.31ms":   2310 * time.Microsecond,
		"1.50s":    1500 * time.Millisecond,
		"2.00m":    2 * time.Minute,
		"0.00us":   0,
	} {
		got, err := parseWrkDuration(in)
		if err != nil || got != want {
			t.Errorf("%s: %v %v, want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"", "12", "ms", "x1ms"} {
		if _, err := parseWrkDuration(in); err == nil {
			t.Errorf("%q accepted", in)
		}
	}
}

// FuzzParseWrk: wrk's output is outside input; parsing never panics and
// never reports a negative figure.
func FuzzParseWrk(f *testing.F) {
	f.Add(wrkReport)
	f.Add("Requests/sec: 1\n 50% 1ms\n 99% 2ms\n 5 requests in 1s\n")
	f.Fuzz(func(t *testing.T, out string) {
		r, err := parseWrk(out)
		if err != nil {
			return
		}
		if r.p50 < 0 || r.p99 < 0 {
			t.Fatalf("negative latency from %q: %+v", out, r)
		}
	})
}

func TestMedian(t *testing.T) {
	if got := median([]float64{3, 1, 2}); got != 2 {
		t.Errorf("odd: %v", got)
	}
	if got := median([]float64{4, 1, 3, 2}); got != 2.5 {
		t.Errorf("even: %v", got)
	}
	if got := median([]time.Duration{time.Second}); got != time.Second {
		t.Errorf("one: %v", got)
	}
	if got := median[float64](nil); got != 0 {
		t.Errorf("none: %v", got)
	}
}

func TestRotate(t *testing.T) {
	fes := []frontEnd{{name: "a"}, {name: "b"}, {name: "c"}}
	for round, want := range []string{"abc", "bca", "cab", "abc"} {
		var got string
		for _, fe := range rotate(fes, round) {
			got += fe.name
		}
		if got != want {
			t.Errorf("round %d: %s, want %s", round, got, want)
		}
	}
}

func TestReplaceSection(t *testing.T) {
	doc := "# Results\n\nintro\n\n## Provisioning\n\nold p\n\n## Proxy\n\nold x\n\n## Later\n\nz\n"
	got := replaceSection(doc, "Proxy", "## Proxy\n\nnew x\n")
	want := "# Results\n\nintro\n\n## Provisioning\n\nold p\n\n## Proxy\n\nnew x\n\n## Later\n\nz\n"
	if got != want {
		t.Errorf("replace:\n%q\nwant\n%q", got, want)
	}
	got = replaceSection("# Results\n\nintro\n", "Proxy", "## Proxy\n\nx")
	if want := "# Results\n\nintro\n\n## Proxy\n\nx\n"; got != want {
		t.Errorf("append: %q", got)
	}
}

func TestMarkdown(t *testing.T) {
	o, err := parseFlags(nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	fes := []frontEnd{{name: "thon"}, {name: "thon-flush"}, {name: "caddy"}, {name: "caddy-tuned"}, {name: "nginx"}}
	r := report{opts: o, command: "go run ./bench/proxy", frontEnds: fes, date: time.Date(2026, 1, 2, 3, 4, 0, 0, time.UTC),
		orders: [][]string{{"thon", "thon-flush", "caddy", "caddy-tuned", "nginx"}}, samples: map[string][]sample{
			"thon":        {{wrk: wrkResult{rps: 960, p50: time.Millisecond, p99: 4 * time.Millisecond}, ws: wsResult{messages: 9600, elapsed: time.Second}}},
			"thon-flush":  {{wrk: wrkResult{rps: 864, p50: 2 * time.Millisecond, p99: 4 * time.Millisecond}, ws: wsResult{messages: 9600, elapsed: time.Second}}},
			"caddy":       {{wrk: wrkResult{rps: 1000, p50: time.Millisecond, p99: 2 * time.Millisecond}, ws: wsResult{messages: 10000, elapsed: time.Second}}},
			"caddy-tuned": {{wrk: wrkResult{rps: 950, p50: time.Millisecond, p99: 2 * time.Millisecond}, ws: wsResult{messages: 9000, elapsed: time.Second}}},
			"nginx":       {{wrk: wrkResult{rps: 500, p50: 2 * time.Millisecond, p99: 8 * time.Millisecond}, ws: wsResult{messages: 12000, elapsed: time.Second}}},
		}}
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
	r.samples["thon"][0].ws.messages = 9000
	if v := r.verdict(); !strings.Contains(v, "not met: WebSocket echoes/s 0.90×") {
		t.Errorf("verdict: %s", v)
	}
}
