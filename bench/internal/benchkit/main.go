package benchkit

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
)

// Main runs a benchmark program called name: it parses os.Args with
// parse, then calls run with a context that ends on SIGINT or SIGTERM.
// -h exits 0, a bad command line 2, a failed run 1 and an interrupted one
// 130; errors go to stderr after "name: ".
func Main[O any](name string, parse func(args []string, stderr io.Writer) (O, error), run func(context.Context, O) error) {
	o, err := parse(os.Args[1:], os.Stderr)
	if errors.Is(err, flag.ErrHelp) {
		return
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, name+":", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err = run(ctx, o)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, name+":", err)
		if errors.Is(err, context.Canceled) {
			os.Exit(130)
		}
		os.Exit(1)
	}
}

// CommandLine is the command that reproduces a run of the program
// bench/name with args, for the report; arguments a shell would split or
// expand are quoted.
func CommandLine(name string, args []string) string {
	parts := []string{"go", "run", "./bench/" + name}
	for _, a := range args {
		if a == "" || strings.ContainsAny(a, " \t'\"$`\\") {
			a = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
		}
		parts = append(parts, a)
	}
	return strings.Join(parts, " ")
}

// Rotate returns s starting at index round mod len(s), so that each
// round runs the same things in another order.
func Rotate[T any](s []T, round int) []T {
	k := round % len(s)
	return append(slices.Clone(s[k:]), s[:k]...)
}
