package llm

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

func mustFiles(t *testing.T, s Settings, users int, existing Files) Files {
	t.Helper()
	c, err := GenerateConfig(s, users)
	if err != nil {
		t.Fatalf("GenerateConfig(%d): %v", users, err)
	}
	f, err := c.Files(existing)
	if err != nil {
		t.Fatalf("Files: %v", err)
	}
	return f
}

func unmarshalMap(t *testing.T, b []byte) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("invalid JSON %s: %v", b, err)
	}
	return m
}

func TestGenerateConfigScaling(t *testing.T) {
	for i, tc := range []struct {
		users     int
		embedding bool
		chatCtx   float64
		embCtx    float64
		maxLoaded float64
	}{
		{1, true, 262144, 32768, 2},
		{30, true, 262144 * 30, 32768 * 30, 2},
		{300, true, 262144 * 300, 32768 * 300, 2},
		{7, false, 262144 * 7, 0, 1},
	} {
		s := DefaultSettings()
		s.Embedding.Enabled = tc.embedding
		f := mustFiles(t, s, tc.users, Files{})
		cfg := unmarshalMap(t, f.Config)
		if cfg["port"] != float64(13305) {
			t.Errorf("case %d: port = %v, want 13305", i, cfg["port"])
		}
		if cfg["max_loaded_models"] != tc.maxLoaded {
			t.Errorf("case %d: max_loaded_models = %v, want %v", i, cfg["max_loaded_models"], tc.maxLoaded)
		}
		if cfg["rocm_channel"] != "stable" {
			t.Errorf("case %d: rocm_channel = %v, want stable", i, cfg["rocm_channel"])
		}
		if cfg["config_version"] != float64(2) {
			t.Errorf("case %d: config_version = %v, want 2", i, cfg["config_version"])
		}
		_, b := cfg["broadcast"]
		_, nb := cfg["no_broadcast"]
		if b && nb {
			t.Errorf("case %d: config.json holds both broadcast and no_broadcast", i)
		}
		if cfg["ctx_size"] != tc.chatCtx {
			t.Errorf("case %d: ctx_size = %v, want %v", i, cfg["ctx_size"], tc.chatCtx)
		}

		ro := unmarshalMap(t, f.RecipeOptions)
		chat, _ := ro["user.gemma-4-31b-it"].(map[string]any)
		if chat == nil {
			t.Fatalf("case %d: no user.gemma-4-31b-it in recipe_options: %s", i, f.RecipeOptions)
		}
		if chat["ctx_size"] != tc.chatCtx {
			t.Errorf("case %d: chat ctx_size = %v, want %v", i, chat["ctx_size"], tc.chatCtx)
		}
		args, _ := chat["llamacpp_args"].(string)
		wantArgs := "-b 8192 -ub 8192 -to 3600 -ctk q8_0 -ctv q8_0 --temp 1.0 --top-k 64 --top-p 0.95 --min-p 0.0 " +
			"--repeat-penalty 1.0 --no-webui --threads-http -1 --threads -1 -np " + itoa(tc.users)
		if args != wantArgs {
			t.Errorf("case %d: chat args\n got %q\nwant %q", i, args, wantArgs)
		}
		if n, err := UsersFromArgs(args); err != nil || n != tc.users {
			t.Errorf("case %d: UsersFromArgs = %d, %v; want %d", i, n, err, tc.users)
		}
		emb, hasEmb := ro["user.harrier-oss-v1-0.6b"].(map[string]any)
		if hasEmb != tc.embedding {
			t.Fatalf("case %d: embedding entry present = %v, want %v", i, hasEmb, tc.embedding)
		}
		if hasEmb {
			if emb["ctx_size"] != tc.embCtx {
				t.Errorf("case %d: embedding ctx_size = %v, want %v", i, emb["ctx_size"], tc.embCtx)
			}
			want := "-b 8192 -ub 8192 -to 3600 -ctk q8_0 -ctv q8_0 --no-webui --threads-http -1 --threads -1 -np " + itoa(tc.users)
			if emb["llamacpp_args"] != want {
				t.Errorf("case %d: embedding args\n got %q\nwant %q", i, emb["llamacpp_args"], want)
			}
		}
	}
}

