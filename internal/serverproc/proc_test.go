package serverproc

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// helperEnv makes the test binary, started again by a test, act as the
// server a test needs instead of running the tests.
const helperEnv = "SERVERPROC_TEST_HELPER"

func TestMain(m *testing.M) {
	switch os.Getenv(helperEnv) {
	case "":
		os.Exit(m.Run())
	case "serve":
		// A server on 127.0.0.1:$PORT, as thon or nginx: "/" answers 200,
		// anything else 404.
		fmt.Println("serving with", strings.Join(os.Args[1:], " "))
		ln, err := net.Listen("tcp", "127.0.0.1:"+os.Getenv("PORT"))
		if err != nil {
			fmt.Println(err)
			os.Exit(1)
		}
		http.Serve(ln, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path != "/" {
				http.NotFound(w, r)
			}
		}))
	case "exit":
		fmt.Fprintln(os.Stderr, "bad config")
		os.Exit(3)
	}
}

// startHelper starts the test binary as a server on a free port, as a
// test starts thon.
func startHelper(t *testing.T, name string) (*Proc, int, string) {
	t.Helper()
	port, err := FreePort()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	env := append(CaddyEnv(dir), helperEnv+"=serve", "PORT="+strconv.Itoa(port))
	p, err := Start(name, filepath.Join(dir, name+".log"), env, os.Args[0], "run", "--here")
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
	if want := "serving with run --here\n"; p.Tail() != want {
		t.Errorf("log %q, want %q", p.Tail(), want)
	}
	if err, exited := p.Wait(10 * time.Millisecond); exited {
		t.Errorf("Wait: exited (%v) while serving", err)
	}
	if p.PID() <= 0 {
		t.Errorf("PID %d", p.PID())
	}
	if b, err := os.ReadFile(filepath.Join(dir, "thon.log")); err != nil || string(b) != p.Tail() {
		t.Errorf("log file %q, %v", b, err)
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
	if err, exited := p.Wait(time.Minute); !exited || err == nil || err.Error() != "signal: terminated" {
		t.Errorf("Wait after Stop: %v %v", err, exited)
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
	p, err := Start("nginx", filepath.Join(dir, "nginx.log"), append(os.Environ(), helperEnv+"=exit"), os.Args[0])
	if err != nil {
		t.Fatal(err)
	}
	defer p.Stop()
	err = p.WaitHTTP(context.Background(), fmt.Sprintf("http://127.0.0.1:%d/", port), http.StatusOK, time.Minute)
	if err == nil || err.Error() != "nginx exited (exit status 3):\nbad config\n" {
		t.Errorf("exited: %v", err)
	}

	if _, err := Start("x", filepath.Join(dir, "x.log"), nil, filepath.Join(dir, "missing")); err == nil || !strings.HasPrefix(err.Error(), "starting x: ") {
		t.Errorf("missing binary: %v", err)
	}
	if _, err := Start("x", filepath.Join(dir, "no", "x.log"), nil, os.Args[0]); err == nil {
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

func TestFreePorts(t *testing.T) {
	ports, err := FreePorts(3)
	if err != nil || len(ports) != 3 {
		t.Fatalf("%v %v", ports, err)
	}
	for _, p := range ports {
		if p <= 0 || p > 65535 {
			t.Errorf("port %d", p)
		}
	}
}
