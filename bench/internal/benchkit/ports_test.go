package benchkit

import (
	"os"
	"strings"
	"testing"
)

func TestRequire(t *testing.T) {
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
