package oidc

import (
	"encoding/base64"
	"errors"
	"strings"
	"testing"
	"time"
)

var testSecret = []byte("0123456789abcdef0123456789abcdef")

func testPending() Pending {
	return Pending{
		Provider: "github", State: random(), Nonce: random(), Verifier: random(),
		RedirectURL: "https://thon.example.org/api/auth/callback/github", Next: "/s/team-a/ada/",
	}
}

func TestSealOpen(t *testing.T) {
	s, err := NewSealer(testSecret)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Unix(1_800_000_000, 0)
	p := testPending()
	v, err := s.Seal(p, now)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(v, "v1.") || strings.ContainsAny(v, " ;,\"=\\") || strings.Contains(v, p.Verifier) || strings.Contains(v, p.State) {
		t.Fatalf("sealed value %q is not an opaque cookie value", v)
	}
	got, err := s.Open(v, now.Add(PendingTTL-time.Second))
	if err != nil || got != p {
		t.Fatalf("Open: %+v %v, want %+v", got, err, p)
	}
	v2, _ := s.Seal(p, now)
	if v2 == v {
		t.Fatal("two seals of one login are equal (nonce reused)")
	}

	_, err = s.Open(v, now.Add(PendingTTL))
	wantErr(t, err, ErrPendingExpired)

	// Any altered character is refused.
	for i := len("v1."); i < len(v); i++ {
		b := []byte(v)
		if b[i] == 'A' {
			b[i] = 'B'
		} else {
			b[i] = 'A'
		}
		if _, err := s.Open(string(b), now); !errors.Is(err, ErrPendingInvalid) {
			t.Fatalf("altered at %d: %v", i, err)
		}
	}
	other, _ := NewSealer([]byte(strings.Repeat("x", 32)))
	_, err = other.Open(v, now)
	wantErr(t, err, ErrPendingInvalid, "not sealed by this key")

	for _, junk := range []string{"", "v1.", "v2." + v[3:], v[:len(v)-4], v + "AA", v[:10] + "\n" + v[10:], strings.Repeat("A", MaxSealedLen+1)} {
		if _, err := s.Open(junk, now); !errors.Is(err, ErrPendingInvalid) {
			t.Errorf("%q: %v", junk, err)
		}
	}
	if _, err := NewSealer(testSecret[:31]); err == nil {
		t.Fatal("a 31-byte secret was taken")
	}
	// A login too large for a cookie is refused at sealing.
	big := p
	big.Next = strings.Repeat("/x", MaxSealedLen)
	if _, err := s.Seal(big, now); err == nil {
		t.Fatal("sealed a login larger than a cookie")
	}
}

// FuzzOpenPending feeds Open outside input (a cookie): it must never
// panic, and must open nothing but what a sealer with its key sealed,
// spelt exactly as it was sealed.
func FuzzOpenPending(f *testing.F) {
	s, err := NewSealer(testSecret)
	if err != nil {
		f.Fatal(err)
	}
	now := time.Unix(1_800_000_000, 0)
	// Fixed values: every fuzzing worker runs this function again, and
	// one worker's seal reaches the others as input.
	p := Pending{Provider: "oidc", State: "st", Nonce: "no", Verifier: "ve", RedirectURL: "https://h/api/auth/callback/oidc"}
	valid, err := s.Seal(p, now)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(valid)
	f.Add(valid[:len(valid)-1])
	f.Add("v1.")
	f.Add("v1.AAAA")
	f.Add("")
	f.Add("v1." + strings.Repeat("_", 200))
	f.Fuzz(func(t *testing.T, v string) {
		got, err := s.Open(v, now)
		if err != nil {
			if !errors.Is(err, ErrPendingInvalid) && !errors.Is(err, ErrPendingExpired) {
				t.Fatalf("error %v matches neither sentinel", err)
			}
			return
		}
		if got != p {
			t.Fatalf("opened %q as %+v", v, got)
		}
		raw, err := base64.RawURLEncoding.DecodeString(strings.TrimPrefix(v, "v1."))
		if err != nil || "v1."+base64.RawURLEncoding.EncodeToString(raw) != v {
			t.Fatalf("opened %q, which is not the spelling of a seal", v)
		}
	})
}
