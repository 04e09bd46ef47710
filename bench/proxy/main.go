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
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/thon-dev/thon/bench/internal/benchkit"
	"github.com/thon-dev/thon/internal/serverproc"
)

// options are the command line.
type options struct {
	benchkit.Flags
	wsConns    int
	wsSize     int
	wsDuration time.Duration
	image      string
	cpus       float64 // the sandbox's CPU limit
	memoryMiB  int
}

func main() {
	benchkit.Main("proxy", parseFlags, run)
}

func parseFlags(args []string, stderr io.Writer) (options, error) {
	var o options
	fs := o.FlagSet("proxy", stderr, "Proxy", "to build thon")
	fs.IntVar(&o.wsConns, "ws-conns", 16, "WebSocket connections of the echo load")
	fs.IntVar(&o.wsSize, "ws-size", 128, "bytes per WebSocket message")
	fs.DurationVar(&o.wsDuration, "ws-duration", 10*time.Second, "length of each WebSocket echo run")
	fs.StringVar(&o.image, "image", "thon/sandbox-test:latest", "sandbox image (make sandbox-test-image)")
	fs.Float64Var(&o.cpus, "sandbox-cpus", float64(runtime.NumCPU()), "CPU limit of the sandbox container (default: every CPU, so the sandbox is not the bottleneck)")
	fs.IntVar(&o.memoryMiB, "sandbox-memory", 512, "memory limit of the sandbox in MiB")
	if err := o.Parse(fs, args); err != nil {
		return o, err
	}
	switch {
	case o.wsConns < 1:
		return o, fmt.Errorf("ws-conns: %d is not positive", o.wsConns)
	case o.wsSize < 8 || o.wsSize > 1<<20:
		return o, fmt.Errorf("ws-size: %d is not from 8 to 1048576", o.wsSize)
	case o.wsDuration <= 0:
		return o, fmt.Errorf("ws-duration: %v is not positive", o.wsDuration)
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
	wrk benchkit.WrkResult
	ws  wsResult
}

func run(ctx context.Context, o options) error {
	if err := benchkit.Require(o.Wrk, o.Nginx, "docker"); err != nil {
		return err
	}
	if err := exec.CommandContext(ctx, "docker", "image", "inspect", o.image).Run(); err != nil {
		return fmt.Errorf("image %s is not on the Docker engine: build it with `make sandbox-test-image`", o.image)
	}
	work, err := o.Workspace(ctx, "proxy")
	if err != nil {
		return err
	}
	defer work.Remove()

	ports, err := serverproc.FreePorts(9)
	if err != nil {
		return err
	}
	thonAdmin, thonSite, caddyAdmin, caddyPlain, caddyTuned, nginxHTTP, nginxHTTPS, nginxKeepalive, thonFlush := ports[0], ports[1], ports[2], ports[3], ports[4], ports[5], ports[6], ports[7], ports[8]

	// thon, and through it the sandbox.
	portStart := benchkit.PortBase(20)
	thon, err := work.StartCaddy("thon", thonCaddyfile(thonAdmin, thonSite, thonFlush, portStart, filepath.Join(work.Dir, "thon"), o.image, o.memoryMiB, o.cpus))
	if err != nil {
		return err
	}
	defer thon.Stop()
	if err := thon.WaitHTTP(ctx, fmt.Sprintf("http://localhost:%d/thon/health", thonAdmin), http.StatusOK, time.Minute); err != nil {
		return err
	}
	group, user := "bench"+strings.ToLower(rand.Text()[:6]), "alice"
	defer func() {
		if err := benchkit.RemoveGroup(group); err != nil {
			fmt.Fprintf(os.Stderr, "cleanup of %s: %v\n", group, err)
		}
	}()
	admin := benchkit.Admin{Port: thonAdmin, Timeout: 3 * time.Minute}
	roster := fmt.Sprintf("groups:\n  %s: [%s]\n", group, user)
	if err := admin.Call(ctx, http.MethodPost, "/thon/groups/import", "application/yaml", []byte(roster), nil); err != nil {
		return err
	}
	var inst struct {
		ID    int64  `json:"id"`
		Port  int    `json:"port"`
		State string `json:"state"`
	}
	body := fmt.Appendf(nil, `{"group": %q, "user": %q}`, group, user)
	if err := admin.Call(ctx, http.MethodPost, "/thon/instances", "application/json", body, &inst); err != nil {
		return fmt.Errorf("launching the sandbox: %w", err)
	}
	if inst.Port == 0 || inst.State != "running" {
		return fmt.Errorf("the sandbox is %s on port %d, want running", inst.State, inst.Port)
	}
	prefix := "/s/" + group + "/" + user

	// Plain Caddy: the same binary, another process, no thon app.
	caddy, err := work.StartCaddy("caddy", caddyCaddyfile(caddyAdmin, caddyPlain, caddyTuned, inst.Port, prefix))
	if err != nil {
		return err
	}
	defer caddy.Stop()

	// nginx with the site thon emits.
	nginxDir := filepath.Join(work.Dir, "nginx")
	conf, err := writeNginxSite(nginxDir, nginxHTTP, nginxHTTPS, nginxKeepalive, inst.Port, group, user)
	if err != nil {
		return err
	}
	ngx, err := work.StartNginx(ctx, o.Nginx, conf)
	if err != nil {
		return err
	}
	defer ngx.Stop()

	base := func(port int) string { return fmt.Sprintf("127.0.0.1:%d", port) }
	fes := []frontEnd{
		{"thon", "http://" + base(thonSite) + prefix + "/", "ws://" + base(thonSite) + prefix + "/ws"},
		{"thon-flush", "http://" + base(thonFlush) + prefix + "/", "ws://" + base(thonFlush) + prefix + "/ws"},
		{"caddy", "http://" + base(caddyPlain) + "/", "ws://" + base(caddyPlain) + "/ws"},
		{"caddy-tuned", "http://" + base(caddyTuned) + prefix + "/", "ws://" + base(caddyTuned) + prefix + "/ws"},
		{"nginx", "http://" + base(nginxHTTP) + prefix + "/", "ws://" + base(nginxHTTP) + prefix + "/ws"},
		{"nginx-keepalive", "http://" + base(nginxKeepalive) + prefix + "/", "ws://" + base(nginxKeepalive) + prefix + "/ws"},
	}
	procs := map[string]*serverproc.Proc{"thon": thon, "thon-flush": thon, "caddy": caddy, "caddy-tuned": caddy, "nginx": ngx, "nginx-keepalive": ngx}
	var pageSizes []string
	// Every front end serves the sandbox's own page for "/", prefix
	// stripped, and echoes WebSocket messages.
	for _, fe := range fes {
		if err := procs[fe.name].WaitHTTP(ctx, fe.httpURL, http.StatusOK, time.Minute); err != nil {
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

	tools := benchkit.Tools{Thon: work.Thon, Nginx: o.Nginx, Wrk: o.Wrk, Docker: true}
	r := report{opts: o, frontEnds: fes, sandboxPort: inst.Port, pageSizes: pageSizes, dockerProxy: dockerProxyFor(inst.Port)}
	r.Command, r.Machine = benchkit.CommandLine("proxy", os.Args[1:]), benchkit.DescribeMachine(ctx, tools)
	r.LoadBefore = benchkit.LoadAvg()
	if o.Warmup > 0 {
		fmt.Fprintf(os.Stderr, "warm-up: %v of wrk and of WebSocket echo on each front end (not measured)\n", o.Warmup)
		for _, fe := range fes {
			if _, err := benchkit.RunWrk(ctx, o.WrkOptions(max(o.Warmup, time.Second)), fe.httpURL); err != nil {
				return err
			}
			if _, err := runWSEcho(ctx, fe.wsURL, o.wsConns, o.wsSize, o.Warmup); err != nil {
				return fmt.Errorf("%s: %v", fe.name, err)
			}
		}
	}
	for round := range o.Rounds {
		order := benchkit.Rotate(fes, round)
		got := map[string]*sample{}
		for _, fe := range order {
			w, err := benchkit.RunWrk(ctx, o.WrkOptions(o.Duration), fe.httpURL)
			if err != nil {
				return err
			}
			if w.Non2xx > 0 || w.SockErrors > 0 {
				return fmt.Errorf("%s: wrk saw %d non-2xx responses and %d socket errors", fe.name, w.Non2xx, w.SockErrors)
			}
			got[fe.name] = &sample{wrk: w}
			fmt.Fprintf(os.Stderr, "round %d %-12s %9.0f req/s  p50 %-9v p99 %v\n", round+1, fe.name, w.RPS, w.P50, w.P99)
		}
		for _, fe := range order {
			ws, err := runWSEcho(ctx, fe.wsURL, o.wsConns, o.wsSize, o.wsDuration)
			if err != nil {
				return fmt.Errorf("%s: %v", fe.name, err)
			}
			got[fe.name].ws = ws
			fmt.Fprintf(os.Stderr, "round %d %-12s %9.0f WebSocket echoes/s\n", round+1, fe.name, ws.perSecond())
		}
		for _, fe := range order {
			r.Add(round, fe.name, *got[fe.name])
		}
	}
	r.LoadAfter = benchkit.LoadAvg()
	r.Date = time.Now().UTC()

	md := r.markdown()
	fmt.Print(md)
	if o.Results != "" {
		if err := benchkit.UpdateResults(o.Results, "Proxy", md); err != nil {
			return fmt.Errorf("writing %s: %v", o.Results, err)
		}
		fmt.Fprintln(os.Stderr, "wrote the Proxy section of", o.Results)
	}
	return nil
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