func itoa(n int) string { b, _ := json.Marshal(n); return string(b) }

func TestUserPrefixRules(t *testing.T) {
	s := DefaultSettings()
	s.Chat.Name = "user.my-chat" // given with the prefix: normalised
	s.Embedding.Name = "my-emb"
	existingUM := []byte(`{"user.my-chat": {"model_name": "user.my-chat", "checkpoint": "old/old:Q4"}, "other": {"checkpoint": "a/b:Q4"}}`)
	f := mustFiles(t, s, 3, Files{UserModels: existingUM})

	um := unmarshalMap(t, f.UserModels)
	for k := range um {
		if k != "other" && strings.HasPrefix(k, UserPrefix) {
			t.Errorf("user_models.json key %q carries the user. prefix", k)
		}
	}
	for _, k := range []string{"my-chat", "my-emb", "other"} {
		if _, ok := um[k]; !ok {
			t.Errorf("user_models.json lacks %q: %s", k, f.UserModels)
		}
	}
	if m := um["my-chat"].(map[string]any); m["model_name"] != "my-chat" {
		t.Errorf("model_name = %v, want my-chat", m["model_name"])
	}
	ro := unmarshalMap(t, f.RecipeOptions)
	if len(ro) != 2 {
		t.Errorf("recipe_options.json has %d entries, want 2: %s", len(ro), f.RecipeOptions)
	}
	for k := range ro {
		if !strings.HasPrefix(k, UserPrefix) {
			t.Errorf("recipe_options.json key %q lacks the user. prefix", k)
		}
	}
	if got := DefaultSettings().ChatID(); got != "user.gemma-4-31b-it" {
		t.Errorf("ChatID = %q", got)
	}
	for i, bad := range []string{"extra.x", "builtin.y", "user.", "a b", "x/y"} {
		s := DefaultSettings()
		s.Chat.Name = bad
		if err := s.Validate(); err == nil || !strings.Contains(err.Error(), "chat.name") {
			t.Errorf("case %d: name %q: err = %v, want a chat.name error", i, bad, err)
		}
	}
}

