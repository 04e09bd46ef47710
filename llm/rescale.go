package llm

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/thon-dev/thon/internal/atomicfile"
)

// MaxUsers bounds the number of users a rescale sizes Lemonade for; the
// context sizes reach llama-server's limit well before.
const MaxUsers = 100000

// RescaleOptions describe a rescale of Lemonade Server's configuration.
type RescaleOptions struct {
	// ConfigDir holds config.json, user_models.json and recipe_options.json;
	// empty means DefaultConfigDir. It must exist.
	ConfigDir string
	// Users is the number of users to size for; 1 to MaxUsers.
	Users int
	// DryRun reports what would change and changes nothing.
	DryRun bool
	// Client reloads the loaded models with the new options; nil leaves
	// them as they are.
	Client *Client
}

// RescaleResult is what a rescale did.
type RescaleResult struct {
	Users int `json:"users"`
	// PreviousUsers is the number of users the configuration was sized
	// for (from -np in recipe_options.json); 0 when there was none.
	PreviousUsers int    `json:"previous_users"`
	ConfigDir     string `json:"config_dir"`
	DryRun        bool   `json:"dry_run"`
	// Changed is true when a file was written or a model reloaded.
	Changed bool           `json:"changed"`
	Files   []RescaleFile  `json:"files"`
	Models  []RescaleModel `json:"models"`
	// RestartCommand is set when files changed: Lemonade Server reads them
	// when it starts.
	RestartCommand string `json:"restart_command,omitempty"`
}

// RescaleFile is what a rescale did to one configuration file.
type RescaleFile struct {
	Name string `json:"name"`
	Path string `json:"path"`
	// Status is written, unchanged or would-write (dry run).
	Status string `json:"status"`
}

// RescaleModel is what a rescale did to one of thon's models.
type RescaleModel struct {
	ModelName string `json:"model_name"`
	// Status is done (reloaded with the new options), unchanged (loaded
	// with them already) or skipped (not loaded, dry run, or Lemonade
	// unreachable; the message says which).
	Status  string `json:"status"`
	CtxSize int    `json:"ctx_size"`
	Message string `json:"message"`
}

// Rescaler rescales Lemonade's configuration, one rescale at a time. Its
// zero value is ready; every face of a process that rescales the same
// configuration directory must share one (the thon app keeps one across
// config reloads).
type Rescaler struct {
	mu sync.Mutex
}

