package caddymodule

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/spf13/cobra"

	caddycmd "github.com/caddyserver/caddy/v2/cmd"

	"github.com/thon-dev/thon/internal/lemonadetest"
	"github.com/thon-dev/thon/llm"
	"github.com/thon-dev/thon/store"
)

// runLemonadeCmd runs `thon lemonade args...` in this process, as the thon
// binary would, and returns what it printed.
func runLemonadeCmd(t *testing.T, args ...string) (string, error) {
	t.Helper()
	var out bytes.Buffer
	err := runCmd(t, "lemonade", &out, &out, args...)
	return out.String(), err
}

// runCmd runs `thon name args...` in this process, as the thon binary
// would, writing its output to stdout and stderr.
func runCmd(t *testing.T, name string, stdout, stderr io.Writer, args ...string) error {
	t.Helper()
	c, ok := caddycmd.Commands()[name]
	if !ok {
		t.Fatalf("the %s command is not registered", name)
	}
	cmd := &cobra.Command{Use: c.Name, SilenceUsage: true, SilenceErrors: true}
	c.CobraFunc(cmd)
	cmd.SetOut(stdout)
	cmd.SetErr(stderr)
	cmd.SetArgs(args)
	return cmd.Execute()
}

// recipeOptions reads recipe_options.json under an --out directory.
func recipeOptions(t *testing.T, out string) map[string]llm.RecipeOptions {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(out, llm.DefaultConfigDir, llm.RecipeOptionsFile))
	if err != nil {
		t.Fatal(err)
	}
	var ro map[string]llm.RecipeOptions
	if err := json.Unmarshal(b, &ro); err != nil {
		t.Fatal(err)
	}
	return ro
}

func TestLemonadeSetupCommand(t *testing.T) {
	groups := filepath.Join("testdata", "groups.yaml") // 6 users: alpha 3, beta 2, gamma 1
	chat, emb := "user."+llm.DefaultChatName, "user."+llm.DefaultEmbeddingName

	// A dry run writes nothing.
	out := t.TempDir()
	text, err := runLemonadeCmd(t, "setup", "--out", out, "--dry-run", "--groups", groups)
	if err != nil {
		t.Fatalf("dry run: %v\n%s", err, text)
	}
	for _, want := range []string{"for 6 users (from testdata/groups.yaml)", "would-write: dry run: would write " + filepath.Join(out, llm.DefaultConfigDir, llm.ConfigFile), "dry run: nothing was written"} {
		if !strings.Contains(text, want) {
			t.Errorf("dry run output lacks %q:\n%s", want, text)
		}
	}
	if entries, _ := os.ReadDir(out); len(entries) != 0 {
		t.Errorf("a dry run wrote %v", entries)
	}

	// Against a Lemonade test server: files written, models pulled and
	// loaded with the generated options.
	lem := lemonadetest.Start(t, lemonadetest.Options{MaxLoadedModels: 1, NoDefaultModels: true})
	args := []string{"setup", "--out", out, "--groups", groups, "--group", "alpha", "--url", lem.URL(), "--external-ip", "203.0.113.7"}
	text, err = runLemonadeCmd(t, args...)
	if err != nil {
		t.Fatalf("setup: %v\n%s", err, text)
	}
	for _, want := range []string{"for 3 users (from group alpha of testdata/groups.yaml)", "written: wrote", "pulled " + chat, "loaded " + emb, "\ndone\n", llm.RestartCommand} {
		if !strings.Contains(text, want) {
			t.Errorf("setup output lacks %q:\n%s", want, text)
		}
	}
	ro := recipeOptions(t, out)
	if ro[chat].CtxSize != 3*llm.DefaultChatCtxPerUser || ro[emb].CtxSize != 3*llm.DefaultEmbeddingCtxPerUser || !strings.HasSuffix(ro[chat].LlamacppArgs, "-np 3") {
		t.Errorf("recipe options = %+v", ro)
	}
	if loaded := lem.Loaded(); !slices.Contains(loaded, chat) || !slices.Contains(loaded, emb) {
		t.Errorf("loaded = %v", loaded)
	}
	if lo, _ := lem.LoadedOptions(chat); lo["ctx_size"] != float64(3*llm.DefaultChatCtxPerUser) {
		t.Errorf("chat loaded with %v", lo)
	}
	home, _ := os.UserHomeDir()
	kilo, err := os.ReadFile(filepath.Join(out, home, ".thon", "kilo.jsonc"))
	if err != nil || !bytes.Contains(kilo, []byte("http://203.0.113.7:13305")) {
		t.Errorf("kilo.jsonc: %v\n%s", err, kilo)
	}

	// A second run changes nothing.
	text, err = runLemonadeCmd(t, args...)
	if err != nil {
		t.Fatalf("second setup: %v\n%s", err, text)
	}
	if !strings.Contains(text, "nothing changed") || strings.Contains(text, "written:") || strings.Contains(text, "done:") {
		t.Errorf("second setup changed something:\n%s", text)
	}
	if lem.Pulls(chat) != 1 || lem.Loads(chat) != 1 {
		t.Errorf("second setup pulled %d, loaded %d times", lem.Pulls(chat), lem.Loads(chat))
	}

	// Rescale the same tree to 5 users: files and the loaded model follow.
	text, err = runLemonadeCmd(t, "rescale", "--out", out, "--users", "5", "--url", lem.URL())
	if err != nil {
		t.Fatalf("rescale: %v\n%s", err, text)
	}
	if !strings.Contains(text, "the configuration was sized for 3 users") || !strings.Contains(text, "reloaded with ctx_size") {
		t.Errorf("rescale output:\n%s", text)
	}
	if ro := recipeOptions(t, out); ro[chat].CtxSize != 5*llm.DefaultChatCtxPerUser {
		t.Errorf("recipe options after rescale = %+v", ro[chat])
	}
	if lo, _ := lem.LoadedOptions(chat); lo["ctx_size"] != float64(5*llm.DefaultChatCtxPerUser) {
		t.Errorf("chat loaded with %v after rescale", lo)
	}
	text, err = runLemonadeCmd(t, "rescale", "--out", out, "--users", "5", "--url", lem.URL())
	if err != nil || !strings.Contains(text, "nothing changed") {
		t.Errorf("second rescale: %v\n%s", err, text)
	}
}

