// Command gateway measures thon's AI gateway against plain Caddy's
// reverse_proxy and against nginx, all in front of the same LLM server, and
// the gateway's limiter on its own.
//
// The upstream is a Lemonade stand-in in this process (see upstream.go) on
// a loopback port, answering non-streamed chat completions with a small
// JSON body. In front of it, on loopback ports:
//
//   - thon: the thon binary (built from ./cmd/thon) with `thon_gateway`:
//     key lookup, request estimate, concurrency and token reservation in
//     the in-process limiter, Lemonade's key put in, usage read and
//     recorded, settlement;
//   - thon-redis: the same with its limits in Redis (`gateway { redis }`),
//     two round trips per request;
//   - caddy: the same binary as plain Caddy with `reverse_proxy` and
//     `header_up Authorization` (the key swap, nothing else);
//   - nginx: proxy_pass to an upstream with keepalive, the Authorization
//     header set, proxy_buffering off (as an LLM proxy needs for streams).
//
// Each round runs wrk (POST of a small chat completion, with an
// Authorization header) against every front end, one at a time, the order
// rotating per round; figures are medians over the rounds. Then `go test
// -bench` runs the gateway package's limiter benchmarks. The report goes
// to stdout and, unless -results is empty, into the "Gateway" section of
// bench/RESULTS.md.
//
// Usage, from the module root:
//
//	go run ./bench/gateway -rounds 3 -duration 10s
//
// Needs wrk, nginx and (for thon-redis) redis-server on 127.0.0.1:6379.
package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
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

	"github.com/redis/go-redis/v9"
)

// options are the command line.
type options struct {
	rounds      int
	duration    time.Duration
	threads     int
	connections int
	warmup      time.Duration
	thon        string
	goBin       string
	wrk         string
	nginx       string
	redis       string
	benchCount  int
	results     string
}

func main() {
	o, err := parseFlags(os.Args[1:], os.Stderr)
	if errors.Is(err, flag.ErrHelp) {
		return
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "gateway:", err)
		os.Exit(2)
	}
	if err := run(o); err != nil {
		fmt.Fprintln(os.Stderr, "gateway:", err)
		if errors.Is(err, context.Canceled) {
			os.Exit(130)
		}
		os.Exit(1)
	}
}

func parseFlags(args []string, stderr io.Writer) (options, error) {
	fs := flag.NewFlagSet("gateway", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o options
	fs.IntVar(&o.rounds, "rounds", 3, "rounds over every front end; figures are medians over them")
	fs.DurationVar(&o.duration, "duration", 10*time.Second, "length of each wrk run (whole seconds)")
	fs.IntVar(&o.threads, "threads", 2, "wrk threads (-t)")
	fs.IntVar(&o.connections, "connections", 32, "wrk connections (-c)")
	fs.DurationVar(&o.warmup, "warmup", 2*time.Second, "unmeasured load on every front end before the first round; 0 for none")
	fs.StringVar(&o.thon, "thon", "", "thon binary to run; empty builds ./cmd/thon into a temporary directory")
	fs.StringVar(&o.goBin, "go", "go", "go command, to build thon and run the limiter benchmarks")
	fs.StringVar(&o.wrk, "wrk", "wrk", "wrk executable")
	fs.StringVar(&o.nginx, "nginx", "/usr/sbin/nginx", "nginx executable")
	fs.StringVar(&o.redis, "redis", "127.0.0.1:6379", "Redis for the thon-redis front end; empty leaves it out")
	fs.IntVar(&o.benchCount, "bench-count", 5, "runs of each limiter benchmark (go test -count); medians are reported")
	fs.StringVar(&o.results, "results", "bench/RESULTS.md", `results file whose "Gateway" section is rewritten; empty for none`)
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
	case o.warmup < 0:
		return o, fmt.Errorf("warmup: %v is negative", o.warmup)
	case o.benchCount < 1:
		return o, fmt.Errorf("bench-count: %d is not positive", o.benchCount)
	}
	return o, nil
}

