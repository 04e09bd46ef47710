package nginx

import (
	"bytes"
	"crypto/rand"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
)

// writeFileAtomic replaces path with data and mode through a temporary
// file in the same directory, renamed over it, unless path already holds
// exactly that. The temporary name starts with '.', which nginx's
// `include dir/*` does not match.
func writeFileAtomic(path string, data []byte, mode fs.FileMode) (changed bool, err error) {
	if fi, err := os.Lstat(path); err == nil && fi.Mode().IsRegular() && fi.Mode().Perm() == mode {
		if cur, err := os.ReadFile(path); err == nil && bytes.Equal(cur, data) {
			return false, nil
		}
	}
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return false, err
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			os.Remove(tmp)
		}
	}()
	// CreateTemp makes the file 0600, so a key is never readable by others.
	if err := f.Chmod(mode); err != nil {
		f.Close()
		return false, err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return false, err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return false, err
	}
	if err := f.Close(); err != nil {
		return false, err
	}
	if err := os.Rename(tmp, path); err != nil {
		return false, err
	}
	syncDir(dir)
	return true, nil
}

// symlinkAtomic points link at target by renaming a fresh symlink over
// it, unless it already points there.
func symlinkAtomic(target, link string) (changed bool, err error) {
	if cur, err := os.Readlink(link); err == nil && cur == target {
		return false, nil
	}
	dir := filepath.Dir(link)
	tmp := filepath.Join(dir, "."+filepath.Base(link)+".tmp-"+rand.Text())
	if err := os.Symlink(target, tmp); err != nil {
		return false, err
	}
	if err := os.Rename(tmp, link); err != nil {
		os.Remove(tmp)
		return false, err
	}
	syncDir(dir)
	return true, nil
}

// syncDir makes a rename in dir durable; failure only costs durability.
func syncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
}

// mkdirAll creates dir and its missing parents (0755: nginx workers read
// the CA file served at /ca.crt) and returns the ones it created, parents
// first.
func mkdirAll(dir string) (created []string, err error) {
	var missing []string
	for d := dir; ; d = filepath.Dir(d) {
		_, err := os.Lstat(d)
		if err == nil {
			break
		}
		if !errors.Is(err, fs.ErrNotExist) {
			return nil, err
		}
		missing = append(missing, d)
		if filepath.Dir(d) == d {
			break
		}
	}
	for i := len(missing) - 1; i >= 0; i-- {
		if err := os.Mkdir(missing[i], 0o755); err != nil {
			if errors.Is(err, fs.ErrExist) {
				continue // made meanwhile by someone else: not ours
			}
			return created, err
		}
		created = append(created, missing[i])
		if err := os.Chmod(missing[i], 0o755); err != nil { // whatever the umask
			return created, err
		}
	}
	return created, nil
}
