package nginx

import (
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"

	"github.com/thon-dev/thon/internal/atomicfile"
)

// DefaultName is the site file name, the original's.
const DefaultName = "sandbox-thon"

// manifestName is the default manifest file, inside SitesAvailable (which
// nginx does not include).
const manifestName = ".thon-nginx-manifest.json"

// caName is the file name of the root CA in SSLDir.
const caName = "thon-ca.crt"

// Writer puts a site on disk in the Debian layout: the configuration in
// SitesAvailable/<Name>, a symlink to it in SitesEnabled, certificate files
// in SSLDir. Every path it creates is recorded in a manifest; Cleanup
// removes exactly those. Writer never touches a path it did not create, so
// it never replaces or removes the distribution's `default` site.
type Writer struct {
	SitesAvailable string // e.g. /etc/nginx/sites-available; must exist
	SitesEnabled   string // e.g. /etc/nginx/sites-enabled; must exist
	SSLDir         string // e.g. /etc/nginx/ssl; created when missing
	Name           string // the site file name; default "sandbox-thon"
	// Manifest is the path of the JSON record of what was written;
	// default <SitesAvailable>/.thon-nginx-manifest.json.
	Manifest string
}

// Result reports what Write did.
type Result struct {
	ConfigPath  string `json:"config_path"`
	EnabledPath string `json:"enabled_path"`
	CertFile    string `json:"cert_file"`
	KeyFile     string `json:"key_file"`
	CAFile      string `json:"ca_file,omitempty"`
	Manifest    string `json:"manifest"`
	// Written lists the paths created or replaced by this call.
	Written []string `json:"written,omitempty"`
	// Removed lists the paths of the previous write this one no longer
	// needs (a certificate for a former server name, say).
	Removed []string `json:"removed,omitempty"`
	// Unchanged is true when the files on disk already held this content.
	Unchanged bool `json:"unchanged"`
}

// resolve applies defaults, makes the directories absolute and checks
// the writer's fields.
func (w Writer) resolve() (Writer, error) {
	for _, d := range []struct {
		field string
		p     *string
	}{{"sites_available", &w.SitesAvailable}, {"sites_enabled", &w.SitesEnabled}, {"ssl_dir", &w.SSLDir}} {
		if *d.p == "" {
			return w, fieldErr(d.field, "required")
		}
		abs, err := filepath.Abs(*d.p)
		if err != nil {
			return w, fieldErr(d.field, "%v", err)
		}
		*d.p = abs
	}
	if w.Name == "" {
		w.Name = DefaultName
	}
	if msg := nameProblem(w.Name); msg != "" {
		return w, fieldErr("name", "%s", msg)
	}
	if w.Name == "default" {
		return w, fieldErr("name", `"default" is the distribution's site; choose another name`)
	}
	if w.Manifest == "" {
		w.Manifest = filepath.Join(w.SitesAvailable, manifestName)
	}
	abs, err := filepath.Abs(w.Manifest)
	if err != nil {
		return w, fieldErr("manifest", "%v", err)
	}
	w.Manifest = abs
	return w, nil
}

// ConfigPath is SitesAvailable/<Name>.
func (w Writer) configPath() string { return filepath.Join(w.SitesAvailable, w.Name) }

// enabledPath is SitesEnabled/<Name>.
func (w Writer) enabledPath() string { return filepath.Join(w.SitesEnabled, w.Name) }

// item is one path Write puts on disk.
type item struct {
	path   string
	kind   string // kindFile or kindSymlink
	data   []byte
	mode   fs.FileMode
	target string
}