// requestBody is the chat completion every front end is sent.
const requestBody = `{"model":"user.gemma-4-31b-it","messages":[{"role":"user","content":"Write a haiku about hackathons."}],"max_tokens":64}`

// frontEnd is one proxy in front of the upstream.
type frontEnd struct {
	name string
	url  string // its /v1/chat/completions
	key  string // sent as Authorization: Bearer
	// thon's admin port, to read the limiter's Redis round trips.
	adminPort int
}

// sample is one front end's figures in one round.
type sample struct {
	wrk        wrkResult
	roundTrips uint64 // Redis round trips during the run (thon-redis)
	upstream   int64  // requests that reached the upstream during the run
}

func run(o options) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	for _, bin := range []string{o.wrk, o.nginx} {
		if _, err := exec.LookPath(bin); err != nil {
			return fmt.Errorf("%s is required: %v", bin, err)
		}
	}
	var rdb *redis.Client
	var redisPrefix string
	if o.redis != "" {
		rdb = redis.NewClient(&redis.Options{Addr: o.redis, DisableIdentity: true})
		defer rdb.Close()
		if err := rdb.Ping(ctx).Err(); err != nil {
			return fmt.Errorf("redis at %s (for thon-redis; -redis '' leaves it out): %v", o.redis, err)
		}
		var id [6]byte
		_, _ = rand.Read(id[:])
		redisPrefix = "thon:bench:" + hex.EncodeToString(id[:]) + ":"
		defer deleteKeys(rdb, redisPrefix)
	}
	tmp, err := os.MkdirTemp("", "thon-bench-gateway-")
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
	home := filepath.Join(tmp, "home")
	env := append(os.Environ(), "HOME="+home, "XDG_DATA_HOME="+filepath.Join(home, "data"), "XDG_CONFIG_HOME="+filepath.Join(home, "config"))

	lemonadeKey := "lemonade-" + rand.Text()
	up, err := startUpstream(lemonadeKey)
	if err != nil {
		return err
	}
	defer up.close()

	ports := make([]int, 7)
	for i := range ports {
		if ports[i], err = freePort(); err != nil {
			return err
		}
	}
	thonAdmin, thonSite, redisAdmin, redisSite, caddyAdmin, caddySite, nginxSite := ports[0], ports[1], ports[2], ports[3], ports[4], ports[5], ports[6]

	var fes []frontEnd
	procs := map[string]*proc{}
	startThon := func(name string, adminPort, site int, gatewayBlock string) error {
		file := filepath.Join(tmp, name+".Caddyfile")
		if err := os.WriteFile(file, []byte(thonCaddyfile(adminPort, site, filepath.Join(tmp, name), up.addr(), lemonadeKey, gatewayBlock)), 0o600); err != nil {
			return err
		}
		p, err := startProc(name, filepath.Join(tmp, name+".log"), env, thonBin, "run", "--config", file, "--adapter", "caddyfile")
		if err != nil {
			return err
		}
		procs[name] = p
		if err := p.waitHTTP(ctx, fmt.Sprintf("http://localhost:%d/thon/health", adminPort), http.StatusOK, time.Minute); err != nil {
			return err
		}
		key, err := setupConsumer(ctx, adminPort)
		if err != nil {
			return fmt.Errorf("%s: %v", name, err)
		}
		fes = append(fes, frontEnd{name: name, url: fmt.Sprintf("http://127.0.0.1:%d/v1/chat/completions", site), key: key, adminPort: adminPort})
		return nil
	}
	defer func() {
		for _, p := range procs {
			p.stop()
		}
	}()
	if err := startThon("thon", thonAdmin, thonSite, ""); err != nil {
		return err
	}
	if o.redis != "" {
		block := fmt.Sprintf("gateway {\n\t\t\tredis %s\n\t\t\tredis_prefix %s\n\t\t}", o.redis, redisPrefix)
		if err := startThon("thon-redis", redisAdmin, redisSite, block); err != nil {
			return err
		}
	}

	caddyFile := filepath.Join(tmp, "caddy.Caddyfile")
	if err := os.WriteFile(caddyFile, []byte(caddyCaddyfile(caddyAdmin, caddySite, up.addr(), lemonadeKey)), 0o600); err != nil {
		return err
	}
	cp, err := startProc("caddy", filepath.Join(tmp, "caddy.log"), env, thonBin, "run", "--config", caddyFile, "--adapter", "caddyfile")
	if err != nil {
		return err
	}
	procs["caddy"] = cp
	fes = append(fes, frontEnd{name: "caddy", url: fmt.Sprintf("http://127.0.0.1:%d/v1/chat/completions", caddySite), key: "client-key"})

	nginxDir := filepath.Join(tmp, "nginx")
	conf, err := writeNginx(nginxDir, nginxSite, up.addr(), lemonadeKey)
	if err != nil {
		return err
	}
	if out, err := exec.CommandContext(ctx, o.nginx, "-t", "-c", conf).CombinedOutput(); err != nil {
		return fmt.Errorf("nginx -t: %v\n%s", err, out)
	}
	np, err := startProc("nginx", filepath.Join(tmp, "nginx.log"), env, o.nginx, "-p", nginxDir, "-c", conf, "-g", "daemon off;")
	if err != nil {
		return err
	}
	procs["nginx"] = np
	fes = append(fes, frontEnd{name: "nginx", url: fmt.Sprintf("http://127.0.0.1:%d/v1/chat/completions", nginxSite), key: "client-key"})

	// Every front end answers the upstream's completion, byte for byte.
	for _, fe := range fes {
		if err := waitAnswer(ctx, procs[fe.name], fe, up.answer); err != nil {
			return err
		}
	}
	script := filepath.Join(tmp, "post.lua")
	if err := os.WriteFile(script, []byte(wrkScript(requestBody)), 0o644); err != nil {
		return err
	}

	r := report{opts: o, command: commandLine(), machine: describeMachine(ctx, thonBin, o), frontEnds: fes, answerBytes: len(up.answer)}
	r.loadBefore = loadAvg()
	if o.warmup > 0 {
		fmt.Fprintf(os.Stderr, "warm-up: %v of wrk on each front end (not measured)\n", o.warmup)
		for _, fe := range fes {
			if _, err := runWrk(ctx, o.wrk, o.threads, o.connections, max(o.warmup, time.Second), script, fe.headers(), fe.url); err != nil {
				return err
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
		for _, fe := range order {
			rtBefore, err := redisRoundTrips(ctx, fe)
			if err != nil {
				return err
			}
			upBefore := up.requests.Load()
			w, err := runWrk(ctx, o.wrk, o.threads, o.connections, o.duration, script, fe.headers(), fe.url)
			if err != nil {
				return err
			}
			if w.non2xx > 0 || w.sockErrors > 0 {
				return fmt.Errorf("%s: wrk saw %d non-2xx responses and %d socket errors", fe.name, w.non2xx, w.sockErrors)
			}
			rtAfter, err := redisRoundTrips(ctx, fe)
			if err != nil {
				return err
			}
			s := sample{wrk: w, roundTrips: rtAfter - rtBefore, upstream: up.requests.Load() - upBefore}
			r.samples[fe.name] = append(r.samples[fe.name], s)
			fmt.Fprintf(os.Stderr, "round %d %-10s %9.0f req/s  p50 %-9v p99 %v\n", round+1, fe.name, w.rps, w.p50, w.p99)
		}
	}
	r.loadAfter = loadAvg()

	fmt.Fprintln(os.Stderr, "running the limiter benchmarks (go test -bench) ...")
	if r.benchCommand, r.benches, err = runGoBench(ctx, o.goBin, o.benchCount); err != nil {
		return err
	}
	r.date = time.Now().UTC()
	md := r.markdown()
	fmt.Print(md)
	if o.results != "" {
		if err := updateResults(o.results, "Gateway", md); err != nil {
			return fmt.Errorf("writing %s: %v", o.results, err)
		}
		fmt.Fprintln(os.Stderr, "wrote the Gateway section of", o.results)
	}
	return nil
}

func (fe frontEnd) headers() []string {
	return []string{"Authorization: Bearer " + fe.key}
}

// rotate returns fes starting at index round mod len(fes).
func rotate(fes []frontEnd, round int) []frontEnd {
	k := round % len(fes)
	return append(slices.Clone(fes[k:]), fes[:k]...)
}

// setupConsumer imports a one-user roster into a thon and sets its
// gateway up with limits that every request of the benchmark fits in (so
// that both limits are checked, and none refuses), returning the key.
func setupConsumer(ctx context.Context, adminPort int) (string, error) {
	if err := admin(ctx, adminPort, http.MethodPost, "/thon/groups/import", "application/yaml", []byte("groups:\n  bench: [alice]\n"), nil); err != nil {
		return "", err
	}
	var out struct {
		Consumers []struct{ Username, Key string }
	}
	body := []byte(`{"mode": "per-user", "concurrency_limit": 1000, "token_limit": 1000000000000, "token_window": 60}`)
	if err := admin(ctx, adminPort, http.MethodPost, "/thon/gateway/setup", "application/json", body, &out); err != nil {
		return "", err
	}
	if len(out.Consumers) != 1 || out.Consumers[0].Key == "" {
		return "", fmt.Errorf("gateway setup gave %d consumers", len(out.Consumers))
	}
	return out.Consumers[0].Key, nil
}

// redisRoundTrips reads the Redis round trips of a thon's limiter (0 for
// other front ends and the in-process limiter).
func redisRoundTrips(ctx context.Context, fe frontEnd) (uint64, error) {
	if fe.adminPort == 0 {
		return 0, nil
	}
	var st struct {
		Runtime struct {
			RedisRoundTrips uint64 `json:"redis_round_trips"`
		} `json:"runtime"`
	}
	if err := admin(ctx, fe.adminPort, http.MethodGet, "/thon/gateway/status", "", nil, &st); err != nil {
		return 0, err
	}
	return st.Runtime.RedisRoundTrips, nil
}

// waitAnswer waits until the front end answers a chat completion with the
// upstream's answer.
func waitAnswer(ctx context.Context, p *proc, fe frontEnd, want []byte) error {
	deadline := time.Now().Add(time.Minute)
	client := &http.Client{Timeout: 5 * time.Second}
	var last string
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, fe.url, strings.NewReader(requestBody))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer "+fe.key)
		resp, err := client.Do(req)
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK && bytes.Equal(b, want) {
				return nil
			}
			last = fmt.Sprintf("%s: %.300s", resp.Status, b)
		} else {
			last = err.Error()
		}
		select {
		case err := <-p.exited:
			p.exited <- err
			return fmt.Errorf("%s exited (%v):\n%s", p.name, err, p.tail())
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s does not answer the upstream's completion (last: %s)\n%s", fe.name, last, p.tail())
		}
	}
}

