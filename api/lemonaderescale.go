package api

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"

	"github.com/thon-dev/thon/llm"
)

// MaxLemonadeUsers bounds the number of users a rescale accepts; the
// context sizes reach llama-server's limit well before.
const MaxLemonadeUsers = 100000

// RescaleOptions describe a rescale of Lemonade Server's configuration.
type RescaleOptions struct {
	// ConfigDir holds config.json, user_models.json and recipe_options.json;
	// empty means llm.DefaultConfigDir. It must exist.
	ConfigDir string
	// Users is the number of users to size for; at least 1.
	Users int
	// DryRun reports what would change and changes nothing.
	DryRun bool
	// Client reloads the loaded models with the new options; nil leaves
	// them as they are.
	Client *llm.Client
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

// rescaleLocks serialises rescales of one configuration directory.
var rescaleLocks sync.Map // config dir -> *sync.Mutex

// RescaleLemonade regenerates Lemonade Server's configuration files for a
// number of users, keeping the models and llama-server options found in
// them (those of `thon lemonade setup`), and reloads the loaded models
// with the new options. Lemonade being unreachable only skips the reload:
// the files hold the new options for its next start. Errors of the
// client are returned as they are (*llm.UnreachableError,
// *llm.LemonadeError); the result then says what was written already.
func RescaleLemonade(ctx context.Context, o RescaleOptions) (RescaleResult, error) {
	dir := cmp.Or(o.ConfigDir, llm.DefaultConfigDir)
	res := RescaleResult{Users: o.Users, ConfigDir: dir, DryRun: o.DryRun, Files: []RescaleFile{}, Models: []RescaleModel{}}
	if o.Users < 1 || o.Users > MaxLemonadeUsers {
		return res, badRequest("users", "users: must be between 1 and %d, got %d", MaxLemonadeUsers, o.Users)
	}
	if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
		return res, errorf(http.StatusConflict, "", "lemonade config dir %s does not exist: install Lemonade Server and run thon lemonade setup first", dir)
	}
	mu, _ := rescaleLocks.LoadOrStore(dir, new(sync.Mutex))
	mu.(*sync.Mutex).Lock()
	defer mu.(*sync.Mutex).Unlock()

	names := []string{llm.ConfigFile, llm.UserModelsFile, llm.RecipeOptionsFile}
	var old llm.Files
	for i, dst := range []*[]byte{&old.Config, &old.UserModels, &old.RecipeOptions} {
		b, err := os.ReadFile(filepath.Join(dir, names[i]))
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return res, errorf(http.StatusConflict, "", "reading %s: %v", filepath.Join(dir, names[i]), err)
		}
		*dst = b
	}
	settings, prev, err := RecoverLemonadeSettings(old)
	if err != nil {
		return res, errorf(http.StatusConflict, "", "lemonade config dir %s: %v", dir, err)
	}
	res.PreviousUsers = prev
	cfg, err := llm.GenerateConfig(settings, o.Users)
	if err != nil {
		return res, badRequest("users", "%v", err)
	}
	files, err := cfg.Files(old)
	if err != nil {
		return res, errorf(http.StatusConflict, "", "lemonade config dir %s: %v", dir, err)
	}

	for i, f := range []struct{ old, cur []byte }{
		{old.Config, files.Config}, {old.UserModels, files.UserModels}, {old.RecipeOptions, files.RecipeOptions},
	} {
		path := filepath.Join(dir, names[i])
		rf := RescaleFile{Name: names[i], Path: path, Status: llm.StepUnchanged}
		if f.old == nil || string(f.old) != string(f.cur) {
			rf.Status = llm.StepWouldWrite
			if !o.DryRun {
				if err := replaceFile(path, f.cur); err != nil {
					return res, errorf(http.StatusInternalServerError, "", "%v", err)
				}
				rf.Status = llm.StepWritten
				res.Changed = true
				res.RestartCommand = llm.RestartCommand
			}
		}
		res.Files = append(res.Files, rf)
	}

	ids := slices.Sorted(func(yield func(string) bool) {
		for id := range cfg.RecipeOptions {
			if !yield(id) {
				return
			}
		}
	})
	skipAll := func(msg string) {
		for _, id := range ids {
			res.Models = append(res.Models, RescaleModel{ModelName: id, Status: llm.StepSkipped, CtxSize: cfg.RecipeOptions[id].CtxSize, Message: msg})
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
	health, err := o.Client.Health(ctx)
	var ue *llm.UnreachableError
	if errors.As(err, &ue) {
		skipAll(fmt.Sprintf("lemonade at %s is unreachable (%v); it reads the new options when it starts", o.Client.BaseURL(), ue.Err))
		return res, nil
	}
	if err != nil {
		return res, err
	}
	for _, id := range ids {
		want := cfg.RecipeOptions[id]
		m := RescaleModel{ModelName: id, CtxSize: want.CtxSize}
		cur, loaded := findLoaded(health, id)
		switch {
		case !loaded:
			m.Status, m.Message = llm.StepSkipped, "not loaded; Lemonade uses the new options when it loads it"
		case loadedWith(cur.RecipeOptions, want):
			m.Status, m.Message = llm.StepUnchanged, "loaded with the current options"
		default:
			if err := o.Client.Unload(ctx, cur.ModelName); err != nil {
				return res, err
			}
			if err := o.Client.Load(ctx, llm.LoadRequest{
				ModelName: id, CtxSize: want.CtxSize, LlamacppBackend: want.LlamacppBackend, LlamacppArgs: want.LlamacppArgs,
			}); err != nil {
				return res, err
			}
			m.Status = llm.StepDone
			m.Message = fmt.Sprintf("reloaded with ctx_size %d for %d users", want.CtxSize, o.Users)
			res.Changed = true
		}
		res.Models = append(res.Models, m)
	}
	return res, nil
}

// findLoaded finds a loaded model by canonical id or bare name.
func findLoaded(h llm.Health, id string) (llm.LoadedModel, bool) {
	for _, m := range h.AllModelsLoaded {
		if m.ModelName == id || m.ModelName == llm.BareName(id) {
			return m, true
		}
	}
	return llm.LoadedModel{}, false
}

// loadedWith reports whether a loaded model's options are the wanted ones
// (context size and arguments; the backend may have been resolved from
// auto).
func loadedWith(raw json.RawMessage, want llm.RecipeOptions) bool {
	var got struct {
		CtxSize      float64 `json:"ctx_size"`
		LlamacppArgs string  `json:"llamacpp_args"`
	}
	if len(raw) == 0 || json.Unmarshal(raw, &got) != nil {
		return false
	}
	return int(got.CtxSize) == want.CtxSize && got.LlamacppArgs == want.LlamacppArgs
}

// replaceFile writes data through a temporary file and a rename, keeping
// the mode and (as root) the owner of the file it replaces, so that
// Lemonade's service user can still read it.
func replaceFile(path string, data []byte) error {
	mode := fs.FileMode(0o644)
	uid, gid := -1, -1
	if fi, err := os.Stat(path); err == nil {
		mode = fi.Mode().Perm()
		if st, ok := fi.Sys().(*syscall.Stat_t); ok {
			uid, gid = int(st.Uid), int(st.Gid)
		}
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	defer os.Remove(tmp.Name())
	_, err = tmp.Write(data)
	if err == nil {
		err = tmp.Chmod(mode)
	}
	if err == nil && uid >= 0 && os.Geteuid() == 0 {
		err = tmp.Chown(uid, gid)
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	if err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return nil
}

// RecoverLemonadeSettings reads back the settings a configuration was
// generated with (by `thon lemonade setup` or an earlier rescale): the
// server settings of config.json, thon's chat and embedding models (the
// user models whose llamacpp_args carry -np) with their per-user context,
// the llama-server options and the extra arguments. It also returns the
// number of users the files were sized for (0 when they hold no model of
// thon's). Whatever the files lack keeps its default, so empty files give
// llm.DefaultSettings.
func RecoverLemonadeSettings(f llm.Files) (llm.Settings, int, error) {
	s := llm.DefaultSettings()
	if err := recoverServer(&s, f.Config); err != nil {
		return s, 0, err
	}
	var models map[string]struct {
		Checkpoint string   `json:"checkpoint"`
		MMProj     string   `json:"mmproj"`
		Labels     []string `json:"labels"`
	}
	if err := unmarshalFile(llm.UserModelsFile, f.UserModels, &models); err != nil {
		return s, 0, err
	}
	var recipes map[string]struct {
		CtxSize      float64 `json:"ctx_size"`
		LlamacppArgs string  `json:"llamacpp_args"`
	}
	if err := unmarshalFile(llm.RecipeOptionsFile, f.RecipeOptions, &recipes); err != nil {
		return s, 0, err
	}

	type found struct {
		id, args   string
		ctx, users int
		checkpoint string
		mmproj     string
	}
	var chat, emb *found
	for _, id := range slices.Sorted(func(yield func(string) bool) {
		for id := range recipes {
			if !yield(id) {
				return
			}
		}
	}) {
		if !strings.HasPrefix(id, llm.UserPrefix) {
			continue
		}
		r := recipes[id]
		users, err := llm.UsersFromArgs(r.LlamacppArgs)
		if err != nil {
			continue // not one of thon's models
		}
		m, ok := models[llm.BareName(id)]
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
	s.Chat.Name, s.Chat.Checkpoint, s.Chat.MMProj = llm.BareName(chat.id), chat.checkpoint, chat.mmproj
	if chat.ctx > 0 && chat.ctx%chat.users == 0 {
		s.Chat.CtxPerUser = chat.ctx / chat.users
	}
	if err := recoverArgs(&s, chat.id, chat.args); err != nil {
		return s, 0, err
	}
	if emb == nil {
		s.Embedding.Enabled = false
	} else {
		if emb.checkpoint != llm.DefaultEmbeddingCheckpoint {
			s.Embedding.Dimensions = 0
		}
		s.Embedding.Name, s.Embedding.Checkpoint = llm.BareName(emb.id), emb.checkpoint
		if emb.ctx > 0 && emb.ctx%emb.users == 0 {
			s.Embedding.CtxPerUser = emb.ctx / emb.users
		}
	}
	if err := s.Validate(); err != nil {
		return s, 0, fmt.Errorf("settings read back from the files: %v", err)
	}
	return s, chat.users, nil
}

// recoverServer reads thon's keys of config.json.
func recoverServer(s *llm.Settings, data []byte) error {
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
	if err := unmarshalFile(llm.ConfigFile, data, &c); err != nil {
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
		return fmt.Errorf("%s: %v", name, err)
	}
	return nil
}

// tailMarker is what thon puts after the llama-server options it derives
// from the settings and before the extra arguments and -np.
var tailMarker = []string{"--no-webui", "--threads-http", "-1", "--threads", "-1"}

// recoverArgs reads the llama-server options and extra arguments back
// from the chat model's llamacpp_args. thon writes the options it derives
// from the settings, then tailMarker, the extra arguments and -np N.
func recoverArgs(s *llm.Settings, id, argString string) error {
	args, err := llm.SplitArgs(argString)
	if err != nil {
		return fmt.Errorf("%s %s: llamacpp_args: %v", llm.RecipeOptionsFile, id, err)
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
			return fmt.Errorf("%s %s: llamacpp_args: %s has no value", llm.RecipeOptionsFile, id, a)
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
			return fmt.Errorf("%s %s: llamacpp_args: %s %q is not a number", llm.RecipeOptionsFile, id, a, v)
		}
	}
	// Arguments thon did not derive from its settings are extra ones.
	s.ExtraArgs = llm.JoinArgs(append(unknown, extra...))
	return nil
}