// Rescale regenerates Lemonade Server's configuration files for a number
// of users, keeping the models and llama-server options found in them
// (those of `thon lemonade setup`, see RecoverSettings), and reloads the
// loaded models with the new options. Lemonade being unreachable only
// skips the reload: the files hold the new options for its next start.
//
// Errors: *FieldError for bad options, *ConfigDirError for a directory
// that is missing, unreadable, unwritable or holds files thon cannot read
// back, *ReloadError when Lemonade fails a reload (the result then says
// what was written already).
func (r *Rescaler) Rescale(ctx context.Context, o RescaleOptions) (RescaleResult, error) {
	dir := cmp.Or(o.ConfigDir, DefaultConfigDir)
	res := RescaleResult{Users: o.Users, ConfigDir: dir, DryRun: o.DryRun, Files: []RescaleFile{}, Models: []RescaleModel{}}
	if o.Users < 1 || o.Users > MaxUsers {
		return res, &FieldError{Field: "users", Msg: fmt.Sprintf("must be between 1 and %d, got %d", MaxUsers, o.Users)}
	}
	if fi, err := os.Stat(dir); err != nil {
		return res, &ConfigDirError{Dir: dir, Err: err}
	} else if !fi.IsDir() {
		return res, &ConfigDirError{Dir: dir, Err: errors.New("not a directory")}
	}
	r.mu.Lock()
	defer r.mu.Unlock()

	old, err := readFiles(dir)
	if err != nil {
		return res, err
	}
	settings, prev, err := RecoverSettings(old)
	if err != nil {
		return res, &ConfigDirError{Dir: dir, Err: err}
	}
	res.PreviousUsers = prev
	cfg, files, err := Rescale(settings, o.Users, old)
	var cle *ContextLimitError
	if errors.As(err, &cle) {
		return res, &FieldError{Field: "users", Msg: err.Error()}
	}
	if err != nil {
		return res, &ConfigDirError{Dir: dir, Err: err}
	}

	for _, f := range []struct {
		name     string
		old, cur []byte
	}{
		{ConfigFile, old.Config, files.Config},
		{UserModelsFile, old.UserModels, files.UserModels},
		{RecipeOptionsFile, old.RecipeOptions, files.RecipeOptions},
	} {
		path := filepath.Join(dir, f.name)
		rf := RescaleFile{Name: f.name, Path: path, Status: StepUnchanged}
		if f.old == nil || string(f.old) != string(f.cur) {
			rf.Status = StepWouldWrite
			if !o.DryRun {
				// Keep the mode and owner, so Lemonade's service user
				// can still read the file.
				if _, err := atomicfile.Replace(path, f.cur, 0o644); err != nil {
					return res, &ConfigDirError{Dir: dir, Write: true, Err: err}
				}
				rf.Status = StepWritten
				res.Changed = true
				res.RestartCommand = RestartCommand
			}
		}
		res.Files = append(res.Files, rf)
	}

	ids := slices.Sorted(maps.Keys(cfg.RecipeOptions))
	skipAll := func(msg string) {
		for _, id := range ids {
			res.Models = append(res.Models, RescaleModel{ModelName: id, Status: StepSkipped, CtxSize: cfg.RecipeOptions[id].CtxSize, Message: msg})
		}
	}
	switch {
	case o.Client == nil:
		skipAll("no Lemonade client: models left as they are")
		return res, nil
	case o.DryRun:
		skipAll("dry run: loaded models would be reloaded with the new options")
		return res, nil
	}
	reloadErr := func(model string, err error) error {
		return &ReloadError{URL: o.Client.BaseURL(), Model: model, Users: o.Users, Changed: res.Changed, Err: err}
	}
	health, err := o.Client.Health(ctx)
	var ue *UnreachableError
	if errors.As(err, &ue) {
		skipAll(fmt.Sprintf("lemonade at %s is unreachable (%v); it reads the new options when it starts", o.Client.BaseURL(), ue.Err))
		return res, nil
	}
	if err != nil {
		return res, reloadErr("", err)
	}
	for _, id := range ids {
		want := cfg.RecipeOptions[id]
		m := RescaleModel{ModelName: id, CtxSize: want.CtxSize}
		cur, loaded := loadedModel(health, id)
		switch {
		case !loaded:
			m.Status, m.Message = StepSkipped, "not loaded; Lemonade uses the new options when it loads it"
		case sameOptions(cur.RecipeOptions, want):
			m.Status, m.Message = StepUnchanged, "loaded with the current options"
		default:
			if err := o.Client.Unload(ctx, cur.ModelName); err != nil {
				return res, reloadErr(id, err)
			}
			if err := o.Client.Load(ctx, want.loadRequest(id)); err != nil {
				return res, reloadErr(id, err)
			}
			m.Status = StepDone
			m.Message = fmt.Sprintf("reloaded with ctx_size %d for %d users", want.CtxSize, o.Users)
			res.Changed = true
		}
		res.Models = append(res.Models, m)
	}
	return res, nil
}

// ReadSettings reads the settings thon set Lemonade up with back from its
// configuration directory (empty means DefaultConfigDir; see
// RecoverSettings): the defaults when the directory or its files do not
// exist. Errors are a *ConfigDirError, wrapping an *fs.PathError when a
// file exists but cannot be read.
func ReadSettings(dir string) (Settings, error) {
	dir = cmp.Or(dir, DefaultConfigDir)
	f, err := readFiles(dir)
	if err != nil {
		return Settings{}, err
	}
	s, _, err := RecoverSettings(f)
	if err != nil {
		return Settings{}, &ConfigDirError{Dir: dir, Err: err}
	}
	return s, nil
}

// readFiles reads Lemonade's three configuration files from dir; a
// missing one is nil. An error is a *ConfigDirError.
func readFiles(dir string) (Files, error) {
	var f Files
	for _, x := range []struct {
		name string
		dst  *[]byte
	}{{ConfigFile, &f.Config}, {UserModelsFile, &f.UserModels}, {RecipeOptionsFile, &f.RecipeOptions}} {
		b, err := os.ReadFile(filepath.Join(dir, x.name))
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return Files{}, &ConfigDirError{Dir: dir, Err: err}
		}
		*x.dst = b
	}
	return f, nil
}

