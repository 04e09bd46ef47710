package benchkit

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// startHelper starts the test binary as a server on a free port, as a
// benchmark starts thon.
func startHelper(t *testing.T, name string) (*Proc, int, string) {
	t.Helper()
	port, err := FreePort()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	w := &Workspace{Dir: dir, Thon: os.Args[0], Env: append(CaddyEnv(dir), helperEnv+"=serve", "PORT="+strconv.Itoa(port))}
	p, err := w.StartCaddy(name, "{\n\tadmin off\n}\n")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Stop)
	return p, port, dir
}

func TestProcWaitHTTP(t *testing.T) {
	ctx := context.Background()
	p, port, dir := startHelper(t, "thon")
	url := fmt.Sprintf("http://127.0.0.1:%d/", port)
	if err := p.WaitHTTP(ctx, url, http.StatusOK, time.Minute); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(dir, "thon.Caddyfile")
	if b, err := os.ReadFile(file); err != nil || string(b) != "{\n\tadmin off\n}\n" {
		t.Errorf("Caddyfile %q, %v", b, err)
	}
	if want := "serving with run --config " + file + " --adapter caddyfile\n"; p.Tail() != want {
		t.Errorf("log %q, want %q", p.Tail(), want)
	}

	err := p.WaitHTTP(ctx, url+"missing", http.StatusOK, 200*time.Millisecond)
	if err == nil || !strings.HasPrefix(err.Error(), "thon: "+url+"missing does not answer 200 within 200ms (last: 404 Not Found)\nserving with") {
		t.Errorf("wrong status: %v", err)
	}

	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if err := p.WaitHTTP(cctx, url+"missing", http.StatusOK, time.Minute); err != context.Canceled {
		t.Errorf("canceled: %v", err)
	}

	p.Stop()
	if err := p.WaitHTTP(ctx, url, http.StatusOK, time.Minute); err == nil || !strings.HasPrefix(err.Error(), "thon exited (signal: terminated):\nserving with") {
		t.Errorf("after Stop: %v", err)
	}
	p.Stop() // stopped twice
	var none *Proc
	none.Stop()
}

func TestProcExits(t *testing.T) {
	port, err := FreePort()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	p, err := StartProc("nginx", filepath.Join(dir, "nginx.log"), append(os.Environ(), helperEnv+"=exit"), os.Args[0])
	if err != nil {
		t.Fatal(err)
	}
	defer p.Stop()
	err = p.WaitHTTP(context.Background(), fmt.Sprintf("http://127.0.0.1:%d/", port), http.StatusOK, time.Minute)
	if err == nil || err.Error() != "nginx exited (exit status 3):\nbad config\n" {
		t.Errorf("exited: %v", err)
	}

	if _, err := StartProc("x", filepath.Join(dir, "x.log"), nil, filepath.Join(dir, "missing")); err == nil || !strings.HasPrefix(err.Error(), "starting x: ") {
		t.Errorf("missing binary: %v", err)
	}
	if _, err := StartProc("x", filepath.Join(dir, "no", "x.log"), nil, os.Args[0]); err == nil {
		t.Error("no error for a log in a missing directory")
	}
}

func TestProcPoll(t *testing.T) {
	p, port, _ := startHelper(t, "caddy")
	tries := 0
	err := p.Poll(context.Background(), time.Millisecond, time.Minute, "never", func() error {
		if tries++; tries < 3 {
			return fmt.Errorf("try %d", tries)
		}
		return nil
	})
	if err != nil || tries != 3 {
		t.Errorf("%d tries: %v", tries, err)
	}
	err = p.Poll(context.Background(), time.Millisecond, 0, "caddy does not answer on "+strconv.Itoa(port), func() error {
		return fmt.Errorf("nothing yet")
	})
	if err == nil || !strings.HasPrefix(err.Error(), "caddy does not answer on "+strconv.Itoa(port)+" (last: nothing yet)\n") {
		t.Errorf("timeout: %v", err)
	}
}

func TestFreePortsAndRequire(t *testing.T) {
	ports, err := FreePorts(3)
	if err != nil || len(ports) != 3 {
		t.Fatalf("%v %v", ports, err)
	}
	for _, p := range ports {
		if p <= 0 || p > 65535 {
			t.Errorf("port %d", p)
		}
	}
	if err := Require("sh", os.Args[0]); err != nil {
		t.Error(err)
	}
	if err := Require("sh", "no-such-program-benchkit"); err == nil || !strings.HasPrefix(err.Error(), "no-such-program-benchkit is required: ") {
		t.Errorf("missing program: %v", err)
	}
}

func TestPortBase(t *testing.T) {
	for _, n := range []int{1, 20, 220, 39999} {
		for range 200 {
			if p := PortBase(n); p < 20000 || p+n > 60000 {
				t.Fatalf("PortBase(%d) = %d", n, p)
			}
		}
	}
}
