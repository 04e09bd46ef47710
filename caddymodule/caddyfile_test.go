package caddymodule

import (
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddytest"

	"github.com/thon-dev/thon/sandboxes"
)

func TestUnmarshalGlobalOption(t *testing.T) {
	for i, tc := range []struct {
		input   string
		want    App
		wantErr string
	}{
		{
			input: `thon {
				data_dir /var/lib/thon
				database /var/lib/thon/db.sqlite
				external_ip 203.0.113.7
				domain hack.example.com
				docker_host unix:///run/docker.sock
				image thon/sandbox:1
				workspace bind /srv/ws
				secure
				groups_file /etc/thon/groups.yaml
				kilo_file /etc/thon/kilo.jsonc
				vscode_settings_file /etc/thon/settings.jsonc
				port_range 9000 9300
				ttl 8h
				memory 2GiB
				cpus 1.5
				pids 512
				concurrency 16
			}`,
			want: App{
				DataDir: "/var/lib/thon", Database: "/var/lib/thon/db.sqlite", ExternalIP: "203.0.113.7",
				Domain: "hack.example.com", DockerHost: "unix:///run/docker.sock", Image: "thon/sandbox:1",
				WorkspaceMode: "bind", WorkspaceDir: "/srv/ws", Secure: true,
				GroupsFile: "/etc/thon/groups.yaml", KiloFile: "/etc/thon/kilo.jsonc",
				VSCodeSettingsFile: "/etc/thon/settings.jsonc",
				PortStart:          9000, PortEnd: 9300, TTL: caddy.Duration(8 * time.Hour),
				MemoryBytes: 2 << 30, CPUs: 1.5, PidsLimit: 512, Concurrency: 16,
			},
		},
		{input: "thon {\n external_ip\n secure false\n workspace ephemeral\n}", want: App{WorkspaceMode: "ephemeral"}},
		{input: "thon {\n bogus 1\n}", wantErr: `unrecognized thon option "bogus", at Testfile:2`},
		{input: "thon {\n image a b\n}", wantErr: "Testfile:2"},
		{input: "thon {\n image a\n image b\n}", wantErr: "already specified"},
		{input: "thon {\n workspace bind\n}", wantErr: "missing the host directory"},
		{input: "thon {\n workspace cloud\n}", wantErr: `"cloud" is not one of`},
		{input: "thon {\n secure maybe\n}", wantErr: `"maybe" is not true or false`},
		{input: "thon extra", wantErr: "wrong argument count"},
		{input: "thon {\n port_range 9000\n}", wantErr: "port_range: expected"},
		{input: "thon {\n port_range 80 90\n}", wantErr: "port_range: 80-90 is not a range within 1024-65535"},
		{input: "thon {\n port_range x 9000\n}", wantErr: `port_range: "x" is not a port number`},
		{input: "thon {\n ttl soon\n}", wantErr: `ttl: "soon"`},
		{input: "thon {\n memory 1KB\n}", wantErr: "at least 64MiB"},
		{input: "thon {\n cpus -1\n}", wantErr: "positive number"},
		{input: "thon {\n pids 0\n}", wantErr: `pids: "0"`},
	} {
		var got App
		err := got.UnmarshalCaddyfile(caddyfile.NewTestDispenser(tc.input))
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("case %d: error %v, want %q", i, err, tc.wantErr)
			}
			continue
		}
		if err != nil {
			t.Errorf("case %d: %v", i, err)
			continue
		}
		a, _ := json.Marshal(got)
		b, _ := json.Marshal(tc.want)
		if string(a) != string(b) {
			t.Errorf("case %d:\n got %s\nwant %s", i, a, b)
		}
	}
}

// TestCaddyfileAdapt compares each testdata/caddyfile_adapt/*.caddyfiletest
// (a Caddyfile, a line of dashes, the expected JSON) with what the adapter
// produces.
func TestCaddyfileAdapt(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("testdata", "caddyfile_adapt", "*.caddyfiletest"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no adapt tests: %v", err)
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		in, want, ok := strings.Cut(string(b), "----------")
		if !ok {
			t.Fatalf("%s: no ---------- separator", f)
		}
		if !caddytest.CompareAdapt(t, f, in, "caddyfile", strings.TrimSpace(want)) {
			t.Errorf("%s: adapted JSON differs", f)
		}
	}
}

