package benchkit

import (
	"fmt"
	"strings"
	"time"
)

// Run is what a report says of its run besides the figures.
type Run struct {
	Command    string    // as CommandLine gives it
	Machine    Machine   // where the figures were taken
	Date       time.Time // when the figures were taken, in UTC
	LoadBefore string    // LoadAvg before the measurements
	LoadAfter  string    // LoadAvg after them
}

// Heading starts the report's section title of RESULTS.md: its heading,
// then when the figures were taken and with which command.
func (r Run) Heading(title string) string {
	return fmt.Sprintf("## %s\n\nMeasured %s with `%s`.\n\n", title, r.Date.Format("2006-01-02 15:04 UTC"), r.Command)
}

// Rounds are the samples a benchmark took of each front end, round after
// round, and the order the front ends ran in.
type Rounds[S any] struct {
	Orders  [][]string     // front-end names in the order each round ran them
	Samples map[string][]S // by front end, one per round
}

// Add records s as the sample of front end name in round (from 0), name
// having run after those added to that round before. Rounds are added
// in order.
func (r *Rounds[S]) Add(round int, name string, s S) {
	if r.Samples == nil {
		r.Samples = map[string][]S{}
	}
	for len(r.Orders) <= round {
		r.Orders = append(r.Orders, nil)
	}
	r.Orders[round] = append(r.Orders[round], name)
	r.Samples[name] = append(r.Samples[name], s)
}

// List is a markdown list with a line per round, "- round N: ", then
// every front end's figures as figures formats them, in the order run,
// joined by " · ".
func (r Rounds[S]) List(figures func(name string, s S) string) string {
	var b strings.Builder
	for i, order := range r.Orders {
		parts := make([]string, len(order))
		for j, name := range order {
			parts[j] = figures(name, r.Samples[name][i])
		}
		fmt.Fprintf(&b, "- round %d: %s\n", i+1, strings.Join(parts, " · "))
	}
	return b.String()
}

// MedianWrk is the median requests/s, p50 and p99 of rs; its other
// figures are zero.
func MedianWrk(rs []WrkResult) WrkResult {
	rps := make([]float64, len(rs))
	p50 := make([]time.Duration, len(rs))
	p99 := make([]time.Duration, len(rs))
	for i, r := range rs {
		rps[i], p50[i], p99[i] = r.RPS, r.P50, r.P99
	}
	return WrkResult{RPS: Median(rps), P50: Median(p50), P99: Median(p99)}
}
