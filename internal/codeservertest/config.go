package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"net"
	"path/filepath"
	"strconv"
	"strings"
)

// config is what the server runs with, resolved the way code-server resolves
// it: command-line flags over the config file, PASSWORD over the file's
// password.
type config struct {
	bindAddr         string
	auth             string // "none" or "password"
	password         string
	disableTelemetry bool
	workspace        string
	home             string // "" when HOME is unset
}

// parseArgs reads the command line, the environment and the config file.
// getenv and readFile are parameters so tests need not touch the process.
func parseArgs(args []string, getenv func(string) string, readFile func(string) ([]byte, error)) (config, error) {
	flags := flag.NewFlagSet("code-server", flag.ContinueOnError)
	flags.SetOutput(io.Discard)
	bindAddr := flags.String("bind-addr", "", "address to bind to in host:port")
	auth := flags.String("auth", "", "the type of authentication to use: none or password")
	disableTelemetry := flags.Bool("disable-telemetry", false, "disable telemetry")
	configPath := flags.String("config", "", "path to the config file")
	if err := flags.Parse(args); err != nil {
		return config{}, err
	}
	if flags.NArg() > 1 {
		return config{}, fmt.Errorf("expected at most one workspace directory, got %d arguments: %q", flags.NArg(), flags.Args())
	}

	cfg := config{
		bindAddr:         "127.0.0.1:8080",
		auth:             "password",
		disableTelemetry: *disableTelemetry,
		home:             getenv("HOME"),
	}

	path := *configPath
	if path == "" {
		path = defaultConfigPath(getenv, cfg.home)
	}
	file, err := readConfigFile(path, readFile)
	if err != nil {
		return config{}, err
	}
	if v, ok := file["bind-addr"]; ok {
		cfg.bindAddr = v
	}
	if v, ok := file["auth"]; ok {
		cfg.auth = v
	}
	if v, ok := file["password"]; ok {
		cfg.password = v
	}

	if *bindAddr != "" {
		cfg.bindAddr = *bindAddr
	}
	if *auth != "" {
		cfg.auth = *auth
	}
	if pw := getenv("PASSWORD"); pw != "" {
		cfg.password = pw
	}

	if _, port, err := net.SplitHostPort(cfg.bindAddr); err != nil {
		return config{}, fmt.Errorf("bind-addr %q: %v", cfg.bindAddr, err)
	} else if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		return config{}, fmt.Errorf("bind-addr %q: invalid port", cfg.bindAddr)
	}
	switch cfg.auth {
	case "none":
	case "password":
		if cfg.password == "" {
			return config{}, fmt.Errorf("auth password: no password in PASSWORD nor in %s", path)
		}
	default:
		return config{}, fmt.Errorf("auth %q: must be none or password", cfg.auth)
	}

	cfg.workspace = "."
	if flags.NArg() == 1 {
		cfg.workspace = flags.Arg(0)
	}
	if cfg.workspace, err = filepath.Abs(cfg.workspace); err != nil {
		return config{}, fmt.Errorf("workspace: %v", err)
	}
	if cfg.home != "" {
		if cfg.home, err = filepath.Abs(cfg.home); err != nil {
			return config{}, fmt.Errorf("HOME: %v", err)
		}
	}
	return cfg, nil
}

// defaultConfigPath is code-server's default: $XDG_CONFIG_HOME or
// $HOME/.config, then code-server/config.yaml.
func defaultConfigPath(getenv func(string) string, home string) string {
	dir := getenv("XDG_CONFIG_HOME")
	if dir == "" {
		dir = filepath.Join(home, ".config")
	}
	return filepath.Join(dir, "code-server", "config.yaml")
}

// readConfigFile reads the flat "key: value" YAML file code-server writes
// (bind-addr, auth, password, cert). A missing file is an empty config.
func readConfigFile(path string, readFile func(string) ([]byte, error)) (map[string]string, error) {
	data, err := readFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return map[string]string{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("config file: %v", err)
	}
	values := make(map[string]string)
	for i, line := range strings.Split(string(data), "\n") {
		line = strings.TrimSpace(strings.TrimSuffix(line, "\r"))
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		key, value, ok := strings.Cut(line, ":")
		if !ok {
			return nil, fmt.Errorf("%s:%d: expected key: value", path, i+1)
		}
		key = strings.TrimSpace(key)
		value = strings.TrimSpace(value)
		if len(value) >= 2 && (value[0] == '"' && value[len(value)-1] == '"' || value[0] == '\'' && value[len(value)-1] == '\'') {
			value = value[1 : len(value)-1]
		}
		values[key] = value
	}
	return values, nil
}
