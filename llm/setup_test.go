package llm_test

import (
	"context"
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/thon-dev/thon/internal/lemonadetest"
	"github.com/thon-dev/thon/llm"
)

const (
	testAPIKey   = "test-api-key-0123456789abcdef"
	testAdminKey = "test-admin-key-0123456789abcdef"
)

func stepMap(rep llm.Report) map[string]llm.StepResult {
	m := map[string]llm.StepResult{}
	for _, s := range rep.Steps {
		m[s.Step] = s
	}
	return m
}

func wantStatus(t *testing.T, run string, rep llm.Report, want map[string]string) {
	t.Helper()
	got := stepMap(rep)
	for step, status := range want {
		if got[step].Status != status {
			t.Errorf("%s: step %q = %q (%s), want %q", run, step, got[step].Status, got[step].Message, status)
		}
	}
	if len(got) != len(want) {
		var names []string
		for _, s := range rep.Steps {
			names = append(names, s.Step)
		}
		t.Errorf("%s: steps %v, want %d", run, names, len(want))
	}
}

func listFiles(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() {
			rel, _ := filepath.Rel(dir, p)
			out = append(out, rel)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(out)
	return out
}

func TestSetupOutDirTwice(t *testing.T) {
	srv := lemonadetest.Start(t, lemonadetest.Options{NoDefaultModels: true, APIKey: testAPIKey, AdminKey: testAdminKey})
	out := t.TempDir()
	newSetup := func(users int) *llm.Setup {
		return &llm.Setup{
			Users:       users,
			APIKey:      testAPIKey,
			AdminKey:    testAdminKey,
			ExternalIP:  "203.0.113.5",
			OutDir:      out,
			KiloPath:    "/home/organiser/.thon/kilo.jsonc",
			LemonadeURL: srv.URL(),
		}
	}
	ctx := context.Background()
	var progressed []string
	rep, err := newSetup(30).Run(ctx, func(step, msg string) { progressed = append(progressed, step+": "+msg) })
	if err != nil {
		t.Fatalf("first run: %v", err)
	}
	wantStatus(t, "first run", rep, map[string]string{
		"config.json": "written", "user_models.json": "written", "recipe_options.json": "written", "api-keys": "written",
		"restart": "skipped", "pull user.gemma-4-31b-it": "done", "load user.gemma-4-31b-it": "done",
		"pull user.harrier-oss-v1-0.6b": "done", "load user.harrier-oss-v1-0.6b": "done", "kilo.jsonc": "written",
	})
	if !rep.Changed || rep.RestartCommand != "systemctl daemon-reload && systemctl restart lemond" || rep.KeysGenerated {
		t.Errorf("report = %+v", rep)
	}
	if !slices.ContainsFunc(progressed, func(s string) bool { return strings.Contains(s, "100%") }) {
		t.Errorf("no pull progress reported: %q", progressed)
	}
	files := listFiles(t, out)
	want := []string{
		"etc/systemd/system/lemond.service.d/override.conf", "home/organiser/.thon/kilo.jsonc",
		"var/lib/lemonade/config.json", "var/lib/lemonade/recipe_options.json", "var/lib/lemonade/user_models.json",
	}
	if !slices.Equal(files, want) {
		t.Errorf("files = %q, want %q", files, want)
	}
	dropIn := filepath.Join(out, "etc/systemd/system/lemond.service.d/override.conf")
	b, err := os.ReadFile(dropIn)
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range []string{"[Service]", `Environment="LEMONADE_API_KEY=` + testAPIKey + `"`, `Environment="LEMONADE_ADMIN_API_KEY=` + testAdminKey + `"`} {
		if !strings.Contains(string(b), line+"\n") {
			t.Errorf("drop-in lacks %q:\n%s", line, b)
		}
	}
	if fi, _ := os.Stat(dropIn); fi.Mode().Perm() != 0o600 {
		t.Errorf("drop-in mode %v, want 0600", fi.Mode().Perm())
	}
	kilo, err := os.ReadFile(filepath.Join(out, "home/organiser/.thon/kilo.jsonc"))
	if err != nil || !strings.Contains(string(kilo), `"baseURL": "http://203.0.113.5:13305/v1"`) || !strings.Contains(string(kilo), `"apiKey": "`+testAPIKey+`"`) {
		t.Errorf("kilo.jsonc = %s, %v", kilo, err)
	}
	for _, id := range []string{"user.gemma-4-31b-it", "user.harrier-oss-v1-0.6b"} {
		if srv.Pulls(id) != 1 || srv.Loads(id) != 1 {
			t.Errorf("%s: %d pulls, %d loads; want 1 each", id, srv.Pulls(id), srv.Loads(id))
		}
	}
	opts, ok := srv.LoadedOptions("user.gemma-4-31b-it")
	if !ok || opts["ctx_size"] != float64(30*262144) || !strings.HasSuffix(opts["llamacpp_args"].(string), "-np 30") {
		t.Errorf("chat loaded with %v", opts)
	}

	// Second run: nothing changes, nothing is pulled or loaded again.
	before := map[string][]byte{}
	for _, f := range files {
		before[f], _ = os.ReadFile(filepath.Join(out, f))
	}
	rep, err = newSetup(30).Run(ctx, nil)
	if err != nil {
		t.Fatalf("second run: %v", err)
	}
	wantStatus(t, "second run", rep, map[string]string{
		"config.json": "unchanged", "user_models.json": "unchanged", "recipe_options.json": "unchanged", "api-keys": "unchanged",
		"restart": "unchanged", "pull user.gemma-4-31b-it": "unchanged", "load user.gemma-4-31b-it": "unchanged",
		"pull user.harrier-oss-v1-0.6b": "unchanged", "load user.harrier-oss-v1-0.6b": "unchanged", "kilo.jsonc": "unchanged",
	})
	if rep.Changed || rep.RestartCommand != "" {
		t.Errorf("second run report = %+v", rep)
	}
	for f, b := range before {
		now, _ := os.ReadFile(filepath.Join(out, f))
		if string(now) != string(b) {
			t.Errorf("%s changed on the second run", f)
		}
	}
	for _, id := range []string{"user.gemma-4-31b-it", "user.harrier-oss-v1-0.6b"} {
		if srv.Pulls(id) != 1 || srv.Loads(id) != 1 {
			t.Errorf("second run: %s: %d pulls, %d loads; want 1 each", id, srv.Pulls(id), srv.Loads(id))
		}
	}

	// Rescale to 31 users: recipe options and the loaded models change.
	rep, err = newSetup(31).Run(ctx, nil)
	if err != nil {
		t.Fatalf("rescale: %v", err)
	}
	wantStatus(t, "rescale", rep, map[string]string{
		"config.json": "written", "user_models.json": "unchanged", "recipe_options.json": "written", "api-keys": "unchanged",
		"restart": "skipped", "pull user.gemma-4-31b-it": "unchanged", "load user.gemma-4-31b-it": "done",
		"pull user.harrier-oss-v1-0.6b": "unchanged", "load user.harrier-oss-v1-0.6b": "done", "kilo.jsonc": "unchanged",
	})
	ro, _ := os.ReadFile(filepath.Join(out, "var/lib/lemonade/recipe_options.json"))
	if n, err := llm.UsersFromRecipeOptions(ro, "user.gemma-4-31b-it"); err != nil || n != 31 {
		t.Errorf("users after rescale = %d, %v", n, err)
	}
	if opts, _ := srv.LoadedOptions("user.harrier-oss-v1-0.6b"); !strings.HasSuffix(opts["llamacpp_args"].(string), "-np 31") {
		t.Errorf("embedding reloaded with %v", opts)
	}
}

func TestSetupGeneratedKeysKept(t *testing.T) {
	srv := lemonadetest.Start(t, lemonadetest.Options{}) // no key: lemond is open until restarted
	out := t.TempDir()
	dropIn := filepath.Join(out, "etc/systemd/system", llm.DropInPath)
	if err := os.MkdirAll(filepath.Dir(dropIn), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dropIn, []byte("[Service]\nEnvironment=\"HF_TOKEN=hf_x\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	run := func(rotate bool) llm.Report {
		t.Helper()
		s := &llm.Setup{Users: 2, GenerateKeys: true, RotateKeys: rotate, OutDir: out, KiloPath: "/k/kilo.jsonc", LemonadeURL: srv.URL(), NoEmbedding: true}
		rep, err := s.Run(context.Background(), nil)
		if err != nil {
			t.Fatal(err)
		}
		return rep
	}
	rep1 := run(false)
	if !rep1.KeysGenerated || len(rep1.APIKey) != 43 || len(rep1.AdminKey) != 43 || rep1.APIKey == rep1.AdminKey {
		t.Fatalf("keys = %q %q generated=%v", rep1.APIKey, rep1.AdminKey, rep1.KeysGenerated)
	}
	if b, _ := json.Marshal(rep1); strings.Contains(string(b), rep1.APIKey) {
		t.Errorf("the report serialises the key: %s", b)
	}
	b, _ := os.ReadFile(dropIn)
	if !strings.Contains(string(b), `Environment="HF_TOKEN=hf_x"`) {
		t.Errorf("drop-in lost an unrelated line:\n%s", b)
	}
	if k1, a1 := llm.DropInKeys(string(b)); k1 != rep1.APIKey || a1 != rep1.AdminKey {
		t.Errorf("drop-in keys %q %q", k1, a1)
	}
	if st := stepMap(rep1); st["pull user.harrier-oss-v1-0.6b"].Step != "" || st["pull user.gemma-4-31b-it"].Status != "unchanged" {
		t.Errorf("steps = %+v", rep1.Steps)
	}

	rep2 := run(false)
	if rep2.KeysGenerated || rep2.APIKey != rep1.APIKey || rep2.AdminKey != rep1.AdminKey || rep2.Changed {
		t.Errorf("second run changed the keys or files: %+v", rep2)
	}
	rep3 := run(true)
	if !rep3.KeysGenerated || rep3.APIKey == rep1.APIKey || stepMap(rep3)["api-keys"].Status != "written" {
		t.Errorf("rotation: %+v", rep3)
	}
}

func TestSetupDryRunAndBadInput(t *testing.T) {
	srv := lemonadetest.Start(t, lemonadetest.Options{})
	out := t.TempDir()
	s := &llm.Setup{Users: 3, GenerateKeys: true, DryRun: true, OutDir: out, KiloPath: "/k/kilo.jsonc", LemonadeURL: srv.URL()}
	rep, err := s.Run(context.Background(), nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, st := range rep.Steps {
		if st.Status != "would-write" && st.Status != "skipped" {
			t.Errorf("dry run step %s = %s", st.Step, st.Status)
		}
	}
	if files := listFiles(t, out); len(files) != 0 {
		t.Errorf("dry run wrote %q", files)
	}
	if n := len(srv.Requests()); n != 0 {
		t.Errorf("dry run sent %d requests", n)
	}

	for i, tc := range []struct {
		s    llm.Setup
		want string
	}{
		{llm.Setup{Users: 2, LlamacppArgs: "--no-mmap --ctx-size 4096"}, `"--ctx-size"`},
		{llm.Setup{Users: 2, LlamacppArgs: "-np 4"}, `"-np"`},
		{llm.Setup{Users: 0}, "users"},
		{llm.Setup{Users: 2, ChatName: "extra.x"}, "chat.name"},
		{llm.Setup{Users: 2, APIKey: `bad"key with quotes`}, "api_key"},
		{llm.Setup{Users: 2, ExternalIP: "not an ip"}, "external_ip"},
		{llm.Setup{Users: 2, ConfigDir: "relative/dir"}, "config_dir"},
		{llm.Setup{Users: 2, Kilo: llm.KiloOptions{Mode: llm.KiloGatewayPerUser}}, "api_key"},
	} {
		tc.s.OutDir = out
		tc.s.KiloPath = "/k/kilo.jsonc"
		tc.s.LemonadeURL = srv.URL()
		_, err := tc.s.Run(context.Background(), nil)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("case %d: err = %v, want %s", i, err, tc.want)
		}
		if files := listFiles(t, out); len(files) != 0 {
			t.Errorf("case %d: bad input wrote %q", i, files)
		}
	}
}

func TestSetupRestartWithSystemd(t *testing.T) {
	srv := lemonadetest.Start(t, lemonadetest.Options{})
	root := t.TempDir()
	var calls []string
	newSetup := func() *llm.Setup {
		return &llm.Setup{
			Users: 4, GenerateKeys: false,
			ConfigDir:      filepath.Join(root, "lib"),
			SystemdDir:     filepath.Join(root, "systemd"),
			KiloPath:       filepath.Join(root, "kilo.jsonc"),
			SystemdRunPath: root, // exists: systemd "runs"
			Systemctl: func(_ context.Context, args ...string) error {
				calls = append(calls, strings.Join(args, " "))
				return nil
			},
			LemonadeURL: srv.URL(),
		}
	}
	rep, err := newSetup().Run(context.Background(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(calls, []string{"daemon-reload", "restart lemond"}) {
		t.Errorf("systemctl calls = %q", calls)
	}
	st := stepMap(rep)
	if st["restart"].Status != "done" || rep.RestartCommand != "" || st["api-keys"].Status != "skipped" {
		t.Errorf("steps = %+v", rep.Steps)
	}
	if _, err := os.Stat(filepath.Join(root, "systemd", llm.DropInPath)); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("a drop-in was written without keys: %v", err)
	}
	calls = nil
	rep, err = newSetup().Run(context.Background(), nil)
	if err != nil || len(calls) != 0 || rep.Changed {
		t.Errorf("second run: calls %q, changed %v, err %v", calls, rep.Changed, err)
	}

	// systemd not running: the command is reported instead
	s := newSetup()
	s.Users = 5
	s.SystemdRunPath = filepath.Join(root, "missing")
	calls = nil
	rep, err = s.Run(context.Background(), nil)
	if err != nil || len(calls) != 0 || rep.RestartCommand == "" || !strings.Contains(stepMap(rep)["restart"].Message, "systemd is not running") {
		t.Errorf("no systemd: calls %q, report %+v, err %v", calls, rep, err)
	}
	// a failing systemctl stops the setup with its error
	s = newSetup()
	s.Users = 6
	s.Systemctl = func(context.Context, ...string) error { return errors.New("systemctl restart lemond: unit not found") }
	if _, err := s.Run(context.Background(), nil); err == nil || !strings.Contains(err.Error(), "unit not found") {
		t.Errorf("failing systemctl: err = %v", err)
	}
}

func TestSetupLemonadeDown(t *testing.T) {
	srv := lemonadetest.New(lemonadetest.Options{})
	url := srv.URL()
	srv.Close()
	out := t.TempDir()
	s := &llm.Setup{Users: 2, OutDir: out, KiloPath: "/k/kilo.jsonc", LemonadeURL: url}
	for run := range 2 { // in --out mode Lemonade need not run at all
		rep, err := s.Run(context.Background(), nil)
		if err != nil {
			t.Fatalf("run %d: %v", run, err)
		}
		st := stepMap(rep)
		if st["pull user.gemma-4-31b-it"].Status != "skipped" || !strings.Contains(st["pull user.gemma-4-31b-it"].Message, url) {
			t.Errorf("run %d: steps = %+v", run, rep.Steps)
		}
	}
	if _, err := os.Stat(filepath.Join(out, "k/kilo.jsonc")); err != nil {
		t.Errorf("kilo.jsonc not written: %v", err)
	}

	// On the system, with lemond to be restarted by hand, the models are
	// skipped; once the configuration is in place, an unreachable Lemonade
	// is an error.
	root := t.TempDir()
	s = &llm.Setup{
		Users: 2, ConfigDir: filepath.Join(root, "lib"), SystemdDir: filepath.Join(root, "systemd"),
		KiloPath: filepath.Join(root, "kilo.jsonc"), SystemdRunPath: filepath.Join(root, "none"), LemonadeURL: url,
	}
	if _, err := s.Run(context.Background(), nil); err != nil {
		t.Fatalf("first system run: %v", err)
	}
	var ue *llm.UnreachableError
	if _, err := s.Run(context.Background(), nil); !errors.As(err, &ue) || !strings.Contains(err.Error(), url) {
		t.Errorf("second system run: err = %v", err)
	}
}
