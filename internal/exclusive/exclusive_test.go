package exclusive

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// helperEnv makes the test binary, started again by a test, hold a lock
// or a listening socket as another thon would, instead of running tests.
const helperEnv = "EXCLUSIVE_TEST_HELPER"

func TestMain(m *testing.M) {
	if mode := os.Getenv(helperEnv); mode != "" {
		helper(mode, os.Getenv("TARGET"))
		return
	}
	os.Exit(m.Run())
}

// helper locks the directory or listens on the address (as Caddy does,
// with SO_REUSEPORT), says "ready" and waits to be stopped.
func helper(mode, target string) {
	switch mode {
	case "lock":
		if _, err := LockDir(target); err != nil {
			fmt.Println(err)
			os.Exit(1)
		}
	case "listen":
		if _, err := reusePortListen(target); err != nil {
			fmt.Println(err)
			os.Exit(1)
		}
	}
	fmt.Println("ready")
	select {}
}

func reusePortListen(addr string) (net.Listener, error) {
	lc := net.ListenConfig{Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		if err := c.Control(func(fd uintptr) {
			serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, 0xf /* SO_REUSEPORT */, 1)
		}); err != nil {
			return err
		}
		return serr
	}}
	return lc.Listen(context.Background(), "tcp", addr)
}

// startHelper runs the test binary in helper mode and waits until it is
// ready; the process is killed and waited for when the test ends.
func startHelper(t *testing.T, mode, target string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$", "holder-of-"+mode)
	cmd.Env = append(os.Environ(), helperEnv+"="+mode, "TARGET="+target)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil || line != "ready\n" {
		t.Fatalf("helper %s %s: %q %v", mode, target, line, err)
	}
	return cmd
}

func TestLockDir(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	l, err := LockDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(dir, LockFile))
	if want := strconv.Itoa(os.Getpid()) + " " + strings.Join(os.Args, " ") + "\n"; err != nil || string(b) != want {
		t.Errorf("lock file %q, %v; want %q", b, err, want)
	}
	// Within the process, a second lock of the directory fails as well.
	if _, err := LockDir(dir); !errors.Is(err, ErrInUse) {
		t.Errorf("second lock in this process: %v", err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, LockFile)); len(b) != 0 {
		t.Errorf("lock file after Close: %q", b)
	}

	// Another process holds it: refused, naming the directory and it.
	h := startHelper(t, "lock", dir)
	_, err = LockDir(dir)
	var e *DirInUseError
	if !errors.As(err, &e) || !errors.Is(err, ErrInUse) || e.Dir != dir || e.PID != h.Process.Pid || !strings.Contains(e.Command, "holder-of-lock") {
		t.Fatalf("locked by pid %d: %#v", h.Process.Pid, err)
	}
	if want := fmt.Sprintf("data directory %s is in use by another thon: pid %d (%s -test.run=^$ holder-of-lock)", dir, h.Process.Pid, os.Args[0]); err.Error() != want {
		t.Errorf("error %q, want %q", err, want)
	}
	// The OS lock is the truth: without the pid in the file, still refused.
	if err := os.WriteFile(filepath.Join(dir, LockFile), []byte("garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := LockDir(dir); err == nil || err.Error() != "data directory "+dir+" is in use by another thon (it holds the lock on "+filepath.Join(dir, LockFile)+")" {
		t.Errorf("without a holder line: %v", err)
	}

	// Once the holder is gone, however it ended, the lock is free.
	_ = h.Process.Kill()
	_ = h.Wait()
	l, err = LockDir(dir)
	if err != nil {
		t.Fatalf("after the holder died: %v", err)
	}
	l.Close()
}

func TestLockDirErrors(t *testing.T) {
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := LockDir(file); err == nil || errors.Is(err, ErrInUse) || !strings.HasPrefix(err.Error(), "data directory: ") {
		t.Errorf("a file as the directory: %v", err)
	}
}

func TestParseHolder(t *testing.T) {
	for i, tc := range []struct {
		in  string
		pid int
		cmd string
	}{
		{"12 thon run --config x\n", 12, "thon run --config x"},
		{"7 thon", 7, "thon"},
		{"", 0, ""},
		{"x thon\n", 0, ""},
		{"-3 thon\n", 0, ""},
	} {
		if pid, cmd := parseHolder(tc.in); pid != tc.pid || cmd != tc.cmd {
			t.Errorf("case %d: %d %q", i, pid, cmd)
		}
	}
}

// TestListening reads real sockets of this process back from /proc.
func TestListening(t *testing.T) {
	var want []netip.AddrPort
	for _, a := range []string{"127.0.0.1:0", "[::1]:0", "[::]:0"} {
		ln, err := net.Listen("tcp", a)
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		want = append(want, ln.Addr().(*net.TCPAddr).AddrPort())
	}
	socks, err := listening(procRoot)
	if err != nil {
		t.Fatal(err)
	}
	own, err := socketInodes("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range want {
		found := false
		for _, s := range socks {
			if s.addr == netip.AddrPortFrom(w.Addr().Unmap(), w.Port()) && own[s.inode] {
				found = true
			}
		}
		if !found {
			t.Errorf("%s is not among the listening sockets of this process", w)
		}
	}
}

