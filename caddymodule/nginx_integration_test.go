package caddymodule

import (
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"testing"

	"github.com/thon-dev/thon/internal/dockertest"
	"github.com/thon-dev/thon/internal/nginxtest"
)

// TestIntegrationNginxRefresh drives the nginx routes of a thon configured
// with an nginx block, in a temporary layout with a running nginx: refresh
// writes and loads the site for the live sandbox with a certificate from
// thon's CA, a second refresh changes nothing, and cleanup removes exactly
// what was written.
func TestIntegrationNginxRefresh(t *testing.T) {
	dockertest.Client(t)
	etc := t.TempDir()
	available, enabled, ssl := filepath.Join(etc, "sites-available"), filepath.Join(etc, "sites-enabled"), filepath.Join(etc, "ssl")
	for _, d := range []string{available, enabled} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	before := nginxtest.Tree(t, etc)
	conf := nginxtest.StartSites(t, enabled)
	httpPort, httpsPort := freePort(t), freePort(t)
	portStart := dockertest.PortRange(50)
	dataDir := t.TempDir()
	in := startCaddy(t, nginxCaddyfile(dataDir, portStart, fmt.Sprintf(`external_ip 127.0.0.1
		nginx {
			sites_available %s
			sites_enabled %s
			ssl_dir %s
			bin %s
			conf %s
			listen_addr 127.0.0.1
			http_port %d
			https_port %d
		}`, available, enabled, ssl, nginxtest.Bin, conf, httpPort, httpsPort)))
	group, _ := launchGroup(t, "alice")

	type applied struct {
		Result struct {
			CAFile    string   `json:"ca_file"`
			Written   []string `json:"written"`
			Unchanged bool     `json:"unchanged"`
		} `json:"result"`
		Sandboxes int  `json:"sandboxes"`
		Tested    bool `json:"tested"`
		Reloaded  bool `json:"reloaded"`
	}
	refresh := func() applied {
		t.Helper()
		code, body := in.do(http.MethodPost, in.base+"/api/nginx/refresh", "", nil)
		if code != http.StatusOK {
			t.Fatalf("refresh: %d %s", code, body)
		}
		var a applied
		if err := json.Unmarshal(body, &a); err != nil {
			t.Fatal(err)
		}
		return a
	}
	a := refresh()
	if a.Sandboxes != 1 || !a.Tested || !a.Reloaded || a.Result.CAFile == "" {
		t.Fatalf("refresh: %+v", a)
	}

	// The root served at /ca.crt verifies nginx's certificate, and nginx
	// serves the sandbox.
	root, client := thonRootClient(t, in.base)
	if written, _ := os.ReadFile(a.Result.CAFile); string(written) != string(root) {
		t.Errorf("the CA file nginx serves differs from thon's /ca.crt")
	}
	waitServed(t, client, fmt.Sprintf("https://127.0.0.1:%d/s/%s/alice/through/nginx", httpsPort, group), `data-testid="path">/through/nginx<`)

	// Nothing new: the certificate is kept, nothing is written, nginx is
	// not reloaded.
	if a := refresh(); !a.Result.Unchanged || len(a.Result.Written) != 0 || a.Reloaded || !a.Tested {
		t.Errorf("second refresh: %+v", a)
	}

	var status struct {
		Written   bool     `json:"written"`
		Enabled   bool     `json:"enabled"`
		Sandboxes int      `json:"sandboxes"`
		Files     []string `json:"files"`
	}
	in.getJSON(in.admin+"/thon/nginx/status", &status)
	if !status.Written || !status.Enabled || status.Sandboxes != 1 || len(status.Files) < 5 {
		t.Errorf("status: %+v", status)
	}

	code, body := in.do(http.MethodPost, in.base+"/api/nginx/cleanup", "", nil)
	if code != http.StatusOK {
		t.Fatalf("cleanup: %d %s", code, body)
	}
	if after := nginxtest.Tree(t, etc); !maps.Equal(after, before) {
		t.Errorf("after cleanup\n got %v\nwant %v", after, before)
	}
}
