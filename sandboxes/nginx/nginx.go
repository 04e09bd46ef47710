package nginx

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// debianBinary is where Debian installs nginx; services often run with a
// PATH that lacks /usr/sbin.
const debianBinary = "/usr/sbin/nginx"

// Binary resolves the nginx executable: bin when set (a name looked up in
// PATH, or a path), else "nginx" in PATH, else /usr/sbin/nginx.
func Binary(bin string) (string, error) {
	if bin != "" {
		return exec.LookPath(bin)
	}
	if p, err := exec.LookPath("nginx"); err == nil {
		return p, nil
	}
	if _, err := exec.LookPath(debianBinary); err != nil {
		return "", errors.New("nginx not found in PATH nor at " + debianBinary)
	}
	return debianBinary, nil
}

// run runs nginx with args and returns an error carrying its output.
func run(ctx context.Context, bin string, args ...string) error {
	path, err := Binary(bin)
	if err != nil {
		return err
	}
	cmd := exec.CommandContext(ctx, path, args...)
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%s %s: %v: %s", path, strings.Join(args, " "), err, strings.TrimSpace(out.String()))
	}
	return nil
}

// Test checks a configuration with `nginx -t -c confPath` (nginx's default
// configuration when confPath is empty). A failure carries nginx's
// messages.
func Test(ctx context.Context, nginxBin, confPath string) error {
	args := []string{"-t"}
	if confPath != "" {
		args = append(args, "-c", confPath)
	}
	return run(ctx, nginxBin, args...)
}

// Reload asks the running nginx to reload its configuration
// (`nginx -s reload`). args go before -s, for an nginx started with its
// own prefix or configuration (-p DIR, -c FILE).
func Reload(ctx context.Context, nginxBin string, args ...string) error {
	return run(ctx, nginxBin, append(args, "-s", "reload")...)
}

// Status describes the nginx emission on this machine.
type Status struct {
	Installed bool   `json:"installed"`
	Binary    string `json:"binary,omitempty"`
	Version   string `json:"version,omitempty"` // e.g. "1.22.1"

	ConfigPath   string `json:"config_path,omitempty"`
	EnabledPath  string `json:"enabled_path,omitempty"`
	ManifestPath string `json:"manifest_path,omitempty"`
	// Written is true when the manifest exists and the configuration file
	// it records is on disk.
	Written bool `json:"written"`
	// Enabled is true when sites-enabled/<Name> links to the configuration.
	Enabled    bool   `json:"enabled"`
	ServerName string `json:"server_name,omitempty"`
	Sandboxes  int    `json:"sandboxes"`
	// Files are the paths recorded in the manifest.
	Files []string `json:"files,omitempty"`
	// DefaultSiteEnabled is true when sites-enabled/default exists: its
	// default_server then answers the requests that do not name
	// ServerName, IP-address requests included. The original removed it;
	// thon leaves that to the operator.
	DefaultSiteEnabled bool `json:"default_site_enabled"`
	// Problems explain what could not be read or looks wrong.
	Problems []string `json:"problems,omitempty"`
}

// inspectTimeout bounds `nginx -v`.
const inspectTimeout = 10 * time.Second

// Inspect reports whether nginx is installed, and what w has written.
func Inspect(w Writer, nginxBin string) Status {
	var st Status
	if path, err := Binary(nginxBin); err != nil {
		st.Problems = append(st.Problems, err.Error())
	} else {
		st.Binary = path
		ctx, cancel := context.WithTimeout(context.Background(), inspectTimeout)
		out, err := exec.CommandContext(ctx, path, "-v").CombinedOutput()
		cancel()
		if err != nil {
			st.Problems = append(st.Problems, fmt.Sprintf("%s -v: %v: %s", path, err, strings.TrimSpace(string(out))))
		} else {
			st.Installed = true
			st.Version = parseVersion(string(out))
		}
	}

	w, err := w.resolve()
	if err != nil {
		st.Problems = append(st.Problems, err.Error())
		return st
	}
	st.ConfigPath, st.EnabledPath, st.ManifestPath = w.configPath(), w.enabledPath(), w.Manifest
	m, found, err := w.readManifest()
	switch {
	case err != nil:
		st.Problems = append(st.Problems, err.Error())
	case found:
		st.ServerName, st.Sandboxes = m.ServerName, m.Sandboxes
		for _, e := range m.Entries {
			st.Files = append(st.Files, e.Path)
		}
		if fi, err := os.Stat(st.ConfigPath); err == nil && fi.Mode().IsRegular() {
			st.Written = true
		} else {
			st.Problems = append(st.Problems, fmt.Sprintf("%s is missing although the manifest records it", st.ConfigPath))
		}
	}
	if target, err := os.Readlink(st.EnabledPath); err == nil && target == st.ConfigPath {
		st.Enabled = true
	}
	if _, err := os.Lstat(filepath.Join(w.SitesEnabled, "default")); err == nil {
		st.DefaultSiteEnabled = true
		if st.Enabled {
			st.Problems = append(st.Problems, "sites-enabled/default is enabled: its default_server answers requests for other names and for the IP address; disable it for "+w.Name+" to receive them")
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		st.Problems = append(st.Problems, err.Error())
	}
	return st
}

// parseVersion extracts "1.22.1" from `nginx version: nginx/1.22.1 (…)`.
func parseVersion(out string) string {
	_, v, ok := strings.Cut(out, "nginx/")
	if !ok {
		return strings.TrimSpace(out)
	}
	if i := strings.IndexAny(v, " \t\r\n"); i >= 0 {
		v = v[:i]
	}
	return v
}