// TestCaddyfileExample adapts the shipped Caddyfile.example, as `thon adapt
// --config Caddyfile.example` does, and checks the environment placeholders
// reach the config.
func TestCaddyfileExample(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("..", "Caddyfile.example"))
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("THON_DATA_DIR", "/srv/thon-data")
	t.Setenv("THON_LISTEN_HOST", "127.0.0.1")
	t.Setenv("THON_LISTEN_PORT", "18080")
	t.Setenv("THON_EXTERNAL_IP", "")
	cfg := adapt(t, string(b))
	var parsed struct {
		Admin struct {
			Listen string `json:"listen"`
		} `json:"admin"`
		Apps struct {
			Thon App `json:"thon"`
			HTTP struct {
				Servers map[string]struct {
					Listen []string `json:"listen"`
				} `json:"servers"`
			} `json:"http"`
		} `json:"apps"`
	}
	if err := json.Unmarshal(cfg, &parsed); err != nil {
		t.Fatal(err)
	}
	if parsed.Admin.Listen != "localhost:2019" {
		t.Errorf("admin listen = %q", parsed.Admin.Listen)
	}
	if parsed.Apps.Thon.DataDir != "/srv/thon-data" || parsed.Apps.Thon.ExternalIP != "" {
		t.Errorf("thon app = %+v", parsed.Apps.Thon)
	}
	// The secrets stay placeholders in the JSON, resolved at load.
	if a := parsed.Apps.Thon.Auth; a == nil || a.LocalPassword != "{env.AUTH_LOCAL_PASSWORD}" || a.SessionSecret != "{env.AUTH_SESSION_SECRET}" {
		t.Errorf("thon auth = %+v", a)
	}
	var listens []string
	for _, s := range parsed.Apps.HTTP.Servers {
		listens = append(listens, s.Listen...)
	}
	if len(listens) != 1 || listens[0] != "127.0.0.1:18080" {
		t.Errorf("listeners = %v, want only 127.0.0.1:18080", listens)
	}
}

// TestCaddyfileExamplePublicIP adapts the example as it runs with
// THON_EXTERNAL_IP set: an HTTPS site for the IP with the internal CA.
func TestCaddyfileExamplePublicIP(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("..", "Caddyfile.example"))
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("THON_EXTERNAL_IP", "203.0.113.9")
	t.Setenv("THON_PUBLIC_MODE", "ip")
	cfg := string(adapt(t, string(b)))
	for _, want := range []string{`"listen":[":443"]`, `"subjects":["203.0.113.9"]`, `"module":"internal"`, `"handler":"thon_ca_cert"`} {
		if !strings.Contains(cfg, want) {
			t.Errorf("adapted example lacks %s", want)
		}
	}
	t.Setenv("THON_PUBLIC_MODE", "none")
	if cfg := string(adapt(t, string(b))); strings.Contains(cfg, ":443") {
		t.Error("an HTTPS site without THON_EXTERNAL_IP or THON_DOMAIN")
	}
}

func TestDeriveListenEnv(t *testing.T) {
	t.Setenv("THON_LISTEN", "127.0.0.1:9999")
	os.Unsetenv("THON_LISTEN_HOST")
	os.Unsetenv("THON_LISTEN_PORT")
	t.Cleanup(func() { os.Unsetenv("THON_LISTEN_HOST"); os.Unsetenv("THON_LISTEN_PORT") })
	deriveListenEnv()
	if h, p := os.Getenv("THON_LISTEN_HOST"), os.Getenv("THON_LISTEN_PORT"); h != "127.0.0.1" || p != "9999" {
		t.Errorf("derived %q %q", h, p)
	}
	t.Setenv("THON_LISTEN_PORT", "7000") // an explicit value wins
	deriveListenEnv()
	if p := os.Getenv("THON_LISTEN_PORT"); p != "7000" {
		t.Errorf("explicit THON_LISTEN_PORT overwritten: %q", p)
	}
	for i, tc := range []struct{ ip, domain, want string }{
		{"", "", "none"}, {"203.0.113.9", "", "ip"}, {"203.0.113.9", "hack.example.com", "domain"}, {"", "hack.example.com", "domain"},
	} {
		t.Setenv("THON_EXTERNAL_IP", tc.ip)
		t.Setenv("THON_DOMAIN", tc.domain)
		t.Setenv("THON_PUBLIC_MODE", "")
		os.Unsetenv("THON_PUBLIC_MODE")
		deriveListenEnv()
		if got := os.Getenv("THON_PUBLIC_MODE"); got != tc.want {
			t.Errorf("case %d: THON_PUBLIC_MODE = %q, want %q", i, got, tc.want)
		}
	}
}

