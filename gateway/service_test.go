package gateway

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/thon-dev/thon/llm"
	"github.com/thon-dev/thon/store"
)

func TestKiloURL(t *testing.T) {
	for _, tc := range []struct {
		explicit, domain, ip, want string
	}{
		{"https://gw.example.org/v1", "thon.example.org", "203.0.113.7", "https://gw.example.org/v1"},
		{"", "thon.example.org", "203.0.113.7", "https://thon.example.org/v1"},
		{"", "", "203.0.113.7", "https://203.0.113.7/v1"},
		{"", "", "", "http://localhost:9080/v1"},
	} {
		if got := KiloURL(tc.explicit, tc.domain, tc.ip); got != tc.want {
			t.Errorf("KiloURL(%q, %q, %q) = %q, want %q", tc.explicit, tc.domain, tc.ip, got, tc.want)
		}
	}
}

// TestSettingsValidateNamesField: every invalid setting is a
// *store.FieldError naming the request field.
func TestSettingsValidateNamesField(t *testing.T) {
	ok := Settings{Mode: ModePerUser, TokenWindow: 60, ConcurrencyLimit: 1, Strategy: StrategyTotalTokens}
	if err := ok.Validate(); err != nil {
		t.Fatalf("valid settings: %v", err)
	}
	for _, tc := range []struct {
		edit  func(*Settings)
		field string
	}{
		{func(s *Settings) { s.Mode = "per-team" }, "mode"},
		{func(s *Settings) { s.TokenWindow = 0 }, "token_window"},
		{func(s *Settings) { s.ConcurrencyLimit = -1 }, "concurrency_limit"},
		{func(s *Settings) { s.TokenLimit = -5 }, "token_limit"},
		{func(s *Settings) { s.Strategy = "words" }, "strategy"},
	} {
		s := ok
		tc.edit(&s)
		var fe *store.FieldError
		if err := s.Validate(); !errors.As(err, &fe) || fe.Field != tc.field || !strings.HasPrefix(err.Error(), tc.field+": ") {
			t.Errorf("%+v: %v, want a field error on %s", s, err, tc.field)
		}
	}
}

// TestServiceErrors: the service's refusals are typed, and change
// nothing.
func TestServiceErrors(t *testing.T) {
	ctx := context.Background()
	st := testStore(t)
	if _, err := st.ImportRoster(ctx, store.Roster{Groups: []store.RosterGroup{
		{Name: "alpha", Users: []store.RosterUser{{Name: "alice"}}}}}); err != nil {
		t.Fatal(err)
	}
	rt := NewRuntime(st, nil)
	broken := errors.New("config.json: not thon's")
	var lemonadeErr error
	svc := NewService(rt, ServiceOptions{LemonadeSettings: func() (llm.Settings, error) {
		if lemonadeErr != nil {
			return llm.Settings{}, lemonadeErr
		}
		return llm.DefaultSettings(), nil
	}})

	if _, err := svc.CreateConsumer(ctx, CreateRequest{Group: "alpha", User: "alice"}); !errors.Is(err, ErrOff) {
		t.Errorf("create while off: %v, want ErrOff", err)
	}
	var fe *store.FieldError
	if _, err := svc.Setup(ctx, SetupRequest{Mode: "per-team"}); !errors.As(err, &fe) || fe.Field != "mode" {
		t.Errorf("setup with a bad mode: %v", err)
	}
	lemonadeErr = broken
	if _, err := svc.Setup(ctx, SetupRequest{}); !errors.Is(err, ErrConflict) || !errors.Is(err, broken) {
		t.Errorf("setup with Lemonade's configuration unreadable: %v, want ErrConflict wrapping it", err)
	}
	if g, _ := LoadSettings(ctx, st); g.Enabled {
		t.Error("a refused setup turned the gateway on")
	}
	lemonadeErr = nil
	out, err := svc.Setup(ctx, SetupRequest{})
	if err != nil || len(out.Consumers) != 1 {
		t.Fatalf("setup: %+v %v", out, err)
	}
	_, err = svc.CreateConsumer(ctx, CreateRequest{Group: "alpha", User: "alice"})
	if !errors.Is(err, ErrConflict) || !strings.Contains(err.Error(), `"alpha-alice" exists`) {
		t.Errorf("create an existing consumer: %v, want ErrConflict naming it", err)
	}
	if _, err := svc.CreateConsumer(ctx, CreateRequest{Group: "alpha"}); !errors.As(err, &fe) || fe.Field != "user" {
		t.Errorf("create without a user: %v", err)
	}
	if _, err := svc.RotateConsumer(ctx, "nobody"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("rotate an unknown consumer: %v", err)
	}
	if c, _ := st.GetConsumer(ctx, "alpha-alice"); c.KeyPrefix != out.Consumers[0].KeyPrefix {
		t.Error("a refused operation changed alice's key")
	}
}

// TestServiceChangesReachRuntime: each change reloads the keys the
// running gateway accepts.
func TestServiceChangesReachRuntime(t *testing.T) {
	ctx := context.Background()
	rt, svc, keys := setupRuntime(t, `{}`)
	alice := keys["alpha-alice"]
	if c, ok := rt.Lookup(alice); !ok || c.Name != "alpha-alice" || rt.Status().Keys != 3 {
		t.Fatalf("after setup: %+v %v, %d keys", c, ok, rt.Status().Keys)
	}
	if _, err := svc.RevokeConsumer(ctx, "alpha-alice"); err != nil {
		t.Fatal(err)
	}
	if _, ok := rt.Lookup(alice); ok {
		t.Error("a revoked key is still accepted")
	}
	rot, err := svc.RotateConsumer(ctx, "alpha-alice")
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := rt.Lookup(rot.Key); !ok {
		t.Error("the rotated key is not accepted")
	}
	if _, err := svc.DeleteConsumer(ctx, "beta-carol"); err != nil {
		t.Fatal(err)
	}
	if _, ok := rt.Lookup(keys["beta-carol"]); ok {
		t.Error("a deleted consumer's key is still accepted")
	}
	if n, err := svc.Cleanup(ctx); err != nil || n != 2 || rt.Status().Keys != 0 {
		t.Errorf("cleanup: %d, %v, %d keys left", n, err, rt.Status().Keys)
	}
}

// TestServiceLockSharedByServices: services of two configs over one
// runtime (a config reload) serialise their changes, so concurrent syncs
// give every new user exactly one consumer and none fails.
func TestServiceLockSharedByServices(t *testing.T) {
	ctx := context.Background()
	rt, svcA, _ := setupRuntime(t, `{}`)
	svcB := NewService(rt, ServiceOptions{})
	var users []store.RosterUser
	for i := range 20 {
		users = append(users, store.RosterUser{Name: fmt.Sprintf("u%02d", i)})
	}
	if _, err := rt.st.ImportRoster(ctx, store.Roster{Groups: []store.RosterGroup{{Name: "gamma", Users: users}}}); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	created := make([]int, 8)
	errs := make([]error, 8)
	for i := range 8 {
		svc := svcA
		if i%2 == 1 {
			svc = svcB
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			created[i], _, errs[i] = svc.Sync(ctx)
		}()
	}
	wg.Wait()
	total := 0
	for i := range 8 {
		if errs[i] != nil {
			t.Errorf("sync %d: %v", i, errs[i])
		}
		total += created[i]
	}
	if total != len(users) {
		t.Errorf("the syncs created %d consumers, want %d", total, len(users))
	}
	if cs, _ := rt.st.ListConsumers(ctx); len(cs) != 3+len(users) {
		t.Errorf("%d consumers, want %d", len(cs), 3+len(users))
	}
}
