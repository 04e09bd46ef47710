package gateway

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/thon-dev/thon/store"
)

// participant returns the gateway's Participant of a stored user.
func participant(t *testing.T, svc *Service, group, user string) Participant {
	t.Helper()
	u, err := svc.st.GetUser(context.Background(), group, user)
	if err != nil {
		t.Fatal(err)
	}
	return Participant{UserID: u.ID, Group: group, User: user}
}

func TestParticipantKeyPerUser(t *testing.T) {
	ctx := context.Background()
	rt, svc, keys := setupRuntime(t, `{"token_limit": 1000, "token_window": 300, "concurrency_limit": 2}`)
	alice := participant(t, svc, "alpha", "alice")

	v, err := svc.Participant(ctx, alice)
	if err != nil {
		t.Fatal(err)
	}
	if v.Mode != ModePerUser || v.GatewayURL != "https://thon.example.org/v1" || v.Consumer.Username != "alpha-alice" ||
		v.KeyRevealed || !v.CanRotate || v.Total != nil {
		t.Errorf("view before use: %+v", v)
	}
	if w := v.Window; w.Seconds != 300 || w.TokenLimit != 1000 || w.ConcurrencyLimit != 2 || w.Used != 0 ||
		w.Remaining == nil || *w.Remaining != 1000 || w.Strategy != StrategyTotalTokens {
		t.Errorf("window before use: %+v", w)
	}

	// Usage within the window counts; older usage only in the total.
	if err := svc.st.RecordUsage(ctx, []store.UsageRecord{
		{Consumer: "alpha-alice", Prompt: 100, Completion: 50, Total: 150, Status: 200},
		{Consumer: "alpha-alice", At: time.Now().Add(-time.Hour), Prompt: 10, Completion: 10, Total: 20, Status: 200},
		{Consumer: "alpha-bob", Prompt: 999, Total: 999, Status: 200},
	}); err != nil {
		t.Fatal(err)
	}
	v, err = svc.Participant(ctx, alice)
	if err != nil {
		t.Fatal(err)
	}
	if w := v.Window; w.Used != 150 || w.Requests != 1 || *w.Remaining != 850 {
		t.Errorf("window after use: %+v", w)
	}
	if v.Total == nil || v.Total.TotalTokens != 170 || v.Total.Requests != 2 {
		t.Errorf("total: %+v", v.Total)
	}

	// The key shown is the one the gateway takes, once.
	got, err := svc.RevealKey(ctx, alice)
	if err != nil || got.Key != keys["alpha-alice"] {
		t.Fatalf("reveal: %q %v, want the setup's key", got.Key, err)
	}
	if _, err := svc.RevealKey(ctx, alice); !errors.Is(err, store.ErrSpent) || !strings.Contains(err.Error(), "rotate it") {
		t.Errorf("second reveal: %v, want ErrSpent telling to rotate", err)
	}
	if v, _ := svc.Participant(ctx, alice); !v.KeyRevealed || v.RevealedAt == nil {
		t.Errorf("after the reveal: %+v", v)
	}

	// A rotation gives a new key, shown this once; the old one stops.
	rot, err := svc.RotateParticipantKey(ctx, alice)
	if err != nil || rot.Key == "" || rot.Key == keys["alpha-alice"] {
		t.Fatalf("rotate: %+v %v", rot, err)
	}
	if _, ok := rt.Lookup(keys["alpha-alice"]); ok {
		t.Error("the old key still works")
	}
	if c, ok := rt.Lookup(rot.Key); !ok || c.Name != "alpha-alice" {
		t.Error("the new key does not work")
	}
	if _, err := svc.RevealKey(ctx, alice); !errors.Is(err, store.ErrSpent) {
		t.Errorf("reveal after a rotation: %v, want ErrSpent (the rotation showed it)", err)
	}
	// Bob's key is his own matter.
	bob := participant(t, svc, "alpha", "bob")
	if got, err := svc.RevealKey(ctx, bob); err != nil || got.Key != keys["alpha-bob"] {
		t.Errorf("bob's reveal: %q %v", got.Key, err)
	}

	// A key an organiser revoked is neither shown nor rotated by its user.
	carol := participant(t, svc, "beta", "carol")
	if _, err := svc.RevokeConsumer(ctx, "beta-carol"); err != nil {
		t.Fatal(err)
	}
	if _, err := svc.RevealKey(ctx, carol); !errors.Is(err, ErrConflict) || !strings.Contains(err.Error(), "revoked") {
		t.Errorf("reveal of a revoked key: %v", err)
	}
	if _, err := svc.RotateParticipantKey(ctx, carol); !errors.Is(err, ErrConflict) {
		t.Errorf("rotate a revoked key: %v", err)
	}
	if c, _ := svc.st.GetConsumer(ctx, "beta-carol"); c.RevokedAt == nil {
		t.Error("the participant lifted an organiser's revocation")
	}
}

