package lemonadetest

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/thon-dev/thon/llm"
)

// WriteConfigDir writes into dir the configuration files thon generates
// for settings and users, as `thon lemonade setup` leaves them in
// Lemonade Server's config directory: over a config.json holding keys
// thon does not manage ("offline", and the deprecated "no_broadcast"),
// each file 0640, as a service user's group would read them. It returns
// the files' contents.
func WriteConfigDir(t testing.TB, dir string, settings llm.Settings, users int) llm.Files {
	t.Helper()
	cfg, err := llm.GenerateConfig(settings, users)
	if err != nil {
		t.Fatal(err)
	}
	f, err := cfg.Files(llm.Files{Config: []byte(`{"offline": true, "no_broadcast": false}`)})
	if err != nil {
		t.Fatal(err)
	}
	for name, b := range map[string][]byte{llm.ConfigFile: f.Config, llm.UserModelsFile: f.UserModels, llm.RecipeOptionsFile: f.RecipeOptions} {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o640); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, 0o640); err != nil { // whatever the umask
			t.Fatal(err)
		}
	}
	return f
}
