package nginx

import (
	"bytes"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the testdata/golden files")

func TestRenderGolden(t *testing.T) {
	tests := []struct {
		name string
		site Site
	}{
		{"original", Site{
			ServerName: "_",
			ListenIPv6: true,
			CertFile:   "/etc/nginx/ssl/thon-12ca17b4.pem",
			KeyFile:    "/etc/nginx/ssl/thon-12ca17b4-key.pem",
			CAFile:     "/etc/nginx/ssl/thon-ca.crt",
			Sandboxes: []Location{
				{Port: 55002, Group: "team-a", User: "alice"},
				{Port: 55001},
			},
		}},
		{"domain_acme", Site{
			ServerName: "hack.example.org",
			ListenIPv6: true,
			CertFile:   "/etc/letsencrypt/live/hack.example.org/fullchain.pem",
			KeyFile:    "/etc/letsencrypt/live/hack.example.org/privkey.pem",
		}},
		{"loopback_ports", Site{
			ListenAddr: "127.0.0.1",
			HTTPPort:   8080,
			HTTPSPort:  8443,
			CertFile:   "/srv/thon/ssl/site.pem",
			KeyFile:    "/srv/thon/ssl/site-key.pem",
			CAFile:     "/srv/thon/ssl/root.crt",
			Sandboxes:  []Location{{Port: 9000, Group: "g1", User: "u.1"}},
		}},
		{"ipv6_listen_addr", Site{
			ServerName: "[::1]",
			ListenAddr: "::1",
			CertFile:   "/srv/thon/ssl/site.pem",
			KeyFile:    "/srv/thon/ssl/site-key.pem",
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Render(tt.site)
			if err != nil {
				t.Fatal(err)
			}
			golden := filepath.Join("testdata", "golden", tt.name+".conf")
			if *update {
				if err := os.WriteFile(golden, got, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run with -update to create it)", err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("Render differs from %s (run with -update after checking):\n%s", golden, got)
			}
			if _, err := parseConf(string(got)); err != nil {
				t.Errorf("output does not parse: %v", err)
			}
		})
	}
}

// originalServer and originalLocation are the original thon's template
// (scripts/nginx_config.py), verbatim but for the placeholders.
const (
	originalServer = `server {
    listen 80;
    listen 443 ssl;
    listen [::]:443 ssl;
    server_name _;
    ssl_certificate {cert_path};
    ssl_certificate_key {key_path};
    ssl_protocols TLSv1.2 TLSv1.3;
    ssl_ciphers HIGH:!aNULL:!MD5;
`
	originalCA = `    location = /ca.crt {
        alias {ca_cert_path};
        default_type application/x-x509-ca-cert;
        add_header Content-Disposition 'attachment; filename="rootCA.crt"';
    }
`
	originalLocation = `    location /{port}/ {
        proxy_pass http://127.0.0.1:{port}/;
        proxy_http_version 1.1;
        proxy_set_header Upgrade $http_upgrade;
        proxy_set_header Connection "upgrade";
        proxy_set_header Host $http_host;
        proxy_set_header X-Real-IP $remote_addr;
        proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
        proxy_set_header X-Forwarded-Proto $scheme;
        proxy_set_header X-Forwarded-Host $http_host;
        proxy_set_header Accept-Encoding gzip;
        proxy_redirect default;
        add_header Service-Worker-Allowed /;
        proxy_ssl_verify off;
        proxy_read_timeout 86400;
        proxy_send_timeout 86400;
        proxy_buffering off;
        proxy_request_buffering off;
    }
`
)

func TestRenderKeepsOriginalTemplate(t *testing.T) {
	s := Site{
		ListenIPv6: true,
		CertFile:   "/ssl/c.pem", KeyFile: "/ssl/k.pem", CAFile: "/ssl/ca.crt",
		Sandboxes: []Location{{Port: 55001, Group: "g", User: "u"}},
	}
	out, err := Render(s)
	if err != nil {
		t.Fatal(err)
	}
	r := strings.NewReplacer("{cert_path}", "/ssl/c.pem", "{key_path}", "/ssl/k.pem", "{ca_cert_path}", "/ssl/ca.crt", "{port}", "55001")
	for _, want := range []string{
		r.Replace(originalServer),
		r.Replace(originalCA),
		r.Replace(originalLocation),
		// The group/user path gets the same block, to the same port.
		strings.Replace(r.Replace(originalLocation), "location /55001/", "location /s/g/u/", 1),
	} {
		if !strings.Contains(string(out), want) {
			t.Errorf("output lacks the original's block\n%s\n--- output:\n%s", want, out)
		}
	}
	if n := strings.Count(string(out), "server {"); n != 1 {
		t.Errorf("%d server blocks, want 1", n)
	}
}

func TestRenderDeterministic(t *testing.T) {
	locs := []Location{{Port: 9003}, {Port: 9001, Group: "a", User: "b"}, {Port: 9002, Group: "a", User: "c"}}
	s := Site{CertFile: "/c.pem", KeyFile: "/k.pem", Sandboxes: locs}
	first, err := Render(s)
	if err != nil {
		t.Fatal(err)
	}
	rev := slices.Clone(locs)
	slices.Reverse(rev)
	s.Sandboxes = rev
	second, err := Render(s)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(first, second) {
		t.Error("the order of sandboxes changed the output")
	}
	if locs[0].Port != 9003 {
		t.Error("Render reordered the caller's slice")
	}
	i1, i2, i3 := bytes.Index(first, []byte("location /9001/")), bytes.Index(first, []byte("location /9002/")), bytes.Index(first, []byte("location /9003/"))
	if i1 < 0 || !(i1 < i2 && i2 < i3) {
		t.Errorf("locations not ordered by port: %d %d %d", i1, i2, i3)
	}
}

func TestRenderRejects(t *testing.T) {
	ok := Site{CertFile: "/c.pem", KeyFile: "/k.pem"}
	with := func(f func(*Site)) Site {
		s := ok
		f(&s)
		return s
	}
	loc := func(l ...Location) func(*Site) { return func(s *Site) { s.Sandboxes = l } }
	tests := []struct {
		name  string
		site  Site
		field string
	}{
		{"semicolon in server name", with(func(s *Site) { s.ServerName = "a.com; include /etc/passwd" }), "server_name"},
		{"brace in server name", with(func(s *Site) { s.ServerName = "a{" }), "server_name"},
		{"closing brace in server name", with(func(s *Site) { s.ServerName = "a}" }), "server_name"},
		{"space in server name", with(func(s *Site) { s.ServerName = "a b" }), "server_name"},
		{"newline in server name", with(func(s *Site) { s.ServerName = "a\nb" }), "server_name"},
		{"quote in server name", with(func(s *Site) { s.ServerName = `a"b` }), "server_name"},
		{"single quote in server name", with(func(s *Site) { s.ServerName = "a'b" }), "server_name"},
		{"variable as server name", with(func(s *Site) { s.ServerName = "$host" }), "server_name"},
		{"comment in server name", with(func(s *Site) { s.ServerName = "a#b" }), "server_name"},
		{"hyphen label", with(func(s *Site) { s.ServerName = "-a.com" }), "server_name"},
		{"empty label", with(func(s *Site) { s.ServerName = "a..com" }), "server_name"},
		{"bad bracketed ip", with(func(s *Site) { s.ServerName = "[1.2.3.4]" }), "server_name"},
		{"port 0", with(loc(Location{Port: 0})), "sandboxes[0].port"},
		{"port too big", with(loc(Location{Port: 9000}, Location{Port: 65536})), "sandboxes[1].port"},
		{"negative port", with(loc(Location{Port: -1})), "sandboxes[0].port"},
		{"duplicate port", with(loc(Location{Port: 9000}, Location{Port: 9000})), "sandboxes[1].port"},
		{"semicolon in group", with(loc(Location{Port: 9000, Group: "a;b", User: "u"})), "sandboxes[0].group"},
		{"slash in user", with(loc(Location{Port: 9000, Group: "g", User: "u/../x"})), "sandboxes[0].user"},
		{"dot user", with(loc(Location{Port: 9000, Group: "g", User: ".."})), "sandboxes[0].user"},
		{"brace in user", with(loc(Location{Port: 9000, Group: "g", User: "u}"})), "sandboxes[0].user"},
		{"group without user", with(loc(Location{Port: 9000, Group: "g"})), "sandboxes[0].user"},
		{"user without group", with(loc(Location{Port: 9000, User: "u"})), "sandboxes[0].group"},
		{"duplicate name", with(loc(Location{Port: 9000, Group: "g", User: "u"}, Location{Port: 9001, Group: "g", User: "u"})), "sandboxes[1].user"},
		{"http port negative", with(func(s *Site) { s.HTTPPort = -1 }), "http_port"},
		{"https port too big", with(func(s *Site) { s.HTTPSPort = 65536 }), "https_port"},
		{"same ports", with(func(s *Site) { s.HTTPPort, s.HTTPSPort = 8080, 8080 }), "https_port"},
		{"listen addr name", with(func(s *Site) { s.ListenAddr = "localhost" }), "listen_addr"},
		{"ipv6 with listen addr", with(func(s *Site) { s.ListenAddr, s.ListenIPv6 = "127.0.0.1", true }), "listen_ipv6"},
		{"no cert", with(func(s *Site) { s.CertFile = "" }), "cert_file"},
		{"relative cert", with(func(s *Site) { s.CertFile = "c.pem" }), "cert_file"},
		{"space in cert", with(func(s *Site) { s.CertFile = "/a b.pem" }), "cert_file"},
		{"semicolon in key", with(func(s *Site) { s.KeyFile = "/k.pem;" }), "key_file"},
		{"unclean key", with(func(s *Site) { s.KeyFile = "/x/../k.pem" }), "key_file"},
		{"variable in ca", with(func(s *Site) { s.CAFile = "/ssl/$host.crt" }), "ca_file"},
		{"external ip", with(func(s *Site) { s.ExternalIP = "example.org" }), "external_ip"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, err := Render(tt.site)
			var fe *FieldError
			if !errors.As(err, &fe) {
				t.Fatalf("err = %v, want a *FieldError", err)
			}
			if fe.Field != tt.field {
				t.Errorf("field = %q, want %q (%v)", fe.Field, tt.field, err)
			}
			if !strings.HasPrefix(err.Error(), tt.field+": ") {
				t.Errorf("error %q does not start with the field", err)
			}
			if out != nil {
				t.Errorf("output on error: %q", out)
			}
		})
	}
}

