package benchkit

import (
	"os"
	"testing"
)

func TestNginxConf(t *testing.T) {
	user := ""
	if os.Geteuid() == 0 {
		user = "user root;\n"
	}
	want := user + `worker_processes auto;
pid /d/nginx.pid;
error_log /d/error.log warn;
events {
    worker_connections 4096;
}
http {
    access_log off;
    client_body_temp_path /d/temp/body;
    proxy_temp_path /d/temp/proxy;
    fastcgi_temp_path /d/temp/fastcgi;
    uwsgi_temp_path /d/temp/uwsgi;
    scgi_temp_path /d/temp/scgi;
    include /d/sites-enabled/*;
}
`
	if got := NginxConf("/d", "    include /d/sites-enabled/*;\n"); got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
}

func TestCaddyfile(t *testing.T) {
	got := Caddyfile(2019, "\tskip_install_trust\n", "http://:8080 {\n\trespond 404\n}\n")
	want := "{\n\tadmin localhost:2019\n\tpersist_config off\n\tskip_install_trust\n}\n\nhttp://:8080 {\n\trespond 404\n}\n"
	if got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
	if got := Caddyfile(1, "", ""); got != "{\n\tadmin localhost:1\n\tpersist_config off\n}\n\n" {
		t.Errorf("bare: %q", got)
	}
}
