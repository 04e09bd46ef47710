package benchkit

import (
	"fmt"
	"testing"
	"time"
)

func TestRunHeading(t *testing.T) {
	r := Run{Command: "go run ./bench/proxy -rounds 1", Date: time.Date(2026, 1, 2, 3, 4, 59, 0, time.UTC)}
	if got, want := r.Heading("Proxy"), "## Proxy\n\nMeasured 2026-01-02 03:04 UTC with `go run ./bench/proxy -rounds 1`.\n\n"; got != want {
		t.Errorf("%q, want %q", got, want)
	}
}

func TestRounds(t *testing.T) {
	var r Rounds[int]
	if got := r.List(nil); got != "" {
		t.Errorf("no rounds: %q", got)
	}
	names := []string{"thon", "caddy", "nginx"}
	for round := range 2 {
		for i, name := range Rotate(names, round) {
			r.Add(round, name, 10*round+i)
		}
	}
	if fmt.Sprint(r.Orders) != "[[thon caddy nginx] [caddy nginx thon]]" || fmt.Sprint(r.Samples) != "map[caddy:[1 10] nginx:[2 11] thon:[0 12]]" {
		t.Errorf("orders %v, samples %v", r.Orders, r.Samples)
	}
	got := r.List(func(name string, s int) string { return fmt.Sprintf("%s %d", name, s) })
	if want := "- round 1: thon 0 · caddy 1 · nginx 2\n- round 2: caddy 10 · nginx 11 · thon 12\n"; got != want {
		t.Errorf("list %q, want %q", got, want)
	}
}

func TestMedianWrk(t *testing.T) {
	ms := time.Millisecond
	got := MedianWrk([]WrkResult{
		{Requests: 9, RPS: 900, P50: 3 * ms, P99: 9 * ms, Non2xx: 1},
		{Requests: 7, RPS: 1000, P50: 1 * ms, P99: 30 * ms},
		{Requests: 8, RPS: 800, P50: 2 * ms, P99: 10 * ms, SockErrors: 2},
	})
	if want := (WrkResult{RPS: 900, P50: 2 * ms, P99: 10 * ms}); got != want {
		t.Errorf("got %+v, want %+v", got, want)
	}
	if got := MedianWrk(nil); got != (WrkResult{}) {
		t.Errorf("none: %+v", got)
	}
}
