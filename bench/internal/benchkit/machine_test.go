package benchkit

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"testing"
)

func TestProcField(t *testing.T) {
	path := filepath.Join(t.TempDir(), "meminfo")
	if err := os.WriteFile(path, []byte("processor\t: 0\nmodel name\t: Some CPU @ 2.0GHz\nMemTotal:       8048576 kB\nmodel name\t: second\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for key, want := range map[string]string{"model name": "Some CPU @ 2.0GHz", "MemTotal": "8048576 kB", "processor": "0"} {
		if got, ok := ProcField(path, key); !ok || got != want {
			t.Errorf("%s: %q %v, want %q", key, got, ok, want)
		}
	}
	if got, ok := ProcField(path, "Missing"); ok {
		t.Errorf("missing key: %q", got)
	}
	if got, ok := ProcField(filepath.Join(t.TempDir(), "none"), "MemTotal"); ok {
		t.Errorf("missing file: %q", got)
	}
}

func TestLoadAvg(t *testing.T) {
	if _, err := os.Stat("/proc/loadavg"); err != nil {
		if got := LoadAvg(); got != "?" {
			t.Errorf("without /proc/loadavg: %q", got)
		}
		return
	}
	if f := strings.Fields(LoadAvg()); len(f) != 3 {
		t.Errorf("load average %q", LoadAvg())
	}
}

// TestDescribeMachine asks the real tools, and leaves out those not
// named.
func TestDescribeMachine(t *testing.T) {
	for _, bin := range []string{"wrk", "/usr/sbin/nginx"} {
		if _, err := exec.LookPath(bin); err != nil {
			t.Fatalf("%s is required (apt-get install wrk nginx): %v", bin, err)
		}
	}
	m := DescribeMachine(context.Background(), Tools{Nginx: "/usr/sbin/nginx", Wrk: "wrk", Thon: filepath.Join(t.TempDir(), "thon")})
	if m.CPUs != runtime.NumCPU() || m.GoVersion != runtime.Version() {
		t.Errorf("CPUs %d, Go %s", m.CPUs, m.GoVersion)
	}
	if !regexp.MustCompile(`^\d+\.\d GiB$`).MatchString(m.Memory) || m.Kernel == "?" || m.Kernel == "" || m.CPU == "" {
		t.Errorf("machine %+v", m)
	}
	if !regexp.MustCompile(`^\d+\.\d+\.\d+$`).MatchString(m.Nginx) {
		t.Errorf("nginx %q", m.Nginx)
	}
	if !strings.HasPrefix(m.Wrk, "wrk ") || strings.Count(m.Wrk, " ") != 1 {
		t.Errorf("wrk %q", m.Wrk)
	}
	if m.Thon != "?" || m.Docker != "?" {
		t.Errorf("thon %q, docker %q: want ? for a missing binary and an engine not asked", m.Thon, m.Docker)
	}
}

func TestFirstLine(t *testing.T) {
	for in, want := range map[string]string{
		"":                         "",
		"28.5.2\n":                 "28.5.2",
		"  nginx version: 1.22 \n": "nginx version: 1.22",
		"\nv2.11.9 h1:x\nmore\n":   "v2.11.9 h1:x",
	} {
		if got := firstLine([]byte(in)); got != want {
			t.Errorf("%q: %q, want %q", in, got, want)
		}
	}
}
