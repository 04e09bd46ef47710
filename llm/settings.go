package llm

import (
	"fmt"
	"math"
	"regexp"
	"slices"
	"strings"
)

// Defaults of the Lemonade settings, taken from the original thon.yaml
// (lemonade section) and current Lemonade Server (port 13305).
const (
	DefaultHost                = "0.0.0.0"
	DefaultPort                = 13305
	DefaultChatCheckpoint      = "unsloth/gemma-4-31B-it-GGUF:Q8_K_XL"
	DefaultChatName            = "gemma-4-31b-it"
	DefaultChatMMProj          = "mmproj-BF16.gguf"
	DefaultChatCtxPerUser      = 262144
	DefaultChatOutput          = 4096
	DefaultEmbeddingCheckpoint = "SuperPauly/harrier-oss-v1-0.6b-gguf:harrier-oss-v1-0.6B-BF16"
	DefaultEmbeddingName       = "harrier-oss-v1-0.6b"
	DefaultEmbeddingCtxPerUser = 32768
	// DefaultEmbeddingDimensions is the vector size of the default embedding
	// model; it is only assumed for that model.
	DefaultEmbeddingDimensions = 1024
	DefaultBackend             = "auto"
	DefaultBin                 = "builtin"
	DefaultGlobalTimeout       = 1800
)

// UserPrefix is the namespace of models registered by users (thon's models)
// in Lemonade Server: user_models.json keys omit it, recipe_options.json keys
// and API requests carry it.
const UserPrefix = "user."

// Settings describe the Lemonade Server thon sets up: where it listens, the
// chat and embedding models and the llama-server options used for them.
// Start from DefaultSettings and change what differs.
type Settings struct {
	// Host is the address Lemonade Server binds to.
	Host string `json:"host,omitempty"`
	// Port is Lemonade Server's port.
	Port int `json:"port,omitempty"`
	// Chat is the chat model every user shares.
	Chat ChatModel `json:"chat"`
	// Embedding is the embedding model used for Kilo's codebase indexing.
	Embedding EmbeddingModel `json:"embedding"`
	// Backend is the llama.cpp backend: auto, cpu, cuda, metal, rocm or vulkan.
	Backend string `json:"backend,omitempty"`
	// PreferSystem makes Lemonade use a llama-server found on the system.
	PreferSystem bool `json:"prefer_system"`
	// Bins selects the llama-server binary per backend.
	Bins LlamacppBins `json:"bins"`
	// Llamacpp holds the llama-server options thon turns into arguments.
	Llamacpp LlamacppOptions `json:"llamacpp"`
	// ExtraArgs are further llama-server arguments, as one shell-like string.
	// Arguments Lemonade Server or thon set themselves are refused.
	ExtraArgs string `json:"extra_args,omitempty"`
	// GlobalTimeout is Lemonade's request timeout in seconds.
	GlobalTimeout int `json:"global_timeout,omitempty"`
}

// ChatModel is the chat model served to every user.
type ChatModel struct {
	// Checkpoint is the Hugging Face checkpoint, "org/repo:VARIANT".
	Checkpoint string `json:"checkpoint,omitempty"`
	// Name is the model's name without the "user." prefix.
	Name string `json:"name,omitempty"`
	// MMProj is the multimodal projector file; empty for a text-only model.
	MMProj string `json:"mmproj,omitempty"`
	// CtxPerUser is the context each user gets (one llama-server slot each).
	CtxPerUser int `json:"ctx_per_user,omitempty"`
	// Output is the maximum number of output tokens announced to Kilo.
	Output int `json:"output,omitempty"`
}

// EmbeddingModel is the embedding model used for codebase indexing.
type EmbeddingModel struct {
	// Enabled turns the embedding model on.
	Enabled bool `json:"enabled"`
	// Checkpoint is the Hugging Face checkpoint, "org/repo:VARIANT".
	Checkpoint string `json:"checkpoint,omitempty"`
	// Name is the model's name without the "user." prefix.
	Name string `json:"name,omitempty"`
	// CtxPerUser is the context each user gets.
	CtxPerUser int `json:"ctx_per_user,omitempty"`
	// Dimensions is the embedding vector size announced to Kilo; 0 lets
	// Kilo detect it.
	Dimensions int `json:"dimensions,omitempty"`
}

// LlamacppBins names the llama-server binary per backend: "builtin",
// "latest", a release tag or a directory path.
type LlamacppBins struct {
	CPU    string `json:"cpu,omitempty"`
	CUDA   string `json:"cuda,omitempty"`
	ROCm   string `json:"rocm,omitempty"`
	Vulkan string `json:"vulkan,omitempty"`
}

