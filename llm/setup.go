package llm

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/thon-dev/thon/internal/atomicfile"
)

// Setup defaults.
const (
	DefaultConfigDir  = "/var/lib/lemonade"
	DefaultSystemdDir = "/etc/systemd/system"
	// SystemdRunPath exists when systemd is the running init system.
	SystemdRunPath = "/run/systemd/system"
	// RestartCommand applies a new configuration or drop-in.
	RestartCommand = "systemctl daemon-reload && systemctl restart " + ServiceName
)

// Step outcomes.
const (
	StepWritten    = "written"     // a file was created or changed
	StepUnchanged  = "unchanged"   // nothing to do
	StepSkipped    = "skipped"     // not done; the message says why and what to do
	StepDone       = "done"        // an action ran (restart, pull, load)
	StepWouldWrite = "would-write" // dry run: the file would change
)

// StepResult is what one setup step did.
type StepResult struct {
	Step    string `json:"step"`
	Status  string `json:"status"`
	Path    string `json:"path,omitempty"`
	Message string `json:"message"`
}

// Report is the outcome of a setup run.
type Report struct {
	Users int          `json:"users"`
	Steps []StepResult `json:"steps"`
	// Changed is true when a file was written or an action ran.
	Changed bool `json:"changed"`
	// RestartCommand is set when Lemonade must be restarted by hand.
	RestartCommand string `json:"restart_command,omitempty"`
	// KeysGenerated is true when new API keys were generated; the keys
	// themselves are only in APIKey and AdminKey, never serialised.
	KeysGenerated bool   `json:"keys_generated"`
	APIKey        string `json:"-"`
	AdminKey      string `json:"-"`
}

// Setup is `thon lemonade setup` as a library: it writes Lemonade Server's
// configuration for a number of users and the systemd drop-in with its API
// keys, restarts lemond where systemd runs, pulls and loads the chat and
// embedding models, and writes kilo.jsonc. Running it twice with the same
// options changes nothing the second time.
type Setup struct {
	// Users is the number of users (from the groups roster); at least 1.
	Users int
	// Settings are the Lemonade settings; nil means DefaultSettings. The
	// override fields below are applied on top.
	Settings *Settings

	NoEmbedding         bool
	LlamacppArgs        string
	ChatCheckpoint      string
	ChatName            string
	ChatMMProj          string
	EmbeddingCheckpoint string
	EmbeddingName       string

	// GenerateKeys creates API keys when the drop-in has none; existing
	// keys are kept. RotateKeys replaces them.
	GenerateKeys bool
	RotateKeys   bool
	// APIKey and AdminKey set the keys explicitly.
	APIKey   string
	AdminKey string

	// ExternalIP and BridgeGateway choose the host in kilo.jsonc's URLs.
	ExternalIP    string
	BridgeGateway string
	// Kilo sets the kilo.jsonc mode and skeleton; its ExternalIP,
	// BridgeGateway and APIKey default to the fields above.
	Kilo KiloOptions

	// DryRun writes nothing and contacts nothing; the report says what
	// would change.
	DryRun bool
	// OutDir, when set, receives every file under the same path it would
	// have on the system (OutDir/var/lib/lemonade/config.json, ...), and
	// lemond is not restarted.
	OutDir string
	// ConfigDir is Lemonade's config directory; default /var/lib/lemonade.
	ConfigDir string
	// SystemdDir is where the drop-in goes; default /etc/systemd/system.
	SystemdDir string
	// KiloPath is where kilo.jsonc goes; default ~/.thon/kilo.jsonc.
	KiloPath string
	// ServiceUser owns Lemonade's config files when written as root;
	// default "lemonade".
	ServiceUser string

	// Client talks to Lemonade; nil means a client for LemonadeURL with
	// the resulting keys.
	Client *Client
	// LemonadeURL defaults to http://127.0.0.1:<port>.
	LemonadeURL string
	// HTTPClient is used when Client is nil.
	HTTPClient *http.Client

	// SystemdRunPath is checked to tell whether systemd runs; default
	// /run/systemd/system.
	SystemdRunPath string
	// Systemctl runs systemctl; nil runs the real one.
	Systemctl func(ctx context.Context, args ...string) error
	// ReadyTimeout bounds the wait for Lemonade after a restart; default 2m.
	ReadyTimeout time.Duration
}

