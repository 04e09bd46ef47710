package caddymodule

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"strconv"
	"strings"

	"go.uber.org/zap"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	"github.com/thon-dev/thon/gateway"
	"github.com/thon-dev/thon/internal/httpurl"
	"github.com/thon-dev/thon/llm"
)

// GatewayConfig is the AI gateway's policy: where the limits of its
// consumers are kept, and where sandboxes reach it.
type GatewayConfig struct {
	// Redis is the host:port of a Redis server shared by every thon
	// serving the gateway, which then hold one set of limits together
	// (one script, one round trip per decision). Empty (the default) keeps
	// limits in this process, across config reloads.
	Redis string `json:"redis,omitempty"`

	// Credentials, database and key prefix on the Redis server. Use
	// {env.*} placeholders for the password: they are resolved when the
	// config loads.
	RedisUsername string `json:"redis_username,omitempty"`
	RedisPassword string `json:"redis_password,omitempty"`
	RedisDB       int    `json:"redis_db,omitempty"`
	RedisPrefix   string `json:"redis_prefix,omitempty"`

	// OnRedisError is what happens to requests while Redis cannot be
	// reached: "closed" (the default) refuses them with 503, "open" lets
	// them through unchecked. Either way, each failure is logged.
	OnRedisError string `json:"on_redis_error,omitempty"`

	// KiloURL is the gateway's OpenAI base URL (ending in /v1) as Kilo
	// inside a sandbox reaches it, written into every consumer's
	// kilo.jsonc. Default: https://<domain>/v1, else
	// https://<external_ip>/v1 (the container must then trust thon's
	// root), else http://localhost:9080/v1.
	KiloURL string `json:"kilo_url,omitempty"`

	// resolved by provision: the Redis limiter's settings (nil: limits
	// in process) and the consumer service
	redis   *gateway.RedisConfig
	service *gateway.Service
}

