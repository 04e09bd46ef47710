package main

import (
	"io"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestParseList(t *testing.T) {
	for _, tc := range []struct {
		in      string
		want    []int
		wantErr string
	}{
		{in: "10,50,100", want: []int{10, 50, 100}},
		{in: " 100 , 10", want: []int{100, 10}},
		{in: "16", want: []int{16}},
		{in: "", wantErr: `n: "" is not a number`},
		{in: "10,,50", wantErr: `n: "" is not a number`},
		{in: "ten", wantErr: `n: "ten" is not a number`},
		{in: "0", wantErr: "n: 0 is not from 1 to 500"},
		{in: "501", wantErr: "n: 501 is not from 1 to 500"},
		{in: "10,10", wantErr: "n: 10 is listed twice"},
	} {
		got, err := parseList("n", tc.in, 1, 500)
		if tc.wantErr != "" {
			if err == nil || err.Error() != tc.wantErr {
				t.Errorf("parseList(%q) error %v, want %q", tc.in, err, tc.wantErr)
			}
			continue
		}
		if err != nil || !slices.Equal(got, tc.want) {
			t.Errorf("parseList(%q) = %v, %v; want %v", tc.in, got, err, tc.want)
		}
	}
}

func FuzzParseList(f *testing.F) {
	for _, s := range []string{"10,50,100", "1", " 2 ,3", "", ",", "-1", "99999999999999999999"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got, err := parseList("n", s, 1, 500)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "n: ") {
				t.Fatalf("error %q does not name the field", err)
			}
			return
		}
		if len(got) == 0 {
			t.Fatal("no error and no values")
		}
		seen := map[int]bool{}
		for _, v := range got {
			if v < 1 || v > 500 || seen[v] {
				t.Fatalf("parseList(%q) = %v", s, got)
			}
			seen[v] = true
		}
	})
}

func TestParseFlags(t *testing.T) {
	o, err := parseFlags(nil, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(o.ns, []int{10, 50, 100}) || !slices.Equal(o.concurrency, []int{16}) || o.results != "bench/RESULTS.md" {
		t.Errorf("defaults: %+v", o)
	}
	for _, tc := range []struct {
		args    []string
		wantErr string
	}{
		{[]string{"-n", "5,x"}, `n: "x" is not a number`},
		{[]string{"-concurrency", "0"}, "concurrency: 0 is not from 1 to 256"},
		{[]string{"-memory", "4"}, "memory: 4 MiB is below Docker's minimum of 6"},
		{[]string{"-cpus", "0"}, "cpus: 0 is not positive"},
		{[]string{"-pids", "0"}, "pids: 0 is not positive"},
		{[]string{"-image", ""}, "image: required"},
		{[]string{"-ready-timeout", "0s"}, "ready-timeout: 0s is not positive"},
		{[]string{"extra"}, `unexpected argument "extra"`},
		{[]string{"-workload", "bare,bare"}, `workload: "bare" is listed twice`},
		{[]string{"-repeat", "0"}, "repeat: 0 is not from 1 to 20"},
		{[]string{"-workload", "full"}, `workload: "full" is not original or bare`},
		{[]string{"-kilo", ""}, "workload original: needs -kilo and -settings"},
	} {
		_, err := parseFlags(tc.args, io.Discard)
		if err == nil || err.Error() != tc.wantErr {
			t.Errorf("parseFlags(%q) error %v, want %q", tc.args, err, tc.wantErr)
		}
	}
}

func TestDockerRunArgs(t *testing.T) {
	lim := limits{image: "img:1", memory: 256 << 20, nanoCPUs: 5e8, pids: 128}
	if idle := strings.Join(dockerRunArgs(lim, "g", "u", "thon-g-u", 20001, false), " "); !strings.HasSuffix(idle, " img:1 sleep 2147483647") {
		t.Errorf("idle container: %s", idle)
	}
	got := strings.Join(dockerRunArgs(lim, "g", "u", "thon-g-u", 20001, true), " ")
	for _, want := range []string{
		"run -d --name thon-g-u ",
		"-p 127.0.0.1:20001:8443 ",
		"--memory 268435456 --memory-swap 268435456 ",
		"--cpus 0.5 ",
		"--pids-limit 128 ",
		"--cap-drop ALL ",
		"--security-opt no-new-privileges ",
		"-v thon-workspace-g-u:/workspace img:1 code-server ",
		"--label thon.group=g ",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("docker run args lack %q:\n%s", want, got)
		}
	}
	if strings.Contains(got, "thon.managed-by") {
		t.Errorf("reference containers must not look like thon's: %s", got)
	}
}

