package benchkit

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"

	"github.com/thon-dev/thon/internal/serverproc"
)

// Workspace is where a benchmark keeps its files: a temporary directory,
// the thon binary it runs, and the environment of the servers it starts.
type Workspace struct {
	Dir  string   // temporary, removed by Remove
	Thon string   // thon binary
	Env  []string // see serverproc.CaddyEnv
}

// Workspace makes a temporary directory for the benchmark name and takes
// the -thon binary, or builds ./cmd/thon into the directory. Remove
// removes it.
func (f Flags) Workspace(ctx context.Context, name string) (*Workspace, error) {
	dir, err := os.MkdirTemp("", "thon-bench-"+name+"-")
	if err != nil {
		return nil, err
	}
	bin, err := f.thonBinary(ctx, dir)
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	return &Workspace{Dir: dir, Thon: bin, Env: serverproc.CaddyEnv(dir)}, nil
}

// thonBinary is the -thon binary or, without one, ./cmd/thon built into
// dir/bin.
func (f Flags) thonBinary(ctx context.Context, dir string) (string, error) {
	if f.Thon != "" {
		return f.Thon, nil
	}
	fmt.Fprintln(os.Stderr, "building ./cmd/thon ...")
	return serverproc.BuildThon(ctx, f.Go, filepath.Join(dir, "bin"))
}

// Remove removes the directory and everything in it.
func (w *Workspace) Remove() {
	os.RemoveAll(w.Dir)
}

// StartCaddy writes caddyfile to name.Caddyfile in the directory and runs
// the workspace's thon (as thon, or as plain Caddy) with it, logging to
// name.log there.
func (w *Workspace) StartCaddy(name, caddyfile string) (*serverproc.Proc, error) {
	file := filepath.Join(w.Dir, name+".Caddyfile")
	if err := os.WriteFile(file, []byte(caddyfile), 0o600); err != nil {
		return nil, err
	}
	return serverproc.Start(name, filepath.Join(w.Dir, name+".log"), w.Env, w.Thon, "run", "--config", file, "--adapter", "caddyfile")
}

// StartNginx checks the configuration conf with `nginx -t`, then runs
// nginx (bin) in the foreground with conf's directory as its prefix,
// logging to nginx.log in the workspace.
func (w *Workspace) StartNginx(ctx context.Context, bin, conf string) (*serverproc.Proc, error) {
	if out, err := exec.CommandContext(ctx, bin, "-t", "-c", conf).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("nginx -t: %v\n%s", err, out)
	}
	return serverproc.Start("nginx", filepath.Join(w.Dir, "nginx.log"), w.Env, bin, "-p", filepath.Dir(conf), "-c", conf, "-g", "daemon off;")
}
