// Package nginxtest runs a real nginx for tests: a private prefix with a
// minimal main configuration, nginx in the foreground until the test ends,
// free loopback ports for its servers, and a description of a directory
// tree so a test can check that nginx files were written and removed
// exactly.
package nginxtest

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// Bin is the Debian nginx the tests run.
const Bin = "/usr/sbin/nginx"

// Require fails the test, rather than skipping it, when nginx is not
// installed.
func Require(t testing.TB) {
	t.Helper()
	if _, err := exec.LookPath(Bin); err != nil {
		t.Fatalf("nginx is required (apt-get install nginx): %v", err)
	}
}

// MainConf is a minimal nginx.conf keeping every file nginx writes (pid,
// logs, temporary files) under dir, with extra inside its http block: an
// include of a sites-enabled directory, as Debian's has, or servers.
func MainConf(dir, extra string) string {
	user := ""
	if os.Geteuid() == 0 {
		// Workers would run as nobody and could not enter the 0700
		// temporary directories (to read /ca.crt, say).
		user = "user root;\n"
	}
	return fmt.Sprintf(`%sworker_processes 1;
pid %[2]s/nginx.pid;
error_log %[2]s/error.log info;
events {
    worker_connections 128;
}
http {
    access_log %[2]s/access.log;
    client_body_temp_path %[2]s/temp/body;
    proxy_temp_path %[2]s/temp/proxy;
    fastcgi_temp_path %[2]s/temp/fastcgi;
    uwsgi_temp_path %[2]s/temp/uwsgi;
    scgi_temp_path %[2]s/temp/scgi;
    %[3]s
}
`, user, dir, extra)
}

// IncludeSites is the directive of a main configuration that loads every
// site in sitesEnabled, which need not exist yet.
func IncludeSites(sitesEnabled string) string {
	return "include " + sitesEnabled + "/*;"
}

// WriteConf makes prefix an nginx prefix, creating it and its temp
// directory, writes there an nginx.conf from MainConf(prefix, extra) and
// returns the configuration's path.
func WriteConf(t testing.TB, prefix, extra string) (conf string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Join(prefix, "temp"), 0o755); err != nil {
		t.Fatal(err)
	}
	conf = filepath.Join(prefix, "nginx.conf")
	if err := os.WriteFile(conf, []byte(MainConf(prefix, extra)), 0o644); err != nil {
		t.Fatal(err)
	}
	return conf
}
