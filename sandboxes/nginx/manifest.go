package nginx

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/thon-dev/thon/internal/atomicfile"
)

// manifestVersion is the format version of the manifest file.
const manifestVersion = 1

// Kinds of manifest entries.
const (
	kindFile    = "file"
	kindSymlink = "symlink"
	kindDir     = "dir"
)

// manifest records what Write put on disk.
type manifest struct {
	Version    int     `json:"version"`
	ServerName string  `json:"server_name"`
	Sandboxes  int     `json:"sandboxes"`
	Entries    []entry `json:"entries"`
}

// entry is one path thon created.
type entry struct {
	Path string `json:"path"`
	Kind string `json:"kind"`
}

// readManifest reads w.Manifest; found is false when it does not exist.
func (w Writer) readManifest() (m manifest, found bool, err error) {
	data, err := os.ReadFile(w.Manifest)
	if errors.Is(err, fs.ErrNotExist) {
		return manifest{}, false, nil
	}
	if err != nil {
		return manifest{}, false, fmt.Errorf("reading manifest: %w", err)
	}
	m, err = parseManifest(data)
	if err != nil {
		return manifest{}, true, fmt.Errorf("manifest %s: %w", w.Manifest, err)
	}
	return m, true, nil
}

// parseManifest decodes a manifest, refusing unknown fields and versions.
func parseManifest(data []byte) (manifest, error) {
	var m manifest
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&m); err != nil {
		return manifest{}, err
	}
	if dec.More() {
		return manifest{}, errors.New("data after the JSON object")
	}
	if m.Version != manifestVersion {
		return manifest{}, fmt.Errorf("version: %d is not supported (want %d)", m.Version, manifestVersion)
	}
	return m, nil
}

// updateManifest writes the manifest, unless it already holds this.
func (w Writer) updateManifest(entries []entry, s Site) error {
	m := manifest{Version: manifestVersion, ServerName: s.ServerName, Sandboxes: len(s.Sandboxes), Entries: entries}
	data, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return err
	}
	_, err = atomicfile.Write(w.Manifest, append(data, '\n'), 0o644)
	return err
}

// checkEntries refuses a manifest naming paths Write could not have
// created: files and links must sit directly in SitesAvailable,
// SitesEnabled or SSLDir and not be named "default" nor be the manifest;
// directories must be one of those or the manifest's, or an ancestor.
// A hand-edited manifest thus cannot make Cleanup remove anything else.
func (w Writer) checkEntries(entries []entry) error {
	dirs := []string{w.SitesAvailable, w.SitesEnabled, w.SSLDir}
	parents := append(slices.Clone(dirs), filepath.Dir(w.Manifest))
	for i, e := range entries {
		bad := func(why string) error {
			return fmt.Errorf("manifest %s: entries[%d] %q: %s; refusing to touch it", w.Manifest, i, e.Path, why)
		}
		if !filepath.IsAbs(e.Path) || filepath.Clean(e.Path) != e.Path {
			return bad("not a clean absolute path")
		}
		switch e.Kind {
		case kindFile, kindSymlink:
			if !slices.Contains(dirs, filepath.Dir(e.Path)) {
				return bad("not inside sites_available, sites_enabled or ssl_dir")
			}
			if base := filepath.Base(e.Path); base == "default" {
				return bad(`"default" is the distribution's site`)
			}
			if e.Path == w.Manifest {
				return bad("the manifest itself")
			}
		case kindDir:
			ok := false
			for _, d := range parents {
				if d == e.Path || strings.HasPrefix(d, e.Path+string(filepath.Separator)) {
					ok = true
				}
			}
			if !ok {
				return bad("not sites_available, sites_enabled, ssl_dir or a parent of one")
			}
		default:
			return bad(fmt.Sprintf("unknown kind %q", e.Kind))
		}
	}
	return nil
}

// Cleanup removes exactly the paths recorded in the manifest, then the
// manifest, and returns what it removed. Files and links are removed only
// when still of the recorded kind; directories only when empty. A manifest
// naming any path Write could not have created is refused as a whole.
// Without a manifest, Cleanup does nothing.
func (w Writer) Cleanup() (removed []string, err error) {
	w, err = w.resolve()
	if err != nil {
		return nil, err
	}
	m, found, err := w.readManifest()
	if err != nil || !found {
		return nil, err
	}
	if err := w.checkEntries(m.Entries); err != nil {
		return nil, err
	}
	var errs []error
	var left, dirs []entry
	for _, e := range m.Entries {
		if e.Kind == kindDir {
			dirs = append(dirs, e)
			continue
		}
		fi, err := os.Lstat(e.Path)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err == nil && kindOf(fi) != e.Kind {
			err = fmt.Errorf("left %s: it is now a %s, thon wrote a %s", e.Path, kindOf(fi), e.Kind)
		} else if err == nil {
			err = os.Remove(e.Path)
		}
		if err != nil {
			errs = append(errs, err)
			left = append(left, e)
			continue
		}
		removed = append(removed, e.Path)
	}
	// Deepest first, so a parent is empty when its turn comes.
	slices.SortStableFunc(dirs, func(a, b entry) int { return len(b.Path) - len(a.Path) })
	for _, e := range dirs {
		fi, err := os.Lstat(e.Path)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil || !fi.IsDir() {
			continue // replaced by something else: not ours any more
		}
		entries, err := os.ReadDir(e.Path)
		if err != nil {
			errs = append(errs, err)
			left = append(left, e)
			continue
		}
		if len(entries) > 0 {
			continue // holds files thon did not write: leave it
		}
		if err := os.Remove(e.Path); err != nil {
			errs = append(errs, err)
			left = append(left, e)
			continue
		}
		removed = append(removed, e.Path)
	}
	if len(errs) > 0 {
		m.Entries = left
		data, merr := json.MarshalIndent(m, "", "  ")
		if merr == nil {
			_, merr = atomicfile.Write(w.Manifest, append(data, '\n'), 0o644)
		}
		return removed, errors.Join(append(errs, merr)...)
	}
	if err := os.Remove(w.Manifest); err != nil {
		return removed, err
	}
	return append(removed, w.Manifest), nil
}

// kindOf names the kind of a file as the manifest does.
func kindOf(fi fs.FileInfo) string {
	switch {
	case fi.Mode()&fs.ModeSymlink != 0:
		return kindSymlink
	case fi.IsDir():
		return kindDir
	case fi.Mode().IsRegular():
		return kindFile
	default:
		return "special file"
	}
}
