package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/thon-dev/thon/bench/internal/benchkit"
)

// report is the outcome of a run: the wrk and WebSocket rounds.
type report struct {
	opts        options
	frontEnds   []frontEnd
	sandboxPort int
	pageSizes   []string // "<front end> <bytes>"
	dockerProxy bool     // Docker's userland proxy carries the sandbox's port
	benchkit.Run
	benchkit.Rounds[sample]
}

// dockerProxyFor reports whether a docker-proxy process forwards host
// port to a container: then every connection to the sandbox's published
// port goes through it.
func dockerProxyFor(port int) bool {
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range procs {
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		args := strings.Split(string(b), "\x00")
		if len(args) == 0 || filepath.Base(args[0]) != "docker-proxy" {
			continue
		}
		for i := 0; i+1 < len(args); i++ {
			if args[i] == "-host-port" && args[i+1] == strconv.Itoa(port) {
				return true
			}
		}
	}
	return false
}

// figures are one front end's medians over the rounds.
type figures struct {
	benchkit.WrkResult
	wsRate float64
}

func (r report) medians(name string) figures {
	var wrk []benchkit.WrkResult
	var ws []float64
	for _, s := range r.Samples[name] {
		wrk = append(wrk, s.wrk)
		ws = append(ws, s.ws.perSecond())
	}
	return figures{WrkResult: benchkit.MedianWrk(wrk), wsRate: benchkit.Median(ws)}
}

// goal is issue 4's: thon's sandbox route at least 0.95× plain Caddy.
const goal = 0.95

