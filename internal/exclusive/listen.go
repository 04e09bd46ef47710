package exclusive

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// AddrInUseError reports a listen address that a socket of another
// process already serves.
type AddrInUseError struct {
	Addr    string         // the address thon was to serve, host:port
	Socket  netip.AddrPort // the other process's listening socket
	PID     int
	Command string
}

func (e *AddrInUseError) Error() string {
	return fmt.Sprintf("listen address %s is already served by another process: pid %d (%s) listens on %s",
		e.Addr, e.PID, e.Command, e.Socket)
}

// Is makes errors.Is(err, ErrInUse) true.
func (e *AddrInUseError) Is(target error) bool { return target == ErrInUse }

// procRoot is where the proc filesystem is mounted.
const procRoot = "/proc"

// CheckListen fails with an *AddrInUseError when another process listens
// on a TCP address that one of addrs ("host:port"; an empty host is every
// interface) or one of this process's own listening sockets also covers.
// The addresses given are those about to be served (a server may not
// listen yet); this process's own sockets cover those already open, such
// as the admin endpoint.
//
// How it detects: Caddy listens with SO_REUSEPORT, so a second Caddy binds
// a taken address without an error and the kernel then spreads the
// connections over both. Binding cannot tell, so CheckListen reads the
// sockets in the LISTEN state from /proc/net/tcp and /proc/net/tcp6 (this
// network namespace). Two addresses overlap when their ports are the same
// and their hosts are the same or either is a wildcard (0.0.0.0, ::).
// Each overlapping socket's inode is looked up among this process's file
// descriptors (/proc/self/fd, links "socket:[inode]"): ours are fine,
// whatever config opened them, so a reload, whose old and new listeners
// are all this process's, never trips. Any other is looked up in
// /proc/<pid>/fd of every process to name its holder. A socket no visible
// process holds is skipped: it was closed in between, or it belongs to
// another user, and the kernel shares SO_REUSEPORT sockets only between
// sockets of one user, so such an address fails to bind instead.
//
// Without /proc (not Linux) it checks nothing.
func CheckListen(addrs []string) error {
	return checkListen(procRoot, os.Getpid(), addrs)
}

// tcpSocket is a line of /proc/net/tcp{,6} in the LISTEN state.
type tcpSocket struct {
	addr  netip.AddrPort
	inode string
}

func checkListen(proc string, self int, addrs []string) error {
	socks, err := listening(proc)
	if err != nil || len(socks) == 0 {
		return err
	}
	own, err := socketInodes(filepath.Join(proc, strconv.Itoa(self), "fd"))
	if err != nil {
		return fmt.Errorf("reading this process's sockets: %w", err)
	}

	type want struct {
		name string
		ap   netip.AddrPort
	}
	var wants []want
	for _, a := range addrs {
		ap, ok := resolve(a)
		if ok {
			wants = append(wants, want{a, ap})
		}
	}
	var others []tcpSocket
	for _, s := range socks {
		if own[s.inode] {
			wants = append(wants, want{s.addr.String(), s.addr})
		} else {
			others = append(others, s)
		}
	}

	// Pair each wanted address with the other processes' sockets that
	// overlap it; the holders are looked up only if there are any.
	type clash struct {
		want want
		sock tcpSocket
	}
	var clashes []clash
	for _, w := range wants {
		for _, s := range others {
			if overlap(w.ap, s.addr) {
				clashes = append(clashes, clash{w, s})
			}
		}
	}
	if len(clashes) == 0 {
		return nil
	}
	inodes := map[string]bool{}
	for _, c := range clashes {
		inodes[c.sock.inode] = true
	}
	holders := socketHolders(proc, self, inodes)
	for _, c := range clashes {
		if pid, ok := holders[c.sock.inode]; ok {
			return &AddrInUseError{Addr: c.want.name, Socket: c.sock.addr, PID: pid, Command: command(proc, pid)}
		}
	}
	return nil
}

// resolve turns host:port into the address a listener binds, as
// net.Listen picks it; false when it cannot be resolved (binding it fails
// then anyway).
func resolve(hostport string) (netip.AddrPort, bool) {
	a, err := net.ResolveTCPAddr("tcp", hostport)
	if err != nil {
		return netip.AddrPort{}, false
	}
	if a.IP == nil {
		return netip.AddrPortFrom(netip.IPv6Unspecified(), uint16(a.Port)), true
	}
	ip, ok := netip.AddrFromSlice(a.IP)
	if !ok {
		return netip.AddrPort{}, false
	}
	return netip.AddrPortFrom(ip.Unmap(), uint16(a.Port)), true
}