func TestParticipantKeyPerGroup(t *testing.T) {
	ctx := context.Background()
	_, svc, keys := setupRuntime(t, `{"mode": "per-group", "token_limit": 100}`)
	alice, bob := participant(t, svc, "alpha", "alice"), participant(t, svc, "alpha", "bob")
	v, err := svc.Participant(ctx, alice)
	if err != nil {
		t.Fatal(err)
	}
	if v.Consumer.Username != "group-alpha" || v.CanRotate || v.Window.TokenLimit != 200 {
		t.Errorf("per-group view: %+v (the limit is per user times 2 members)", v)
	}
	// Each member is shown the group's key once.
	for _, p := range []Participant{alice, bob} {
		got, err := svc.RevealKey(ctx, p)
		if err != nil || got.Key != keys["group-alpha"] {
			t.Errorf("%s's reveal: %q %v", p.User, got.Key, err)
		}
		if _, err := svc.RevealKey(ctx, p); !errors.Is(err, store.ErrSpent) || !strings.Contains(err.Error(), "only an organiser") {
			t.Errorf("%s's second reveal: %v", p.User, err)
		}
	}
	// Only an organiser rotates a group's key; then each member may see
	// the new one once.
	if _, err := svc.RotateParticipantKey(ctx, alice); !errors.Is(err, ErrConflict) || !strings.Contains(err.Error(), "only an organiser") {
		t.Errorf("participant rotation of a group key: %v", err)
	}
	if c, _ := svc.st.GetConsumer(ctx, "group-alpha"); HashKey(keys["group-alpha"]) != c.KeyHash {
		t.Error("a refused rotation changed the group's key")
	}
	rot, err := svc.RotateConsumer(ctx, "group-alpha")
	if err != nil {
		t.Fatal(err)
	}
	if got, err := svc.RevealKey(ctx, bob); err != nil || got.Key != rot.Key {
		t.Errorf("reveal after the organiser's rotation: %q %v", got.Key, err)
	}
}

func TestParticipantGatewayOffOrMissing(t *testing.T) {
	ctx := context.Background()
	_, svc, _ := setupRuntime(t, `{}`)
	alice := participant(t, svc, "alpha", "alice")
	// A user imported after the setup gets a consumer on first sight.
	if _, err := svc.st.AddUser(ctx, "alpha", store.RosterUser{Name: "dora"}); err != nil {
		t.Fatal(err)
	}
	if v, err := svc.Participant(ctx, participant(t, svc, "alpha", "dora")); err != nil || v.Consumer.Username != "alpha-dora" {
		t.Errorf("a user imported later: %+v %v", v, err)
	}
	if _, err := svc.Participant(ctx, Participant{UserID: alice.UserID, Group: "alpha", User: "nosuch"}); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("no consumer: %v, want ErrNotFound", err)
	}
	if _, err := svc.Cleanup(ctx); err != nil {
		t.Fatal(err)
	}
	for name, op := range map[string]func(context.Context, Participant) error{
		"view":   func(ctx context.Context, p Participant) error { _, err := svc.Participant(ctx, p); return err },
		"reveal": func(ctx context.Context, p Participant) error { _, err := svc.RevealKey(ctx, p); return err },
		"rotate": func(ctx context.Context, p Participant) error { _, err := svc.RotateParticipantKey(ctx, p); return err },
	} {
		if err := op(ctx, alice); !errors.Is(err, ErrOff) {
			t.Errorf("%s while off: %v, want ErrOff", name, err)
		}
	}
}
