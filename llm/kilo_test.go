package llm

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// kiloTopKeys are the root keys of Kilo's strict config schema that thon
// may write (reference §4).
var kiloTopKeys = []string{
	"$schema", "model", "small_model", "provider", "mcp", "permission", "plugin", "share", "compaction",
	"instructions", "indexing", "experimental",
}

var kiloIndexingKeys = []string{
	"enabled", "provider", "model", "dimension", "vectorStore", "openai-compatible", "ollama", "openai", "qdrant",
	"lancedb", "valkey", "searchMinScore", "searchMaxResults", "embeddingBatchSize", "scannerMaxBatchRetries",
}

// checkKiloSchema asserts the parts of current Kilo's strict schema that
// thon's output touches.
func checkKiloSchema(t *testing.T, name string, b []byte) map[string]any {
	t.Helper()
	var doc map[string]any
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatalf("%s: not JSON: %v", name, err)
	}
	for k := range doc {
		if !slices.Contains(kiloTopKeys, k) {
			t.Errorf("%s: unknown top-level key %q", name, k)
		}
	}
	if share, ok := doc["share"]; ok && share != "manual" && share != "disabled" {
		t.Errorf("%s: share = %v, want manual or disabled", name, share)
	}
	if idx, ok := doc["indexing"].(map[string]any); ok {
		for k := range idx {
			if !slices.Contains(kiloIndexingKeys, k) {
				t.Errorf("%s: unknown indexing key %q", name, k)
			}
		}
		if oc, ok := idx["openai-compatible"].(map[string]any); ok {
			for k := range oc {
				if k != "baseUrl" && k != "apiKey" {
					t.Errorf("%s: indexing.openai-compatible.%s is not allowed", name, k)
				}
			}
		}
		if idx["enabled"] == true && idx["model"] == nil {
			t.Errorf("%s: indexing enabled without indexing.model", name)
		}
	}
	model, _ := doc["model"].(string)
	pid, mid, ok := strings.Cut(model, "/")
	if !ok {
		t.Fatalf("%s: model %q is not provider/model", name, model)
	}
	providers, _ := doc["provider"].(map[string]any)
	p, _ := providers[pid].(map[string]any)
	if p == nil {
		t.Fatalf("%s: provider %q missing", name, pid)
	}
	if p["npm"] != KiloNPM {
		t.Errorf("%s: provider %s npm = %v", name, pid, p["npm"])
	}
	opts, _ := p["options"].(map[string]any)
	if opts["baseURL"] == nil || opts["apiKey"] == nil {
		t.Errorf("%s: provider options = %v", name, opts)
	}
	models, _ := p["models"].(map[string]any)
	m, _ := models[mid].(map[string]any)
	limit, _ := m["limit"].(map[string]any)
	if limit["context"] == nil || limit["output"] == nil {
		t.Errorf("%s: model %s limit = %v", name, mid, limit)
	}
	return doc
}

func TestKiloBaseURL(t *testing.T) {
	s := DefaultSettings()
	for i, tc := range []struct {
		o    KiloOptions
		want string
		err  string
	}{
		{KiloOptions{ExternalIP: "203.0.113.9", BridgeGateway: "gw.docker"}, "http://203.0.113.9:13305/v1", ""},
		{KiloOptions{BridgeGateway: "host.docker.internal"}, "http://host.docker.internal:13305/v1", ""},
		{KiloOptions{}, "http://localhost:13305/v1", ""},
		{KiloOptions{ExternalIP: "2001:db8::1"}, "http://[2001:db8::1]:13305/v1", ""},
		{KiloOptions{Mode: KiloGatewayPerUser, ExternalIP: "203.0.113.9"}, "http://203.0.113.9:9080/v1", ""},
		{KiloOptions{Mode: KiloGatewayPerGroup, GatewayPort: 8080}, "http://localhost:8080/v1", ""},
		{KiloOptions{Mode: KiloGatewayPerUser, GatewayURL: "https://thon.example.org/v1/"}, "https://thon.example.org/v1", ""},
		{KiloOptions{Mode: KiloGatewayPerUser, GatewayURL: "ftp://x/v1"}, "", "gateway_url"},
		{KiloOptions{Mode: "sideways"}, "", "mode"},
		{KiloOptions{ExternalIP: "a b"}, "", "external_ip"},
	} {
		got, err := KiloBaseURL(s, tc.o)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("case %d: err = %v, want %q", i, err, tc.err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("case %d: got %q, %v; want %q", i, got, err, tc.want)
		}
	}
}

