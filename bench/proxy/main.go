// Command proxy measures thon's sandbox route against plain Caddy's
// reverse_proxy and against nginx, all proxying to the same sandbox.
//
// One sandbox (the test image, a real container) is started by a thon
// process built from ./cmd/thon and published on 127.0.0.1. In front of it,
// on loopback ports:
//
//   - thon: the thon binary with `thon_sandbox`, the request going to
//     /s/<group>/<user>/ and through the dynamic upstream;
//   - caddy: the same binary as plain Caddy with `reverse_proxy
//     127.0.0.1:<port>`, nothing else;
//   - thon-flush: thon's sandbox route with `flush_interval -1`, to tell
//     what flushing every write of every response would cost;
//   - caddy-tuned: the same plain Caddy with the settings thon_sandbox
//     gives its proxy (handle_path on the same prefix, stream timeouts,
//     a response header) from a static upstream, to tell
//     the cost of the dynamic upstream from the cost of those settings;
//   - nginx: the site thon's nginx emission writes (sandboxes/nginx);
//   - nginx-keepalive: the same nginx with a hand-tuned server block
//     (upstream keepalive), nginx at its best.
//
// Each round runs wrk (requests/s and p50/p99 latency) and a WebSocket echo
// load (request/response on N connections) against every front end, one
// at a time, the order rotating per round; each figure is the median over
// the rounds. The table goes to stdout and, unless -results is empty, into
// the "Proxy" section of bench/RESULTS.md.
//
// Usage, from the module root:
//
//	go run ./bench/proxy -rounds 3 -duration 10s
//
// Needs dockerd with the sandbox test image (make sandbox-test-image),
// wrk and nginx.
package main

import (
	"context"
	"crypto/rand"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"time"
)

// options are the command line.
type options struct {
	rounds      int
	duration    time.Duration // of each wrk run
	threads     int
	connections int
	wsConns     int
	wsSize      int
	wsDuration  time.Duration
	warmup      time.Duration
	image       string
	thon        string // binary; "" builds ./cmd/thon
	goBin       string
	wrk         string
	nginx       string
	cpus        float64 // the sandbox's CPU limit
	memoryMiB   int
	results     string
}

func main() {
	o, err := parseFlags(os.Args[1:], os.Stderr)
	if errors.Is(err, flag.ErrHelp) {
		return
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "proxy:", err)
		os.Exit(2)
	}
	if err := run(o); err != nil {
		fmt.Fprintln(os.Stderr, "proxy:", err)
		if errors.Is(err, context.Canceled) {
			os.Exit(130)
		}
		os.Exit(1)
	}
}

