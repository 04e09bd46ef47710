package gateway

import (
	"encoding/base64"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
)

func TestNewKey(t *testing.T) {
	seen := map[string]bool{}
	for range 100 {
		k, err := NewKey()
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(k, KeyPrefixMark) || len(k) != len(KeyPrefixMark)+43 {
			t.Fatalf("key %q: want %q and 43 base64url characters", k, KeyPrefixMark)
		}
		raw, err := base64.RawURLEncoding.DecodeString(strings.TrimPrefix(k, KeyPrefixMark))
		if err != nil || len(raw) != 32 {
			t.Fatalf("key %q: %d random bytes, %v; want 32", k, len(raw), err)
		}
		if seen[k] {
			t.Fatalf("key %q made twice", k)
		}
		seen[k] = true
	}
}

func TestHashKeyAndPrefix(t *testing.T) {
	if got := HashKey("abc"); got != "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad" {
		t.Errorf("HashKey(abc) = %s", got)
	}
	for i, tc := range []struct{ key, want string }{
		{"thon_AbCdEfGhIjKlMnOpQrStUvWxYz0123456789-_abcde", "thon_AbCdEf"},
		{"0123456789", "01234"},
		{"", ""},
	} {
		if got := KeyPrefix(tc.key); got != tc.want {
			t.Errorf("case %d: KeyPrefix(%q) = %q, want %q", i, tc.key, got, tc.want)
		}
	}
}

func TestKeyFromRequest(t *testing.T) {
	for i, tc := range []struct {
		auth, apikey, query, want string
	}{
		{"Bearer thon_abc", "", "", "thon_abc"},
		{"bearer   thon_abc  ", "", "", "thon_abc"},
		{"Bearer thon_abc", "other", "apikey=third", "thon_abc"},
		{"Basic dXNlcjpwYXNz", "thon_hdr", "", "thon_hdr"},
		{"Bearer ", "thon_hdr", "", "thon_hdr"},
		{"", "", "apikey=thon_q&x=1", "thon_q"},
		{"", " thon_hdr ", "apikey=thon_q", "thon_hdr"},
		{"Bearer", "", "", ""},
		{"", "", "key=x", ""},
	} {
		target := "/v1/chat/completions"
		if tc.query != "" {
			target += "?" + tc.query
		}
		r := httptest.NewRequest("POST", target, nil)
		if tc.auth != "" {
			r.Header.Set("Authorization", tc.auth)
		}
		if tc.apikey != "" {
			r.Header.Set("apikey", tc.apikey)
		}
		if got := KeyFromRequest(r); got != tc.want {
			t.Errorf("case %d: got %q, want %q", i, got, tc.want)
		}
	}
}

func FuzzKeyFromRequest(f *testing.F) {
	f.Add("Bearer thon_x", "k", "apikey=q")
	f.Add("bEaReR\t y", "", "apikey=%zz")
	f.Fuzz(func(t *testing.T, auth, apikey, query string) {
		r := httptest.NewRequest("GET", "/v1/models", nil)
		r.Header["Authorization"] = []string{auth}
		r.Header["Apikey"] = []string{apikey}
		r.URL.RawQuery = query
		k := KeyFromRequest(r)
		if k != strings.TrimSpace(k) {
			t.Fatalf("key %q has surrounding space", k)
		}
		if k != "" && !strings.Contains(auth, k) && !strings.Contains(apikey, k) && !strings.Contains(r.URL.Query().Get("apikey"), k) {
			t.Fatalf("key %q came from nowhere", k)
		}
	})
}

func testConsumer(name, key string) Consumer {
	return Consumer{Name: name, Mode: ModePerUser, Group: "alpha", User: name, KeyHash: HashKey(key),
		Limits: Limits{Concurrency: 1}}
}

func TestKeyring(t *testing.T) {
	var k Keyring
	if _, ok := k.Lookup("anything"); ok || k.Len() != 0 {
		t.Fatal("zero keyring found a key")
	}
	alice, bob := testConsumer("alpha-alice", "key-a"), testConsumer("alpha-bob", "key-b")
	if err := k.Set([]Consumer{alice, bob}); err != nil {
		t.Fatal(err)
	}
	if c, ok := k.Lookup("key-b"); !ok || c.Name != "alpha-bob" {
		t.Fatalf("Lookup(key-b) = %+v, %v", c, ok)
	}
	for _, bad := range []string{"", "key-c", "key-a ", HashKey("key-a")} {
		if _, ok := k.Lookup(bad); ok {
			t.Errorf("Lookup(%q) found a consumer", bad)
		}
	}
	upper := testConsumer("alpha-carol", "key-c")
	upper.KeyHash = strings.ToUpper(upper.KeyHash)
	for i, tc := range []struct {
		set  []Consumer
		want string
	}{
		{[]Consumer{alice, {Name: "x", Mode: "solo"}}, "consumers[1]: mode:"},
		{[]Consumer{alice, testConsumer("alpha-alice", "key-z")}, `consumers[1].name: "alpha-alice" already used by consumers[0]`},
		{[]Consumer{alice, testConsumer("alpha-eve", "key-a")}, `consumers[1].key_hash: key already used by consumer "alpha-alice"`},
		{[]Consumer{{Name: "n", Mode: ModePerUser, Group: "g", User: "u", KeyHash: "abc"}}, "consumers[0].key_hash: must be 64 hex"},
		{[]Consumer{{Name: "n", Mode: ModePerUser, Group: "g", User: "u", KeyHash: strings.Repeat("zz", 32)}}, "consumers[0].key_hash: not hex"},
	} {
		err := k.Set(tc.set)
		if err == nil || !strings.HasPrefix(err.Error(), tc.want) {
			t.Errorf("case %d: Set error %v, want %q", i, err, tc.want)
		}
	}
	if c, ok := k.Lookup("key-a"); !ok || c.Name != "alpha-alice" || k.Len() != 2 {
		t.Fatal("a failed Set changed the keyring")
	}
	if err := k.Set([]Consumer{upper}); err != nil {
		t.Fatal(err)
	}
	if _, ok := k.Lookup("key-a"); ok {
		t.Fatal("Set did not replace the keyring")
	}
	if c, ok := k.Lookup("key-c"); !ok || c.Name != "alpha-carol" {
		t.Fatal("upper-case hex hash not found")
	}
}

// TestKeyringConcurrent replaces the keyring while it is read; run with
// -race.
func TestKeyringConcurrent(t *testing.T) {
	var k Keyring
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			for i := range 200 {
				if w == 0 {
					n := "c" + strconv.Itoa(i)
					if err := k.Set([]Consumer{testConsumer(n, n), testConsumer("stable", "stable")}); err != nil {
						t.Error(err)
						return
					}
					continue
				}
				if c, ok := k.Lookup("stable"); ok && c.Name != "stable" {
					t.Errorf("Lookup(stable) = %s", c.Name)
				}
			}
		})
	}
	wg.Wait()
}

func BenchmarkKeyringLookup(b *testing.B) {
	var k Keyring
	var cs []Consumer
	for i := range 1000 {
		cs = append(cs, testConsumer("c"+strconv.Itoa(i), "thon_key_"+strconv.Itoa(i)))
	}
	if err := k.Set(cs); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, ok := k.Lookup("thon_key_500"); !ok {
			b.Fatal("not found")
		}
	}
}
