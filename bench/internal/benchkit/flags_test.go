package benchkit

import (
	"bytes"
	"flag"
	"strings"
	"testing"
	"time"
)

func TestFlags(t *testing.T) {
	parse := func(args ...string) (Flags, *bytes.Buffer, error) {
		var f Flags
		var out bytes.Buffer
		fs := f.FlagSet("proxy", &out, "Proxy", "to build thon")
		return f, &out, f.Parse(fs, args)
	}
	f, _, err := parse()
	if err != nil {
		t.Fatal(err)
	}
	want := Flags{Rounds: 3, Duration: 10 * time.Second, Threads: 2, Connections: 32, Warmup: 2 * time.Second,
		Go: "go", Wrk: "wrk", Nginx: "/usr/sbin/nginx", Results: "bench/RESULTS.md"}
	if f != want {
		t.Errorf("defaults %+v", f)
	}
	if o := f.WrkOptions(3 * time.Second); o.Bin != "wrk" || o.Threads != 2 || o.Connections != 32 || o.Duration != 3*time.Second || o.Script != "" || o.Headers != nil {
		t.Errorf("wrk options %+v", o)
	}
	_, out, err := parse("-h")
	if err != flag.ErrHelp || !strings.HasPrefix(out.String(), "Usage of proxy:\n") {
		t.Errorf("-h: %v\n%s", err, out)
	}
	for _, want := range []string{`results file whose "Proxy" section is rewritten; empty for none`, "go command, to build thon (default \"go\")"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("usage lacks %q:\n%s", want, out)
		}
	}
	for _, tc := range []struct {
		args []string
		err  string
	}{
		{[]string{"-rounds", "0"}, "rounds: 0 is not positive"},
		{[]string{"-duration", "500ms"}, "duration: 500ms is below wrk's 1s"},
		{[]string{"-threads", "0"}, "threads 0, connections 32: need 1 ≤ threads ≤ connections"},
		{[]string{"-threads", "4", "-connections", "2"}, "threads 4, connections 2: need 1 ≤ threads ≤ connections"},
		{[]string{"-warmup", "-1s"}, "warmup: -1s is negative"},
		{[]string{"-rounds", "1", "extra"}, `unexpected argument "extra"`},
		{[]string{"-nope"}, "flag provided but not defined: -nope"},
	} {
		if _, _, err := parse(tc.args...); err == nil || err.Error() != tc.err {
			t.Errorf("%q: error %v, want %q", tc.args, err, tc.err)
		}
	}
	if f, _, err := parse("-warmup", "0", "-thon", "/opt/thon", "-results", ""); err != nil || f.Warmup != 0 || f.Thon != "/opt/thon" || f.Results != "" {
		t.Errorf("%+v %v", f, err)
	}
}

func TestParseArgs(t *testing.T) {
	var out bytes.Buffer
	fs := NewFlagSet("provision", &out)
	n := fs.Int("n", 1, "group size")
	if err := ParseArgs(fs, []string{"-n", "5"}); err != nil || *n != 5 {
		t.Errorf("n %d, %v", *n, err)
	}
	if err := ParseArgs(fs, []string{"-n", "5", "x", "y"}); err == nil || err.Error() != `unexpected argument "x"` {
		t.Errorf("positional: %v", err)
	}
	if err := ParseArgs(fs, []string{"-n", "five"}); err == nil || !strings.Contains(out.String(), "Usage of provision:") {
		t.Errorf("bad value: %v, output %q", err, out.String())
	}
}
