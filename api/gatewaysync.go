package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"

	"github.com/thon-dev/thon/gateway"
	"github.com/thon-dev/thon/llm"
	"github.com/thon-dev/thon/store"
)

// Settings keys of the gateway, as the original named them where it had
// them.
const (
	settingGatewayEnabled     = "gateway_enabled"
	settingGatewayMode        = "gateway_mode"
	settingGatewayTokenLimit  = "gateway_rate_limit"
	settingGatewayWindow      = "gateway_time_window"
	settingGatewayConcurrency = "gateway_concurrency_limit"
	settingGatewayStrategy    = "gateway_strategy"
)

// Defaults of the gateway settings: the original's (concurrency 1, no
// token limit, a 60-second window).
const (
	DefaultGatewayConcurrency = 1
	DefaultGatewayWindow      = 60
)

// GatewaySettings are the gateway's settings kept in the database: whether
// it is on, its consumer mode, and the per-user limits new consumers get.
type GatewaySettings struct {
	Enabled          bool   `json:"enabled"`
	Mode             string `json:"mode"`
	TokenLimit       int64  `json:"token_limit"`
	TokenWindow      int64  `json:"token_window"`
	ConcurrencyLimit int    `json:"concurrency_limit"`
	Strategy         string `json:"strategy"`
}

// LoadGatewaySettings reads the gateway's settings; unset ones keep their
// defaults (off, per-user, concurrency 1, no token limit, 60 s window,
// total_tokens).
func LoadGatewaySettings(ctx context.Context, st *store.Store) (GatewaySettings, error) {
	g := GatewaySettings{
		Mode:             gateway.ModePerUser,
		TokenWindow:      DefaultGatewayWindow,
		ConcurrencyLimit: DefaultGatewayConcurrency,
		Strategy:         gateway.StrategyTotalTokens,
	}
	read := func(key string, set func(string) error) error {
		v, ok, err := st.Setting(ctx, key)
		if err != nil || !ok || v == "" {
			return err
		}
		if err := set(v); err != nil {
			return fmt.Errorf("setting %s: %q: %v", key, v, err)
		}
		return nil
	}
	integer := func(dst *int64) func(string) error {
		return func(v string) (err error) { *dst, err = strconv.ParseInt(v, 10, 64); return err }
	}
	var conc int64 = DefaultGatewayConcurrency
	for _, r := range []struct {
		key string
		set func(string) error
	}{
		{settingGatewayEnabled, func(v string) (err error) { g.Enabled, err = strconv.ParseBool(v); return err }},
		{settingGatewayMode, func(v string) error { g.Mode = v; return nil }},
		{settingGatewayTokenLimit, integer(&g.TokenLimit)},
		{settingGatewayWindow, integer(&g.TokenWindow)},
		{settingGatewayConcurrency, integer(&conc)},
		{settingGatewayStrategy, func(v string) error { g.Strategy = v; return nil }},
	} {
		if err := read(r.key, r.set); err != nil {
			return g, err
		}
	}
	g.ConcurrencyLimit = int(conc)
	return g, nil
}

// settingsMap is g as settings rows.
func (g GatewaySettings) settingsMap() map[string]string {
	return map[string]string{
		settingGatewayEnabled:     strconv.FormatBool(g.Enabled),
		settingGatewayMode:        g.Mode,
		settingGatewayTokenLimit:  strconv.FormatInt(g.TokenLimit, 10),
		settingGatewayWindow:      strconv.FormatInt(g.TokenWindow, 10),
		settingGatewayConcurrency: strconv.Itoa(g.ConcurrencyLimit),
		settingGatewayStrategy:    g.Strategy,
	}
}

// gatewayLocks serialises the consumer changes of one database (setup,
// sync, create, rotate, delete, cleanup), across the API servers of
// overlapping configs.
var gatewayLocks sync.Map // database path -> *sync.Mutex

func (s *Server) gatewayLock() func() {
	mu, _ := gatewayLocks.LoadOrStore(s.store.Path(), new(sync.Mutex))
	mu.(*sync.Mutex).Lock()
	return mu.(*sync.Mutex).Unlock
}

// gatewayChanged tells the running gateway that consumers changed.
func (s *Server) gatewayChanged(ctx context.Context) {
	if s.gateway.Changed == nil {
		return
	}
	if err := s.gateway.Changed(context.WithoutCancel(ctx)); err != nil {
		s.logger.Error("reloading the gateway's keys", "error", err)
	}
}

// issued is a consumer made with a new key, and the kilo.jsonc for it.
type issued struct {
	consumer store.Consumer
	key      string
	kilo     string
}

// kiloMaker generates the kilo.jsonc of a consumer from its key.
type kiloMaker func(mode, key string) (string, error)

