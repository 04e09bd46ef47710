// Package caddymodule adapts thon's domain packages to Caddy: the thon app,
// its HTTP handlers, the admin routes, the Caddyfile syntax and the CLI
// commands. It is the only package of the project that imports Caddy.
package caddymodule

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/thon-dev/thon/api"
	"github.com/thon-dev/thon/auth"
	"github.com/thon-dev/thon/gateway"
	"github.com/thon-dev/thon/internal/exclusive"
	"github.com/thon-dev/thon/sandboxes"
	"github.com/thon-dev/thon/sandboxes/docker"
	"github.com/thon-dev/thon/sandboxes/nginx"
	"github.com/thon-dev/thon/store"
)

func init() {
	caddy.RegisterModule(new(App))
}

// App is the thon app: it owns the store and the services built on it, and
// keeps them across config reloads. Its zero value is usable: state then
// lives in a SQLite file under Caddy's data directory.
type App struct {
	// Directory for thon's files. Default: "thon" under Caddy's data
	// directory. Placeholders such as {env.THON_DATA_DIR} are resolved.
	DataDir string `json:"data_dir,omitempty"`

	// Path of the SQLite database. Default: thon.db in data_dir.
	Database string `json:"database,omitempty"`

	// Address participants reach thon at when it has no domain: it goes
	// into sandbox URLs and certificates.
	ExternalIP string `json:"external_ip,omitempty"`

	// Domain name thon is served at, if any.
	Domain string `json:"domain,omitempty"`

	// Docker engine address, e.g. unix:///var/run/docker.sock. Default:
	// the DOCKER_HOST environment variable or the local socket.
	DockerHost string `json:"docker_host,omitempty"`

	// Sandbox image. Default: thon/sandbox:latest.
	Image string `json:"image,omitempty"`

	// Workspace persistence: "volume" (a named volume per user, the
	// default), "bind" (a host directory per user under workspace_dir)
	// or "ephemeral".
	WorkspaceMode string `json:"workspace_mode,omitempty"`

	// Host directory of bind-mounted workspaces.
	WorkspaceDir string `json:"workspace_dir,omitempty"`

	// Protect each sandbox with its own generated password.
	Secure bool `json:"secure,omitempty"`

	// A groups YAML file imported into the database at start, and the
	// highest-precedence source of the roster.
	GroupsFile string `json:"groups_file,omitempty"`

	// A kilo.jsonc file injected into sandboxes; takes precedence over the
	// database slot config_kilo_json.
	KiloFile string `json:"kilo_file,omitempty"`

	// A VS Code settings file injected into sandboxes; takes precedence over
	// the database slot config_vscode_settings.
	VSCodeSettingsFile string `json:"vscode_settings_file,omitempty"`

	// Host ports handed to sandboxes, published on 127.0.0.1 only.
	// Default: 8443 to 9442.
	PortStart int `json:"port_start,omitempty"`
	PortEnd   int `json:"port_end,omitempty"`

	// Lifetime of a new sandbox; 0 (the default) means no expiry.
	TTL caddy.Duration `json:"ttl,omitempty"`

	// Resource limits of every sandbox container. Defaults: 4 GiB of
	// memory, 2 CPUs, 2048 processes.
	MemoryBytes int64   `json:"memory_bytes,omitempty"`
	CPUs        float64 `json:"cpus,omitempty"`
	PidsLimit   int64   `json:"pids_limit,omitempty"`

	// How many sandboxes bulk and group actions start or stop at once.
	// Default: 8.
	Concurrency int `json:"concurrency,omitempty"`

	// Nginx turns on nginx emission (the /api/nginx/ routes); see
	// NginxConfig.
	Nginx *NginxConfig `json:"nginx,omitempty"`

	// Lemonade connects thon to a Lemonade Server (the /api/lemonade/
	// routes and a health watcher); see LemonadeConfig.
	Lemonade *LemonadeConfig `json:"lemonade,omitempty"`

	// Gateway is the AI gateway's policy (limits in process or in Redis)
	// and address for Kilo; see GatewayConfig. Default: limits in process.
	Gateway *GatewayConfig `json:"gateway,omitempty"`

	// Auth is how organisers sign in; see AuthConfig.
	Auth *AuthConfig `json:"auth,omitempty"`

	shared *shared
	api    *api.Server
	dbKey  string // this config's reference to shared in pool
	dirKey string // its reference to the data directory's lock, once started
	logger *zap.Logger
	ctx    caddy.Context

	// The engine client and sandbox settings of this config: made and
	// checked by Provision, handed to the shared manager by Start. The
	// config closes its client in Cleanup, when the manager has been given
	// a newer config's or is gone.
	docker     *docker.Client
	sandboxCfg sandboxes.Config
	prev       *App // the running config Start took the manager from, until that one stops (under shared.cfgMu)
}

