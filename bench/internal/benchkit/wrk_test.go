package benchkit

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
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
	r, err := ParseWrk(wrkReport)
	if err != nil {
		t.Fatal(err)
	}
	want := WrkResult{Requests: 63941, RPS: 6389.21, P50: 412 * time.Microsecond, P99: 1020 * time.Millisecond, Non2xx: 12, SockErrors: 3}
	if r != want {
		t.Errorf("got %+v, want %+v", r, want)
	}
	for name, tt := range map[string]struct{ out, err string }{
		"no latency":      {strings.Replace(wrkReport, "     50%  412.00us\n", "", 1), "no latency distribution"},
		"no rate":         {strings.Replace(wrkReport, "Requests/sec:   6389.21\n", "", 1), "no Requests/sec"},
		"no count":        {strings.Replace(wrkReport, "  63941 requests in", "  lots in", 1), "no request count"},
		"bad count":       {strings.Replace(wrkReport, "  63941 requests in", "  6e4 requests in", 1), `requests: "6e4"`},
		"bad unit":        {strings.Replace(wrkReport, "412.00us", "412.00xs", 1), `"412.00xs"`},
		"bad rate":        {strings.Replace(wrkReport, "6389.21", "fast", 1), "requests/sec"},
		"bad non-2xx":     {strings.Replace(wrkReport, "responses: 12", "responses: many", 1), "non-2xx"},
		"bad socket":      {strings.Replace(wrkReport, "read 2,", "read x,", 1), "socket errors"},
		"negative":        {strings.Replace(wrkReport, "412.00us", "-1.00ms", 1), "not a duration"},
		"wrk usage error": {"Usage: wrk <options> <url>\n", "no Requests/sec"},
	} {
		if _, err := ParseWrk(tt.out); err == nil || !strings.Contains(err.Error(), tt.err) {
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
		"1.00h":    time.Hour,
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
		r, err := ParseWrk(out)
		if err != nil {
			return
		}
		if r.P50 < 0 || r.P99 < 0 {
			t.Fatalf("negative latency from %q: %+v", out, r)
		}
	})
}

// TestRunWrk runs the real wrk, with a script and a header, against a
// loopback server.
func TestRunWrk(t *testing.T) {
	if _, err := exec.LookPath("wrk"); err != nil {
		t.Fatalf("wrk is required (apt-get install wrk): %v", err)
	}
	var posts, bad atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		if r.Method != http.MethodPost || r.Header.Get("Authorization") != "Bearer k" || string(b) != `{"a":1}` {
			bad.Add(1)
		}
		posts.Add(1)
		if r.URL.Path == "/fail" {
			w.WriteHeader(http.StatusInternalServerError)
		}
	}))
	defer srv.Close()
	script := filepath.Join(t.TempDir(), "post.lua")
	if err := os.WriteFile(script, []byte("wrk.method = \"POST\"\nwrk.body = '{\"a\":1}'\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	o := WrkOptions{Bin: "wrk", Threads: 1, Connections: 2, Duration: time.Second, Script: script, Headers: []string{"Authorization: Bearer k"}}
	r, err := RunWrk(context.Background(), o, srv.URL+"/")
	if err != nil {
		t.Fatal(err)
	}
	if r.Requests == 0 || r.RPS <= 0 || r.P50 <= 0 || r.P99 < r.P50 || r.Non2xx != 0 || r.SockErrors != 0 {
		t.Errorf("result %+v", r)
	}
	if posts.Load() == 0 || bad.Load() != 0 {
		t.Errorf("%d requests, %d without the script's method and body or the header", posts.Load(), bad.Load())
	}

	r, err = RunWrk(context.Background(), o, srv.URL+"/fail")
	if err != nil {
		t.Fatal(err)
	}
	if r.Non2xx == 0 || r.Non2xx != r.Requests {
		t.Errorf("500 answers: %+v", r)
	}

	o.Bin = "false"
	if _, err := RunWrk(context.Background(), o, srv.URL+"/"); err == nil || !strings.Contains(err.Error(), "wrk -t 1 -c 2 -d 1s --timeout 10s --latency -s "+script+" -H Authorization: Bearer k "+srv.URL+"/: exit status 1") {
		t.Errorf("failing wrk: %v", err)
	}
}