func TestGenerateKiloModes(t *testing.T) {
	s := DefaultSettings()
	for i, tc := range []struct {
		o        KiloOptions
		provider string
		key      string
	}{
		{KiloOptions{}, "lemonade", "none"},
		{KiloOptions{APIKey: "lemon"}, "lemonade", "lemon"},
		{KiloOptions{Mode: KiloGatewayPerUser, APIKey: "user-key"}, "lemonade-gateway", "user-key"},
		{KiloOptions{Mode: KiloGatewayPerGroup, APIKey: "group-key"}, "lemonade-gateway", "group-key"},
	} {
		b, err := GenerateKilo(s, tc.o)
		if err != nil {
			t.Fatalf("case %d: %v", i, err)
		}
		doc := checkKiloSchema(t, "case", b)
		if doc["model"] != tc.provider+"/user.gemma-4-31b-it" {
			t.Errorf("case %d: model = %v", i, doc["model"])
		}
		p := doc["provider"].(map[string]any)[tc.provider].(map[string]any)
		if p["options"].(map[string]any)["apiKey"] != tc.key {
			t.Errorf("case %d: apiKey = %v", i, p["options"])
		}
		idx := doc["indexing"].(map[string]any)
		if idx["model"] != "user.harrier-oss-v1-0.6b" || idx["dimension"] != float64(1024) {
			t.Errorf("case %d: indexing = %v", i, idx)
		}
		if idx["openai-compatible"].(map[string]any)["apiKey"] != tc.key {
			t.Errorf("case %d: indexing key = %v", i, idx["openai-compatible"])
		}
		for _, ph := range []string{"$WORKSPACE", "$THON_USERNAME", "$THON_USER_EMAIL"} {
			if !strings.Contains(string(b), ph) {
				t.Errorf("case %d: placeholder %s missing", i, ph)
			}
		}
	}
	if _, err := GenerateKilo(s, KiloOptions{Mode: KiloGatewayPerUser}); err == nil || !strings.Contains(err.Error(), "api_key") {
		t.Errorf("gateway without key: err = %v", err)
	}

	s.Embedding.Enabled = false
	b, err := GenerateKilo(s, KiloOptions{Langfuse: true})
	if err != nil {
		t.Fatal(err)
	}
	doc := checkKiloSchema(t, "no embedding", b)
	if doc["indexing"].(map[string]any)["enabled"] != false {
		t.Errorf("indexing = %v, want disabled", doc["indexing"])
	}
	exp := doc["experimental"].(map[string]any)
	if exp["semantic_indexing"] != false || exp["openTelemetry"] != true {
		t.Errorf("experimental = %v", exp)
	}
	if !slices.Equal(doc["plugin"].([]any), []any{"opencode-plugin-langfuse"}) {
		t.Errorf("plugin = %v", doc["plugin"])
	}
}

