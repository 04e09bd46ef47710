// Command provision measures how long thon takes to bring up N sandboxes
// against the reference, the original's way: a sequential loop of
// `docker run -d ...`, each waiting for /healthz before the next.
//
// Both sides start the same image with the same limits and a named volume at
// /workspace, on ports published on 127.0.0.1, and count a sandbox only once
// its /healthz answers 200 there. Two workloads are measured. "original" is
// a sandbox set up as the original set it up: its Kilo Code config
// (placeholders filled for its user) and VS Code settings written in, and
// code-server started; the loop does it the original's way (a container,
// then one `docker exec` shell decoding base64 per file, then code-server
// started by `docker exec -d`), thon its own (both files in one archive
// through the engine's archive API before the first start, code-server as
// the container's command). "bare" writes nothing and starts code-server
// as the container's command on both sides: the engine's own work. The sides run in one process, one after the
// other, in alternating order per N so that drift of the machine weighs on
// both. Every container and volume made is removed between runs, at the end,
// and on Ctrl-C.
//
// Usage, from the module root:
//
//	go run ./bench/provision -n 10,50,100 -concurrency 16
//
// The image must be present (make sandbox-test-image). The table goes to
// stdout and, unless -results is empty, into the "Provisioning" section of
// bench/RESULTS.md.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/thon-dev/thon/bench/internal/benchkit"
	"github.com/thon-dev/thon/sandboxes/docker"
)

// options are the command line.
type options struct {
	ns           []int   // group sizes
	concurrency  []int   // thon's Config.Concurrency values to measure
	image        string  // sandbox image, on the engine already
	memoryMiB    int64   // memory limit per sandbox
	cpus         float64 // CPU limit per sandbox
	pids         int64   // pids limit per sandbox
	readyTimeout time.Duration
	results      string // RESULTS.md to update; "" = none
	warmup       bool
	workloads    []workload
	repeat       int // runs of each side per N; the median counts
}

// workload is what every sandbox gets besides its container.
type workload struct {
	name     string
	kilo     string // Kilo config file (JSONC, with placeholders); "" = none
	settings string // VS Code settings file; "" = none
}

func main() {
	benchkit.Main("provision", parseFlags, run)
}

func parseFlags(args []string, stderr io.Writer) (options, error) {
	var o options
	fs := benchkit.NewFlagSet("provision", stderr)
	ns := fs.String("n", "10,50,100", "group sizes to measure, comma-separated")
	conc := fs.String("concurrency", "16", "thon's parallel launches (Config.Concurrency); a comma-separated list measures each, the verdict is for the first")
	fs.StringVar(&o.image, "image", "thon/sandbox-test:latest", "sandbox image (build it with make sandbox-test-image)")
	fs.Int64Var(&o.memoryMiB, "memory", 256, "memory limit per sandbox in MiB")
	fs.Float64Var(&o.cpus, "cpus", 0.5, "CPU limit per sandbox")
	fs.Int64Var(&o.pids, "pids", 128, "pids limit per sandbox")
	fs.DurationVar(&o.readyTimeout, "ready-timeout", 2*time.Minute, "how long one sandbox may take to answer /healthz")
	fs.StringVar(&o.results, "results", "bench/RESULTS.md", `results file whose "Provisioning" section is rewritten; empty for none`)
	fs.BoolVar(&o.warmup, "warmup", true, "start and remove one sandbox each way first, unmeasured")
	fs.IntVar(&o.repeat, "repeat", 3, "runs of each side per N and workload; the figures are the median run's")
	wls := fs.String("workload", "original,bare", `workloads to measure, comma-separated: "original" (every sandbox set up as the original did: Kilo config and VS Code settings written in, code-server started) and "bare" (nothing written, code-server as the container's command); the verdict is for each`)
	kilo := fs.String("kilo", "internal/jsonc/testdata/kilo.jsonc.example", "Kilo config of the original workload (the original's example)")
	settings := fs.String("settings", "internal/jsonc/testdata/vscode-settings.jsonc.example", "VS Code settings of the original workload (the original's example)")
	if err := benchkit.ParseArgs(fs, args); err != nil {
		return o, err
	}
	seenWL := map[string]bool{}
	for name := range strings.SplitSeq(*wls, ",") {
		name = strings.TrimSpace(name)
		switch {
		case seenWL[name]:
			return o, fmt.Errorf("workload: %q is listed twice", name)
		case name == "original":
			if *kilo == "" || *settings == "" {
				return o, errors.New("workload original: needs -kilo and -settings")
			}
			o.workloads = append(o.workloads, workload{name: name, kilo: *kilo, settings: *settings})
		case name == "bare":
			o.workloads = append(o.workloads, workload{name: name})
		default:
			return o, fmt.Errorf("workload: %q is not original or bare", name)
		}
		seenWL[name] = true
	}
	var err error
	if o.ns, err = parseList("n", *ns, 1, 500); err != nil {
		return o, err
	}
	if o.concurrency, err = parseList("concurrency", *conc, 1, 256); err != nil {
		return o, err
	}
	switch {
	case o.image == "":
		return o, errors.New("image: required")
	case o.memoryMiB < 6:
		return o, fmt.Errorf("memory: %d MiB is below Docker's minimum of 6", o.memoryMiB)
	case o.cpus <= 0:
		return o, fmt.Errorf("cpus: %v is not positive", o.cpus)
	case o.pids < 1:
		return o, fmt.Errorf("pids: %d is not positive", o.pids)
	case o.readyTimeout <= 0:
		return o, fmt.Errorf("ready-timeout: %v is not positive", o.readyTimeout)
	case o.repeat < 1 || o.repeat > 20:
		return o, fmt.Errorf("repeat: %d is not from 1 to 20", o.repeat)
	}
	return o, nil
}

