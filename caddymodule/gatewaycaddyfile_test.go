package caddymodule

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
)

func TestParseGatewayOption(t *testing.T) {
	for i, tc := range []struct {
		input string
		want  GatewayConfig
		err   string
	}{
		{`gateway`, GatewayConfig{}, ""},
		{"gateway {\n redis 127.0.0.1:6379\n redis_password {env.PW}\n redis_db 2\n on_redis_error open\n kilo_url https://thon.example.org/v1\n}",
			GatewayConfig{Redis: "127.0.0.1:6379", RedisPassword: "{env.PW}", RedisDB: 2, OnRedisError: "open", KiloURL: "https://thon.example.org/v1"}, ""},
		{"gateway {\n redis\n}", GatewayConfig{}, ""},
		{"gateway {\n redis localhost\n}", GatewayConfig{}, "host:port"},
		{"gateway {\n redis_db -1\n}", GatewayConfig{}, "redis_db"},
		{"gateway {\n on_redis_error maybe\n}", GatewayConfig{}, "on_redis_error"},
		{"gateway {\n kilo_url ftp://x\n}", GatewayConfig{}, "kilo_url"},
		{"gateway {\n redis a:1 b:2\n}", GatewayConfig{}, "one value"},
		{"gateway {\n redis a:1\n redis b:2\n}", GatewayConfig{}, "already specified"},
		{"gateway {\n colour blue\n}", GatewayConfig{}, "unrecognized"},
		{"gateway extra", GatewayConfig{}, "wrong argument count"},
	} {
		d := caddyfile.NewTestDispenser(tc.input)
		d.Next()
		got, err := parseGatewayOption(d)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("case %d: err = %v, want %q", i, err, tc.err)
			}
			continue
		}
		if err != nil || *got != tc.want {
			t.Errorf("case %d: %+v, %v", i, got, err)
		}
	}
}

func TestGatewayDirective(t *testing.T) {
	for i, tc := range []struct {
		input string
		want  Gateway
		err   string
	}{
		{`thon_gateway`, Gateway{}, ""},
		{"thon_gateway {\n upstream http://127.0.0.1:13305\n upstream_api_key {env.K}\n max_request_body 8MiB\n default_max_tokens 1024\n}",
			Gateway{Upstream: "http://127.0.0.1:13305", UpstreamAPIKey: "{env.K}", MaxRequestBody: 8 << 20, DefaultMaxTokens: 1024}, ""},
		{"thon_gateway {\n upstream 127.0.0.1:13305\n}", Gateway{}, "http(s) URL"},
		{"thon_gateway {\n max_request_body 10\n}", Gateway{}, "max_request_body"},
		{"thon_gateway {\n default_max_tokens 0\n}", Gateway{}, "default_max_tokens"},
		{"thon_gateway {\n upstream http://a\n upstream http://b\n}", Gateway{}, "already specified"},
		{"thon_gateway {\n nope\n}", Gateway{}, "unrecognized"},
		{"thon_gateway now", Gateway{}, "wrong argument count"},
	} {
		var g Gateway
		err := g.UnmarshalCaddyfile(caddyfile.NewTestDispenser(tc.input))
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("case %d: err = %v, want %q", i, err, tc.err)
			}
			continue
		}
		if err != nil || g.Upstream != tc.want.Upstream || g.UpstreamAPIKey != tc.want.UpstreamAPIKey ||
			g.MaxRequestBody != tc.want.MaxRequestBody || g.DefaultMaxTokens != tc.want.DefaultMaxTokens {
			t.Errorf("case %d: %+v, %v", i, g, err)
		}
	}
}

func FuzzGatewayDirective(f *testing.F) {
	f.Add("thon_gateway {\n upstream http://127.0.0.1:13305\n max_request_body 1MiB\n}")
	f.Add("thon_gateway {\n default_max_tokens 99999999999999999999\n}")
	f.Fuzz(func(t *testing.T, in string) {
		var g Gateway
		_ = g.UnmarshalCaddyfile(caddyfile.NewTestDispenser(in))
		d := caddyfile.NewTestDispenser(in)
		d.Next()
		_, _ = parseGatewayOption(d)
	})
}

// TestCaddyfileExampleGateway: the shipped example serves the gateway on
// every site and reads THON_REDIS.
func TestCaddyfileExampleGateway(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("..", "Caddyfile.example"))
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("THON_REDIS", "")
	cfg := string(adapt(t, string(b)))
	if !strings.Contains(cfg, `"handler":"thon_gateway"`) || strings.Contains(cfg, `"redis"`) {
		t.Errorf("example without THON_REDIS: gateway handler or an unexpected redis:\n%s", cfg)
	}
	t.Setenv("THON_REDIS", "127.0.0.1:6380")
	if cfg := string(adapt(t, string(b))); !strings.Contains(cfg, `"gateway":{"redis":"127.0.0.1:6380"}`) {
		t.Errorf("example with THON_REDIS:\n%s", cfg)
	}
}
