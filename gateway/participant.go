package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/thon-dev/thon/llm"
	"github.com/thon-dev/thon/store"
)

// A participant sees their own gateway consumer: its limits and usage, and
// its key once. The key is the one in the consumer's kilo.jsonc, which the
// sandbox gets too; it is shown to each user once per key (a per-group key
// once to each member), and a rotation gives a key that may be shown once
// again.

// Participant is a user as the gateway shows them their consumer: their
// user id and their group and user names now.
type Participant struct {
	UserID      int64
	Group, User string
}

// ParticipantView is what a participant may see of their consumer.
type ParticipantView struct {
	// Mode is the gateway's: per-user (their own key) or per-group (their
	// group's key).
	Mode string `json:"mode"`
	// GatewayURL is the gateway's OpenAI base URL as their sandbox reaches
	// it (the one in its kilo.jsonc).
	GatewayURL string `json:"gateway_url"`
	// Consumer is the consumer whose key they use, without the key.
	Consumer ConsumerView `json:"consumer"`
	// KeyRevealed tells whether the current key was shown to them.
	KeyRevealed bool `json:"key_revealed"`
	// RevealedAt is when, if it was.
	RevealedAt *time.Time `json:"revealed_at,omitempty"`
	// CanRotate tells whether they may rotate the key themselves: their own
	// key (per-user) that an organiser has not revoked.
	CanRotate bool `json:"can_rotate"`
	// Window is the use of the token window now.
	Window WindowUsage `json:"window"`
	// Total is the consumer's usage ever recorded (the group's, per-group);
	// absent before its first request.
	Total *store.ConsumerUsage `json:"total,omitempty"`
}

// WindowUsage is a consumer's limits with the tokens recorded within the
// last window.
type WindowUsage struct {
	// Seconds is the window's length.
	Seconds int64 `json:"seconds"`
	// Strategy is what the token limit counts: total_tokens, prompt_tokens
	// or completion_tokens.
	Strategy string `json:"strategy"`
	// TokenLimit is the tokens the consumer may use per window (the
	// effective limit); 0 is no limit.
	TokenLimit int64 `json:"token_limit"`
	// Used is the tokens the requests of the last window counted for, as
	// recorded (records are written about every second).
	Used int64 `json:"used"`
	// Remaining is TokenLimit minus Used, at least 0; absent without a
	// token limit.
	Remaining *int64 `json:"remaining,omitempty"`
	// Requests is the requests recorded within the window.
	Requests int64 `json:"requests"`
	// ConcurrencyLimit is the requests the consumer may have in flight (the
	// effective limit); 0 is no limit.
	ConcurrencyLimit int `json:"concurrency_limit"`
}

// keyError is a refusal to show or rotate a participant's key: its own
// message for the participant, matching the error it wraps (store.ErrSpent
// for a key shown already).
type keyError struct {
	msg string
	err error
}

func (e *keyError) Error() string { return e.msg }
func (e *keyError) Unwrap() error { return e.err }

// consumerOf returns the gateway's settings and the consumer whose key p
// uses. With sync, a consumer the roster calls for but that is missing is
// made first (see Sync); sync must be false while the lock is held. It
// fails with ErrOff while the gateway is off and store.ErrNotFound when p
// has no consumer.
func (s *Service) consumerOf(ctx context.Context, p Participant, sync bool) (Settings, store.Consumer, error) {
	g, err := LoadSettings(ctx, s.st)
	if err != nil {
		return g, store.Consumer{}, err
	}
	if !g.Enabled {
		return g, store.Consumer{}, ErrOff
	}
	name := ConsumerName(g.Mode, p.Group, p.User)
	c, err := s.st.GetConsumer(ctx, name)
	if sync && errors.Is(err, store.ErrNotFound) {
		if _, _, err := s.Sync(ctx); err != nil {
			return g, store.Consumer{}, err
		}
		c, err = s.st.GetConsumer(ctx, name)
	}
	if errors.Is(err, store.ErrNotFound) {
		return g, c, fmt.Errorf("user %s/%s has no gateway consumer %q (an organiser can create it): %w",
			p.Group, p.User, name, store.ErrNotFound)
	}
	return g, c, err
}

// lockConsumer takes the consumers' lock and returns p's consumer as it
// is under it (made first if the roster calls for it; see consumerOf).
// The caller calls unlock once done; on error the lock is not held.
func (s *Service) lockConsumer(ctx context.Context, p Participant) (c store.Consumer, unlock func(), err error) {
	if _, _, err := s.consumerOf(ctx, p, true); err != nil {
		return c, nil, err
	}
	unlock = s.lock()
	if _, c, err = s.consumerOf(ctx, p, false); err != nil {
		unlock()
		return c, nil, err
	}
	return c, unlock, nil
}

