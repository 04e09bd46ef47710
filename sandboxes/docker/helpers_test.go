package docker

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os/exec"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

// testImage is built from Debian packages by ../../internal/codeservertest/build-image.sh.
const testImage = "thon/sandbox-test:latest"

// testLabel marks everything the tests create.
var testLabel = map[string]string{"thon.test": "1"}

var (
	imageOnce sync.Once
	imageErr  error
	// testImageBuilt is testImage by its content hash, as this tree built
	// it: other checkouts on the engine may tag their build latest at any
	// time. Tests that need this tree's test server use it.
	testImageBuilt string
)

// testClient returns a client of the local engine with the test image
// present, or fails the test: these tests need a real dockerd.
func testClient(t *testing.T) *Client {
	t.Helper()
	c, err := New("")
	if err != nil {
		t.Fatalf("docker client: %v", err)
	}
	t.Cleanup(func() { _ = c.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := c.Ping(ctx); err != nil {
		t.Fatalf("these tests need a running Docker engine (apt-get install docker.io, start dockerd; DESIGN.md, test environment): %v", err)
	}
	imageOnce.Do(func() {
		// The script rebuilds only when the image's content hash differs,
		// so a changed test server is never tested through a stale image.
		out, err := exec.Command("sh", "../../internal/codeservertest/build-image.sh", testImage).CombinedOutput()
		if err != nil {
			imageErr = fmt.Errorf("building %s with ../../internal/codeservertest/build-image.sh: %w\n%s", testImage, err, out)
			return
		}
		m := regexp.MustCompile(`content hash ([0-9a-f]{12})`).FindSubmatch(out)
		if m == nil {
			imageErr = fmt.Errorf("building %s: the script reported no content hash:\n%s", testImage, out)
			return
		}
		testImageBuilt = strings.TrimSuffix(testImage, ":latest") + ":" + string(m[1])
	})
	if imageErr != nil {
		t.Fatal(imageErr)
	}
	return c
}

// uniqueName returns a container or volume name no other test uses.
func uniqueName(t *testing.T, kind string) string {
	t.Helper()
	b := make([]byte, 4)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	test := strings.ToLower(regexp.MustCompile(`[^a-zA-Z0-9]+`).ReplaceAllString(t.Name(), "-"))
	if len(test) > 40 {
		test = test[:40]
	}
	return fmt.Sprintf("thon-test-%s-%s-%s", kind, strings.Trim(test, "-"), hex.EncodeToString(b))
}

// freePort returns a loopback port nothing listens on at the moment.
func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	if err := ln.Close(); err != nil {
		t.Fatal(err)
	}
	return port
}

// testSpec is a hardened spec of a sandbox from the test image on a free
// loopback port.
func testSpec(t *testing.T) Spec {
	t.Helper()
	labels := map[string]string{"thon.test": "1", "thon.test.name": t.Name()}
	return Spec{
		Name:        uniqueName(t, "ct"),
		Image:       testImage,
		Labels:      labels,
		Env:         []string{"THON_TEST=1"},
		HostPort:    freePort(t),
		MemoryBytes: 128 << 20,
		NanoCPUs:    500_000_000,
		PidsLimit:   64,
	}
}

// create creates spec's container and removes it when the test ends.
func create(t *testing.T, c *Client, spec Spec) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	id, err := c.Create(ctx, spec)
	if err != nil {
		t.Fatalf("create %s: %v", spec.Name, err)
	}
	t.Cleanup(func() { removeQuietly(t, c, id) })
	return id
}

func removeQuietly(t *testing.T, c *Client, id string) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := c.Remove(ctx, id, true); err != nil && !errors.Is(err, ErrNotFound) {
		t.Errorf("cleanup: %v", err)
	}
}

// ensureVolume creates a labelled volume and removes it when the test ends
// (after the containers using it, which were registered later).
func ensureVolume(t *testing.T, c *Client) string {
	t.Helper()
	name := uniqueName(t, "vol")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := c.EnsureVolume(ctx, name, testLabel); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := c.RemoveVolume(ctx, name); err != nil && !errors.Is(err, ErrNotFound) {
			t.Errorf("cleanup: %v", err)
		}
	})
	return name
}

// shortClient gives up on a request quickly, to see that a paused sandbox
// does not answer.
var shortClient = &http.Client{Timeout: 2 * time.Second}

// get fetches http://127.0.0.1:port/path.
func get(port int, path string) (int, string, error) {
	resp, err := shortClient.Get(fmt.Sprintf("http://127.0.0.1:%d%s", port, path))
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

func put(port int, path, body string) (int, error) {
	req, err := http.NewRequest(http.MethodPut, fmt.Sprintf("http://127.0.0.1:%d%s", port, path), strings.NewReader(body))
	if err != nil {
		return 0, err
	}
	resp, err := shortClient.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode, nil
}

// waitHealthy waits until the sandbox on port answers /healthz like
// code-server, or fails the test after a generous bound.
func waitHealthy(t *testing.T, port int) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	var lastErr error
	for time.Now().Before(deadline) {
		status, body, err := get(port, "/healthz")
		if err == nil && status == http.StatusOK && strings.Contains(body, `"status":"alive"`) {
			return
		}
		lastErr = fmt.Errorf("status %d, body %q, err %v", status, body, err)
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("sandbox on 127.0.0.1:%d never became healthy: %v", port, lastErr)
}

func start(t *testing.T, c *Client, id string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := c.Start(ctx, id); err != nil {
		t.Fatal(err)
	}
}
