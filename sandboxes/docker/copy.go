package docker

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/docker/docker/api/types/container"
)

// File is a file to write into a container.
type File struct {
	Path     string // clean absolute path
	Content  []byte
	UID, GID int
	Mode     os.FileMode // permission bits, and setuid, setgid, sticky
}

// CopyFile writes one file into a container; see CopyFiles.
func (c *Client) CopyFile(ctx context.Context, id, p string, content []byte, uid, gid int, mode os.FileMode) error {
	return c.CopyFiles(ctx, id, []File{{Path: p, Content: content, UID: uid, GID: gid, Mode: mode}})
}

// CopyFiles writes files into a container (in any state but removed)
// through the engine's archive API, in one archive: no shell runs in the
// container, so nothing in a path or content is ever interpreted. Each
// file gets its owner and mode; parent directories that do not exist are
// created with the owner of the file that needs them and mode 0755, and
// existing ones are left as they are. Existing files are replaced.
//
// Which directories exist is asked of the engine. For a container that
// has never run, its filesystem is its image's, so the answers are kept
// per image and directory (outside its mounts) and the next fresh
// container of that image needs no questions: launching many sandboxes
// costs one archive call each.
func (c *Client) CopyFiles(ctx context.Context, id string, files []File) error {
	if len(files) == 0 {
		return nil
	}
	seen := make(map[string]bool, len(files))
	for _, f := range files {
		if err := checkFile(f); err != nil {
			return fmt.Errorf("copy to container %s: %w", id, err)
		}
		if seen[f.Path] {
			return fmt.Errorf("copy to container %s: path %q: given twice", id, f.Path)
		}
		seen[f.Path] = true
	}

	ctr, err := c.api.ContainerInspect(ctx, id)
	if err != nil {
		return c.wrap(err, "copy to container %s", id)
	}
	var mounts []string
	for _, m := range ctr.Mounts {
		mounts = append(mounts, path.Clean(m.Destination))
	}
	fresh := ctr.State != nil && ctr.State.Status == "created"
	exists := func(dir string) (bool, error) {
		if dir == "/" {
			return true, nil
		}
		cacheable := fresh && ctr.Image != "" && !nearMount(dir, mounts)
		if cacheable {
			// What an earlier call made in this container, then the image.
			if _, known := c.dirs.get(ctr.ID, dir); known {
				return true, nil
			}
			if ok, known := c.dirs.get(ctr.Image, dir); known {
				return ok, nil
			}
		}
		st, err := c.api.ContainerStatPath(ctx, id, dir)
		var ok bool
		switch {
		case err == nil && !st.Mode.IsDir():
			return false, fmt.Errorf("copy to container %s: %s: not a directory", id, dir)
		case err == nil:
			ok = true
		default:
			if err = c.wrap(err, "copy to container %s: stat %s", id, dir); !errors.Is(err, ErrNotFound) {
				return false, err
			}
		}
		if cacheable {
			c.dirs.put(ctr.Image, dir, ok)
		}
		return ok, nil
	}

	// Each file's missing parents, deepest first up to an existing one;
	// the archive is extracted at / and holds entries only for those, as
	// an entry for an existing directory would change its owner and mode.
	owner := map[string]File{} // missing directory → the file that needs it
	for _, f := range files {
		for dir := path.Dir(f.Path); ; dir = path.Dir(dir) {
			if _, ok := owner[dir]; ok {
				break
			}
			ok, err := exists(dir)
			if err != nil {
				return err
			}
			if ok {
				break
			}
			owner[dir] = f
		}
	}
	dirs := make([]string, 0, len(owner))
	for d := range owner {
		dirs = append(dirs, d)
	}
	slices.Sort(dirs) // parents before children

	archive, err := filesArchive(dirs, owner, files)
	if err != nil {
		return fmt.Errorf("copy to container %s: %w", id, err)
	}
	err = c.api.CopyToContainer(ctx, id, "/", bytes.NewReader(archive), container.CopyToContainerOptions{})
	if err != nil {
		return c.wrap(err, "copy to container %s: %s", id, filePaths(files))
	}
	if fresh {
		for _, d := range dirs {
			if !nearMount(d, mounts) {
				c.dirs.put(ctr.ID, d, true)
			}
		}
	}
	return nil
}

// checkFile validates one file to copy.
func checkFile(f File) error {
	if !path.IsAbs(f.Path) || path.Clean(f.Path) != f.Path || f.Path == "/" {
		return fmt.Errorf("path %q: must be a clean absolute file path", f.Path)
	}
	if f.UID < 0 || f.GID < 0 {
		return fmt.Errorf("%s: owner %d:%d: must not be negative", f.Path, f.UID, f.GID)
	}
	if f.Mode&^(os.ModePerm|os.ModeSetuid|os.ModeSetgid|os.ModeSticky) != 0 {
		return fmt.Errorf("%s: mode %v: must be permission bits of a regular file", f.Path, f.Mode)
	}
	return nil
}

func filePaths(files []File) string {
	paths := make([]string, len(files))
	for i, f := range files {
		paths[i] = f.Path
	}
	return strings.Join(paths, ", ")
}

// nearMount reports whether dir is a mount point, inside one, or holds
// one: what the engine shows there is not the image's.
func nearMount(dir string, mounts []string) bool {
	for _, m := range mounts {
		if dir == m || strings.HasPrefix(dir, m+"/") || strings.HasPrefix(m, dir+"/") {
			return true
		}
	}
	return false
}

// filesArchive builds a tar stream, relative to /, of the directories dirs
// (sorted, each owned as the file that needs it) and the files.
func filesArchive(dirs []string, owner map[string]File, files []File) ([]byte, error) {
	now := time.Now()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, d := range dirs {
		f := owner[d]
		hdr := &tar.Header{
			Typeflag: tar.TypeDir,
			Name:     strings.TrimPrefix(d, "/") + "/",
			Mode:     0o755,
			Uid:      f.UID,
			Gid:      f.GID,
			ModTime:  now,
			Format:   tar.FormatPAX,
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return nil, err
		}
	}
	for _, f := range files {
		hdr := &tar.Header{
			Typeflag: tar.TypeReg,
			Name:     strings.TrimPrefix(f.Path, "/"),
			Mode:     tarMode(f.Mode),
			Size:     int64(len(f.Content)),
			Uid:      f.UID,
			Gid:      f.GID,
			ModTime:  now,
			Format:   tar.FormatPAX,
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return nil, err
		}
		if _, err := tw.Write(f.Content); err != nil {
			return nil, err
		}
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

// maxImageDirs bounds the directory cache; past it, it starts over.
const maxImageDirs = 4096

// imageDirs remembers whether directories exist in the filesystems of
// fresh containers: by image ID (content-addressed, so an answer never goes
// stale), and by container ID the directories CopyFiles created in a
// container that has not run yet. A container's entries matter only until
// it starts; they go with the rest when the cache starts over.
type imageDirs struct {
	mu sync.Mutex
	m  map[imageDir]bool
}

type imageDir struct{ scope, dir string }

func (d *imageDirs) get(scope, dir string) (exists, known bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	exists, known = d.m[imageDir{scope, dir}]
	return exists, known
}

func (d *imageDirs) put(scope, dir string, exists bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.m == nil || len(d.m) >= maxImageDirs {
		d.m = make(map[imageDir]bool)
	}
	d.m[imageDir{scope, dir}] = exists
}
