package benchkit

import (
	"flag"
	"fmt"
	"io"
	"time"
)

// Flags are the command-line options of a benchmark that loads front ends
// with wrk, round after round, and builds or takes a thon binary.
type Flags struct {
	Rounds      int           // over every front end
	Duration    time.Duration // of each wrk run
	Threads     int           // of wrk (-t)
	Connections int           // of wrk (-c)
	Warmup      time.Duration // unmeasured load before the first round; 0 for none
	Thon        string        // binary; "" builds ./cmd/thon
	Go          string        // the go command
	Wrk         string        // wrk executable
	Nginx       string        // nginx executable
	Results     string        // RESULTS.md to update; "" = none
}

// NewFlagSet is the flag set of the program name, its usage and errors
// going to stderr.
func NewFlagSet(name string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	return fs
}

// ParseArgs parses args with fs; the programs take no positional
// arguments.
func ParseArgs(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	return nil
}

// FlagSet is NewFlagSet(name, stderr) with f's flags registered (see
// Register).
func (f *Flags) FlagSet(name string, stderr io.Writer, section, goUse string) *flag.FlagSet {
	fs := NewFlagSet(name, stderr)
	f.Register(fs, section, goUse)
	return fs
}

// Parse parses args with fs (see ParseArgs) and checks f.
func (f *Flags) Parse(fs *flag.FlagSet, args []string) error {
	if err := ParseArgs(fs, args); err != nil {
		return err
	}
	return f.Check()
}

// Register defines the flags on fs. section is the RESULTS.md section the
// program rewrites, goUse says what it runs the go command for.
func (f *Flags) Register(fs *flag.FlagSet, section, goUse string) {
	fs.IntVar(&f.Rounds, "rounds", 3, "rounds over every front end; figures are medians over them")
	fs.DurationVar(&f.Duration, "duration", 10*time.Second, "length of each wrk run (whole seconds)")
	fs.IntVar(&f.Threads, "threads", 2, "wrk threads (-t)")
	fs.IntVar(&f.Connections, "connections", 32, "wrk connections (-c)")
	fs.DurationVar(&f.Warmup, "warmup", 2*time.Second, "unmeasured load on every front end before the first round; 0 for none")
	fs.StringVar(&f.Thon, "thon", "", "thon binary to run; empty builds ./cmd/thon into a temporary directory")
	fs.StringVar(&f.Go, "go", "go", "go command, "+goUse)
	fs.StringVar(&f.Wrk, "wrk", "wrk", "wrk executable")
	fs.StringVar(&f.Nginx, "nginx", "/usr/sbin/nginx", "nginx executable")
	fs.StringVar(&f.Results, "results", "bench/RESULTS.md", fmt.Sprintf("results file whose %q section is rewritten; empty for none", section))
}

// Check reports the first flag whose value cannot be used, by name.
func (f Flags) Check() error {
	switch {
	case f.Rounds < 1:
		return fmt.Errorf("rounds: %d is not positive", f.Rounds)
	case f.Duration < time.Second:
		return fmt.Errorf("duration: %v is below wrk's 1s", f.Duration)
	case f.Threads < 1 || f.Connections < f.Threads:
		return fmt.Errorf("threads %d, connections %d: need 1 ≤ threads ≤ connections", f.Threads, f.Connections)
	case f.Warmup < 0:
		return fmt.Errorf("warmup: %v is negative", f.Warmup)
	}
	return nil
}

// WrkOptions are the options of a wrk run of length d with these flags.
func (f Flags) WrkOptions(d time.Duration) WrkOptions {
	return WrkOptions{Bin: f.Wrk, Threads: f.Threads, Connections: f.Connections, Duration: d}
}
