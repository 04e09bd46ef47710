package nginx

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/thon-dev/thon/internal/atomicfile"
	"github.com/thon-dev/thon/sandboxes"
)

// Options configure an Apply or a Cleanup: where the site goes, the
// nginx that checks and loads it, and the server block.
type Options struct {
	// Writer puts the site on disk; SitesAvailable and SitesEnabled must
	// exist.
	Writer Writer
	// Bin is the nginx executable; empty finds it (Binary).
	Bin string
	// Conf is the main configuration file given to nginx -t and
	// nginx -s reload with -c; empty means nginx's default.
	Conf string
	// Site is the server block without its sandboxes: server name,
	// external IP, listen address and ports and, when Certificate is nil,
	// the certificate and key files to use as they are (from ACME, say).
	Site Site
	// Certificate returns the certificate for names (IP addresses and
	// domain names) with its key and the root CA, all PEM. current is what
	// the previous write left on disk (empty parts when there is none), so
	// it can be kept while still good. Nil means Site.CertFile and
	// Site.KeyFile.
	Certificate func(ctx context.Context, names []string, current KeyPair) (KeyPair, error)
	// NoTest skips nginx -t, for files written where nginx does not look.
	NoTest bool
	// NoReload skips nginx -s reload.
	NoReload bool
}

// KeyPair is a certificate chain, its private key and the root CA that
// issued it, PEM encoded.
type KeyPair struct {
	Cert []byte
	Key  []byte
	CA   []byte
}

// Applied is what Apply did: what was written, for how many sandboxes,
// and whether nginx checked and loaded it.
type Applied struct {
	Result    Result `json:"result"`
	Sandboxes int    `json:"sandboxes"`
	Tested    bool   `json:"tested"`
	// Reloaded is false when nothing changed on disk: nginx runs the
	// configuration already.
	Reloaded bool `json:"reloaded"`
}

// Cleaned is what Cleanup did.
type Cleaned struct {
	Removed  []string `json:"removed"`
	Tested   bool     `json:"tested"`
	Reloaded bool     `json:"reloaded"`
}

// StepError is nginx refusing a configuration (Step "test") or failing
// to load it (Step "reload").
type StepError struct {
	Step string
	Err  error
	// Restored tells, for a refused configuration, that the files of the
	// previous write were put back; RestoreErr says why not otherwise.
	Restored   bool
	RestoreErr error
}

func (e *StepError) Error() string {
	switch {
	case e.Step == "reload":
		return fmt.Sprintf("the files were written and passed nginx -t, but reloading nginx failed: %v", e.Err)
	case e.Restored:
		return fmt.Sprintf("nginx -t rejected the configuration; the previous files were put back and nginx was not reloaded: %v", e.Err)
	case e.RestoreErr != nil:
		return fmt.Sprintf("nginx -t rejected the configuration, and putting the previous files back failed (%v); nginx was not reloaded: %v", e.RestoreErr, e.Err)
	default:
		return fmt.Sprintf("nginx -t rejected the configuration: %v", e.Err)
	}
}

func (e *StepError) Unwrap() error { return e.Err }

// Error is a failure of Apply or Cleanup other than nginx's own (those
// are *StepError): a site that cannot be rendered from the options (a
// *FieldError inside), a file in the way, no certificate. Its message is
// Err's, which says what to fix.
type Error struct {
	Err error
}

func (e *Error) Error() string { return e.Err.Error() }

func (e *Error) Unwrap() error { return e.Err }

// Applier writes and removes the site, one operation at a time. Its zero
// value is ready; every face writing the same files in a process must
// share one (the thon app keeps one across config reloads).
type Applier struct {
	mu sync.Mutex
}

// commandTimeout bounds nginx -t and nginx -s reload.
const commandTimeout = time.Minute

