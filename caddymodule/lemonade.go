package caddymodule

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	"github.com/thon-dev/thon/api"
	"github.com/thon-dev/thon/llm"
)

// LemonadeConfig connects thon to a Lemonade Server: the REST API's
// /api/lemonade/ routes and a health watcher whose state they show.
type LemonadeConfig struct {
	// Lemonade Server's root URL. Default: http://127.0.0.1:13305.
	URL string `json:"url,omitempty"`

	// Lemonade's API key (LEMONADE_API_KEY) and admin API key
	// (LEMONADE_ADMIN_API_KEY; used for pull, load and unload, and
	// defaulting to the API key). Use {env.*} placeholders: they are
	// resolved when the config loads, so the keys stay out of the JSON.
	APIKey      string `json:"api_key,omitempty"`
	AdminAPIKey string `json:"admin_api_key,omitempty"`

	// How often the health watcher checks Lemonade. Default: 15s.
	HealthInterval caddy.Duration `json:"health_interval,omitempty"`

	// Lemonade's configuration directory, rewritten by POST
	// /api/lemonade/rescale. Default: /var/lib/lemonade.
	ConfigDir string `json:"config_dir,omitempty"`

	// resolved by provision
	client   *llm.Client
	interval time.Duration
	key      string
}

// defaultLemonadeURL is where Lemonade Server listens by default.
const defaultLemonadeURL = "http://127.0.0.1:13305"

// minHealthInterval keeps the health watcher from flooding Lemonade.
const minHealthInterval = 100 * time.Millisecond