// LlamacppOptions are the llama-server options of the original thon.yaml
// (lemonade.llamacpp) plus the sampling defaults of its generated arguments.
type LlamacppOptions struct {
	CacheTypeK      string  `json:"ctk,omitempty"`         // -ctk
	CacheTypeV      string  `json:"ctv,omitempty"`         // -ctv
	BatchSize       int     `json:"batch_size,omitempty"`  // -b
	UBatchSize      int     `json:"ubatch_size,omitempty"` // -ub
	Timeout         int     `json:"timeout,omitempty"`     // -to, seconds
	SplitMode       string  `json:"split_mode,omitempty"`  // --split-mode when set
	MainGPU         int     `json:"main_gpu"`              // --main-gpu when >= 0
	CPUMoE          bool    `json:"cpu_moe,omitempty"`     // --cpu-moe
	NCPUMoE         int     `json:"n_cpu_moe,omitempty"`   // --n-cpu-moe when > 0
	Temp            float64 `json:"temp"`                  // --temp
	TopK            int     `json:"top_k"`                 // --top-k
	TopP            float64 `json:"top_p"`                 // --top-p
	MinP            float64 `json:"min_p"`                 // --min-p
	RepeatPenalty   float64 `json:"repeat_penalty"`        // --repeat-penalty
	PresencePenalty float64 `json:"presence_penalty"`      // --presence-penalty when not 0
}

// DefaultSettings returns the settings of the original thon.yaml, with the
// embedding model enabled.
func DefaultSettings() Settings {
	return Settings{
		Host: DefaultHost,
		Port: DefaultPort,
		Chat: ChatModel{
			Checkpoint: DefaultChatCheckpoint,
			Name:       DefaultChatName,
			MMProj:     DefaultChatMMProj,
			CtxPerUser: DefaultChatCtxPerUser,
			Output:     DefaultChatOutput,
		},
		Embedding: EmbeddingModel{
			Enabled:    true,
			Checkpoint: DefaultEmbeddingCheckpoint,
			Name:       DefaultEmbeddingName,
			CtxPerUser: DefaultEmbeddingCtxPerUser,
			Dimensions: DefaultEmbeddingDimensions,
		},
		Backend:      DefaultBackend,
		PreferSystem: true,
		Bins:         LlamacppBins{CPU: DefaultBin, CUDA: DefaultBin, ROCm: DefaultBin, Vulkan: DefaultBin},
		Llamacpp: LlamacppOptions{
			CacheTypeK:    "q8_0",
			CacheTypeV:    "q8_0",
			BatchSize:     8192,
			UBatchSize:    8192,
			Timeout:       3600,
			MainGPU:       -1,
			Temp:          1.0,
			TopK:          64,
			TopP:          0.95,
			MinP:          0.0,
			RepeatPenalty: 1.0,
		},
		GlobalTimeout: DefaultGlobalTimeout,
	}
}

// ChatID is the chat model's canonical Lemonade id ("user.<name>").
func (s Settings) ChatID() string { return UserPrefix + BareName(s.Chat.Name) }

// EmbeddingID is the embedding model's canonical Lemonade id ("user.<name>").
func (s Settings) EmbeddingID() string { return UserPrefix + BareName(s.Embedding.Name) }

// BareName strips the "user." prefix from a model name.
func BareName(name string) string { return strings.TrimPrefix(name, UserPrefix) }

