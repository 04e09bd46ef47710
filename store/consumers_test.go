package store

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"strings"
	"testing"
	"time"
)

// testHash returns a SHA-256 hex hash for a test key.
func testHash(key string) string {
	s := sha256.Sum256([]byte(key))
	return hex.EncodeToString(s[:])
}

func userConsumer(group, user string) Consumer {
	return Consumer{
		Username: group + "-" + user, Mode: ConsumerPerUser, Group: group, User: user,
		KeyHash: testHash(group + "/" + user), KeyPrefix: "thon_" + user[:1],
		TokenLimit: 1000, TokenWindow: 60, ConcurrencyLimit: 1,
	}
}

func seedRoster(t *testing.T, s *Store) {
	t.Helper()
	ctx := context.Background()
	r := Roster{Groups: []RosterGroup{
		{Name: "alpha", Users: []RosterUser{{Name: "alice"}, {Name: "bob"}, {Name: "carol"}}},
		{Name: "beta", Users: []RosterUser{{Name: "dave"}}},
	}}
	if _, err := s.ImportRoster(ctx, r); err != nil {
		t.Fatal(err)
	}
}

func TestConsumersCreateListGet(t *testing.T) {
	s := openTest(t)
	ctx := WithActor(context.Background(), "api")
	seedRoster(t, s)

	group := Consumer{Username: "group-alpha", Mode: ConsumerPerGroup, Group: "alpha",
		KeyHash: testHash("g"), KeyPrefix: "thon_g", ConcurrencyLimit: 2}
	created, err := s.CreateConsumers(ctx, []Consumer{userConsumer("beta", "dave"), group},
		map[string]string{"beta-dave": `{"k":"dave"}`})
	if err != nil {
		t.Fatal(err)
	}
	if len(created) != 2 || created[0].Username != "beta-dave" || created[1].Username != "group-alpha" {
		t.Fatalf("created = %+v", created)
	}
	if created[0].Members != 1 || created[1].Members != 3 {
		t.Errorf("members = %d, %d; want 1 and 3 (alpha has three users)", created[0].Members, created[1].Members)
	}
	if created[0].CreatedAt.IsZero() || created[0].RevokedAt != nil {
		t.Errorf("created_at/revoked_at: %+v", created[0])
	}

	// Creating an existing name or key is a conflict, and all-or-nothing.
	again := userConsumer("beta", "dave")
	fresh := userConsumer("alpha", "alice")
	if _, err := s.CreateConsumers(ctx, []Consumer{fresh, again}, nil); !errors.Is(err, ErrConflict) {
		t.Errorf("duplicate: %v, want ErrConflict", err)
	}
	if _, err := s.GetConsumer(ctx, "alpha-alice"); !errors.Is(err, ErrNotFound) {
		t.Errorf("a refused batch left alpha-alice: %v", err)
	}

	list, err := s.ListConsumers(ctx)
	if err != nil || len(list) != 2 {
		t.Fatalf("list = %+v, %v", list, err)
	}
	c, err := s.GetConsumerByHash(ctx, testHash("g"))
	if err != nil || c.Username != "group-alpha" || c.KeyHash != testHash("g") {
		t.Errorf("by hash: %+v %v", c, err)
	}
	if _, err := s.GetConsumerByHash(ctx, testHash("nope")); !errors.Is(err, ErrNotFound) {
		t.Errorf("unknown hash: %v", err)
	}
	k, ok, err := s.ConsumerKilo(ctx, "beta-dave")
	if err != nil || !ok || k != `{"k":"dave"}` {
		t.Errorf("kilo = %q %v %v", k, ok, err)
	}
	if _, ok, _ := s.ConsumerKilo(ctx, "group-alpha"); ok {
		t.Error("group-alpha has a kilo config it was not given")
	}

	// The member count follows the roster.
	if _, err := s.AddUser(ctx, "alpha", RosterUser{Name: "erin"}); err != nil {
		t.Fatal(err)
	}
	if c, _ := s.GetConsumer(ctx, "group-alpha"); c.Members != 4 {
		t.Errorf("members after adding a user = %d, want 4", c.Members)
	}
}

