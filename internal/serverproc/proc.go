// Package serverproc runs the servers that tests and benchmarks start in
// their own processes (thon, plain Caddy, nginx): it starts one with its
// output in a log file, waits for it to answer, and stops it by pid,
// waiting for it to exit.
package serverproc

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"
)

// Proc is a server process a benchmark started.
type Proc struct {
	name string
	cmd  *exec.Cmd
	log  string        // its stdout and stderr
	done chan struct{} // closed once the process has exited
	err  error         // how it exited, set before done is closed
}

// Start starts bin with args and env in its own process group, its
// output going to logPath. name names it in errors.
func Start(name, logPath string, env []string, bin string, args ...string) (*Proc, error) {
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Env = env
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("starting %s: %w", name, err)
	}
	p := &Proc{name: name, cmd: cmd, log: logPath, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		logf.Close()
		close(p.done)
	}()
	return p, nil
}

// Stop ends the process: SIGTERM, then SIGKILL to its group after 15s.
// A nil Proc, or one that has exited, is stopped already.
func (p *Proc) Stop() {
	if p == nil {
		return
	}
	select {
	case <-p.done:
		return
	default:
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(15 * time.Second):
		syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
		<-p.done
	}
}

// PID is the process's id.
func (p *Proc) PID() int { return p.cmd.Process.Pid }

// Wait waits up to timeout for the process to exit by itself. It returns
// how it exited, and false if it still runs.
func (p *Proc) Wait(timeout time.Duration) (error, bool) {
	select {
	case <-p.done:
		return p.err, true
	case <-time.After(timeout):
		return nil, false
	}
}

// Tail is the end of the process's log, for error messages.
func (p *Proc) Tail() string {
	b, _ := os.ReadFile(p.log)
	if len(b) > 4000 {
		b = b[len(b)-4000:]
	}
	return string(b)
}

// Poll calls try every interval until it returns nil. It gives up when
// the process exits, when ctx is done, or, once timeout has passed, with
// an error saying what (what the process does not do), try's last error
// and the end of the log.
func (p *Proc) Poll(ctx context.Context, interval, timeout time.Duration, what string, try func() error) error {
	deadline := time.Now().Add(timeout)
	for {
		last := try()
		if last == nil {
			return nil
		}
		select {
		case <-p.done:
			return fmt.Errorf("%s exited (%v):\n%s", p.name, p.err, p.Tail())
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(interval):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s (last: %v)\n%s", what, last, p.Tail())
		}
	}
}

// WaitHTTP waits until url answers a GET with status want, or the process
// exits, or timeout passes.
func (p *Proc) WaitHTTP(ctx context.Context, url string, want int, timeout time.Duration) error {
	client := &http.Client{Timeout: 2 * time.Second}
	what := fmt.Sprintf("%s: %s does not answer %d within %v", p.name, url, want, timeout)
	return p.Poll(ctx, 50*time.Millisecond, timeout, what, func() error {
		resp, err := client.Get(url)
		if err != nil {
			return err
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != want {
			return errors.New(resp.Status)
		}
		return nil
	})
}

// CaddyEnv is the environment for the servers a test or benchmark starts
// in dir: its own, with HOME and the XDG directories under dir/home, so
// that Caddy's storage and autosave stay in dir.
func CaddyEnv(dir string) []string {
	home := filepath.Join(dir, "home")
	return append(os.Environ(), "HOME="+home, "XDG_DATA_HOME="+filepath.Join(home, "data"), "XDG_CONFIG_HOME="+filepath.Join(home, "config"))
}

// BuildThon builds thon's ./cmd/thon into dir with goBin, as `make build`
// does, and returns the binary's path. It works from any directory of
// the module.
func BuildThon(ctx context.Context, goBin, dir string) (string, error) {
	out := filepath.Join(dir, "thon")
	cmd := exec.CommandContext(ctx, goBin, "build", "-tags", "nobadger,nomysql,nopgx", "-o", out, "github.com/thon-dev/thon/cmd/thon")
	var b bytes.Buffer
	cmd.Stdout, cmd.Stderr = &b, &b
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("go build ./cmd/thon: %w\n%s", err, b.String())
	}
	return out, nil
}

// FreePort returns a loopback port that was free a moment ago.
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// FreePorts returns n loopback ports that were free a moment ago.
func FreePorts(n int) ([]int, error) {
	ports := make([]int, n)
	for i := range ports {
		var err error
		if ports[i], err = FreePort(); err != nil {
			return nil, err
		}
	}
	return ports, nil
}