// markdown is the Proxy section.
func (r report) markdown() string {
	var b strings.Builder
	o := r.opts
	m := r.Machine
	b.WriteString(r.Heading("Proxy"))
	fmt.Fprintf(&b, "Machine: %d CPUs (%s), %s memory, Linux %s, Docker %s, %s; thon on Caddy %s, nginx %s, %s; load average %s before the rounds, %s after.\n\n",
		m.CPUs, m.CPU, m.Memory, m.Kernel, m.Docker, m.GoVersion, m.Thon, m.Nginx, m.Wrk, r.LoadBefore, r.LoadAfter)
	fmt.Fprintf(&b, "One sandbox, `%s` (a real container with %s CPUs and %d MiB), published on 127.0.0.1:%d; every front end "+
		"listens on 127.0.0.1 and proxies to it, over plain HTTP. **thon** is the thon binary (built from ./cmd/thon) "+
		"running the sandbox route `thon_sandbox` (path /s/<group>/<user>/, prefix stripped, dynamic upstream from the routing table) "+
		"with its defaults; **thon-flush** is the same route with `flush_interval -1` (every write of every response flushed; "+
		"without it Caddy still flushes server-sent events, responses of unknown length and WebSockets immediately). "+
		"**caddy** is the same binary as plain Caddy in its own process, with `reverse_proxy 127.0.0.1:<port>` and nothing else. "+
		"**caddy-tuned** is that plain Caddy with the settings thon_sandbox gives its proxy (`handle_path` on the same prefix, "+
		"`stream_close_delay`, `stream_timeout`, a response header) and a static upstream: thon ÷ caddy-tuned "+
		"is the cost of the dynamic upstream alone. **nginx** runs the site thon's nginx emission writes (the original's layout: "+
		"`proxy_pass` per location, `Connection: upgrade` on every request, so a new upstream connection per request), "+
		"`worker_processes auto`, no access log (Caddy logs none by default). **nginx-keepalive** is the same nginx with a hand-written "+
		"server block tuned as nginx's documentation advises (an `upstream` with `keepalive 64`, `Connection: upgrade` only on upgrade "+
		"requests): nginx at its best.\n\n",
		strings.TrimSuffix(o.image, ":latest"), strconv.FormatFloat(o.cpus, 'f', -1, 64), o.memoryMiB, r.sandboxPort)
	if r.dockerProxy {
		b.WriteString("Docker's userland proxy (`docker-proxy`) carries the published port, so every connection a front end opens " +
			"to the sandbox costs a second one from docker-proxy to the container; it weighs on all front ends, most on one that " +
			"opens a connection per request.\n\n")
	}
	fmt.Fprintf(&b, "HTTP: `wrk -t%d -c%d -d%ds --latency` on the sandbox's page for / (bytes of HTML through each: %s). WebSocket: %d connections, "+
		"each sending a %d-byte message and waiting for its echo, again and again, for %v; every echo is checked. "+
		"%d round(s); in each, every front end runs alone, in an order rotating per round; figures are medians over the rounds",
		o.Threads, o.Connections, int(o.Duration/time.Second), strings.Join(r.pageSizes, ", "), o.wsConns, o.wsSize, o.wsDuration, o.Rounds)
	if o.Warmup > 0 {
		fmt.Fprintf(&b, ", after an unmeasured %v warm-up of each", o.Warmup)
	}
	b.WriteString(". The load generators run on the same 2 CPUs as the proxies and the sandbox.\n\n")

	b.WriteString("| front end | requests/s | p50 | p99 | WebSocket echoes/s | requests/s vs caddy | echoes/s vs caddy |\n")
	b.WriteString("|---|--:|--:|--:|--:|--:|--:|\n")
	caddy := r.medians("caddy")
	for _, fe := range r.frontEnds {
		f := r.medians(fe.name)
		fmt.Fprintf(&b, "| %s | %.0f | %s | %s | %.0f | %.2f× | %.2f× |\n", fe.name, f.RPS, benchkit.FmtDur(f.P50), benchkit.FmtDur(f.P99), f.wsRate,
			benchkit.Ratio(f.RPS, caddy.RPS), benchkit.Ratio(f.wsRate, caddy.wsRate))
	}

	thon, tuned, ngx, ngxKA := r.medians("thon"), r.medians("caddy-tuned"), r.medians("nginx"), r.medians("nginx-keepalive")
	if flush, ok := r.Samples["thon-flush"]; ok && len(flush) > 0 {
		f := r.medians("thon-flush")
		fmt.Fprintf(&b, "\nthon-flush ÷ thon: requests/s %.2f×, p50 latency %.2f×: the cost of `flush_interval -1`.\n",
			benchkit.Ratio(f.RPS, thon.RPS), benchkit.Ratio(f.P50, thon.P50))
	}
	fmt.Fprintf(&b, "\nRatios (medians): thon ÷ caddy: requests/s %.2f×, p50 latency %.2f×, p99 latency %.2f×, WebSocket echoes/s %.2f×. "+
		"thon ÷ caddy-tuned: requests/s %.2f×, WebSocket %.2f×. thon ÷ nginx: requests/s %.2f×, p50 latency %.2f×, p99 latency %.2f×, WebSocket %.2f×. "+
		"thon ÷ nginx-keepalive: requests/s %.2f×, p50 latency %.2f×, p99 latency %.2f×, WebSocket %.2f×.\n\n",
		benchkit.Ratio(thon.RPS, caddy.RPS), benchkit.Ratio(thon.P50, caddy.P50), benchkit.Ratio(thon.P99, caddy.P99), benchkit.Ratio(thon.wsRate, caddy.wsRate),
		benchkit.Ratio(thon.RPS, tuned.RPS), benchkit.Ratio(thon.wsRate, tuned.wsRate),
		benchkit.Ratio(thon.RPS, ngx.RPS), benchkit.Ratio(thon.P50, ngx.P50), benchkit.Ratio(thon.P99, ngx.P99), benchkit.Ratio(thon.wsRate, ngx.wsRate),
		benchkit.Ratio(thon.RPS, ngxKA.RPS), benchkit.Ratio(thon.P50, ngxKA.P50), benchkit.Ratio(thon.P99, ngxKA.P99), benchkit.Ratio(thon.wsRate, ngxKA.wsRate))

	b.WriteString("Every round (requests/s; WebSocket echoes/s), in the order run:\n\n")
	b.WriteString(r.List(func(name string, s sample) string {
		return fmt.Sprintf("%s %.0f; %.0f", name, s.wrk.RPS, s.ws.perSecond())
	}))
	b.WriteString("\n" + r.verdict() + "\n")
	return b.String()
}

// verdict states, from the figures, whether thon met the goal.
func (r report) verdict() string {
	thon, caddy := r.medians("thon"), r.medians("caddy")
	httpR, wsR := benchkit.Ratio(thon.RPS, caddy.RPS), benchkit.Ratio(thon.wsRate, caddy.wsRate)
	var short []string
	if httpR < goal {
		short = append(short, fmt.Sprintf("requests/s %.2f×", httpR))
	}
	if wsR < goal {
		short = append(short, fmt.Sprintf("WebSocket echoes/s %.2f×", wsR))
	}
	if len(short) == 0 {
		return fmt.Sprintf("Goal (issue 4: thon's sandbox route at least %.2f× plain Caddy) met: requests/s %.2f×, WebSocket echoes/s %.2f×.", goal, httpR, wsR)
	}
	return fmt.Sprintf("Goal (issue 4: thon's sandbox route at least %.2f× plain Caddy) not met: %s.", goal, strings.Join(short, ", "))
}
