package gateway

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/thon-dev/thon/store"
)

// Consumer modes. Their values are the store's, where consumers are kept.
const (
	// ModePerUser gives every participant a consumer named <group>-<user>
	// with its own key and limits.
	ModePerUser = store.ConsumerPerUser
	// ModePerGroup gives a whole group one consumer named group-<group>; its
	// key is shared by the group and its limits are the per-user limits
	// multiplied by the number of members.
	ModePerGroup = store.ConsumerPerGroup
)

// Token limit strategies: which usage figure a token limit counts.
const (
	StrategyTotalTokens      = "total_tokens"
	StrategyPromptTokens     = "prompt_tokens"
	StrategyCompletionTokens = "completion_tokens"
)

// MaxTokenLimit is the largest token limit accepted. It keeps every counter
// exact in Redis, whose Lua numbers are doubles.
const MaxTokenLimit = 1 << 50

// maxConsumerName is the longest consumer name accepted.
const maxConsumerName = 253

// Consumer is an identity of the gateway: the holder of one API key.
type Consumer struct {
	// Name identifies the consumer in limits, metrics and usage:
	// <group>-<user> (per-user) or group-<group> (per-group).
	Name string
	// Mode is ModePerUser or ModePerGroup.
	Mode string
	// Group is the participant group the consumer belongs to.
	Group string
	// User is the participant, for a per-user consumer.
	User string
	// Members is the number of users sharing a per-group consumer.
	Members int
	// KeyHash is HashKey of the consumer's API key.
	KeyHash string
	// Limits are the per-user limits; see EffectiveLimits.
	Limits Limits
}

// Limits are what one consumer may use.
type Limits struct {
	// Concurrency is the number of requests that may be in flight at once;
	// 0 turns the limit off.
	Concurrency int
	// TokenLimit is the number of tokens that may be used in any Window;
	// 0 turns the limit off.
	TokenLimit int64
	// Window is the length of the sliding token window (at least a second
	// when TokenLimit is set).
	Window time.Duration
	// Strategy is the usage figure counted: StrategyTotalTokens (the
	// default when empty), StrategyPromptTokens or StrategyCompletionTokens.
	Strategy string
}

// Validate reports the first invalid field of l.
func (l Limits) Validate() error {
	if l.Concurrency < 0 {
		return fmt.Errorf("concurrency: must not be negative, got %d", l.Concurrency)
	}
	if l.TokenLimit < 0 || l.TokenLimit > MaxTokenLimit {
		return fmt.Errorf("token_limit: must be between 0 and %d, got %d", int64(MaxTokenLimit), l.TokenLimit)
	}
	if l.TokenLimit > 0 && l.Window < time.Second {
		return fmt.Errorf("window: must be at least 1s when token_limit is set, got %v", l.Window)
	}
	if l.Window < 0 {
		return fmt.Errorf("window: must not be negative, got %v", l.Window)
	}
	switch l.Strategy {
	case "", StrategyTotalTokens, StrategyPromptTokens, StrategyCompletionTokens:
	default:
		return fmt.Errorf("strategy: must be %s, %s or %s, got %q",
			StrategyTotalTokens, StrategyPromptTokens, StrategyCompletionTokens, l.Strategy)
	}
	return nil
}

// Cost returns the number of tokens u counts for under l.Strategy. The total
// is never less than prompt plus completion, whatever the upstream reported.
func (l Limits) Cost(u Usage) int64 {
	var n int64
	switch l.Strategy {
	case StrategyPromptTokens:
		n = u.Prompt
	case StrategyCompletionTokens:
		n = u.Completion
	default:
		n = max(u.Total, u.Prompt+u.Completion)
	}
	return max(n, 0)
}

// ScaleLimits returns perUser multiplied by members, the limits of a
// per-group consumer. The window and strategy are kept; a limit that is off
// stays off.
func ScaleLimits(perUser Limits, members int) Limits {
	if members < 1 {
		members = 1
	}
	l := perUser
	l.Concurrency = perUser.Concurrency * members
	if perUser.TokenLimit > 0 {
		if perUser.TokenLimit > MaxTokenLimit/int64(members) {
			l.TokenLimit = MaxTokenLimit
		} else {
			l.TokenLimit = perUser.TokenLimit * int64(members)
		}
	}
	return l
}

// EffectiveLimits returns the limits the limiter applies to c: its Limits,
// multiplied by Members for a per-group consumer.
func (c Consumer) EffectiveLimits() Limits {
	if c.Mode == ModePerGroup {
		return ScaleLimits(c.Limits, c.Members)
	}
	return c.Limits
}

// Validate reports the first invalid field of c. KeyHash is checked by
// Keyring.Set, since a consumer may be validated before its key exists.
func (c Consumer) Validate() error {
	if err := validateConsumerName(c.Name); err != nil {
		return fmt.Errorf("name: %w", err)
	}
	switch c.Mode {
	case ModePerUser:
		if c.User == "" {
			return errors.New("user: required for a per-user consumer")
		}
	case ModePerGroup:
		if c.Members < 1 {
			return fmt.Errorf("members: a per-group consumer needs at least 1 member, got %d", c.Members)
		}
	default:
		return fmt.Errorf("mode: must be %s or %s, got %q", ModePerUser, ModePerGroup, c.Mode)
	}
	if c.Group == "" {
		return errors.New("group: required")
	}
	if err := c.Limits.Validate(); err != nil {
		return fmt.Errorf("limits.%w", err)
	}
	return nil
}

// validateConsumerName accepts the names made by UserConsumerName and
// GroupConsumerName: letters, digits, '-', '_' and '.'.
func validateConsumerName(name string) error {
	if name == "" {
		return errors.New("required")
	}
	if len(name) > maxConsumerName {
		return fmt.Errorf("longer than %d characters", maxConsumerName)
	}
	for i := 0; i < len(name); i++ {
		ch := name[i]
		if ch >= 'a' && ch <= 'z' || ch >= 'A' && ch <= 'Z' || ch >= '0' && ch <= '9' || ch == '-' || ch == '_' || ch == '.' {
			continue
		}
		return fmt.Errorf("character %q at offset %d not allowed (letters, digits, '-', '_' and '.' only)", ch, i)
	}
	return nil
}

// UserConsumerName returns the consumer name of a per-user consumer: the
// user's derived name (store.DerivedName, which the store keeps unique),
// with '/' replaced by '-' and spaces by '_' as the original did.
func UserConsumerName(group, user string) string {
	return consumerNameReplacer.Replace(store.DerivedName(group, user))
}

// GroupConsumerName returns the consumer name of a per-group consumer,
// group-<group>.
func GroupConsumerName(group string) string {
	return consumerNameReplacer.Replace("group-" + group)
}

// ConsumerName returns the name of the consumer whose key a user of a
// group uses in mode: their own (per-user) or their group's (per-group).
func ConsumerName(mode, group, user string) string {
	if mode == ModePerGroup {
		return GroupConsumerName(group)
	}
	return UserConsumerName(group, user)
}

var consumerNameReplacer = strings.NewReplacer("/", "-", " ", "_")
