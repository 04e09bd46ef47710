package atomicfile

import (
	"bytes"
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// dirNames lists the names in dir.
func dirNames(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}

func TestWrite(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "key.pem")

	changed, err := Write(p, []byte("one"), 0o640)
	if err != nil || !changed {
		t.Fatalf("first write: changed %t, %v", changed, err)
	}
	fi, err := os.Stat(p)
	if err != nil || fi.Mode().Perm() != 0o640 {
		t.Fatalf("mode after the first write: %v %v", fi.Mode(), err)
	}
	if b, _ := os.ReadFile(p); string(b) != "one" {
		t.Errorf("content %q", b)
	}

	// The same content and mode: nothing is written, the file is the same.
	changed, err = Write(p, []byte("one"), 0o640)
	if err != nil || changed {
		t.Errorf("same write: changed %t, %v", changed, err)
	}
	if again, _ := os.Stat(p); !os.SameFile(fi, again) {
		t.Error("an unchanged write replaced the file")
	}

	// Another mode with the same content is a change.
	changed, err = Write(p, []byte("one"), 0o600)
	if err != nil || !changed {
		t.Errorf("new mode: changed %t, %v", changed, err)
	}
	if fi, _ := os.Stat(p); fi.Mode().Perm() != 0o600 {
		t.Errorf("mode %v, want 0600", fi.Mode())
	}

	changed, err = Write(p, []byte("two"), 0o600)
	if err != nil || !changed {
		t.Errorf("new content: changed %t, %v", changed, err)
	}
	if b, _ := os.ReadFile(p); string(b) != "two" {
		t.Errorf("content %q, want two", b)
	}
	if names := dirNames(t, dir); len(names) != 1 || names[0] != "key.pem" {
		t.Errorf("directory holds %v, want only key.pem", names)
	}

	// A symlink at the path is replaced by a file, not followed.
	target := filepath.Join(dir, "target")
	if err := os.WriteFile(target, []byte("target"), 0o644); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "link")
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
	if _, err := Write(link, []byte("target"), 0o644); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Lstat(link); err != nil || !fi.Mode().IsRegular() {
		t.Errorf("link after a write: %v %v", fi.Mode(), err)
	}

	// No directory: an error naming the path.
	missing := filepath.Join(dir, "nope", "f")
	if _, err := Write(missing, []byte("x"), 0o644); !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), missing) {
		t.Errorf("write into a missing directory: %v", err)
	}
}

// TestWriteFailureKeepsOld has a write fail half way, in a child process
// whose file size limit (RLIMIT_FSIZE) is below the new content: the
// kernel refuses the data after the first bytes. The old file keeps its
// content and mode, and no temporary file is left.
func TestWriteFailureKeepsOld(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "config.json")
	old := []byte(`{"old": true}`)
	if err := os.WriteFile(p, old, 0o640); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, 0o640); err != nil {
		t.Fatal(err)
	}
	for _, fn := range []string{"write", "replace"} {
		cmd := exec.Command(os.Args[0], "-test.run=^TestHelperLimitedWrite$")
		cmd.Env = append(os.Environ(), "ATOMICFILE_HELPER_PATH="+p, "ATOMICFILE_HELPER_FUNC="+fn)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("%s: helper: %v\n%s", fn, err, out)
		}
		if !strings.Contains(string(out), "helper error: writing "+p+": ") || !strings.Contains(string(out), "file too large") {
			t.Errorf("%s: helper output:\n%s", fn, out)
		}
		if b, err := os.ReadFile(p); err != nil || !bytes.Equal(b, old) {
			t.Errorf("%s: after a failed write the file holds %q (%v), want %q", fn, b, err, old)
		}
		if fi, _ := os.Stat(p); fi.Mode().Perm() != 0o640 {
			t.Errorf("%s: mode after a failed write %v", fn, fi.Mode())
		}
		if names := dirNames(t, dir); len(names) != 1 {
			t.Errorf("%s: directory holds %v after a failed write, want only config.json", fn, names)
		}
	}
}

