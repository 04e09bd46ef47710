package dockertest

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/thon-dev/thon/sandboxes/docker"
)

// Engine is a private dockerd of one test, which the test may stop and
// start again under running containers: the machine's shared engine is
// never restarted, since other tests use it at the same time.
//
// It keeps apart from the shared engine in everything: its own data root,
// exec root (and so its own containerd), pid file and socket, a config file
// of its own (not /etc/docker/daemon.json), and a Linux bridge of its own on
// a free 10.x.y.0/24 subnet as its default network. It touches no iptables
// rules (--iptables=false): ports published on 127.0.0.1 reach the
// containers through docker-proxy, the engine's userland proxy, over that
// bridge.
type Engine struct {
	// Host is the engine's address, unix://<dir>/docker.sock.
	Host string

	t      testing.TB
	dir    string
	bridge string
	args   []string
	cmd    *exec.Cmd
	exited chan struct{}
	log    *os.File
}

// StartEngine starts a private dockerd with Image loaded into it (the build
// of this tree, whatever the shared engine's latest is now), or fails
// the test. Cleanup stops it (by its pid, waiting for it to exit), removes
// its bridge and its directories; it is never left running.
func StartEngine(t testing.TB) *Engine {
	t.Helper()
	Client(t) // Image built on the shared engine, to copy from
	for _, tool := range []string{"dockerd", "docker", "docker-proxy", "ip"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("a private Docker engine needs %s on PATH (apt-get install docker.io iproute2): %v", tool, err)
		}
	}
	// A short path: the engine and its containerd put Unix sockets under
	// it, whose paths may not exceed 107 bytes.
	dir, err := os.MkdirTemp("", "thond")
	if err != nil {
		t.Fatal(err)
	}
	e := &Engine{t: t, dir: dir, Host: "unix://" + filepath.Join(dir, "docker.sock")}
	t.Cleanup(e.cleanup)
	if err := os.WriteFile(filepath.Join(dir, "daemon.json"), []byte("{}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if e.log, err = os.Create(filepath.Join(dir, "dockerd.log")); err != nil {
		t.Fatal(err)
	}
	if err := e.makeBridge(); err != nil {
		t.Fatal(err)
	}
	e.args = []string{
		"--config-file", filepath.Join(dir, "daemon.json"),
		"--data-root", filepath.Join(dir, "data"),
		"--exec-root", filepath.Join(dir, "exec"),
		"--pidfile", filepath.Join(dir, "docker.pid"),
		"--host", e.Host,
		"--bridge", e.bridge,
		"--iptables=false", "--ip-forward=false", "--ip-masq=false",
		"--userland-proxy=true",
	}
	e.Start()
	e.loadImage()
	return e
}

// makeBridge creates the engine's default bridge on a subnet no interface
// of the host uses.
func (e *Engine) makeBridge() error {
	out, err := exec.Command("ip", "-o", "-4", "addr", "show").Output()
	if err != nil {
		return fmt.Errorf("listing the host's addresses: %w", err)
	}
	routes, err := exec.Command("ip", "-4", "route", "show").Output()
	if err != nil {
		return fmt.Errorf("listing the host's routes: %w", err)
	}
	used := string(out) + string(routes)
	b := make([]byte, 4)
	if _, err := rand.Read(b); err != nil {
		return err
	}
	e.bridge = "thonbr" + hex.EncodeToString(b) // 14 bytes: a name may have 15
	for range 100 {
		x, _ := rand.Int(rand.Reader, big.NewInt(200))
		y, _ := rand.Int(rand.Reader, big.NewInt(256))
		prefix := fmt.Sprintf("10.%d.%d.", 30+x.Int64(), y.Int64())
		if strings.Contains(used, " "+prefix) || strings.Contains(used, "\n"+prefix) || strings.HasPrefix(used, prefix) {
			continue
		}
		for _, args := range [][]string{
			{"link", "add", e.bridge, "type", "bridge"},
			{"addr", "add", prefix + "1/24", "dev", e.bridge},
			{"link", "set", e.bridge, "up"},
		} {
			if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
				return fmt.Errorf("ip %s: %w: %s", strings.Join(args, " "), err, out)
			}
		}
		return nil
	}
	return errors.New("no free 10.x.y.0/24 subnet for the private engine's bridge")
}