var (
	modelNameRe = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`)
	hostRe      = regexp.MustCompile(`^[A-Za-z0-9.:_%\[\]-]{1,253}$`)
)

var (
	backends   = []string{"auto", "cpu", "cuda", "metal", "rocm", "vulkan"}
	cacheTypes = []string{"f32", "f16", "bf16", "q8_0", "q4_0", "q4_1", "iq4_nl", "q5_0", "q5_1"}
	splitModes = []string{"none", "layer", "row"}
)

// Validate reports the first invalid setting, naming its field.
func (s Settings) Validate() error {
	if !hostRe.MatchString(s.Host) {
		return fmt.Errorf("host: %q is not a host name or address", s.Host)
	}
	if s.Port < 1 || s.Port > 65535 {
		return fmt.Errorf("port: %d is not a TCP port", s.Port)
	}
	if err := validateModel("chat", s.Chat.Checkpoint, s.Chat.Name); err != nil {
		return err
	}
	if s.Chat.MMProj != "" && !isToken(s.Chat.MMProj) {
		return fmt.Errorf("chat.mmproj: %q must be a file name without spaces", s.Chat.MMProj)
	}
	if s.Chat.CtxPerUser < 1 {
		return fmt.Errorf("chat.ctx_per_user: must be positive, got %d", s.Chat.CtxPerUser)
	}
	if s.Chat.Output < 1 {
		return fmt.Errorf("chat.output: must be positive, got %d", s.Chat.Output)
	}
	if s.Embedding.Enabled {
		if err := validateModel("embedding", s.Embedding.Checkpoint, s.Embedding.Name); err != nil {
			return err
		}
		if BareName(s.Embedding.Name) == BareName(s.Chat.Name) {
			return fmt.Errorf("embedding.name: %q is also the chat model's name", s.Embedding.Name)
		}
		if s.Embedding.CtxPerUser < 1 {
			return fmt.Errorf("embedding.ctx_per_user: must be positive, got %d", s.Embedding.CtxPerUser)
		}
		if s.Embedding.Dimensions < 0 {
			return fmt.Errorf("embedding.dimensions: must not be negative, got %d", s.Embedding.Dimensions)
		}
	}
	if !slices.Contains(backends, s.Backend) {
		return fmt.Errorf("backend: %q is not one of %s", s.Backend, strings.Join(backends, ", "))
	}
	for _, b := range []struct{ field, v string }{
		{"bins.cpu", s.Bins.CPU}, {"bins.cuda", s.Bins.CUDA}, {"bins.rocm", s.Bins.ROCm}, {"bins.vulkan", s.Bins.Vulkan},
	} {
		if b.v != "" && !isToken(b.v) {
			return fmt.Errorf("%s: %q must be builtin, latest, a release tag or a path without spaces", b.field, b.v)
		}
	}
	if err := s.Llamacpp.validate(); err != nil {
		return err
	}
	if s.GlobalTimeout < 0 {
		return fmt.Errorf("global_timeout: must not be negative, got %d", s.GlobalTimeout)
	}
	if _, err := ParseLlamacppArgs(s.ExtraArgs); err != nil {
		return err
	}
	return nil
}

func (o LlamacppOptions) validate() error {
	if !slices.Contains(cacheTypes, o.CacheTypeK) {
		return fmt.Errorf("llamacpp.ctk: %q is not one of %s", o.CacheTypeK, strings.Join(cacheTypes, ", "))
	}
	if !slices.Contains(cacheTypes, o.CacheTypeV) {
		return fmt.Errorf("llamacpp.ctv: %q is not one of %s", o.CacheTypeV, strings.Join(cacheTypes, ", "))
	}
	if o.BatchSize < 1 {
		return fmt.Errorf("llamacpp.batch_size: must be positive, got %d", o.BatchSize)
	}
	if o.UBatchSize < 1 {
		return fmt.Errorf("llamacpp.ubatch_size: must be positive, got %d", o.UBatchSize)
	}
	if o.Timeout < 1 {
		return fmt.Errorf("llamacpp.timeout: must be positive, got %d", o.Timeout)
	}
	if o.SplitMode != "" && !slices.Contains(splitModes, o.SplitMode) {
		return fmt.Errorf("llamacpp.split_mode: %q is not one of %s", o.SplitMode, strings.Join(splitModes, ", "))
	}
	if o.MainGPU < -1 {
		return fmt.Errorf("llamacpp.main_gpu: must be -1 (unset) or a GPU index, got %d", o.MainGPU)
	}
	if o.NCPUMoE < 0 {
		return fmt.Errorf("llamacpp.n_cpu_moe: must not be negative, got %d", o.NCPUMoE)
	}
	for _, f := range []struct {
		field string
		v     float64
	}{{"llamacpp.temp", o.Temp}, {"llamacpp.top_p", o.TopP}, {"llamacpp.min_p", o.MinP}, {"llamacpp.repeat_penalty", o.RepeatPenalty}} {
		if f.v < 0 || math.IsNaN(f.v) || f.v > 1e6 {
			return fmt.Errorf("%s: %v is out of range", f.field, f.v)
		}
	}
	if math.IsNaN(o.PresencePenalty) || o.PresencePenalty < -2 || o.PresencePenalty > 2 {
		return fmt.Errorf("llamacpp.presence_penalty: %v is out of range -2..2", o.PresencePenalty)
	}
	if o.TopK < 0 {
		return fmt.Errorf("llamacpp.top_k: must not be negative, got %d", o.TopK)
	}
	return nil
}

func validateModel(field, checkpoint, name string) error {
	if checkpoint == "" {
		return fmt.Errorf("%s.checkpoint: required", field)
	}
	if !isToken(checkpoint) || !strings.Contains(checkpoint, "/") {
		return fmt.Errorf("%s.checkpoint: %q is not a Hugging Face checkpoint (org/repo:VARIANT)", field, checkpoint)
	}
	if name == "" {
		return fmt.Errorf("%s.name: required", field)
	}
	bare := BareName(name)
	for _, p := range []string{"extra.", "builtin."} {
		if strings.HasPrefix(bare, p) {
			return fmt.Errorf("%s.name: %q must be a user model (user.<name> or <name>)", field, name)
		}
	}
	if !modelNameRe.MatchString(bare) {
		return fmt.Errorf("%s.name: %q may hold only letters, digits, '.', '_' and '-'", field, name)
	}
	return nil
}

// isToken reports whether v is non-empty and free of spaces, quotes and
// control characters.
func isToken(v string) bool {
	if v == "" {
		return false
	}
	for _, r := range v {
		if r <= ' ' || r == 0x7f || r == '"' || r == '\'' || r == '\\' {
			return false
		}
	}
	return true
}
