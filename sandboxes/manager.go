// Package sandboxes runs a code-server sandbox per participant: it creates
// the containers, keeps their records and the routing table in step with
// Docker, expires them, and acts on them one by one or in bulk.
package sandboxes

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/thon-dev/thon/sandboxes/docker"
	"github.com/thon-dev/thon/store"
)

// Errors of the manager; test them with errors.Is.
var (
	// ErrNotFound reports an unknown instance.
	ErrNotFound = errors.New("not found")
	// ErrConflict reports an action the instance's state forbids.
	ErrConflict = errors.New("conflict")
	// ErrUnavailable reports that the Docker engine cannot be reached, or
	// cannot run sandboxes (the image is missing).
	ErrUnavailable = errors.New("unavailable")
)

// unavailableError keeps the engine's own message and matches
// ErrUnavailable.
type unavailableError struct{ err error }

func (e *unavailableError) Error() string        { return e.err.Error() }
func (e *unavailableError) Unwrap() error        { return e.err }
func (e *unavailableError) Is(target error) bool { return target == ErrUnavailable }

// More states than the routing table knows: an instance record can also be
// terminated (killed, kept as history).
const StateTerminated State = store.StateTerminated

// Workspace modes.
const (
	WorkspaceVolume    = "volume"
	WorkspaceBind      = "bind"
	WorkspaceEphemeral = "ephemeral"
)

// Labels on every container and volume thon creates. The original's
// containers carry managed-by=thon-client with group, username and port;
// reconciliation adopts those too.
const (
	LabelManagedBy = "thon.managed-by"
	LabelGroup     = "thon.group"
	LabelUser      = "thon.user"
	LabelPort      = "thon.port"
	LabelInstance  = "thon.instance"
	LabelWorkspace = "thon.workspace"
	// LabelNode names the thon (its database) that made a container, so
	// that thons sharing a Docker engine never adopt each other's.
	LabelNode        = "thon.node"
	managedByValue   = "thon"
	legacyManagedBy  = "managed-by"
	legacyManagedVal = "thon-client"
)

// Config sets up a Manager. Zero values take the defaults noted.
type Config struct {
	Image         string // required
	PortStart     int    // first host port; default DefaultPortStart (8443)
	PortEnd       int    // last host port, inclusive; default PortStart+DefaultPortCount-1
	ContainerPort int    // code-server's port in the container; default 8443

	Workspace    string // volume (default), bind or ephemeral
	WorkspaceDir string // host directory of bind workspaces

	Secure     bool          // code-server --auth password, a generated password per sandbox
	DefaultTTL time.Duration // 0 = sandboxes do not expire

	MemoryBytes int64    // default 4 GiB
	NanoCPUs    int64    // default 2 CPUs
	PidsLimit   int64    // default 2048
	CapAdd      []string // capabilities kept (all others are dropped); default none

	Concurrency  int           // parallel launches in bulk and group actions; default 8
	ReadyTimeout time.Duration // how long a sandbox may take to answer /healthz; default 2m
	ReapInterval time.Duration // how often expired sandboxes are killed; default 30s
	SyncInterval time.Duration // how often Docker and the records are fully reconciled; default 5m

	// BaseURL prefixes sandbox URLs (e.g. "https://203.0.113.7"); without it
	// URLs are paths.
	BaseURL string

	// Files given on the command line or in the Caddyfile; they take
	// precedence over the database slots (store.ResolveConfig).
	KiloFile           string
	VSCodeSettingsFile string

	// KiloFor, when set, gives the kilo config of one user (the gateway
	// sets it to point Kilo at the user's own key). ok=false falls back to
	// the resolved kilo file.
	KiloFor func(ctx context.Context, group, user string) (content string, ok bool, err error)

	Logger *slog.Logger
}

// Manager runs the sandboxes. It is safe for concurrent use.
type Manager struct {
	cfgMu  sync.RWMutex
	cfg    Config
	docker *docker.Client

	store  *store.Store
	routes *Routes
	log    *slog.Logger
	health *http.Client

	portMu sync.Mutex // serialises port allocation with record creation

	userMu    sync.Mutex
	userLocks map[string]*sync.Mutex

	opsMu sync.Mutex
	ops   map[string]*opState
	order []string // operation IDs, oldest first

	runCtx context.Context // lives as long as Run; background operations use it
	runMu  sync.Mutex

	readyMu  sync.Mutex
	readyKey string // engine and image of the last successful check
	readyAt  time.Time

	nodeMu sync.Mutex
	node   string // this thon's LabelNode value, once read

	reconciled     chan struct{} // closed after Run's first reconciliation
	reconciledOnce sync.Once
	subscribed     chan struct{} // closed when Run first follows Docker's events
	subscribedOnce sync.Once

	killMu sync.Mutex
	killed map[string]bool // paused containers the engine is killing (see handleEvent)

	checks sync.WaitGroup // health checks started by events; Run waits for them
}