// parseList parses a comma-separated list of distinct integers from lo to
// hi, keeping their order.
func parseList(field, s string, lo, hi int) ([]int, error) {
	var out []int
	seen := map[int]bool{}
	for part := range strings.SplitSeq(s, ",") {
		part = strings.TrimSpace(part)
		v, err := strconv.Atoi(part)
		if err != nil {
			return nil, fmt.Errorf("%s: %q is not a number", field, part)
		}
		if v < lo || v > hi {
			return nil, fmt.Errorf("%s: %d is not from %d to %d", field, v, lo, hi)
		}
		if seen[v] {
			return nil, fmt.Errorf("%s: %d is listed twice", field, v)
		}
		seen[v] = true
		out = append(out, v)
	}
	return out, nil
}

// limits are the resources and image both sides give every sandbox.
type limits struct {
	image     string
	memory    int64 // bytes
	nanoCPUs  int64
	pids      int64
	readyWait time.Duration
}

func (o options) limits() limits {
	return limits{
		image:     o.image,
		memory:    o.memoryMiB << 20,
		nanoCPUs:  int64(o.cpus * 1e9),
		pids:      o.pids,
		readyWait: o.readyTimeout,
	}
}

// measurement is one timed run of one side.
type measurement struct {
	workload    string
	n           int
	side        string // "loop" or "thon"
	concurrency int    // thon only
	elapsed     time.Duration
	cpu         time.Duration // CPU time the machine spent meanwhile
}

func (m measurement) cpuPerSandbox() time.Duration { return m.cpu / time.Duration(m.n) }

func (m measurement) perSandbox() time.Duration { return m.elapsed / time.Duration(m.n) }

func run(ctx context.Context, o options) error {
	dc, err := docker.New("")
	if err != nil {
		return err
	}
	defer dc.Close()
	if err := dc.Ping(ctx); err != nil {
		return fmt.Errorf("this benchmark needs a running Docker engine: %w", err)
	}
	ok, err := dc.ImageExists(ctx, o.image)
	if err != nil {
		return err
	}
	if !ok {
		return fmt.Errorf("image %s is not on the Docker engine: build it with `make sandbox-test-image`", o.image)
	}

	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	lim := o.limits()
	cl := &cleaner{}
	defer cl.removeAll()

	loaded := make([]loadedWorkload, len(o.workloads))
	for i, w := range o.workloads {
		if loaded[i], err = w.load(); err != nil {
			return err
		}
	}

	if o.warmup {
		fmt.Fprintln(os.Stderr, "warm-up: one sandbox each way (not measured)")
		if _, err := measureLoop(ctx, cl, lim, loaded[0], 1); err != nil {
			return fmt.Errorf("warm-up of the loop: %w", err)
		}
		if _, err := measureThon(ctx, cl, dc, lim, loaded[0], 1, o.concurrency[0], log); err != nil {
			return fmt.Errorf("warm-up of thon: %w", err)
		}
	}

	var ms []measurement
	turn := 0
	for _, w := range loaded {
		for _, n := range o.ns {
			for range o.repeat {
				sides := []string{"loop", "thon"}
				if turn%2 == 1 {
					sides = []string{"thon", "loop"}
				}
				turn++
				for _, side := range sides {
					if side == "loop" {
						fmt.Fprintf(os.Stderr, "%s N=%d loop: sequential docker run ...\n", w.name, n)
						m, err := measureLoop(ctx, cl, lim, w, n)
						if err != nil {
							return fmt.Errorf("%s N=%d loop: %w", w.name, n, err)
						}
						fmt.Fprintf(os.Stderr, "%s N=%d loop: %.2fs\n", w.name, n, m.elapsed.Seconds())
						ms = append(ms, m)
						continue
					}
					for _, c := range o.concurrency {
						fmt.Fprintf(os.Stderr, "%s N=%d thon (concurrency %d): StartGroup ...\n", w.name, n, c)
						m, err := measureThon(ctx, cl, dc, lim, w, n, c, log)
						if err != nil {
							return fmt.Errorf("%s N=%d thon (concurrency %d): %w", w.name, n, c, err)
						}
						fmt.Fprintf(os.Stderr, "%s N=%d thon (concurrency %d): %.2fs\n", w.name, n, c, m.elapsed.Seconds())
						ms = append(ms, m)
					}
				}
			}
		}
	}

	rep := report{opts: o, ms: ms, Run: benchkit.Run{
		Command:   benchkit.CommandLine("provision", os.Args[1:]),
		Machine:   benchkit.DescribeMachine(ctx, benchkit.Tools{Docker: true}),
		Date:      time.Now().UTC(),
		LoadAfter: benchkit.LoadAvg(),
	}}
	table := rep.markdown()
	fmt.Println(table)
	if o.results != "" {
		if err := benchkit.UpdateResults(o.results, "Provisioning", table); err != nil {
			return err
		}
		fmt.Fprintf(os.Stderr, "wrote the Provisioning section of %s\n", o.results)
	}
	return nil
}
