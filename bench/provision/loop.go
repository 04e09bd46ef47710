package main

import (
	"context"
	"encoding/base64"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path"
	"strconv"
	"strings"
	"time"

	"github.com/thon-dev/thon/llm"
)

// loopPoll is how often the reference polls /healthz: as often as thon's
// manager does while a sandbox starts, so that neither side waits longer
// than it must.
const loopPoll = 20 * time.Millisecond

// measureLoop runs the reference: for each of n users, one `docker run -d`
// with thon's hardening and limits, the workload's files written the
// original's way, then polling its /healthz until 200, before the next
// user. It returns the time from the first docker run to the last healthy
// answer.
func measureLoop(ctx context.Context, cl *cleaner, lim limits, w loadedWorkload, n int) (measurement, error) {
	group := newName("bl")
	cl.add(group)
	defer cl.remove(group)

	client := &http.Client{Timeout: 2 * time.Second}
	port := portBase(n)
	ports := make([]int, 0, n)
	start, cpu0 := time.Now(), busyCPU()
	for i := range n {
		user := fmt.Sprintf("user%d", i)
		p, err := runOne(ctx, lim, group, user, port, !w.original())
		if err != nil {
			return measurement{}, err
		}
		if w.original() {
			if err := w.setUpOriginal(ctx, "thon-"+group+"-"+user, user); err != nil {
				return measurement{}, err
			}
		}
		if err := waitHealthy(ctx, client, p, lim.readyWait, loopPoll); err != nil {
			return measurement{}, fmt.Errorf("sandbox %s did not become ready: %w", user, err)
		}
		ports = append(ports, p)
		port = p + 1
	}
	elapsed, cpu := time.Since(start), busyCPU()-cpu0
	if err := checkHealthy(ctx, ports); err != nil {
		return measurement{}, err
	}
	if err := checkFiles(ctx, w, ports[n-1], fmt.Sprintf("user%d", n-1)); err != nil {
		return measurement{}, err
	}
	return measurement{workload: w.name, n: n, side: "loop", elapsed: elapsed, cpu: cpu}, nil
}

// runOne starts one sandbox container with the docker CLI on the first
// free port from port on, moving on if the engine finds the port taken
// meanwhile. It returns the port used.
func runOne(ctx context.Context, lim limits, group, user string, port int, codeServer bool) (int, error) {
	name := "thon-" + group + "-" + user
	for attempt := 0; ; attempt++ {
		for !portFree(port) {
			port++
		}
		args := dockerRunArgs(lim, group, user, name, port, codeServer)
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

// codeServerArgs start code-server as the original did.
var codeServerArgs = []string{"code-server", "--bind-addr", "0.0.0.0:8443", "--auth", "none", "--disable-telemetry", "/workspace"}

// idleArgs keep a container up until code-server is started in it.
var idleArgs = []string{"sleep", "2147483647"}

// dockerRunArgs is the reference's command line: the same image, limits
// and hardening thon gives its sandboxes, and a named workspace volume;
// the container runs code-server, or idles until it is started in it.
func dockerRunArgs(lim limits, group, user, name string, port int, codeServer bool) []string {
	mem := strconv.FormatInt(lim.memory, 10)
	cmd := idleArgs
	if codeServer {
		cmd = codeServerArgs
	}
	return append([]string{
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
	}, cmd...)
}

// Where the original wrote a sandbox's configuration (reference §1.3).
const (
	kiloPath     = "/home/vscode/.config/kilo/config.json"
	settingsPath = "/home/vscode/.local/share/code-server/User/settings.json"
)

// loadedWorkload is a workload with its files read, for the loop.
type loadedWorkload struct {
	workload
	kiloText     string
	settingsText string
}

func (w workload) load() (loadedWorkload, error) {
	lw := loadedWorkload{workload: w}
	for _, f := range []struct {
		flag, path string
		dst        *string
	}{{"kilo", w.kilo, &lw.kiloText}, {"settings", w.settings, &lw.settingsText}} {
		if f.path == "" {
			continue
		}
		b, err := os.ReadFile(f.path)
		if err != nil {
			return lw, fmt.Errorf("%s: %v", f.flag, err)
		}
		*f.dst = string(b)
	}
	return lw, nil
}

func (w workload) original() bool { return w.name == "original" }

// setUpOriginal sets up the running container name the original's way
// (its main.py): for each file, a shell in the container as vscode that
// makes the directory and decodes the content from base64, then
// code-server started in the background. The Kilo config gets the user's
// values as thon fills them in.
func (w loadedWorkload) setUpOriginal(ctx context.Context, name, user string) error {
	for _, f := range []struct{ path, content string }{
		{kiloPath, llm.FillPlaceholders(w.kiloText, user, user+"@example.com", "/workspace")},
		{settingsPath, w.settingsText},
	} {
		if f.content == "" {
			continue
		}
		script := "mkdir -p '" + path.Dir(f.path) + "' && echo '" + base64.StdEncoding.EncodeToString([]byte(f.content)) +
			"' | base64 -d > '" + f.path + "'"
		if out, err := exec.CommandContext(ctx, "docker", "exec", "-u", "vscode", name, "sh", "-c", script).CombinedOutput(); err != nil {
			return fmt.Errorf("docker exec %s: writing %s: %v: %s", name, f.path, err, strings.TrimSpace(string(out)))
		}
	}
	args := append([]string{"exec", "-d", "-u", "vscode", name}, codeServerArgs...)
	if out, err := exec.CommandContext(ctx, "docker", args...).CombinedOutput(); err != nil {
		return fmt.Errorf("docker exec %s: starting code-server: %v: %s", name, err, strings.TrimSpace(string(out)))
	}
	return nil
}