// Participant describes p's consumer: mode, gateway URL, limits, usage in
// the window and in total, and whether the key was shown to them.
func (s *Service) Participant(ctx context.Context, p Participant) (ParticipantView, error) {
	g, c, err := s.consumerOf(ctx, p, true)
	if err != nil {
		return ParticipantView{}, err
	}
	v := View(c)
	out := ParticipantView{
		Mode: c.Mode, GatewayURL: s.kiloURL, Consumer: v,
		CanRotate: c.Mode == ModePerUser && c.RevokedAt == nil,
		Window: WindowUsage{
			Seconds: c.TokenWindow, Strategy: g.Strategy,
			TokenLimit: v.EffectiveTokenLimit, ConcurrencyLimit: v.EffectiveConcurrencyLimit,
		},
	}
	at, shown, err := s.st.KeyRevealedAt(ctx, p.UserID, c.Username, c.KeyHash)
	if err != nil {
		return ParticipantView{}, err
	}
	if shown {
		out.KeyRevealed, out.RevealedAt = true, &at
	}
	if c.TokenWindow > 0 {
		from := time.Now().Add(-time.Duration(c.TokenWindow) * time.Second)
		u, err := s.st.UsageSummary(ctx, store.UsageFilter{From: from, Consumer: c.Username})
		if err != nil {
			return ParticipantView{}, err
		}
		if len(u) == 1 {
			lim := Limits{Strategy: g.Strategy}
			out.Window.Used = lim.Cost(Usage{Prompt: u[0].PromptTokens, Completion: u[0].CompletionTokens, Total: u[0].TotalTokens})
			out.Window.Requests = u[0].Requests
		}
	}
	if out.Window.TokenLimit > 0 {
		left := max(out.Window.TokenLimit-out.Window.Used, 0)
		out.Window.Remaining = &left
	}
	total, err := s.st.UsageSummary(ctx, store.UsageFilter{Consumer: c.Username})
	if err != nil {
		return ParticipantView{}, err
	}
	if len(total) == 1 {
		out.Total = &total[0]
	}
	return out, nil
}

// RevealKey shows p the key of their consumer, once: a key shown to them
// already is refused with an error matching store.ErrSpent (a rotation
// gives a new key to show). A per-group key is shown once to each member.
// A revoked key is refused with ErrConflict.
func (s *Service) RevealKey(ctx context.Context, p Participant) (IssuedConsumer, error) {
	c, unlock, err := s.lockConsumer(ctx, p)
	if err != nil {
		return IssuedConsumer{}, err
	}
	defer unlock()
	if err := revokedError(c); err != nil {
		return IssuedConsumer{}, err
	}
	kilo, ok, err := s.st.ConsumerKilo(ctx, c.Username)
	if err != nil {
		return IssuedConsumer{}, err
	}
	key, kerr := kiloKey(kilo)
	if !ok || kerr != nil || HashKey(key) != c.KeyHash {
		return IssuedConsumer{}, &conflictError{fmt.Errorf("the key of consumer %q can no longer be read: it must be rotated", c.Username)}
	}
	if _, err := s.st.RecordKeyReveal(ctx, p.UserID, c.Username, c.KeyHash); err != nil {
		var shown *store.RevealedError
		if !errors.As(err, &shown) {
			return IssuedConsumer{}, err
		}
		when := shown.At.UTC().Format(time.RFC3339)
		if c.Mode == ModePerGroup {
			return IssuedConsumer{}, &keyError{fmt.Sprintf("your group's gateway key was shown to you already (%s) and is shown once; "+
				"it is shared by the group, so only an organiser can rotate it", when), err}
		}
		return IssuedConsumer{}, &keyError{fmt.Sprintf("your gateway key was shown already (%s) and is shown once: "+
			"rotate it to get a new one (the old one stops working)", when), err}
	}
	return IssuedConsumer{ConsumerView: View(c), Key: key}, nil
}

// RotateParticipantKey gives p's own consumer a new key, shown this once
// (it counts as shown to them), as RotateConsumer does. A per-group key is
// the group's: only an organiser rotates it (ErrConflict), and so is a key
// an organiser revoked.
func (s *Service) RotateParticipantKey(ctx context.Context, p Participant) (IssuedConsumer, error) {
	c, unlock, err := s.lockConsumer(ctx, p)
	if err != nil {
		return IssuedConsumer{}, err
	}
	defer unlock()
	if c.Mode == ModePerGroup {
		return IssuedConsumer{}, &conflictError{fmt.Errorf("the gateway is per-group: your key is your group's (consumer %q), "+
			"shared by its members, so only an organiser can rotate it", c.Username)}
	}
	if err := revokedError(c); err != nil {
		return IssuedConsumer{}, err
	}
	out, err := s.rotateLocked(ctx, c.Username)
	if err != nil {
		return IssuedConsumer{}, err
	}
	if _, err := s.st.RecordKeyReveal(ctx, p.UserID, out.Username, HashKey(out.Key)); err != nil {
		return IssuedConsumer{}, err
	}
	return out, nil
}

// revokedError refuses to show or rotate a key an organiser revoked.
func revokedError(c store.Consumer) error {
	if c.RevokedAt == nil {
		return nil
	}
	return &conflictError{fmt.Errorf("the gateway key of consumer %q was revoked by an organiser: ask them for a new one", c.Username)}
}

// kiloKey returns the gateway key written in a consumer's kilo.jsonc.
func kiloKey(content string) (string, error) {
	var doc struct {
		Provider map[string]struct {
			Options struct {
				APIKey string `json:"apiKey"`
			} `json:"options"`
		} `json:"provider"`
	}
	if err := json.Unmarshal([]byte(content), &doc); err != nil {
		return "", fmt.Errorf("consumer kilo.jsonc: %w", err)
	}
	key := doc.Provider[llm.KiloProviderGateway].Options.APIKey
	if key == "" {
		return "", fmt.Errorf("consumer kilo.jsonc: no %s provider with an apiKey", llm.KiloProviderGateway)
	}
	return key, nil
}
