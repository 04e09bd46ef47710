package main

import (
	"strings"
	"testing"
	"time"
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
	r := report{samples: map[string][]sample{
		"thon":  {{wrk: wrkResult{rps: 960, p50: time.Millisecond}}},
		"caddy": {{wrk: wrkResult{rps: 1000, p50: time.Millisecond}}},
	}}
	runs, _ := parseGoBench(goBenchOut)
	v := r.verdict(benchMedians(runs))
	if !strings.Contains(v, "requests/s) met: 0.96×") || !strings.Contains(v, "allocation per decision and settlement) met: 121.9 ns") {
		t.Errorf("verdict = %s", v)
	}
	r.samples["thon"][0].wrk.rps = 900
	if v := r.verdict(nil); !strings.Contains(v, "not met: 0.90×") {
		t.Errorf("verdict = %s", v)
	}
}

func TestWrkScriptAndSections(t *testing.T) {
	if s := wrkScript(requestBody); !strings.Contains(s, `wrk.method = "POST"`) || !strings.Contains(s, requestBody) {
		t.Errorf("script = %s", s)
	}
	doc := "# R\n\n## Proxy\n\nold\n\n## Gateway\n\nold gateway\n"
	if got := replaceSection(doc, "Gateway", "## Gateway\n\nnew\n"); got != "# R\n\n## Proxy\n\nold\n\n## Gateway\n\nnew\n" {
		t.Errorf("replace = %q", got)
	}
	if got := replaceSection("# R\n", "Gateway", "## Gateway\n\nnew\n"); got != "# R\n\n## Gateway\n\nnew\n" {
		t.Errorf("append = %q", got)
	}
}
