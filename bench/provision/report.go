package main

import (
	"cmp"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/thon-dev/thon/bench/internal/benchkit"
)

// report is the outcome of a run.
type report struct {
	benchkit.Run
	opts options
	ms   []measurement
}

// runs are the measurements of one side, N and workload, in the order run.
func (r report) runs(workload string, n int, side string, concurrency int) []measurement {
	var out []measurement
	for _, m := range r.ms {
		if m.workload == workload && m.n == n && m.side == side && (side == "loop" || m.concurrency == concurrency) {
			out = append(out, m)
		}
	}
	return out
}

// find is the median run of one side, N and workload (of an even number
// of runs, the slower of the middle two).
func (r report) find(workload string, n int, side string, concurrency int) (measurement, bool) {
	runs := r.runs(workload, n, side, concurrency)
	if len(runs) == 0 {
		return measurement{}, false
	}
	sorted := slices.Clone(runs)
	slices.SortStableFunc(sorted, func(a, b measurement) int { return cmp.Compare(a.elapsed, b.elapsed) })
	return sorted[len(sorted)/2], true
}

// markdown is the Provisioning section: how it was measured, the table,
// linearity and the verdict on the goal.
func (r report) markdown() string {
	var b strings.Builder
	o := r.opts
	b.WriteString(r.Heading("Provisioning"))
	fmt.Fprintf(&b, "Machine: %d CPUs (%s), %s memory, Docker %s, Linux %s, %s; load average after the run %s.\n\n",
		r.Machine.CPUs, r.Machine.CPU, r.Machine.Memory, r.Machine.Docker, r.Machine.Kernel, r.Machine.GoVersion, r.LoadAfter)
	fmt.Fprintf(&b, "Both sides start `%s` with %d MiB memory (no swap), %s CPU, %d pids, all capabilities dropped, "+
		"no-new-privileges, a named volume at /workspace and the port published on 127.0.0.1, and count a sandbox "+
		"only once its `/healthz` answers 200 there. **loop** is the original's way: for each user `docker run -d` "+
		"(docker CLI), then polling `/healthz` every %v until 200, before the next user. **thon** is the sandbox "+
		"manager on a fresh group in a fresh database: `StartGroup`, then `WaitOperation` (a launch is done once "+
		"its `/healthz` answered), with `Config.Concurrency` launches at a time; every port is then GET once more, "+
		"untimed. Each side runs %d time(s) per N and workload, the order alternating from run to run (loop first, then thon "+
		"first, ...); the table gives the median run",
		o.image, o.memoryMiB, strconv.FormatFloat(o.cpus, 'f', -1, 64), o.pids, loopPoll, o.repeat)
	if o.warmup {
		b.WriteString("; one unmeasured sandbox each way warms the engine up first")
	}
	b.WriteString(". Containers and volumes are removed after every run. **CPU s/sandbox** is the CPU time the whole " +
		"machine spent during a run (from /proc/stat: the engine, its helper processes, the docker CLI, the containers, thon) " +
		"divided by N: a launcher on this machine cannot go faster than that divided by its CPU count per sandbox.\n\n")

	for _, w := range o.workloads {
		r.workloadSection(&b, w)
	}
	return b.String()
}

