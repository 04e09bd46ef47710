package nginxtest

import "testing"

func TestNginxFreePorts(t *testing.T) {
	ports := FreePorts(t, 5)
	seen := map[int]bool{}
	for _, p := range ports {
		if p <= 0 || p > 65535 || seen[p] {
			t.Errorf("ports %v", ports)
		}
		seen[p] = true
	}
	if len(ports) != 5 {
		t.Errorf("%d ports, want 5", len(ports))
	}
}
