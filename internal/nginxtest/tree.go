package nginxtest

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
)

// Tree describes every path under root, root included: a directory's
// mode, a file's mode and content, or a link's target. Two equal trees
// mean nothing changed on disk, so a test can check that cleanup removed
// exactly what was written.
func Tree(t testing.TB, root string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		switch {
		case fi.Mode()&fs.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			out[p] = "symlink -> " + target
		case fi.IsDir():
			out[p] = fmt.Sprintf("dir %v", fi.Mode().Perm())
		default:
			data, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			out[p] = fmt.Sprintf("file %v %q", fi.Mode().Perm(), data)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}
