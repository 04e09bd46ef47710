package sandboxes

import (
	"fmt"
	"sync"
	"testing"
)

func TestRoutesSetMoveDelete(t *testing.T) {
	rt := NewRoutes()
	rt.Set(Route{ID: "a", Group: "alpha", User: "alice", Port: 8443, State: StateStarting})
	if r, ok := rt.ByPort(8443); !ok || r.User != "alice" || r.Dial() != "127.0.0.1:8443" {
		t.Fatalf("ByPort = %+v, %v", r, ok)
	}
	rt.SetState("a", StateRunning)
	if r, _ := rt.ByName("alpha", "alice"); r.State != StateRunning {
		t.Errorf("state = %s", r.State)
	}
	// Moving to another port and group frees the old keys.
	rt.Set(Route{ID: "a", Group: "beta", User: "alice", Port: 8450, State: StateRunning})
	if _, ok := rt.ByPort(8443); ok {
		t.Error("old port still routed")
	}
	if _, ok := rt.ByName("alpha", "alice"); ok {
		t.Error("old name still routed")
	}
	if r, ok := rt.ByName("beta", "alice"); !ok || r.Port != 8450 {
		t.Errorf("new name = %+v, %v", r, ok)
	}
	rt.SetState("nosuch", StatePaused) // no effect, no panic
	rt.Delete("a")
	if rt.Len() != 0 {
		t.Errorf("len after delete = %d", rt.Len())
	}
	rt.Replace([]Route{{ID: "x", Group: "g", User: "u", Port: 1}, {ID: "y", Group: "g", User: "v", Port: 2}})
	if rt.Len() != 2 || len(rt.All()) != 2 {
		t.Errorf("after replace: %d", rt.Len())
	}
}

// TestRoutesConcurrent updates the table while readers look routes up; run
// with -race. A reader sees either the old or the new route, whole.
func TestRoutesConcurrent(t *testing.T) {
	rt := NewRoutes()
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 500 {
				id := fmt.Sprintf("w%d-%d", w, i%20)
				rt.Set(Route{ID: id, Group: "g", User: id, Port: 10000 + w*100 + i%20, State: StateRunning})
				if i%3 == 0 {
					rt.Delete(id)
				}
			}
		}()
	}
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 2000 {
				if r, ok := rt.ByPort(10000 + i%400); ok && r.Dial() == "" {
					t.Error("empty dial")
				}
			}
		}()
	}
	wg.Wait()
	for _, r := range rt.All() {
		if got, ok := rt.ByPort(r.Port); !ok || got.ID != r.ID {
			t.Errorf("index inconsistent for %+v: %+v", r, got)
		}
	}
}