// wrkScript makes wrk POST body as JSON.
func wrkScript(body string) string {
	return fmt.Sprintf("wrk.method = \"POST\"\nwrk.body = [[%s]]\nwrk.headers[\"Content-Type\"] = \"application/json\"\n", body)
}

// thonCaddyfile is thon with the gateway on a loopback site and Lemonade
// at upstream.
func thonCaddyfile(adminPort, site int, dataDir, upstream, key, gatewayBlock string) string {
	return fmt.Sprintf(`{
	admin localhost:%d
	persist_config off
	skip_install_trust
	thon {
		data_dir %s
		lemonade {
			url http://%s
			api_key %s
			health_interval 1h
		}
		%s
	}
}

http://:%d {
	bind 127.0.0.1
	thon_gateway
	respond 404
}
`, adminPort, dataDir, upstream, key, gatewayBlock, site)
}

// caddyCaddyfile is plain Caddy: reverse_proxy to the upstream with its
// key put in place of the client's, nothing else.
func caddyCaddyfile(adminPort, site int, upstream, key string) string {
	return fmt.Sprintf(`{
	admin localhost:%d
	persist_config off
}

http://:%d {
	bind 127.0.0.1
	reverse_proxy %s {
		header_up Authorization "Bearer %s"
	}
}
`, adminPort, site, upstream, key)
}

