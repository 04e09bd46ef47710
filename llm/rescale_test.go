package llm_test

import (
	"context"
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/thon-dev/thon/internal/lemonadetest"
	"github.com/thon-dev/thon/llm"
)

func TestRecoverSettings(t *testing.T) {
	custom := llm.DefaultSettings()
	custom.Port = 13400
	custom.Backend = "vulkan"
	custom.Chat = llm.ChatModel{Checkpoint: "org/qwen-GGUF:Q4_K_M", Name: "qwen", CtxPerUser: 65536, Output: 4096}
	custom.Embedding.Enabled = false
	custom.Llamacpp.PresencePenalty = 1.5
	custom.Llamacpp.SplitMode = "row"
	custom.Llamacpp.MainGPU = 1
	custom.Llamacpp.CPUMoE = true
	custom.Llamacpp.CacheTypeK = "f16"
	custom.ExtraArgs = `--seed 42 --alias "my model"`

	withEmb := llm.DefaultSettings()
	withEmb.Embedding.Checkpoint = "org/emb-GGUF:F16"
	withEmb.Embedding.Name = "emb"
	withEmb.Embedding.CtxPerUser = 8192

	for i, tc := range []struct {
		s     llm.Settings
		users int
	}{{llm.DefaultSettings(), 1}, {llm.DefaultSettings(), 30}, {custom, 3}, {withEmb, 7}} {
		dir := t.TempDir()
		files := lemonadetest.WriteConfigDir(t, dir, tc.s, tc.users)
		got, users, err := llm.RecoverSettings(files)
		if err != nil {
			t.Fatalf("case %d: %v", i, err)
		}
		if users != tc.users {
			t.Errorf("case %d: users = %d, want %d", i, users, tc.users)
		}
		// What the files depend on comes back exactly: the same users give
		// the same files.
		_, again, err := llm.Rescale(got, tc.users, files)
		if err != nil {
			t.Fatalf("case %d: %v", i, err)
		}
		if !reflect.DeepEqual(again, files) {
			t.Errorf("case %d: regenerated files differ:\n%s\n%s\nwant\n%s\n%s", i, again.RecipeOptions, again.Config, files.RecipeOptions, files.Config)
		}
		if got.Chat.Name != tc.s.Chat.Name || got.ExtraArgs != tc.s.ExtraArgs || got.Embedding.Enabled != tc.s.Embedding.Enabled {
			t.Errorf("case %d: recovered %+v", i, got)
		}
	}

	// No files: the defaults.
	got, users, err := llm.RecoverSettings(llm.Files{})
	if err != nil || users != 0 || !reflect.DeepEqual(got, llm.DefaultSettings()) {
		t.Errorf("empty: %+v %d %v", got, users, err)
	}
	// Malformed files are named.
	if _, _, err := llm.RecoverSettings(llm.Files{RecipeOptions: []byte("{")}); err == nil || !strings.Contains(err.Error(), "recipe_options.json") {
		t.Errorf("malformed: %v", err)
	}
}

