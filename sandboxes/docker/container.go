package docker

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/mount"
	"github.com/docker/go-connections/nat"
)

// Container is what the engine reports about a container.
type Container struct {
	ID    string
	Name  string // without the engine's leading slash
	Image string // the reference it was created from
	// State is the engine's state: "created", "running", "paused",
	// "restarting", "removing", "exited" or "dead".
	State  string
	Labels map[string]string
	// HostPort is the port on the host its published port is bound to, 0 if
	// none.
	HostPort int
	// StartedAt is when it last started; zero if it never did.
	StartedAt time.Time
	// RestartPolicy is the engine's restart policy: RestartPolicy for the
	// containers Create makes, "no" (or "") for older ones.
	RestartPolicy string
	// RestartCount is how often the engine restarted it by its policy since
	// it was last started by hand or the engine last started; the engine
	// resets it then.
	RestartCount int
	// Exit is how it last ended; nil if it never did.
	Exit *Exit
}

// Exit is how a container's main process last ended.
type Exit struct {
	Code      int
	OOMKilled bool
	// Error is the engine's error text, such as why the container could not
	// be started again; empty for a plain exit.
	Error string
	At    time.Time
}

// RestartPolicy is the restart policy of every container Create makes: the
// engine starts it again when it exits by itself (with a delay that doubles
// from 100 ms up to a minute while it keeps failing) and when the engine
// itself starts, but not after a stop or kill through the engine's API.
const RestartPolicy = string(container.RestartPolicyUnlessStopped)

// Create creates a container from spec without starting it and returns its
// ID. The image must be present: nothing is pulled.
func (c *Client) Create(ctx context.Context, spec Spec) (string, error) {
	if err := spec.validate(c.Host()); err != nil {
		return "", err
	}
	port, err := nat.NewPort("tcp", strconv.Itoa(spec.ContainerPort))
	if err != nil {
		return "", fmt.Errorf("spec ContainerPort %d: %w", spec.ContainerPort, err)
	}

	cfg := &container.Config{
		Image:        spec.Image,
		Labels:       spec.Labels,
		Env:          spec.Env,
		User:         spec.User,
		ExposedPorts: nat.PortSet{port: struct{}{}},
	}
	if len(spec.Cmd) > 0 {
		cfg.Cmd = spec.Cmd
	}

	mounts := make([]mount.Mount, 0, len(spec.Mounts))
	for _, m := range spec.Mounts {
		mt := mount.Mount{Type: mount.Type(m.Type), Source: m.Source, Target: m.Target}
		if m.Type == "volume" && len(m.VolumeLabels) > 0 {
			mt.VolumeOptions = &mount.VolumeOptions{Labels: m.VolumeLabels}
		}
		mounts = append(mounts, mt)
	}
	pids := spec.PidsLimit
	host := &container.HostConfig{
		PortBindings: nat.PortMap{
			port: []nat.PortBinding{{HostIP: "127.0.0.1", HostPort: strconv.Itoa(spec.HostPort)}},
		},
		RestartPolicy: container.RestartPolicy{Name: container.RestartPolicyUnlessStopped},
		SecurityOpt:   []string{"no-new-privileges"},
		CapDrop:       []string{"ALL"},
		CapAdd:        spec.CapAdd,
		Mounts:        mounts,
		Resources: container.Resources{
			Memory:     spec.MemoryBytes,
			MemorySwap: spec.MemoryBytes,
			NanoCPUs:   spec.NanoCPUs,
			PidsLimit:  &pids,
		},
	}

	resp, err := c.api.ContainerCreate(ctx, cfg, host, nil, nil, spec.Name)
	if err != nil {
		return "", c.wrap(err, "create container %s", spec.Name)
	}
	return resp.ID, nil
}

// Start starts a created or stopped container. A host port that is taken
// gives a *PortInUseError.
func (c *Client) Start(ctx context.Context, id string) error {
	err := c.api.ContainerStart(ctx, id, container.StartOptions{})
	if err == nil {
		return nil
	}
	if isPortInUse(err) {
		pe := &PortInUseError{ContainerID: id, Err: err}
		if ct, ierr := c.Inspect(ctx, id); ierr == nil {
			pe.HostPort = ct.HostPort
		}
		return pe
	}
	return c.wrap(err, "start container %s", id)
}

// isPortInUse recognises the engine's errors for a taken host port: another
// container holds it ("port is already allocated") or another process does
// ("address already in use").
func isPortInUse(err error) bool {
	msg := err.Error()
	return strings.Contains(msg, "port is already allocated") || strings.Contains(msg, "address already in use")
}

// Pause freezes every process of a running container.
func (c *Client) Pause(ctx context.Context, id string) error {
	return c.wrap(c.api.ContainerPause(ctx, id), "pause container %s", id)
}