// writeNginx writes nginx.conf under dir: one worker per CPU as Caddy uses
// every CPU, no access log (Caddy logs none by default), an upstream with
// keepalive connections (nginx at its best), the upstream's key put in,
// and no response buffering, as an LLM proxy needs for streams.
func writeNginx(dir string, port int, upstream, key string) (string, error) {
	if err := os.MkdirAll(filepath.Join(dir, "temp"), 0o755); err != nil {
		return "", err
	}
	user := ""
	if os.Geteuid() == 0 {
		user = "user root;\n"
	}
	conf := fmt.Sprintf(`%sworker_processes auto;
pid %[2]s/nginx.pid;
error_log %[2]s/error.log warn;
events {
    worker_connections 4096;
}
http {
    access_log off;
    client_body_temp_path %[2]s/temp/body;
    proxy_temp_path %[2]s/temp/proxy;
    fastcgi_temp_path %[2]s/temp/fastcgi;
    uwsgi_temp_path %[2]s/temp/uwsgi;
    scgi_temp_path %[2]s/temp/scgi;
    upstream lemonade {
        server %[3]s;
        keepalive 64;
    }
    server {
        listen 127.0.0.1:%[4]d;
        location /v1/ {
            proxy_pass http://lemonade;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Authorization "Bearer %[5]s";
            proxy_buffering off;
        }
    }
}
`, user, dir, upstream, port, key)
	path := filepath.Join(dir, "nginx.conf")
	return path, os.WriteFile(path, []byte(conf), 0o600)
}

