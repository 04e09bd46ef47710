package store

import (
	"context"
	"errors"
	"sync"
	"testing"
)

func TestKeyReveals(t *testing.T) {
	s := openTest(t)
	ctx := WithActor(context.Background(), "api")
	seedRoster(t, s)
	alice, err := s.GetUser(ctx, "alpha", "alice")
	if err != nil {
		t.Fatal(err)
	}
	bob, _ := s.GetUser(ctx, "alpha", "bob")
	group := Consumer{Username: "group-alpha", Mode: ConsumerPerGroup, Group: "alpha", KeyHash: testHash("g1")}
	if _, err := s.CreateConsumers(ctx, []Consumer{userConsumer("alpha", "alice"), group}, nil); err != nil {
		t.Fatal(err)
	}
	aliceHash := testHash("alpha/alice")

	if _, shown, err := s.KeyRevealedAt(ctx, alice.ID, "alpha-alice", aliceHash); err != nil || shown {
		t.Fatalf("before any reveal: shown %v, %v", shown, err)
	}
	at, err := s.RecordKeyReveal(ctx, alice.ID, "alpha-alice", aliceHash)
	if err != nil || at.IsZero() {
		t.Fatalf("first reveal: %v %v", at, err)
	}
	got, shown, err := s.KeyRevealedAt(ctx, alice.ID, "alpha-alice", aliceHash)
	if err != nil || !shown || !got.Equal(at) {
		t.Errorf("after the reveal: %v %v %v, want %v", got, shown, err, at)
	}
	// Once per key.
	_, err = s.RecordKeyReveal(ctx, alice.ID, "alpha-alice", aliceHash)
	var re *RevealedError
	if !errors.Is(err, ErrSpent) || !errors.As(err, &re) || !re.At.Equal(at) || re.Consumer != "alpha-alice" {
		t.Errorf("second reveal: %v, want a RevealedError (ErrSpent) at %v", err, at)
	}
	// A key that is not the consumer's is refused, and so is a stranger.
	if _, err := s.RecordKeyReveal(ctx, alice.ID, "alpha-alice", testHash("old")); !errors.Is(err, ErrConflict) {
		t.Errorf("another key: %v, want ErrConflict", err)
	}
	if _, err := s.RecordKeyReveal(ctx, alice.ID, "nosuch", aliceHash); !errors.Is(err, ErrNotFound) {
		t.Errorf("unknown consumer: %v, want ErrNotFound", err)
	}
	if _, err := s.RecordKeyReveal(ctx, 999999, "alpha-alice", aliceHash); !errors.Is(err, ErrNotFound) {
		t.Errorf("unknown user: %v, want ErrNotFound", err)
	}
	for i, bad := range []struct {
		id         int64
		name, hash string
		field      string
	}{{0, "alpha-alice", aliceHash, "user_id"}, {alice.ID, "a b", aliceHash, "consumer"}, {alice.ID, "alpha-alice", "xyz", "key_hash"}} {
		var fe *FieldError
		if _, err := s.RecordKeyReveal(ctx, bad.id, bad.name, bad.hash); !errors.As(err, &fe) || fe.Field != bad.field {
			t.Errorf("case %d: %v, want a FieldError on %s", i, err, bad.field)
		}
	}

	// A per-group key is shown once to each member.
	if _, err := s.RecordKeyReveal(ctx, alice.ID, "group-alpha", testHash("g1")); err != nil {
		t.Fatal(err)
	}
	if _, err := s.RecordKeyReveal(ctx, bob.ID, "group-alpha", testHash("g1")); err != nil {
		t.Errorf("bob's reveal of the group key: %v", err)
	}
	if _, err := s.RecordKeyReveal(ctx, bob.ID, "group-alpha", testHash("g1")); !errors.Is(err, ErrSpent) {
		t.Errorf("bob's second reveal: %v", err)
	}

	// A rotation makes the old reveal not count: the new key is shown once.
	if _, err := s.RotateConsumer(ctx, "group-alpha", testHash("g2"), "thon_g", ""); err != nil {
		t.Fatal(err)
	}
	if _, shown, _ := s.KeyRevealedAt(ctx, bob.ID, "group-alpha", testHash("g2")); shown {
		t.Error("the rotated key counts as shown")
	}
	if _, err := s.RecordKeyReveal(ctx, bob.ID, "group-alpha", testHash("g2")); err != nil {
		t.Errorf("reveal after the rotation: %v", err)
	}
	if _, err := s.RecordKeyReveal(ctx, bob.ID, "group-alpha", testHash("g2")); !errors.Is(err, ErrSpent) {
		t.Errorf("second reveal after the rotation: %v", err)
	}

	// Deleting the consumer takes its reveals along.
	if _, err := s.DeleteConsumer(ctx, "group-alpha"); err != nil {
		t.Fatal(err)
	}
	var n int
	if err := s.DB().QueryRowContext(ctx, `SELECT COUNT(*) FROM gateway_key_reveals WHERE consumer = 'group-alpha'`).Scan(&n); err != nil || n != 0 {
		t.Errorf("reveals of a deleted consumer: %d %v", n, err)
	}
}

// TestKeyRevealOnceUnderRace reveals one key from many goroutines: exactly
// one gets it.
func TestKeyRevealOnceUnderRace(t *testing.T) {
	s := openTest(t)
	ctx := context.Background()
	seedRoster(t, s)
	alice, _ := s.GetUser(ctx, "alpha", "alice")
	if _, err := s.CreateConsumers(ctx, []Consumer{userConsumer("alpha", "alice")}, nil); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	won, spent := 0, 0
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := s.RecordKeyReveal(ctx, alice.ID, "alpha-alice", testHash("alpha/alice"))
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				won++
			case errors.Is(err, ErrSpent):
				spent++
			default:
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if won != 1 || spent != 7 {
		t.Errorf("%d reveals succeeded and %d were refused, want 1 and 7", won, spent)
	}
}