// TestHelperLimitedWrite is the child of TestWriteFailureKeepsOld: it
// lowers its file size limit to 16 bytes and writes 64 KiB.
func TestHelperLimitedWrite(t *testing.T) {
	p := os.Getenv("ATOMICFILE_HELPER_PATH")
	if p == "" {
		return // run directly: nothing to do
	}
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_FSIZE, &lim); err != nil {
		t.Fatal(err)
	}
	lim.Cur = 16
	if err := syscall.Setrlimit(syscall.RLIMIT_FSIZE, &lim); err != nil {
		t.Fatal(err)
	}
	data := bytes.Repeat([]byte("x"), 64<<10)
	var err error
	if os.Getenv("ATOMICFILE_HELPER_FUNC") == "replace" {
		_, err = Replace(p, data, 0o644)
	} else {
		_, err = Write(p, data, 0o644)
	}
	if err == nil {
		t.Fatal("a write beyond the file size limit succeeded")
	}
	os.Stdout.WriteString("helper error: " + err.Error() + "\n")
}

// TestRenameFailure: when the rename fails (a directory is in the way),
// the directory is left as it was and no temporary file remains.
func TestRenameFailure(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "site")
	if err := os.MkdirAll(filepath.Join(p, "inside"), 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := Write(p, []byte("x"), 0o644); err == nil || !strings.Contains(err.Error(), "writing "+p) {
		t.Errorf("write over a directory: %v", err)
	}
	if names := dirNames(t, dir); len(names) != 1 || names[0] != "site" {
		t.Errorf("directory holds %v, want only site", names)
	}
	if fi, err := os.Stat(filepath.Join(p, "inside")); err != nil || !fi.IsDir() {
		t.Errorf("the directory in the way changed: %v", err)
	}
}

func TestReplaceKeepsModeAndOwner(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "recipe_options.json")

	// A new file gets perm.
	if changed, err := Replace(p, []byte("one"), 0o644); err != nil || !changed {
		t.Fatalf("new file: %t %v", changed, err)
	}
	if fi, _ := os.Stat(p); fi.Mode().Perm() != 0o644 {
		t.Errorf("new file mode %v", fi.Mode())
	}

	if err := os.Chmod(p, 0o640); err != nil {
		t.Fatal(err)
	}
	root := os.Geteuid() == 0
	const uid, gid = 12345, 23456
	if root {
		if err := os.Chown(p, uid, gid); err != nil {
			t.Fatal(err)
		}
	}
	if changed, err := Replace(p, []byte("two"), 0o644); err != nil || !changed {
		t.Fatalf("replace: %t %v", changed, err)
	}
	fi, err := os.Stat(p)
	if err != nil || fi.Mode().Perm() != 0o640 {
		t.Fatalf("mode after replace %v %v, want 0640", fi.Mode(), err)
	}
	if st := fi.Sys().(*syscall.Stat_t); root && (st.Uid != uid || st.Gid != gid) {
		t.Errorf("owner after replace %d:%d, want %d:%d", st.Uid, st.Gid, uid, gid)
	}
	if b, _ := os.ReadFile(p); string(b) != "two" {
		t.Errorf("content %q", b)
	}
	// The same content: left alone.
	if changed, err := Replace(p, []byte("two"), 0o600); err != nil || changed {
		t.Errorf("same content: %t %v", changed, err)
	}
	if again, _ := os.Stat(p); !os.SameFile(fi, again) || again.Mode().Perm() != 0o640 {
		t.Error("an unchanged replace touched the file")
	}
}

func TestSymlink(t *testing.T) {
	dir := t.TempDir()
	link := filepath.Join(dir, "sandbox-thon")
	for i, tc := range []struct {
		target  string
		changed bool
	}{{"/a", true}, {"/a", false}, {"/b", true}} {
		changed, err := Symlink(tc.target, link)
		if err != nil || changed != tc.changed {
			t.Errorf("step %d: changed %t, %v; want %t", i, changed, err, tc.changed)
		}
		if got, _ := os.Readlink(link); got != tc.target {
			t.Errorf("step %d: link points at %q", i, got)
		}
	}
	if names := dirNames(t, dir); len(names) != 1 {
		t.Errorf("directory holds %v", names)
	}
	// A directory in the way: an error, and nothing left behind.
	busy := filepath.Join(dir, "busy")
	if err := os.MkdirAll(filepath.Join(busy, "x"), 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := Symlink("/a", busy); err == nil || !strings.Contains(err.Error(), "linking "+busy) {
		t.Errorf("symlink over a directory: %v", err)
	}
	if names := dirNames(t, dir); len(names) != 2 {
		t.Errorf("directory holds %v after a failed link", names)
	}
}
