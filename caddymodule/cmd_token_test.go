package caddymodule

import (
	"bytes"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"

	"github.com/thon-dev/thon/auth"
)

// runTokenCmd runs `thon token args...` in this process, as the thon
// binary would, and returns what it printed.
func runTokenCmd(t *testing.T, args ...string) (string, error) {
	t.Helper()
	var out bytes.Buffer
	err := runCmd(t, "token", &out, &out, args...)
	return out.String(), err
}

// lastLine is the last line of out.
func lastLine(out string) string {
	lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
	return lines[len(lines)-1]
}

func TestIntegrationTokenCommand(t *testing.T) {
	in := startCaddy(t, siteConfig(t.TempDir(), ""))
	address := fmt.Sprintf("localhost:%d", in.adminPort(t))

	out, err := runTokenCmd(t, "create", "--name", "ci", "--address", address)
	if err != nil {
		t.Fatalf("create: %v\n%s", err, out)
	}
	token := lastLine(out)
	if !strings.HasPrefix(token, auth.TokenPrefix) || strings.Contains(token, " ") {
		t.Fatalf("the last line is not the token alone:\n%s", out)
	}
	if x := call(t, "GET", in.base+"/api/groups", "", "", bearer(token)); x.status != http.StatusOK {
		t.Errorf("the new token on /api: %d %s", x.status, x.body)
	}

	out, err = runTokenCmd(t, "list", "--address", address)
	if err != nil {
		t.Fatalf("list: %v\n%s", err, out)
	}
	if !strings.Contains(out, "NAME") || !strings.Contains(out, "ci  ") || !strings.Contains(out, token[:len(auth.TokenPrefix)+6]) ||
		strings.Contains(out, token) {
		t.Errorf("list:\n%s", out)
	}

	if out, err := runTokenCmd(t, "create", "--name", "ci", "--address", address); err == nil || !strings.Contains(err.Error(), "exists already") {
		t.Errorf("a second ci: %v\n%s", err, out)
	}
	if _, err := runTokenCmd(t, "create", "--address", address); err == nil || !strings.Contains(err.Error(), "--name is required") {
		t.Errorf("create without --name: %v", err)
	}
	if _, err := runTokenCmd(t, "create", "--name", "Bad Name", "--address", address); err == nil || !strings.Contains(err.Error(), "400") {
		t.Errorf("create with a bad name: %v", err)
	}

	out, err = runTokenCmd(t, "revoke", "ci", "--address", address)
	if err != nil || !strings.Contains(out, `revoked organiser API token "ci"`) {
		t.Fatalf("revoke: %v\n%s", err, out)
	}
	if x := call(t, "GET", in.base+"/api/groups", "", "", bearer(token)); x.status != http.StatusUnauthorized {
		t.Errorf("the revoked token on /api: %d %s", x.status, x.body)
	}
	if _, err := runTokenCmd(t, "revoke", "ci", "--address", address); err == nil || !strings.Contains(err.Error(), "404") {
		t.Errorf("revoking it again: %v", err)
	}
	if _, err := runTokenCmd(t, "list", "--address", fmt.Sprintf("localhost:%d", freePort(t))); err == nil ||
		!strings.Contains(err.Error(), "thon is not running") {
		t.Errorf("list against nothing: %v", err)
	}
}

// TestIntegrationAdminUnixSocket runs the admin endpoint on a unix socket
// with mode 0600, as the README suggests, and drives it with the CLI.
func TestIntegrationAdminUnixSocket(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "admin.sock")
	site := freePort(t)
	cfg := strings.Replace(siteConfig(t.TempDir(), "")(site, 0), "admin localhost:0", "admin unix/"+sock+"|0600", 1)
	if err := caddy.Load(adapt(t, cfg), true); err != nil {
		t.Fatalf("loading config: %v", err)
	}
	t.Cleanup(func() { _ = caddy.Stop() })
	in := &instance{t: t, base: fmt.Sprintf("http://127.0.0.1:%d", site)}
	in.waitReady()

	var fi os.FileInfo
	deadline := time.Now().Add(10 * time.Second)
	for {
		var err error
		if fi, err = os.Stat(sock); err == nil && fi.Mode()&os.ModeSocket != 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no admin socket at %s: %v", sock, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if perm := fi.Mode().Perm(); perm != 0o600 {
		t.Errorf("admin socket mode %04o, want 0600", perm)
	}
	for _, address := range []string{"unix/" + sock, "unix/" + sock + "|0600"} {
		out, err := runTokenCmd(t, "create", "--name", "sock-"+fmt.Sprint(len(address)), "--address", address)
		if err != nil {
			t.Fatalf("create through %s: %v\n%s", address, err, out)
		}
		if x := call(t, "GET", in.base+"/api/groups", "", "", bearer(lastLine(out))); x.status != http.StatusOK {
			t.Errorf("the token made through %s: %d %s", address, x.status, x.body)
		}
	}
}
