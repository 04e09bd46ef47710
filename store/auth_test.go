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

// These assignments pin the store's auth API, as contract_test.go does
// for the rest.
var (
	_ func(context.Context) ([]Organiser, error)                                  = (*Store)(nil).ListOrganisers
	_ func(context.Context, string) (Organiser, error)                            = (*Store)(nil).GetOrganiser
	_ func(context.Context) (bool, error)                                         = (*Store)(nil).HasOrganiserPassword
	_ func(context.Context, string, time.Time) error                              = (*Store)(nil).ReplaceSetupToken
	_ func(context.Context, string, time.Time) error                              = (*Store)(nil).CheckSetupToken
	_ func(context.Context, string, time.Time, string, string) (Organiser, error) = (*Store)(nil).CompleteSetup
	_ func(context.Context, SessionRecord) error                                  = (*Store)(nil).CreateSession
	_ func(context.Context, string) (SessionRecord, error)                        = (*Store)(nil).GetSession
	_ func(context.Context, string, time.Time) error                              = (*Store)(nil).RevokeSession
	_ func(context.Context, int64, time.Time) ([]string, error)                   = (*Store)(nil).RevokeUserSessions
	_ func(context.Context, time.Time) (int64, error)                             = (*Store)(nil).DeleteExpiredSessions
	_ func(context.Context, APIToken) (APIToken, error)                           = (*Store)(nil).CreateAPIToken
	_ func(context.Context, string) (APIToken, error)                             = (*Store)(nil).APITokenByHash
	_ func(context.Context) ([]APIToken, error)                                   = (*Store)(nil).ListAPITokens
	_ func(context.Context, string) (APIToken, error)                             = (*Store)(nil).DeleteAPIToken
	_ func(string) error                                                          = ValidateLogin
)

func sha(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}

