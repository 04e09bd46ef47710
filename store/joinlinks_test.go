package store

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"
)

// These assignments pin the store's join link API.
var (
	_ func(context.Context, []NewJoinLink, time.Time, time.Time) ([]JoinLink, error) = (*Store)(nil).CreateJoinLinks
	_ func(context.Context, string, time.Time) (User, error)                         = (*Store)(nil).CheckJoinLink
	_ func(context.Context, string, time.Time) (User, error)                         = (*Store)(nil).SpendJoinLink
	_ func(context.Context, int64, time.Time) (int, error)                           = (*Store)(nil).RevokeJoinLinks
	_ func(context.Context, int64, time.Time) ([]JoinLink, error)                    = (*Store)(nil).LiveJoinLinks
)

// joinUsers makes group alpha with alice and bob and returns them.
func joinUsers(t *testing.T, s *Store) (alice, bob User) {
	t.Helper()
	ctx := context.Background()
	if _, err := s.CreateGroup(ctx, "alpha", ""); err != nil {
		t.Fatal(err)
	}
	var err error
	if alice, err = s.AddUser(ctx, "alpha", RosterUser{Name: "alice", Email: "alice@example.org"}); err != nil {
		t.Fatal(err)
	}
	if bob, err = s.AddUser(ctx, "alpha", RosterUser{Name: "bob"}); err != nil {
		t.Fatal(err)
	}
	return alice, bob
}

func TestJoinLinkLifecycle(t *testing.T) {
	s := openTest(t)
	ctx := context.Background()
	alice, bob := joinUsers(t, s)
	t0 := time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)
	exp := t0.Add(72 * time.Hour)

	made, err := s.CreateJoinLinks(ctx, []NewJoinLink{{alice.ID, sha("a1")}, {bob.ID, sha("b1")}}, t0, exp)
	if err != nil {
		t.Fatal(err)
	}
	if len(made) != 2 || made[0].User != "alice" || made[0].Group != "alpha" || made[1].User != "bob" ||
		!made[0].ExpiresAt.Equal(exp) || !made[0].CreatedAt.Equal(t0) {
		t.Fatalf("CreateJoinLinks = %+v", made)
	}
	// Only the hash is kept.
	var n int
	if err := s.DB().QueryRow(`SELECT count(*) FROM join_links WHERE token_hash IN (?, ?)`, sha("a1"), sha("b1")).Scan(&n); err != nil || n != 2 {
		t.Fatalf("stored hashes: %d, %v", n, err)
	}
	if err := s.DB().QueryRow(`SELECT count(*) FROM join_links WHERE token_hash IN ('a1', 'b1')`).Scan(&n); err != nil || n != 0 {
		t.Errorf("a token is stored as it is: %d, %v", n, err)
	}

	if u, err := s.CheckJoinLink(ctx, sha("a1"), t0); err != nil || u.ID != alice.ID || u.Group != "alpha" {
		t.Errorf("CheckJoinLink = %+v, %v", u, err)
	}
	live, err := s.LiveJoinLinks(ctx, alice.ID, t0)
	if err != nil || len(live) != 1 || live[0].User != "alice" || !live[0].ExpiresAt.Equal(exp) {
		t.Errorf("LiveJoinLinks = %+v, %v", live, err)
	}

	// A new link for alice replaces her older one: the sheet printed again.
	if _, err := s.CreateJoinLinks(ctx, []NewJoinLink{{alice.ID, sha("a2")}}, t0.Add(time.Minute), exp); err != nil {
		t.Fatal(err)
	}
	if _, err := s.CheckJoinLink(ctx, sha("a1"), t0.Add(time.Minute)); !errors.Is(err, ErrRevoked) || !errors.Is(err, ErrSpent) {
		t.Errorf("the replaced link: %v, want ErrRevoked (an ErrSpent)", err)
	}
	if live, _ := s.LiveJoinLinks(ctx, alice.ID, t0); len(live) != 1 {
		t.Errorf("live links after a new one: %+v, want 1", live)
	}
	// Bob's link stayed.
	if _, err := s.CheckJoinLink(ctx, sha("b1"), t0); err != nil {
		t.Errorf("bob's link after alice's new one: %v", err)
	}

	// Spent once; the second time refused, and a used link is not
	// revoked by a newer one.
	u, err := s.SpendJoinLink(ctx, sha("a2"), t0.Add(2*time.Minute))
	if err != nil || u.ID != alice.ID || u.Name != "alice" {
		t.Fatalf("SpendJoinLink = %+v, %v", u, err)
	}
	if _, err := s.SpendJoinLink(ctx, sha("a2"), t0.Add(3*time.Minute)); !errors.Is(err, ErrSpent) || errors.Is(err, ErrRevoked) {
		t.Errorf("spent twice: %v, want ErrSpent and not ErrRevoked", err)
	}
	if _, err := s.CreateJoinLinks(ctx, []NewJoinLink{{alice.ID, sha("a3")}}, t0.Add(4*time.Minute), exp); err != nil {
		t.Fatal(err)
	}
	if _, err := s.CheckJoinLink(ctx, sha("a2"), t0); errors.Is(err, ErrRevoked) || !errors.Is(err, ErrSpent) {
		t.Errorf("a used link after a newer one: %v, want ErrSpent", err)
	}

	// Expiry.
	if _, err := s.SpendJoinLink(ctx, sha("b1"), exp); !errors.Is(err, ErrExpired) {
		t.Errorf("at its expiry: %v, want ErrExpired", err)
	}
	if live, _ := s.LiveJoinLinks(ctx, bob.ID, exp); len(live) != 0 {
		t.Errorf("expired links are live: %+v", live)
	}
	if _, err := s.SpendJoinLink(ctx, sha("b1"), exp.Add(-time.Nanosecond)); err != nil {
		t.Errorf("just before its expiry: %v", err)
	}

	// Unknown.
	if _, err := s.SpendJoinLink(ctx, sha("nosuch"), t0); !errors.Is(err, ErrNotFound) {
		t.Errorf("unknown link: %v, want ErrNotFound", err)
	}

	// Revoke.
	if n, err := s.RevokeJoinLinks(ctx, alice.ID, t0.Add(5*time.Minute)); err != nil || n != 1 {
		t.Errorf("RevokeJoinLinks = %d, %v; want 1", n, err)
	}
	if _, err := s.SpendJoinLink(ctx, sha("a3"), t0.Add(6*time.Minute)); !errors.Is(err, ErrRevoked) {
		t.Errorf("a revoked link: %v, want ErrRevoked", err)
	}
	if n, err := s.RevokeJoinLinks(ctx, alice.ID, t0.Add(7*time.Minute)); err != nil || n != 0 {
		t.Errorf("RevokeJoinLinks again = %d, %v; want 0", n, err)
	}
	if _, err := s.RevokeJoinLinks(ctx, 999999, t0); !errors.Is(err, ErrNotFound) {
		t.Errorf("revoking an unknown user's links: %v", err)
	}
	if _, err := s.LiveJoinLinks(ctx, 999999, t0); !errors.Is(err, ErrNotFound) {
		t.Errorf("listing an unknown user's links: %v", err)
	}

	// Deleting a user deletes their links.
	if _, err := s.CreateJoinLinks(ctx, []NewJoinLink{{bob.ID, sha("b2")}}, t0, exp); err != nil {
		t.Fatal(err)
	}
	if _, err := s.DeleteUser(ctx, "alpha", "bob"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.CheckJoinLink(ctx, sha("b2"), t0); !errors.Is(err, ErrNotFound) {
		t.Errorf("a deleted user's link: %v, want ErrNotFound", err)
	}
}