// parseGatewayOption reads the gateway sub-block of the thon global
// option. Syntax:
//
//	gateway {
//		redis          <host:port>
//		redis_username <name>
//		redis_password <password>
//		redis_db       <number>
//		redis_prefix   <prefix>
//		on_redis_error open|closed
//		kilo_url       <url>
//	}
//
// Every setting is optional; without redis the limits are kept in this
// process. A setting given no value (as an empty environment variable
// leaves it) stays unset.
func parseGatewayOption(d *caddyfile.Dispenser) (*GatewayConfig, error) {
	c := new(GatewayConfig)
	err := blockOptions(d, "gateway", true, func(opt, v string) error {
		switch opt {
		case "redis":
			if v != "" && !strings.Contains(v, "{") {
				if err := checkHostPort(v); err != nil {
					return d.Errf("gateway redis: %w", err)
				}
			}
			c.Redis = v
		case "redis_username":
			c.RedisUsername = v
		case "redis_password":
			c.RedisPassword = v
		case "redis_prefix":
			c.RedisPrefix = v
		case "redis_db":
			if v == "" {
				return nil
			}
			n, err := strconv.Atoi(v)
			if err != nil || n < 0 {
				return d.Errf("gateway redis_db: %q is not a database number (0 or more)", v)
			}
			c.RedisDB = n
		case "on_redis_error":
			if v != "" && v != gateway.RedisFailOpen && v != gateway.RedisFailClosed {
				return d.Errf("gateway on_redis_error: %q is not open or closed", v)
			}
			c.OnRedisError = v
		case "kilo_url":
			if v != "" && !strings.Contains(v, "{") {
				if err := checkKiloURL(v); err != nil {
					return d.Errf("gateway kilo_url: %w", err)
				}
			}
			c.KiloURL = v
		default:
			return d.Errf("unrecognized gateway option %q", opt)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return c, nil
}

// checkHostPort accepts host:port with a port number.
func checkHostPort(v string) error {
	host, port, err := net.SplitHostPort(v)
	if err != nil {
		return fmt.Errorf("%q is not host:port, such as 127.0.0.1:6379", v)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 || host == "" {
		return fmt.Errorf("%q is not host:port, such as 127.0.0.1:6379", v)
	}
	return nil
}

// checkKiloURL accepts an http(s) URL with a host (httpurl's rule).
func checkKiloURL(v string) error {
	if err := httpurl.Check(v, httpurl.Rules{}); err != nil {
		return fmt.Errorf("%w, such as https://thon.example.org/v1", err)
	}
	return nil
}

// provision resolves placeholders and checks the settings, resolving the
// limiter the app's Start puts in place: none is made here, so a config
// that Caddy rejects changes nothing shared.
func (c *GatewayConfig) provision() error {
	for _, f := range []*string{&c.Redis, &c.RedisUsername, &c.RedisPassword, &c.RedisPrefix, &c.OnRedisError, &c.KiloURL} {
		*f = expand(*f, "")
	}
	if c.KiloURL != "" {
		if err := checkKiloURL(c.KiloURL); err != nil {
			return fmt.Errorf("gateway kilo_url: %w", err)
		}
	}
	switch c.OnRedisError {
	case "", gateway.RedisFailOpen, gateway.RedisFailClosed:
	default:
		return fmt.Errorf("gateway on_redis_error: %q is not open or closed", c.OnRedisError)
	}
	c.redis = nil
	if c.Redis == "" {
		return nil
	}
	if err := checkHostPort(c.Redis); err != nil {
		return fmt.Errorf("gateway redis: %w", err)
	}
	rc := &gateway.RedisConfig{
		Addr:     c.Redis,
		Username: c.RedisUsername,
		Password: c.RedisPassword,
		DB:       c.RedisDB,
		Prefix:   c.RedisPrefix,
		FailOpen: c.OnRedisError == gateway.RedisFailOpen,
	}
	if err := rc.Validate(); err != nil {
		return fmt.Errorf("gateway redis: %w", err)
	}
	c.redis = rc
	return nil
}

// gatewayOptions checks the app's gateway settings (a default gateway,
// limits in process, when the Caddyfile has no gateway block) and builds
// the consumer service the REST API and the sandboxes use. It changes
// nothing shared.
func (a *App) gatewayOptions() (*gateway.Service, error) {
	if a.Gateway == nil {
		a.Gateway = new(GatewayConfig)
	}
	if err := a.Gateway.provision(); err != nil {
		return nil, err
	}
	opts := gateway.ServiceOptions{
		KiloURL: a.Gateway.KiloURL, Domain: a.Domain, ExternalIP: a.ExternalIP, KiloFile: a.KiloFile,
	}
	if lc := a.Lemonade; lc != nil {
		dir := expand(lc.ConfigDir, "")
		if dir == "" {
			dir = llm.DefaultConfigDir
		}
		logger := a.logger
		opts.LemonadeSettings = func() (llm.Settings, error) { return recoverLemonadeSettings(dir, logger) }
	}
	a.Gateway.service = gateway.NewService(a.shared.gateway, opts)
	return a.Gateway.service, nil
}

// recoverLemonadeSettings are the models and options of the Lemonade
// Server thon set up, read back from its configuration directory dir
// (llm.ReadSettings): the defaults when it has no configuration or cannot
// be read (thon may run without the rights to Lemonade's directory; the
// warning says so), an error when what it holds is not a configuration
// thon wrote.
func recoverLemonadeSettings(dir string, logger *zap.Logger) (llm.Settings, error) {
	settings, err := llm.ReadSettings(dir)
	var pe *fs.PathError
	if errors.As(err, &pe) {
		logger.Warn("cannot read Lemonade's configuration; kilo.jsonc gets the default models", zap.Error(err))
		return llm.DefaultSettings(), nil
	}
	return settings, err
}

// startGateway makes this config's gateway current: its limiter serves
// the next requests and its service keeps consumers in line with the
// roster. The first start also loads the keys and runs the background
// work (usage batching, roster sync, limiter sweep).
func (a *App) startGateway() error {
	if err := a.shared.gateway.Start(gateway.StartOptions{
		Service: a.Gateway.service,
		Redis:   a.Gateway.redis,
		Logger:  a.ctx.Slogger(),
	}); err != nil {
		return fmt.Errorf("gateway redis: %w", err)
	}
	return nil
}

// gatewayKilo is the sandboxes' KiloFor hook: the user's kilo.jsonc from
// the gateway, when it is on.
func (a *App) gatewayKilo(ctx context.Context, group, user string) (string, bool, error) {
	if a.Gateway == nil || a.Gateway.service == nil {
		return "", false, nil
	}
	return a.Gateway.service.Kilo(ctx, group, user)
}