// CaddyModule returns the Caddy module information.
func (*App) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "thon",
		New: func() caddy.Module { return new(App) },
	}
}

// Provision resolves placeholders and defaults, checks the sandbox
// settings, makes this config's Docker client and opens the database
// through a pool shared across config reloads, so a reload never opens it
// twice. It changes nothing a running config uses: Caddy may still refuse
// this config, and `caddy validate` never starts it. It does no network
// I/O.
func (a *App) Provision(ctx caddy.Context) error {
	a.ctx = ctx
	a.logger = ctx.Logger()
	for _, f := range []*string{
		&a.DataDir, &a.Database, &a.ExternalIP, &a.Domain, &a.DockerHost, &a.Image,
		&a.WorkspaceDir, &a.GroupsFile, &a.KiloFile, &a.VSCodeSettingsFile,
	} {
		*f = expand(*f, "")
	}
	if a.DataDir == "" {
		a.DataDir = filepath.Join(caddy.AppDataDir(), "thon")
	}
	if a.Database == "" {
		a.Database = filepath.Join(a.DataDir, "thon.db")
	}
	if a.Image == "" {
		a.Image = "thon/sandbox:latest"
	}
	for _, p := range []struct {
		name string
		v    *string
	}{{"data_dir", &a.DataDir}, {"database", &a.Database}} {
		abs, err := filepath.Abs(*p.v)
		if err != nil {
			return fmt.Errorf("%s %q: %w", p.name, *p.v, err)
		}
		*p.v = abs
	}

	cfg, err := a.sandboxConfig(ctx.Slogger().With("component", "sandboxes")).WithDefaults()
	if err != nil {
		return err
	}
	dc, err := docker.New(a.DockerHost)
	if err != nil {
		return fmt.Errorf("docker_host: %w", err)
	}
	a.docker, a.sandboxCfg = dc, cfg

	dbPath := a.Database
	a.dbKey = "thon:" + dbPath
	val, _, err := pool.LoadOrNew(a.dbKey, func() (caddy.Destructor, error) {
		return openShared(dbPath, dc, cfg)
	})
	if err != nil {
		a.dbKey = ""
		return err
	}
	a.shared = val.(*shared)

	nginxOpts, err := a.nginxOptions()
	if err != nil {
		return err
	}
	lemonadeOpts, err := a.lemonadeOptions()
	if err != nil {
		return err
	}
	gatewayOpts, err := a.gatewayOptions()
	if err != nil {
		return err
	}
	authSvc, err := a.authService()
	if err != nil {
		return err
	}
	a.api, err = api.New(api.Options{Store: a.shared.store, Auth: authSvc, Sandboxes: a.shared.sandboxes, Logger: ctx.Slogger(), Nginx: nginxOpts, Lemonade: lemonadeOpts, Gateway: gatewayOpts})
	if err != nil {
		return fmt.Errorf("setting up the REST API: %w", err)
	}
	return nil
}

// sandboxConfig is the sandbox manager's configuration from the app's.
func (a *App) sandboxConfig(logger *slog.Logger) sandboxes.Config {
	base := ""
	switch {
	case a.Domain != "":
		base = "https://" + a.Domain
	case a.ExternalIP != "":
		base = "https://" + a.ExternalIP
	}
	return sandboxes.Config{
		Image:              a.Image,
		PortStart:          a.PortStart,
		PortEnd:            a.PortEnd,
		Workspace:          a.WorkspaceMode,
		WorkspaceDir:       a.WorkspaceDir,
		Secure:             a.Secure,
		DefaultTTL:         time.Duration(a.TTL),
		MemoryBytes:        a.MemoryBytes,
		NanoCPUs:           int64(a.CPUs * 1e9),
		PidsLimit:          a.PidsLimit,
		Concurrency:        a.Concurrency,
		BaseURL:            base,
		KiloFile:           a.KiloFile,
		VSCodeSettingsFile: a.VSCodeSettingsFile,
		KiloFor:            a.gatewayKilo,
		Logger:             logger,
	}
}

// Validate checks the files the configuration names; Provision has
// checked the sandbox settings (sandboxes.Config.WithDefaults).
func (a *App) Validate() error {
	for name, p := range map[string]string{
		"groups_file": a.GroupsFile, "kilo_file": a.KiloFile, "vscode_settings_file": a.VSCodeSettingsFile,
	} {
		if p == "" {
			continue
		}
		if _, err := os.Stat(p); err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
	}
	return nil
}