// plannedFile is a file setup wants to write.
type plannedFile struct {
	step    string
	path    string // system path
	content []byte
	perm    fs.FileMode
	service bool // owned by the service user
}

// Run performs the setup. progress (may be nil) receives each step's
// messages as they happen. Every input is checked before anything is
// written, so bad options change nothing.
func (s *Setup) Run(ctx context.Context, progress func(step, msg string)) (Report, error) {
	if progress == nil {
		progress = func(string, string) {}
	}
	rep := Report{Users: s.Users}
	add := func(r StepResult) {
		rep.Steps = append(rep.Steps, r)
		if r.Status == StepWritten || r.Status == StepDone {
			rep.Changed = true
		}
		progress(r.Step, fmt.Sprintf("%s: %s", r.Status, r.Message))
	}

	settings, err := s.settings()
	if err != nil {
		return rep, err
	}
	cfg, err := GenerateConfig(settings, s.Users)
	if err != nil {
		return rep, err
	}
	for _, k := range []struct{ field, v string }{{"api_key", s.APIKey}, {"admin_api_key", s.AdminKey}} {
		if err := validateKey(k.field, k.v); err != nil {
			return rep, err
		}
	}
	configDir := cmp.Or(s.ConfigDir, DefaultConfigDir)
	systemdDir := cmp.Or(s.SystemdDir, DefaultSystemdDir)
	kiloPath := s.KiloPath
	if kiloPath == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			return rep, fmt.Errorf("kilo path: no home directory (%w); set the kilo path", err)
		}
		kiloPath = filepath.Join(home, ".thon", "kilo.jsonc")
	}
	for _, p := range []struct{ field, v string }{{"config_dir", configDir}, {"systemd_dir", systemdDir}, {"kilo_path", kiloPath}} {
		if !filepath.IsAbs(p.v) {
			return rep, fmt.Errorf("%s: %q must be an absolute path", p.field, p.v)
		}
	}

	// Lemonade's configuration files, rendered over the existing ones.
	existing, err := readFiles(s.outPath(configDir))
	if err != nil {
		return rep, err
	}
	files, err := cfg.Files(existing)
	if err != nil {
		return rep, err
	}
	plan := []plannedFile{
		{ConfigFile, filepath.Join(configDir, ConfigFile), files.Config, 0o644, true},
		{UserModelsFile, filepath.Join(configDir, UserModelsFile), files.UserModels, 0o644, true},
		{RecipeOptionsFile, filepath.Join(configDir, RecipeOptionsFile), files.RecipeOptions, 0o644, true},
	}

	// API keys in the lemond drop-in.
	dropIn := filepath.Join(systemdDir, DropInPath)
	oldDropIn, err := s.read(dropIn)
	if err != nil {
		return rep, err
	}
	apiKey, adminKey := DropInKeys(string(oldDropIn))
	if s.RotateKeys {
		apiKey, adminKey = "", ""
	}
	if (s.GenerateKeys || s.RotateKeys) && apiKey == "" && s.APIKey == "" {
		if apiKey, err = NewKey(); err != nil {
			return rep, err
		}
		rep.KeysGenerated = true
	}
	if (s.GenerateKeys || s.RotateKeys) && adminKey == "" && s.AdminKey == "" {
		if adminKey, err = NewKey(); err != nil {
			return rep, err
		}
		rep.KeysGenerated = true
	}
	apiKey, adminKey = cmp.Or(s.APIKey, apiKey), cmp.Or(s.AdminKey, adminKey)
	if adminKey != "" && apiKey == "" {
		return rep, errors.New("api_key: an admin key needs an API key too (lemond gates its API with LEMONADE_API_KEY)")
	}
	rep.APIKey, rep.AdminKey = apiKey, adminKey
	keysStep := StepResult{Step: "api-keys", Path: s.outPath(dropIn)}
	if apiKey != "" {
		plan = append(plan, plannedFile{"api-keys", dropIn, []byte(RenderDropIn(string(oldDropIn), apiKey, adminKey)), 0o600, false})
	}

	// kilo.jsonc.
	kopts := s.Kilo
	kopts.ExternalIP = cmp.Or(kopts.ExternalIP, s.ExternalIP)
	kopts.BridgeGateway = cmp.Or(kopts.BridgeGateway, s.BridgeGateway)
	if kopts.mode() == KiloDirect {
		kopts.APIKey = cmp.Or(kopts.APIKey, apiKey)
	}
	kilo, err := GenerateKilo(settings, kopts)
	if err != nil {
		return rep, err
	}

	// Write Lemonade's files and the drop-in.
	configChanged := false
	for _, f := range plan {
		r, err := s.write(f)
		if err != nil {
			return rep, err
		}
		if r.Status == StepWritten || r.Status == StepWouldWrite {
			configChanged = true
		}
		add(r)
	}
	if apiKey == "" {
		keysStep.Status = StepSkipped
		keysStep.Message = "no API keys: Lemonade Server answers anyone who reaches it; run with --generate-keys to protect it"
		add(keysStep)
	}

	// Restart lemond so it reads the new configuration.
	restarted, err := s.restart(ctx, configChanged, &rep, add)
	if err != nil {
		return rep, err
	}

	// Pull and load the models.
	if err := s.models(ctx, settings, cfg, apiKey, adminKey, restarted, configChanged, add, progress); err != nil {
		return rep, err
	}

	r, err := s.write(plannedFile{"kilo.jsonc", kiloPath, kilo, 0o600, false})
	if err != nil {
		return rep, err
	}
	add(r)
	return rep, nil
}