func TestConsumerValidation(t *testing.T) {
	s := openTest(t)
	ctx := context.Background()
	ok := userConsumer("alpha", "alice")
	for i, tc := range []struct {
		edit  func(*Consumer)
		field string
	}{
		{func(c *Consumer) { c.Username = "" }, "consumers[0].username"},
		{func(c *Consumer) { c.Username = "a/b" }, "consumers[0].username"},
		{func(c *Consumer) { c.Mode = "per-team" }, "consumers[0].mode"},
		{func(c *Consumer) { c.User = "" }, "consumers[0].user"},
		{func(c *Consumer) { c.Group = "Alpha" }, "consumers[0].group"},
		{func(c *Consumer) { c.KeyHash = "abc" }, "consumers[0].key_hash"},
		{func(c *Consumer) { c.KeyHash = strings.ToUpper(c.KeyHash) }, "consumers[0].key_hash"},
		{func(c *Consumer) { c.TokenLimit = -1 }, "consumers[0].token_limit"},
		{func(c *Consumer) { c.TokenWindow = 0 }, "consumers[0].token_window"},
		{func(c *Consumer) { c.ConcurrencyLimit = -2 }, "consumers[0].concurrency_limit"},
		{func(c *Consumer) { c.Mode, c.User = ConsumerPerGroup, "alice" }, "consumers[0].user"},
	} {
		c := ok
		tc.edit(&c)
		_, err := s.CreateConsumers(ctx, []Consumer{c}, nil)
		var fe *FieldError
		if !errors.As(err, &fe) || fe.Field != tc.field {
			t.Errorf("case %d: err = %v, want a FieldError on %s", i, err, tc.field)
		}
	}
	// Two consumers of one batch with one name; a kilo entry for a stranger.
	if _, err := s.CreateConsumers(ctx, []Consumer{ok, ok}, nil); err == nil || !strings.Contains(err.Error(), "consumers[1].username") {
		t.Errorf("duplicate in batch: %v", err)
	}
	if _, err := s.CreateConsumers(ctx, []Consumer{ok}, map[string]string{"x": "{}"}); err == nil || !strings.Contains(err.Error(), "kilo") {
		t.Errorf("kilo for a stranger: %v", err)
	}
	if list, _ := s.ListConsumers(ctx); len(list) != 0 {
		t.Errorf("refused writes stored %+v", list)
	}
}

func TestConsumerRotateRevokeDelete(t *testing.T) {
	s := openTest(t)
	ctx := context.Background()
	a, b := userConsumer("alpha", "alice"), userConsumer("alpha", "bob")
	if _, err := s.CreateConsumers(ctx, []Consumer{a, b}, map[string]string{a.Username: "old", b.Username: "b"}); err != nil {
		t.Fatal(err)
	}

	r, err := s.RevokeConsumer(ctx, a.Username)
	if err != nil || r.RevokedAt == nil {
		t.Fatalf("revoke: %+v %v", r, err)
	}
	again, err := s.RevokeConsumer(ctx, a.Username)
	if err != nil || again.RevokedAt == nil || !again.RevokedAt.Equal(*r.RevokedAt) {
		t.Errorf("second revoke changed it: %+v %v", again, err)
	}
	if _, err := s.RevokeConsumer(ctx, "nobody"); !errors.Is(err, ErrNotFound) {
		t.Errorf("revoke unknown: %v", err)
	}

	rot, err := s.RotateConsumer(ctx, a.Username, testHash("new"), "thon_n", "new kilo")
	if err != nil {
		t.Fatal(err)
	}
	if rot.KeyHash != testHash("new") || rot.KeyPrefix != "thon_n" || rot.RevokedAt != nil {
		t.Errorf("rotated = %+v", rot)
	}
	if k, _, _ := s.ConsumerKilo(ctx, a.Username); k != "new kilo" {
		t.Errorf("kilo after rotate = %q", k)
	}
	if _, err := s.GetConsumerByHash(ctx, a.KeyHash); !errors.Is(err, ErrNotFound) {
		t.Errorf("old key still found: %v", err)
	}
	if _, err := s.RotateConsumer(ctx, a.Username, b.KeyHash, "x", ""); !errors.Is(err, ErrConflict) {
		t.Errorf("rotate onto bob's key: %v", err)
	}
	if _, err := s.RotateConsumer(ctx, "nobody", testHash("z"), "", ""); !errors.Is(err, ErrNotFound) {
		t.Errorf("rotate unknown: %v", err)
	}
	if _, err := s.RotateConsumer(ctx, a.Username, "short", "", ""); err == nil {
		t.Error("rotate with a bad hash succeeded")
	}

	d, err := s.DeleteConsumer(ctx, a.Username)
	if err != nil || d.Username != a.Username {
		t.Fatalf("delete: %+v %v", d, err)
	}
	if _, ok, _ := s.ConsumerKilo(ctx, a.Username); ok {
		t.Error("kilo config survived its consumer")
	}
	if _, err := s.DeleteConsumer(ctx, a.Username); !errors.Is(err, ErrNotFound) {
		t.Errorf("delete twice: %v", err)
	}
	n, err := s.DeleteConsumers(ctx, []string{b.Username, "nobody"})
	if err != nil || n != 1 {
		t.Errorf("delete consumers = %d, %v", n, err)
	}

	entries, err := s.ListAudit(ctx, 20)
	if err != nil {
		t.Fatal(err)
	}
	var actions []string
	for _, e := range entries {
		if strings.HasPrefix(e.Target, "consumer:") {
			actions = append(actions, e.Action)
		}
	}
	if got := strings.Join(actions, ","); got != "consumer.delete,consumer.delete,consumer.rotate,consumer.revoke,consumer.create,consumer.create" {
		t.Errorf("audit = %s", got)
	}
}

