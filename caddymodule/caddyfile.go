package caddymodule

import (
	"encoding/json"
	"net"
	"os"
	"strconv"
	"strings"

	"github.com/dustin/go-humanize"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"

	"github.com/thon-dev/thon/sandboxes"
)

func init() {
	httpcaddyfile.RegisterGlobalOption("thon", parseGlobalOption)
	deriveListenEnv()
}

// deriveListenEnv derives the variables Caddyfile.example needs from the
// ones operators set, unless they are set already. A Caddyfile substitutes
// environment variables as text, before parsing, so it cannot split a
// value or choose a block by itself:
//
//   - THON_LISTEN (host:port) becomes THON_LISTEN_HOST and THON_LISTEN_PORT:
//     the dev listener is a port-only site, so it answers any Host header,
//     bound to the host, so it listens on loopback only;
//   - THON_PUBLIC_MODE is "domain" when THON_DOMAIN is set, else "ip" when
//     THON_EXTERNAL_IP is set, else "none": the example imports the snippet
//     public_<mode>, which holds the HTTPS site (or nothing).
func deriveListenEnv() {
	if _, ok := os.LookupEnv("THON_PUBLIC_MODE"); !ok {
		mode := "none"
		switch {
		case os.Getenv("THON_DOMAIN") != "":
			mode = "domain"
		case os.Getenv("THON_EXTERNAL_IP") != "":
			mode = "ip"
		}
		os.Setenv("THON_PUBLIC_MODE", mode)
	}
	v := os.Getenv("THON_LISTEN")
	if v == "" {
		return
	}
	host, port, err := net.SplitHostPort(v)
	if err != nil {
		return // the Caddyfile then reports the bad address
	}
	if _, ok := os.LookupEnv("THON_LISTEN_HOST"); !ok {
		os.Setenv("THON_LISTEN_HOST", host)
	}
	if _, ok := os.LookupEnv("THON_LISTEN_PORT"); !ok {
		os.Setenv("THON_LISTEN_PORT", port)
	}
}

// parseGlobalOption sets up the thon app from the global option block.
// Syntax:
//
//	thon {
//		data_dir             <dir>
//		database             <path>
//		external_ip          <ip>
//		domain               <name>
//		docker_host          <address>
//		image                <image>
//		workspace            volume | ephemeral | bind <dir>
//		secure               [true|false]
//		groups_file          <path>
//		kilo_file            <path>
//		vscode_settings_file <path>
//		port_range           <first> <last>
//		ttl                  <duration>
//		memory               <size>
//		cpus                 <number>
//		pids                 <number>
//		concurrency          <number>
//		nginx                { ... }
//		lemonade             { ... }
//		gateway              { ... }
//		auth                 { ... }
//	}
//
// The nginx block is described at parseNginxOption, the lemonade block at
// parseLemonadeOption, the gateway block at parseGatewayOption, the auth
// block at parseAuthOption.
//
// A string option given no value (as happens when it is set from an empty
// environment variable) is left unset. A second thon block extends the
// first.
func parseGlobalOption(d *caddyfile.Dispenser, existing any) (any, error) {
	app := new(App)
	if prev, ok := existing.(httpcaddyfile.App); ok {
		if err := json.Unmarshal(prev.Value, app); err != nil {
			return nil, d.WrapErr(err)
		}
	}
	if err := app.UnmarshalCaddyfile(d); err != nil {
		return nil, err
	}
	return httpcaddyfile.App{Name: "thon", Value: caddyconfig.JSON(app, nil)}, nil
}