// Reconciled is closed once Run has reconciled the records and the routing
// table with Docker for the first time.
func (m *Manager) Reconciled() <-chan struct{} { return m.reconciled }

// Subscribed is closed once Run has reconciled and the engine has answered
// its first request for container events (the engine registers the
// subscription as it answers): a change made to a container after that
// reaches the manager as an event.
func (m *Manager) Subscribed() <-chan struct{} { return m.subscribed }

// settingNode is the setting that holds this thon's node ID, made with the
// database (store migration 0003).
const settingNode = "sandboxes.node_id"

// nodeID returns this thon's node ID: every container it creates is
// labelled with it.
func (m *Manager) nodeID(ctx context.Context) (string, error) {
	m.nodeMu.Lock()
	defer m.nodeMu.Unlock()
	if m.node != "" {
		return m.node, nil
	}
	id, ok, err := m.store.Setting(ctx, settingNode)
	if err != nil {
		return "", err
	}
	if !ok || id == "" {
		return "", fmt.Errorf("the database has no %s setting", settingNode)
	}
	m.node = id
	return id, nil
}

// NewManager returns a manager of the sandboxes recorded in st and run by
// dc. It does no I/O; Run starts the background work.
func NewManager(st *store.Store, dc *docker.Client, cfg Config) (*Manager, error) {
	if st == nil || dc == nil {
		return nil, errors.New("sandboxes: store and docker client are required")
	}
	cfg, err := cfg.WithDefaults()
	if err != nil {
		return nil, err
	}
	return &Manager{
		cfg:        cfg,
		store:      st,
		docker:     dc,
		routes:     NewRoutes(),
		log:        cfg.Logger,
		health:     &http.Client{Timeout: 2 * time.Second},
		userLocks:  map[string]*sync.Mutex{},
		ops:        map[string]*opState{},
		runCtx:     context.Background(),
		reconciled: make(chan struct{}),
		killed:     map[string]bool{},
		subscribed: make(chan struct{}),
	}, nil
}

// Reconfigure applies a new configuration and engine client, as a config
// reload does. Sandboxes already running keep their containers; new
// launches use the new settings. The routing table and records are kept.
// A cfg that WithDefaults refuses changes nothing.
//
// The manager never closes a client: whoever made dc closes it once no
// manager uses it any more. Operations already under way when Reconfigure
// returns (a launch, the event stream) finish with the client they
// started with, so closing the replaced client must leave calls in flight
// working; docker.Client.Close does, it only drops idle connections.
func (m *Manager) Reconfigure(dc *docker.Client, cfg Config) error {
	if dc == nil {
		return errors.New("sandboxes: docker client is required")
	}
	cfg, err := cfg.WithDefaults()
	if err != nil {
		return err
	}
	m.cfgMu.Lock()
	m.cfg, m.docker = cfg, dc
	m.cfgMu.Unlock()
	return nil
}

// Docker returns the engine client the manager uses now.
func (m *Manager) Docker() *docker.Client { return m.dc() }

// conf is the current configuration.
func (m *Manager) conf() Config {
	m.cfgMu.RLock()
	defer m.cfgMu.RUnlock()
	return m.cfg
}

// dc is the current engine client.
func (m *Manager) dc() *docker.Client {
	m.cfgMu.RLock()
	defer m.cfgMu.RUnlock()
	return m.docker
}

// Default host ports of sandboxes: PortStart and the size of the range
// when PortEnd is not set.
const (
	DefaultPortStart = 8443
	DefaultPortCount = 1000
)

// CheckPortRange checks a range of host ports handed to sandboxes, first
// to last inclusive: every setting of it (the Caddyfile's port_range, the
// app's port_start and port_end, Config) is checked here.
func CheckPortRange(first, last int) error {
	if first < 1024 || last > 65535 || last < first {
		return &store.FieldError{Field: "port_range", Msg: fmt.Sprintf("%d-%d is not a range within 1024-65535", first, last)}
	}
	return nil
}

