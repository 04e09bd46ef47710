// Package docker is thon's container runtime: the only package that talks to
// the Docker engine. It exposes a narrow API in thon's own types (no Docker
// types in exported signatures) with the hardening every sandbox gets built
// in: the published port bound to 127.0.0.1 only, no-new-privileges, all
// capabilities dropped but the ones asked for, memory, CPU and pids limits,
// the restart policy unless-stopped (see RestartPolicy), and never the Docker
// socket mounted.
package docker

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/client"
)

// Errors the runtime reports; test them with errors.Is.
var (
	// ErrNotFound reports a container, volume or image the engine does not
	// know.
	ErrNotFound = errors.New("not found")

	// ErrConflict reports an operation the object's state forbids: a
	// container name already in use, pausing a paused container, removing a
	// volume in use.
	ErrConflict = errors.New("conflict")

	// ErrPortInUse reports that the host port a container publishes is
	// already taken, by another container or by any other process. The
	// error is a *PortInUseError.
	ErrPortInUse = errors.New("host port already in use")

	// ErrUnreachable reports that the Docker engine could not be reached.
	ErrUnreachable = errors.New("docker engine unreachable")
)

// PortInUseError is returned when a container cannot start because its host
// port on 127.0.0.1 is taken. It matches ErrPortInUse.
type PortInUseError struct {
	ContainerID string
	HostPort    int // 0 if unknown
	Err         error
}

func (e *PortInUseError) Error() string {
	if e.HostPort > 0 {
		return fmt.Sprintf("start container %s: host port 127.0.0.1:%d already in use: %v", e.ContainerID, e.HostPort, e.Err)
	}
	return fmt.Sprintf("start container %s: host port already in use: %v", e.ContainerID, e.Err)
}

// Is makes errors.Is(err, ErrPortInUse) true.
func (e *PortInUseError) Is(target error) bool { return target == ErrPortInUse }

// Unwrap returns the engine's error.
func (e *PortInUseError) Unwrap() error { return e.Err }

// unreachableError is the error of any call made while the engine cannot be
// reached.
type unreachableError struct {
	host string
	err  error
}

func (e *unreachableError) Error() string {
	return fmt.Sprintf("docker engine unreachable at %s: %v", e.host, e.err)
}

func (e *unreachableError) Is(target error) bool { return target == ErrUnreachable }

func (e *unreachableError) Unwrap() error { return e.err }

// Client is a connection to one Docker engine. It is safe for concurrent use.
type Client struct {
	api *client.Client
	// dirs remembers which directories the images of fresh containers
	// have (see CopyFiles).
	dirs imageDirs
}

// New returns a client for the engine at host, such as
// "unix:///var/run/docker.sock" or "tcp://127.0.0.1:2375". An empty host means
// DOCKER_HOST (and the other DOCKER_* variables) or the default socket. New
// does no network I/O; the API version is negotiated on the first call.
func New(host string) (*Client, error) {
	opts := []client.Opt{client.FromEnv, client.WithAPIVersionNegotiation()}
	if host != "" {
		if err := checkHost(host); err != nil {
			return nil, fmt.Errorf("docker host %q: %w", host, err)
		}
		opts = append(opts, client.WithHost(host))
	}
	api, err := client.NewClientWithOpts(opts...)
	if err != nil {
		if host == "" {
			return nil, fmt.Errorf("docker client: %w", err)
		}
		return nil, fmt.Errorf("docker host %q: %w", host, err)
	}
	return &Client{api: api}, nil
}

// checkHost accepts the engine addresses the client can dial by itself:
// unix://path, tcp://host:port, http:// and https:// URLs.
func checkHost(host string) error {
	scheme, rest, ok := strings.Cut(host, "://")
	if !ok {
		return fmt.Errorf("must be unix:///path/to/socket or tcp://host:port")
	}
	switch scheme {
	case "unix":
		if !strings.HasPrefix(rest, "/") {
			return fmt.Errorf("unix socket path must be absolute")
		}
	case "tcp", "http", "https":
		if _, _, err := net.SplitHostPort(strings.TrimSuffix(strings.SplitN(rest, "/", 2)[0], "/")); err != nil {
			return fmt.Errorf("%s address: %w", scheme, err)
		}
	default:
		return fmt.Errorf("scheme %q: must be unix, tcp, http or https", scheme)
	}
	return nil
}

// Host returns the address of the engine the client talks to.
func (c *Client) Host() string { return c.api.DaemonHost() }

// Close releases the client's idle connections.
func (c *Client) Close() error { return c.api.Close() }

// Ping checks that the engine answers.
func (c *Client) Ping(ctx context.Context) error {
	if _, err := c.api.Ping(ctx); err != nil {
		if client.IsErrConnectionFailed(err) {
			return &unreachableError{host: c.Host(), err: lowerFirst(err)}
		}
		return fmt.Errorf("docker engine at %s: ping: %w", c.Host(), err)
	}
	return nil
}

// wrap turns an engine error into one of ours, prefixed with what was being
// done.
func (c *Client) wrap(err error, format string, args ...any) error {
	if err == nil {
		return nil
	}
	what := fmt.Sprintf(format, args...)
	switch {
	case client.IsErrConnectionFailed(err):
		return fmt.Errorf("%s: %w", what, &unreachableError{host: c.Host(), err: lowerFirst(err)})
	case cerrdefs.IsNotFound(err):
		return fmt.Errorf("%s: %w: %w", what, ErrNotFound, err)
	case cerrdefs.IsConflict(err):
		return fmt.Errorf("%s: %w: %w", what, ErrConflict, err)
	default:
		return fmt.Errorf("%s: %w", what, err)
	}
}

// lowerFirst keeps an error's chain but starts its message in lower case, as
// the engine's client capitalises its connection errors.
func lowerFirst(err error) error {
	msg := err.Error()
	if msg == "" || strings.ToLower(msg[:1]) == msg[:1] {
		return err
	}
	return &messageError{msg: strings.ToLower(msg[:1]) + msg[1:], err: err}
}

type messageError struct {
	msg string
	err error
}

func (e *messageError) Error() string { return e.msg }
func (e *messageError) Unwrap() error { return e.err }
