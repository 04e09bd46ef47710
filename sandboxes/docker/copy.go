package docker

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path"
	"strings"
	"time"

	"github.com/docker/docker/api/types/container"
)

// CopyFile writes content to the absolute path p inside a container (in any
// state but removed) through the engine's archive API: no shell runs in the
// container, so nothing in p or content is ever interpreted. The file gets
// uid, gid and mode; parent directories that do not exist are created with
// the same owner and mode 0755, and existing ones are left as they are. An
// existing file is replaced.
func (c *Client) CopyFile(ctx context.Context, id, p string, content []byte, uid, gid int, mode os.FileMode) error {
	if !path.IsAbs(p) || path.Clean(p) != p || p == "/" {
		return fmt.Errorf("copy to container %s: path %q: must be a clean absolute file path", id, p)
	}
	if uid < 0 || gid < 0 {
		return fmt.Errorf("copy to container %s: owner %d:%d: must not be negative", id, uid, gid)
	}
	if mode&^(os.ModePerm|os.ModeSetuid|os.ModeSetgid|os.ModeSticky) != 0 {
		return fmt.Errorf("copy to container %s: mode %v: must be permission bits of a regular file", id, mode)
	}

	// Extract at the deepest existing ancestor so that only missing
	// directories are in the archive: an entry for an existing directory
	// would change its owner and mode.
	base := path.Dir(p)
	var missing []string
	for {
		st, err := c.api.ContainerStatPath(ctx, id, base)
		if err == nil {
			if !st.Mode.IsDir() {
				return fmt.Errorf("copy to container %s: %s: not a directory", id, base)
			}
			break
		}
		err = c.wrap(err, "copy to container %s: stat %s", id, base)
		if !errors.Is(err, ErrNotFound) || base == "/" {
			return err
		}
		// The container itself may be the missing thing.
		if _, ierr := c.api.ContainerInspect(ctx, id); ierr != nil {
			return c.wrap(ierr, "copy to container %s", id)
		}
		missing = append([]string{base}, missing...)
		base = path.Dir(base)
	}

	archive, err := fileArchive(base, missing, p, content, uid, gid, mode)
	if err != nil {
		return fmt.Errorf("copy to container %s: %v", id, err)
	}
	err = c.api.CopyToContainer(ctx, id, base, bytes.NewReader(archive), container.CopyToContainerOptions{})
	return c.wrap(err, "copy to container %s: %s", id, p)
}

// fileArchive builds a tar stream, relative to base, of the directories dirs
// and the file p.
func fileArchive(base string, dirs []string, p string, content []byte, uid, gid int, mode os.FileMode) ([]byte, error) {
	rel := func(full string) string {
		return strings.TrimPrefix(strings.TrimPrefix(full, base), "/")
	}
	now := time.Now()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, d := range dirs {
		hdr := &tar.Header{
			Typeflag: tar.TypeDir,
			Name:     rel(d) + "/",
			Mode:     0o755,
			Uid:      uid,
			Gid:      gid,
			ModTime:  now,
			Format:   tar.FormatPAX,
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return nil, err
		}
	}
	hdr := &tar.Header{
		Typeflag: tar.TypeReg,
		Name:     rel(p),
		Mode:     tarMode(mode),
		Size:     int64(len(content)),
		Uid:      uid,
		Gid:      gid,
		ModTime:  now,
		Format:   tar.FormatPAX,
	}
	if err := tw.WriteHeader(hdr); err != nil {
		return nil, err
	}
	if _, err := tw.Write(content); err != nil {
		return nil, err
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// tarMode converts permission and special bits to a tar header mode.
func tarMode(m os.FileMode) int64 {
	mode := int64(m.Perm())
	if m&os.ModeSetuid != 0 {
		mode |= 0o4000
	}
	if m&os.ModeSetgid != 0 {
		mode |= 0o2000
	}
	if m&os.ModeSticky != 0 {
		mode |= 0o1000
	}
	return mode
}
