package nginx

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/thon-dev/thon/internal/nginxtest"
)

// layout is a Debian-like /etc/nginx under a temporary directory, with
// the distribution's default site enabled and an unrelated file in
// sites-available, as on a real machine.
type layout struct {
	root string
	w    Writer
}

func newLayout(t *testing.T) layout {
	t.Helper()
	root := t.TempDir()
	w := Writer{
		SitesAvailable: filepath.Join(root, "sites-available"),
		SitesEnabled:   filepath.Join(root, "sites-enabled"),
		SSLDir:         filepath.Join(root, "ssl"),
	}
	for _, d := range []string{w.SitesAvailable, w.SitesEnabled} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	def := filepath.Join(w.SitesAvailable, "default")
	if err := os.WriteFile(def, []byte("# the distribution's default site\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(def, filepath.Join(w.SitesEnabled, "default")); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(w.SitesAvailable, "notes.txt"), []byte("not thon's\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return layout{root: root, w: w}
}

func hash8(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])[:8]
}

func TestWriteAndCleanup(t *testing.T) {
	l := newLayout(t)
	before := nginxtest.Tree(t, l.root)
	pki := newPKI(t, "203.0.113.7")
	site := Site{ExternalIP: "203.0.113.7", Sandboxes: []Location{{Port: 55001, Group: "team-a", User: "alice"}}}

	res, err := l.w.Write(site, pki.certPEM, pki.keyPEM, pki.caPEM)
	if err != nil {
		t.Fatal(err)
	}
	ssl := l.w.SSLDir
	base := filepath.Join(ssl, "thon-"+hash8("203.0.113.7"))
	want := Result{
		ConfigPath:  filepath.Join(l.w.SitesAvailable, "sandbox-thon"),
		EnabledPath: filepath.Join(l.w.SitesEnabled, "sandbox-thon"),
		CertFile:    base + ".pem",
		KeyFile:     base + "-key.pem",
		CAFile:      filepath.Join(ssl, "thon-ca.crt"),
		Manifest:    filepath.Join(l.w.SitesAvailable, ".thon-nginx-manifest.json"),
	}
	if res.ConfigPath != want.ConfigPath || res.EnabledPath != want.EnabledPath || res.CertFile != want.CertFile ||
		res.KeyFile != want.KeyFile || res.CAFile != want.CAFile || res.Manifest != want.Manifest {
		t.Errorf("result paths\n got %+v\nwant %+v", res, want)
	}
	wantWritten := []string{ssl, want.CertFile, want.KeyFile, want.CAFile, want.ConfigPath, want.EnabledPath}
	if !slices.Equal(res.Written, wantWritten) || res.Unchanged {
		t.Errorf("written %q (unchanged %v), want %q", res.Written, res.Unchanged, wantWritten)
	}

	// The files hold what was given, the key private to its owner.
	site.CertFile, site.KeyFile, site.CAFile = want.CertFile, want.KeyFile, want.CAFile
	conf, err := Render(site)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []struct {
		path string
		data []byte
		mode fs.FileMode
	}{{want.CertFile, pki.certPEM, 0o644}, {want.KeyFile, pki.keyPEM, 0o600}, {want.CAFile, pki.caPEM, 0o644}, {want.ConfigPath, conf, 0o644}} {
		got, err := os.ReadFile(f.path)
		if err != nil {
			t.Fatal(err)
		}
		if string(got) != string(f.data) {
			t.Errorf("%s holds %q", f.path, got)
		}
		fi, _ := os.Stat(f.path)
		if fi.Mode().Perm() != f.mode {
			t.Errorf("%s mode %v, want %v", f.path, fi.Mode().Perm(), f.mode)
		}
	}
	if target, err := os.Readlink(want.EnabledPath); err != nil || target != want.ConfigPath {
		t.Errorf("enabled link -> %q (%v), want %q", target, err, want.ConfigPath)
	}

	// The manifest records every path created, and only those.
	after := nginxtest.Tree(t, l.root)
	created := diffKeys(before, after)
	m, found, err := l.w.withDefaults(t).readManifest()
	if err != nil || !found {
		t.Fatalf("manifest: found %v, %v", found, err)
	}
	var recorded []string
	for _, e := range m.Entries {
		recorded = append(recorded, e.Path)
	}
	slices.Sort(created)
	wantRecorded := slices.DeleteFunc(slices.Clone(created), func(p string) bool { return p == want.Manifest })
	if slices.Sort(recorded); !slices.Equal(recorded, wantRecorded) {
		t.Errorf("manifest records %q\nwant the created paths %q", recorded, wantRecorded)
	}
	if m.ServerName != "_" || m.Sandboxes != 1 {
		t.Errorf("manifest summary %q %d", m.ServerName, m.Sandboxes)
	}
	for k, v := range before {
		if after[k] != v {
			t.Errorf("%s changed: %s -> %s", k, v, after[k])
		}
	}

	// The same content again: nothing written.
	res, err = l.w.Write(site, pki.certPEM, pki.keyPEM, pki.caPEM)
	if err != nil {
		t.Fatal(err)
	}
	if !res.Unchanged || len(res.Written) != 0 || len(res.Removed) != 0 {
		t.Errorf("rewrite: %+v, want unchanged", res)
	}
	if got := nginxtest.Tree(t, l.root); !maps.Equal(got, after) {
		t.Error("an unchanged rewrite changed files")
	}

	// Another sandbox: only the configuration changes.
	site.Sandboxes = append(site.Sandboxes, Location{Port: 55002})
	res, err = l.w.Write(site, pki.certPEM, pki.keyPEM, pki.caPEM)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(res.Written, []string{want.ConfigPath}) || res.Unchanged {
		t.Errorf("adding a sandbox wrote %q", res.Written)
	}

	// A new address renames the certificate; the old files go, and so does
	// the CA file when no CA is given.
	site.ExternalIP = "198.51.100.9"
	site.CAFile = ""
	res, err = l.w.Write(site, pki.certPEM, pki.keyPEM, nil)
	if err != nil {
		t.Fatal(err)
	}
	nb := filepath.Join(ssl, "thon-"+hash8("198.51.100.9"))
	if !slices.Equal(res.Written, []string{nb + ".pem", nb + "-key.pem", want.ConfigPath}) {
		t.Errorf("written %q", res.Written)
	}
	if !slices.Equal(res.Removed, []string{want.CertFile, want.KeyFile, want.CAFile}) {
		t.Errorf("removed %q", res.Removed)
	}
	confData, _ := os.ReadFile(want.ConfigPath)
	if strings.Contains(string(confData), "/ca.crt") || !strings.Contains(string(confData), nb+".pem;") {
		t.Errorf("configuration not updated:\n%s", confData)
	}

	// Cleanup removes exactly what was written: the tree is as before.
	removed, err := l.w.Cleanup()
	if err != nil {
		t.Fatal(err)
	}
	if got := nginxtest.Tree(t, l.root); !maps.Equal(got, before) {
		t.Errorf("after cleanup\n got %v\nwant %v", got, before)
	}
	wantRemoved := []string{nb + ".pem", nb + "-key.pem", want.ConfigPath, want.EnabledPath, ssl, want.Manifest}
	if !slices.Equal(removed, wantRemoved) {
		t.Errorf("removed %q, want %q", removed, wantRemoved)
	}
	// A second cleanup has nothing to do.
	if removed, err := l.w.Cleanup(); err != nil || len(removed) != 0 {
		t.Errorf("second cleanup: %q, %v", removed, err)
	}
}

