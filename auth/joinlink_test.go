package auth

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/thon-dev/thon/store"
)

// joinEnv is a Service with group alpha of alice and bob.
func joinEnv(t *testing.T) (*env, store.User, store.User) {
	t.Helper()
	e := newEnv(t, nil)
	ctx := context.Background()
	if _, err := e.store.CreateGroup(ctx, "alpha", ""); err != nil {
		t.Fatal(err)
	}
	alice, err := e.store.AddUser(ctx, "alpha", store.RosterUser{Name: "alice"})
	if err != nil {
		t.Fatal(err)
	}
	bob, err := e.store.AddUser(ctx, "alpha", store.RosterUser{Name: "bob"})
	if err != nil {
		t.Fatal(err)
	}
	return e, alice, bob
}

func TestJoinLinks(t *testing.T) {
	e, alice, bob := joinEnv(t)
	ctx := context.Background()
	links, err := e.svc.CreateJoinLinks(ctx, []int64{alice.ID, bob.ID}, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(links) != 2 || links[0].User != "alice" || links[1].User != "bob" {
		t.Fatalf("CreateJoinLinks = %+v", links)
	}
	if want := e.clock.now().Add(DefaultJoinLinkTTL); !links[0].ExpiresAt.Equal(want) {
		t.Errorf("expires %v, want %v (the default lifetime)", links[0].ExpiresAt, want)
	}
	if len(links[0].Token) != joinTokenLen || links[0].Token == links[1].Token || !joinTokenShape(links[0].Token) {
		t.Errorf("tokens %q, %q", links[0].Token, links[1].Token)
	}

	// Checking does not spend.
	for range 2 {
		if u, err := e.svc.CheckJoinLink(ctx, links[0].Token); err != nil || u.ID != alice.ID {
			t.Fatalf("CheckJoinLink = %+v, %v", u, err)
		}
	}
	iss, err := e.svc.RedeemJoinLink(ctx, links[0].Token)
	if err != nil {
		t.Fatal(err)
	}
	p := iss.Principal
	if p.Kind != KindParticipant || p.UserID != alice.ID || p.Group != "alpha" || p.Name != "alice" || p.Method != MethodJoinLink || p.Session == "" {
		t.Errorf("principal %+v", p)
	}
	if want := e.clock.now().Add(DefaultParticipantTTL); !iss.ExpiresAt.Equal(want) {
		t.Errorf("session expires %v, want %v", iss.ExpiresAt, want)
	}
	// The cookie signs alice in.
	r := httptest.NewRequest("GET", "/", nil)
	r.AddCookie(&http.Cookie{Name: SessionCookieName, Value: iss.Cookie})
	if got, err := e.svc.Authenticate(r); err != nil || got.UserID != alice.ID || !got.IsParticipant() {
		t.Errorf("Authenticate = %+v, %v", got, err)
	}
	// Once only.
	if _, err := e.svc.RedeemJoinLink(ctx, links[0].Token); !errors.Is(err, store.ErrSpent) {
		t.Errorf("redeemed twice: %v, want ErrSpent", err)
	}

	// Live links, then a revoke.
	if live, err := e.svc.LiveJoinLinks(ctx, bob.ID); err != nil || len(live) != 1 {
		t.Errorf("LiveJoinLinks = %+v, %v", live, err)
	}
	if n, err := e.svc.RevokeJoinLinks(ctx, bob.ID); err != nil || n != 1 {
		t.Errorf("RevokeJoinLinks = %d, %v", n, err)
	}
	if _, err := e.svc.RedeemJoinLink(ctx, links[1].Token); !errors.Is(err, store.ErrRevoked) {
		t.Errorf("a revoked link: %v, want ErrRevoked", err)
	}

	// Anything that is no token is unknown, without a lookup.
	for _, tok := range []string{"", "short", strings.Repeat("a", joinTokenLen-1) + "!", strings.Repeat("a", 200), "../../etc/passwd"} {
		if _, err := e.svc.RedeemJoinLink(ctx, tok); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("token %q: %v, want ErrNotFound", tok, err)
		}
		if _, err := e.svc.CheckJoinLink(ctx, tok); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("check %q: %v, want ErrNotFound", tok, err)
		}
	}
	// A well-formed token nobody made.
	if _, err := e.svc.CheckJoinLink(ctx, strings.Repeat("A", joinTokenLen)); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("an unknown token: %v, want ErrNotFound", err)
	}
}

func TestJoinLinkExpires(t *testing.T) {
	e, alice, _ := joinEnv(t)
	ctx := context.Background()
	links, err := e.svc.CreateJoinLinks(ctx, []int64{alice.ID}, 10*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	e.clock.add(10*time.Minute - time.Second)
	if _, err := e.svc.CheckJoinLink(ctx, links[0].Token); err != nil {
		t.Errorf("a second before its end: %v", err)
	}
	e.clock.add(time.Second)
	if _, err := e.svc.RedeemJoinLink(ctx, links[0].Token); !errors.Is(err, store.ErrExpired) {
		t.Errorf("at its end: %v, want ErrExpired", err)
	}
}

func TestJoinLinkTTLBounds(t *testing.T) {
	e, alice, _ := joinEnv(t)
	ctx := context.Background()
	for _, ttl := range []time.Duration{-time.Hour, time.Second, MinJoinLinkTTL - 1, MaxJoinLinkTTL + 1, 365 * 24 * time.Hour} {
		_, err := e.svc.CreateJoinLinks(ctx, []int64{alice.ID}, ttl)
		var fe *store.FieldError
		if !errors.As(err, &fe) || fe.Field != "ttl" || !strings.Contains(fe.Msg, "1m to 720h") {
			t.Errorf("ttl %v: %v, want a FieldError on ttl", ttl, err)
		}
		if live, _ := e.svc.LiveJoinLinks(ctx, alice.ID); len(live) != 0 {
			t.Errorf("ttl %v: a refused call made a link", ttl)
		}
	}
	for _, ttl := range []time.Duration{MinJoinLinkTTL, MaxJoinLinkTTL} {
		links, err := e.svc.CreateJoinLinks(ctx, []int64{alice.ID}, ttl)
		if err != nil || !links[0].ExpiresAt.Equal(e.clock.now().Add(ttl)) {
			t.Errorf("ttl %v: %+v, %v", ttl, links, err)
		}
	}
	if _, err := e.svc.CreateJoinLinks(ctx, []int64{999999}, 0); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("an unknown user: %v, want ErrNotFound", err)
	}
}