// Start starts the engine (again, on the same roots) and waits until it
// answers. The engine then starts the containers whose restart policy asks
// for it, as after a reboot.
func (e *Engine) Start() {
	e.t.Helper()
	if e.cmd != nil {
		e.t.Fatal("dockertest: the private engine runs already")
	}
	cmd := exec.Command("dockerd", e.args...)
	cmd.Stdout, cmd.Stderr = e.log, e.log
	// If the test binary dies without its cleanups, the engine goes too.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
	if err := cmd.Start(); err != nil {
		e.t.Fatalf("starting the private dockerd: %v", err)
	}
	e.cmd, e.exited = cmd, make(chan struct{})
	go func() { _ = cmd.Wait(); close(e.exited) }()

	c := e.Client()
	deadline := time.Now().Add(60 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		err := c.Ping(ctx)
		cancel()
		if err == nil {
			return
		}
		select {
		case <-e.exited:
			e.cmd = nil
			e.t.Fatalf("the private dockerd exited at start (%v):\n%s", cmd.ProcessState, e.logTail())
		default:
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("the private dockerd did not answer within a minute: %v\n%s", err, e.logTail())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Stop stops the engine as its service manager would, with SIGTERM to its
// pid, and waits until it has exited: it stops its containers first (a
// paused one is killed), and they stay stopped until the engine starts
// again.
func (e *Engine) Stop() {
	e.t.Helper()
	if err := e.stop(); err != nil {
		e.t.Fatal(err)
	}
}

func (e *Engine) stop() error {
	if e.cmd == nil {
		return nil
	}
	defer func() { e.cmd = nil }()
	if err := e.cmd.Process.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("stopping the private dockerd (pid %d): %w", e.cmd.Process.Pid, err)
	}
	select {
	case <-e.exited:
		return nil
	case <-time.After(90 * time.Second):
	}
	_ = e.cmd.Process.Kill()
	<-e.exited
	return fmt.Errorf("the private dockerd (pid %d) did not stop within 90 s of SIGTERM; killed it:\n%s", e.cmd.Process.Pid, e.logTail())
}

// Client returns a new client of the engine, closed when the test ends.
func (e *Engine) Client() *docker.Client {
	e.t.Helper()
	c, err := docker.New(e.Host)
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { _ = c.Close() })
	return c
}

// Docker runs the docker CLI against the engine and returns its output.
func (e *Engine) Docker(args ...string) (string, error) {
	out, err := exec.Command("docker", append([]string{"--host", e.Host}, args...)...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("docker %s: %w: %s", strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	return string(out), nil
}

// loadImage copies Image, as this tree built it, from the shared engine
// into this one.
func (e *Engine) loadImage() {
	e.t.Helper()
	save := exec.Command("docker", "save", imageTag)
	load := exec.Command("docker", "--host", e.Host, "load")
	pipe, err := save.StdoutPipe()
	if err != nil {
		e.t.Fatal(err)
	}
	load.Stdin = pipe
	var saveErr, loadOut bytes.Buffer
	save.Stderr = &saveErr
	load.Stdout, load.Stderr = &loadOut, &loadOut
	if err := save.Start(); err != nil {
		e.t.Fatal(err)
	}
	lerr := load.Run()
	if err := save.Wait(); err != nil {
		e.t.Fatalf("docker save %s: %v: %s", Image, err, saveErr.Bytes())
	}
	if lerr != nil {
		e.t.Fatalf("docker load into the private engine: %v: %s", lerr, loadOut.Bytes())
	}
	if _, err := e.Docker("tag", imageTag, Image); err != nil {
		e.t.Fatal(err)
	}
}

// logTail is the end of the engine's log, for failure messages.
func (e *Engine) logTail() string {
	b, _ := os.ReadFile(filepath.Join(e.dir, "dockerd.log"))
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	var keep []string
	for _, l := range lines {
		if !strings.Contains(l, "module=grpc") {
			keep = append(keep, l)
		}
	}
	if len(keep) > 30 {
		keep = keep[len(keep)-30:]
	}
	return strings.Join(keep, "\n")
}

// cleanup stops the engine if it runs and removes everything it made.
func (e *Engine) cleanup() {
	if err := e.stop(); err != nil {
		e.t.Error(err)
	}
	if e.log != nil {
		e.log.Close()
	}
	if e.bridge != "" {
		if out, err := exec.Command("ip", "link", "del", e.bridge).CombinedOutput(); err != nil {
			e.t.Errorf("removing the private engine's bridge %s: %v: %s", e.bridge, err, out)
		}
	}
	// The engine unmounts its containers' filesystems as it stops; one
	// left mounted would make the removal fail, and is reported.
	if err := os.RemoveAll(e.dir); err != nil {
		e.t.Errorf("removing the private engine's directory: %v", err)
	}
}