func TestParseNetTCP(t *testing.T) {
	v4 := "0100007F:1F90" // 127.0.0.1:8080 as a little-endian kernel prints it
	v6 := "00000000000000000000000001000000:07E3"
	if binaryBigEndianHost() {
		v4 = "7F000001:1F90"
		v6 = "00000000000000000000000000000001:07E3"
	}
	in := "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n" +
		"   0: " + v4 + " 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 89089 1 0 100 0 0 10 0\n" +
		"   1: " + v4 + " 0100007F:D2A4 01 00000000:00000000 00:00000000 00000000     0        0 89090 1 0 100 0 0 10 0\n" +
		"   2: " + v6 + " 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 555 1 0 100 0 0 10 0\n"
	socks, err := parseNetTCP([]byte(in))
	if err != nil {
		t.Fatal(err)
	}
	if len(socks) != 2 || socks[0].addr.String() != "127.0.0.1:8080" || socks[0].inode != "89089" ||
		socks[1].addr.String() != "[::1]:2019" || socks[1].inode != "555" {
		t.Errorf("parsed %+v", socks)
	}
	if _, err := parseNetTCP([]byte("header\n 0: nothex:zz 0 0A 0 0 0 0 0 1\n")); err == nil {
		t.Error("no error for a bad address")
	}
}

func binaryBigEndianHost() bool { return binary.NativeEndian.Uint16([]byte{0, 1}) == 1 }

func TestOverlap(t *testing.T) {
	ap := netip.MustParseAddrPort
	for i, tc := range []struct {
		a, b string
		want bool
	}{
		{"127.0.0.1:8080", "127.0.0.1:8080", true},
		{"127.0.0.1:8080", "127.0.0.1:8081", false},
		{"127.0.0.1:8080", "127.0.0.2:8080", false},
		{"[::]:8080", "127.0.0.1:8080", true},
		{"0.0.0.0:8080", "[::1]:8080", true},
		{"[::1]:2019", "127.0.0.1:2019", false},
		{"[::ffff:127.0.0.1]:2019", "127.0.0.1:2019", true},
	} {
		if got := overlap(ap(tc.a), ap(tc.b)); got != tc.want {
			t.Errorf("case %d: overlap(%s, %s) = %v", i, tc.a, tc.b, got)
		}
	}
}

// TestCheckListen: another process listening with SO_REUSEPORT on an
// address this process serves, or is about to serve, is found and named;
// this process's own sockets are not.
func TestCheckListen(t *testing.T) {
	mine, err := reusePortListen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer mine.Close()
	free, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	freeAddr := free.Addr().String()
	free.Close()

	// Only this process listens: nothing to refuse, whatever is asked.
	if err := CheckListen([]string{mine.Addr().String(), freeAddr, ":" + portOf(t, freeAddr), "localhost:" + portOf(t, freeAddr)}); err != nil {
		t.Fatalf("own sockets only: %v", err)
	}

	// Another process shares this process's socket's address (as a second
	// Caddy would): refused even though nobody asks for that address.
	h := startHelper(t, "listen", mine.Addr().String())
	err = CheckListen(nil)
	var e *AddrInUseError
	if !errors.As(err, &e) || !errors.Is(err, ErrInUse) || e.PID != h.Process.Pid || e.Addr != mine.Addr().String() ||
		e.Socket.String() != mine.Addr().String() || !strings.Contains(e.Command, "holder-of-listen") {
		t.Fatalf("shared own socket, helper pid %d: %#v", h.Process.Pid, err)
	}
	want := fmt.Sprintf("listen address %s is already served by another process: pid %d (%s -test.run=^$ holder-of-listen) listens on %s",
		mine.Addr(), h.Process.Pid, os.Args[0], mine.Addr())
	if err.Error() != want {
		t.Errorf("error %q, want %q", err, want)
	}

	// An address about to be served that another process listens on: the
	// exact address, the wildcard and a name resolving to it.
	h2 := startHelper(t, "listen", freeAddr)
	for _, a := range []string{freeAddr, ":" + portOf(t, freeAddr), "localhost:" + portOf(t, freeAddr)} {
		err := checkListen(procRoot, os.Getpid(), []string{a})
		if !errors.As(err, &e) || e.PID != h2.Process.Pid || e.Addr != a || e.Socket.String() != freeAddr {
			t.Errorf("%s, helper pid %d: %v", a, h2.Process.Pid, err)
		}
	}
	// A different port of the same host is fine once the first helper is
	// gone; unresolvable names are left to the bind.
	_ = h.Process.Kill()
	_ = h.Wait()
	waitGone(t, h.Process.Pid, mine.Addr().String())
	if err := CheckListen([]string{"127.0.0.1:1", "no-such-host.invalid:80"}); err != nil {
		t.Errorf("unrelated addresses: %v", err)
	}
}

// waitGone waits until no process but this one listens on addr.
func waitGone(t *testing.T, pid int, addr string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for CheckListen([]string{addr}) != nil {
		if time.Now().After(deadline) {
			t.Fatalf("pid %d still listens on %s", pid, addr)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func portOf(t *testing.T, hostport string) string {
	t.Helper()
	_, p, err := net.SplitHostPort(hostport)
	if err != nil {
		t.Fatal(err)
	}
	return p
}
