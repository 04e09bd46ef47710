package sandboxes

import (
	"maps"
	"net"
	"strconv"
	"sync"
	"sync/atomic"

	"github.com/thon-dev/thon/store"
)

// State is where a sandbox is in its lifecycle.
type State string

// Sandbox states. Only a running sandbox receives proxied traffic.
const (
	StateStarting State = "starting"
	StateRunning  State = "running"
	StatePaused   State = "paused"
	StateStopped  State = "stopped"
	StateMissing  State = "missing" // recorded, but its container is gone
)

// Route is how to reach one sandbox.
type Route struct {
	ID     string // instance ID
	Group  string
	User   string
	UserID int64 // the owner's user id (0 when the user was deleted)
	Port   int   // host port, published on 127.0.0.1
	State  State
}

// routeOf is the route of an instance record in state st.
func routeOf(rec store.InstanceRecord, st State) Route {
	return Route{ID: idString(rec.ID), Group: rec.Group, User: rec.User, UserID: rec.UserID, Port: rec.Port, State: st}
}

// Dial is the proxy's upstream address of the route.
func (r Route) Dial() string {
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(r.Port))
}

// routeKey names a sandbox by group and user.
type routeKey struct{ group, user string }

// routeSnapshot is an immutable view of the routing table.
type routeSnapshot struct {
	byPort map[int]Route
	byName map[routeKey]Route
	byID   map[string]Route
}

// Routes is the routing table: sandbox → 127.0.0.1:port with its state.
// Readers (the proxy, on every request) never lock: they load an immutable
// snapshot. Writers copy, change and swap it atomically, so a reader never
// sees half an update.
type Routes struct {
	mu   sync.Mutex // serialises writers
	snap atomic.Pointer[routeSnapshot]
}

// NewRoutes returns an empty routing table.
func NewRoutes() *Routes {
	t := new(Routes)
	t.snap.Store(&routeSnapshot{byPort: map[int]Route{}, byName: map[routeKey]Route{}, byID: map[string]Route{}})
	return t
}

// ByPort finds the sandbox published on a host port.
func (t *Routes) ByPort(port int) (Route, bool) {
	r, ok := t.snap.Load().byPort[port]
	return r, ok
}

// ByName finds the sandbox of a user in a group.
func (t *Routes) ByName(group, user string) (Route, bool) {
	r, ok := t.snap.Load().byName[routeKey{group, user}]
	return r, ok
}

// ByID finds a sandbox by instance ID.
func (t *Routes) ByID(id string) (Route, bool) {
	r, ok := t.snap.Load().byID[id]
	return r, ok
}

// All returns every route, in no particular order.
func (t *Routes) All() []Route {
	s := t.snap.Load()
	out := make([]Route, 0, len(s.byID))
	for _, r := range s.byID {
		out = append(out, r)
	}
	return out
}

// Len is the number of routes.
func (t *Routes) Len() int { return len(t.snap.Load().byID) }

// Set adds or replaces the route of r.ID. A route that moved to another
// port or name no longer answers at the old one.
func (t *Routes) Set(r Route) {
	t.update(func(s *routeSnapshot) {
		if old, ok := s.byID[r.ID]; ok {
			removeRoute(s, old)
		}
		s.byID[r.ID] = r
		s.byPort[r.Port] = r
		s.byName[routeKey{r.Group, r.User}] = r
	})
}

// SetState changes the state of a route, if it exists.
func (t *Routes) SetState(id string, st State) {
	t.update(func(s *routeSnapshot) {
		r, ok := s.byID[id]
		if !ok {
			return
		}
		r.State = st
		s.byID[id] = r
		s.byPort[r.Port] = r
		s.byName[routeKey{r.Group, r.User}] = r
	})
}

// Delete removes the route of an instance.
func (t *Routes) Delete(id string) {
	t.update(func(s *routeSnapshot) {
		if old, ok := s.byID[id]; ok {
			removeRoute(s, old)
		}
	})
}

// Replace swaps in a whole new table, as reconciliation does.
func (t *Routes) Replace(routes []Route) {
	t.mu.Lock()
	defer t.mu.Unlock()
	s := &routeSnapshot{
		byPort: make(map[int]Route, len(routes)),
		byName: make(map[routeKey]Route, len(routes)),
		byID:   make(map[string]Route, len(routes)),
	}
	for _, r := range routes {
		s.byID[r.ID] = r
		s.byPort[r.Port] = r
		s.byName[routeKey{r.Group, r.User}] = r
	}
	t.snap.Store(s)
}

func (t *Routes) update(change func(*routeSnapshot)) {
	t.mu.Lock()
	defer t.mu.Unlock()
	old := t.snap.Load()
	s := &routeSnapshot{
		byPort: maps.Clone(old.byPort),
		byName: maps.Clone(old.byName),
		byID:   maps.Clone(old.byID),
	}
	change(s)
	t.snap.Store(s)
}

func removeRoute(s *routeSnapshot, r Route) {
	delete(s.byID, r.ID)
	if cur, ok := s.byPort[r.Port]; ok && cur.ID == r.ID {
		delete(s.byPort, r.Port)
	}
	k := routeKey{r.Group, r.User}
	if cur, ok := s.byName[k]; ok && cur.ID == r.ID {
		delete(s.byName, k)
	}
}