func TestRenderAccepts(t *testing.T) {
	for _, name := range []string{"_", "example.org", "*.hack.example.org", "203.0.113.7", "[2001:db8::1]", "sandbox_1.local"} {
		if _, err := Render(Site{ServerName: name, CertFile: "/c.pem", KeyFile: "/k.pem"}); err != nil {
			t.Errorf("server name %q: %v", name, err)
		}
	}
}

// FuzzRender checks that validation holds: for any server, group and user
// name, Render either refuses or produces a configuration whose parse
// tree is exactly the expected one, so no input injects a directive, a
// block or a comment.
func FuzzRender(f *testing.F) {
	for _, seed := range [][3]string{
		{"_", "team-a", "alice"},
		{"example.org", "", ""},
		{"a.com; include /etc/passwd", "g", "u"},
		{"_", "g;}", "u"},
		{"_", "g", "u { return 200 x; }"},
		{"x\n}", "g", "u"},
		{"'", `"`, "#"},
		{"$host", "$uri", "a b"},
		{"[::1]", "g.h", "u_v"},
	} {
		f.Add(seed[0], seed[1], seed[2])
	}
	f.Fuzz(func(t *testing.T, serverName, group, user string) {
		const port = 8080
		s := Site{ServerName: serverName, CertFile: "/ssl/c.pem", KeyFile: "/ssl/k.pem",
			Sandboxes: []Location{{Port: port, Group: group, User: user}}}
		out, err := Render(s)
		if err != nil {
			var fe *FieldError
			if !errors.As(err, &fe) || fe.Field == "" {
				t.Fatalf("error without a field: %v", err)
			}
			return
		}
		for _, in := range []string{serverName, group, user} {
			if strings.ContainsAny(in, ";{}'\"#$\\ \t\r\n") {
				t.Fatalf("accepted %q", in)
			}
		}
		ds, err := parseConf(string(out))
		if err != nil {
			t.Fatalf("output does not parse: %v\n%s", err, out)
		}
		if len(ds) != 1 || ds[0].name != "server" || !ds[0].hasBlock {
			t.Fatalf("want one server block, got %d directives", len(ds))
		}
		wantName := serverName
		if wantName == "" {
			wantName = "_"
		}
		prefixes := []string{"/8080"}
		if group != "" {
			prefixes = append(prefixes, "/s/"+group+"/"+user)
		}
		var names []string
		var locs []confDirective
		for _, d := range ds[0].block {
			if d.name == "location" {
				locs = append(locs, d)
				continue
			}
			names = append(names, d.name)
			if d.name == "server_name" && !slices.Equal(d.args, []string{wantName}) {
				t.Fatalf("server_name args %q, want [%q]", d.args, wantName)
			}
			if d.hasBlock {
				t.Fatalf("unexpected block %q", d.name)
			}
		}
		wantNames := []string{"listen", "listen", "server_name", "ssl_certificate", "ssl_certificate_key", "ssl_protocols", "ssl_ciphers"}
		if !slices.Equal(names, wantNames) {
			t.Fatalf("server directives %q, want %q", names, wantNames)
		}
		if len(locs) != 2*len(prefixes) {
			t.Fatalf("%d locations, want %d", len(locs), 2*len(prefixes))
		}
		for i, p := range prefixes {
			redirect, proxy := locs[2*i], locs[2*i+1]
			if !slices.Equal(redirect.args, []string{"=", p}) || len(redirect.block) != 2 ||
				!slices.Equal(redirect.block[1].args, []string{"301", p + "/$is_args$args"}) {
				t.Fatalf("redirect location for %q: %+v", p, redirect)
			}
			if !slices.Equal(proxy.args, []string{p + "/"}) || len(proxy.block) != 17 ||
				proxy.block[0].name != "proxy_pass" || !slices.Equal(proxy.block[0].args, []string{"http://127.0.0.1:8080/"}) {
				t.Fatalf("proxy location for %q: %+v", p, proxy)
			}
			for _, d := range proxy.block {
				if d.hasBlock {
					t.Fatalf("nested block in %q", p)
				}
			}
		}
	})
}