// workloadSection is one workload's table, linearity and verdict.
func (r report) workloadSection(b *strings.Builder, w workload) {
	o := r.opts
	switch w.name {
	case "original":
		fmt.Fprintf(b, "### Workload: original\n\nEvery sandbox is set up as the original set it up (its main.py): the Kilo Code "+
			"config `%s` (placeholders filled for the user) and the VS Code settings `%s` (the original's examples) written in, "+
			"and code-server started. The loop does it the original's way: `docker run -d` of the container with an idle command, "+
			"then per file `docker exec -u vscode <name> sh -c` making the directory and decoding the content from base64, then "+
			"code-server started in the background by `docker exec -d -u vscode`. thon does it its way: both files in one archive "+
			"through the engine's archive API before the first start, code-server as the container's command. Both sides' files "+
			"are read back from one sandbox of every run, untimed.\n\n", w.kilo, w.settings)
	case "bare":
		b.WriteString("### Workload: bare\n\nNothing is written into the sandboxes and code-server is the container's command on " +
			"both sides: the container start alone, the engine's own work per container, about the same CPU time on both sides. " +
			"thon's time per sandbox cannot go below its CPU s/sandbox ÷ the CPU count, however many launches run at once.\n\n")
	}
	b.WriteString("| N | loop total (s) | loop s/sandbox | loop CPU s/sandbox | thon concurrency | thon total (s) | thon s/sandbox | thon CPU s/sandbox | loop / thon |\n")
	b.WriteString("|--:|--:|--:|--:|--:|--:|--:|--:|--:|\n")
	for _, n := range o.ns {
		loop, ok := r.find(w.name, n, "loop", 0)
		if !ok {
			continue
		}
		for _, c := range o.concurrency {
			t, ok := r.find(w.name, n, "thon", c)
			if !ok {
				continue
			}
			fmt.Fprintf(b, "| %d | %.2f | %.3f | %.3f | %d | %.2f | %.3f | %.3f | %.2f× |\n", n,
				loop.elapsed.Seconds(), loop.perSandbox().Seconds(), loop.cpuPerSandbox().Seconds(), c,
				t.elapsed.Seconds(), t.perSandbox().Seconds(), t.cpuPerSandbox().Seconds(), benchkit.Ratio(loop.elapsed, t.elapsed))
		}
	}

	if o.repeat > 1 {
		b.WriteString("\nEvery run, total seconds in the order run: ")
		var parts []string
		for _, n := range o.ns {
			part := fmt.Sprintf("N=%d loop %s", n, r.totals(w.name, n, "loop", 0))
			for _, c := range o.concurrency {
				if t := r.totals(w.name, n, "thon", c); t != "" {
					part += fmt.Sprintf(", thon (concurrency %d) %s", c, t)
				}
			}
			parts = append(parts, part)
		}
		b.WriteString(strings.Join(parts, "; ") + ".\n")
	}

	if len(o.ns) > 1 {
		lo, hi := o.ns[0], o.ns[0]
		for _, n := range o.ns {
			lo, hi = min(lo, n), max(hi, n)
		}
		fmt.Fprintf(b, "\nLinearity, s/sandbox at N=%d ÷ s/sandbox at N=%d (1.00 = linear; above 1, each sandbox costs more as N grows): ", hi, lo)
		var parts []string
		if a, ok := r.find(w.name, lo, "loop", 0); ok {
			if z, ok := r.find(w.name, hi, "loop", 0); ok {
				parts = append(parts, fmt.Sprintf("loop %.2f", benchkit.Ratio(z.perSandbox(), a.perSandbox())))
			}
		}
		for _, c := range o.concurrency {
			if a, ok := r.find(w.name, lo, "thon", c); ok {
				if z, ok := r.find(w.name, hi, "thon", c); ok {
					parts = append(parts, fmt.Sprintf("thon (concurrency %d) %.2f", c, benchkit.Ratio(z.perSandbox(), a.perSandbox())))
				}
			}
		}
		b.WriteString(strings.Join(parts, ", ") + ".\n")
	}

	if len(o.concurrency) > 1 {
		fmt.Fprintf(b, "\nConcurrency values measured: %s; the fastest at N=%d was %d. The verdict below is for "+
			"the first listed, %d, so that it does not rest on the best of several noisy runs.\n",
			joinInts(o.concurrency), o.ns[len(o.ns)-1], r.bestConcurrency(w.name), o.concurrency[0])
	}
	b.WriteString("\n" + r.verdict(w.name, o.concurrency[0]) + "\n\n")
}

// totals lists the total seconds of every run of one side.
func (r report) totals(workload string, n int, side string, concurrency int) string {
	runs := r.runs(workload, n, side, concurrency)
	s := make([]string, len(runs))
	for i, m := range runs {
		s[i] = strconv.FormatFloat(m.elapsed.Seconds(), 'f', 2, 64)
	}
	return strings.Join(s, " ")
}

// bestConcurrency is the concurrency with the shortest thon run at the
// last N measured.
func (r report) bestConcurrency(workload string) int {
	n := r.opts.ns[len(r.opts.ns)-1]
	best, bestT := r.opts.concurrency[0], time.Duration(-1)
	for _, c := range r.opts.concurrency {
		if t, ok := r.find(workload, n, "thon", c); ok && (bestT < 0 || t.elapsed < bestT) {
			best, bestT = c, t.elapsed
		}
	}
	return best
}

// verdict states, from the figures, whether thon met the goal of issue 3
// at every N: at least 3× faster than the loop.
func (r report) verdict(workload string, c int) string {
	var short []string
	minR := 0.0
	for i, n := range r.opts.ns {
		loop, ok1 := r.find(workload, n, "loop", 0)
		t, ok2 := r.find(workload, n, "thon", c)
		if !ok1 || !ok2 {
			continue
		}
		x := benchkit.Ratio(loop.elapsed, t.elapsed)
		if i == 0 || x < minR {
			minR = x
		}
		if x < 3 {
			short = append(short, fmt.Sprintf("N=%d (%.2f×)", n, x))
		}
	}
	if len(short) == 0 {
		return fmt.Sprintf("Goal (issue 3: at least 3× faster than the loop), workload %s: met at every N with concurrency %d; the smallest ratio is %.2f×.", workload, c, minR)
	}
	return fmt.Sprintf("Goal (issue 3: at least 3× faster than the loop), workload %s: not met with concurrency %d at %s.", workload, c, strings.Join(short, ", "))
}

func joinInts(v []int) string {
	s := make([]string, len(v))
	for i, x := range v {
		s[i] = strconv.Itoa(x)
	}
	return strings.Join(s, ", ")
}
