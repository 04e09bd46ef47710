package benchkit

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/thon-dev/thon/internal/serverproc"
)

func TestWorkspace(t *testing.T) {
	f := Flags{Thon: os.Args[0]}
	w, err := f.Workspace(context.Background(), "test")
	if err != nil {
		t.Fatal(err)
	}
	defer w.Remove()
	if fi, err := os.Stat(w.Dir); err != nil || !fi.IsDir() || !strings.HasPrefix(filepath.Base(w.Dir), "thon-bench-test-") {
		t.Errorf("directory %s: %v", w.Dir, err)
	}
	if w.Thon != os.Args[0] {
		t.Errorf("thon %s", w.Thon)
	}
	// StartCaddy writes the Caddyfile and runs thon with it.
	env := w.Env
	w.Env = append(w.Env, helperEnv+"=args")
	p, err := w.StartCaddy("thon", "{\n\tadmin off\n}\n")
	if err != nil {
		t.Fatal(err)
	}
	if err, exited := p.Wait(time.Minute); !exited || err != nil {
		t.Fatalf("thon: %v, exited %v", err, exited)
	}
	file := filepath.Join(w.Dir, "thon.Caddyfile")
	if b, err := os.ReadFile(file); err != nil || string(b) != "{\n\tadmin off\n}\n" {
		t.Errorf("Caddyfile %q, %v", b, err)
	}
	if want := "serving with run --config " + file + " --adapter caddyfile\n"; p.Tail() != want {
		t.Errorf("log %q, want %q", p.Tail(), want)
	}
	w.Env = env
	if got := strings.Join(w.Env[len(w.Env)-3:], " "); got != "HOME="+w.Dir+"/home XDG_DATA_HOME="+w.Dir+"/home/data XDG_CONFIG_HOME="+w.Dir+"/home/config" {
		t.Errorf("env ends with %s", got)
	}
	w.Remove()
	if _, err := os.Stat(w.Dir); !os.IsNotExist(err) {
		t.Errorf("after Remove: %v", err)
	}
	if _, err := w.StartCaddy("x", ""); err == nil {
		t.Error("no error for a Caddyfile in a removed directory")
	}
}

func TestBuildThonFails(t *testing.T) {
	f := Flags{Go: "false"}
	if _, err := f.thonBinary(context.Background(), t.TempDir()); err == nil || !strings.HasPrefix(err.Error(), "go build ./cmd/thon: exit status 1") {
		t.Errorf("failing build: %v", err)
	}
	f.Thon = "/opt/thon"
	if bin, err := f.thonBinary(context.Background(), t.TempDir()); bin != "/opt/thon" || err != nil {
		t.Errorf("given binary: %s %v", bin, err)
	}
}

// TestStartNginx runs the real nginx with a configuration from
// WriteNginxConf.
func TestStartNginx(t *testing.T) {
	const bin = "/usr/sbin/nginx"
	if _, err := exec.LookPath(bin); err != nil {
		t.Fatalf("nginx is required (apt-get install nginx): %v", err)
	}
	ports, err := serverproc.FreePorts(1)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	conf, err := WriteNginxConf(dir, fmt.Sprintf("    server {\n        listen 127.0.0.1:%d;\n        location / {\n            return 200 'ok';\n        }\n    }\n", ports[0]))
	if err != nil {
		t.Fatal(err)
	}
	if conf != filepath.Join(dir, "nginx.conf") {
		t.Errorf("conf at %s", conf)
	}
	ctx := context.Background()
	w := &Workspace{Dir: dir, Env: os.Environ()}
	p, err := w.StartNginx(ctx, bin, conf)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Stop()
	if err := p.WaitHTTP(ctx, fmt.Sprintf("http://127.0.0.1:%d/", ports[0]), http.StatusOK, time.Minute); err != nil {
		t.Fatal(err)
	}

	bad, err := WriteNginxConf(filepath.Join(dir, "bad"), "    nonsense;\n")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.StartNginx(ctx, bin, bad); err == nil || !strings.Contains(err.Error(), `nginx -t: exit status 1`) || !strings.Contains(err.Error(), `"nonsense"`) {
		t.Errorf("bad configuration: %v", err)
	}
}
