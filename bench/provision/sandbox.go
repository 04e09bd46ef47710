package main

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/thon-dev/thon/bench/internal/benchkit"
	"github.com/thon-dev/thon/llm"
)

// labelBench marks the reference's containers. They carry thon.group and
// thon.user but not thon.managed-by, so no thon instance adopts them.
const labelBench = "thon.bench"

// portSlack is how many ports beyond N a run may use when some are taken.
const portSlack = 200

// newName returns a group name unique to this run, starting with prefix.
func newName(prefix string) string {
	return prefix + strings.ToLower(rand.Text()[:8])
}

// portBase returns the first of n+portSlack ports chosen at random, so
// that a run rarely meets ports that tests running at the same time use;
// both sides skip taken ports anyway.
func portBase(n int) int {
	return benchkit.PortBase(n + portSlack)
}

// portFree reports whether nothing listens on 127.0.0.1:p.
func portFree(p int) bool {
	ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p)))
	if err != nil {
		return false
	}
	ln.Close()
	return true
}

func healthURL(port int) string {
	return "http://" + net.JoinHostPort("127.0.0.1", strconv.Itoa(port)) + "/healthz"
}

// waitHealthy polls /healthz on 127.0.0.1:port every poll until it answers
// 200 or timeout passes.
func waitHealthy(ctx context.Context, client *http.Client, port int, timeout, poll time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var last error
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, healthURL(port), nil)
		if err != nil {
			return err
		}
		resp, err := client.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			err = fmt.Errorf("/healthz answered %s", resp.Status)
		}
		last = err
		select {
		case <-ctx.Done():
			if errors.Is(context.Cause(ctx), context.DeadlineExceeded) {
				return fmt.Errorf("no healthy answer on port %d within %v (last: %v)", port, timeout, last)
			}
			return ctx.Err()
		case <-time.After(poll):
		}
	}
}

// checkHealthy GETs /healthz once on every port and reports those that do
// not answer 200.
func checkHealthy(ctx context.Context, ports []int) error {
	client := &http.Client{Timeout: 5 * time.Second}
	var errs []error
	for _, p := range ports {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, healthURL(p), nil)
		if err != nil {
			return err
		}
		resp, err := client.Do(req)
		if err != nil {
			errs = append(errs, fmt.Errorf("port %d: %v", p, err))
			continue
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			errs = append(errs, fmt.Errorf("port %d: /healthz answered %s", p, resp.Status))
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("final check: %d of %d sandboxes unhealthy: %w", len(errs), len(ports), errors.Join(errs...))
	}
	return nil
}

// cleaner removes the containers and volumes of the groups a run made.
type cleaner struct {
	mu     sync.Mutex
	groups []string
}

func (c *cleaner) add(group string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.groups = append(c.groups, group)
}

// remove removes a group's containers and volumes; failures are reported
// on stderr and the group is kept for removeAll to try again.
func (c *cleaner) remove(group string) {
	if err := benchkit.RemoveGroup(group); err != nil {
		fmt.Fprintf(os.Stderr, "cleanup of %s: %v\n", group, err)
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for i, g := range c.groups {
		if g == group {
			c.groups = append(c.groups[:i], c.groups[i+1:]...)
			break
		}
	}
}

// removeAll removes what is left of every group.
func (c *cleaner) removeAll() {
	c.mu.Lock()
	groups := append([]string(nil), c.groups...)
	c.mu.Unlock()
	for _, g := range groups {
		c.remove(g)
	}
}

// checkFiles reads the workload's files back from the sandbox of user on
// port (the test server serves files of its home through /files) and
// compares them with what the loop writes: both sides must have done the
// same work.
func checkFiles(ctx context.Context, w loadedWorkload, port int, user string) error {
	if w.kiloText == "" && w.settingsText == "" {
		return nil
	}
	client := &http.Client{Timeout: 5 * time.Second}
	for p, want := range map[string]string{
		kiloPath:     llm.FillPlaceholders(w.kiloText, user, user+"@example.com", "/workspace"),
		settingsPath: w.settingsText,
	} {
		u := "http://" + net.JoinHostPort("127.0.0.1", strconv.Itoa(port)) + "/files?path=" + url.QueryEscape(p)
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
		if err != nil {
			return err
		}
		resp, err := client.Do(req)
		if err != nil {
			return fmt.Errorf("reading %s back from %s: %v", p, user, err)
		}
		got, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || resp.StatusCode != http.StatusOK {
			return fmt.Errorf("reading %s back from %s: %s %v", p, user, resp.Status, err)
		}
		if string(got) != want {
			return fmt.Errorf("%s in %s's sandbox is not what was to be written (%d bytes, want %d)", p, user, len(got), len(want))
		}
	}
	return nil
}

// busyCPU is the CPU time the whole machine has spent so far (user,
// nice, system, irq and softirq over every CPU), from /proc/stat.
func busyCPU() time.Duration {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 8 || f[0] != "cpu" {
		return 0
	}
	var ticks int64
	for _, i := range []int{1, 2, 3, 6, 7} { // user nice system irq softirq
		v, err := strconv.ParseInt(f[i], 10, 64)
		if err != nil {
			return 0
		}
		ticks += v
	}
	return time.Duration(ticks) * time.Second / clockTicks
}

// clockTicks is USER_HZ, the unit of /proc/stat: 100 on Linux.
const clockTicks = 100
