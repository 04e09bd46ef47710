package nginxtest

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestNginxStartSites runs nginx on a sites directory holding one server,
// which then answers, and checks the main configuration with nginx -t.
func TestNginxStartSites(t *testing.T) {
	sites := t.TempDir()
	port := FreePorts(t, 1)[0]
	site := fmt.Sprintf("server {\n    listen 127.0.0.1:%d;\n    return 200 \"from the site\";\n}\n", port)
	if err := os.WriteFile(filepath.Join(sites, "site"), []byte(site), 0o644); err != nil {
		t.Fatal(err)
	}
	conf := StartSites(t, sites)
	if b, err := exec.Command(Bin, "-t", "-c", conf).CombinedOutput(); err != nil {
		t.Fatalf("nginx -t: %v\n%s", err, b)
	}
	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/", port))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || string(body) != "from the site" {
		t.Errorf("GET: %d %q", resp.StatusCode, body)
	}
	// nginx keeps its files in its own prefix, next to the configuration.
	prefix := filepath.Dir(conf)
	for _, name := range []string{"nginx.pid", "error.log", "temp"} {
		if _, err := os.Stat(filepath.Join(prefix, name)); err != nil {
			t.Errorf("prefix lacks %s: %v", name, err)
		}
	}
}

// TestNginxMainConfRefused checks that nginx -t reports what is wrong in
// the extra directives, so a test relying on it can see the cause.
func TestNginxMainConfRefused(t *testing.T) {
	Require(t)
	conf := WriteConf(t, t.TempDir(), IncludeSites(t.TempDir())+"\n    this_is_not_a_directive on;")
	b, err := exec.Command(Bin, "-t", "-c", conf).CombinedOutput()
	if err == nil || !strings.Contains(string(b), `unknown directive "this_is_not_a_directive"`) {
		t.Errorf("nginx -t: %v\n%s", err, b)
	}
}
