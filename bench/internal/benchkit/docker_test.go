package benchkit

import (
	"context"
	"os/exec"
	"regexp"
	"strings"
	"testing"

	"github.com/thon-dev/thon/internal/dockertest"
)

// TestRemoveGroup makes, with the real engine, what thon and the
// reference loop leave behind for a group, and removes it; and asks the
// engine its version as DescribeMachine does.
func TestRemoveGroup(t *testing.T) {
	dockertest.Client(t)
	group := dockertest.Name("bk")
	other := dockertest.Name("bk")
	docker := func(args ...string) string {
		t.Helper()
		out, err := exec.Command("docker", args...).CombinedOutput()
		if err != nil {
			t.Fatalf("docker %v: %v: %s", args, err, out)
		}
		return strings.TrimSpace(string(out))
	}
	t.Cleanup(func() {
		_ = RemoveGroup(group)
		_ = RemoveGroup(other)
	})
	docker("create", "--label", "thon.group="+group, "-v", "thon-workspace-"+group+"-alice:/workspace", dockertest.Image, "sleep", "1")
	docker("volume", "create", "--label", "thon.group="+group, "thon-"+group+"-bob")
	docker("create", "--label", "thon.group="+other, dockertest.Image, "sleep", "1")
	docker("volume", "create", "thon-workspace-"+other+"-alice")

	if err := RemoveGroup(group); err != nil {
		t.Fatal(err)
	}
	if got := docker("ps", "-aq", "--filter", "label=thon.group="+group); got != "" {
		t.Errorf("containers left: %s", got)
	}
	for _, filter := range []string{"label=thon.group=" + group, "name=thon-workspace-" + group + "-"} {
		if got := docker("volume", "ls", "-q", "--filter", filter); got != "" {
			t.Errorf("volumes left (%s): %s", filter, got)
		}
	}
	if got := docker("ps", "-aq", "--filter", "label=thon.group="+other); got == "" {
		t.Error("another group's container removed")
	}
	if got := docker("volume", "ls", "-q", "--filter", "name=thon-workspace-"+other+"-"); got == "" {
		t.Error("another group's volume removed")
	}
	if err := RemoveGroup(group); err != nil {
		t.Errorf("nothing left to remove: %v", err)
	}
	if m := DescribeMachine(context.Background(), Tools{Docker: true}); !regexp.MustCompile(`^\d+\.\d+`).MatchString(m.Docker) {
		t.Errorf("engine version %q", m.Docker)
	}
}
