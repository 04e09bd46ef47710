package gateway

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/thon-dev/thon/store"
)

// Settings keys of the gateway, as the original named them where it had
// them.
const (
	settingEnabled     = "gateway_enabled"
	settingMode        = "gateway_mode"
	settingTokenLimit  = "gateway_rate_limit"
	settingWindow      = "gateway_time_window"
	settingConcurrency = "gateway_concurrency_limit"
	settingStrategy    = "gateway_strategy"
)

// Defaults of the gateway settings: the original's (concurrency 1, no
// token limit, a 60-second window).
const (
	DefaultConcurrency = 1
	DefaultWindow      = 60
)

// maxWindow is the longest token window accepted, in seconds.
const maxWindow = 366 * 86400

// Settings are the gateway's settings kept in the database: whether it is
// on, its consumer mode, and the per-user limits new consumers get.
type Settings struct {
	Enabled          bool   `json:"enabled"`
	Mode             string `json:"mode"`
	TokenLimit       int64  `json:"token_limit"`
	TokenWindow      int64  `json:"token_window"`
	ConcurrencyLimit int    `json:"concurrency_limit"`
	Strategy         string `json:"strategy"`
}

// LoadSettings reads the gateway's settings; unset ones keep their
// defaults (off, per-user, concurrency 1, no token limit, 60 s window,
// total_tokens).
func LoadSettings(ctx context.Context, st *store.Store) (Settings, error) {
	g := Settings{
		Mode:             ModePerUser,
		TokenWindow:      DefaultWindow,
		ConcurrencyLimit: DefaultConcurrency,
		Strategy:         StrategyTotalTokens,
	}
	read := func(key string, set func(string) error) error {
		v, ok, err := st.Setting(ctx, key)
		if err != nil || !ok || v == "" {
			return err
		}
		if err := set(v); err != nil {
			return fmt.Errorf("setting %s: %q: %w", key, v, err)
		}
		return nil
	}
	integer := func(dst *int64) func(string) error {
		return func(v string) (err error) { *dst, err = strconv.ParseInt(v, 10, 64); return err }
	}
	var conc int64 = DefaultConcurrency
	for _, r := range []struct {
		key string
		set func(string) error
	}{
		{settingEnabled, func(v string) (err error) { g.Enabled, err = strconv.ParseBool(v); return err }},
		{settingMode, func(v string) error { g.Mode = v; return nil }},
		{settingTokenLimit, integer(&g.TokenLimit)},
		{settingWindow, integer(&g.TokenWindow)},
		{settingConcurrency, integer(&conc)},
		{settingStrategy, func(v string) error { g.Strategy = v; return nil }},
	} {
		if err := read(r.key, r.set); err != nil {
			return g, err
		}
	}
	g.ConcurrencyLimit = int(conc)
	return g, nil
}

// Validate reports the first invalid setting as a *store.FieldError
// naming its field (mode, token_limit, token_window, concurrency_limit,
// strategy).
func (g Settings) Validate() error {
	if g.Mode != ModePerUser && g.Mode != ModePerGroup {
		return &store.FieldError{Field: "mode", Msg: fmt.Sprintf("must be %s or %s, got %q", ModePerUser, ModePerGroup, g.Mode)}
	}
	if g.TokenWindow < 1 || g.TokenWindow > maxWindow {
		return &store.FieldError{Field: "token_window", Msg: fmt.Sprintf("must be from 1 to %d seconds, got %d", maxWindow, g.TokenWindow)}
	}
	lim := Limits{Concurrency: g.ConcurrencyLimit, TokenLimit: g.TokenLimit,
		Window: time.Duration(g.TokenWindow) * time.Second, Strategy: g.Strategy}
	if err := lim.Validate(); err != nil {
		field, msg, _ := strings.Cut(err.Error(), ": ")
		switch field {
		case "concurrency":
			field = "concurrency_limit"
		case "window":
			field = "token_window"
		}
		return &store.FieldError{Field: field, Msg: msg}
	}
	return nil
}

// settingsMap is g as settings rows.
func (g Settings) settingsMap() map[string]string {
	return map[string]string{
		settingEnabled:     strconv.FormatBool(g.Enabled),
		settingMode:        g.Mode,
		settingTokenLimit:  strconv.FormatInt(g.TokenLimit, 10),
		settingWindow:      strconv.FormatInt(g.TokenWindow, 10),
		settingConcurrency: strconv.Itoa(g.ConcurrencyLimit),
		settingStrategy:    g.Strategy,
	}
}

// withLimits returns g with the limits that are set.
func (g Settings) withLimits(tokenLimit, tokenWindow *int64, concurrency *int) Settings {
	if tokenLimit != nil {
		g.TokenLimit = *tokenLimit
	}
	if tokenWindow != nil {
		g.TokenWindow = *tokenWindow
	}
	if concurrency != nil {
		g.ConcurrencyLimit = *concurrency
	}
	return g
}