// UnmarshalCaddyfile reads the thon global option block; see
// parseGlobalOption for the syntax.
func (a *App) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // option name
	if d.NextArg() {
		return d.ArgErr()
	}
	seen := map[string]bool{}
	for d.NextBlock(0) {
		opt := d.Val()
		if seen[opt] {
			return d.Errf("thon option %q already specified", opt)
		}
		seen[opt] = true
		var target *string
		switch opt {
		case "data_dir":
			target = &a.DataDir
		case "database":
			target = &a.Database
		case "external_ip":
			target = &a.ExternalIP
		case "domain":
			target = &a.Domain
		case "docker_host":
			target = &a.DockerHost
		case "image":
			target = &a.Image
		case "groups_file":
			target = &a.GroupsFile
		case "kilo_file":
			target = &a.KiloFile
		case "vscode_settings_file":
			target = &a.VSCodeSettingsFile
		case "workspace":
			if !d.NextArg() {
				return d.Errf("workspace: expected volume, ephemeral or bind <dir>")
			}
			switch mode := d.Val(); mode {
			case sandboxes.WorkspaceVolume, sandboxes.WorkspaceEphemeral:
				a.WorkspaceMode, a.WorkspaceDir = mode, ""
			case sandboxes.WorkspaceBind:
				if !d.NextArg() {
					return d.Errf("workspace bind: missing the host directory")
				}
				a.WorkspaceMode, a.WorkspaceDir = mode, d.Val()
			default:
				return d.Errf("workspace: %q is not one of volume, ephemeral, bind", mode)
			}
			if d.NextArg() {
				return d.ArgErr()
			}
			continue
		case "port_range":
			var first, last string
			if !d.AllArgs(&first, &last) {
				return d.Errf("port_range: expected <first> <last>")
			}
			for _, p := range []struct {
				v string
				n *int
			}{{first, &a.PortStart}, {last, &a.PortEnd}} {
				n, err := strconv.Atoi(p.v)
				if err != nil {
					return d.Errf("port_range: %q is not a port number", p.v)
				}
				*p.n = n
			}
			if err := sandboxes.CheckPortRange(a.PortStart, a.PortEnd); err != nil {
				return d.Err(err.Error())
			}
			continue
		case "ttl":
			var v string
			if !d.AllArgs(&v) {
				return d.ArgErr()
			}
			dur, err := caddy.ParseDuration(v)
			if err != nil || dur < 0 {
				return d.Errf("ttl: %q is not a duration such as 8h or 2d", v)
			}
			a.TTL = caddy.Duration(dur)
			continue
		case "memory":
			var v string
			if !d.AllArgs(&v) {
				return d.ArgErr()
			}
			n, err := humanize.ParseBytes(v)
			if err != nil || n < 64<<20 {
				return d.Errf("memory: %q is not a size of at least 64MiB, such as 4GiB", v)
			}
			a.MemoryBytes = int64(n)
			continue
		case "cpus":
			var v string
			if !d.AllArgs(&v) {
				return d.ArgErr()
			}
			f, err := strconv.ParseFloat(v, 64)
			if err != nil || f <= 0 || f > 1024 {
				return d.Errf("cpus: %q is not a positive number of CPUs", v)
			}
			a.CPUs = f
			continue
		case "pids", "concurrency":
			var v string
			if !d.AllArgs(&v) {
				return d.ArgErr()
			}
			n, err := strconv.Atoi(v)
			if err != nil || n < 1 {
				return d.Errf("%s: %q is not a positive whole number", opt, v)
			}
			if opt == "pids" {
				a.PidsLimit = int64(n)
			} else {
				a.Concurrency = n
			}
			continue
		case "nginx":
			cfg, err := parseNginxOption(d)
			if err != nil {
				return err
			}
			a.Nginx = cfg
			continue
		case "lemonade":
			cfg, err := parseLemonadeOption(d)
			if err != nil {
				return err
			}
			a.Lemonade = cfg
			continue
		case "gateway":
			cfg, err := parseGatewayOption(d)
			if err != nil {
				return err
			}
			a.Gateway = cfg
			continue
		case "auth":
			cfg, err := parseAuthOption(d)
			if err != nil {
				return err
			}
			a.Auth = cfg
			continue
		case "secure":
			a.Secure = true
			if d.NextArg() {
				b, err := strconv.ParseBool(d.Val())
				if err != nil {
					return d.Errf("secure: %q is not true or false", d.Val())
				}
				a.Secure = b
			}
			if d.NextArg() {
				return d.ArgErr()
			}
			continue
		default:
			return d.Errf("unrecognized thon option %q", opt)
		}
		args := d.RemainingArgs()
		switch len(args) {
		case 0:
			*target = ""
		case 1:
			*target = args[0]
		default:
			return d.Errf("%s: expected one value, got %d", opt, len(args))
		}
	}
	return nil
}

// Interface guard
var _ caddyfile.Unmarshaler = (*App)(nil)

// blockOptions walks the block of the global option's setting name, which
// takes no arguments, calling set for each of its settings with its one
// value; a setting may appear once. With emptyOK a setting may come with
// no value (as an empty environment variable leaves it) and set gets "".
func blockOptions(d *caddyfile.Dispenser, name string, emptyOK bool, set func(opt, v string) error) error {
	if d.NextArg() {
		return d.ArgErr()
	}
	seen := map[string]bool{}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		opt := d.Val()
		if seen[opt] {
			return d.Errf("%s option %q already specified", name, opt)
		}
		seen[opt] = true
		args := d.RemainingArgs()
		switch {
		case emptyOK && len(args) > 1:
			return d.Errf("%s %s: expected one value, got %d", name, opt, len(args))
		case !emptyOK && len(args) != 1:
			return d.Errf("%s %s: expected one value", name, opt)
		}
		v := ""
		if len(args) == 1 {
			v = args[0]
		}
		if err := set(opt, v); err != nil {
			return err
		}
	}
	return nil
}

// expand resolves the global placeholders ({env.*} and the like) in a
// setting and trims it, giving def for an empty result.
func expand(v, def string) string {
	v = strings.TrimSpace(caddy.NewReplacer().ReplaceAll(v, ""))
	if v == "" {
		return def
	}
	return v
}
