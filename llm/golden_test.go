package llm

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"strconv"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/golden")

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", "golden", name)
	if *update {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./llm -run Golden -update)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from the golden file:\n--- got\n%s\n--- want\n%s", name, got, want)
	}
}

func TestGoldenLemonadeConfig(t *testing.T) {
	for _, users := range []int{1, 30, 300} {
		c, err := GenerateConfig(DefaultSettings(), users)
		if err != nil {
			t.Fatal(err)
		}
		f, err := c.Files(Files{})
		if err != nil {
			t.Fatal(err)
		}
		dir := strconv.Itoa(users) + "-users"
		golden(t, filepath.Join(dir, ConfigFile), f.Config)
		golden(t, filepath.Join(dir, UserModelsFile), f.UserModels)
		golden(t, filepath.Join(dir, RecipeOptionsFile), f.RecipeOptions)
		// rendering over its own output changes nothing
		again, err := c.Files(f)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(again.Config, f.Config) || !bytes.Equal(again.UserModels, f.UserModels) || !bytes.Equal(again.RecipeOptions, f.RecipeOptions) {
			t.Errorf("%d users: rendering over the generated files changes them", users)
		}
	}
}

func TestGoldenKilo(t *testing.T) {
	s := DefaultSettings()
	for _, tc := range []struct {
		file string
		o    KiloOptions
	}{
		{"direct.jsonc", KiloOptions{Mode: KiloDirect, BridgeGateway: "host.docker.internal", APIKey: "LEMONADE-API-KEY"}},
		{"gateway-per-user.jsonc", KiloOptions{Mode: KiloGatewayPerUser, ExternalIP: "203.0.113.10", APIKey: "USER-KEY"}},
		{"gateway-per-group.jsonc", KiloOptions{Mode: KiloGatewayPerGroup, GatewayURL: "https://thon.example.org/v1", APIKey: "GROUP-KEY"}},
	} {
		b, err := GenerateKilo(s, tc.o)
		if err != nil {
			t.Fatal(err)
		}
		checkKiloSchema(t, tc.file, b)
		golden(t, filepath.Join("kilo", tc.file), b)
	}
}