// withDefaults resolves w for tests that read its manifest.
func (w Writer) withDefaults(t *testing.T) Writer {
	t.Helper()
	w, err := w.resolve()
	if err != nil {
		t.Fatal(err)
	}
	return w
}

func TestCleanupKeepsForeignFilesInSSLDir(t *testing.T) {
	l := newLayout(t)
	if err := os.Mkdir(l.w.SSLDir, 0o700); err != nil {
		t.Fatal(err)
	}
	other := filepath.Join(l.w.SSLDir, "other.pem")
	if err := os.WriteFile(other, []byte("someone else's\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	before := nginxtest.Tree(t, l.root)
	pki := newPKI(t, "127.0.0.1")
	if _, err := l.w.Write(Site{ServerName: "hack.example.org"}, pki.certPEM, pki.keyPEM, pki.caPEM); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(l.w.SSLDir, "thon-"+hash8("hack.example.org")+".pem")); err != nil {
		t.Error(err)
	}
	if _, err := l.w.Cleanup(); err != nil {
		t.Fatal(err)
	}
	if got := nginxtest.Tree(t, l.root); !maps.Equal(got, before) {
		t.Errorf("after cleanup\n got %v\nwant %v", got, before)
	}
}

func TestWriteGivenCertificatePaths(t *testing.T) {
	l := newLayout(t)
	site := Site{ServerName: "hack.example.org",
		CertFile: "/etc/letsencrypt/live/hack.example.org/fullchain.pem",
		KeyFile:  "/etc/letsencrypt/live/hack.example.org/privkey.pem"}
	res, err := l.w.Write(site, nil, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if res.CertFile != site.CertFile || res.KeyFile != site.KeyFile || res.CAFile != "" {
		t.Errorf("result %+v", res)
	}
	if _, err := os.Stat(l.w.SSLDir); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("ssl dir created without certificates to write: %v", err)
	}
	data, _ := os.ReadFile(res.ConfigPath)
	if !strings.Contains(string(data), "ssl_certificate "+site.CertFile+";") {
		t.Errorf("configuration:\n%s", data)
	}
}

func TestWriteRejectsBadInput(t *testing.T) {
	pki := newPKI(t, "127.0.0.1")
	other := newPKI(t, "127.0.0.1")
	good := Site{Sandboxes: []Location{{Port: 55001}}}
	tests := []struct {
		name                string
		site                Site
		mutate              func(*Writer)
		cert, key, ca       []byte
		field               string
		removeSitesEnabled  bool
		preexisting         string // a file at this path (relative to root) that thon did not write
		wantErrSubstring    string
		expectNonFieldError bool
	}{
		{name: "port 0", site: Site{Sandboxes: []Location{{Port: 0}}}, cert: pki.certPEM, key: pki.keyPEM, ca: pki.caPEM, field: "sandboxes[0].port"},
		{name: "semicolon in server name", site: Site{ServerName: "a;b"}, cert: pki.certPEM, key: pki.keyPEM, ca: pki.caPEM, field: "server_name"},
		{name: "key of another certificate", site: good, cert: pki.certPEM, key: other.keyPEM, field: "key_pem"},
		{name: "certificate without key", site: good, cert: pki.certPEM, field: "key_pem"},
		{name: "key without certificate", site: good, key: pki.keyPEM, field: "cert_pem"},
		{name: "garbage certificate", site: good, cert: []byte("not pem"), key: pki.keyPEM, field: "cert_pem"},
		{name: "key as certificate", site: good, cert: pki.keyPEM, key: pki.keyPEM, field: "cert_pem"},
		{name: "leaf as CA", site: good, cert: pki.certPEM, key: pki.keyPEM, ca: pki.certPEM, field: "ca_pem"},
		{name: "no certificate at all", site: good, field: "cert_file"},
		{name: "site named default", site: good, cert: pki.certPEM, key: pki.keyPEM, mutate: func(w *Writer) { w.Name = "default" }, field: "name"},
		{name: "unsafe site name", site: good, cert: pki.certPEM, key: pki.keyPEM, mutate: func(w *Writer) { w.Name = "../x" }, field: "name"},
		{name: "no sites-available", site: good, cert: pki.certPEM, key: pki.keyPEM, mutate: func(w *Writer) { w.SitesAvailable = "" }, field: "sites_available"},
		{name: "missing sites-enabled", site: good, cert: pki.certPEM, key: pki.keyPEM, removeSitesEnabled: true, field: "sites_enabled"},
		{name: "foreign config file", site: good, cert: pki.certPEM, key: pki.keyPEM, preexisting: "sites-available/sandbox-thon",
			expectNonFieldError: true, wantErrSubstring: "was not written by thon"},
		{name: "foreign enabled link", site: good, cert: pki.certPEM, key: pki.keyPEM, preexisting: "sites-enabled/sandbox-thon",
			expectNonFieldError: true, wantErrSubstring: "was not written by thon"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := newLayout(t)
			if tt.removeSitesEnabled {
				if err := os.RemoveAll(l.w.SitesEnabled); err != nil {
					t.Fatal(err)
				}
			}
			if tt.preexisting != "" {
				if err := os.WriteFile(filepath.Join(l.root, tt.preexisting), []byte("# the original thon's\n"), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			w := l.w
			if tt.mutate != nil {
				tt.mutate(&w)
			}
			before := nginxtest.Tree(t, l.root)
			_, err := w.Write(tt.site, tt.cert, tt.key, tt.ca)
			if err == nil {
				t.Fatal("accepted")
			}
			if tt.expectNonFieldError {
				if !strings.Contains(err.Error(), tt.wantErrSubstring) {
					t.Errorf("err = %v, want it to mention %q", err, tt.wantErrSubstring)
				}
			} else {
				var fe *FieldError
				if !errors.As(err, &fe) || fe.Field != tt.field {
					t.Errorf("err = %v, want a *FieldError for %q", err, tt.field)
				}
			}
			if got := nginxtest.Tree(t, l.root); !maps.Equal(got, before) {
				t.Errorf("files changed on rejected input\n got %v\nwant %v", got, before)
			}
		})
	}
}

func TestCleanupRefusesForeignManifestEntries(t *testing.T) {
	for _, tt := range []struct {
		name  string
		entry func(l layout) entry
	}{
		{"default site link", func(l layout) entry {
			return entry{Path: filepath.Join(l.w.SitesEnabled, "default"), Kind: kindSymlink}
		}},
		{"default site file", func(l layout) entry {
			return entry{Path: filepath.Join(l.w.SitesAvailable, "default"), Kind: kindFile}
		}},
		{"file elsewhere", func(l layout) entry {
			return entry{Path: filepath.Join(l.root, "elsewhere.txt"), Kind: kindFile}
		}},
		{"unclean path", func(l layout) entry {
			return entry{Path: l.w.SitesAvailable + "/../elsewhere.txt", Kind: kindFile}
		}},
		{"unrelated directory", func(l layout) entry {
			return entry{Path: filepath.Join(l.root, "other-dir"), Kind: kindDir}
		}},
		{"unknown kind", func(l layout) entry {
			return entry{Path: filepath.Join(l.w.SitesAvailable, "notes.txt"), Kind: "fifo"}
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			l := newLayout(t)
			if err := os.WriteFile(filepath.Join(l.root, "elsewhere.txt"), []byte("x"), 0o644); err != nil {
				t.Fatal(err)
			}
			if err := os.Mkdir(filepath.Join(l.root, "other-dir"), 0o755); err != nil {
				t.Fatal(err)
			}
			pki := newPKI(t, "127.0.0.1")
			if _, err := l.w.Write(Site{}, pki.certPEM, pki.keyPEM, nil); err != nil {
				t.Fatal(err)
			}
			w := l.w.withDefaults(t)
			m, _, err := w.readManifest()
			if err != nil {
				t.Fatal(err)
			}
			m.Entries = append(m.Entries, tt.entry(l))
			data, _ := json.Marshal(m)
			if err := os.WriteFile(w.Manifest, data, 0o644); err != nil {
				t.Fatal(err)
			}
			before := nginxtest.Tree(t, l.root)
			removed, err := l.w.Cleanup()
			if err == nil || !strings.Contains(err.Error(), "refusing to touch it") {
				t.Errorf("err = %v", err)
			}
			if len(removed) != 0 {
				t.Errorf("removed %q", removed)
			}
			if got := nginxtest.Tree(t, l.root); !maps.Equal(got, before) {
				t.Error("a refused cleanup changed files")
			}
			// Write refuses the manifest too.
			if _, err := l.w.Write(Site{}, pki.certPEM, pki.keyPEM, nil); err == nil {
				t.Error("Write accepted a foreign manifest")
			}
		})
	}
}

func TestCleanupLeavesReplacedPaths(t *testing.T) {
	l := newLayout(t)
	pki := newPKI(t, "127.0.0.1")
	res, err := l.w.Write(Site{}, pki.certPEM, pki.keyPEM, nil)
	if err != nil {
		t.Fatal(err)
	}
	// Someone replaced the link with a file of their own.
	if err := os.Remove(res.EnabledPath); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(res.EnabledPath, []byte("# mine now\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	removed, err := l.w.Cleanup()
	if err == nil || !strings.Contains(err.Error(), res.EnabledPath) {
		t.Errorf("err = %v, want it to name %s", err, res.EnabledPath)
	}
	if _, err := os.Stat(res.EnabledPath); err != nil {
		t.Errorf("replaced path removed: %v", err)
	}
	if slices.Contains(removed, res.EnabledPath) || !slices.Contains(removed, res.ConfigPath) {
		t.Errorf("removed %q", removed)
	}
	// The manifest keeps what was left.
	m, found, err := l.w.withDefaults(t).readManifest()
	if err != nil || !found || len(m.Entries) != 1 || m.Entries[0].Path != res.EnabledPath {
		t.Errorf("manifest after partial cleanup: %+v %v %v", m, found, err)
	}
}

func TestInspect(t *testing.T) {
	l := newLayout(t)
	st := Inspect(l.w, nginxtest.Bin)
	if !st.Installed || !regexp.MustCompile(`^\d+\.\d+\.\d+$`).MatchString(st.Version) {
		t.Errorf("installed %v version %q problems %q", st.Installed, st.Version, st.Problems)
	}
	if st.Written || st.Enabled || st.Sandboxes != 0 || !st.DefaultSiteEnabled {
		t.Errorf("before writing: %+v", st)
	}

	pki := newPKI(t, "127.0.0.1")
	site := Site{ServerName: "hack.example.org", Sandboxes: []Location{{Port: 55001}, {Port: 55002, Group: "g", User: "u"}}}
	res, err := l.w.Write(site, pki.certPEM, pki.keyPEM, pki.caPEM)
	if err != nil {
		t.Fatal(err)
	}
	st = Inspect(l.w, "")
	if !st.Written || !st.Enabled || st.Sandboxes != 2 || st.ServerName != "hack.example.org" ||
		st.ConfigPath != res.ConfigPath || len(st.Files) != 6 {
		t.Errorf("after writing: %+v", st)
	}
	if !st.DefaultSiteEnabled || len(st.Problems) != 1 || !strings.Contains(st.Problems[0], "sites-enabled/default") {
		t.Errorf("default site not reported: %+v", st)
	}

	st = Inspect(l.w, filepath.Join(l.root, "no-nginx"))
	if st.Installed || len(st.Problems) == 0 || !st.Written {
		t.Errorf("missing binary: %+v", st)
	}
}

// FuzzManifest feeds arbitrary manifests to the reader and the safety
// check Cleanup relies on: an accepted manifest names only files directly
// in the writer's directories, never "default", and only directories on
// the way to them.
func FuzzManifest(f *testing.F) {
	w := Writer{SitesAvailable: "/etc/nginx/sites-available", SitesEnabled: "/etc/nginx/sites-enabled", SSLDir: "/etc/nginx/ssl"}
	w, err := w.resolve()
	if err != nil {
		f.Fatal(err)
	}
	f.Add([]byte(`{"version":1,"server_name":"_","sandboxes":1,"entries":[{"path":"/etc/nginx/ssl","kind":"dir"},{"path":"/etc/nginx/sites-available/sandbox-thon","kind":"file"}]}`))
	f.Add([]byte(`{"version":1,"entries":[{"path":"/etc/nginx/sites-enabled/default","kind":"symlink"}]}`))
	f.Add([]byte(`{"version":1,"entries":[{"path":"/etc/passwd","kind":"file"}]}`))
	f.Add([]byte(`{"version":1,"entries":[{"path":"/etc","kind":"dir"},{"path":"/etc/nginx/ssl/../../passwd","kind":"file"}]}`))
	f.Add([]byte(`{"version":2}`))
	f.Add([]byte(`{"version":1,"extra":true}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := parseManifest(data)
		if err != nil {
			return
		}
		if m.Version != manifestVersion {
			t.Fatalf("accepted version %d", m.Version)
		}
		if err := w.checkEntries(m.Entries); err != nil {
			return
		}
		for _, e := range m.Entries {
			switch e.Kind {
			case kindFile, kindSymlink:
				dir, base := filepath.Split(e.Path)
				dir = strings.TrimSuffix(dir, "/")
				if dir != w.SitesAvailable && dir != w.SitesEnabled && dir != w.SSLDir {
					t.Fatalf("accepted %q outside the writer's directories", e.Path)
				}
				if base == "default" || base == "" || base == "." || base == ".." || e.Path == w.Manifest {
					t.Fatalf("accepted %q", e.Path)
				}
			case kindDir:
				if !strings.HasPrefix(w.SitesAvailable+"/", e.Path) && !strings.HasPrefix(w.SitesEnabled+"/", e.Path) &&
					!strings.HasPrefix(w.SSLDir+"/", e.Path) {
					t.Fatalf("accepted directory %q", e.Path)
				}
			default:
				t.Fatalf("accepted kind %q", e.Kind)
			}
		}
	})
}
