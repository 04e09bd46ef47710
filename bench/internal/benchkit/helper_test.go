package benchkit

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"testing"
)

// helperEnv makes the test binary, started again by a test, act as the
// program a test needs instead of running the tests.
const helperEnv = "BENCHKIT_TEST_HELPER"

func TestMain(m *testing.M) {
	if mode := os.Getenv(helperEnv); mode != "" {
		helper(mode)
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// helper is the test binary started again: a server telling its
// arguments, or a benchmark program run by Main.
func helper(mode string) {
	switch mode {
	case "args":
		// A server that says how it was started and exits, as thon
		// refusing its config would.
		fmt.Println("serving with", strings.Join(os.Args[1:], " "))
	default:
		parse := func(args []string, stderr io.Writer) (string, error) {
			fs := flag.NewFlagSet("bench", flag.ContinueOnError)
			fs.SetOutput(stderr)
			bad := fs.Bool("bad", false, "report a bad command line")
			if err := fs.Parse(args); err != nil {
				return "", err
			}
			if *bad {
				return "", errors.New("bad: set")
			}
			return strings.Join(fs.Args(), " "), nil
		}
		Main("bench", parse, func(ctx context.Context, o string) error {
			switch o {
			case "fail":
				return errors.New("it failed")
			case "cancel":
				return fmt.Errorf("waiting: %w", context.Canceled)
			case "wait":
				fmt.Println("ready")
				<-ctx.Done()
				return ctx.Err()
			}
			fmt.Println("ran", o, ctx.Err())
			return nil
		})
	}
}