// RecoverSettings reads back the settings a configuration was
// generated with (by `thon lemonade setup` or an earlier rescale): the
// server settings of config.json, thon's chat and embedding models (the
// user models whose llamacpp_args carry -np) with their per-user context,
// the llama-server options and the extra arguments. It also returns the
// number of users the files were sized for (0 when they hold no model of
// thon's). Whatever the files lack keeps its default, so empty files give
// DefaultSettings.
func RecoverSettings(f Files) (Settings, int, error) {
	s := DefaultSettings()
	if err := recoverServer(&s, f.Config); err != nil {
		return s, 0, err
	}
	var models map[string]struct {
		Checkpoint string   `json:"checkpoint"`
		MMProj     string   `json:"mmproj"`
		Labels     []string `json:"labels"`
	}
	if err := unmarshalFile(UserModelsFile, f.UserModels, &models); err != nil {
		return s, 0, err
	}
	var recipes map[string]struct {
		CtxSize      float64 `json:"ctx_size"`
		LlamacppArgs string  `json:"llamacpp_args"`
	}
	if err := unmarshalFile(RecipeOptionsFile, f.RecipeOptions, &recipes); err != nil {
		return s, 0, err
	}

	type found struct {
		id, args   string
		ctx, users int
		checkpoint string
		mmproj     string
	}
	var chat, emb *found
	for _, id := range slices.Sorted(maps.Keys(recipes)) {
		if !strings.HasPrefix(id, UserPrefix) {
			continue
		}
		r := recipes[id]
		users, err := UsersFromArgs(r.LlamacppArgs)
		if err != nil {
			continue // not one of thon's models
		}
		m, ok := models[BareName(id)]
		if !ok || m.Checkpoint == "" {
			continue
		}
		fd := &found{id: id, args: r.LlamacppArgs, ctx: int(r.CtxSize), users: users, checkpoint: m.Checkpoint, mmproj: m.MMProj}
		if slices.Contains(m.Labels, "embeddings") || slices.Contains(m.Labels, "embedding") {
			if emb == nil {
				emb = fd
			}
		} else if chat == nil {
			chat = fd
		}
	}
	if chat == nil {
		return s, 0, nil // nothing of thon's yet: the defaults
	}
	s.Chat.Name, s.Chat.Checkpoint, s.Chat.MMProj = BareName(chat.id), chat.checkpoint, chat.mmproj
	if chat.ctx > 0 && chat.ctx%chat.users == 0 {
		s.Chat.CtxPerUser = chat.ctx / chat.users
	}
	if err := recoverArgs(&s, chat.id, chat.args); err != nil {
		return s, 0, err
	}
	if emb == nil {
		s.Embedding.Enabled = false
	} else {
		if emb.checkpoint != DefaultEmbeddingCheckpoint {
			s.Embedding.Dimensions = 0
		}
		s.Embedding.Name, s.Embedding.Checkpoint = BareName(emb.id), emb.checkpoint
		if emb.ctx > 0 && emb.ctx%emb.users == 0 {
			s.Embedding.CtxPerUser = emb.ctx / emb.users
		}
	}
	if err := s.Validate(); err != nil {
		return s, 0, fmt.Errorf("settings read back from the files: %w", err)
	}
	return s, chat.users, nil
}

// recoverServer reads thon's keys of config.json.
func recoverServer(s *Settings, data []byte) error {
	var c struct {
		Port          *int    `json:"port"`
		Host          *string `json:"host"`
		GlobalTimeout *int    `json:"global_timeout"`
		Llamacpp      struct {
			Backend      *string `json:"backend"`
			PreferSystem *bool   `json:"prefer_system"`
			CPUBin       *string `json:"cpu_bin"`
			CUDABin      *string `json:"cuda_bin"`
			ROCmBin      *string `json:"rocm_bin"`
			VulkanBin    *string `json:"vulkan_bin"`
		} `json:"llamacpp"`
	}
	if err := unmarshalFile(ConfigFile, data, &c); err != nil {
		return err
	}
	setInt := func(dst *int, v *int) {
		if v != nil {
			*dst = *v
		}
	}
	setStr := func(dst *string, v *string) {
		if v != nil && *v != "" {
			*dst = *v
		}
	}
	setInt(&s.Port, c.Port)
	setStr(&s.Host, c.Host)
	setInt(&s.GlobalTimeout, c.GlobalTimeout)
	setStr(&s.Backend, c.Llamacpp.Backend)
	if c.Llamacpp.PreferSystem != nil {
		s.PreferSystem = *c.Llamacpp.PreferSystem
	}
	setStr(&s.Bins.CPU, c.Llamacpp.CPUBin)
	setStr(&s.Bins.CUDA, c.Llamacpp.CUDABin)
	setStr(&s.Bins.ROCm, c.Llamacpp.ROCmBin)
	setStr(&s.Bins.Vulkan, c.Llamacpp.VulkanBin)
	return nil
}