// WithDefaults checks cfg and fills in its defaults, as NewManager and
// Reconfigure do: a config can be checked this way before it is applied.
func (cfg Config) WithDefaults() (Config, error) {
	if cfg.Image == "" {
		return cfg, &store.FieldError{Field: "image", Msg: "required"}
	}
	if cfg.PortStart == 0 {
		cfg.PortStart = DefaultPortStart
	}
	if cfg.PortEnd == 0 {
		cfg.PortEnd = cfg.PortStart + DefaultPortCount - 1
	}
	if err := CheckPortRange(cfg.PortStart, cfg.PortEnd); err != nil {
		return cfg, err
	}
	if cfg.ContainerPort == 0 {
		cfg.ContainerPort = 8443
	}
	switch cfg.Workspace {
	case "":
		cfg.Workspace = WorkspaceVolume
	case WorkspaceVolume, WorkspaceEphemeral:
	case WorkspaceBind:
		if cfg.WorkspaceDir == "" {
			return cfg, &store.FieldError{Field: "workspace_dir", Msg: "required for bind workspaces"}
		}
	default:
		return cfg, &store.FieldError{Field: "workspace", Msg: fmt.Sprintf("%q is not one of volume, bind, ephemeral", cfg.Workspace)}
	}
	if cfg.MemoryBytes == 0 {
		cfg.MemoryBytes = 4 << 30
	}
	if cfg.NanoCPUs == 0 {
		cfg.NanoCPUs = 2e9
	}
	if cfg.PidsLimit == 0 {
		cfg.PidsLimit = 2048
	}
	if cfg.Concurrency <= 0 {
		cfg.Concurrency = 8
	}
	if cfg.ReadyTimeout <= 0 {
		cfg.ReadyTimeout = 2 * time.Minute
	}
	if cfg.ReapInterval <= 0 {
		cfg.ReapInterval = 30 * time.Second
	}
	if cfg.SyncInterval <= 0 {
		cfg.SyncInterval = 5 * time.Minute
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return cfg, nil
}

// Routes is the routing table the proxy reads.
func (m *Manager) Routes() *Routes { return m.routes }

// Config returns the manager's configuration with defaults applied.
func (m *Manager) Config() Config { return m.conf() }

// Instance is a sandbox as the API shows it.
type Instance struct {
	ID           int64      `json:"id"`
	Group        string     `json:"group"`
	User         string     `json:"user"`
	UserID       int64      `json:"user_id,omitempty"`
	State        State      `json:"state"`
	Port         int        `json:"port,omitempty"`
	URL          string     `json:"url"`
	Container    string     `json:"container"`
	ContainerID  string     `json:"container_id,omitempty"`
	Image        string     `json:"image"`
	Workspace    string     `json:"workspace"`
	Password     string     `json:"password,omitempty"`
	ExpiresAt    *time.Time `json:"expires_at"`
	CreatedAt    time.Time  `json:"created_at"`
	UpdatedAt    time.Time  `json:"updated_at"`
	TerminatedAt *time.Time `json:"terminated_at,omitempty"`
	// Restarts counts the starts of the sandbox's container that thon did
	// not make: the engine's, after a crash or when the engine came back.
	Restarts int `json:"restarts"`
	// LastExit is how the container last ended; null if it never did.
	LastExit *Exit `json:"last_exit"`
}

// Exit is how a sandbox's container ended.
type Exit struct {
	Code      int       `json:"code"`
	OOMKilled bool      `json:"oom_killed"`
	Error     string    `json:"error,omitempty"` // the engine's, e.g. why it could not start again
	At        time.Time `json:"at"`
}

func toInstance(r store.InstanceRecord) Instance {
	in := Instance{
		ID: r.ID, Group: r.Group, User: r.User, UserID: r.UserID, State: State(r.State), Port: r.Port,
		URL: r.URL, Container: r.Name, ContainerID: r.ContainerID, Image: r.Image, Workspace: r.Workspace,
		Password: r.Password, ExpiresAt: r.ExpiresAt, CreatedAt: r.CreatedAt, UpdatedAt: r.UpdatedAt,
		TerminatedAt: r.TerminatedAt, Restarts: r.Restarts,
	}
	if e := r.LastExit; e != nil {
		in.LastExit = &Exit{Code: e.Code, OOMKilled: e.OOMKilled, Error: e.Error, At: e.At}
	}
	return in
}

// ListFilter selects instances for List.
type ListFilter struct {
	// State: "" lists every state but terminated, "all" everything, any
	// other value that state only.
	State   string
	Group   string
	Page    int // 1-based; default 1
	PerPage int // default 50, at most 500
}

var listableStates = map[string]bool{
	string(StateStarting): true, string(StateRunning): true, string(StatePaused): true,
	string(StateStopped): true, string(StateMissing): true, string(StateTerminated): true,
}

// List returns a page of instances and how many match in all.
func (m *Manager) List(ctx context.Context, f ListFilter) ([]Instance, int, error) {
	sf := store.InstanceFilter{Group: f.Group}
	switch {
	case f.State == "":
		sf.Live = true
	case f.State == "all":
	case listableStates[f.State]:
		sf.States = []string{f.State}
	default:
		return nil, 0, &store.FieldError{Field: "state", Msg: fmt.Sprintf("%q is not one of starting, running, paused, stopped, missing, terminated, all", f.State)}
	}
	if f.Group != "" {
		if err := store.ValidateName("group", f.Group); err != nil {
			return nil, 0, err
		}
	}
	if f.Page == 0 {
		f.Page = 1
	}
	if f.PerPage == 0 {
		f.PerPage = 50
	}
	if f.Page < 1 {
		return nil, 0, &store.FieldError{Field: "page", Msg: "must be 1 or more"}
	}
	if f.PerPage < 1 || f.PerPage > 500 {
		return nil, 0, &store.FieldError{Field: "per_page", Msg: "must be from 1 to 500"}
	}
	sf.Limit, sf.Offset = f.PerPage, (f.Page-1)*f.PerPage
	recs, total, err := m.store.ListInstances(ctx, sf)
	if err != nil {
		return nil, 0, err
	}
	out := make([]Instance, len(recs))
	for i, r := range recs {
		out[i] = toInstance(r)
	}
	return out, total, nil
}

// Get returns one instance.
func (m *Manager) Get(ctx context.Context, id int64) (Instance, error) {
	r, err := m.record(ctx, id)
	if err != nil {
		return Instance{}, err
	}
	return toInstance(r), nil
}

func (m *Manager) record(ctx context.Context, id int64) (store.InstanceRecord, error) {
	r, err := m.store.GetInstance(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		return r, fmt.Errorf("instance %d: %w", id, ErrNotFound)
	}
	return r, err
}

// lockUser serialises the actions on one user's sandbox.
func (m *Manager) lockUser(group, user string) func() {
	l := m.userLock(group, user)
	l.Lock()
	return l.Unlock
}

// tryLockUser takes the user's lock if nobody holds it: background work
// skips a sandbox an action is busy with, since the action records its own
// outcome.
func (m *Manager) tryLockUser(group, user string) (func(), bool) {
	l := m.userLock(group, user)
	if !l.TryLock() {
		return nil, false
	}
	return l.Unlock, true
}

func (m *Manager) userLock(group, user string) *sync.Mutex {
	k := group + "/" + user
	m.userMu.Lock()
	defer m.userMu.Unlock()
	l, ok := m.userLocks[k]
	if !ok {
		l = new(sync.Mutex)
		m.userLocks[k] = l
	}
	return l
}

// readyFor is how long a successful readiness check is trusted: a group
// start checks once, not once per sandbox.
const readyFor = 5 * time.Second

// ready checks that the engine answers and has the image.
func (m *Manager) ready(ctx context.Context) error {
	cfg, dc := m.conf(), m.dc()
	key := dc.Host() + " " + cfg.Image
	m.readyMu.Lock()
	fresh := m.readyKey == key && time.Since(m.readyAt) < readyFor
	m.readyMu.Unlock()
	if fresh {
		return nil
	}
	if err := m.checkReady(ctx, dc, cfg); err != nil {
		return err
	}
	m.readyMu.Lock()
	m.readyKey, m.readyAt = key, time.Now()
	m.readyMu.Unlock()
	return nil
}

func (m *Manager) checkReady(ctx context.Context, dc *docker.Client, cfg Config) error {
	if err := dc.Ping(ctx); err != nil {
		return &unavailableError{err}
	}
	ok, err := dc.ImageExists(ctx, cfg.Image)
	if err != nil {
		return &unavailableError{err}
	}
	if !ok {
		return &unavailableError{fmt.Errorf("image %q is not on the Docker engine at %s: build it (sandboxes/image/README.md; `make sandbox-test-image` for the test image) or set the image option",
			cfg.Image, dc.Host())}
	}
	return nil
}

// dockerErr classifies an engine error for the API.
func dockerErr(err error) error {
	if errors.Is(err, docker.ErrUnreachable) {
		return &unavailableError{err}
	}
	return err
}

// ContainerName is the container of a user's sandbox: thon-<group>-<user>,
// from store.DerivedName, which the store keeps unique among users.
func ContainerName(group, user string) string { return "thon-" + store.DerivedName(group, user) }

// VolumeName is the named volume of a user's workspace:
// thon-workspace-<group>-<user>, from store.DerivedName.
func VolumeName(group, user string) string { return "thon-workspace-" + store.DerivedName(group, user) }

// URLPath is where a sandbox is served: /s/<group>/<user>/.
func URLPath(group, user string) string { return "/s/" + group + "/" + user + "/" }

func (m *Manager) url(group, user string) string { return m.conf().BaseURL + URLPath(group, user) }

func portLabel(p int) string { return strconv.Itoa(p) }
