package docker

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestLifecycle(t *testing.T) {
	t.Parallel()
	c := testClient(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	spec := testSpec(t)
	id := create(t, c, spec)

	ct, err := c.Inspect(ctx, spec.Name)
	if err != nil {
		t.Fatal(err)
	}
	if ct.ID != id || ct.Name != spec.Name || ct.Image != testImage || ct.State != "created" ||
		ct.HostPort != spec.HostPort || !ct.StartedAt.IsZero() || ct.Labels["thon.test"] != "1" {
		t.Errorf("created: %+v", ct)
	}

	start(t, c, id)
	waitHealthy(t, spec.HostPort)
	ct, err = c.Inspect(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if ct.State != "running" || ct.StartedAt.IsZero() {
		t.Errorf("started: %+v", ct)
	}
	status, body, err := get(spec.HostPort, "/some/page")
	if err != nil || status != http.StatusOK || !strings.Contains(body, `data-testid="sandbox"`) {
		t.Errorf("page: %d %q %v", status, body, err)
	}

	if err := c.Pause(ctx, id); err != nil {
		t.Fatal(err)
	}
	if ct, err := c.Inspect(ctx, id); err != nil || ct.State != "paused" {
		t.Errorf("paused: %+v %v", ct, err)
	}
	if status, _, err := get(spec.HostPort, "/healthz"); err == nil {
		t.Errorf("paused sandbox answered /healthz with %d", status)
	}
	if err := c.Pause(ctx, id); !errors.Is(err, ErrConflict) {
		t.Errorf("pausing a paused container: %v, want ErrConflict", err)
	}

	if err := c.Unpause(ctx, id); err != nil {
		t.Fatal(err)
	}
	waitHealthy(t, spec.HostPort)

	if err := c.Stop(ctx, id); err != nil {
		t.Fatal(err)
	}
	if ct, err := c.Inspect(ctx, id); err != nil || ct.State != "exited" {
		t.Errorf("stopped: %+v %v", ct, err)
	}
	start(t, c, id)
	waitHealthy(t, spec.HostPort)

	if err := c.Remove(ctx, id, true); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Inspect(ctx, id); !errors.Is(err, ErrNotFound) {
		t.Errorf("inspect after remove: %v, want ErrNotFound", err)
	}
	for name, err := range map[string]error{
		"remove":  c.Remove(ctx, id, true),
		"start":   c.Start(ctx, id),
		"pause":   c.Pause(ctx, id),
		"unpause": c.Unpause(ctx, id),
		"stop":    c.Stop(ctx, id),
	} {
		if !errors.Is(err, ErrNotFound) {
			t.Errorf("%s after remove: %v, want ErrNotFound", name, err)
		}
	}
}

func TestHardening(t *testing.T) {
	t.Parallel()
	c := testClient(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	spec := testSpec(t)
	spec.CapAdd = []string{"CHOWN"}
	id := create(t, c, spec)
	start(t, c, id)
	waitHealthy(t, spec.HostPort)

	resp, err := c.api.ContainerInspect(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	hc := resp.HostConfig
	if !slices.Equal(hc.CapDrop, []string{"ALL"}) {
		t.Errorf("CapDrop = %v, want [ALL]", hc.CapDrop)
	}
	if !slices.Equal(hc.CapAdd, []string{"CAP_CHOWN"}) {
		t.Errorf("CapAdd = %v, want [CAP_CHOWN]", hc.CapAdd)
	}
	if !slices.Contains(hc.SecurityOpt, "no-new-privileges") {
		t.Errorf("SecurityOpt = %v, want no-new-privileges", hc.SecurityOpt)
	}
	if hc.Privileged {
		t.Error("container is privileged")
	}
	if hc.Memory != spec.MemoryBytes || hc.MemorySwap != spec.MemoryBytes {
		t.Errorf("Memory = %d, MemorySwap = %d, want both %d", hc.Memory, hc.MemorySwap, spec.MemoryBytes)
	}
	if hc.NanoCPUs != spec.NanoCPUs {
		t.Errorf("NanoCPUs = %d, want %d", hc.NanoCPUs, spec.NanoCPUs)
	}
	if hc.PidsLimit == nil || *hc.PidsLimit != spec.PidsLimit {
		t.Errorf("PidsLimit = %v, want %d", hc.PidsLimit, spec.PidsLimit)
	}
	if hc.RestartPolicy.Name != "unless-stopped" || RestartPolicy != "unless-stopped" {
		t.Errorf("RestartPolicy = %q, want unless-stopped", hc.RestartPolicy.Name)
	}
	for _, m := range resp.Mounts {
		if strings.Contains(m.Source, "docker.sock") {
			t.Errorf("docker socket mounted: %+v", m)
		}
	}

	// Published on 127.0.0.1 only, in the configuration and in effect.
	if len(hc.PortBindings) != 1 {
		t.Errorf("PortBindings = %v, want one port", hc.PortBindings)
	}
	for port, bindings := range hc.PortBindings {
		if port.Int() != DefaultContainerPort {
			t.Errorf("published container port %s, want %d", port, DefaultContainerPort)
		}
		for _, b := range bindings {
			if b.HostIP != "127.0.0.1" {
				t.Errorf("port %s bound on %q, want 127.0.0.1", port, b.HostIP)
			}
		}
	}
	if resp.NetworkSettings == nil || len(resp.NetworkSettings.Ports) == 0 {
		t.Fatalf("no ports in effect: %+v", resp.NetworkSettings)
	}
	for port, bindings := range resp.NetworkSettings.Ports {
		for _, b := range bindings {
			if b.HostIP != "127.0.0.1" {
				t.Errorf("port %s in effect on %q, want 127.0.0.1 only", port, b.HostIP)
			}
		}
	}
}

func TestCopyFile(t *testing.T) {
	t.Parallel()
	c := testClient(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	spec := testSpec(t)
	id := create(t, c, spec)

	// Copied before the first start, as thon injects configuration; the
	// content would break any shell quoting.
	kilo := `{"username": "$(touch /tmp/pwned)", "q": "it's \"quoted\"", "nl": "a\nb"}` + "\n`id`\n"
	const kiloPath = "/home/vscode/.config/kilo/config.json"
	if err := c.CopyFile(ctx, id, kiloPath, []byte(kilo), 1001, 1001, 0o600); err != nil {
		t.Fatal(err)
	}
	const settingsPath = "/home/vscode/.local/share/code-server/User/settings.json"
	if err := c.CopyFile(ctx, id, settingsPath, []byte(`{"workbench.startupEditor": "none"}`), 1001, 1001, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := c.CopyFile(ctx, id, "/workspace/new/dir/seed.txt", []byte("seed"), 1001, 1001, 0o644); err != nil {
		t.Fatal(err)
	}

	start(t, c, id)
	waitHealthy(t, spec.HostPort)

	// The server runs as vscode: reading a 0600 file proves its owner.
	for p, want := range map[string]string{kiloPath: kilo, settingsPath: `{"workbench.startupEditor": "none"}`} {
		status, body, err := get(spec.HostPort, "/files?path="+url.QueryEscape(p))
		if err != nil || status != http.StatusOK || body != want {
			t.Errorf("read back %s: %d %q %v, want %q", p, status, body, err, want)
		}
	}
	// Created parent directories belong to the file's owner: vscode can
	// write into them.
	if status, err := put(spec.HostPort, "/files?path=/workspace/new/dir/other.txt", "x"); err != nil || status != http.StatusNoContent {
		t.Errorf("write into a created directory: %d %v", status, err)
	}
	// Replacing works, while running.
	if err := c.CopyFile(ctx, id, kiloPath, []byte("v2"), 1001, 1001, 0o600); err != nil {
		t.Fatal(err)
	}
	if status, body, err := get(spec.HostPort, "/files?path="+url.QueryEscape(kiloPath)); err != nil || status != http.StatusOK || body != "v2" {
		t.Errorf("replaced file: %d %q %v", status, body, err)
	}

	// Owners and modes as the engine sees them; existing directories are
	// left alone.
	headers := archiveHeaders(t, c, id, "/home/vscode/.config/kilo")
	if h := headers["kilo"]; h == nil || h.Uid != 1001 || h.Gid != 1001 || h.Mode&0o777 != 0o755 {
		t.Errorf("created directory: %+v", h)
	}
	if h := headers["kilo/config.json"]; h == nil || h.Uid != 1001 || h.Gid != 1001 || h.Mode&0o777 != 0o600 {
		t.Errorf("copied file: %+v", h)
	}
	if h := archiveHeaders(t, c, id, "/home")["home"]; h == nil || h.Uid != 0 || h.Gid != 0 {
		t.Errorf("/home changed: %+v", h)
	}
	if _, err := c.api.ContainerStatPath(ctx, id, "/tmp/pwned"); err == nil {
		t.Error("content was run by a shell")
	}

	for i, tc := range []struct {
		id, path string
		uid      int
		mode     os.FileMode
		want     error
		wantText string
	}{
		{id: id, path: "relative/file", mode: 0o644, wantText: "must be a clean absolute file path"},
		{id: id, path: "/", mode: 0o644, wantText: "must be a clean absolute file path"},
		{id: id, path: "/workspace/../etc/passwd", mode: 0o644, wantText: "must be a clean absolute file path"},
		{id: id, path: "/workspace/x", uid: -1, mode: 0o644, wantText: "must not be negative"},
		{id: id, path: "/workspace/x", mode: os.ModeDir | 0o755, wantText: "permission bits"},
		{id: id, path: "/usr/bin/code-server/x", mode: 0o644, wantText: "not a directory"},
		{id: "thon-test-no-such-container", path: "/workspace/x", mode: 0o644, want: ErrNotFound},
		{id: "thon-test-no-such-container", path: "/a/b/c", mode: 0o644, want: ErrNotFound},
	} {
		err := c.CopyFile(ctx, tc.id, tc.path, []byte("x"), tc.uid, 0, tc.mode)
		if err == nil || (tc.want != nil && !errors.Is(err, tc.want)) || !strings.Contains(err.Error(), tc.wantText) {
			t.Errorf("case %d: CopyFile(%q, %q) = %v", i, tc.id, tc.path, err)
		}
	}
}

// TestCopyFiles writes several files in one archive into fresh containers
// of one image (the second from the directory cache), into a container
// written before it ever ran, and into a running one, whose directories
// must be asked of the engine again.
func TestCopyFiles(t *testing.T) {
	t.Parallel()
	c := testClient(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	const (
		kiloPath     = "/home/vscode/.config/kilo/config.json"
		settingsPath = "/home/vscode/.local/share/code-server/User/settings.json"
		rootPath     = "/workspace/seed/root.txt"
	)
	files := []File{
		{Path: kiloPath, Content: []byte(`{"k": 1}`), UID: 1001, GID: 1001, Mode: 0o600},
		{Path: settingsPath, Content: []byte(`{"s": 2}`), UID: 1001, GID: 1001, Mode: 0o644},
		{Path: rootPath, Content: []byte("root"), UID: 0, GID: 0, Mode: 0o644},
	}
	check := func(name, id string, port int) {
		t.Helper()
		for _, tc := range []struct {
			dir, entry string
			uid, mode  int64
		}{
			{"/home/vscode/.config/kilo", "kilo", 1001, 0o755},
			{"/home/vscode/.config/kilo", "kilo/config.json", 1001, 0o600},
			{"/home/vscode/.local", ".local", 1001, 0o755},
			{"/home/vscode/.local/share/code-server/User", "User/settings.json", 1001, 0o644},
			{"/workspace/seed", "seed", 0, 0o755},
			{"/workspace/seed", "seed/root.txt", 0, 0o644},
			{"/home/vscode", "vscode", 1001, 0o755}, // existing: left alone
			{"/home", "home", 0, 0o755},
		} {
			h := archiveHeaders(t, c, id, tc.dir)[tc.entry]
			if h == nil || int64(h.Uid) != tc.uid || h.Mode&0o777 != tc.mode {
				t.Errorf("%s: %s in %s: %+v, want uid %d mode %o", name, tc.entry, tc.dir, h, tc.uid, tc.mode)
			}
		}
		for p, want := range map[string]string{kiloPath: `{"k": 1}`, settingsPath: `{"s": 2}`} {
			if status, body, err := get(port, "/files?path="+url.QueryEscape(p)); err != nil || status != http.StatusOK || body != want {
				t.Errorf("%s: read back %s: %d %q %v", name, p, status, body, err)
			}
		}
	}
	// Two fresh containers: the first asks the engine, the second is
	// answered from what the first taught.
	for _, name := range []string{"first", "second"} {
		spec := testSpec(t)
		id := create(t, c, spec)
		if err := c.CopyFiles(ctx, id, files); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		start(t, c, id)
		waitHealthy(t, spec.HostPort)
		check(name, id, spec.HostPort)
	}

	// Written twice before it ran: the directory the first call made is
	// not the image's missing one and keeps its owner.
	spec := testSpec(t)
	id := create(t, c, spec)
	if err := c.CopyFiles(ctx, id, []File{{Path: "/home/vscode/new/a", Content: []byte("a"), UID: 1001, GID: 1001, Mode: 0o644}}); err != nil {
		t.Fatal(err)
	}
	if err := c.CopyFiles(ctx, id, []File{{Path: "/home/vscode/new/b", Content: []byte("b"), UID: 0, GID: 0, Mode: 0o644}}); err != nil {
		t.Fatal(err)
	}
	if h := archiveHeaders(t, c, id, "/home/vscode/new")["new"]; h == nil || h.Uid != 1001 {
		t.Errorf("a directory made by an earlier call changed owner: %+v", h)
	}

	// A running container: code-server made /workspace/made, which a
	// fresh container of the image lacks (and the cache says so); writing
	// a root file into it must leave it vscode's.
	spec = testSpec(t)
	running := create(t, c, spec)
	start(t, c, running)
	waitHealthy(t, spec.HostPort)
	if status, err := put(spec.HostPort, "/files?path=/workspace/made/own.txt", "x"); err != nil || status != http.StatusNoContent {
		t.Fatalf("write by the server: %d %v", status, err)
	}
	fresh := create(t, c, testSpec(t))
	if err := c.CopyFiles(ctx, fresh, []File{{Path: "/workspace/made/f", Content: []byte("f"), UID: 0, GID: 0, Mode: 0o644}}); err != nil {
		t.Fatal(err)
	}
	if err := c.CopyFiles(ctx, running, []File{{Path: "/workspace/made/root.txt", Content: []byte("r"), UID: 0, GID: 0, Mode: 0o644}}); err != nil {
		t.Fatal(err)
	}
	if status, err := put(spec.HostPort, "/files?path=/workspace/made/again.txt", "y"); err != nil || status != http.StatusNoContent {
		t.Errorf("the server's directory changed owner: write into it: %d %v", status, err)
	}

	for i, tc := range []struct {
		files []File
		want  string
	}{
		{[]File{files[0], files[0]}, "given twice"},
		{[]File{files[0], {Path: "/a/../b", Mode: 0o644}}, `path "/a/../b": must be a clean absolute file path`},
		{[]File{files[0], {Path: "/usr/bin/code-server/x", Mode: 0o644}}, "/usr/bin/code-server: not a directory"},
	} {
		if err := c.CopyFiles(ctx, fresh, tc.files); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("case %d: %v, want %q", i, err, tc.want)
		}
	}
	if _, err := c.api.ContainerStatPath(ctx, fresh, kiloPath); err == nil {
		t.Error("a refused call wrote a file")
	}
}

// archiveHeaders reads the tar headers of path in the container, by name.
func archiveHeaders(t *testing.T, c *Client, id, path string) map[string]*tar.Header {
	t.Helper()
	rc, _, err := c.api.CopyFromContainer(context.Background(), id, path)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	out := make(map[string]*tar.Header)
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		out[strings.TrimSuffix(h.Name, "/")] = h
	}
}

// TestVolumeMadeByMount lets the engine make a missing volume for a mount,
// with the mount's labels, and keep an existing volume's own.
func TestVolumeMadeByMount(t *testing.T) {
	t.Parallel()
	c := testClient(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	vol := uniqueName(t, "vol")
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := c.RemoveVolume(ctx, vol); err != nil && !errors.Is(err, ErrNotFound) {
			t.Errorf("cleanup: %v", err)
		}
	})
	labels := map[string]string{"thon.test": "1", "thon.group": "g"}
	spec := testSpec(t)
	spec.Mounts = []Mount{{Type: "volume", Source: vol, Target: "/workspace", VolumeLabels: labels}}
	id := create(t, c, spec)
	v, err := c.api.VolumeInspect(ctx, vol)
	if err != nil {
		t.Fatalf("the volume was not made with the container: %v", err)
	}
	if v.Labels["thon.group"] != "g" || v.Labels["thon.test"] != "1" {
		t.Errorf("labels of the made volume: %v", v.Labels)
	}
	if err := c.Remove(ctx, id, false); err != nil {
		t.Fatal(err)
	}
	// Another container with other labels: the volume is reused as it is.
	spec.Name = uniqueName(t, "ct2")
	spec.Mounts[0].VolumeLabels = map[string]string{"thon.group": "other"}
	create(t, c, spec)
	if v, err := c.api.VolumeInspect(ctx, vol); err != nil || v.Labels["thon.group"] != "g" {
		t.Errorf("existing volume: labels %v, %v", v.Labels, err)
	}
}

func TestVolumePersistsAcrossRecreate(t *testing.T) {
	t.Parallel()
	c := testClient(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	vol := ensureVolume(t, c)
	if err := c.EnsureVolume(ctx, vol, map[string]string{"other": "labels"}); err != nil {
		t.Fatalf("EnsureVolume of an existing volume: %v", err)
	}
	if ok, err := c.VolumeExists(ctx, vol); err != nil || !ok {
		t.Fatalf("VolumeExists = %v, %v", ok, err)
	}

	spec := testSpec(t)
	spec.Mounts = []Mount{{Type: "volume", Source: vol, Target: "/workspace"}}
	id := create(t, c, spec)
	start(t, c, id)
	waitHealthy(t, spec.HostPort)
	if status, err := put(spec.HostPort, "/files?path=/workspace/project/main.go", "package main\n"); err != nil || status != http.StatusNoContent {
		t.Fatalf("write to workspace: %d %v", status, err)
	}

	if err := c.RemoveVolume(ctx, vol); !errors.Is(err, ErrConflict) {
		t.Errorf("removing a volume in use: %v, want ErrConflict", err)
	}
	if err := c.Remove(ctx, id, true); err != nil {
		t.Fatal(err)
	}
	if ok, err := c.VolumeExists(ctx, vol); err != nil || !ok {
		t.Fatalf("named volume gone with its container: %v, %v", ok, err)
	}

	// Recreated under the same name with the same volume.
	spec.HostPort = freePort(t)
	id = create(t, c, spec)
	start(t, c, id)
	waitHealthy(t, spec.HostPort)
	if status, body, err := get(spec.HostPort, "/files?path=/workspace/project/main.go"); err != nil || status != http.StatusOK || body != "package main\n" {
		t.Errorf("after recreate: %d %q %v", status, body, err)
	}

	if err := c.Remove(ctx, id, true); err != nil {
		t.Fatal(err)
	}
	if err := c.RemoveVolume(ctx, vol); err != nil {
		t.Fatal(err)
	}
	if ok, err := c.VolumeExists(ctx, vol); err != nil || ok {
		t.Errorf("VolumeExists after remove = %v, %v", ok, err)
	}
	if err := c.RemoveVolume(ctx, vol); !errors.Is(err, ErrNotFound) {
		t.Errorf("removing a missing volume: %v, want ErrNotFound", err)
	}
}

func TestPortInUse(t *testing.T) {
	t.Parallel()
	c := testClient(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	// A foreign process holds the port.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	port := ln.Addr().(*net.TCPAddr).Port

	spec := testSpec(t)
	spec.HostPort = port
	id := create(t, c, spec)
	err = c.Start(ctx, id)
	var pe *PortInUseError
	t.Logf("Start: %v", err)
	if !errors.Is(err, ErrPortInUse) || !errors.As(err, &pe) || pe.HostPort != port {
		t.Fatalf("start on a port a process holds: %v, want a PortInUseError for %d", err, port)
	}
	if ct, err := c.Inspect(ctx, id); err != nil || ct.State == "running" {
		t.Errorf("after the failed start: %+v %v", ct, err)
	}

	// Another container holds the port.
	first := testSpec(t)
	firstID := create(t, c, first)
	start(t, c, firstID)
	second := testSpec(t)
	second.HostPort = first.HostPort
	secondID := create(t, c, second)
	if err := c.Start(ctx, secondID); !errors.Is(err, ErrPortInUse) {
		t.Errorf("start on a port a container holds: %v, want ErrPortInUse", err)
	}
	waitHealthy(t, first.HostPort)
}

func TestCreateErrors(t *testing.T) {
	t.Parallel()
	c := testClient(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	symlink := filepath.Join(t.TempDir(), "innocent")
	if err := os.Symlink("/var/run/docker.sock", symlink); err != nil {
		t.Fatal(err)
	}
	sockDir := filepath.Join(t.TempDir(), "sockets")
	if err := os.Mkdir(sockDir, 0o755); err != nil {
		t.Fatal(err)
	}
	sock, err := net.Listen("unix", filepath.Join(sockDir, "engine.sock"))
	if err != nil {
		t.Fatal(err)
	}
	defer sock.Close()

	for i, tc := range []struct {
		change func(*Spec)
		want   string
	}{
		{func(s *Spec) {
			s.Mounts = []Mount{{Type: "bind", Source: "/var/run/docker.sock", Target: "/var/run/docker.sock"}}
		}, "Docker socket"},
		{func(s *Spec) { s.Mounts = []Mount{{Type: "bind", Source: "/run/docker.sock", Target: "/sock"}} }, "Docker socket"},
		{func(s *Spec) { s.Mounts = []Mount{{Type: "bind", Source: "/var/run", Target: "/host-run"}} }, "Docker socket"},
		{func(s *Spec) { s.Mounts = []Mount{{Type: "bind", Source: "/run/", Target: "/host-run"}} }, "Docker socket"},
		{func(s *Spec) { s.Mounts = []Mount{{Type: "bind", Source: "/", Target: "/host"}} }, "Docker socket"},
		{func(s *Spec) { s.Mounts = []Mount{{Type: "bind", Source: "/var", Target: "/host-var"}} }, "Docker socket"},
		{func(s *Spec) { s.Mounts = []Mount{{Type: "bind", Source: "/var/run/../run/docker.sock", Target: "/s"}} }, "Docker socket"},
		{func(s *Spec) { s.Mounts = []Mount{{Type: "bind", Source: symlink, Target: "/s"}} }, "Docker socket"},
		{func(s *Spec) { s.Mounts = []Mount{{Type: "bind", Source: "/srv/x/docker.sock", Target: "/s"}} }, "Docker socket"},
		{func(s *Spec) { s.Mounts = []Mount{{Type: "bind", Source: sock.Addr().String(), Target: "/s"}} }, "Docker socket"},
		{func(s *Spec) { s.Mounts = []Mount{{Type: "bind", Source: "relative", Target: "/w"}} }, "absolute host path"},
		{func(s *Spec) { s.Mounts = []Mount{{Type: "tmpfs", Source: "x", Target: "/w"}} }, `type "tmpfs"`},
		{func(s *Spec) { s.Mounts = []Mount{{Type: "volume", Source: "../x", Target: "/w"}} }, "not a volume name"},
		{func(s *Spec) { s.Mounts = []Mount{{Type: "volume", Source: "v", Target: "w"}} }, "clean absolute path"},
		{func(s *Spec) {
			s.Mounts = []Mount{{Type: "volume", Source: "va", Target: "/w"}, {Type: "volume", Source: "vb", Target: "/w"}}
		}, "mounted twice"},
		{func(s *Spec) { s.Name = "bad name" }, "spec Name"},
		{func(s *Spec) { s.Name = "" }, "spec Name"},
		{func(s *Spec) { s.Image = "" }, "spec Image"},
		{func(s *Spec) { s.HostPort = 0 }, "spec HostPort"},
		{func(s *Spec) { s.HostPort = 70000 }, "spec HostPort"},
		{func(s *Spec) { s.ContainerPort = -1 }, "spec ContainerPort"},
		{func(s *Spec) { s.MemoryBytes = 0 }, "spec MemoryBytes"},
		{func(s *Spec) { s.NanoCPUs = -5 }, "spec NanoCPUs"},
		{func(s *Spec) { s.PidsLimit = 0 }, "spec PidsLimit"},
		{func(s *Spec) { s.CapAdd = []string{"ALL"} }, "spec CapAdd[0]"},
		{func(s *Spec) { s.CapAdd = []string{"NET_BIND_SERVICE", "sys admin"} }, "spec CapAdd[1]"},
		{func(s *Spec) { s.Env = []string{"OK=1", "=x"} }, "spec Env[1]"},
		{func(s *Spec) { s.Env = []string{"NOVALUE"} }, "spec Env[0]"},
		{func(s *Spec) { s.Labels = map[string]string{"": "x"} }, "spec Labels"},
	} {
		spec := testSpec(t)
		tc.change(&spec)
		id, err := c.Create(ctx, spec)
		if err == nil {
			removeQuietly(t, c, id)
			t.Errorf("case %d: created %+v", i, spec)
			continue
		}
		if !strings.Contains(err.Error(), tc.want) {
			t.Errorf("case %d: error %q, want one containing %q", i, err, tc.want)
		}
	}

	// Nothing was created by the refused specs.
	got, err := c.List(ctx, map[string]string{"thon.test.name": t.Name()})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 0 {
		t.Errorf("refused specs left containers: %+v", got)
	}

	// A bind mount of an ordinary directory is fine.
	spec := testSpec(t)
	spec.Mounts = []Mount{{Type: "bind", Source: t.TempDir(), Target: "/data"}}
	create(t, c, spec)

	// Engine errors.
	dup := spec
	dup.HostPort = freePort(t)
	dup.Mounts = nil
	if _, err := c.Create(ctx, dup); !errors.Is(err, ErrConflict) {
		t.Errorf("duplicate name: %v, want ErrConflict", err)
	}
	missing := testSpec(t)
	missing.Image = "thon/no-such-image:never"
	if id, err := c.Create(ctx, missing); !errors.Is(err, ErrNotFound) {
		if err == nil {
			removeQuietly(t, c, id)
		}
		t.Errorf("missing image: %v, want ErrNotFound", err)
	}
}

func TestUnreachable(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	c, err := New("unix:///nonexistent.sock")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	err = c.Ping(ctx)
	t.Logf("Ping: %v", err)
	if !errors.Is(err, ErrUnreachable) || !strings.HasPrefix(err.Error(), "docker engine unreachable at unix:///nonexistent.sock: ") {
		t.Errorf("Ping = %v", err)
	}
	spec := testSpec(t)
	if _, err := c.Create(ctx, spec); !errors.Is(err, ErrUnreachable) || !strings.Contains(err.Error(), "unix:///nonexistent.sock") {
		t.Errorf("Create = %v", err)
	}
	if _, err := c.List(ctx, testLabel); !errors.Is(err, ErrUnreachable) {
		t.Errorf("List = %v", err)
	}
	if _, err := c.ImageExists(ctx, testImage); !errors.Is(err, ErrUnreachable) {
		t.Errorf("ImageExists = %v", err)
	}
	if _, err := c.VolumeExists(ctx, "thon-test-x"); !errors.Is(err, ErrUnreachable) {
		t.Errorf("VolumeExists = %v", err)
	}
	events, errc := c.Events(ctx, testLabel)
	if err := <-errc; !errors.Is(err, ErrUnreachable) {
		t.Errorf("Events error = %v", err)
	}
	if _, ok := <-events; ok {
		t.Error("Events channel not closed")
	}

	for _, host := range []string{"bogus://host", "unix://", "tcp://", "127.0.0.1:2375", "ssh://user@host"} {
		if _, err := New(host); err == nil || !strings.Contains(err.Error(), "docker host "+strconv.Quote(host)) {
			t.Errorf("New(%q) = %v, want an error naming the host", host, err)
		}
	}
}

func TestListAndImages(t *testing.T) {
	t.Parallel()
	c := testClient(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	run := uniqueName(t, "run")
	var want []string
	for range 2 {
		spec := testSpec(t)
		spec.Labels["thon.test.run"] = run
		want = append(want, create(t, c, spec))
	}
	start(t, c, want[0])

	got, err := c.List(ctx, map[string]string{"thon.test.run": run})
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, ct := range got {
		ids = append(ids, ct.ID)
		if ct.HostPort == 0 || ct.Labels["thon.test.run"] != run || ct.Image != testImage {
			t.Errorf("listed %+v", ct)
		}
		switch ct.ID {
		case want[0]:
			if ct.State != "running" {
				t.Errorf("started container listed as %q", ct.State)
			}
		case want[1]:
			if ct.State != "created" {
				t.Errorf("created container listed as %q", ct.State)
			}
		}
	}
	slices.Sort(ids)
	slices.Sort(want)
	if !slices.Equal(ids, want) {
		t.Errorf("List = %v, want %v", ids, want)
	}
	if got, err := c.List(ctx, map[string]string{"thon.test.run": run + "-other"}); err != nil || len(got) != 0 {
		t.Errorf("List with another label value = %+v, %v", got, err)
	}
	if got, err := c.List(ctx, map[string]string{"thon.test.run": ""}); err != nil || len(got) < 2 {
		t.Errorf("List by label key = %d containers, %v", len(got), err)
	}

	if ok, err := c.ImageExists(ctx, testImage); err != nil || !ok {
		t.Errorf("ImageExists(%s) = %v, %v", testImage, ok, err)
	}
	if ok, err := c.ImageExists(ctx, "thon/no-such-image:never"); err != nil || ok {
		t.Errorf("ImageExists(missing) = %v, %v", ok, err)
	}
}

func TestEvents(t *testing.T) {
	t.Parallel()
	c := testClient(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	run := uniqueName(t, "run")
	evCtx, stop := context.WithCancel(ctx)
	events, errc := c.Events(evCtx, map[string]string{"thon.test.run": run})

	spec := testSpec(t)
	spec.Labels["thon.test.run"] = run
	id := create(t, c, spec)
	start(t, c, id)
	waitHealthy(t, spec.HostPort)
	for _, op := range []func(context.Context, string) error{c.Pause, c.Unpause, c.Stop} {
		if err := op(ctx, id); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.Remove(ctx, id, true); err != nil {
		t.Fatal(err)
	}

	var actions []string
	for ev := range events {
		if ev.ID != id || ev.Name != spec.Name || ev.Labels["thon.test.run"] != run || ev.Time.IsZero() {
			t.Errorf("event %+v", ev)
		}
		if _, ok := ev.Labels["name"]; ok {
			t.Errorf("event labels hold the name attribute: %v", ev.Labels)
		}
		actions = append(actions, ev.Action)
		if ev.Action == "destroy" {
			break
		}
	}
	// Other actions (kill, stop) may come between; these come in order.
	wantOrder := []string{"create", "start", "pause", "unpause", "die", "destroy"}
	i := 0
	for _, a := range actions {
		if i < len(wantOrder) && a == wantOrder[i] {
			i++
		}
	}
	if i != len(wantOrder) {
		t.Errorf("actions %v, want %v in order", actions, wantOrder)
	}

	stop()
	for range events {
	}
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Errorf("error after cancel = %v, want context.Canceled", err)
	}
}

// TestRestartPolicy crashes a sandbox: the engine starts it again, and the
// exit shows in the event and in Inspect; a stop shows as a clean exit, and
// an older container gets the policy.
func TestRestartPolicy(t *testing.T) {
	t.Parallel()
	c := testClient(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	run := uniqueName(t, "run")
	spec := testSpec(t)
	spec.Image = testImageBuilt // with POST /exit
	spec.Labels["thon.test.run"] = run
	id := create(t, c, spec)
	if ct, err := c.Inspect(ctx, id); err != nil || ct.Exit != nil || ct.RestartPolicy != RestartPolicy {
		t.Fatalf("created container: exit %+v, policy %q, %v", ct.Exit, ct.RestartPolicy, err)
	}
	start(t, c, id)
	waitHealthy(t, spec.HostPort)
	first, err := c.Inspect(ctx, id)
	if err != nil {
		t.Fatal(err)
	}

	evCtx, stop := context.WithCancel(ctx)
	defer stop()
	events, _ := c.Events(evCtx, map[string]string{"thon.test.run": run})
	resp, err := http.Post(fmt.Sprintf("http://127.0.0.1:%d/exit?code=5", spec.HostPort), "", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	var died, restarted bool
	for ev := range events {
		switch ev.Action {
		case "die":
			died = true
			if ev.ExitCode != 5 {
				t.Errorf("die event exit code %d, want 5", ev.ExitCode)
			}
		case "start":
			restarted = died
		}
		if restarted {
			break
		}
	}
	stop()
	waitHealthy(t, spec.HostPort)
	ct, err := c.Inspect(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if ct.State != "running" || ct.RestartCount != 1 || !ct.StartedAt.After(first.StartedAt) {
		t.Errorf("after the crash: state %s, restart count %d, started %v (first %v)", ct.State, ct.RestartCount, ct.StartedAt, first.StartedAt)
	}
	// The engine clears the code of a container that runs again; the time
	// of its exit stays.
	if ct.Exit == nil || ct.Exit.At.Before(first.StartedAt) || ct.Exit.At.After(ct.StartedAt) {
		t.Errorf("exit after the restart: %+v", ct.Exit)
	}

	if err := c.Stop(ctx, id); err != nil {
		t.Fatal(err)
	}
	ct, err = c.Inspect(ctx, id)
	if err != nil || ct.State != "exited" || ct.Exit == nil || ct.Exit.Code != 0 || ct.Exit.At.Before(ct.StartedAt) {
		t.Errorf("stopped: %+v %v", ct, err)
	}

	// A container made without the policy gets it.
	older := uniqueName(t, "ct")
	if out, err := exec.Command("docker", "create", "--restart", "no", "--label", "thon.test=1", "--name", older, testImage).CombinedOutput(); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	t.Cleanup(func() { removeQuietly(t, c, older) })
	if ct, err := c.Inspect(ctx, older); err != nil || ct.RestartPolicy != "no" {
		t.Fatalf("older container: policy %q, %v", ct.RestartPolicy, err)
	}
	if err := c.UpdateRestartPolicy(ctx, older); err != nil {
		t.Fatal(err)
	}
	if ct, err := c.Inspect(ctx, older); err != nil || ct.RestartPolicy != RestartPolicy {
		t.Errorf("after UpdateRestartPolicy: policy %q, %v", ct.RestartPolicy, err)
	}
	if err := c.UpdateRestartPolicy(ctx, "thon-test-no-such-container"); !errors.Is(err, ErrNotFound) {
		t.Errorf("UpdateRestartPolicy of a missing container: %v", err)
	}
}