func TestReplaceAndDeleteAllConsumers(t *testing.T) {
	s := openTest(t)
	ctx := context.Background()
	a := userConsumer("alpha", "alice")
	if _, err := s.CreateConsumers(ctx, []Consumer{a}, map[string]string{a.Username: "a"}); err != nil {
		t.Fatal(err)
	}
	b := userConsumer("alpha", "bob")
	out, err := s.ReplaceConsumers(ctx, []Consumer{b}, map[string]string{b.Username: "b"},
		map[string]string{"gateway_enabled": "true", "gateway_mode": "per-user"})
	if err != nil {
		t.Fatal(err)
	}
	if len(out) != 1 || out[0].Username != b.Username {
		t.Errorf("after replace: %+v", out)
	}
	if _, ok, _ := s.ConsumerKilo(ctx, a.Username); ok {
		t.Error("replaced consumer's kilo config kept")
	}
	if v, _, _ := s.Setting(ctx, "gateway_mode"); v != "per-user" {
		t.Errorf("gateway_mode = %q", v)
	}

	// A refused replace changes nothing: a bad settings key, a bad consumer.
	if _, err := s.ReplaceConsumers(ctx, nil, nil, map[string]string{KeyKiloJSON: "x"}); err == nil {
		t.Error("replace writing a config slot succeeded")
	}
	bad := a
	bad.KeyHash = ""
	if _, err := s.ReplaceConsumers(ctx, []Consumer{bad}, nil, map[string]string{"gateway_mode": "per-group"}); err == nil {
		t.Error("replace with a bad consumer succeeded")
	}
	if list, _ := s.ListConsumers(ctx); len(list) != 1 || list[0].Username != b.Username {
		t.Errorf("refused replace changed consumers: %+v", list)
	}
	if v, _, _ := s.Setting(ctx, "gateway_mode"); v != "per-user" {
		t.Errorf("refused replace changed gateway_mode to %q", v)
	}

	if err := s.RecordUsage(ctx, []UsageRecord{{Consumer: b.Username, Total: 5}}); err != nil {
		t.Fatal(err)
	}
	n, err := s.DeleteAllConsumers(ctx, map[string]string{"gateway_enabled": "false"})
	if err != nil || n != 1 {
		t.Fatalf("delete all = %d, %v", n, err)
	}
	if list, _ := s.ListConsumers(ctx); len(list) != 0 {
		t.Errorf("consumers left: %+v", list)
	}
	if _, ok, _ := s.ConsumerKilo(ctx, b.Username); ok {
		t.Error("kilo config left after delete all")
	}
	if v, _, _ := s.Setting(ctx, "gateway_enabled"); v != "false" {
		t.Errorf("gateway_enabled = %q", v)
	}
	if u, _ := s.UsageSummary(ctx, UsageFilter{}); len(u) != 1 || u[0].TotalTokens != 5 {
		t.Errorf("usage after delete all = %+v, want it kept", u)
	}
}