// Start takes the data directory (a second thon on it, or on one of this
// config's listen addresses, refuses to start), imports the groups file if
// one is configured, and hands this config's sandbox settings and Docker
// client to the shared manager. An invalid groups file fails the start
// with an error naming its line, and the database is left as it was.
func (a *App) Start() error {
	if err := a.lockDataDir(); err != nil {
		return err
	}
	if err := exclusive.CheckListen(a.listenAddrs()); err != nil {
		return err
	}
	if err := a.shared.store.CheckDerivedNames(a.ctx); err != nil {
		return err
	}
	if a.GroupsFile != "" {
		res, err := a.shared.store.ResolveConfig(a.ctx, store.KeyGroupsYAML, a.GroupsFile)
		if err != nil {
			return err
		}
		roster, err := store.ParseRoster(a.GroupsFile, []byte(res.Content))
		if err != nil {
			return err
		}
		n, err := a.shared.store.ImportRoster(store.WithActor(a.ctx, "groups_file"), roster)
		if err != nil {
			return fmt.Errorf("importing %s: %w", a.GroupsFile, err)
		}
		a.logger.Info("imported groups file",
			zap.String("file", a.GroupsFile),
			zap.Int("groups_created", n.GroupsCreated),
			zap.Int("users_created", n.UsersCreated),
			zap.Int("users_moved", n.UsersMoved))
	}
	if err := a.shared.activate(a); err != nil {
		return err
	}
	a.shared.start()
	if err := a.startGateway(); err != nil {
		return err
	}
	a.startLemonade()
	if err := a.startAuth(); err != nil {
		return err
	}
	a.logger.Info("thon app started", zap.String("database", a.Database), zap.String("data_dir", a.DataDir))
	return nil
}

// lockDataDir takes this process's lock on the data directory the first
// time a config using it starts; the configs that follow share it (a
// reload holds it throughout), and the last one cleaned up releases it.
func (a *App) lockDataDir() error {
	if a.dirKey != "" {
		return nil
	}
	key := "thon-dir:" + a.DataDir
	if _, _, err := pool.LoadOrNew(key, func() (caddy.Destructor, error) {
		l, err := exclusive.LockDir(a.DataDir)
		if err != nil {
			return nil, err
		}
		return dirLock{l}, nil
	}); err != nil {
		return err
	}
	a.dirKey = key
	return nil
}

// dirLock releases the data directory when the pool drops it.
type dirLock struct{ *exclusive.DirLock }

func (l dirLock) Destruct() error { return l.Close() }

// listenAddrs are the TCP addresses this config's HTTP servers listen on
// (all apps are provisioned before any starts, so they are known even if
// the http app starts after this one). exclusive.CheckListen adds the
// sockets this process listens on already, the admin endpoint's among
// them.
func (a *App) listenAddrs() []string {
	v, err := a.ctx.AppIfConfigured("http")
	if err != nil {
		return nil
	}
	h, ok := v.(*caddyhttp.App)
	if !ok || h == nil {
		return nil
	}
	var out []string
	for _, srv := range h.Servers {
		for _, l := range srv.Listen {
			na, err := caddy.ParseNetworkAddress(l)
			if err != nil || !strings.HasPrefix(na.Network, "tcp") {
				continue // unix sockets, fds and UDP cannot be shared this way; bad ones fail to bind
			}
			for off := range min(na.PortRangeSize(), 1024) {
				out = append(out, na.JoinHostPort(off))
			}
		}
	}
	return out
}

// Stop hands the manager back to the config that was running before this
// one, if this one started but the config as a whole did not (another
// app failed to start); Caddy keeps that config running. The manager's
// background work (reconciliation, Docker events, the TTL reaper) belongs
// to the shared state and goes on across reloads until the last config
// using it is cleaned up.
func (a *App) Stop() error {
	if a.shared == nil {
		return nil
	}
	return a.shared.deactivate(a)
}

// Cleanup releases this config's references to the shared database and
// the data directory's lock, and closes its Docker client: the manager
// uses a newer config's by now, or has stopped with the shared state.
func (a *App) Cleanup() error {
	var errs []error
	if a.shared != nil {
		a.shared.forget(a)
	}
	if a.dbKey != "" {
		_, err := pool.Delete(a.dbKey)
		errs = append(errs, err)
		a.dbKey = ""
	}
	if a.dirKey != "" {
		_, err := pool.Delete(a.dirKey)
		errs = append(errs, err)
		a.dirKey = ""
	}
	if a.docker != nil {
		errs = append(errs, a.docker.Close())
		a.docker = nil
	}
	return errors.Join(errs...)
}

