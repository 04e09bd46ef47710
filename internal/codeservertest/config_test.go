package main

import (
	"io/fs"
	"path/filepath"
	"strings"
	"testing"
)

func TestParseArgs(t *testing.T) {
	const cfgPath = "/home/vscode/.config/code-server/config.yaml"
	for i, tc := range []struct {
		args    []string
		env     map[string]string
		file    string // content of cfgPath; "" = missing
		want    config
		wantErr string
	}{
		{
			args: []string{"--bind-addr", "0.0.0.0:8443", "--auth", "none", "--disable-telemetry", "/workspace"},
			env:  map[string]string{"HOME": "/home/vscode"},
			want: config{bindAddr: "0.0.0.0:8443", auth: "none", disableTelemetry: true, workspace: "/workspace", home: "/home/vscode"},
		},
		{
			// code-server's defaults: 127.0.0.1:8080 and password auth.
			args: []string{"/workspace"},
			env:  map[string]string{"HOME": "/home/vscode", "PASSWORD": "s3cret"},
			want: config{bindAddr: "127.0.0.1:8080", auth: "password", password: "s3cret", workspace: "/workspace", home: "/home/vscode"},
		},
		{
			// The file thon's original wrote for --secure.
			args: []string{"--bind-addr=0.0.0.0:8443", "--auth=password", "/workspace"},
			env:  map[string]string{"HOME": "/home/vscode"},
			file: "bind-addr: 0.0.0.0:9000\nauth: password\npassword: abc:def\ncert: false\n",
			want: config{bindAddr: "0.0.0.0:8443", auth: "password", password: "abc:def", workspace: "/workspace", home: "/home/vscode"},
		},
		{
			// PASSWORD wins over the file; quotes and CRLF are handled.
			args: []string{"/workspace"},
			env:  map[string]string{"HOME": "/home/vscode", "PASSWORD": "fromenv"},
			file: "# comment\r\nauth: \"password\"\r\npassword: 'fromfile'\r\n",
			want: config{bindAddr: "127.0.0.1:8080", auth: "password", password: "fromenv", workspace: "/workspace", home: "/home/vscode"},
		},
		{
			args:    []string{"--auth", "password", "/workspace"},
			env:     map[string]string{"HOME": "/home/vscode"},
			wantErr: "auth password: no password",
		},
		{
			args:    []string{"--auth", "token", "/workspace"},
			env:     map[string]string{"HOME": "/home/vscode"},
			wantErr: `auth "token": must be none or password`,
		},
		{
			args:    []string{"--bind-addr", "8443", "--auth", "none"},
			env:     map[string]string{"HOME": "/home/vscode"},
			wantErr: `bind-addr "8443"`,
		},
		{
			args:    []string{"--auth", "none", "/a", "/b"},
			env:     map[string]string{"HOME": "/home/vscode"},
			wantErr: "expected at most one workspace directory",
		},
		{
			args:    []string{"/workspace"},
			env:     map[string]string{"HOME": "/home/vscode"},
			file:    "auth none\n",
			wantErr: cfgPath + ":1: expected key: value",
		},
		{
			args:    []string{"--no-such-flag"},
			wantErr: "flag provided but not defined",
		},
	} {
		getenv := func(k string) string { return tc.env[k] }
		readFile := func(name string) ([]byte, error) {
			if name == cfgPath && tc.file != "" {
				return []byte(tc.file), nil
			}
			return nil, &fs.PathError{Op: "open", Path: name, Err: fs.ErrNotExist}
		}
		got, err := parseArgs(tc.args, getenv, readFile)
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("case %d: error = %v, want one containing %q", i, err, tc.wantErr)
			}
			continue
		}
		if err != nil {
			t.Errorf("case %d: unexpected error: %v", i, err)
			continue
		}
		if got != tc.want {
			t.Errorf("case %d: got %+v, want %+v", i, got, tc.want)
		}
	}
}

func TestParseArgsDefaultWorkspaceIsAbsolute(t *testing.T) {
	cfg, err := parseArgs([]string{"--auth", "none"}, func(string) string { return "" }, func(string) ([]byte, error) { return nil, fs.ErrNotExist })
	if err != nil {
		t.Fatal(err)
	}
	if !filepath.IsAbs(cfg.workspace) {
		t.Errorf("workspace %q is not absolute", cfg.workspace)
	}
}