// TestCreateJoinLinksAllOrNothing: bad input changes nothing, not even
// the links before the bad one.
func TestCreateJoinLinksAllOrNothing(t *testing.T) {
	s := openTest(t)
	ctx := context.Background()
	alice, bob := joinUsers(t, s)
	t0 := time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)
	exp := t0.Add(time.Hour)
	if _, err := s.CreateJoinLinks(ctx, []NewJoinLink{{alice.ID, sha("old")}}, t0, exp); err != nil {
		t.Fatal(err)
	}
	for i, tc := range []struct {
		links     []NewJoinLink
		exp       time.Time
		wantField string
		wantErr   error
	}{
		{links: []NewJoinLink{{alice.ID, sha("x")}, {bob.ID, "not-a-hash"}}, exp: exp, wantField: "links[1].token_hash"},
		{links: []NewJoinLink{{alice.ID, sha("x")}, {alice.ID, sha("y")}}, exp: exp, wantField: "links[1].user_id"},
		{links: []NewJoinLink{{alice.ID, sha("x")}}, exp: t0, wantField: "expires_at"},
		{links: []NewJoinLink{{alice.ID, sha("x")}, {999999, sha("y")}}, exp: exp, wantErr: ErrNotFound},
		{links: []NewJoinLink{{bob.ID, sha("x")}, {alice.ID, sha("old")}}, exp: exp, wantErr: ErrConflict},
	} {
		_, err := s.CreateJoinLinks(ctx, tc.links, t0, tc.exp)
		var fe *FieldError
		switch {
		case tc.wantField != "" && (!errors.As(err, &fe) || fe.Field != tc.wantField):
			t.Errorf("case %d: %v, want a FieldError on %s", i, err, tc.wantField)
		case tc.wantErr != nil && !errors.Is(err, tc.wantErr):
			t.Errorf("case %d: %v, want %v", i, err, tc.wantErr)
		}
		if _, err := s.CheckJoinLink(ctx, sha("old"), t0); err != nil {
			t.Errorf("case %d: the refused call revoked the old link: %v", i, err)
		}
		for _, h := range []string{sha("x"), sha("y")} {
			if _, err := s.CheckJoinLink(ctx, h, t0); !errors.Is(err, ErrNotFound) {
				t.Errorf("case %d: the refused call stored a link: %v", i, err)
			}
		}
	}
	if made, err := s.CreateJoinLinks(ctx, nil, t0, exp); err != nil || len(made) != 0 {
		t.Errorf("no links: %v, %v", made, err)
	}
}

// TestSpendJoinLinkOnce: of many requests spending one link at once,
// exactly one gets the user.
func TestSpendJoinLinkOnce(t *testing.T) {
	s := openTest(t)
	ctx := context.Background()
	alice, _ := joinUsers(t, s)
	t0 := time.Now().UTC()
	if _, err := s.CreateJoinLinks(ctx, []NewJoinLink{{alice.ID, sha("race")}}, t0, t0.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	const n = 8
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = s.SpendJoinLink(ctx, sha("race"), t0)
		}()
	}
	wg.Wait()
	ok := 0
	for i, err := range errs {
		switch {
		case err == nil:
			ok++
		case !errors.Is(err, ErrSpent):
			t.Errorf("spender %d: %v, want ErrSpent", i, err)
		}
	}
	if ok != 1 {
		t.Errorf("%d spenders got the user, want 1", ok)
	}
}
