package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"regexp"
	"strconv"
	"strings"

	"github.com/thon-dev/thon/bench/internal/benchkit"
)

// goBenchmarks are the gateway package's benchmarks this program reports:
// the in-process limiter (its goal: at most 200 ns and no allocation per
// decision and settlement), the Redis limiter, the key lookup and the
// request parsing the handler does.
const goBenchmarks = `^(BenchmarkLocalAcquireSettle|BenchmarkRedisAcquireSettle|BenchmarkKeyringLookup|BenchmarkEstimateRequest|BenchmarkInjectIncludeUsage)$`

// goBench is one benchmark's figures from one `go test -bench` line.
type goBench struct {
	name   string             // without the -GOMAXPROCS suffix
	values map[string]float64 // by unit: ns/op, B/op, allocs/op, roundtrips/op...
}

// runGoBench runs the gateway package's benchmarks count times.
func runGoBench(ctx context.Context, goBin string, count int) (string, []goBench, error) {
	args := []string{"test", "-run", "^$", "-bench", goBenchmarks, "-benchmem", "-count", strconv.Itoa(count), "./gateway/"}
	cmd := exec.CommandContext(ctx, goBin, args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return "", nil, fmt.Errorf("go %s: %v\n%s", strings.Join(args, " "), err, out.String())
	}
	res, err := parseGoBench(out.String())
	if err != nil {
		return "", nil, fmt.Errorf("go %s: %v\n%s", strings.Join(args, " "), err, out.String())
	}
	return "go " + strings.Join(args, " "), res, nil
}

var procsSuffix = regexp.MustCompile(`-\d+$`)

// parseGoBench reads the result lines of `go test -bench`:
//
//	BenchmarkLocalAcquireSettle/reused-2   1967350   121.9 ns/op   0 B/op   0 allocs/op
func parseGoBench(out string) ([]goBench, error) {
	var res []goBench
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 4 || !strings.HasPrefix(f[0], "Benchmark") || len(f)%2 != 0 {
			continue
		}
		if _, err := strconv.ParseInt(f[1], 10, 64); err != nil {
			continue
		}
		b := goBench{name: procsSuffix.ReplaceAllString(f[0], ""), values: map[string]float64{}}
		for i := 2; i+1 < len(f); i += 2 {
			v, err := strconv.ParseFloat(f[i], 64)
			if err != nil {
				return nil, fmt.Errorf("%s: %q is not a number", f[0], f[i])
			}
			b.values[f[i+1]] = v
		}
		if _, ok := b.values["ns/op"]; !ok {
			return nil, fmt.Errorf("%s: no ns/op", f[0])
		}
		res = append(res, b)
	}
	if len(res) == 0 {
		return nil, fmt.Errorf("no benchmark results")
	}
	return res, nil
}

// benchMedians returns, per benchmark in order of first appearance, the
// median of each unit over the runs.
func benchMedians(runs []goBench) []goBench {
	var order []string
	byName := map[string][]goBench{}
	for _, r := range runs {
		if _, ok := byName[r.name]; !ok {
			order = append(order, r.name)
		}
		byName[r.name] = append(byName[r.name], r)
	}
	out := make([]goBench, 0, len(order))
	for _, name := range order {
		m := goBench{name: name, values: map[string]float64{}}
		units := map[string][]float64{}
		for _, r := range byName[name] {
			for u, v := range r.values {
				units[u] = append(units[u], v)
			}
		}
		for u, vs := range units {
			m.values[u] = benchkit.Median(vs)
		}
		out = append(out, m)
	}
	return out
}