// parseLemonadeOption reads the lemonade sub-block of the thon global
// option. Syntax:
//
//	lemonade {
//		url             <url>
//		api_key         <key>
//		admin_api_key   <key>
//		health_interval <duration>
//		config_dir      <dir>
//	}
//
// Every setting is optional; `lemonade` alone uses the defaults. A setting
// given no value (as an empty environment variable leaves it) stays unset.
func parseLemonadeOption(d *caddyfile.Dispenser) (*LemonadeConfig, error) {
	c := new(LemonadeConfig)
	err := blockOptions(d, "lemonade", true, func(opt, v string) error {
		switch opt {
		case "url":
			if v != "" && !strings.Contains(v, "{") {
				if _, err := llm.NewClient(v, "", "", nil); err != nil {
					return d.Errf("lemonade url: %q is not an http(s) URL such as %s", v, defaultLemonadeURL)
				}
			}
			c.URL = v
		case "api_key":
			c.APIKey = v
		case "admin_api_key":
			c.AdminAPIKey = v
		case "config_dir":
			c.ConfigDir = v
		case "health_interval":
			if v == "" {
				return nil
			}
			dur, err := caddy.ParseDuration(v)
			if err != nil || dur < 0 {
				return d.Errf("lemonade health_interval: %q is not a duration such as 15s", v)
			}
			if dur < minHealthInterval {
				return d.Errf("lemonade health_interval: %s is shorter than %s", v, minHealthInterval)
			}
			c.HealthInterval = caddy.Duration(dur)
		default:
			return d.Errf("unrecognized lemonade option %q", opt)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return c, nil
}

// provision resolves placeholders and defaults and builds the client.
// It does no network I/O.
func (c *LemonadeConfig) provision() error {
	url := expand(c.URL, defaultLemonadeURL)
	apiKey, adminKey := expand(c.APIKey, ""), expand(c.AdminAPIKey, "")
	client, err := llm.NewClient(url, apiKey, adminKey, nil)
	if err != nil {
		return err
	}
	if c.HealthInterval != 0 && time.Duration(c.HealthInterval) < minHealthInterval {
		return fmt.Errorf("lemonade health_interval: %v is shorter than %s", time.Duration(c.HealthInterval), minHealthInterval)
	}
	c.client = client
	c.interval = time.Duration(c.HealthInterval)
	if c.interval == 0 {
		c.interval = llm.DefaultWatchInterval
	}
	// The watcher is replaced when any of these change; the keys count
	// through a hash only.
	sum := sha256.Sum256([]byte(apiKey + "\x00" + adminKey))
	c.key = client.BaseURL() + "\x00" + hex.EncodeToString(sum[:]) + "\x00" + c.interval.String()
	return nil
}

// lemonadeOptions are the REST API's Lemonade options from the app's
// lemonade block, or nil when it has none.
func (a *App) lemonadeOptions() (*api.LemonadeOptions, error) {
	c := a.Lemonade
	if c == nil {
		return nil, nil
	}
	if err := c.provision(); err != nil {
		return nil, err
	}
	configDir := expand(c.ConfigDir, "")
	if configDir == "" {
		configDir = llm.DefaultConfigDir
	}
	watch, key := &a.shared.lemonade, c.key
	return &api.LemonadeOptions{
		Client:    c.client,
		Watcher:   func() *llm.Watcher { return watch.current(key) },
		ConfigDir: configDir,
		Rescaler:  &watch.rescaler,
	}, nil
}

// startLemonade runs the health watcher of this config's Lemonade, or
// stops the one running when the config has none. A watcher of the same
// URL, keys and interval goes on across reloads, keeping its state.
func (a *App) startLemonade() {
	if a.Lemonade == nil || a.Lemonade.client == nil {
		a.shared.lemonade.stop()
		return
	}
	a.shared.lemonade.set(a.Lemonade.key, a.Lemonade.client, a.Lemonade.interval)
}

// lemonadeWatch is the running health watcher and the rescaler every
// config's REST API shares, part of the state shared across config
// reloads.
type lemonadeWatch struct {
	rescaler llm.Rescaler

	mu     sync.Mutex
	key    string
	w      *llm.Watcher
	cancel context.CancelFunc
	done   chan struct{}
}

// set starts a watcher for the client unless one with the same key runs.
func (lw *lemonadeWatch) set(key string, c *llm.Client, interval time.Duration) {
	lw.mu.Lock()
	defer lw.mu.Unlock()
	if lw.w != nil && lw.key == key {
		return
	}
	lw.stopLocked()
	ctx, cancel := context.WithCancel(context.Background())
	w := llm.NewWatcher(c, interval)
	lw.key, lw.w, lw.cancel, lw.done = key, w, cancel, make(chan struct{})
	go watchLemonade(ctx, w, c.BaseURL(), interval, lw.done)
}

// current returns the running watcher when it watches with key.
func (lw *lemonadeWatch) current(key string) *llm.Watcher {
	lw.mu.Lock()
	defer lw.mu.Unlock()
	if lw.key != key {
		return nil
	}
	return lw.w
}

// stop stops the running watcher, if any, and waits for it.
func (lw *lemonadeWatch) stop() {
	lw.mu.Lock()
	defer lw.mu.Unlock()
	lw.stopLocked()
}

func (lw *lemonadeWatch) stopLocked() {
	if lw.cancel == nil {
		return
	}
	lw.cancel()
	<-lw.done
	lw.key, lw.w, lw.cancel, lw.done = "", nil, nil, nil
}

// watchLemonade checks Lemonade at once and then every interval until ctx
// is done, logging each change of state.
func watchLemonade(ctx context.Context, w *llm.Watcher, url string, interval time.Duration, done chan struct{}) {
	defer close(done)
	t := time.NewTicker(interval)
	defer t.Stop()
	last := llm.StatusUnknown
	for {
		st := w.Check(ctx)
		if ctx.Err() != nil {
			return
		}
		if st.Status != last {
			// The logger can change with a reload: get it each time.
			log := caddy.Log().Named("thon.lemonade")
			fields := []zap.Field{zap.String("url", url), zap.String("status", st.Status)}
			if st.Status == llm.StatusUp {
				log.Info("lemonade server is up", append(fields, zap.String("version", st.Version), zap.Strings("loaded_models", st.LoadedModels))...)
			} else {
				log.Warn("lemonade server is not usable", append(fields, zap.String("error", st.LastError))...)
			}
			last = st.Status
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
