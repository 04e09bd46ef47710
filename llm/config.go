package llm

import (
	"encoding/json"
	"fmt"
	"math"
	"strconv"
)

// Names of the files Lemonade Server reads from its config directory
// (/var/lib/lemonade for the systemd service).
const (
	ConfigFile        = "config.json"
	UserModelsFile    = "user_models.json"
	RecipeOptionsFile = "recipe_options.json"
)

// ConfigVersion is the config.json schema version of current Lemonade Server.
const ConfigVersion = 2

// Config is Lemonade Server's configuration generated for a number of
// users. Generate it with GenerateConfig and render it over the existing
// files with Files.
type Config struct {
	// Users is the number of users the configuration serves.
	Users int
	// Server is thon's part of config.json.
	Server ServerConfig
	// UserModels are the user_models.json entries, keyed by the model's
	// name WITHOUT the "user." prefix.
	UserModels map[string]UserModel
	// RecipeOptions are the recipe_options.json entries, keyed by the
	// canonical id WITH the "user." prefix.
	RecipeOptions map[string]RecipeOptions
}

// ServerConfig holds the config.json keys thon sets. config.json is a
// sparse override over Lemonade's defaults; other keys found in an
// existing file are kept.
type ServerConfig struct {
	ConfigVersion   int            `json:"config_version"`
	Port            int            `json:"port"`
	Host            string         `json:"host"`
	LogLevel        string         `json:"log_level"`
	GlobalTimeout   int            `json:"global_timeout,omitempty"`
	MaxLoadedModels int            `json:"max_loaded_models"`
	CtxSize         int            `json:"ctx_size"`
	ModelsDir       string         `json:"models_dir"`
	RocmChannel     string         `json:"rocm_channel"`
	Llamacpp        ServerLlamacpp `json:"llamacpp"`
}

// ServerLlamacpp is the llamacpp section of config.json.
type ServerLlamacpp struct {
	Backend      string `json:"backend"`
	Args         string `json:"args"`
	PreferSystem bool   `json:"prefer_system"`
	CPUBin       string `json:"cpu_bin"`
	CUDABin      string `json:"cuda_bin"`
	ROCmBin      string `json:"rocm_bin"`
	VulkanBin    string `json:"vulkan_bin"`
}

// UserModel is an entry of user_models.json.
type UserModel struct {
	ModelName  string   `json:"model_name"`
	Checkpoint string   `json:"checkpoint"`
	Recipe     string   `json:"recipe"`
	Suggested  bool     `json:"suggested"`
	Labels     []string `json:"labels"`
	MMProj     string   `json:"mmproj,omitempty"`
}

// RecipeOptions is an entry of recipe_options.json.
type RecipeOptions struct {
	CtxSize         int    `json:"ctx_size"`
	LlamacppBackend string `json:"llamacpp_backend"`
	LlamacppArgs    string `json:"llamacpp_args"`
}

// loadRequest loads the model id with these options.
func (o RecipeOptions) loadRequest(id string) LoadRequest {
	return LoadRequest{ModelName: id, CtxSize: o.CtxSize, LlamacppBackend: o.LlamacppBackend, LlamacppArgs: o.LlamacppArgs}
}

// Files are the contents of Lemonade's three configuration files. A nil
// member is a missing file.
type Files struct {
	Config        []byte
	UserModels    []byte
	RecipeOptions []byte
}

