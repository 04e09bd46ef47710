package nginxtest

import (
	"maps"
	"os"
	"path/filepath"
	"testing"
)

// TestNginxTree checks that Tree tells apart every change a writer of
// nginx files could make.
func TestNginxTree(t *testing.T) {
	root := t.TempDir()
	file := filepath.Join(root, "site")
	link := filepath.Join(root, "enabled")
	dir := filepath.Join(root, "ssl")
	if err := os.WriteFile(file, []byte("server {}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(file, link); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	before := Tree(t, root)
	if before[file] != `file -rw-r--r-- "server {}\n"` || before[link] != "symlink -> "+file || before[dir] != "dir -rwx------" || len(before) != 4 {
		t.Fatalf("tree %v", before)
	}
	for _, tt := range []struct {
		name   string
		change func() error
	}{
		{"content", func() error { return os.WriteFile(file, []byte("server { }\n"), 0o644) }},
		{"file mode", func() error { return os.Chmod(file, 0o600) }},
		{"directory mode", func() error { return os.Chmod(dir, 0o755) }},
		{"link target", func() error { os.Remove(link); return os.Symlink(dir, link) }},
		{"new file", func() error { return os.WriteFile(filepath.Join(dir, "k.pem"), nil, 0o600) }},
		{"removed file", func() error { return os.Remove(file) }},
	} {
		if err := tt.change(); err != nil {
			t.Fatal(err)
		}
		after := Tree(t, root)
		if maps.Equal(after, before) {
			t.Errorf("%s: the tree did not change", tt.name)
		}
		before = after
	}
}