func TestUsageSummary(t *testing.T) {
	s := openTest(t)
	ctx := context.Background()
	t0 := time.Date(2026, 5, 1, 10, 0, 0, 0, time.UTC)
	recs := []UsageRecord{
		{Consumer: "alpha-alice", At: t0, Model: "m", Prompt: 10, Completion: 5, Total: 15, Status: 200},
		{Consumer: "alpha-alice", At: t0.Add(time.Minute), Prompt: 1, Completion: 2, Total: 3, Status: 200},
		{Consumer: "alpha-alice", At: t0.Add(2 * time.Hour), Prompt: 100, Total: 100, Status: 502},
		{Consumer: "group-beta", At: t0.Add(30 * time.Second), Prompt: 7, Total: 7, Status: 200},
	}
	if err := s.RecordUsage(ctx, recs); err != nil {
		t.Fatal(err)
	}
	all, err := s.UsageSummary(ctx, UsageFilter{})
	if err != nil {
		t.Fatal(err)
	}
	want := []ConsumerUsage{
		{Consumer: "alpha-alice", Requests: 3, Errors: 1, PromptTokens: 111, CompletionTokens: 7, TotalTokens: 118, LastUsed: t0.Add(2 * time.Hour)},
		{Consumer: "group-beta", Requests: 1, PromptTokens: 7, TotalTokens: 7, LastUsed: t0.Add(30 * time.Second)},
	}
	if len(all) != 2 || all[0] != want[0] || all[1] != want[1] {
		t.Errorf("summary = %+v\nwant %+v", all, want)
	}
	for i, tc := range []struct {
		f     UsageFilter
		total map[string]int64
	}{
		{UsageFilter{From: t0, To: t0.Add(time.Hour)}, map[string]int64{"alpha-alice": 18, "group-beta": 7}},
		{UsageFilter{From: t0.Add(time.Minute)}, map[string]int64{"alpha-alice": 103}},
		{UsageFilter{To: t0.Add(time.Minute)}, map[string]int64{"alpha-alice": 15, "group-beta": 7}},
		{UsageFilter{Consumer: "group-beta"}, map[string]int64{"group-beta": 7}},
		{UsageFilter{From: t0.Add(3 * time.Hour)}, map[string]int64{}},
	} {
		got, err := s.UsageSummary(ctx, tc.f)
		if err != nil {
			t.Fatalf("case %d: %v", i, err)
		}
		m := map[string]int64{}
		for _, u := range got {
			m[u.Consumer] = u.TotalTokens
		}
		if len(m) != len(tc.total) {
			t.Errorf("case %d: %v, want %v", i, m, tc.total)
		}
		for k, v := range tc.total {
			if m[k] != v {
				t.Errorf("case %d: %s = %d, want %d", i, k, m[k], v)
			}
		}
	}
	if _, err := s.UsageSummary(ctx, UsageFilter{From: t0, To: t0}); err == nil {
		t.Error("an empty range was accepted")
	}
	var fe *FieldError
	if err := s.RecordUsage(ctx, []UsageRecord{{Consumer: "ok"}, {Consumer: "bad name"}}); !errors.As(err, &fe) || fe.Field != "records[1].consumer" {
		t.Errorf("bad record: %v", err)
	}
	if err := s.RecordUsage(ctx, []UsageRecord{{Consumer: "ok", Prompt: -1}}); err == nil {
		t.Error("negative tokens accepted")
	}
	if got, _ := s.UsageSummary(ctx, UsageFilter{}); len(got) != 2 {
		t.Errorf("a refused batch was stored in part: %+v", got)
	}
}
