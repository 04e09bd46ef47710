package docker

import (
	"context"
	"errors"
	"fmt"

	"github.com/docker/docker/api/types/volume"
)

// EnsureVolume creates the named local volume with labels unless it exists;
// an existing volume is kept as it is, labels included.
func (c *Client) EnsureVolume(ctx context.Context, name string, labels map[string]string) error {
	if !nameRE.MatchString(name) {
		return fmt.Errorf("volume name %q: must match %s", name, nameRE)
	}
	// Creating a volume that exists returns it unchanged, so this is
	// idempotent and free of check-then-create races.
	_, err := c.api.VolumeCreate(ctx, volume.CreateOptions{Name: name, Driver: "local", Labels: labels})
	return c.wrap(err, "create volume %s", name)
}

// RemoveVolume removes the named volume. A volume still used by a container,
// even a stopped one, gives ErrConflict; a missing one ErrNotFound.
func (c *Client) RemoveVolume(ctx context.Context, name string) error {
	return c.wrap(c.api.VolumeRemove(ctx, name, false), "remove volume %s", name)
}

// VolumeExists reports whether the named volume exists.
func (c *Client) VolumeExists(ctx context.Context, name string) (bool, error) {
	_, err := c.api.VolumeInspect(ctx, name)
	if err == nil {
		return true, nil
	}
	err = c.wrap(err, "inspect volume %s", name)
	if errors.Is(err, ErrNotFound) {
		return false, nil
	}
	return false, err
}

// ImageExists reports whether the image ref is present on the engine.
func (c *Client) ImageExists(ctx context.Context, ref string) (bool, error) {
	if ref == "" {
		return false, fmt.Errorf("image reference: required")
	}
	_, err := c.api.ImageInspect(ctx, ref)
	if err == nil {
		return true, nil
	}
	err = c.wrap(err, "inspect image %s", ref)
	if errors.Is(err, ErrNotFound) {
		return false, nil
	}
	return false, err
}
