package nginx

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
)

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
