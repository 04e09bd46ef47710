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
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/thon-dev/thon/bench/internal/benchkit"
	"github.com/thon-dev/thon/internal/serverproc"
)

// options are the command line.
type options struct {
	benchkit.Flags
	redis      string
	benchCount int
}

func main() {
	benchkit.Main("gateway", parseFlags, run)
}

func parseFlags(args []string, stderr io.Writer) (options, error) {
	var o options
	fs := o.FlagSet("gateway", stderr, "Gateway", "to build thon and run the limiter benchmarks")
	fs.StringVar(&o.redis, "redis", "127.0.0.1:6379", "Redis for the thon-redis front end; empty leaves it out")
	fs.IntVar(&o.benchCount, "bench-count", 5, "runs of each limiter benchmark (go test -count); medians are reported")
	if err := o.Parse(fs, args); err != nil {
		return o, err
	}
	if o.benchCount < 1 {
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
	wrk        benchkit.WrkResult
	roundTrips uint64 // Redis round trips during the run (thon-redis)
	upstream   int64  // requests that reached the upstream during the run
}

func run(ctx context.Context, o options) error {
	if err := benchkit.Require(o.Wrk, o.Nginx); err != nil {
		return err
	}
	var redisPrefix string
	if o.redis != "" {
		prefix, closeRedis, err := openRedis(ctx, o.redis)
		if err != nil {
			return err
		}
		defer closeRedis()
		redisPrefix = prefix
	}
	work, err := o.Workspace(ctx, "gateway")
	if err != nil {
		return err
	}
	defer work.Remove()

	lemonadeKey := "lemonade-" + rand.Text()
	up, err := startUpstream(lemonadeKey)
	if err != nil {
		return err
	}
	defer up.close()

	ports, err := serverproc.FreePorts(7)
	if err != nil {
		return err
	}
	thonAdmin, thonSite, redisAdmin, redisSite, caddyAdmin, caddySite, nginxSite := ports[0], ports[1], ports[2], ports[3], ports[4], ports[5], ports[6]

	var fes []frontEnd
	procs := map[string]*serverproc.Proc{}
	startThon := func(name string, adminPort, site int, gatewayBlock string) error {
		p, err := work.StartCaddy(name, thonCaddyfile(adminPort, site, filepath.Join(work.Dir, name), up.addr(), lemonadeKey, gatewayBlock))
		if err != nil {
			return err
		}
		procs[name] = p
		if err := p.WaitHTTP(ctx, fmt.Sprintf("http://localhost:%d/thon/health", adminPort), http.StatusOK, time.Minute); err != nil {
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
			p.Stop()
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

	cp, err := work.StartCaddy("caddy", caddyCaddyfile(caddyAdmin, caddySite, up.addr(), lemonadeKey))
	if err != nil {
		return err
	}
	procs["caddy"] = cp
	fes = append(fes, frontEnd{name: "caddy", url: fmt.Sprintf("http://127.0.0.1:%d/v1/chat/completions", caddySite), key: "client-key"})

	nginxDir := filepath.Join(work.Dir, "nginx")
	conf, err := benchkit.WriteNginxConf(nginxDir, nginxHTTP(nginxSite, up.addr(), lemonadeKey))
	if err != nil {
		return err
	}
	np, err := work.StartNginx(ctx, o.Nginx, conf)
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
	script := filepath.Join(work.Dir, "post.lua")
	if err := os.WriteFile(script, []byte(wrkScript(requestBody)), 0o644); err != nil {
		return err
	}

	tools := benchkit.Tools{Thon: work.Thon, Nginx: o.Nginx, Wrk: o.Wrk}
	r := report{opts: o, frontEnds: fes, answerBytes: len(up.answer), redis: redisVersion(ctx, o.redis)}
	r.Command, r.Machine = benchkit.CommandLine("gateway", os.Args[1:]), benchkit.DescribeMachine(ctx, tools)
	r.LoadBefore = benchkit.LoadAvg()
	if o.Warmup > 0 {
		fmt.Fprintf(os.Stderr, "warm-up: %v of wrk on each front end (not measured)\n", o.Warmup)
		for _, fe := range fes {
			if _, err := benchkit.RunWrk(ctx, fe.wrkOptions(o.WrkOptions(max(o.Warmup, time.Second)), script), fe.url); err != nil {
				return err
			}
		}
	}
	for round := range o.Rounds {
		for _, fe := range benchkit.Rotate(fes, round) {
			rtBefore, err := redisRoundTrips(ctx, fe)
			if err != nil {
				return err
			}
			upBefore := up.requests.Load()
			w, err := benchkit.RunWrk(ctx, fe.wrkOptions(o.WrkOptions(o.Duration), script), fe.url)
			if err != nil {
				return err
			}
			if w.Non2xx > 0 || w.SockErrors > 0 {
				return fmt.Errorf("%s: wrk saw %d non-2xx responses and %d socket errors", fe.name, w.Non2xx, w.SockErrors)
			}
			rtAfter, err := redisRoundTrips(ctx, fe)
			if err != nil {
				return err
			}
			s := sample{wrk: w, roundTrips: rtAfter - rtBefore, upstream: up.requests.Load() - upBefore}
			r.Add(round, fe.name, s)
			fmt.Fprintf(os.Stderr, "round %d %-10s %9.0f req/s  p50 %-9v p99 %v\n", round+1, fe.name, w.RPS, w.P50, w.P99)
		}
	}
	r.LoadAfter = benchkit.LoadAvg()

	fmt.Fprintln(os.Stderr, "running the limiter benchmarks (go test -bench) ...")
	if r.benchCommand, r.benches, err = runGoBench(ctx, o.Go, o.benchCount); err != nil {
		return err
	}
	r.Date = time.Now().UTC()
	md := r.markdown()
	fmt.Print(md)
	if o.Results != "" {
		if err := benchkit.UpdateResults(o.Results, "Gateway", md); err != nil {
			return fmt.Errorf("writing %s: %v", o.Results, err)
		}
		fmt.Fprintln(os.Stderr, "wrote the Gateway section of", o.Results)
	}
	return nil
}

// wrkOptions are o with the POST script and the front end's key.
func (fe frontEnd) wrkOptions(o benchkit.WrkOptions, script string) benchkit.WrkOptions {
	o.Script = script
	o.Headers = []string{"Authorization: Bearer " + fe.key}
	return o
}

// setupConsumer imports a one-user roster into a thon and sets its
// gateway up with limits that every request of the benchmark fits in (so
// that both limits are checked, and none refuses), returning the key.
func setupConsumer(ctx context.Context, adminPort int) (string, error) {
	admin := benchkit.Admin{Port: adminPort, Timeout: time.Minute}
	if err := admin.Call(ctx, http.MethodPost, "/thon/groups/import", "application/yaml", []byte("groups:\n  bench: [alice]\n"), nil); err != nil {
		return "", err
	}
	var out struct {
		Consumers []struct{ Username, Key string }
	}
	body := []byte(`{"mode": "per-user", "concurrency_limit": 1000, "token_limit": 1000000000000, "token_window": 60}`)
	if err := admin.Call(ctx, http.MethodPost, "/thon/gateway/setup", "application/json", body, &out); err != nil {
		return "", err
	}
	if len(out.Consumers) != 1 || out.Consumers[0].Key == "" {
		return "", fmt.Errorf("gateway setup gave %d consumers", len(out.Consumers))
	}
	return out.Consumers[0].Key, nil
}

// waitAnswer waits until the front end answers a chat completion with the
// upstream's answer.
func waitAnswer(ctx context.Context, p *serverproc.Proc, fe frontEnd, want []byte) error {
	client := &http.Client{Timeout: 5 * time.Second}
	return p.Poll(ctx, 100*time.Millisecond, time.Minute, fe.name+" does not answer the upstream's completion", func() error {
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, fe.url, strings.NewReader(requestBody))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer "+fe.key)
		resp, err := client.Do(req)
		if err != nil {
			return err
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || !bytes.Equal(b, want) {
			return fmt.Errorf("%s: %.300s", resp.Status, b)
		}
		return nil
	})
}
