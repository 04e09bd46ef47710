package nginxtest

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"
)

// Start runs nginx in the foreground with prefix and conf, and stops it
// when the test ends; it returns once nginx listens on port of 127.0.0.1,
// and fails the test with nginx's output if nginx exits or does not listen
// in time.
func Start(t testing.TB, prefix, conf string, port int) {
	t.Helper()
	logf, err := os.Create(filepath.Join(prefix, "nginx.stderr"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(Bin, "-p", prefix, "-c", conf, "-g", "daemon off;")
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM) // fast shutdown of master and workers
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) // its own process group
			<-exited
		}
		logf.Close()
	})
	deadline := time.Now().Add(30 * time.Second)
	for {
		c, err := net.Dial("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		if err == nil {
			c.Close()
			return
		}
		select {
		case err := <-exited:
			out, _ := os.ReadFile(logf.Name())
			t.Fatalf("nginx exited: %v\n%s", err, out)
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			out, _ := os.ReadFile(logf.Name())
			t.Fatalf("nginx does not listen on %d: %v\n%s", port, err, out)
		}
	}
}

// StartSites runs nginx, until the test ends, on a prefix in a temporary
// directory whose main configuration includes sitesEnabled (which need not
// exist yet) and has a server on a free loopback port answering 204, so
// nginx listens before any site exists; it returns the main
// configuration's path.
func StartSites(t testing.TB, sitesEnabled string) (conf string) {
	t.Helper()
	Require(t)
	prefix := t.TempDir()
	ready := FreePorts(t, 1)[0]
	conf = WriteConf(t, prefix, fmt.Sprintf(`server {
        listen 127.0.0.1:%d;
        return 204;
    }
    %s`, ready, IncludeSites(sitesEnabled)))
	Start(t, prefix, conf, ready)
	return conf
}