func TestMergeKeepsUnrelated(t *testing.T) {
	existing := Files{
		Config: []byte(`{"config_version": 1, "no_broadcast": true, "rocm_channel": "preview", "cloud_providers": {"x": {"base_url": "https://e.example"}},
			"llamacpp": {"device": "gpu0", "backend": "vulkan"}, "offline": false}`),
		UserModels:    []byte(`{"Qwen3-0.6B": {"checkpoint": "unsloth/Qwen3-0.6B-GGUF:Q4_0", "recipe": "llamacpp"}, "gemma-4-31b-it": {"checkpoint": "old/x:Q4", "source": "huggingface", "mmproj": "old.gguf"}}`),
		RecipeOptions: []byte(`{"builtin.Qwen3-0.6B-GGUF": {"llamacpp_backend": "rocm"}, "user.gemma-4-31b-it": {"ctx_size": 4096, "llamacpp_device": "gpu1"}}`),
	}
	f := mustFiles(t, DefaultSettings(), 2, existing)

	cfg := unmarshalMap(t, f.Config)
	if _, ok := cfg["no_broadcast"]; ok {
		t.Errorf("no_broadcast kept: %s", f.Config)
	}
	if cfg["broadcast"] != false {
		t.Errorf("broadcast = %v, want false (from no_broadcast true)", cfg["broadcast"])
	}
	if cfg["rocm_channel"] != "stable" || cfg["config_version"] != float64(2) {
		t.Errorf("rocm_channel %v config_version %v", cfg["rocm_channel"], cfg["config_version"])
	}
	if _, ok := cfg["cloud_providers"]; !ok {
		t.Errorf("cloud_providers dropped")
	}
	ll := cfg["llamacpp"].(map[string]any)
	if ll["device"] != "gpu0" || ll["backend"] != "auto" {
		t.Errorf("llamacpp = %v; want device kept and backend auto", ll)
	}

	um := unmarshalMap(t, f.UserModels)
	if _, ok := um["Qwen3-0.6B"]; !ok {
		t.Errorf("unrelated user model dropped")
	}
	g := um["gemma-4-31b-it"].(map[string]any)
	if g["checkpoint"] != DefaultChatCheckpoint || g["source"] != "huggingface" || g["mmproj"] != DefaultChatMMProj {
		t.Errorf("gemma entry = %v", g)
	}

	ro := unmarshalMap(t, f.RecipeOptions)
	if _, ok := ro["builtin.Qwen3-0.6B-GGUF"]; !ok {
		t.Errorf("unrelated recipe options dropped")
	}
	chat := ro["user.gemma-4-31b-it"].(map[string]any)
	if chat["ctx_size"] != float64(2*262144) || chat["llamacpp_device"] != "gpu1" {
		t.Errorf("chat options = %v", chat)
	}

	// an operator's nightly channel and a broadcast setting are kept
	f = mustFiles(t, DefaultSettings(), 1, Files{Config: []byte(`{"rocm_channel": "nightly", "broadcast": true, "no_broadcast": true}`)})
	cfg = unmarshalMap(t, f.Config)
	if cfg["rocm_channel"] != "nightly" || cfg["broadcast"] != true || cfg["no_broadcast"] != nil {
		t.Errorf("config = %s", f.Config)
	}

	// rendering twice gives the same bytes
	again := mustFiles(t, DefaultSettings(), 1, f)
	if string(again.Config) != string(f.Config) {
		t.Errorf("second render differs:\n%s\n%s", f.Config, again.Config)
	}
}

func TestExistingFileErrors(t *testing.T) {
	c, err := GenerateConfig(DefaultSettings(), 1)
	if err != nil {
		t.Fatal(err)
	}
	for i, tc := range []struct {
		files Files
		want  string
	}{
		{Files{Config: []byte("{\n  \"port\": 1,\n  oops\n}")}, "config.json:3:"},
		{Files{UserModels: []byte(`[1, 2]`)}, "user_models.json:1:1: the top level must be a JSON object"},
		{Files{RecipeOptions: []byte("{\"a\": {}\n")}, "recipe_options.json:"},
		{Files{RecipeOptions: []byte(`{} {}`)}, "recipe_options.json:1:4: unexpected data"},
	} {
		_, err := c.Files(tc.files)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("case %d: err = %v, want %q", i, err, tc.want)
		}
	}
}

func TestUsersFromArgs(t *testing.T) {
	for i, tc := range []struct {
		args string
		want int
		err  string
	}{
		{"-b 1 -np 30", 30, ""},
		{"--parallel 4", 4, ""},
		{"--parallel=12 -b 2", 12, ""},
		{"-np 2 -np 5", 5, ""},
		{"-b 8192", 0, "no -np"},
		{"-np", 0, "has no value"},
		{"-np x", 0, "not a number"},
		{"-np 0", 0, "not a number"},
		{`-np "3`, 0, "unterminated"},
	} {
		got, err := UsersFromArgs(tc.args)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("case %d: err = %v, want %q", i, err, tc.err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("case %d: got %d, %v; want %d", i, got, err, tc.want)
		}
	}
}