// issue makes a consumer with a new key and its kilo.jsonc.
func issue(c store.Consumer, kilo kiloMaker) (issued, error) {
	key, err := gateway.NewKey()
	if err != nil {
		return issued{}, err
	}
	c.KeyHash, c.KeyPrefix = gateway.HashKey(key), gateway.KeyPrefix(key)
	k, err := kilo(c.Mode, key)
	if err != nil {
		return issued{}, err
	}
	return issued{consumer: c, key: key, kilo: k}, nil
}

// wantConsumer is a consumer the roster calls for.
type wantConsumer struct {
	name, group, user string
}

// wantedConsumers returns the consumers the roster calls for in mode: one
// per user, or one per group with users. Names two roster entries share
// (group "a-b" user "c" and group "a" user "b-c" both make "a-b-c") are
// reported in clashes and left out.
func wantedConsumers(groups []store.Group, mode string) (want []wantConsumer, clashes []string) {
	seen := map[string]bool{}
	add := func(w wantConsumer) {
		if seen[w.name] {
			clashes = append(clashes, w.name)
			return
		}
		seen[w.name] = true
		want = append(want, w)
	}
	for _, g := range groups {
		if mode == gateway.ModePerGroup {
			if len(g.Users) > 0 {
				add(wantConsumer{name: gateway.GroupConsumerName(g.Name), group: g.Name})
			}
			continue
		}
		for _, u := range g.Users {
			add(wantConsumer{name: gateway.UserConsumerName(g.Name, u.Name), group: g.Name, user: u.Name})
		}
	}
	return want, clashes
}

// newConsumerRow is the row of a wanted consumer with the default limits
// of g.
func newConsumerRow(w wantConsumer, g GatewaySettings) store.Consumer {
	return store.Consumer{
		Username: w.name, Mode: g.Mode, Group: w.group, User: w.user,
		TokenLimit: g.TokenLimit, TokenWindow: g.TokenWindow, ConcurrencyLimit: g.ConcurrencyLimit,
	}
}

// SyncGateway brings the consumers in line with the roster while the
// gateway is on: it creates a consumer, with a new key and its kilo.jsonc,
// for every user (per-user) or group (per-group) that has none, so that
// users imported later get one, and deletes the consumers whose user or
// group no longer exists. It returns how many it created and deleted.
func (s *Server) SyncGateway(ctx context.Context) (created, deleted int, err error) {
	if s.gateway == nil {
		return 0, 0, nil
	}
	unlock := s.gatewayLock()
	defer unlock()
	created, deleted, err = s.syncGatewayLocked(ctx)
	if created+deleted > 0 {
		s.gatewayChanged(ctx)
	}
	return created, deleted, err
}

func (s *Server) syncGatewayLocked(ctx context.Context) (created, deleted int, err error) {
	g, err := LoadGatewaySettings(ctx, s.store)
	if err != nil || !g.Enabled {
		return 0, 0, err
	}
	groups, err := s.store.ListGroups(ctx)
	if err != nil {
		return 0, 0, err
	}
	have, err := s.store.ListConsumers(ctx)
	if err != nil {
		return 0, 0, err
	}
	users := map[[2]string]bool{}
	for _, gr := range groups {
		users[[2]string{gr.Name, ""}] = true
		for _, u := range gr.Users {
			users[[2]string{gr.Name, u.Name}] = true
		}
	}
	existing := map[string]bool{}
	var orphans []string
	for _, c := range have {
		existing[c.Username] = true
		if !users[[2]string{c.Group, c.User}] {
			orphans = append(orphans, c.Username)
		}
	}
	if len(orphans) > 0 {
		if deleted, err = s.store.DeleteConsumers(store.WithActor(ctx, "gateway"), orphans); err != nil {
			return 0, 0, err
		}
	}
	want, clashes := wantedConsumers(groups, g.Mode)
	if len(clashes) > 0 {
		s.logger.Warn("two users make the same gateway consumer name; the second gets none", "names", clashes)
	}
	var missing []wantConsumer
	for _, w := range want {
		if !existing[w.name] {
			missing = append(missing, w)
		}
	}
	if len(missing) == 0 {
		return 0, deleted, nil
	}
	kilo, err := s.kiloMaker(ctx)
	if err != nil {
		return 0, deleted, err
	}
	rows := make([]store.Consumer, 0, len(missing))
	kilos := make(map[string]string, len(missing))
	for _, w := range missing {
		is, err := issue(newConsumerRow(w, g), kilo)
		if err != nil {
			return 0, deleted, err
		}
		rows = append(rows, is.consumer)
		kilos[w.name] = is.kilo
	}
	if _, err := s.store.CreateConsumers(store.WithActor(ctx, "gateway"), rows, kilos); err != nil {
		return 0, deleted, err
	}
	return len(rows), deleted, nil
}

