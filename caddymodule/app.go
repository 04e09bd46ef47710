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
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/caddyserver/caddy/v2"

	"github.com/thon-dev/thon/api"
	"github.com/thon-dev/thon/auth"
	"github.com/thon-dev/thon/gateway"
	"github.com/thon-dev/thon/sandboxes"
	"github.com/thon-dev/thon/sandboxes/docker"
	"github.com/thon-dev/thon/sandboxes/nginx"
	"github.com/thon-dev/thon/store"
)

func init() {
	caddy.RegisterModule(new(App))
}

// Workspace modes of a sandbox.
const (
	WorkspaceVolume    = "volume"
	WorkspaceBind      = "bind"
	WorkspaceEphemeral = "ephemeral"
)

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
	dbKey  string
	logger *zap.Logger
	ctx    caddy.Context
}

// CaddyModule returns the Caddy module information.
func (*App) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "thon",
		New: func() caddy.Module { return new(App) },
	}
}

// Provision resolves placeholders and defaults, and opens the database
// through a pool shared across config reloads, so a reload never opens it
// twice. It does no network I/O.
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
	if a.WorkspaceMode == "" {
		a.WorkspaceMode = WorkspaceVolume
	}

	dbPath, err := filepath.Abs(a.Database)
	if err != nil {
		return fmt.Errorf("database path %q: %v", a.Database, err)
	}
	a.Database = dbPath
	dc, err := docker.New(a.DockerHost)
	if err != nil {
		return fmt.Errorf("docker_host: %v", err)
	}
	cfg := a.sandboxConfig(ctx.Slogger().With("component", "sandboxes"))

	a.dbKey = "thon:" + dbPath
	val, _, err := pool.LoadOrNew(a.dbKey, func() (caddy.Destructor, error) {
		return openShared(dbPath, dc, cfg)
	})
	if err != nil {
		a.dbKey = ""
		return err
	}
	a.shared = val.(*shared)
	// A reload keeps the manager (its routing table and operations) and
	// gives it the new settings.
	if err := a.shared.sandboxes.Reconfigure(dc, cfg); err != nil {
		return err
	}

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
		return fmt.Errorf("setting up the REST API: %v", err)
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

// Validate checks the configuration.
func (a *App) Validate() error {
	switch a.WorkspaceMode {
	case WorkspaceVolume, WorkspaceEphemeral:
	case WorkspaceBind:
		if a.WorkspaceDir == "" {
			return errors.New("workspace_dir: required when workspace_mode is bind")
		}
	default:
		return fmt.Errorf("workspace_mode: %q is not one of volume, bind, ephemeral", a.WorkspaceMode)
	}
	for name, p := range map[string]string{
		"groups_file": a.GroupsFile, "kilo_file": a.KiloFile, "vscode_settings_file": a.VSCodeSettingsFile,
	} {
		if p == "" {
			continue
		}
		if _, err := os.Stat(p); err != nil {
			return fmt.Errorf("%s: %v", name, err)
		}
	}
	return nil
}

// Start imports the groups file, if one is configured. An invalid file
// fails the start with an error naming its line, and the database is left
// as it was.
func (a *App) Start() error {
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
			return fmt.Errorf("importing %s: %v", a.GroupsFile, err)
		}
		a.logger.Info("imported groups file",
			zap.String("file", a.GroupsFile),
			zap.Int("groups_created", n.GroupsCreated),
			zap.Int("users_created", n.UsersCreated),
			zap.Int("users_moved", n.UsersMoved))
	}
	a.shared.start()
	if err := a.startGateway(); err != nil {
		return err
	}
	a.startLemonade()
	if err := a.startAuth(); err != nil {
		return err
	}
	a.logger.Info("thon app started", zap.String("database", a.Database))
	return nil
}

// Stop does nothing: the sandbox manager's background work (reconciliation,
// Docker events, the TTL reaper) belongs to the shared state and goes on
// across reloads until the last config using it is cleaned up.
func (a *App) Stop() error { return nil }

// Cleanup releases this config's reference to the shared database.
func (a *App) Cleanup() error {
	if a.dbKey == "" {
		return nil
	}
	_, err := pool.Delete(a.dbKey)
	a.dbKey = ""
	return err
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

	once   sync.Once
	cancel context.CancelFunc
	done   chan struct{}
}

func openShared(dbPath string, dc *docker.Client, cfg sandboxes.Config) (*shared, error) {
	st, err := store.Open(context.Background(), dbPath)
	if err != nil {
		return nil, fmt.Errorf("opening database: %v", err)
	}
	m, err := sandboxes.NewManager(st, dc, cfg)
	if err != nil {
		st.Close()
		return nil, err
	}
	return &shared{store: st, sandboxes: m, gateway: gateway.NewRuntime(st, nil),
		auth: auth.NewState(0, 0), done: make(chan struct{})}, nil
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
