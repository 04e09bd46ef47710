package benchkit

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"os/exec"
	"strconv"
	"strings"
	"time"
)

// WrkResult is what one wrk run reports.
type WrkResult struct {
	Requests   int64         // answered during the run
	RPS        float64       // Requests/sec
	P50, P99   time.Duration // from the latency distribution
	Non2xx     int64         // "Non-2xx or 3xx responses"
	SockErrors int64         // connect + read + write + timeout
}

// WrkOptions are how wrk is run.
type WrkOptions struct {
	Bin         string        // wrk executable
	Threads     int           // -t
	Connections int           // -c
	Duration    time.Duration // of the run, in whole seconds
	Script      string        // Lua script (-s), e.g. setting the method and body; "" for none
	Headers     []string      // request headers (-H), "Name: value"
}

// RunWrk runs wrk with --latency against url and parses its report. The
// duration is rounded to whole seconds.
func RunWrk(ctx context.Context, o WrkOptions, url string) (WrkResult, error) {
	args := []string{
		"-t", strconv.Itoa(o.Threads), "-c", strconv.Itoa(o.Connections),
		"-d", strconv.Itoa(int(o.Duration.Round(time.Second)/time.Second)) + "s",
		"--timeout", "10s", "--latency",
	}
	if o.Script != "" {
		args = append(args, "-s", o.Script)
	}
	for _, h := range o.Headers {
		args = append(args, "-H", h)
	}
	args = append(args, url)
	cmd := exec.CommandContext(ctx, o.Bin, args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return WrkResult{}, fmt.Errorf("wrk %s: %v: %s", strings.Join(args, " "), err, out.String())
	}
	r, err := ParseWrk(out.String())
	if err != nil {
		return r, fmt.Errorf("wrk %s: %v\n%s", strings.Join(args, " "), err, out.String())
	}
	return r, nil
}

// ParseWrk reads the report of `wrk --latency`:
//
//	  Latency Distribution
//	     50%  412.00us
//	     99%    2.31ms
//	  123456 requests in 10.00s, 45.67MB read
//	  Socket errors: connect 0, read 0, write 0, timeout 0
//	  Non-2xx or 3xx responses: 12
//	Requests/sec:  12345.67
func ParseWrk(out string) (WrkResult, error) {
	var r WrkResult
	var haveRPS, haveP50, haveP99, haveReq bool
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		f := strings.Fields(line)
		switch {
		case len(f) == 2 && (f[0] == "50%" || f[0] == "99%"):
			d, err := parseWrkDuration(f[1])
			if err != nil {
				return r, fmt.Errorf("latency %s: %v", f[0], err)
			}
			if f[0] == "50%" {
				r.P50, haveP50 = d, true
			} else {
				r.P99, haveP99 = d, true
			}
		case len(f) >= 3 && f[1] == "requests" && f[2] == "in":
			n, err := strconv.ParseInt(f[0], 10, 64)
			if err != nil {
				return r, fmt.Errorf("requests: %q is not a number", f[0])
			}
			r.Requests, haveReq = n, true
		case strings.HasPrefix(line, "Requests/sec:") && len(f) == 2:
			v, err := strconv.ParseFloat(f[1], 64)
			if err != nil {
				return r, fmt.Errorf("requests/sec: %q is not a number", f[1])
			}
			r.RPS, haveRPS = v, true
		case strings.HasPrefix(line, "Non-2xx or 3xx responses:") && len(f) == 5:
			n, err := strconv.ParseInt(f[4], 10, 64)
			if err != nil {
				return r, fmt.Errorf("non-2xx: %q is not a number", f[4])
			}
			r.Non2xx = n
		case strings.HasPrefix(line, "Socket errors:"):
			// "Socket errors: connect 0, read 0, write 0, timeout 0"
			for i := 2; i+1 < len(f); i += 2 {
				n, err := strconv.ParseInt(strings.TrimSuffix(f[i+1], ","), 10, 64)
				if err != nil {
					return r, fmt.Errorf("socket errors: %q is not a number", f[i+1])
				}
				r.SockErrors += n
			}
		}
	}
	switch {
	case !haveRPS:
		return r, errors.New("no Requests/sec line")
	case !haveP50 || !haveP99:
		return r, errors.New("no latency distribution (was --latency given?)")
	case !haveReq:
		return r, errors.New("no request count")
	}
	return r, nil
}

// parseWrkDuration parses wrk's durations: 412.00us, 2.31ms, 1.02s, 3.00m.
func parseWrkDuration(s string) (time.Duration, error) {
	units := []struct {
		suffix string
		unit   time.Duration
	}{{"us", time.Microsecond}, {"ms", time.Millisecond}, {"s", time.Second}, {"m", time.Minute}, {"h", time.Hour}}
	for _, u := range units {
		if num, ok := strings.CutSuffix(s, u.suffix); ok {
			v, err := strconv.ParseFloat(num, 64)
			if err != nil || v < 0 {
				return 0, fmt.Errorf("%q is not a duration", s)
			}
			return time.Duration(math.Round(v * float64(u.unit))), nil
		}
	}
	return 0, fmt.Errorf("%q has no unit", s)
}