// GatewayKilo returns the kilo.jsonc of a user's gateway consumer (the
// user's own, or the group's), when the gateway is on: it points Kilo at
// the gateway with that consumer's key. A user without a consumer gets one
// first (see SyncGateway). ok is false when the gateway is off or the
// user has no consumer, and the sandbox gets the organiser's kilo.jsonc.
func (s *Server) GatewayKilo(ctx context.Context, group, user string) (content string, ok bool, err error) {
	if s.gateway == nil {
		return "", false, nil
	}
	g, err := LoadGatewaySettings(ctx, s.store)
	if err != nil || !g.Enabled {
		return "", false, err
	}
	name := gateway.UserConsumerName(group, user)
	if g.Mode == gateway.ModePerGroup {
		name = gateway.GroupConsumerName(group)
	}
	content, ok, err = s.store.ConsumerKilo(ctx, name)
	if err != nil || ok {
		return content, ok, err
	}
	if _, _, err := s.SyncGateway(ctx); err != nil {
		return "", false, err
	}
	return s.store.ConsumerKilo(ctx, name)
}

// kiloMaker returns the generator of consumers' kilo.jsonc: Lemonade's
// models as thon set them up (read back from Lemonade's configuration
// directory when there is one, else the defaults), the gateway URL, and
// the organiser's kilo.jsonc (Caddyfile file or database slot) as the
// skeleton, without its direct Lemonade provider, which would carry
// Lemonade's own key past the gateway.
func (s *Server) kiloMaker(ctx context.Context) (kiloMaker, error) {
	settings, err := s.lemonadeSettings()
	if err != nil {
		return nil, err
	}
	res, err := s.store.ResolveConfig(ctx, store.KeyKiloJSON, s.gateway.KiloFile)
	if err != nil {
		return nil, err
	}
	var skeleton []byte
	if res.Content != "" {
		if skeleton, err = gatewaySkeleton([]byte(res.Content)); err != nil {
			return nil, fmt.Errorf("kilo.jsonc (%s): %w", res.Source, err)
		}
	}
	opts := s.gateway
	return func(mode, key string) (string, error) {
		km := llm.KiloGatewayPerUser
		if mode == gateway.ModePerGroup {
			km = llm.KiloGatewayPerGroup
		}
		b, err := llm.GenerateKilo(settings, llm.KiloOptions{
			Mode: km, ExternalIP: opts.ExternalIP, GatewayURL: opts.KiloURL, APIKey: key, Skeleton: skeleton,
		})
		return string(b), err
	}, nil
}

// gatewaySkeleton is an organiser's kilo.jsonc made into a skeleton for
// gateway configs: normalised, without the direct "lemonade" provider.
func gatewaySkeleton(content []byte) ([]byte, error) {
	norm, err := llm.NormalizeKilo(content)
	if err != nil {
		return nil, err
	}
	var doc map[string]any
	if err := json.Unmarshal(norm, &doc); err != nil {
		return nil, err
	}
	if p, ok := doc["provider"].(map[string]any); ok {
		delete(p, llm.KiloProviderDirect)
	}
	if m, ok := doc["model"].(string); ok && strings.HasPrefix(m, llm.KiloProviderDirect+"/") {
		delete(doc, "model")
	}
	return json.Marshal(doc)
}

// lemonadeSettings are the models and options of the Lemonade Server thon
// set up, read back from its configuration directory; the defaults when
// Lemonade is not configured or the directory has no configuration.
func (s *Server) lemonadeSettings() (llm.Settings, error) {
	if s.lemonade == nil {
		return llm.DefaultSettings(), nil
	}
	dir := s.lemonade.ConfigDir
	if dir == "" {
		dir = llm.DefaultConfigDir
	}
	var f llm.Files
	for name, dst := range map[string]*[]byte{
		llm.ConfigFile: &f.Config, llm.UserModelsFile: &f.UserModels, llm.RecipeOptionsFile: &f.RecipeOptions,
	} {
		b, err := os.ReadFile(filepath.Join(dir, name))
		switch {
		case errors.Is(err, fs.ErrNotExist):
		case err != nil:
			s.logger.Warn("cannot read Lemonade's configuration; kilo.jsonc gets the default models", "error", err)
			return llm.DefaultSettings(), nil
		}
		*dst = b
	}
	settings, _, err := RecoverLemonadeSettings(f)
	if err != nil {
		return llm.Settings{}, errorf(http.StatusConflict, "", "lemonade config dir %s: %v", dir, err)
	}
	return settings, nil
}
