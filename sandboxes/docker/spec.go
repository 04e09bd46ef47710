package docker

import (
	"fmt"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"strings"
)

// DefaultContainerPort is code-server's port inside a sandbox.
const DefaultContainerPort = 8443

// Spec describes a container to create.
type Spec struct {
	// Name is the container name ([a-zA-Z0-9][a-zA-Z0-9_.-]+).
	Name string
	// Image is the image reference; it must already be present, nothing is
	// pulled.
	Image string
	// Labels are set on the container.
	Labels map[string]string
	// Env holds KEY=value entries.
	Env []string
	// Cmd replaces the image's command when not empty.
	Cmd []string
	// HostPort is the port on 127.0.0.1 that ContainerPort is published on;
	// it is published on no other address.
	HostPort int
	// ContainerPort is the port the sandbox listens on; 0 means
	// DefaultContainerPort.
	ContainerPort int
	// Mounts are volumes and bind mounts. A mount of the Docker socket, or of
	// a directory holding it, is refused.
	Mounts []Mount
	// MemoryBytes is the memory limit (swap included: the container gets no
	// extra swap). Required.
	MemoryBytes int64
	// NanoCPUs is the CPU limit in billionths of a CPU. Required.
	NanoCPUs int64
	// PidsLimit bounds the number of processes. Required.
	PidsLimit int64
	// CapAdd are the capabilities kept; all others are dropped.
	CapAdd []string
	// User runs the command, as "name", "uid" or "uid:gid"; empty means the
	// image's user.
	User string
}

// Mount is a volume or bind mount of a container.
type Mount struct {
	// Type is "volume" (Source is a volume name) or "bind" (Source is an
	// absolute host path that exists).
	Type string
	// Source is the volume name or host path.
	Source string
	// Target is the absolute path inside the container.
	Target string
	// VolumeLabels label a volume the engine creates for the mount because
	// it does not exist yet (as EnsureVolume would); an existing volume
	// keeps its own. Volume mounts only.
	VolumeLabels map[string]string
}

// nameRE is the engine's rule for container and volume names.
var nameRE = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9_.-]+$`)

// capRE matches a capability name, with or without its CAP_ prefix.
var capRE = regexp.MustCompile(`^[A-Z][A-Z0-9_]*$`)

// dockerSockets are the usual places of the engine's socket on the host.
var dockerSockets = []string{"/var/run/docker.sock", "/run/docker.sock"}

// validate checks s and fills its defaults. host is the engine address, whose
// socket is refused as a mount source too.
func (s *Spec) validate(host string) error {
	if !nameRE.MatchString(s.Name) {
		return fmt.Errorf("spec Name %q: must match %s", s.Name, nameRE)
	}
	if strings.TrimSpace(s.Image) == "" {
		return fmt.Errorf("spec Image: required")
	}
	for k := range s.Labels {
		if k == "" {
			return fmt.Errorf("spec Labels: empty key")
		}
	}
	for i, e := range s.Env {
		if k, _, ok := strings.Cut(e, "="); !ok || k == "" {
			return fmt.Errorf("spec Env[%d] %q: must be KEY=value", i, e)
		}
	}
	if s.HostPort < 1 || s.HostPort > 65535 {
		return fmt.Errorf("spec HostPort %d: must be between 1 and 65535", s.HostPort)
	}
	if s.ContainerPort == 0 {
		s.ContainerPort = DefaultContainerPort
	}
	if s.ContainerPort < 1 || s.ContainerPort > 65535 {
		return fmt.Errorf("spec ContainerPort %d: must be between 1 and 65535", s.ContainerPort)
	}
	if s.MemoryBytes <= 0 {
		return fmt.Errorf("spec MemoryBytes %d: a positive memory limit is required", s.MemoryBytes)
	}
	if s.NanoCPUs <= 0 {
		return fmt.Errorf("spec NanoCPUs %d: a positive CPU limit is required", s.NanoCPUs)
	}
	if s.PidsLimit <= 0 {
		return fmt.Errorf("spec PidsLimit %d: a positive pids limit is required", s.PidsLimit)
	}
	for i, c := range s.CapAdd {
		if !capRE.MatchString(c) {
			return fmt.Errorf("spec CapAdd[%d] %q: not a capability name", i, c)
		}
		if c == "ALL" {
			return fmt.Errorf("spec CapAdd[%d]: ALL is refused; name the capabilities needed", i)
		}
	}
	targets := make(map[string]bool)
	for i, m := range s.Mounts {
		if err := m.validate(host); err != nil {
			return fmt.Errorf("spec Mounts[%d]: %w", i, err)
		}
		if targets[m.Target] {
			return fmt.Errorf("spec Mounts[%d]: target %s mounted twice", i, m.Target)
		}
		targets[m.Target] = true
	}
	return nil
}

func (m Mount) validate(host string) error {
	if !path.IsAbs(m.Target) || path.Clean(m.Target) != m.Target || m.Target == "/" {
		return fmt.Errorf("target %q: must be a clean absolute path other than /", m.Target)
	}
	switch m.Type {
	case "volume":
		if !nameRE.MatchString(m.Source) {
			return fmt.Errorf("source %q: not a volume name", m.Source)
		}
	case "bind":
		if !filepath.IsAbs(m.Source) {
			return fmt.Errorf("source %q: a bind mount needs an absolute host path", m.Source)
		}
		if exposesDockerSocket(m.Source, host) {
			return fmt.Errorf("source %q: would expose the Docker socket (or another host socket) to the sandbox; refused", m.Source)
		}
	default:
		return fmt.Errorf("type %q: must be volume or bind", m.Type)
	}
	return nil
}

// exposesDockerSocket reports whether a bind mount of source would give the
// container the engine's socket: source is a socket named docker.sock, one of
// the known socket paths or the client's own, or a directory holding one.
// Symbolic links are resolved where they exist.
func exposesDockerSocket(source, host string) bool {
	sockets := append([]string(nil), dockerSockets...)
	if p, ok := strings.CutPrefix(host, "unix://"); ok && p != "" {
		sockets = append(sockets, p)
	}
	src := resolve(source)
	if filepath.Base(src) == "docker.sock" || filepath.Base(filepath.Clean(source)) == "docker.sock" {
		return true
	}
	for _, sock := range sockets {
		for _, s := range []string{filepath.Clean(sock), resolve(sock)} {
			if s == src || src == "/" || strings.HasPrefix(s, src+"/") {
				return true
			}
		}
	}
	return isSocket(src)
}

// resolve cleans p and follows its symbolic links as far as they exist.
func resolve(p string) string {
	p = filepath.Clean(p)
	if r, err := filepath.EvalSymlinks(p); err == nil {
		return r
	}
	// Resolve the longest existing prefix, so a missing leaf under a
	// symlinked directory is still compared by its real path.
	dir, base := filepath.Split(p)
	if dir == "" || dir == p || filepath.Clean(dir) == p {
		return p
	}
	return filepath.Join(resolve(filepath.Clean(dir)), base)
}

// isSocket reports whether p is a Unix socket. Any socket is refused: a
// sandbox has no business with the host's sockets, and an engine socket may
// be named otherwise.
func isSocket(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.Mode()&os.ModeSocket != 0
}