func readOriginal(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "original", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestOriginalKiloFiles(t *testing.T) {
	for _, name := range []string{"kilo.jsonc.example", "kilo.jsonc.generated"} {
		out, err := NormalizeKilo(readOriginal(t, name))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		doc := checkKiloSchema(t, name, out)
		idx := doc["indexing"].(map[string]any)
		if idx["model"] != "user.harrier-oss-v1-0.6b" {
			t.Errorf("%s: indexing.model = %v", name, idx["model"])
		}
		if _, ok := idx["openai-compatible"].(map[string]any)["model"]; ok {
			t.Errorf("%s: model left inside openai-compatible", name)
		}
		again, err := NormalizeKilo(out)
		if err != nil || string(again) != string(out) {
			t.Errorf("%s: normalising twice changes the output: %v", name, err)
		}
	}

	// The skeleton has duplicate keys (the last wins) and share "auto".
	skel := readOriginal(t, "kilo.jsonc.skeleton")
	out, err := NormalizeKilo(skel)
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := json.Unmarshal(out, &doc); err != nil {
		t.Fatal(err)
	}
	if perm := doc["permission"].(map[string]any); len(perm) != 16 {
		t.Errorf("permission has %d keys, want the last block's 16", len(perm))
	}
	kilo, err := GenerateKilo(DefaultSettings(), KiloOptions{Skeleton: skel, APIKey: "k"})
	if err != nil {
		t.Fatal(err)
	}
	doc = checkKiloSchema(t, "over the original skeleton", kilo)
	if doc["share"] != "manual" {
		t.Errorf("share = %v", doc["share"])
	}
	// a skeleton that is the original's buggy example is fixed too
	kilo, err = GenerateKilo(DefaultSettings(), KiloOptions{Skeleton: readOriginal(t, "kilo.jsonc.example"), APIKey: "k"})
	if err != nil {
		t.Fatal(err)
	}
	checkKiloSchema(t, "over the example", kilo)
}

func TestNormalizeKiloErrors(t *testing.T) {
	for i, tc := range []struct {
		in, want string
	}{
		{"{\n  \"a\": 1,\n  /* open", "kilo.jsonc"},
		{"{\n  \"a\": ,\n}", "kilo.jsonc:2:"},
		{"[]", "top level must be a JSON object"},
		{"", ""}, // empty: an empty object
		{"// only a comment\n{\"indexing\": {\"openai-compatible\": {\"model\": \"m\", \"dimension\": 8}, \"model\": \"keep\"}}", ""},
	} {
		out, err := NormalizeKilo([]byte(tc.in))
		if tc.want != "" {
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("case %d: err = %v, want %q", i, err, tc.want)
			}
			continue
		}
		if err != nil {
			t.Errorf("case %d: %v", i, err)
		}
		if i == 4 && string(out) != "{\n  \"indexing\": {\n    \"dimension\": 8,\n    \"model\": \"keep\",\n    \"openai-compatible\": {}\n  }\n}\n" {
			t.Errorf("case %d: got %s", i, out)
		}
	}
}

func TestFillPlaceholders(t *testing.T) {
	b, err := GenerateKilo(DefaultSettings(), KiloOptions{APIKey: "k"})
	if err != nil {
		t.Fatal(err)
	}
	out := FillPlaceholders(string(b), "alice", "", "")
	var doc map[string]any
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		t.Fatal(err)
	}
	env := doc["mcp"].(map[string]any)["git-mcp-server"].(map[string]any)["environment"].(map[string]any)
	want := map[string]any{
		"GIT_BASE_DIR": "/workspace", "LOGS_DIR": "/workspace/.logs/git-mcp-server",
		"GIT_USERNAME": "alice", "GIT_EMAIL": "alice@thon.local",
	}
	for k, v := range want {
		if env[k] != v {
			t.Errorf("%s = %v, want %v", k, env[k], v)
		}
	}

	for i, tc := range []struct {
		in, user, email, ws, want string
	}{
		{`"$THON_USER_EMAIL"`, "bob", `b"o\b@x`, "", `"b\"o\\b@x"`},
		{`"$WORKSPACE_DIR $WORKSPACE/x"`, "u", "", "/w", `"$WORKSPACE_DIR /w/x"`},
		{`"$THON_USERNAME$THON_USERNAME"`, "u", "", "", `"uu"`},
		{`"<$THON_USERNAME>"`, "a&b", "", "", `"<a&b>"`},
	} {
		if got := FillPlaceholders(tc.in, tc.user, tc.email, tc.ws); got != tc.want {
			t.Errorf("case %d: got %s, want %s", i, got, tc.want)
		}
	}
}

func FuzzNormalizeKilo(f *testing.F) {
	for _, name := range []string{"kilo.jsonc.example", "kilo.jsonc.generated", "kilo.jsonc.skeleton"} {
		b, err := os.ReadFile(filepath.Join("testdata", "original", name))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add(DefaultKiloSkeleton())
	f.Add([]byte(`{"indexing": {"openai-compatible": {"model": 1}}, "provider": {"lemonade": {}}}`))
	f.Add([]byte(`{"a": /* c */ [1, 2,], // x` + "\n}"))
	f.Fuzz(func(t *testing.T, in []byte) {
		out, err := NormalizeKilo(in)
		if err != nil {
			return
		}
		var doc map[string]any
		if err := json.Unmarshal(out, &doc); err != nil {
			t.Fatalf("output is not JSON: %v\n%s", err, out)
		}
		if idx, ok := doc["indexing"].(map[string]any); ok {
			if oc, ok := idx["openai-compatible"].(map[string]any); ok {
				if _, has := oc["model"]; has {
					t.Fatalf("model left in openai-compatible: %s", out)
				}
			}
		}
		again, err := NormalizeKilo(out)
		if err != nil || string(again) != string(out) {
			t.Fatalf("not idempotent: %v\n%s\n%s", err, out, again)
		}
	})
}
