package benchkit

import (
	"errors"
	"fmt"
	"os/exec"
	"strings"
)

// RemoveGroup force-removes the containers labelled with group, then its
// volumes: those labelled with it (thon's) and those named after it (made
// by `docker run -v thon-workspace-<group>-<user>:...`).
func RemoveGroup(group string) error {
	ids, err := dockerLines("ps", "-aq", "--filter", "label=thon.group="+group)
	if err != nil {
		return err
	}
	if len(ids) > 0 {
		if out, err := exec.Command("docker", append([]string{"rm", "-f", "-v"}, ids...)...).CombinedOutput(); err != nil {
			return fmt.Errorf("docker rm: %v: %s", err, strings.TrimSpace(string(out)))
		}
	}
	labelled, err := dockerLines("volume", "ls", "-q", "--filter", "label=thon.group="+group)
	if err != nil {
		return err
	}
	named, err := dockerLines("volume", "ls", "-q", "--filter", "name=thon-workspace-"+group+"-")
	if err != nil {
		return err
	}
	vols := map[string]bool{}
	for _, v := range append(labelled, named...) {
		vols[v] = true
	}
	if len(vols) == 0 {
		return nil
	}
	args := []string{"volume", "rm", "-f"}
	for v := range vols {
		args = append(args, v)
	}
	if out, err := exec.Command("docker", args...).CombinedOutput(); err != nil {
		return fmt.Errorf("docker volume rm: %v: %s", err, strings.TrimSpace(string(out)))
	}
	return nil
}

// dockerLines runs the docker CLI with args and returns the words of its
// output.
func dockerLines(args ...string) ([]string, error) {
	out, err := exec.Command("docker", args...).Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return nil, fmt.Errorf("docker %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(string(ee.Stderr)))
		}
		return nil, fmt.Errorf("docker %s: %v", strings.Join(args, " "), err)
	}
	return strings.Fields(string(out)), nil
}
