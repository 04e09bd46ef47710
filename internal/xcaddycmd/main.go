// Command xcaddycmd turns xcaddy.json, thon's build manifest for xcaddy
// users, into an xcaddy command line and runs it (or prints it with -n).
// xcaddy itself reads no file: its inputs are flags and environment
// variables.
package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"strings"
)

// Manifest is the content of xcaddy.json.
type Manifest struct {
	Comment      string   `json:"comment,omitempty"`
	CaddyVersion string   `json:"caddy_version"`
	With         []With   `json:"with"`
	BuildTags    []string `json:"build_tags,omitempty"`
	LDFlags      string   `json:"ldflags,omitempty"`
	Output       string   `json:"output,omitempty"`
}

// With is one plugin module, optionally replaced by a local directory.
type With struct {
	Module  string `json:"module"`
	Replace string `json:"replace,omitempty"`
}

// xcaddyModule is the xcaddy release the command runs.
const xcaddyModule = "github.com/caddyserver/xcaddy/cmd/xcaddy@v0.4.5"

func main() {
	dry := flag.Bool("n", false, "print the command instead of running it")
	flag.Parse()
	if flag.NArg() != 1 {
		fmt.Fprintln(os.Stderr, "usage: xcaddycmd [-n] xcaddy.json")
		os.Exit(2)
	}
	m, err := load(flag.Arg(0))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	args, env := m.Command()
	if *dry {
		fmt.Println(strings.Join(env, " "), "go run", xcaddyModule, strings.Join(args, " "))
		return
	}
	cmd := exec.Command("go", append([]string{"run", xcaddyModule}, args...)...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	if err := cmd.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "xcaddy:", err)
		os.Exit(1)
	}
}

func load(path string) (Manifest, error) {
	var m Manifest
	b, err := os.ReadFile(path)
	if err != nil {
		return m, err
	}
	dec := json.NewDecoder(strings.NewReader(string(b)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&m); err != nil {
		return m, fmt.Errorf("%s: %v", path, err)
	}
	if m.CaddyVersion == "" {
		return m, fmt.Errorf("%s: caddy_version: required", path)
	}
	if len(m.With) == 0 {
		return m, errors.New(path + ": with: at least one module required")
	}
	for i, w := range m.With {
		if w.Module == "" {
			return m, fmt.Errorf("%s: with[%d].module: required", path, i)
		}
	}
	return m, nil
}

// Command returns xcaddy's arguments and the environment it reads.
func (m Manifest) Command() (args, env []string) {
	args = []string{"build", m.CaddyVersion}
	for _, w := range m.With {
		spec := w.Module
		if w.Replace != "" {
			spec += "=" + w.Replace
		}
		args = append(args, "--with", spec)
	}
	if m.Output != "" {
		args = append(args, "--output", m.Output)
	}
	var flags []string
	if len(m.BuildTags) > 0 {
		flags = append(flags, "-tags", strings.Join(m.BuildTags, ","))
	}
	if m.LDFlags != "" {
		flags = append(flags, "-ldflags", "'"+m.LDFlags+"'")
	}
	if len(flags) > 0 {
		env = append(env, "XCADDY_GO_BUILD_FLAGS="+strings.Join(flags, " "))
	}
	return args, env
}
