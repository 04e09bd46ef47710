package sandboxes

import (
	"strings"
	"testing"
)

func TestParseEndpoint(t *testing.T) {
	for i, tc := range []struct {
		in      string
		want    Endpoint
		urlPath string
		err     string
	}{
		{in: "127.0.0.1:8443", want: Endpoint{Mode: ModeHost, Host: "127.0.0.1", Port: 8443, InnerPort: 8443}, urlPath: "/8443/"},
		{in: "127.0.0.1:8443/", want: Endpoint{Mode: ModeHost, Host: "127.0.0.1", Port: 8443, InnerPort: 8443}, urlPath: "/8443/"},
		{in: "127.0.0.1:52322/proxy/8443", want: Endpoint{Mode: ModeBridge, Host: "127.0.0.1", Port: 52322, Path: "/proxy/8443", InnerPort: 8443}, urlPath: "/52322/proxy/8443/"},
		{in: "http://localhost:55002/proxy/8443/", want: Endpoint{Mode: ModeBridge, Host: "localhost", Port: 55002, Path: "/proxy/8443", InnerPort: 8443}, urlPath: "/55002/proxy/8443/"},
		{in: "[::1]:9000", want: Endpoint{Mode: ModeHost, Host: "::1", Port: 9000, InnerPort: 9000}, urlPath: "/9000/"},
		{in: "127.0.0.1", err: "missing port"},
		{in: ":8443", err: "missing host"},
		{in: "127.0.0.1:0", err: "port"},
		{in: "127.0.0.1:70000", err: "port"},
		{in: "127.0.0.1:52322/proxy/x", err: "inner port"},
	} {
		got, err := ParseEndpoint(tc.in)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("case %d: %q: error %v, want %q", i, tc.in, err, tc.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("case %d: %q: %v", i, tc.in, err)
			continue
		}
		if got != tc.want {
			t.Errorf("case %d: %q: got %+v, want %+v", i, tc.in, got, tc.want)
		}
		if p := got.URLPath(); p != tc.urlPath {
			t.Errorf("case %d: URLPath = %q, want %q", i, p, tc.urlPath)
		}
	}
}

func FuzzParseEndpoint(f *testing.F) {
	for _, s := range []string{"127.0.0.1:8443", "127.0.0.1:52322/proxy/8443", "http://h:1/", "[::1]:2/a/b"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		ep, err := ParseEndpoint(s)
		if err != nil {
			return
		}
		if ep.Port < 1 || ep.Port > 65535 || ep.Host == "" {
			t.Fatalf("%q parsed to invalid %+v", s, ep)
		}
		if ep.Mode == ModeHost && (ep.Path != "" || ep.InnerPort != ep.Port) {
			t.Fatalf("%q: host mode with %+v", s, ep)
		}
		if ep.Mode == ModeBridge && !strings.HasPrefix(ep.Path, "/") {
			t.Fatalf("%q: bridge path %q", s, ep.Path)
		}
	})
}