// Locations returns the nginx locations of the sandboxes that are not
// terminated and have a port.
func Locations(list []sandboxes.Instance) []Location {
	var locs []Location
	for _, in := range list {
		if in.State == sandboxes.StateTerminated || in.Port <= 0 {
			continue
		}
		locs = append(locs, Location{Port: in.Port, Group: in.Group, User: in.User})
	}
	return locs
}

// Apply writes the site of o for the sandboxes locs, checks nginx's
// whole configuration with nginx -t and reloads nginx when something
// changed. When nginx -t refuses it, the files of the previous write are
// put back, so nginx's configuration on disk stays loadable. Errors are a
// *StepError (nginx refused or failed) or an *Error.
func (a *Applier) Apply(ctx context.Context, o Options, locs []Location) (Applied, error) {
	a.mu.Lock()
	defer a.mu.Unlock()

	site := o.Site
	site.Sandboxes = locs
	out := Applied{Sandboxes: len(locs)}
	var before Status
	if o.Certificate != nil || !o.NoTest {
		before = Inspect(o.Writer, o.Bin)
	}
	var kp KeyPair
	if o.Certificate != nil {
		names := certificateNames(site)
		if len(names) == 0 {
			return out, &Error{errors.New("external_ip or domain is required to issue the site's certificate")}
		}
		var err error
		kp, err = o.Certificate(ctx, names, currentKeyPair(o.Writer, before.Files))
		if err != nil {
			return out, &Error{fmt.Errorf("certificate: %w", err)}
		}
	}
	var snap *snapshot
	if !o.NoTest {
		snap = takeSnapshot(before)
	}
	res, err := o.Writer.Write(site, kp.Cert, kp.Key, kp.CA)
	out.Result = res
	if err != nil {
		if snap != nil && len(res.Written)+len(res.Removed) > 0 {
			if rerr := snap.restore(res); rerr != nil {
				err = errors.Join(err, fmt.Errorf("putting the previous files back: %w", rerr))
			}
		}
		return out, &Error{err}
	}
	if !o.NoTest {
		if err := runNginx(ctx, func(ctx context.Context) error { return Test(ctx, o.Bin, o.Conf) }); err != nil {
			rerr := snap.restore(res)
			return out, &StepError{Step: "test", Err: err, Restored: rerr == nil, RestoreErr: rerr}
		}
		out.Tested = true
	}
	if !o.NoReload && !res.Unchanged {
		if err := reload(ctx, o); err != nil {
			return out, err
		}
		out.Reloaded = true
	}
	return out, nil
}

// Cleanup removes exactly what Apply wrote, then checks and reloads
// nginx so that it stops serving the site. Errors are a *StepError or an
// *Error.
func (a *Applier) Cleanup(ctx context.Context, o Options) (Cleaned, error) {
	a.mu.Lock()
	defer a.mu.Unlock()

	removed, err := o.Writer.Cleanup()
	out := Cleaned{Removed: removed}
	if out.Removed == nil {
		out.Removed = []string{}
	}
	if err != nil {
		return out, &Error{err}
	}
	if len(removed) == 0 {
		return out, nil
	}
	if !o.NoTest {
		if err := runNginx(ctx, func(ctx context.Context) error { return Test(ctx, o.Bin, o.Conf) }); err != nil {
			return out, &StepError{Step: "test", Err: err}
		}
		out.Tested = true
	}
	if !o.NoReload {
		if err := reload(ctx, o); err != nil {
			return out, err
		}
		out.Reloaded = true
	}
	return out, nil
}

// reload runs nginx -s reload with o's main configuration.
func reload(ctx context.Context, o Options) error {
	var args []string
	if o.Conf != "" {
		args = []string{"-c", o.Conf}
	}
	err := runNginx(ctx, func(ctx context.Context) error { return Reload(ctx, o.Bin, args...) })
	if err != nil {
		return &StepError{Step: "reload", Err: err}
	}
	return nil
}

func runNginx(ctx context.Context, f func(context.Context) error) error {
	ctx, cancel := context.WithTimeout(ctx, commandTimeout)
	defer cancel()
	return f(ctx)
}