// GenerateConfig builds Lemonade's configuration for the given number of
// users: every model gets one llama-server slot per user (-np <users>) and
// a total context of the per-user context times the users, so each slot
// keeps the per-user context.
func GenerateConfig(s Settings, users int) (Config, error) {
	if err := s.Validate(); err != nil {
		return Config{}, err
	}
	if users < 1 {
		return Config{}, fmt.Errorf("users: must be at least 1, got %d", users)
	}
	extra, err := ParseLlamacppArgs(s.ExtraArgs)
	if err != nil {
		return Config{}, err
	}
	chatCtx, err := totalCtx("chat.ctx_per_user", s.Chat.CtxPerUser, users)
	if err != nil {
		return Config{}, err
	}
	maxLoaded := 1
	if s.Embedding.Enabled {
		maxLoaded = 2
	}
	c := Config{
		Users: users,
		Server: ServerConfig{
			ConfigVersion:   ConfigVersion,
			Port:            s.Port,
			Host:            s.Host,
			LogLevel:        "info",
			GlobalTimeout:   s.GlobalTimeout,
			MaxLoadedModels: maxLoaded,
			CtxSize:         chatCtx,
			ModelsDir:       "auto",
			RocmChannel:     "stable",
			Llamacpp: ServerLlamacpp{
				Backend:      s.Backend,
				PreferSystem: s.PreferSystem,
				CPUBin:       s.Bins.CPU,
				CUDABin:      s.Bins.CUDA,
				ROCmBin:      s.Bins.ROCm,
				VulkanBin:    s.Bins.Vulkan,
			},
		},
		UserModels:    map[string]UserModel{},
		RecipeOptions: map[string]RecipeOptions{},
	}

	chat := BareName(s.Chat.Name)
	labels := []string{"custom"}
	if s.Chat.MMProj != "" {
		labels = append(labels, "vision")
	}
	c.UserModels[chat] = UserModel{
		ModelName:  chat,
		Checkpoint: s.Chat.Checkpoint,
		Recipe:     "llamacpp",
		Suggested:  true,
		Labels:     labels,
		MMProj:     s.Chat.MMProj,
	}
	c.RecipeOptions[s.ChatID()] = RecipeOptions{
		CtxSize:         chatCtx,
		LlamacppBackend: s.Backend,
		LlamacppArgs:    JoinArgs(s.chatArgs(users, extra)),
	}

	if s.Embedding.Enabled {
		embCtx, err := totalCtx("embedding.ctx_per_user", s.Embedding.CtxPerUser, users)
		if err != nil {
			return Config{}, err
		}
		emb := BareName(s.Embedding.Name)
		c.UserModels[emb] = UserModel{
			ModelName:  emb,
			Checkpoint: s.Embedding.Checkpoint,
			Recipe:     "llamacpp",
			Suggested:  true,
			Labels:     []string{"custom", "embeddings"},
		}
		c.RecipeOptions[s.EmbeddingID()] = RecipeOptions{
			CtxSize:         embCtx,
			LlamacppBackend: s.Backend,
			LlamacppArgs:    JoinArgs(s.embeddingArgs(users, extra)),
		}
	}
	return c, nil
}

// Rescale regenerates the configuration for a new number of users and
// renders it over the existing files.
func Rescale(s Settings, users int, existing Files) (Config, Files, error) {
	c, err := GenerateConfig(s, users)
	if err != nil {
		return Config{}, Files{}, err
	}
	f, err := c.Files(existing)
	if err != nil {
		return Config{}, Files{}, err
	}
	return c, f, nil
}

// totalCtx multiplies the per-user context by the users, refusing totals
// llama-server cannot hold (its context size is a 32-bit integer) with a
// *ContextLimitError.
func totalCtx(field string, perUser, users int) (int, error) {
	if perUser > math.MaxInt32/users {
		return 0, &ContextLimitError{Field: field, Users: users, PerUser: perUser}
	}
	return perUser * users, nil
}

// chatArgs are the original thon's chat arguments, then the optional
// llama.cpp options, the extra arguments and -np.
func (s Settings) chatArgs(users int, extra []string) []string {
	o := s.Llamacpp
	args := s.commonArgs()
	args = append(args,
		"--temp", formatFloat(o.Temp),
		"--top-k", strconv.Itoa(o.TopK),
		"--top-p", formatFloat(o.TopP),
		"--min-p", formatFloat(o.MinP),
		"--repeat-penalty", formatFloat(o.RepeatPenalty),
	)
	if o.PresencePenalty != 0 {
		args = append(args, "--presence-penalty", formatFloat(o.PresencePenalty))
	}
	args = append(args, s.placementArgs()...)
	if o.CPUMoE {
		args = append(args, "--cpu-moe")
	}
	if o.NCPUMoE > 0 {
		args = append(args, "--n-cpu-moe", strconv.Itoa(o.NCPUMoE))
	}
	return s.tailArgs(args, users, extra)
}

// embeddingArgs are the original thon's embedding arguments.
func (s Settings) embeddingArgs(users int, extra []string) []string {
	args := append(s.commonArgs(), s.placementArgs()...)
	return s.tailArgs(args, users, extra)
}

func (s Settings) commonArgs() []string {
	o := s.Llamacpp
	return []string{
		"-b", strconv.Itoa(o.BatchSize),
		"-ub", strconv.Itoa(o.UBatchSize),
		"-to", strconv.Itoa(o.Timeout),
		"-ctk", o.CacheTypeK,
		"-ctv", o.CacheTypeV,
	}
}

func (s Settings) placementArgs() []string {
	var args []string
	if s.Llamacpp.SplitMode != "" {
		args = append(args, "--split-mode", s.Llamacpp.SplitMode)
	}
	if s.Llamacpp.MainGPU >= 0 {
		args = append(args, "--main-gpu", strconv.Itoa(s.Llamacpp.MainGPU))
	}
	return args
}