// Write renders s and puts it on disk. With certPEM and keyPEM (a matching
// PEM certificate chain and private key), it writes them into SSLDir as
// thon-<sha256(name)[:8]>.pem and -key.pem (the key 0600), name being the
// server name or, for "_", s.ExternalIP ("thon.pem" with neither, as the
// original), and points the site at them; without them, s.CertFile and
// s.KeyFile must name existing files (ACME, say). With caPEM it writes
// SSLDir/thon-ca.crt and serves it at /ca.crt. Files are replaced
// atomically (a temporary file renamed over the old one).
//
// Invalid input, or a target path that exists but was not written by thon,
// returns an error before anything is written.
func (w Writer) Write(s Site, certPEM, keyPEM, caPEM []byte) (Result, error) {
	w, err := w.resolve()
	if err != nil {
		return Result{}, err
	}
	var items []item
	if len(certPEM) > 0 || len(keyPEM) > 0 {
		if err := checkKeyPair(certPEM, keyPEM); err != nil {
			return Result{}, err
		}
		base := certBase(s)
		s.CertFile = filepath.Join(w.SSLDir, base+".pem")
		s.KeyFile = filepath.Join(w.SSLDir, base+"-key.pem")
		items = append(items,
			item{path: s.CertFile, kind: kindFile, data: certPEM, mode: 0o644},
			item{path: s.KeyFile, kind: kindFile, data: keyPEM, mode: 0o600})
	}
	if len(caPEM) > 0 {
		if err := checkCA(caPEM); err != nil {
			return Result{}, err
		}
		s.CAFile = filepath.Join(w.SSLDir, caName)
		items = append(items, item{path: s.CAFile, kind: kindFile, data: caPEM, mode: 0o644})
	}
	conf, err := Render(s)
	if err != nil {
		return Result{}, err
	}
	norm, _ := s.normalized() // valid: Render accepted it
	items = append(items,
		item{path: w.configPath(), kind: kindFile, data: conf, mode: 0o644},
		item{path: w.enabledPath(), kind: kindSymlink, target: w.configPath()})

	for _, d := range []struct{ field, dir string }{{"sites_available", w.SitesAvailable}, {"sites_enabled", w.SitesEnabled}} {
		fi, err := os.Stat(d.dir)
		if err != nil {
			return Result{}, fieldErr(d.field, "%v (is nginx installed with the Debian layout?)", err)
		}
		if !fi.IsDir() {
			return Result{}, fieldErr(d.field, "%s is not a directory", d.dir)
		}
	}
	old, _, err := w.readManifest()
	if err != nil {
		return Result{}, err
	}
	if err := w.checkEntries(old.Entries); err != nil {
		return Result{}, err
	}
	owned := make(map[string]bool, len(old.Entries))
	for _, e := range old.Entries {
		owned[e.Path] = true
	}
	for _, it := range items {
		fi, err := os.Lstat(it.path)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return Result{}, err
		}
		if !owned[it.path] {
			return Result{}, fmt.Errorf("%s exists and was not written by thon (not in %s); move it away or choose another name", it.path, w.Manifest)
		}
		if k := kindOf(fi); k != it.kind {
			return Result{}, fmt.Errorf("%s is a %s, thon wrote a %s there; move it away", it.path, k, it.kind)
		}
	}

	// Every check passed: from here on, things change on disk.
	res := Result{
		ConfigPath: w.configPath(), EnabledPath: w.enabledPath(),
		CertFile: s.CertFile, KeyFile: s.KeyFile, CAFile: s.CAFile,
		Manifest: w.Manifest,
	}
	var dirs []string
	for _, e := range old.Entries {
		if e.Kind == kindDir {
			dirs = append(dirs, e.Path)
		}
	}
	mkdirs := []string{filepath.Dir(w.Manifest)}
	if len(certPEM) > 0 || len(caPEM) > 0 {
		mkdirs = append(mkdirs, w.SSLDir)
	}
	for _, d := range mkdirs {
		created, err := mkdirAll(d)
		dirs = append(dirs, created...)
		res.Written = append(res.Written, created...)
		if err != nil {
			// Record the directories made so far, so Cleanup finds them.
			_ = w.updateManifest(union(old.Entries, dirEntries(created)), norm)
			return res, err
		}
	}
	next := dirEntries(dirs)
	for _, it := range items {
		next = append(next, entry{Path: it.path, Kind: it.kind})
	}
	// Record the new paths before creating them, so a write that stops
	// half way is still cleaned up.
	if err := w.updateManifest(union(old.Entries, next), norm); err != nil {
		return res, err
	}
	for _, it := range items {
		var changed bool
		var err error
		if it.kind == kindSymlink {
			changed, err = atomicfile.Symlink(it.target, it.path)
		} else {
			changed, err = atomicfile.Write(it.path, it.data, it.mode)
		}
		if err != nil {
			return res, err
		}
		if changed {
			res.Written = append(res.Written, it.path)
		}
	}
	keep := make(map[string]bool, len(next))
	for _, e := range next {
		keep[e.Path] = true
	}
	for _, e := range old.Entries {
		if keep[e.Path] {
			continue
		}
		if err := os.Remove(e.Path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return res, fmt.Errorf("removing %s, no longer needed: %w", e.Path, err)
		}
		res.Removed = append(res.Removed, e.Path)
	}
	if err := w.updateManifest(next, norm); err != nil {
		return res, err
	}
	res.Unchanged = len(res.Written) == 0 && len(res.Removed) == 0
	return res, nil
}

