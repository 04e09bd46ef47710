package nginxtest

import (
	"net"
	"testing"
)

// FreePorts returns n distinct ports of 127.0.0.1 that were free a moment
// ago: it holds them all open at once, so no two are the same.
func FreePorts(t testing.TB, n int) []int {
	t.Helper()
	ports := make([]int, 0, n)
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports
}
