// Package atomicfile replaces files so that a reader sees the old content
// or the new one, never a part: the data goes to a temporary file in the
// same directory, is synced, and is renamed over the target. A write that
// fails leaves the old file as it was and no temporary file behind.
//
// The temporary file is 0600 while it is written, so a key is never
// readable by others, and its name starts with '.', which globs such as
// nginx's `include sites-enabled/*` do not match.
package atomicfile

import (
	"bytes"
	"crypto/rand"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
)

// Write replaces path with data and mode perm, unless path is a regular
// file that already holds exactly that. changed tells whether it wrote.
// The directory must exist.
func Write(path string, data []byte, perm fs.FileMode) (changed bool, err error) {
	if fi, err := os.Lstat(path); err == nil && fi.Mode().IsRegular() && fi.Mode().Perm() == perm.Perm() && same(path, data) {
		return false, nil
	}
	return true, write(path, data, perm.Perm(), -1, -1)
}

// Replace is Write keeping the mode and, when run as root, the owner of
// the file it replaces, so that the service reading it still can; perm
// is the mode of a file that does not exist yet. An existing file that
// holds data already is left alone, whatever its mode.
func Replace(path string, data []byte, perm fs.FileMode) (changed bool, err error) {
	uid, gid := -1, -1
	if fi, err := os.Stat(path); err == nil && fi.Mode().IsRegular() {
		if same(path, data) {
			return false, nil
		}
		perm = fi.Mode()
		if st, ok := fi.Sys().(*syscall.Stat_t); ok && os.Geteuid() == 0 {
			uid, gid = int(st.Uid), int(st.Gid)
		}
	}
	return true, write(path, data, perm.Perm(), uid, gid)
}

// Symlink points link at target by renaming a fresh symlink over it,
// unless it already points there. changed tells whether it did.
func Symlink(target, link string) (changed bool, err error) {
	if cur, err := os.Readlink(link); err == nil && cur == target {
		return false, nil
	}
	dir := filepath.Dir(link)
	tmp := filepath.Join(dir, "."+filepath.Base(link)+".tmp-"+rand.Text())
	if err := os.Symlink(target, tmp); err != nil {
		return false, fmt.Errorf("linking %s: %w", link, err)
	}
	if err := os.Rename(tmp, link); err != nil {
		os.Remove(tmp)
		return false, fmt.Errorf("linking %s: %w", link, err)
	}
	syncDir(dir)
	return true, nil
}

// same reports whether path holds exactly data.
func same(path string, data []byte) bool {
	cur, err := os.ReadFile(path)
	return err == nil && bytes.Equal(cur, data)
}

// write puts data at path through a synced temporary file renamed over
// it, with mode perm and, when uid is not negative, that owner.
func write(path string, data []byte, perm fs.FileMode, uid, gid int) (err error) {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*") // 0600
	if err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(tmp)
			err = fmt.Errorf("writing %s: %w", path, err)
		}
	}()
	if _, err := f.Write(data); err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return err
	}
	if uid >= 0 {
		if err := f.Chown(uid, gid); err != nil {
			return err
		}
	}
	// After the data and the owner: the file is only readable by others
	// once it holds what it should, by whom it should.
	if err := f.Chmod(perm); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	syncDir(dir)
	return nil
}

// syncDir makes a rename in dir durable; failure only costs durability.
func syncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
}