// Store returns the app's database.
func (a *App) Store() *store.Store { return a.shared.store }

// Sandboxes returns the sandbox manager.
func (a *App) Sandboxes() *sandboxes.Manager { return a.shared.sandboxes }

// API returns the REST API server.
func (a *App) API() *api.Server { return a.api }

// pool holds the resources that outlive a single config: a reload
// provisions the new config before the old one is cleaned up, so the
// reference count never drops to zero and nothing is reopened.
var pool = caddy.NewUsagePool()

// shared is the state of one database that outlives configs: the store
// and the sandbox manager with its routing table and background work.
type shared struct {
	store     *store.Store
	sandboxes *sandboxes.Manager
	lemonade  lemonadeWatch // the health watcher of the running config's Lemonade
	nginx     nginx.Applier // writes the nginx site of every config, one write at a time
	// the AI gateway's keys, limiters, pending usage and background work
	gateway *gateway.Runtime
	// the live sessions, the login limiter, the setup link issued
	auth *auth.State

	cfgMu  sync.Mutex
	active *App // the config whose sandbox settings and Docker client the manager has

	once   sync.Once
	cancel context.CancelFunc
	done   chan struct{}
}

func openShared(dbPath string, dc *docker.Client, cfg sandboxes.Config) (*shared, error) {
	st, err := store.Open(context.Background(), dbPath)
	if err != nil {
		return nil, fmt.Errorf("opening database: %w", err)
	}
	m, err := sandboxes.NewManager(st, dc, cfg)
	if err != nil {
		st.Close()
		return nil, err
	}
	return &shared{store: st, sandboxes: m, gateway: gateway.NewRuntime(st, nil),
		auth: auth.NewState(0, 0), done: make(chan struct{})}, nil
}

// activate gives the manager a's sandbox settings and Docker client; the
// config running until now is kept as a's fallback (see deactivate).
func (s *shared) activate(a *App) error {
	s.cfgMu.Lock()
	defer s.cfgMu.Unlock()
	if s.active == a {
		return nil
	}
	if err := s.sandboxes.Reconfigure(a.docker, a.sandboxCfg); err != nil {
		return err
	}
	a.prev, s.active = s.active, a
	return nil
}

// deactivate is a's Stop. When a has the manager and a fallback, a
// started but its config did not run: the fallback, still running, gets
// the manager, the gateway and the Lemonade watcher back. When a was replaced (a reload), its successor no
// longer needs it as a fallback. When a has the manager and no fallback,
// thon is stopping and the manager stays as it is.
func (s *shared) deactivate(a *App) error {
	s.cfgMu.Lock()
	defer s.cfgMu.Unlock()
	if s.active != a {
		if s.active != nil && s.active.prev == a {
			s.active.prev = nil
		}
		return nil
	}
	p := a.prev
	a.prev = nil
	if p == nil {
		return nil
	}
	if err := s.sandboxes.Reconfigure(p.docker, p.sandboxCfg); err != nil {
		return err
	}
	s.active = p
	// The gateway's limiter and service and the Lemonade watcher go back
	// to the running config too.
	if err := p.startGateway(); err != nil {
		return err
	}
	p.startLemonade()
	return nil
}

// forget drops every link to a, which is being cleaned up.
func (s *shared) forget(a *App) {
	s.cfgMu.Lock()
	defer s.cfgMu.Unlock()
	if s.active == a {
		s.active = nil
	} else if s.active != nil && s.active.prev == a {
		s.active.prev = nil
	}
	a.prev = nil
}

// start runs the manager's background work once, whichever config starts
// first.
func (s *shared) start() {
	s.once.Do(func() {
		ctx, cancel := context.WithCancel(context.Background())
		s.cancel = cancel
		go func() {
			defer close(s.done)
			s.sandboxes.Run(ctx)
		}()
	})
}

// Destruct stops the background work and closes the database, when the
// last config using them is gone.
func (s *shared) Destruct() error {
	s.lemonade.stop()
	s.gateway.Stop()
	if s.cancel != nil {
		s.cancel()
		<-s.done
	}
	return s.store.Close()
}

// Interface guards
var (
	_ caddy.App          = (*App)(nil)
	_ caddy.Provisioner  = (*App)(nil)
	_ caddy.Validator    = (*App)(nil)
	_ caddy.CleanerUpper = (*App)(nil)
)