func TestReadSettings(t *testing.T) {
	s := llm.DefaultSettings()
	s.Chat.Name = "qwen"
	s.Chat.Checkpoint = "org/qwen-GGUF:Q4_K_M"
	s.Chat.MMProj = ""
	dir := t.TempDir()
	lemonadetest.WriteConfigDir(t, dir, s, 4)
	got, err := llm.ReadSettings(dir)
	if err != nil || got.ChatID() != "user.qwen" || got.Chat.Checkpoint != s.Chat.Checkpoint {
		t.Errorf("read back %+v, %v", got.Chat, err)
	}

	// No directory, or no files: the defaults.
	for _, d := range []string{filepath.Join(t.TempDir(), "none"), t.TempDir()} {
		if got, err := llm.ReadSettings(d); err != nil || !reflect.DeepEqual(got, llm.DefaultSettings()) {
			t.Errorf("%s: %+v %v", d, got, err)
		}
	}

	// A file that is not JSON: a *ConfigDirError naming the file.
	bad := t.TempDir()
	if err := os.WriteFile(filepath.Join(bad, llm.UserModelsFile), []byte(`{"gemma": [}`), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err = llm.ReadSettings(bad)
	var de *llm.ConfigDirError
	if !errors.As(err, &de) || de.Dir != bad || !strings.Contains(err.Error(), llm.UserModelsFile) {
		t.Errorf("malformed file: %v", err)
	}
	// A file that cannot be read (a directory in its place): the
	// *fs.PathError is inside.
	unreadable := t.TempDir()
	if err := os.Mkdir(filepath.Join(unreadable, llm.ConfigFile), 0o755); err != nil {
		t.Fatal(err)
	}
	_, err = llm.ReadSettings(unreadable)
	var pe *fs.PathError
	if !errors.As(err, &de) || !errors.As(err, &pe) || pe.Path != filepath.Join(unreadable, llm.ConfigFile) {
		t.Errorf("unreadable file: %v", err)
	}
}

func TestRescalerErrors(t *testing.T) {
	var r llm.Rescaler
	ctx := context.Background()
	dir := t.TempDir()
	lemonadetest.WriteConfigDir(t, dir, llm.DefaultSettings(), 2)
	before, err := os.ReadFile(filepath.Join(dir, llm.RecipeOptionsFile))
	if err != nil {
		t.Fatal(err)
	}

	var fe *llm.FieldError
	for _, users := range []int{0, -1, llm.MaxUsers + 1, 9000} {
		_, err := r.Rescale(ctx, llm.RescaleOptions{ConfigDir: dir, Users: users})
		if !errors.As(err, &fe) || fe.Field != "users" {
			t.Errorf("%d users: %v, want a field error on users", users, err)
		}
	}
	if _, err := r.Rescale(ctx, llm.RescaleOptions{ConfigDir: dir, Users: 9000}); !strings.Contains(err.Error(), "exceeds llama-server's context limit") {
		t.Errorf("9000 users: %v", err)
	}
	if after, _ := os.ReadFile(filepath.Join(dir, llm.RecipeOptionsFile)); string(after) != string(before) {
		t.Error("a refused rescale wrote recipe_options.json")
	}

	var de *llm.ConfigDirError
	missing := filepath.Join(t.TempDir(), "nope")
	_, err = r.Rescale(ctx, llm.RescaleOptions{ConfigDir: missing, Users: 2})
	if !errors.As(err, &de) || de.Dir != missing || !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), "does not exist") {
		t.Errorf("missing dir: %v", err)
	}
	bad := t.TempDir()
	os.WriteFile(filepath.Join(bad, llm.RecipeOptionsFile), []byte("{"), 0o644)
	if _, err := r.Rescale(ctx, llm.RescaleOptions{ConfigDir: bad, Users: 2}); !errors.As(err, &de) || !strings.Contains(err.Error(), llm.RecipeOptionsFile) {
		t.Errorf("malformed file: %v", err)
	}
}

// TestRescalerReloadError: Lemonade refusing the key while the models are
// reloaded is a *ReloadError saying the files were written, and the
// client's error is inside.
func TestRescalerReloadError(t *testing.T) {
	lem := lemonadetest.Start(t, lemonadetest.Options{APIKey: "right-key-0123456789abcdef"})
	c, err := llm.NewClient(lem.URL(), "wrong-key-0123456789abcdef", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	lemonadetest.WriteConfigDir(t, dir, llm.DefaultSettings(), 2)
	var r llm.Rescaler
	res, err := r.Rescale(context.Background(), llm.RescaleOptions{ConfigDir: dir, Users: 3, Client: c})
	var re *llm.ReloadError
	if !errors.As(err, &re) || !re.Changed || re.Users != 3 || re.URL != c.BaseURL() || !errors.Is(err, llm.ErrUnauthorized) {
		t.Fatalf("rescale with a refused key: %v", err)
	}
	if !res.Changed || res.RestartCommand == "" {
		t.Errorf("result %+v", res)
	}
	var ro map[string]llm.RecipeOptions
	b, _ := os.ReadFile(filepath.Join(dir, llm.RecipeOptionsFile))
	if err := json.Unmarshal(b, &ro); err != nil || !strings.HasSuffix(ro["user.gemma-4-31b-it"].LlamacppArgs, "-np 3") {
		t.Errorf("recipe options after the rescale: %v %v", ro, err)
	}
}