func TestRescale(t *testing.T) {
	s := DefaultSettings()
	f30 := mustFiles(t, s, 30, Files{RecipeOptions: []byte(`{"user.keep": {"ctx_size": 1}}`)})
	if n, err := UsersFromRecipeOptions(f30.RecipeOptions, s.ChatID()); err != nil || n != 30 {
		t.Fatalf("users = %d, %v; want 30", n, err)
	}
	cfg, f31, err := Rescale(s, 31, f30)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Users != 31 || cfg.RecipeOptions[s.ChatID()].CtxSize != 31*s.Chat.CtxPerUser {
		t.Errorf("config = %+v", cfg)
	}
	for _, id := range []string{s.ChatID(), s.EmbeddingID()} {
		if n, err := UsersFromRecipeOptions(f31.RecipeOptions, id); err != nil || n != 31 {
			t.Errorf("%s: users = %d, %v; want 31", id, n, err)
		}
	}
	ro := unmarshalMap(t, f31.RecipeOptions)
	if _, ok := ro["user.keep"]; !ok {
		t.Errorf("rescale dropped an unrelated entry")
	}
	if string(f31.UserModels) != string(f30.UserModels) {
		t.Errorf("rescale changed user_models.json")
	}
	if _, err := UsersFromRecipeOptions(f31.RecipeOptions, "user.missing"); err == nil || !strings.Contains(err.Error(), `"user.missing"`) {
		t.Errorf("missing entry: err = %v", err)
	}
	if _, _, err := Rescale(s, 0, f30); err == nil || !strings.Contains(err.Error(), "users") {
		t.Errorf("0 users: err = %v", err)
	}
}

func TestContextLimit(t *testing.T) {
	_, err := GenerateConfig(DefaultSettings(), 9000)
	var cle *ContextLimitError
	if !errors.As(err, &cle) || cle.Field != "chat.ctx_per_user" || cle.Users != 9000 || !strings.Contains(err.Error(), "chat.ctx_per_user") {
		t.Errorf("err = %v, want a context limit error", err)
	}
}

func TestSettingsValidate(t *testing.T) {
	for i, tc := range []struct {
		edit  func(*Settings)
		field string
	}{
		{func(s *Settings) { s.Host = "" }, "host"},
		{func(s *Settings) { s.Port = 70000 }, "port"},
		{func(s *Settings) { s.Chat.Checkpoint = "" }, "chat.checkpoint"},
		{func(s *Settings) { s.Chat.Checkpoint = "no-slash" }, "chat.checkpoint"},
		{func(s *Settings) { s.Chat.MMProj = "a b.gguf" }, "chat.mmproj"},
		{func(s *Settings) { s.Chat.CtxPerUser = 0 }, "chat.ctx_per_user"},
		{func(s *Settings) { s.Chat.Output = 0 }, "chat.output"},
		{func(s *Settings) { s.Embedding.Name = s.Chat.Name }, "embedding.name"},
		{func(s *Settings) { s.Embedding.Checkpoint = "" }, "embedding.checkpoint"},
		{func(s *Settings) { s.Embedding.CtxPerUser = -1 }, "embedding.ctx_per_user"},
		{func(s *Settings) { s.Backend = "system" }, "backend"},
		{func(s *Settings) { s.Bins.ROCm = "/opt/my bin" }, "bins.rocm"},
		{func(s *Settings) { s.Llamacpp.CacheTypeK = "q3" }, "llamacpp.ctk"},
		{func(s *Settings) { s.Llamacpp.BatchSize = 0 }, "llamacpp.batch_size"},
		{func(s *Settings) { s.Llamacpp.SplitMode = "diagonal" }, "llamacpp.split_mode"},
		{func(s *Settings) { s.Llamacpp.MainGPU = -2 }, "llamacpp.main_gpu"},
		{func(s *Settings) { s.Llamacpp.PresencePenalty = 3 }, "llamacpp.presence_penalty"},
		{func(s *Settings) { s.ExtraArgs = "--flash-attn on -c 4096" }, `"-c"`},
	} {
		s := DefaultSettings()
		tc.edit(&s)
		err := s.Validate()
		if err == nil || !strings.Contains(err.Error(), tc.field) {
			t.Errorf("case %d: err = %v, want one naming %s", i, err, tc.field)
		}
		if _, gerr := GenerateConfig(s, 1); gerr == nil {
			t.Errorf("case %d: GenerateConfig accepted invalid settings", i)
		}
	}
	// the embedding model is not checked when it is off
	s := DefaultSettings()
	s.Embedding = EmbeddingModel{}
	if err := s.Validate(); err != nil {
		t.Errorf("disabled embedding: %v", err)
	}
	if err := DefaultSettings().Validate(); err != nil {
		t.Errorf("defaults: %v", err)
	}
}