func parseFlags(args []string, stderr io.Writer) (options, error) {
	fs := flag.NewFlagSet("proxy", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o options
	fs.IntVar(&o.rounds, "rounds", 3, "rounds over every front end; figures are medians over them")
	fs.DurationVar(&o.duration, "duration", 10*time.Second, "length of each wrk run (whole seconds)")
	fs.IntVar(&o.threads, "threads", 2, "wrk threads (-t)")
	fs.IntVar(&o.connections, "connections", 32, "wrk connections (-c)")
	fs.IntVar(&o.wsConns, "ws-conns", 16, "WebSocket connections of the echo load")
	fs.IntVar(&o.wsSize, "ws-size", 128, "bytes per WebSocket message")
	fs.DurationVar(&o.wsDuration, "ws-duration", 10*time.Second, "length of each WebSocket echo run")
	fs.DurationVar(&o.warmup, "warmup", 2*time.Second, "unmeasured load on every front end before the first round; 0 for none")
	fs.StringVar(&o.image, "image", "thon/sandbox-test:latest", "sandbox image (make sandbox-test-image)")
	fs.StringVar(&o.thon, "thon", "", "thon binary to run; empty builds ./cmd/thon into a temporary directory")
	fs.StringVar(&o.goBin, "go", "go", "go command, to build thon")
	fs.StringVar(&o.wrk, "wrk", "wrk", "wrk executable")
	fs.StringVar(&o.nginx, "nginx", "/usr/sbin/nginx", "nginx executable")
	fs.Float64Var(&o.cpus, "sandbox-cpus", float64(runtime.NumCPU()), "CPU limit of the sandbox container (default: every CPU, so the sandbox is not the bottleneck)")
	fs.IntVar(&o.memoryMiB, "sandbox-memory", 512, "memory limit of the sandbox in MiB")
	fs.StringVar(&o.results, "results", "bench/RESULTS.md", `results file whose "Proxy" section is rewritten; empty for none`)
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	switch {
	case o.rounds < 1:
		return o, fmt.Errorf("rounds: %d is not positive", o.rounds)
	case o.duration < time.Second:
		return o, fmt.Errorf("duration: %v is below wrk's 1s", o.duration)
	case o.threads < 1 || o.connections < o.threads:
		return o, fmt.Errorf("threads %d, connections %d: need 1 ≤ threads ≤ connections", o.threads, o.connections)
	case o.wsConns < 1:
		return o, fmt.Errorf("ws-conns: %d is not positive", o.wsConns)
	case o.wsSize < 8 || o.wsSize > 1<<20:
		return o, fmt.Errorf("ws-size: %d is not from 8 to 1048576", o.wsSize)
	case o.wsDuration <= 0:
		return o, fmt.Errorf("ws-duration: %v is not positive", o.wsDuration)
	case o.warmup < 0:
		return o, fmt.Errorf("warmup: %v is negative", o.warmup)
	case o.cpus <= 0:
		return o, fmt.Errorf("sandbox-cpus: %v is not positive", o.cpus)
	case o.memoryMiB < 64:
		return o, fmt.Errorf("sandbox-memory: %d MiB is below 64", o.memoryMiB)
	case o.image == "":
		return o, errors.New("image: required")
	}
	return o, nil
}

// frontEnd is one proxy in front of the sandbox.
type frontEnd struct {
	name    string
	httpURL string // the sandbox's root page through this proxy
	wsURL   string // its echo endpoint
}

// sample is one front end's figures in one round.
type sample struct {
	wrk wrkResult
	ws  wsResult
}

func run(o options) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	for _, bin := range []string{o.wrk, o.nginx, "docker"} {
		if _, err := exec.LookPath(bin); err != nil {
			return fmt.Errorf("%s is required: %v", bin, err)
		}
	}
	if err := exec.CommandContext(ctx, "docker", "image", "inspect", o.image).Run(); err != nil {
		return fmt.Errorf("image %s is not on the Docker engine: build it with `make sandbox-test-image`", o.image)
	}
	tmp, err := os.MkdirTemp("", "thon-bench-proxy-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)

	thonBin := o.thon
	if thonBin == "" {
		fmt.Fprintln(os.Stderr, "building ./cmd/thon ...")
		if thonBin, err = buildThon(ctx, o.goBin, filepath.Join(tmp, "bin")); err != nil {
			return err
		}
	}
	// Caddy's storage and autosave stay in the temporary directory.
	home := filepath.Join(tmp, "home")
	env := append(os.Environ(), "HOME="+home, "XDG_DATA_HOME="+filepath.Join(home, "data"), "XDG_CONFIG_HOME="+filepath.Join(home, "config"))

	ports := make([]int, 9)
	for i := range ports {
		if ports[i], err = freePort(); err != nil {
			return err
		}
	}
	thonAdmin, thonSite, caddyAdmin, caddyPlain, caddyTuned, nginxHTTP, nginxHTTPS, nginxKeepalive, thonFlush := ports[0], ports[1], ports[2], ports[3], ports[4], ports[5], ports[6], ports[7], ports[8]

	// thon, and through it the sandbox.
	v, _ := rand.Int(rand.Reader, big.NewInt(30000))
	portStart := 20000 + int(v.Int64())
	thonFile := filepath.Join(tmp, "thon.Caddyfile")
	if err := os.WriteFile(thonFile, []byte(thonCaddyfile(thonAdmin, thonSite, thonFlush, portStart, filepath.Join(tmp, "thon"), o.image, o.memoryMiB, o.cpus)), 0o644); err != nil {
		return err
	}
	thon, err := startProc("thon", filepath.Join(tmp, "thon.log"), env, thonBin, "run", "--config", thonFile, "--adapter", "caddyfile")
	if err != nil {
		return err
	}
	defer thon.stop()
	if err := thon.waitHTTP(ctx, fmt.Sprintf("http://localhost:%d/thon/health", thonAdmin), http.StatusOK, time.Minute); err != nil {
		return err
	}
	group, user := "bench"+strings.ToLower(rand.Text()[:6]), "alice"
	defer removeGroup(group)
	roster := fmt.Sprintf("groups:\n  %s: [%s]\n", group, user)
	if err := admin(ctx, thonAdmin, http.MethodPost, "/thon/groups/import", "application/yaml", []byte(roster), nil); err != nil {
		return err
	}
	var inst struct {
		ID    int64  `json:"id"`
		Port  int    `json:"port"`
		State string `json:"state"`
	}
	body := fmt.Appendf(nil, `{"group": %q, "user": %q}`, group, user)
	if err := admin(ctx, thonAdmin, http.MethodPost, "/thon/instances", "application/json", body, &inst); err != nil {
		return fmt.Errorf("launching the sandbox: %w", err)
	}
	if inst.Port == 0 || inst.State != "running" {
		return fmt.Errorf("the sandbox is %s on port %d, want running", inst.State, inst.Port)
	}
	prefix := "/s/" + group + "/" + user

	// Plain Caddy: the same binary, another process, no thon app.
	caddyFile := filepath.Join(tmp, "caddy.Caddyfile")
	if err := os.WriteFile(caddyFile, []byte(caddyCaddyfile(caddyAdmin, caddyPlain, caddyTuned, inst.Port, prefix)), 0o644); err != nil {
		return err
	}
	caddy, err := startProc("caddy", filepath.Join(tmp, "caddy.log"), env, thonBin, "run", "--config", caddyFile, "--adapter", "caddyfile")
	if err != nil {
		return err
	}
	defer caddy.stop()

	// nginx with the site thon emits.
	nginxDir := filepath.Join(tmp, "nginx")
	conf, err := writeNginxSite(nginxDir, nginxHTTP, nginxHTTPS, nginxKeepalive, inst.Port, group, user)
	if err != nil {
		return err
	}
	if out, err := exec.CommandContext(ctx, o.nginx, "-t", "-c", conf).CombinedOutput(); err != nil {
		return fmt.Errorf("nginx -t: %v\n%s", err, out)
	}
	ngx, err := startProc("nginx", filepath.Join(tmp, "nginx.log"), env, o.nginx, "-p", nginxDir, "-c", conf, "-g", "daemon off;")
	if err != nil {
		return err
	}
	defer ngx.stop()

	base := func(port int) string { return fmt.Sprintf("127.0.0.1:%d", port) }
	fes := []frontEnd{
		{"thon", "http://" + base(thonSite) + prefix + "/", "ws://" + base(thonSite) + prefix + "/ws"},
		{"thon-flush", "http://" + base(thonFlush) + prefix + "/", "ws://" + base(thonFlush) + prefix + "/ws"},
		{"caddy", "http://" + base(caddyPlain) + "/", "ws://" + base(caddyPlain) + "/ws"},
		{"caddy-tuned", "http://" + base(caddyTuned) + prefix + "/", "ws://" + base(caddyTuned) + prefix + "/ws"},
		{"nginx", "http://" + base(nginxHTTP) + prefix + "/", "ws://" + base(nginxHTTP) + prefix + "/ws"},
		{"nginx-keepalive", "http://" + base(nginxKeepalive) + prefix + "/", "ws://" + base(nginxKeepalive) + prefix + "/ws"},
	}
	procs := map[string]*proc{"thon": thon, "thon-flush": thon, "caddy": caddy, "caddy-tuned": caddy, "nginx": ngx, "nginx-keepalive": ngx}
	var pageSizes []string
	// Every front end serves the sandbox's own page for "/", prefix
	// stripped, and echoes WebSocket messages.
	for _, fe := range fes {
		if err := procs[fe.name].waitHTTP(ctx, fe.httpURL, http.StatusOK, time.Minute); err != nil {
			return err
		}
		size, err := checkSandboxPage(ctx, fe.httpURL)
		if err != nil {
			return fmt.Errorf("%s: %v", fe.name, err)
		}
		pageSizes = append(pageSizes, fmt.Sprintf("%s %d", fe.name, size))
		if _, err := runWSEcho(ctx, fe.wsURL, 1, o.wsSize, 100*time.Millisecond); err != nil {
			return fmt.Errorf("%s: %v", fe.name, err)
		}
	}

	r := report{opts: o, command: commandLine(), machine: describeMachine(ctx, thonBin, o), frontEnds: fes, sandboxPort: inst.Port, pageSizes: pageSizes}
	r.dockerProxy = dockerProxyFor(inst.Port)
	r.loadBefore = loadAvg()
	if o.warmup > 0 {
		fmt.Fprintf(os.Stderr, "warm-up: %v of wrk and of WebSocket echo on each front end (not measured)\n", o.warmup)
		for _, fe := range fes {
			if _, err := runWrk(ctx, o.wrk, o.threads, o.connections, max(o.warmup, time.Second), fe.httpURL); err != nil {
				return err
			}
			if _, err := runWSEcho(ctx, fe.wsURL, o.wsConns, o.wsSize, o.warmup); err != nil {
				return fmt.Errorf("%s: %v", fe.name, err)
			}
		}
	}
	r.samples = map[string][]sample{}
	for round := range o.rounds {
		order := rotate(fes, round)
		names := make([]string, len(order))
		for i, fe := range order {
			names[i] = fe.name
		}
		r.orders = append(r.orders, names)
		got := map[string]*sample{}
		for _, fe := range order {
			w, err := runWrk(ctx, o.wrk, o.threads, o.connections, o.duration, fe.httpURL)
			if err != nil {
				return err
			}
			if w.non2xx > 0 || w.sockErrors > 0 {
				return fmt.Errorf("%s: wrk saw %d non-2xx responses and %d socket errors", fe.name, w.non2xx, w.sockErrors)
			}
			got[fe.name] = &sample{wrk: w}
			fmt.Fprintf(os.Stderr, "round %d %-12s %9.0f req/s  p50 %-9v p99 %v\n", round+1, fe.name, w.rps, w.p50, w.p99)
		}
		for _, fe := range order {
			ws, err := runWSEcho(ctx, fe.wsURL, o.wsConns, o.wsSize, o.wsDuration)
			if err != nil {
				return fmt.Errorf("%s: %v", fe.name, err)
			}
			got[fe.name].ws = ws
			fmt.Fprintf(os.Stderr, "round %d %-12s %9.0f WebSocket echoes/s\n", round+1, fe.name, ws.perSecond())
		}
		for _, fe := range fes {
			r.samples[fe.name] = append(r.samples[fe.name], *got[fe.name])
		}
	}
	r.loadAfter = loadAvg()
	r.date = time.Now().UTC()

	md := r.markdown()
	fmt.Print(md)
	if o.results != "" {
		if err := updateResults(o.results, "Proxy", md); err != nil {
			return fmt.Errorf("writing %s: %v", o.results, err)
		}
		fmt.Fprintln(os.Stderr, "wrote the Proxy section of", o.results)
	}
	return nil
}

// rotate returns fes starting at index round mod len(fes).
func rotate(fes []frontEnd, round int) []frontEnd {
	k := round % len(fes)
	return append(slices.Clone(fes[k:]), fes[:k]...)
}

// checkSandboxPage requires the sandbox test server's page for "/" and
// returns its size in bytes.
func checkSandboxPage(ctx context.Context, url string) (int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(b), `data-testid="path">/<`) {
		return 0, fmt.Errorf("GET %s: %s, not the sandbox's page for /: %.300s", url, resp.Status, b)
	}
	return len(b), nil
}

// commandLine is how this run was started, for the report.
func commandLine() string {
	args := []string{"go run ./bench/proxy"}
	for _, a := range os.Args[1:] {
		if a == "" || strings.ContainsAny(a, " \t'\"") {
			a = "'" + a + "'"
		}
		args = append(args, a)
	}
	return strings.Join(args, " ")
}
