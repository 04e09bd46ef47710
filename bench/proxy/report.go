package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"
)

// machine describes where a run happened.
type machine struct {
	cpus   int
	cpu    string
	memory string
	kernel string
	goVer  string
	thon   string // `thon version`
	nginx  string
	wrk    string
	docker string
}

func describeMachine(ctx context.Context, thonBin string, o options) machine {
	m := machine{cpus: runtime.NumCPU(), goVer: runtime.Version(), cpu: "?", memory: "?", kernel: "?", thon: "?", nginx: "?", wrk: "?", docker: "?"}
	if v, ok := procField("/proc/cpuinfo", "model name"); ok {
		m.cpu = v
	}
	if v, ok := procField("/proc/meminfo", "MemTotal"); ok {
		if kb, err := strconv.ParseInt(strings.TrimSuffix(v, " kB"), 10, 64); err == nil {
			m.memory = fmt.Sprintf("%.1f GiB", float64(kb)/(1<<20))
		}
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.kernel = strings.TrimSpace(string(b))
	}
	first := func(out []byte) string {
		line, _, _ := strings.Cut(strings.TrimSpace(string(out)), "\n")
		return strings.TrimSpace(line)
	}
	// `thon version` prints Caddy's version and module sum.
	if out, err := exec.CommandContext(ctx, thonBin, "version").Output(); err == nil {
		if f := strings.Fields(first(out)); len(f) > 0 {
			m.thon = f[0]
		}
	}
	if out, err := exec.CommandContext(ctx, o.nginx, "-v").CombinedOutput(); err == nil {
		m.nginx = strings.TrimPrefix(first(out), "nginx version: nginx/")
	}
	// wrk -v prints its version and usage, and exits 1.
	if out, _ := exec.CommandContext(ctx, o.wrk, "-v").CombinedOutput(); len(out) > 0 {
		if f := strings.Fields(first(out)); len(f) >= 2 {
			m.wrk = f[0] + " " + f[1]
		}
	}
	if out, err := exec.CommandContext(ctx, "docker", "version", "--format", "{{.Server.Version}}").Output(); err == nil {
		m.docker = first(out)
	}
	return m
}

// procField returns the value of the first "key: value" line of a /proc
// file.
func procField(path, key string) (string, bool) {
	f, err := os.Open(path)
	if err != nil {
		return "", false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if ok && strings.TrimSpace(k) == key {
			return strings.TrimSpace(v), true
		}
	}
	return "", false
}

func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

// report is the outcome of a run.
type report struct {
	opts        options
	command     string
	machine     machine
	date        time.Time
	frontEnds   []frontEnd
	sandboxPort int
	orders      [][]string          // front ends in the order each round ran them
	samples     map[string][]sample // by front end, one per round
	loadBefore  string
	loadAfter   string
	pageSizes   []string // "<front end> <bytes>"
	dockerProxy bool     // Docker's userland proxy carries the sandbox's port
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
	rps, wsRate float64
	p50, p99    time.Duration
}

func (r report) medians(name string) figures {
	var rps, ws []float64
	var p50, p99 []time.Duration
	for _, s := range r.samples[name] {
		rps = append(rps, s.wrk.rps)
		ws = append(ws, s.ws.perSecond())
		p50 = append(p50, s.wrk.p50)
		p99 = append(p99, s.wrk.p99)
	}
	return figures{rps: median(rps), wsRate: median(ws), p50: median(p50), p99: median(p99)}
}