// deleteKeys removes the benchmark's keys from Redis.
func deleteKeys(c *redis.Client, prefix string) {
	ctx := context.Background()
	var keys []string
	it := c.Scan(ctx, 0, prefix+"*", 100).Iterator()
	for it.Next(ctx) {
		keys = append(keys, it.Val())
	}
	if len(keys) > 0 {
		c.Del(ctx, keys...)
	}
}

// commandLine is how this run was started, for the report.
func commandLine() string {
	args := []string{"go run ./bench/gateway"}
	for _, a := range os.Args[1:] {
		if a == "" || strings.ContainsAny(a, " \t'\"") {
			a = "'" + a + "'"
		}
		args = append(args, a)
	}
	return strings.Join(args, " ")
}

// machine describes where a run happened.
type machine struct {
	cpus                                                int
	cpu, memory, kernel, goVer, thon, nginx, wrk, redis string
}

func describeMachine(ctx context.Context, thonBin string, o options) machine {
	m := machine{cpus: runtime.NumCPU(), goVer: runtime.Version(), cpu: "?", memory: "?", kernel: "?", thon: "?", nginx: "?", wrk: "?", redis: "-"}
	if v, ok := procField("/proc/cpuinfo", "model name"); ok {
		m.cpu = v
	}
	if v, ok := procField("/proc/meminfo", "MemTotal"); ok {
		var kb int64
		if _, err := fmt.Sscanf(v, "%d kB", &kb); err == nil {
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
	if out, err := exec.CommandContext(ctx, thonBin, "version").Output(); err == nil {
		if f := strings.Fields(first(out)); len(f) > 0 {
			m.thon = f[0]
		}
	}
	if out, err := exec.CommandContext(ctx, o.nginx, "-v").CombinedOutput(); err == nil {
		m.nginx = strings.TrimPrefix(first(out), "nginx version: nginx/")
	}
	if out, _ := exec.CommandContext(ctx, o.wrk, "-v").CombinedOutput(); len(out) > 0 {
		if f := strings.Fields(first(out)); len(f) >= 2 {
			m.wrk = f[0] + " " + f[1]
		}
	}
	if o.redis != "" {
		if out, err := exec.CommandContext(ctx, "redis-server", "--version").Output(); err == nil {
			for _, f := range strings.Fields(string(out)) {
				if v, ok := strings.CutPrefix(f, "v="); ok {
					m.redis = v
				}
			}
		}
	}
	return m
}
