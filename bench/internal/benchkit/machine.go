package benchkit

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
)

// Machine describes where a run happened. What could not be found out is
// "?".
type Machine struct {
	CPUs      int    // runtime.NumCPU
	CPU       string // model name
	Memory    string // "7.8 GiB"
	Kernel    string // Linux release
	GoVersion string // runtime.Version
	Thon      string // Caddy's version, from `thon version`
	Nginx     string // "1.22.1"
	Wrk       string // "wrk 4.1.0"
	Docker    string // the engine's version
}

// Tools are the programs whose versions DescribeMachine asks; those not
// named stay "?".
type Tools struct {
	Thon   string // thon binary
	Nginx  string // nginx executable
	Wrk    string // wrk executable
	Docker bool   // ask the Docker engine
}

// DescribeMachine describes this machine and the versions of t.
func DescribeMachine(ctx context.Context, t Tools) Machine {
	m := Machine{CPUs: runtime.NumCPU(), GoVersion: runtime.Version(), CPU: "?", Memory: "?", Kernel: "?", Thon: "?", Nginx: "?", Wrk: "?", Docker: "?"}
	if v, ok := ProcField("/proc/cpuinfo", "model name"); ok {
		m.CPU = v
	}
	if v, ok := ProcField("/proc/meminfo", "MemTotal"); ok {
		if kb, err := strconv.ParseInt(strings.TrimSuffix(v, " kB"), 10, 64); err == nil {
			m.Memory = fmt.Sprintf("%.1f GiB", float64(kb)/(1<<20))
		}
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(b))
	}
	if t.Thon != "" {
		// `thon version` prints Caddy's version and module sum.
		if out, err := exec.CommandContext(ctx, t.Thon, "version").Output(); err == nil {
			if f := strings.Fields(firstLine(out)); len(f) > 0 {
				m.Thon = f[0]
			}
		}
	}
	if t.Nginx != "" {
		if out, err := exec.CommandContext(ctx, t.Nginx, "-v").CombinedOutput(); err == nil {
			m.Nginx = strings.TrimPrefix(firstLine(out), "nginx version: nginx/")
		}
	}
	if t.Wrk != "" {
		// wrk -v prints its version and usage, and exits 1.
		if out, _ := exec.CommandContext(ctx, t.Wrk, "-v").CombinedOutput(); len(out) > 0 {
			if f := strings.Fields(firstLine(out)); len(f) >= 2 {
				m.Wrk = f[0] + " " + f[1]
			}
		}
	}
	if t.Docker {
		if out, err := exec.CommandContext(ctx, "docker", "version", "--format", "{{.Server.Version}}").Output(); err == nil {
			m.Docker = firstLine(out)
		}
	}
	return m
}

// firstLine is the first line of out, trimmed.
func firstLine(out []byte) string {
	line, _, _ := strings.Cut(strings.TrimSpace(string(out)), "\n")
	return strings.TrimSpace(line)
}

// ProcField returns the value of the first "key: value" line of a /proc
// file.
func ProcField(path, key string) (string, bool) {
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

// LoadAvg is the first three fields of /proc/loadavg, or "?".
func LoadAvg() string {
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