// median of v: the middle value, or the mean of the two middle ones.
func median[T int64 | float64 | time.Duration](v []T) T {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

func ratio(a, b float64) float64 {
	if b == 0 {
		return 0
	}
	return a / b
}

// goal is issue 4's: thon's sandbox route at least 0.95× plain Caddy.
const goal = 0.95

// markdown is the Proxy section.
func (r report) markdown() string {
	var b strings.Builder
	o := r.opts
	m := r.machine
	fmt.Fprintf(&b, "## Proxy\n\n")
	fmt.Fprintf(&b, "Measured %s with `%s`.\n\n", r.date.Format("2006-01-02 15:04 UTC"), r.command)
	fmt.Fprintf(&b, "Machine: %d CPUs (%s), %s memory, Linux %s, Docker %s, %s; thon on Caddy %s, nginx %s, %s; load average %s before the rounds, %s after.\n\n",
		m.cpus, m.cpu, m.memory, m.kernel, m.docker, m.goVer, m.thon, m.nginx, m.wrk, r.loadBefore, r.loadAfter)
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
		o.threads, o.connections, int(o.duration/time.Second), strings.Join(r.pageSizes, ", "), o.wsConns, o.wsSize, o.wsDuration, o.rounds)
	if o.warmup > 0 {
		fmt.Fprintf(&b, ", after an unmeasured %v warm-up of each", o.warmup)
	}
	b.WriteString(". The load generators run on the same 2 CPUs as the proxies and the sandbox.\n\n")

	b.WriteString("| front end | requests/s | p50 | p99 | WebSocket echoes/s | requests/s vs caddy | echoes/s vs caddy |\n")
	b.WriteString("|---|--:|--:|--:|--:|--:|--:|\n")
	caddy := r.medians("caddy")
	for _, fe := range r.frontEnds {
		f := r.medians(fe.name)
		fmt.Fprintf(&b, "| %s | %.0f | %s | %s | %.0f | %.2f× | %.2f× |\n", fe.name, f.rps, fmtDur(f.p50), fmtDur(f.p99), f.wsRate,
			ratio(f.rps, caddy.rps), ratio(f.wsRate, caddy.wsRate))
	}

	thon, tuned, ngx, ngxKA := r.medians("thon"), r.medians("caddy-tuned"), r.medians("nginx"), r.medians("nginx-keepalive")
	if flush, ok := r.samples["thon-flush"]; ok && len(flush) > 0 {
		f := r.medians("thon-flush")
		fmt.Fprintf(&b, "\nthon-flush ÷ thon: requests/s %.2f×, p50 latency %.2f×: the cost of `flush_interval -1`.\n",
			ratio(f.rps, thon.rps), ratio(float64(f.p50), float64(thon.p50)))
	}
	fmt.Fprintf(&b, "\nRatios (medians): thon ÷ caddy: requests/s %.2f×, p50 latency %.2f×, p99 latency %.2f×, WebSocket echoes/s %.2f×. "+
		"thon ÷ caddy-tuned: requests/s %.2f×, WebSocket %.2f×. thon ÷ nginx: requests/s %.2f×, p50 latency %.2f×, p99 latency %.2f×, WebSocket %.2f×. "+
		"thon ÷ nginx-keepalive: requests/s %.2f×, p50 latency %.2f×, p99 latency %.2f×, WebSocket %.2f×.\n\n",
		ratio(thon.rps, caddy.rps), ratio(float64(thon.p50), float64(caddy.p50)), ratio(float64(thon.p99), float64(caddy.p99)), ratio(thon.wsRate, caddy.wsRate),
		ratio(thon.rps, tuned.rps), ratio(thon.wsRate, tuned.wsRate),
		ratio(thon.rps, ngx.rps), ratio(float64(thon.p50), float64(ngx.p50)), ratio(float64(thon.p99), float64(ngx.p99)), ratio(thon.wsRate, ngx.wsRate),
		ratio(thon.rps, ngxKA.rps), ratio(float64(thon.p50), float64(ngxKA.p50)), ratio(float64(thon.p99), float64(ngxKA.p99)), ratio(thon.wsRate, ngxKA.wsRate))

	b.WriteString("Every round (requests/s; WebSocket echoes/s), in the order run:\n\n")
	for i, order := range r.orders {
		parts := make([]string, len(order))
		for j, name := range order {
			s := r.samples[name][i]
			parts[j] = fmt.Sprintf("%s %.0f; %.0f", name, s.wrk.rps, s.ws.perSecond())
		}
		fmt.Fprintf(&b, "- round %d: %s\n", i+1, strings.Join(parts, " · "))
	}
	b.WriteString("\n" + r.verdict() + "\n")
	return b.String()
}

// verdict states, from the figures, whether thon met the goal.
func (r report) verdict() string {
	thon, caddy := r.medians("thon"), r.medians("caddy")
	httpR, wsR := ratio(thon.rps, caddy.rps), ratio(thon.wsRate, caddy.wsRate)
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

// fmtDur prints a latency with three significant digits.
func fmtDur(d time.Duration) string {
	switch {
	case d >= time.Second:
		return fmt.Sprintf("%.3gs", d.Seconds())
	case d >= time.Millisecond:
		return fmt.Sprintf("%.3gms", float64(d)/float64(time.Millisecond))
	default:
		return fmt.Sprintf("%.3gµs", float64(d)/float64(time.Microsecond))
	}
}

// resultsHeader starts a new RESULTS.md; the same as the other benchmarks
// write.
const resultsHeader = `# Benchmark results

How these are produced: ` + "`make bench`" + ` (or ` + "`bench/run.sh`" + `) runs every benchmark of the project
in turn. Each one measures thon and a reference doing the same work in one run, side by side, on the
same machine, and reports the ratio. These machines are small (2 shared cores) and noisy: the absolute
numbers below move from run to run and mean little on their own; the ratios measured in one run, and how
they change with the load, are the result. Each section says the exact command, the machine, and when
it was measured; a section is rewritten by its benchmark, never edited by hand.
`

// updateResults writes body as the section named title of the markdown
// file at path: it replaces the section from its "## title" line up to the
// next "## " heading, or appends it. A missing file is created with
// resultsHeader.
func updateResults(path, title, body string) error {
	old, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		old, err = []byte(resultsHeader), nil
	}
	if err != nil {
		return err
	}
	out := replaceSection(string(old), title, body)
	if bytes.Equal([]byte(out), old) {
		return nil
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(out), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// replaceSection returns doc with the level-2 section named title replaced
// by body, or body appended after a blank line if there is none.
func replaceSection(doc, title, body string) string {
	body = strings.TrimRight(body, "\n") + "\n"
	lines := strings.SplitAfter(doc, "\n")
	start, end := -1, len(lines)
	for i, l := range lines {
		t := strings.TrimRight(l, "\r\n")
		if !strings.HasPrefix(t, "## ") {
			continue
		}
		if start < 0 && strings.TrimSpace(t[3:]) == title {
			start = i
		} else if start >= 0 {
			end = i
			break
		}
	}
	if start < 0 {
		doc = strings.TrimRight(doc, "\n")
		if doc == "" {
			return body
		}
		return doc + "\n\n" + body
	}
	rest := strings.Join(lines[end:], "")
	if rest != "" {
		body += "\n"
	}
	return strings.Join(lines[:start], "") + body + rest
}
