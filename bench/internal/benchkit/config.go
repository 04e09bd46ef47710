package benchkit

import (
	"fmt"
	"os"
	"path/filepath"
)

// Caddyfile is the Caddyfile of a server a benchmark starts: its admin
// API on localhost:admin, no autosaved configuration, the global options
// global (lines indented by a tab), then sites.
func Caddyfile(admin int, global, sites string) string {
	return fmt.Sprintf("{\n\tadmin localhost:%d\n\tpersist_config off\n%s}\n\n%s", admin, global, sites)
}

// NginxConf is nginx.conf for a benchmark: nginx's files under dir, one
// worker per CPU as Caddy uses every CPU, no access log (Caddy logs none
// by default), and http, lines indented by four spaces, ending the http
// block.
func NginxConf(dir, http string) string {
	user := ""
	if os.Geteuid() == 0 {
		user = "user root;\n"
	}
	return fmt.Sprintf(`%sworker_processes auto;
pid %[2]s/nginx.pid;
error_log %[2]s/error.log warn;
events {
    worker_connections 4096;
}
http {
    access_log off;
    client_body_temp_path %[2]s/temp/body;
    proxy_temp_path %[2]s/temp/proxy;
    fastcgi_temp_path %[2]s/temp/fastcgi;
    uwsgi_temp_path %[2]s/temp/uwsgi;
    scgi_temp_path %[2]s/temp/scgi;
%[3]s}
`, user, dir, http)
}

// WriteNginxConf writes NginxConf(dir, http) to dir/nginx.conf, making
// dir and its temp directory, and returns the file's path.
func WriteNginxConf(dir, http string) (string, error) {
	if err := os.MkdirAll(filepath.Join(dir, "temp"), 0o755); err != nil {
		return "", err
	}
	path := filepath.Join(dir, "nginx.conf")
	return path, os.WriteFile(path, []byte(NginxConf(dir, http)), 0o600)
}