func TestSetupTokens(t *testing.T) {
	s := openTest(t)
	ctx := context.Background()
	t0 := time.Now().UTC()
	if has, err := s.HasOrganiserPassword(ctx); has || err != nil {
		t.Fatalf("HasOrganiserPassword on a new database = %v, %v", has, err)
	}
	if err := s.ReplaceSetupToken(ctx, "not-a-hash", t0.Add(time.Hour)); err == nil {
		t.Error("a token hash that is no SHA-256 was stored")
	}
	if err := s.ReplaceSetupToken(ctx, sha("one"), t0.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if err := s.ReplaceSetupToken(ctx, sha("two"), t0.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if err := s.CheckSetupToken(ctx, sha("one"), t0); !errors.Is(err, ErrNotFound) {
		t.Errorf("the replaced token: %v, want ErrNotFound", err)
	}
	if err := s.CheckSetupToken(ctx, sha("two"), t0.Add(time.Hour)); !errors.Is(err, ErrExpired) {
		t.Errorf("at its expiry: %v, want ErrExpired", err)
	}
	var fe *FieldError
	if _, err := s.CompleteSetup(ctx, sha("two"), t0, "has space", "$argon2id$x"); !errors.As(err, &fe) || fe.Field != "login" {
		t.Errorf("a bad login: %v", err)
	}
	o, err := s.CompleteSetup(ctx, sha("two"), t0, "admin", "$argon2id$x")
	if err != nil || o.Login != "admin" || o.PasswordHash != "$argon2id$x" || o.ID == 0 {
		t.Fatalf("CompleteSetup = %+v, %v", o, err)
	}
	if _, err := s.CompleteSetup(ctx, sha("two"), t0, "eve", "$argon2id$y"); !errors.Is(err, ErrSpent) {
		t.Errorf("the token again: %v, want ErrSpent", err)
	}
	// A fresh token cannot make a second first organiser.
	if err := s.ReplaceSetupToken(ctx, sha("three"), t0.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if _, err := s.CompleteSetup(ctx, sha("three"), t0, "eve", "$argon2id$y"); !errors.Is(err, ErrConflict) {
		t.Errorf("a second setup: %v, want ErrConflict", err)
	}
	if err := s.CheckSetupToken(ctx, sha("three"), t0); err != nil {
		t.Errorf("a refused setup spent the token: %v", err)
	}
	if has, err := s.HasOrganiserPassword(ctx); !has || err != nil {
		t.Errorf("HasOrganiserPassword = %v, %v", has, err)
	}
	got, err := s.GetOrganiser(ctx, "admin")
	if err != nil || got.ID != o.ID {
		t.Errorf("GetOrganiser = %+v, %v", got, err)
	}
	if _, err := s.GetOrganiser(ctx, "eve"); !errors.Is(err, ErrNotFound) {
		t.Errorf("GetOrganiser(eve) = %v", err)
	}
	all, err := s.ListOrganisers(ctx)
	if err != nil || len(all) != 1 {
		t.Errorf("ListOrganisers = %+v, %v", all, err)
	}
	entries, _ := s.ListAudit(ctx, 10)
	if len(entries) < 2 || entries[0].Action != "setup.issue" || entries[1].Action != "organiser.setup" || entries[1].Target != "organiser/admin" {
		t.Errorf("audit: %+v", entries)
	}
	if err := ValidateLogin(strings.Repeat("a", 129)); err == nil {
		t.Error("a 129-character login passed")
	}
}

func TestSessions(t *testing.T) {
	s := openTest(t)
	ctx := context.Background()
	t0 := time.Now().UTC().Truncate(time.Second)
	if _, err := s.CreateGroup(ctx, "alpha", ""); err != nil {
		t.Fatal(err)
	}
	u, err := s.AddUser(ctx, "alpha", RosterUser{Name: "alice"})
	if err != nil {
		t.Fatal(err)
	}
	org := SessionRecord{IDHash: sha("org"), Kind: SessionOrganiser, Name: "ada", Method: "password", CreatedAt: t0, ExpiresAt: t0.Add(time.Hour)}
	part := SessionRecord{IDHash: sha("part"), Kind: SessionParticipant, UserID: u.ID, Method: "join_link", CreatedAt: t0, ExpiresAt: t0.Add(2 * time.Hour)}
	for _, rec := range []SessionRecord{org, part} {
		if err := s.CreateSession(ctx, rec); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.CreateSession(ctx, org); !errors.Is(err, ErrConflict) {
		t.Errorf("the same session twice: %v", err)
	}
	var fe *FieldError
	for _, bad := range []SessionRecord{
		{IDHash: "x", Kind: SessionOrganiser, Name: "a", Method: "password"},
		{IDHash: sha("a"), Kind: "admin", Name: "a", Method: "password"},
		{IDHash: sha("b"), Kind: SessionOrganiser, Method: "password"},
		{IDHash: sha("c"), Kind: SessionParticipant, Method: "join_link"},
		{IDHash: sha("d"), Kind: SessionOrganiser, Name: "a"},
	} {
		if err := s.CreateSession(ctx, bad); !errors.As(err, &fe) {
			t.Errorf("CreateSession(%+v) = %v, want a FieldError", bad, err)
		}
	}
	if err := s.CreateSession(ctx, SessionRecord{IDHash: sha("e"), Kind: SessionParticipant, UserID: 999, Method: "join_link",
		CreatedAt: t0, ExpiresAt: t0}); !errors.Is(err, ErrNotFound) {
		t.Errorf("a session for a missing user: %v", err)
	}
	got, err := s.GetSession(ctx, part.IDHash)
	if err != nil || got.Group != "alpha" || got.User != "alice" || got.UserID != u.ID || !got.ExpiresAt.Equal(part.ExpiresAt) || got.RevokedAt != nil {
		t.Fatalf("GetSession = %+v, %v", got, err)
	}
	if err := s.RevokeSession(ctx, org.IDHash, t0); err != nil {
		t.Fatal(err)
	}
	if err := s.RevokeSession(ctx, org.IDHash, t0.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.GetSession(ctx, org.IDHash); got.RevokedAt == nil || !got.RevokedAt.Equal(t0) {
		t.Errorf("revoked at %v, want the first time %v", got.RevokedAt, t0)
	}
	if err := s.RevokeSession(ctx, sha("none"), t0); !errors.Is(err, ErrNotFound) {
		t.Errorf("revoking an unknown session: %v", err)
	}
	hs, err := s.RevokeUserSessions(ctx, u.ID, t0)
	if err != nil || len(hs) != 1 || hs[0] != part.IDHash {
		t.Errorf("RevokeUserSessions = %v, %v", hs, err)
	}
	n, err := s.DeleteExpiredSessions(ctx, t0.Add(90*time.Minute))
	if err != nil || n != 1 {
		t.Errorf("DeleteExpiredSessions = %d, %v; want the organiser's", n, err)
	}
	// A user's sessions go with the user.
	if _, err := s.DeleteUser(ctx, "alpha", "alice"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.GetSession(ctx, part.IDHash); !errors.Is(err, ErrNotFound) {
		t.Errorf("the deleted user's session: %v", err)
	}
}

func TestAPITokens(t *testing.T) {
	s := openTest(t)
	ctx := WithActor(context.Background(), "cli")
	tok, err := s.CreateAPIToken(ctx, APIToken{Name: "ci", Prefix: "thon_org_abcdef", Hash: sha("t1")})
	if err != nil || tok.CreatedAt.IsZero() {
		t.Fatalf("CreateAPIToken = %+v, %v", tok, err)
	}
	if _, err := s.CreateAPIToken(ctx, APIToken{Name: "ci", Prefix: "p", Hash: sha("t2")}); !errors.Is(err, ErrConflict) {
		t.Errorf("a name in use: %v", err)
	}
	if _, err := s.CreateAPIToken(ctx, APIToken{Name: "other", Prefix: "p", Hash: sha("t1")}); err == nil {
		t.Error("two tokens with one hash")
	}
	var fe *FieldError
	if _, err := s.CreateAPIToken(ctx, APIToken{Name: "No", Hash: sha("t3")}); !errors.As(err, &fe) || fe.Field != "name" {
		t.Errorf("a bad name: %v", err)
	}
	if _, err := s.CreateAPIToken(ctx, APIToken{Name: "x", Hash: "abc"}); !errors.As(err, &fe) || fe.Field != "hash" {
		t.Errorf("a bad hash: %v", err)
	}
	got, err := s.APITokenByHash(ctx, sha("t1"))
	if err != nil || got.Name != "ci" || got.Prefix != "thon_org_abcdef" {
		t.Errorf("APITokenByHash = %+v, %v", got, err)
	}
	if _, err := s.APITokenByHash(ctx, sha("t9")); !errors.Is(err, ErrNotFound) {
		t.Errorf("an unknown hash: %v", err)
	}
	list, err := s.ListAPITokens(ctx)
	if err != nil || len(list) != 1 || list[0].Name != "ci" {
		t.Errorf("ListAPITokens = %+v, %v", list, err)
	}
	if d, err := s.DeleteAPIToken(ctx, "ci"); err != nil || d.Prefix != "thon_org_abcdef" {
		t.Errorf("DeleteAPIToken = %+v, %v", d, err)
	}
	if _, err := s.DeleteAPIToken(ctx, "ci"); !errors.Is(err, ErrNotFound) {
		t.Errorf("deleting it again: %v", err)
	}
	entries, _ := s.ListAudit(ctx, 10)
	if len(entries) < 2 || entries[0].Action != "token.revoke" || entries[1].Action != "token.create" || entries[0].Actor != "cli" {
		t.Errorf("audit: %+v", entries)
	}
}