func TestReportVerdict(t *testing.T) {
	s := time.Second
	r := report{
		opts: options{ns: []int{10, 100}, concurrency: []int{16, 8}, image: "img", memoryMiB: 256, cpus: 0.5, pids: 128,
			workloads: []workload{{name: "original", kilo: "k.jsonc", settings: "s.jsonc"}, {name: "bare"}}},
		ms: []measurement{
			{workload: "original", n: 10, side: "loop", elapsed: 10 * s, cpu: 5 * s},
			{workload: "original", n: 10, side: "thon", concurrency: 8, elapsed: 4 * s, cpu: 3 * s},
			{workload: "original", n: 10, side: "thon", concurrency: 16, elapsed: 3 * s, cpu: 3 * s},
			{workload: "original", n: 100, side: "loop", elapsed: 100 * s, cpu: 50 * s},
			{workload: "original", n: 100, side: "thon", concurrency: 8, elapsed: 40 * s, cpu: 30 * s},
			{workload: "original", n: 100, side: "thon", concurrency: 16, elapsed: 25 * s, cpu: 30 * s},
			{workload: "bare", n: 10, side: "loop", elapsed: 5 * s},
			{workload: "bare", n: 10, side: "thon", concurrency: 16, elapsed: 2 * s},
			{workload: "bare", n: 100, side: "loop", elapsed: 50 * s},
			{workload: "bare", n: 100, side: "thon", concurrency: 16, elapsed: 25 * s},
		},
	}
	r.opts.repeat = 1
	if c := r.bestConcurrency("original"); c != 16 {
		t.Errorf("best concurrency %d, want 16", c)
	}
	md := r.markdown()
	for _, want := range []string{
		"### Workload: original\n",
		"the Kilo Code config `k.jsonc`",
		"| 10 | 10.00 | 1.000 | 0.500 | 16 | 3.00 | 0.300 | 0.300 | 3.33× |",
		"| 100 | 100.00 | 1.000 | 0.500 | 8 | 40.00 | 0.400 | 0.300 | 2.50× |",
		"loop 1.00, thon (concurrency 16) 0.83, thon (concurrency 8) 1.00.",
		"the fastest at N=100 was 16. The verdict below is for the first listed, 16,",
		"workload original: met at every N with concurrency 16; the smallest ratio is 3.33×.",
		"### Workload: bare\n",
		"| 100 | 50.00 | 0.500 | 0.000 | 16 | 25.00 | 0.250 | 0.000 | 2.00× |",
		"workload bare: not met with concurrency 16 at N=10 (2.50×), N=100 (2.00×).",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("markdown lacks %q:\n%s", want, md)
		}
	}
	if strings.Index(md, "### Workload: original") > strings.Index(md, "### Workload: bare") {
		t.Error("workloads out of the order given")
	}
	// Three runs each: the median run counts, and every run is listed.
	r.opts.repeat = 3
	r.ms = append(r.ms,
		measurement{workload: "bare", n: 10, side: "thon", concurrency: 16, elapsed: 1 * s},
		measurement{workload: "bare", n: 10, side: "thon", concurrency: 16, elapsed: 4 * s},
		measurement{workload: "bare", n: 10, side: "loop", elapsed: 6 * s},
		measurement{workload: "bare", n: 10, side: "loop", elapsed: 9 * s},
	)
	md = r.markdown()
	for _, want := range []string{
		"| 10 | 6.00 | 0.600 | 0.000 | 16 | 2.00 | 0.200 | 0.000 | 3.00× |",
		"Every run, total seconds in the order run: N=10 loop 5.00 6.00 9.00, thon (concurrency 16) 2.00 1.00 4.00; N=100 loop 50.00, thon (concurrency 16) 25.00.",
		"Each side runs 3 time(s) per N and workload",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("markdown lacks %q:\n%s", want, md)
		}
	}
	if v := r.verdict("original", 8); !strings.Contains(v, "not met with concurrency 8 at N=10 (2.50×), N=100 (2.50×)") {
		t.Errorf("verdict: %s", v)
	}
}