// overlap reports whether two listening addresses take the same
// connections, wholly or in part.
func overlap(a, b netip.AddrPort) bool {
	if a.Port() != b.Port() {
		return false
	}
	x, y := a.Addr().Unmap(), b.Addr().Unmap()
	return x == y || x.IsUnspecified() || y.IsUnspecified()
}

// listening reads the TCP sockets in the LISTEN state. A missing
// /proc/net/tcp means no proc filesystem, and nothing to check; a
// missing tcp6 means no IPv6.
func listening(proc string) ([]tcpSocket, error) {
	var out []tcpSocket
	for _, name := range []string{"tcp", "tcp6"} {
		b, err := os.ReadFile(filepath.Join(proc, "net", name))
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, err
		}
		socks, err := parseNetTCP(b)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", filepath.Join(proc, "net", name), err)
		}
		out = append(out, socks...)
	}
	return out, nil
}

// tcpListen is the LISTEN state in /proc/net/tcp (include/net/tcp_states.h).
const tcpListen = "0A"

// parseNetTCP reads the LISTEN lines of /proc/net/tcp or tcp6:
//
//	sl local_address rem_address st tx_queue:rx_queue tr:tm->when retrnsmt uid timeout inode ...
//	0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000 0 0 12345 ...
func parseNetTCP(b []byte) ([]tcpSocket, error) {
	var out []tcpSocket
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Scan() // the header
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 10 || f[3] != tcpListen {
			continue
		}
		ap, err := parseHexAddr(f[1])
		if err != nil {
			return nil, fmt.Errorf("local address %q: %w", f[1], err)
		}
		out = append(out, tcpSocket{addr: ap, inode: f[9]})
	}
	return out, sc.Err()
}

// parseHexAddr reads an address of /proc/net/tcp: the IP as 32-bit words
// in the host's byte order, in hex, then ':' and the port in hex.
func parseHexAddr(s string) (netip.AddrPort, error) {
	h, p, ok := strings.Cut(s, ":")
	if !ok {
		return netip.AddrPort{}, errors.New("no port")
	}
	port, err := strconv.ParseUint(p, 16, 16)
	if err != nil {
		return netip.AddrPort{}, err
	}
	raw, err := hex.DecodeString(h)
	if err != nil || (len(raw) != 4 && len(raw) != 16) {
		return netip.AddrPort{}, fmt.Errorf("not an IPv4 or IPv6 address")
	}
	ip := make([]byte, len(raw))
	for i := 0; i < len(raw); i += 4 {
		binary.NativeEndian.PutUint32(ip[i:], binary.BigEndian.Uint32(raw[i:]))
	}
	addr, _ := netip.AddrFromSlice(ip)
	return netip.AddrPortFrom(addr.Unmap(), uint16(port)), nil
}

// socketInodes is the set of socket inodes among the links of a
// /proc/<pid>/fd directory.
func socketInodes(fdDir string) (map[string]bool, error) {
	ents, err := os.ReadDir(fdDir)
	if err != nil {
		return nil, err
	}
	out := map[string]bool{}
	for _, e := range ents {
		if ino, ok := socketInode(filepath.Join(fdDir, e.Name())); ok {
			out[ino] = true
		}
	}
	return out, nil
}

func socketInode(link string) (string, bool) {
	t, err := os.Readlink(link)
	if err != nil {
		return "", false
	}
	ino, ok := strings.CutPrefix(t, "socket:[")
	if !ok {
		return "", false
	}
	return strings.TrimSuffix(ino, "]"), true
}

// socketHolders finds, for each inode, a process other than self that has
// it open. Processes whose descriptors cannot be read are passed over.
func socketHolders(proc string, self int, inodes map[string]bool) map[string]int {
	out := map[string]int{}
	ents, err := os.ReadDir(proc)
	if err != nil {
		return out
	}
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == self {
			continue
		}
		fds, err := os.ReadDir(filepath.Join(proc, e.Name(), "fd"))
		if err != nil {
			continue
		}
		for _, fd := range fds {
			ino, ok := socketInode(filepath.Join(proc, e.Name(), "fd", fd.Name()))
			if !ok || !inodes[ino] {
				continue
			}
			if _, seen := out[ino]; !seen {
				out[ino] = pid
			}
		}
		if len(out) == len(inodes) {
			break
		}
	}
	return out
}

// command is a process's command line, its arguments joined by spaces.
func command(proc string, pid int) string {
	b, err := os.ReadFile(filepath.Join(proc, strconv.Itoa(pid), "cmdline"))
	if err != nil || len(b) == 0 {
		return "command unknown"
	}
	return strings.TrimSpace(strings.ReplaceAll(string(b), "\x00", " "))
}