// certificateNames are the names the site's certificate must cover: its
// external IP and its server name, unless that is the catch-all "_".
func certificateNames(s Site) []string {
	var names []string
	if s.ExternalIP != "" {
		names = append(names, s.ExternalIP)
	}
	if s.ServerName != "" && s.ServerName != "_" {
		names = append(names, strings.Trim(s.ServerName, "[]"))
	}
	return names
}

// currentKeyPair reads the certificate, key and CA files of the previous
// write, recorded in files (the manifest's paths). Parts that are missing
// stay empty.
func currentKeyPair(w Writer, files []string) KeyPair {
	var kp KeyPair
	ssl, err := filepath.Abs(w.SSLDir)
	if err != nil {
		return kp
	}
	for _, p := range files {
		if filepath.Dir(p) != ssl {
			continue
		}
		var dst *[]byte
		switch name := filepath.Base(p); {
		case strings.HasSuffix(name, "-key.pem"):
			dst = &kp.Key
		case strings.HasSuffix(name, ".pem"):
			dst = &kp.Cert
		case strings.HasSuffix(name, ".crt"):
			dst = &kp.CA
		default:
			continue
		}
		if data, err := os.ReadFile(p); err == nil {
			*dst = data
		}
	}
	return kp
}

// snapshot is what a previous write left on disk: the content of every
// file and link its manifest records, and the manifest itself.
type snapshot struct {
	manifest string
	files    map[string]savedFile
}

// savedFile is a path as it was: a file with its mode and content, a
// symlink with its target, a directory, or nothing.
type savedFile struct {
	exists bool
	dir    bool
	mode   fs.FileMode
	data   []byte
	link   string
}

func takeSnapshot(st Status) *snapshot {
	s := &snapshot{manifest: st.ManifestPath, files: map[string]savedFile{}}
	paths := st.Files
	if st.ManifestPath != "" {
		paths = append(slices.Clone(paths), st.ManifestPath)
	}
	for _, p := range paths {
		fi, err := os.Lstat(p)
		if err != nil {
			s.files[p] = savedFile{}
			continue
		}
		f := savedFile{exists: true, mode: fi.Mode().Perm()}
		switch {
		case fi.Mode()&fs.ModeSymlink != 0:
			f.link, err = os.Readlink(p)
		case fi.IsDir():
			f.dir = true
		default:
			f.data, err = os.ReadFile(p)
		}
		if err != nil {
			continue // unreadable: not restorable, and not touched
		}
		s.files[p] = f
	}
	return s
}

// restore undoes res: paths it created are removed (directories only when
// empty), paths it replaced or removed get their saved content back, and
// so does the manifest.
func (s *snapshot) restore(res Result) error {
	var errs []error
	var dirs []string
	for _, p := range append(slices.Clone(res.Written), res.Removed...) {
		f, saved := s.files[p]
		if saved && f.exists {
			if !f.dir {
				errs = append(errs, f.put(p))
			}
			continue
		}
		fi, err := os.Lstat(p)
		switch {
		case errors.Is(err, fs.ErrNotExist):
		case err != nil:
			errs = append(errs, err)
		case fi.IsDir():
			dirs = append(dirs, p)
		default:
			errs = append(errs, os.Remove(p))
		}
	}
	// Deepest first, so that a parent is empty when its turn comes.
	slices.SortFunc(dirs, func(a, b string) int { return len(b) - len(a) })
	for _, d := range dirs {
		errs = append(errs, os.Remove(d))
	}
	if s.manifest != "" {
		if f := s.files[s.manifest]; f.exists {
			errs = append(errs, f.put(s.manifest))
		} else if err := os.Remove(s.manifest); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// put puts f back at p, atomically.
func (f savedFile) put(p string) error {
	var err error
	if f.link != "" {
		_, err = atomicfile.Symlink(f.link, p)
	} else {
		_, err = atomicfile.Write(p, f.data, f.mode)
	}
	return err
}