// certBase is the certificate file name stem, as the original named it.
func certBase(s Site) string {
	name := s.ServerName
	if name == "" || name == "_" {
		name = s.ExternalIP
	}
	if name == "" {
		return "thon"
	}
	sum := sha256.Sum256([]byte(name))
	return "thon-" + hex.EncodeToString(sum[:])[:8]
}

// checkKeyPair requires a PEM certificate chain and the private key of its
// first certificate.
func checkKeyPair(certPEM, keyPEM []byte) error {
	if len(certPEM) == 0 {
		return fieldErr("cert_pem", "required with key_pem")
	}
	if len(keyPEM) == 0 {
		return fieldErr("key_pem", "required with cert_pem")
	}
	if _, err := parseCerts(certPEM); err != nil {
		return fieldErr("cert_pem", "%v", err)
	}
	if _, err := tls.X509KeyPair(certPEM, keyPEM); err != nil {
		return fieldErr("key_pem", "not the private key of cert_pem: %v", err)
	}
	return nil
}

// checkCA requires PEM CA certificates.
func checkCA(caPEM []byte) error {
	certs, err := parseCerts(caPEM)
	if err != nil {
		return fieldErr("ca_pem", "%v", err)
	}
	for i, c := range certs {
		if !c.IsCA {
			return fieldErr("ca_pem", "certificate %d (%s) is not a CA certificate", i+1, c.Subject)
		}
	}
	return nil
}

// parseCerts parses PEM data holding only certificates, at least one.
func parseCerts(data []byte) ([]*x509.Certificate, error) {
	var certs []*x509.Certificate
	for rest := data; ; {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			if len(certs) == 0 {
				return nil, errors.New("no PEM certificate found")
			}
			return certs, nil
		}
		if b.Type != "CERTIFICATE" {
			return nil, fmt.Errorf("PEM block %d is a %q, want CERTIFICATE", len(certs)+1, b.Type)
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, fmt.Errorf("certificate %d: %w", len(certs)+1, err)
		}
		certs = append(certs, c)
	}
}

// union returns the entries of a, then those of b not in a.
func union(a, b []entry) []entry {
	out := slices.Clone(a)
	for _, e := range b {
		if !slices.ContainsFunc(out, func(x entry) bool { return x.Path == e.Path }) {
			out = append(out, e)
		}
	}
	return out
}

func dirEntries(dirs []string) []entry {
	out := make([]entry, 0, len(dirs))
	for _, d := range dirs {
		out = append(out, entry{Path: d, Kind: kindDir})
	}
	return out
}
