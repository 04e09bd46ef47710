package gateway

import (
	"strings"
	"testing"
	"time"
)

func TestLimitsValidate(t *testing.T) {
	for i, tc := range []struct {
		lim  Limits
		want string
	}{
		{Limits{}, ""},
		{Limits{Concurrency: 1, TokenLimit: 1000, Window: time.Minute, Strategy: StrategyCompletionTokens}, ""},
		{Limits{Concurrency: -1}, "concurrency: must not be negative"},
		{Limits{TokenLimit: -5}, "token_limit: must be between 0 and"},
		{Limits{TokenLimit: MaxTokenLimit + 1, Window: time.Minute}, "token_limit: must be between 0 and"},
		{Limits{TokenLimit: 10}, "window: must be at least 1s when token_limit is set"},
		{Limits{TokenLimit: 10, Window: 500 * time.Millisecond}, "window: must be at least 1s"},
		{Limits{Window: -time.Second}, "window: must not be negative"},
		{Limits{Strategy: "expression"}, `strategy: must be total_tokens, prompt_tokens or completion_tokens, got "expression"`},
	} {
		err := tc.lim.Validate()
		if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.HasPrefix(err.Error(), tc.want)) {
			t.Errorf("case %d: Validate() = %v, want %q", i, err, tc.want)
		}
	}
}

func TestLimitsCost(t *testing.T) {
	u := Usage{Prompt: 100, Completion: 20, Total: 90}
	for i, tc := range []struct {
		strategy string
		want     int64
	}{
		{"", 120}, {StrategyTotalTokens, 120}, {StrategyPromptTokens, 100}, {StrategyCompletionTokens, 20},
	} {
		if got := (Limits{Strategy: tc.strategy}).Cost(u); got != tc.want {
			t.Errorf("case %d: Cost = %d, want %d", i, got, tc.want)
		}
	}
	if got := (Limits{}).Cost(Usage{Prompt: -5}); got != 0 {
		t.Errorf("negative usage cost %d", got)
	}
}

func TestScaleLimits(t *testing.T) {
	per := Limits{Concurrency: 1, TokenLimit: 10000, Window: time.Hour, Strategy: StrategyPromptTokens}
	if got, want := ScaleLimits(per, 4), (Limits{4, 40000, time.Hour, StrategyPromptTokens}); got != want {
		t.Errorf("ScaleLimits(4) = %+v, want %+v", got, want)
	}
	if got := ScaleLimits(Limits{}, 5); got != (Limits{}) {
		t.Errorf("off limits scaled to %+v", got)
	}
	if got := ScaleLimits(per, 0); got != per {
		t.Errorf("0 members: %+v", got)
	}
	if got := ScaleLimits(Limits{TokenLimit: MaxTokenLimit / 2, Window: time.Minute}, 3).TokenLimit; got != MaxTokenLimit {
		t.Errorf("overflowing token limit scaled to %d", got)
	}
	group := Consumer{Name: "group-alpha", Mode: ModePerGroup, Group: "alpha", Members: 3, Limits: per}
	if got := group.EffectiveLimits(); got.Concurrency != 3 || got.TokenLimit != 30000 {
		t.Errorf("per-group effective limits %+v", got)
	}
	user := Consumer{Name: "alpha-a", Mode: ModePerUser, Group: "alpha", User: "a", Members: 3, Limits: per}
	if got := user.EffectiveLimits(); got != per {
		t.Errorf("per-user effective limits %+v", got)
	}
}

func TestConsumerValidate(t *testing.T) {
	ok := Consumer{Name: "alpha-alice", Mode: ModePerUser, Group: "alpha", User: "alice"}
	for i, tc := range []struct {
		edit func(*Consumer)
		want string
	}{
		{func(*Consumer) {}, ""},
		{func(c *Consumer) { *c = Consumer{Name: "group-alpha", Mode: ModePerGroup, Group: "alpha", Members: 2} }, ""},
		{func(c *Consumer) { c.Name = "" }, "name: required"},
		{func(c *Consumer) { c.Name = "alpha alice" }, "name: character ' ' at offset 5 not allowed"},
		{func(c *Consumer) { c.Name = "{alpha}" }, "name: character '{'"},
		{func(c *Consumer) { c.Name = strings.Repeat("a", 254) }, "name: longer than 253"},
		{func(c *Consumer) { c.Mode = "" }, "mode: must be per-user or per-group"},
		{func(c *Consumer) { c.User = "" }, "user: required"},
		{func(c *Consumer) { c.Group = "" }, "group: required"},
		{func(c *Consumer) { c.Mode = ModePerGroup }, "members: a per-group consumer needs at least 1 member"},
		{func(c *Consumer) { c.Limits.TokenLimit = 5 }, "limits.window: must be at least 1s"},
	} {
		c := ok
		tc.edit(&c)
		err := c.Validate()
		if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.HasPrefix(err.Error(), tc.want)) {
			t.Errorf("case %d: Validate() = %v, want %q", i, err, tc.want)
		}
	}
}

func TestConsumerNames(t *testing.T) {
	if got := UserConsumerName("alpha", "alice"); got != "alpha-alice" {
		t.Errorf("UserConsumerName = %q", got)
	}
	if got := UserConsumerName("team a/b", "al ice"); got != "team_a-b-al_ice" {
		t.Errorf("UserConsumerName with / and spaces = %q", got)
	}
	if got := GroupConsumerName("alpha"); got != "group-alpha" {
		t.Errorf("GroupConsumerName = %q", got)
	}
	if err := validateConsumerName(UserConsumerName("team a/b", "al ice")); err != nil {
		t.Errorf("a generated name is invalid: %v", err)
	}
}
