package benchkit

import (
	"bufio"
	"bytes"
	"errors"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
)

// helperCmd is the test binary as helper mode with args.
func helperCmd(mode string, args ...string) *exec.Cmd {
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(os.Environ(), helperEnv+"="+mode)
	return cmd
}

func TestMainExit(t *testing.T) {
	for _, tc := range []struct {
		args           []string
		code           int
		stdout, stderr string
	}{
		{[]string{"all", "well"}, 0, "ran all well <nil>\n", ""},
		{[]string{"-h"}, 0, "", "Usage of bench:\n  -bad\n    \treport a bad command line\n"},
		{[]string{"-nope"}, 2, "", "bench: flag provided but not defined: -nope\n"},
		{[]string{"-bad"}, 2, "", "bench: bad: set\n"},
		{[]string{"fail"}, 1, "", "bench: it failed\n"},
		{[]string{"cancel"}, 130, "", "bench: waiting: context canceled\n"},
	} {
		cmd := helperCmd("main", tc.args...)
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		err := cmd.Run()
		code := 0
		if ee, ok := errors.AsType[*exec.ExitError](err); ok {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		if code != tc.code || stdout.String() != tc.stdout || !strings.HasSuffix(stderr.String(), tc.stderr) {
			t.Errorf("%q: exit %d, stdout %q, stderr %q; want %d, %q, ...%q", tc.args, code, stdout.String(), stderr.String(), tc.code, tc.stdout, tc.stderr)
		}
	}
}

// TestMainSignal: SIGTERM ends the run's context, and the program exits
// 130.
func TestMainSignal(t *testing.T) {
	cmd := helperCmd("main", "wait")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	if line, err := bufio.NewReader(out).ReadString('\n'); err != nil || line != "ready\n" {
		cmd.Process.Kill()
		t.Fatalf("first line %q, %v", line, err)
	}
	cmd.Process.Signal(syscall.SIGTERM)
	err = cmd.Wait()
	if ee, ok := errors.AsType[*exec.ExitError](err); !ok || ee.ExitCode() != 130 || stderr.String() != "bench: context canceled\n" {
		t.Errorf("after SIGTERM: %v, stderr %q", err, stderr.String())
	}
}

func TestCommandLine(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{nil, "go run ./bench/proxy"},
		{[]string{"-rounds", "1", "-duration", "5s"}, "go run ./bench/proxy -rounds 1 -duration 5s"},
		{[]string{"-thon", "/tmp/a b"}, "go run ./bench/proxy -thon '/tmp/a b'"},
		{[]string{"-redis", ""}, "go run ./bench/proxy -redis ''"},
		{[]string{"-x", "it's"}, `go run ./bench/proxy -x 'it'\''s'`},
		{[]string{"-x", "$HOME", "a\\b", "`c`", "\"d\""}, "go run ./bench/proxy -x '$HOME' 'a\\b' '`c`' '\"d\"'"},
	} {
		if got := CommandLine("proxy", tc.args); got != tc.want {
			t.Errorf("%q: %s, want %s", tc.args, got, tc.want)
		}
	}
}

func TestRotate(t *testing.T) {
	s := []string{"a", "b", "c"}
	for round, want := range []string{"abc", "bca", "cab", "abc"} {
		if got := strings.Join(Rotate(s, round), ""); got != want {
			t.Errorf("round %d: %s, want %s", round, got, want)
		}
	}
	if strings.Join(s, "") != "abc" {
		t.Errorf("input changed: %v", s)
	}
}