// unmarshalFile decodes one of Lemonade's files; a missing file decodes to
// nothing.
func unmarshalFile(name string, data []byte, v any) error {
	if data == nil {
		return nil
	}
	if err := json.Unmarshal(data, v); err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	return nil
}

// tailMarker is what thon puts after the llama-server options it derives
// from the settings and before the extra arguments and -np.
var tailMarker = []string{"--no-webui", "--threads-http", "-1", "--threads", "-1"}

// recoverArgs reads the llama-server options and extra arguments back
// from the chat model's llamacpp_args. thon writes the options it derives
// from the settings, then tailMarker, the extra arguments and -np N.
func recoverArgs(s *Settings, id, argString string) error {
	args, err := SplitArgs(argString)
	if err != nil {
		return fmt.Errorf("%s %s: llamacpp_args: %w", RecipeOptionsFile, id, err)
	}
	head, extra := args, []string(nil)
	for i := 0; i+len(tailMarker) <= len(args); i++ {
		if slices.Equal(args[i:i+len(tailMarker)], tailMarker) {
			head, extra = args[:i], args[i+len(tailMarker):]
			break
		}
	}
	if n := len(extra); n >= 2 && (extra[n-2] == "-np" || extra[n-2] == "--parallel") {
		extra = extra[:n-2]
	}
	o := &s.Llamacpp
	o.MainGPU, o.SplitMode, o.CPUMoE, o.NCPUMoE, o.PresencePenalty = -1, "", false, 0, 0
	var unknown []string
	for i := 0; i < len(head); i++ {
		a := head[i]
		var dst any
		switch a {
		case "-b":
			dst = &o.BatchSize
		case "-ub":
			dst = &o.UBatchSize
		case "-to":
			dst = &o.Timeout
		case "-ctk":
			dst = &o.CacheTypeK
		case "-ctv":
			dst = &o.CacheTypeV
		case "--temp":
			dst = &o.Temp
		case "--top-k":
			dst = &o.TopK
		case "--top-p":
			dst = &o.TopP
		case "--min-p":
			dst = &o.MinP
		case "--repeat-penalty":
			dst = &o.RepeatPenalty
		case "--presence-penalty":
			dst = &o.PresencePenalty
		case "--split-mode":
			dst = &o.SplitMode
		case "--main-gpu":
			dst = &o.MainGPU
		case "--n-cpu-moe":
			dst = &o.NCPUMoE
		case "--cpu-moe":
			o.CPUMoE = true
			continue
		case "--no-webui":
			continue // thon's own; only here when the marker was not found
		case "-np", "--parallel", "--threads-http", "--threads":
			i++
			continue
		default:
			unknown = append(unknown, a)
			continue
		}
		if i+1 >= len(head) {
			return fmt.Errorf("%s %s: llamacpp_args: %s has no value", RecipeOptionsFile, id, a)
		}
		i++
		v := head[i]
		var perr error
		switch d := dst.(type) {
		case *int:
			*d, perr = strconv.Atoi(v)
		case *float64:
			*d, perr = strconv.ParseFloat(v, 64)
		case *string:
			*d = v
		}
		if perr != nil {
			return fmt.Errorf("%s %s: llamacpp_args: %s %q is not a number", RecipeOptionsFile, id, a, v)
		}
	}
	// Arguments thon did not derive from its settings are extra ones.
	s.ExtraArgs = JoinArgs(append(unknown, extra...))
	return nil
}