func TestLemonadeCommandCountsDatabase(t *testing.T) {
	db := filepath.Join(t.TempDir(), "thon.db")
	st, err := store.Open(context.Background(), db)
	if err != nil {
		t.Fatal(err)
	}
	roster, err := store.ParseRoster("g.yaml", []byte("groups:\n  alpha: [alice, bob]\n  beta: [carol]\n"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.ImportRoster(context.Background(), roster); err != nil {
		t.Fatal(err)
	}
	st.Close()
	out := t.TempDir()
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--database", db}, "for 3 users (from " + db + ")"},
		{[]string{"--database", db, "--group", "beta"}, "for 1 user (from group beta of " + db + ")"},
	} {
		text, err := runLemonadeCmd(t, append([]string{"setup", "--out", out, "--dry-run"}, tc.args...)...)
		if err != nil || !strings.Contains(text, tc.want) {
			t.Errorf("%v: %v\n%s", tc.args, err, text)
		}
	}
}

func TestLemonadeCommandErrors(t *testing.T) {
	out := t.TempDir()
	groups := filepath.Join("testdata", "groups.yaml")
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	os.WriteFile(bad, []byte("groups:\n  Alpha: [x]\n"), 0o644)
	for i, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"setup", "--groups", groups, "--llamacpp-args", "--ctx-size 4096"}, `--llamacpp-args: llamacpp_args: argument "--ctx-size" is not allowed`},
		{[]string{"setup", "--groups", groups, "--llamacpp-args", `"open`}, "--llamacpp-args:"},
		{[]string{"setup", "--groups", groups, "--external-ip", "nope"}, `--external-ip: "nope" is not an IP address`},
		{[]string{"setup", "--groups", groups, "--model", "no-slash"}, `--model: "no-slash" is not a Hugging Face checkpoint`},
		{[]string{"setup", "--groups", groups, "--model-name", "builtin.x"}, "--model-name:"},
		{[]string{"setup", "--groups", groups, "--embedding-model-name", "bad name"}, "--embedding-model-name:"},
		{[]string{"setup", "--groups", groups, "--url", "ftp://x"}, `--url: "ftp://x" is not an http(s) URL`},
		{[]string{"setup", "--groups", "/nonexistent/groups.yaml"}, "--groups: open /nonexistent/groups.yaml"},
		{[]string{"setup", "--groups", bad}, bad + `:2: invalid group name "Alpha"`},
		{[]string{"setup", "--groups", groups, "--group", "delta"}, `--group: no group "delta" in testdata/groups.yaml`},
		{[]string{"setup", "--database", "/nonexistent/thon.db"}, "--database: /nonexistent/thon.db does not exist"},
		{[]string{"setup", "--users", "-2"}, "--users: must be at least 1"},
		{[]string{"setup", "--users", "2", "--groups", groups}, "--users: give either"},
		{[]string{"rescale", "--users", "2", "--config-dir", "relative"}, `--config-dir: "relative" must be an absolute path`},
		{[]string{"rescale", "--users", "2", "--out", out}, "lemonade config dir " + filepath.Join(out, llm.DefaultConfigDir) + " does not exist"},
		{[]string{"setup", "extra"}, "unknown command"},
	} {
		args := append(tc.args, "--out", out)
		if slices.Contains(tc.args, "--out") {
			args = tc.args
		}
		if tc.args[len(tc.args)-1] == "extra" {
			args = tc.args
		}
		text, err := runLemonadeCmd(t, args...)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("case %d: %v: error %v, want %q\n%s", i, tc.args, err, tc.want, text)
		}
	}
	if entries, _ := os.ReadDir(out); len(entries) != 0 {
		t.Errorf("refused commands wrote %v", entries)
	}
}