func (s Settings) tailArgs(args []string, users int, extra []string) []string {
	args = append(args, tailMarker...)
	args = append(args, extra...)
	return append(args, "-np", strconv.Itoa(users))
}

// Files renders the configuration over the existing files, keeping what
// thon does not manage: unrelated config.json keys, other models' entries
// and extra keys inside thon's own entries.
func (c Config) Files(existing Files) (Files, error) {
	var out Files
	var err error
	if out.Config, err = c.ConfigJSON(existing.Config); err != nil {
		return Files{}, err
	}
	if out.UserModels, err = c.UserModelsJSON(existing.UserModels); err != nil {
		return Files{}, err
	}
	if out.RecipeOptions, err = c.RecipeOptionsJSON(existing.RecipeOptions); err != nil {
		return Files{}, err
	}
	return out, nil
}

// ConfigJSON renders config.json over an existing one (nil for none). It
// also moves deprecated settings to their current form: "no_broadcast"
// becomes "broadcast" (Lemonade refuses a file holding both) and the
// "preview" ROCm channel becomes "stable".
func (c Config) ConfigJSON(existing []byte) ([]byte, error) {
	cur, err := decodeObject(ConfigFile, existing)
	if err != nil {
		return nil, err
	}
	if nb, ok := cur["no_broadcast"]; ok {
		if _, has := cur["broadcast"]; !has {
			if b, isBool := nb.(bool); isBool {
				cur["broadcast"] = !b
			}
		}
		delete(cur, "no_broadcast")
	}
	gen, err := toObject(c.Server)
	if err != nil {
		return nil, err
	}
	if ch, ok := cur["rocm_channel"].(string); ok && ch != "preview" && ch != "" {
		gen["rocm_channel"] = ch // keep an operator's "nightly"
	}
	if v, ok := cur["config_version"].(json.Number); ok {
		if n, err := v.Int64(); err == nil && n > ConfigVersion {
			gen["config_version"] = v
		}
	}
	return marshalCanonical(deepMerge(cur, gen))
}

// UserModelsJSON renders user_models.json over an existing one (nil for
// none). Keys never carry the "user." prefix; an entry wrongly keyed
// "user.<name>" for one of thon's models is dropped.
func (c Config) UserModelsJSON(existing []byte) ([]byte, error) {
	cur, err := decodeObject(UserModelsFile, existing)
	if err != nil {
		return nil, err
	}
	for name, m := range c.UserModels {
		delete(cur, UserPrefix+name)
		// a text-only model has no projector: drop a stale one
		if err := mergeEntry(cur, name, m, "mmproj"); err != nil {
			return nil, err
		}
	}
	return marshalCanonical(cur)
}

// RecipeOptionsJSON renders recipe_options.json over an existing one (nil
// for none). Keys carry the "user." prefix.
func (c Config) RecipeOptionsJSON(existing []byte) ([]byte, error) {
	cur, err := decodeObject(RecipeOptionsFile, existing)
	if err != nil {
		return nil, err
	}
	for id, o := range c.RecipeOptions {
		if err := mergeEntry(cur, id, o); err != nil {
			return nil, err
		}
	}
	return marshalCanonical(cur)
}

// mergeEntry sets cur[key] to v, keeping extra keys of an existing entry
// except the stale ones named (when v does not set them).
func mergeEntry(cur map[string]any, key string, v any, stale ...string) error {
	gen, err := toObject(v)
	if err != nil {
		return err
	}
	old, ok := cur[key].(map[string]any)
	if !ok {
		old = map[string]any{}
	}
	for k, val := range gen {
		old[k] = val
	}
	for _, k := range stale {
		if _, set := gen[k]; !set {
			delete(old, k)
		}
	}
	cur[key] = old
	return nil
}

// UsersFromRecipeOptions recovers the number of users from the -np
// argument of a model's entry in recipe_options.json.
func UsersFromRecipeOptions(data []byte, id string) (int, error) {
	cur, err := decodeObject(RecipeOptionsFile, data)
	if err != nil {
		return 0, err
	}
	entry, ok := cur[id].(map[string]any)
	if !ok {
		return 0, fmt.Errorf("%s: no entry for %q", RecipeOptionsFile, id)
	}
	args, ok := entry["llamacpp_args"].(string)
	if !ok {
		return 0, fmt.Errorf("%s: %q has no llamacpp_args", RecipeOptionsFile, id)
	}
	n, err := UsersFromArgs(args)
	if err != nil {
		return 0, fmt.Errorf("%s: %q: %w", RecipeOptionsFile, id, err)
	}
	return n, nil
}
