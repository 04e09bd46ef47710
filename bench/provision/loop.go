package main

import (
	"context"
	"fmt"
	"net/http"
	"os/exec"
	"strconv"
	"strings"
	"time"
)

// loopPoll is how often the reference polls /healthz: often, so that the
// loop waits no longer than it must (thon's manager starts at 20 ms and
// backs off to 320 ms).
const loopPoll = 20 * time.Millisecond

// measureLoop runs the reference: for each of n users, one `docker run -d`
// with thon's hardening and limits, then polling its /healthz until 200,
// before the next user. It returns the time from the first docker run to
// the last healthy answer.
func measureLoop(ctx context.Context, cl *cleaner, lim limits, n int) (measurement, error) {
	group := newName("bl")
	cl.add(group)
	defer cl.remove(group)

	client := &http.Client{Timeout: 2 * time.Second}
	port := portBase(n)
	ports := make([]int, 0, n)
	start := time.Now()
	for i := range n {
		user := fmt.Sprintf("user%d", i)
		p, err := runOne(ctx, lim, group, user, port)
		if err != nil {
			return measurement{}, err
		}
		if err := waitHealthy(ctx, client, p, lim.readyWait, loopPoll); err != nil {
			return measurement{}, fmt.Errorf("sandbox %s did not become ready: %w", user, err)
		}
		ports = append(ports, p)
		port = p + 1
	}
	elapsed := time.Since(start)
	if err := checkHealthy(ctx, ports); err != nil {
		return measurement{}, err
	}
	return measurement{n: n, side: "loop", elapsed: elapsed}, nil
}

// runOne starts one sandbox container with the docker CLI on the first
// free port from port on, moving on if the engine finds the port taken
// meanwhile. It returns the port used.
func runOne(ctx context.Context, lim limits, group, user string, port int) (int, error) {
	name := "thon-" + group + "-" + user
	for attempt := 0; ; attempt++ {
		for !portFree(port) {
			port++
		}
		args := dockerRunArgs(lim, group, user, name, port)
		out, err := exec.CommandContext(ctx, "docker", args...).CombinedOutput()
		if err == nil {
			return port, nil
		}
		if ctx.Err() != nil {
			return 0, ctx.Err()
		}
		msg := strings.TrimSpace(string(out))
		if attempt < 3 && (strings.Contains(msg, "port is already allocated") || strings.Contains(msg, "address already in use")) {
			// docker run leaves the created container behind.
			_ = exec.CommandContext(ctx, "docker", "rm", "-f", name).Run()
			port++
			continue
		}
		return 0, fmt.Errorf("docker run %s: %v: %s", name, err, msg)
	}
}

// dockerRunArgs is the reference's command line: the same image, limits
// and hardening thon gives its sandboxes, and a named workspace volume.
func dockerRunArgs(lim limits, group, user, name string, port int) []string {
	mem := strconv.FormatInt(lim.memory, 10)
	return []string{
		"run", "-d",
		"--name", name,
		"--label", labelBench + "=1",
		"--label", "thon.group=" + group,
		"--label", "thon.user=" + user,
		"-p", "127.0.0.1:" + strconv.Itoa(port) + ":8443",
		"--memory", mem, "--memory-swap", mem,
		"--cpus", strconv.FormatFloat(float64(lim.nanoCPUs)/1e9, 'f', -1, 64),
		"--pids-limit", strconv.FormatInt(lim.pids, 10),
		"--cap-drop", "ALL",
		"--security-opt", "no-new-privileges",
		"-v", "thon-workspace-" + group + "-" + user + ":/workspace",
		lim.image,
		"code-server", "--bind-addr", "0.0.0.0:8443", "--auth", "none", "--disable-telemetry", "/workspace",
	}
}