// settings applies the override fields to the base settings.
func (s *Setup) settings() (Settings, error) {
	st := DefaultSettings()
	if s.Settings != nil {
		st = *s.Settings
	}
	if s.ChatCheckpoint != "" {
		st.Chat.Checkpoint = s.ChatCheckpoint
	}
	if s.ChatName != "" {
		st.Chat.Name = s.ChatName
	}
	if s.ChatMMProj != "" {
		st.Chat.MMProj = s.ChatMMProj
	}
	if s.EmbeddingCheckpoint != "" {
		if st.Embedding.Checkpoint != s.EmbeddingCheckpoint {
			st.Embedding.Dimensions = 0 // unknown for another model: Kilo detects it
		}
		st.Embedding.Checkpoint = s.EmbeddingCheckpoint
	}
	if s.EmbeddingName != "" {
		st.Embedding.Name = s.EmbeddingName
	}
	if s.NoEmbedding {
		st.Embedding.Enabled = false
	}
	if s.LlamacppArgs != "" {
		st.ExtraArgs = s.LlamacppArgs
	}
	if err := st.Validate(); err != nil {
		return Settings{}, err
	}
	return st, nil
}

// outPath maps a system path under OutDir when one is set.
func (s *Setup) outPath(p string) string {
	if s.OutDir == "" {
		return p
	}
	return filepath.Join(s.OutDir, p)
}

// read returns a file's content, nil when it does not exist.
func (s *Setup) read(p string) ([]byte, error) {
	b, err := os.ReadFile(s.outPath(p))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", s.outPath(p), err)
	}
	return b, nil
}

// write writes a planned file unless it is unchanged or this is a dry run.
func (s *Setup) write(f plannedFile) (StepResult, error) {
	path := s.outPath(f.path)
	r := StepResult{Step: f.step, Path: path}
	old, err := s.read(f.path)
	if err != nil {
		return r, err
	}
	if old != nil && bytes.Equal(old, f.content) {
		r.Status, r.Message = StepUnchanged, path+" is up to date"
		return r, nil
	}
	if s.DryRun {
		r.Status, r.Message = StepWouldWrite, fmt.Sprintf("dry run: would write %s (%d bytes)", path, len(f.content))
		return r, nil
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return r, fmt.Errorf("creating %s: %w", filepath.Dir(path), err)
	}
	if _, err := atomicfile.Write(path, f.content, f.perm); err != nil {
		return r, err
	}
	r.Status, r.Message = StepWritten, "wrote "+path
	if f.service && s.OutDir == "" && os.Geteuid() == 0 {
		if note := chownToUser(path, cmp.Or(s.ServiceUser, "lemonade")); note != "" {
			r.Message += " (" + note + ")"
		}
	}
	return r, nil
}