func TestOptionalLlamacppArgs(t *testing.T) {
	s := DefaultSettings()
	s.Llamacpp.SplitMode = "row"
	s.Llamacpp.MainGPU = 1
	s.Llamacpp.CPUMoE = true
	s.Llamacpp.NCPUMoE = 8
	s.Llamacpp.PresencePenalty = 1.5
	s.ExtraArgs = `--flash-attn on --chat-template-kwargs '{"enable_thinking": false}'`
	c, err := GenerateConfig(s, 5)
	if err != nil {
		t.Fatal(err)
	}
	chat := c.RecipeOptions[s.ChatID()].LlamacppArgs
	for _, want := range []string{"--presence-penalty 1.5", "--split-mode row", "--main-gpu 1", "--cpu-moe", "--n-cpu-moe 8",
		`--flash-attn on --chat-template-kwargs "{\"enable_thinking\": false}" -np 5`} {
		if !strings.Contains(chat, want) {
			t.Errorf("chat args %q lack %q", chat, want)
		}
	}
	emb := c.RecipeOptions[s.EmbeddingID()].LlamacppArgs
	if strings.Contains(emb, "--cpu-moe") || strings.Contains(emb, "--presence-penalty") || !strings.Contains(emb, "--split-mode row") {
		t.Errorf("embedding args %q", emb)
	}
	args, err := SplitArgs(chat)
	if err != nil || args[len(args)-3] != `{"enable_thinking": false}` {
		t.Errorf("args do not split back: %q, %v", args, err)
	}

	var ae *ArgError
	s.ExtraArgs = "--no-mmap --mmproj=x.gguf"
	if _, err := GenerateConfig(s, 1); !errors.As(err, &ae) || ae.Arg != "--mmproj=x.gguf" {
		t.Errorf("err = %v, want an ArgError for --mmproj=x.gguf", err)
	}
}

func FuzzConfigFiles(f *testing.F) {
	f.Add([]byte(`{"no_broadcast": true, "llamacpp": {"device": "x"}}`), []byte(`{"other": {}}`), []byte(`{"user.gemma-4-31b-it": {"ctx_size": 1}}`))
	f.Add([]byte(``), []byte(`[]`), []byte(`{"a": 1} x`))
	f.Add([]byte(`{"config_version": 99, "rocm_channel": 5}`), []byte(`{"gemma-4-31b-it": "s"}`), []byte(`null`))
	c, err := GenerateConfig(DefaultSettings(), 3)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, cfg, um, ro []byte) {
		out, err := c.Files(Files{Config: cfg, UserModels: um, RecipeOptions: ro})
		if err != nil {
			return
		}
		again, err := c.Files(out)
		if err != nil {
			t.Fatalf("rendering over the output fails: %v", err)
		}
		if string(again.Config) != string(out.Config) || string(again.UserModels) != string(out.UserModels) || string(again.RecipeOptions) != string(out.RecipeOptions) {
			t.Fatalf("not idempotent")
		}
		if n, err := UsersFromRecipeOptions(out.RecipeOptions, "user.gemma-4-31b-it"); err != nil || n != 3 {
			t.Fatalf("users = %d, %v", n, err)
		}
		var m map[string]any
		if json.Unmarshal(out.Config, &m) != nil || m["no_broadcast"] != nil {
			t.Fatalf("config.json = %s", out.Config)
		}
	})
}