func TestSandboxDirectiveErrors(t *testing.T) {
	for i, tc := range []struct{ body, want string }{
		{"thon_sandbox {\n bogus\n}", `unrecognized option "bogus"`},
		{"thon_sandbox {\n subdomain {user}.example.com\n}", "must contain {group} and {user}"},
		{"thon_sandbox {\n subdomain {group}.{user}.{port}.example.com\n}", "unknown placeholder"},
		{"thon_sandbox {\n by_port\n by_port\n}", "already specified"},
		{"thon_sandbox {\n stream_close_delay forever\n}", `"forever" is not a duration`},
		{"thon_sandbox {\n flush_interval -2\n}", `flush_interval: "-2" is not a duration`},
		{"thon_sandbox {\n stream_timeout -1\n}", `stream_timeout: "-1" is not a duration`},
		{"thon_sandbox extra", "wrong argument count"},
	} {
		_, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte("http://:8080 {\n"+tc.body+"\n}\n"), nil)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("case %d: error %v, want %q", i, err, tc.want)
		}
	}
}

func TestSandboxAddressing(t *testing.T) {
	a := SandboxAddressing{Subdomain: "{user}.{group}.sb.example.com"}
	if err := a.provision(); err != nil {
		t.Fatal(err)
	}
	for i, tc := range []struct {
		host, path string
		want       target
		ok         bool
	}{
		{"x", "/s/alpha/alice/", target{group: "alpha", user: "alice", prefix: "/s/alpha/alice"}, true},
		{"x", "/s/alpha/alice", target{group: "alpha", user: "alice", prefix: "/s/alpha/alice", exact: true}, true},
		{"x", "/8443/a/b", target{port: 8443, prefix: "/8443"}, true},
		{"x", "/8443", target{port: 8443, prefix: "/8443", exact: true}, true},
		{"x", "/08443/", target{}, false},
		{"x", "/70000/", target{}, false},
		{"x", "/s/alpha/", target{}, false},
		{"alice.alpha.sb.example.com:443", "/api/x", target{group: "alpha", user: "alice"}, true},
		{"ALICE.alpha.sb.example.com", "/", target{group: "alpha", user: "alice"}, true},
		{"alice.alpha.other.example.com", "/", target{}, false},
		{"x", "/docs", target{}, false},
	} {
		r, _ := http.NewRequest(http.MethodGet, "http://"+tc.host+tc.path, nil)
		got, ok := a.resolve(r)
		if ok != tc.ok || got != tc.want {
			t.Errorf("case %d: %s%s: %+v %v, want %+v %v", i, tc.host, tc.path, got, ok, tc.want, tc.ok)
		}
	}
}

func FuzzSandboxDirective(f *testing.F) {
	f.Add("thon_sandbox {\n subdomain {user}.{group}.x\n by_port\n stream_timeout 1h\n}")
	f.Add("thon_sandbox /s/* {\n stream_close_delay 5m\n flush_interval -1\n}")
	f.Fuzz(func(t *testing.T, body string) {
		// Must never panic; errors are fine.
		_, _, _ = caddyconfig.GetAdapter("caddyfile").Adapt([]byte("http://:8080 {\n"+body+"\n}\n"), nil)
	})
}

func FuzzGlobalOption(f *testing.F) {
	f.Add("thon {\n data_dir /x\n workspace bind /w\n port_range 9000 9100\n ttl 1h\n memory 1GiB\n}")
	f.Add("thon {\n secure false\n cpus 0.5\n}")
	f.Fuzz(func(t *testing.T, input string) {
		var a App
		if err := a.UnmarshalCaddyfile(caddyfile.NewTestDispenser(input)); err != nil {
			return
		}
		if a.PortStart != 0 && (a.PortStart < 1024 || a.PortEnd < a.PortStart) {
			t.Fatalf("accepted bad port range %d-%d", a.PortStart, a.PortEnd)
		}
		if a.WorkspaceMode == sandboxes.WorkspaceBind && a.WorkspaceDir == "" {
			t.Fatal("accepted bind without a directory")
		}
	})
}