// Unpause resumes a paused container.
func (c *Client) Unpause(ctx context.Context, id string) error {
	return c.wrap(c.api.ContainerUnpause(ctx, id), "unpause container %s", id)
}

// Stop stops a container, sending SIGTERM and SIGKILL after the engine's
// grace period. Stopping a stopped container is not an error. A stopped
// container stays stopped: its restart policy does not start it again, not
// even when the engine restarts.
func (c *Client) Stop(ctx context.Context, id string) error {
	return c.wrap(c.api.ContainerStop(ctx, id, container.StopOptions{}), "stop container %s", id)
}

// UpdateRestartPolicy gives an existing container RestartPolicy, as Create
// does for new ones.
func (c *Client) UpdateRestartPolicy(ctx context.Context, id string) error {
	_, err := c.api.ContainerUpdate(ctx, id, container.UpdateConfig{
		RestartPolicy: container.RestartPolicy{Name: container.RestartPolicyUnlessStopped},
	})
	return c.wrap(err, "update the restart policy of container %s", id)
}

// Remove removes a container, killing it first if it runs. removeVolumes
// removes its anonymous volumes too; named volumes are always kept (remove
// them with RemoveVolume).
func (c *Client) Remove(ctx context.Context, id string, removeVolumes bool) error {
	err := c.api.ContainerRemove(ctx, id, container.RemoveOptions{Force: true, RemoveVolumes: removeVolumes})
	return c.wrap(err, "remove container %s", id)
}

// Inspect reports on one container, by ID or name.
func (c *Client) Inspect(ctx context.Context, id string) (Container, error) {
	resp, err := c.api.ContainerInspect(ctx, id)
	if err != nil {
		return Container{}, c.wrap(err, "inspect container %s", id)
	}
	return fromInspect(resp), nil
}

// List reports on every container, in any state, that has all the labels of
// labelFilter (an empty value matches any value of the key).
func (c *Client) List(ctx context.Context, labelFilter map[string]string) ([]Container, error) {
	summaries, err := c.api.ContainerList(ctx, container.ListOptions{All: true, Filters: labelArgs(labelFilter)})
	if err != nil {
		return nil, c.wrap(err, "list containers")
	}
	out := make([]Container, 0, len(summaries))
	for _, s := range summaries {
		// The list lacks port bindings of stopped containers and start
		// times, so each container is inspected.
		resp, err := c.api.ContainerInspect(ctx, s.ID)
		if err != nil {
			err = c.wrap(err, "inspect container %s", s.ID)
			if errors.Is(err, ErrNotFound) {
				continue // removed since the list was taken
			}
			return nil, err
		}
		out = append(out, fromInspect(resp))
	}
	return out, nil
}

// labelArgs turns a label filter into engine filters; "k" matches any value.
func labelArgs(labels map[string]string) filters.Args {
	args := filters.NewArgs()
	for k, v := range labels {
		if v == "" {
			args.Add("label", k)
		} else {
			args.Add("label", k+"="+v)
		}
	}
	return args
}

func fromInspect(resp container.InspectResponse) Container {
	if resp.ContainerJSONBase == nil {
		return Container{}
	}
	ct := Container{ID: resp.ID, Name: strings.TrimPrefix(resp.Name, "/")}
	if resp.Config != nil {
		ct.Image = resp.Config.Image
		ct.Labels = resp.Config.Labels
	}
	ct.RestartCount = resp.RestartCount
	if s := resp.State; s != nil {
		ct.State = string(s.Status)
		ct.StartedAt = engineTime(s.StartedAt)
		// The engine clears the exit code and error when the container
		// runs again; the time and the OOM flag stay.
		if at := engineTime(s.FinishedAt); !at.IsZero() {
			ct.Exit = &Exit{Code: s.ExitCode, OOMKilled: s.OOMKilled, Error: s.Error, At: at}
		}
	}
	if resp.HostConfig != nil {
		ct.HostPort = hostPort(resp.HostConfig.PortBindings)
		ct.RestartPolicy = string(resp.HostConfig.RestartPolicy.Name)
	}
	return ct
}

// engineTime parses a time the engine reports; its zero time
// ("0001-01-01T00:00:00Z") and anything unparsable give the zero time.
func engineTime(s string) time.Time {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil || t.Year() <= 1 {
		return time.Time{}
	}
	return t
}

// hostPort is the host port bound to the lowest published container port.
func hostPort(bindings nat.PortMap) int {
	ports := make([]nat.Port, 0, len(bindings))
	for p := range bindings {
		ports = append(ports, p)
	}
	slices.SortFunc(ports, func(a, b nat.Port) int { return cmp.Compare(a.Int(), b.Int()) })
	for _, p := range ports {
		for _, b := range bindings[p] {
			if n, err := strconv.Atoi(b.HostPort); err == nil && n > 0 {
				return n
			}
		}
	}
	return 0
}