// restart restarts lemond when the configuration changed and it can be
// done here; otherwise it reports the command to run.
func (s *Setup) restart(ctx context.Context, changed bool, rep *Report, add func(StepResult)) (bool, error) {
	r := StepResult{Step: "restart"}
	switch {
	case !changed:
		r.Status, r.Message = StepUnchanged, "configuration unchanged; lemond keeps running as is"
	case s.DryRun:
		r.Status, r.Message = StepSkipped, "dry run: would run "+RestartCommand
	case s.OutDir != "":
		rep.RestartCommand = RestartCommand
		r.Status, r.Message = StepSkipped, fmt.Sprintf("files written under %s; install them, then run: %s", s.OutDir, RestartCommand)
	case !s.systemdRunning():
		rep.RestartCommand = RestartCommand
		r.Status, r.Message = StepSkipped, "systemd is not running here; restart Lemonade Server yourself so it reads the new configuration"
	default:
		run := s.Systemctl
		if run == nil {
			run = func(ctx context.Context, args ...string) error {
				out, err := exec.CommandContext(ctx, "systemctl", args...).CombinedOutput()
				if err != nil {
					return fmt.Errorf("systemctl %s: %w: %s", strings.Join(args, " "), err, bytes.TrimSpace(out))
				}
				return nil
			}
		}
		if err := run(ctx, "daemon-reload"); err != nil {
			return false, err
		}
		if err := run(ctx, "restart", ServiceName); err != nil {
			return false, err
		}
		r.Status, r.Message = StepDone, "ran "+RestartCommand
		add(r)
		return true, nil
	}
	add(r)
	return false, nil
}

func (s *Setup) systemdRunning() bool {
	fi, err := os.Stat(cmp.Or(s.SystemdRunPath, SystemdRunPath))
	return err == nil && fi.IsDir()
}

// models pulls and loads the chat and embedding models.
func (s *Setup) models(ctx context.Context, st Settings, cfg Config, apiKey, adminKey string, restarted, configChanged bool,
	add func(StepResult), progress func(step, msg string)) error {
	type target struct {
		id   string
		pull PullRequest
	}
	targets := []target{{st.ChatID(), PullRequest{
		ModelName: st.ChatID(), Checkpoint: st.Chat.Checkpoint, Recipe: "llamacpp",
		MMProj: st.Chat.MMProj, Vision: st.Chat.MMProj != "",
	}}}
	if st.Embedding.Enabled {
		targets = append(targets, target{st.EmbeddingID(), PullRequest{
			ModelName: st.EmbeddingID(), Checkpoint: st.Embedding.Checkpoint, Recipe: "llamacpp", Embedding: true,
		}})
	}
	skipAll := func(msg string) {
		for _, t := range targets {
			add(StepResult{Step: "pull " + t.id, Status: StepSkipped, Message: msg})
			add(StepResult{Step: "load " + t.id, Status: StepSkipped, Message: msg})
		}
	}
	if s.DryRun {
		skipAll("dry run: would pull and load the model through Lemonade's API")
		return nil
	}
	c, err := s.client(st, apiKey, adminKey)
	if err != nil {
		return err
	}
	if restarted {
		if err := waitLive(ctx, c, cmp.Or(s.ReadyTimeout, 2*time.Minute)); err != nil {
			return fmt.Errorf("lemond did not come back after the restart: %w", err)
		}
	} else if err := c.Live(ctx); err != nil {
		var ue *UnreachableError
		if errors.As(err, &ue) && (s.OutDir != "" || configChanged) {
			skipAll(fmt.Sprintf("%v; pull and load skipped, run setup again once Lemonade Server runs", err))
			return nil
		}
		return err
	}

	downloaded, err := c.Models(ctx, false)
	if err != nil {
		return err
	}
	health, err := c.Health(ctx)
	if err != nil {
		return err
	}
	for _, t := range targets {
		// Pull.
		step := "pull " + t.id
		if hasModel(downloaded, t.id, t.pull.Checkpoint) {
			add(StepResult{Step: step, Status: StepUnchanged, Message: t.id + " is already downloaded"})
		} else {
			last := -1.0
			err := c.Pull(ctx, t.pull, func(p PullProgress) {
				if p.Percent-last >= 5 || p.Complete {
					last = p.Percent
					progress(step, fmt.Sprintf("%s: %.0f%% (%s, file %d of %d)", t.id, p.Percent, cmp.Or(p.File, "done"), p.FileIndex, p.TotalFiles))
				}
			})
			if err != nil {
				return fmt.Errorf("pulling %s: %w", t.id, err)
			}
			add(StepResult{Step: step, Status: StepDone, Message: "pulled " + t.id + " (" + t.pull.Checkpoint + ")"})
		}

		// Load with the generated options.
		step = "load " + t.id
		opts := cfg.RecipeOptions[t.id]
		cur, loaded := loadedModel(health, t.id)
		if loaded && sameOptions(cur.RecipeOptions, opts) {
			add(StepResult{Step: step, Status: StepUnchanged, Message: t.id + " is loaded with the current options"})
			continue
		}
		msg := "loaded " + t.id
		if loaded {
			if err := c.Unload(ctx, cur.ModelName); err != nil {
				return fmt.Errorf("unloading %s: %w", t.id, err)
			}
			msg = "reloaded " + t.id + " with the new options"
		}
		progress(step, "loading "+t.id+" (this can take minutes)")
		if err := c.Load(ctx, opts.loadRequest(t.id)); err != nil {
			return fmt.Errorf("loading %s: %w", t.id, err)
		}
		add(StepResult{Step: step, Status: StepDone, Message: fmt.Sprintf("%s (ctx %d, %d users)", msg, opts.CtxSize, cfg.Users)})
	}
	return nil
}

