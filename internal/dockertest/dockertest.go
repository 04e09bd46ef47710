// Package dockertest gives tests a real Docker engine with thon's sandbox
// test image (thon/sandbox-test:latest) built, and unique names and ports
// so tests that run at the same time never collide.
package dockertest

import (
	"context"
	"crypto/rand"
	"fmt"
	"math/big"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/thon-dev/thon/sandboxes/docker"
)

// Image is the sandbox test image.
const Image = "thon/sandbox-test:latest"

var (
	imageOnce sync.Once
	imageErr  error
	// imageTag is Image by its content hash, as this tree built it:
	// thon/sandbox-test:<12 hex digits>. Other checkouts on the same engine
	// may tag another build latest at any time; this tag stays ours.
	imageTag string
)

// contentHash finds the hash build-image.sh reports.
var contentHash = regexp.MustCompile(`content hash ([0-9a-f]{12})`)

// Client returns a client of the local engine with Image present, or
// fails the test: thon's tests run against a real dockerd.
func Client(t testing.TB) *docker.Client {
	t.Helper()
	c, err := docker.New("")
	if err != nil {
		t.Fatalf("docker client: %v", err)
	}
	t.Cleanup(func() { _ = c.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := c.Ping(ctx); err != nil {
		t.Fatalf("this test needs a running Docker engine (apt-get install docker.io, start dockerd): %v", err)
	}
	imageOnce.Do(func() {
		_, file, _, _ := runtime.Caller(0)
		script := filepath.Join(filepath.Dir(file), "..", "codeservertest", "build-image.sh")
		cmd := exec.Command("sh", script, Image)
		cmd.Dir = filepath.Join(filepath.Dir(file), "..", "..")
		out, err := cmd.CombinedOutput()
		if err != nil {
			imageErr = fmt.Errorf("building %s: %w\n%s", Image, err, out)
			return
		}
		m := contentHash.FindSubmatch(out)
		if m == nil {
			imageErr = fmt.Errorf("building %s: the script reported no content hash:\n%s", Image, out)
			return
		}
		imageTag = strings.TrimSuffix(Image, ":latest") + ":" + string(m[1])
	})
	if imageErr != nil {
		t.Fatal(imageErr)
	}
	return c
}

// Name returns a DNS label unique to this run, starting with prefix.
func Name(prefix string) string {
	return prefix + strings.ToLower(rand.Text()[:8])
}

// PortRange returns the first port of a range of n ports chosen at random
// above 20000, so parallel test binaries rarely share one; the sandbox
// manager skips ports that are taken anyway.
func PortRange(n int) int {
	v, err := rand.Int(rand.Reader, big.NewInt(int64(40000-n)))
	if err != nil {
		panic(err)
	}
	return 20000 + int(v.Int64())
}

// RemoveGroup removes every container and volume labelled with the group,
// for test cleanup.
func RemoveGroup(t testing.TB, group string) {
	t.Helper()
	for _, args := range [][]string{
		{"ps", "-aq", "--filter", "label=thon.group=" + group},
		{"volume", "ls", "-q", "--filter", "label=thon.group=" + group},
	} {
		out, err := exec.Command("docker", args...).Output()
		if err != nil {
			t.Logf("docker %v: %v", args, err)
			continue
		}
		ids := strings.Fields(string(out))
		if len(ids) == 0 {
			continue
		}
		rm := []string{"rm", "-f"}
		if args[0] == "volume" {
			rm = []string{"volume", "rm", "-f"}
		}
		if out, err := exec.Command("docker", append(rm, ids...)...).CombinedOutput(); err != nil {
			t.Logf("docker %v: %v %s", rm, err, out)
		}
	}
}