func (s *Setup) client(st Settings, apiKey, adminKey string) (*Client, error) {
	if s.Client != nil {
		return s.Client, nil
	}
	u := s.LemonadeURL
	if u == "" {
		host := st.Host
		if host == "0.0.0.0" || host == "::" || host == "[::]" || host == "localhost" || host == "" {
			host = "127.0.0.1"
		}
		u = "http://" + net.JoinHostPort(strings.Trim(host, "[]"), strconv.Itoa(st.Port))
	}
	return NewClient(u, apiKey, adminKey, s.HTTPClient)
}

// waitLive polls /live until Lemonade answers or the timeout passes.
func waitLive(ctx context.Context, c *Client, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	t := time.NewTicker(500 * time.Millisecond)
	defer t.Stop()
	for {
		err := c.Live(ctx)
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return err
		case <-t.C:
		}
	}
}

// hasModel reports whether a downloaded model (listed by bare or canonical
// id) has the checkpoint.
func hasModel(models []Model, id, checkpoint string) bool {
	for _, m := range models {
		if (m.ID == id || m.ID == BareName(id)) && m.Downloaded && m.Checkpoint == checkpoint {
			return true
		}
	}
	return false
}

// loadedModel finds a loaded model by canonical id or bare name.
func loadedModel(h Health, id string) (LoadedModel, bool) {
	for _, m := range h.AllModelsLoaded {
		if m.ModelName == id || m.ModelName == BareName(id) {
			return m, true
		}
	}
	return LoadedModel{}, false
}

// sameOptions compares the options a model was loaded with to the wanted
// ones (context size and arguments; the backend may be resolved from auto).
func sameOptions(raw json.RawMessage, want RecipeOptions) bool {
	var got struct {
		CtxSize      float64 `json:"ctx_size"`
		LlamacppArgs string  `json:"llamacpp_args"`
	}
	if len(raw) == 0 || json.Unmarshal(raw, &got) != nil {
		return false
	}
	return int(got.CtxSize) == want.CtxSize && got.LlamacppArgs == want.LlamacppArgs
}

// chownToUser gives a file to the service user; it returns a note when
// that is not possible.
func chownToUser(path, name string) string {
	u, err := user.Lookup(name)
	if err != nil {
		return fmt.Sprintf("user %q not found; owner left unchanged", name)
	}
	uid, err1 := strconv.Atoi(u.Uid)
	gid, err2 := strconv.Atoi(u.Gid)
	if err1 != nil || err2 != nil {
		return fmt.Sprintf("user %q has no numeric ids; owner left unchanged", name)
	}
	if err := os.Chown(path, uid, gid); err != nil {
		return fmt.Sprintf("chown to %s failed: %v", name, err)
	}
	return ""
}
