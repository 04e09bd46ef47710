package llm

import (
	"strings"
	"testing"
)

func TestDropIn(t *testing.T) {
	fresh := RenderDropIn("", "AAA", "BBB")
	want := "# Written by thon lemonade setup: API keys of Lemonade Server.\n[Service]\n" +
		"Environment=\"LEMONADE_API_KEY=AAA\"\nEnvironment=\"LEMONADE_ADMIN_API_KEY=BBB\"\n"
	if fresh != want {
		t.Errorf("fresh drop-in:\n%s\nwant:\n%s", fresh, want)
	}
	if again := RenderDropIn(fresh, "AAA", "BBB"); again != fresh {
		t.Errorf("rendering twice changes it:\n%s", again)
	}
	existing := "[Unit]\nAfter=network-online.target\n\n[Service]\nEnvironment=\"HF_TOKEN=x\" \"LEMONADE_API_KEY=old\"\nEnvironment=LEMONADE_ADMIN_API_KEY=old2\nNice=5\n"
	k, a := DropInKeys(existing)
	if k != "old" || a != "old2" {
		t.Errorf("DropInKeys = %q %q", k, a)
	}
	got := RenderDropIn(existing, "NEW", "")
	want = "[Unit]\nAfter=network-online.target\n\n[Service]\nEnvironment=\"LEMONADE_API_KEY=NEW\"\nEnvironment=\"HF_TOKEN=x\"\nNice=5\n"
	if got != want {
		t.Errorf("merged drop-in:\n%s\nwant:\n%s", got, want)
	}
	if k, a := DropInKeys(got); k != "NEW" || a != "" {
		t.Errorf("keys after render = %q %q", k, a)
	}
	if got := RenderDropIn("[Unit]\nDescription=x\n", "K", "A"); !strings.HasPrefix(got, "[Unit]\nDescription=x\n[Service]\n") {
		t.Errorf("no [Service] section: %s", got)
	}
}

func TestNewKey(t *testing.T) {
	a, err := NewKey()
	if err != nil {
		t.Fatal(err)
	}
	b, _ := NewKey()
	if len(a) != 43 || a == b || validateKey("k", a) != nil {
		t.Errorf("keys %q %q", a, b)
	}
	for _, bad := range []string{"short", "has space in it here", `quote"quote"quote"`, "percent%percent%pe"} {
		if validateKey("api_key", bad) == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func FuzzDropIn(f *testing.F) {
	f.Add("[Service]\nEnvironment=\"LEMONADE_API_KEY=a\"\n", "key-1")
	f.Add("[Unit]\nX=1\nEnvironment=\"A=1\" 'B=2' LEMONADE_ADMIN_API_KEY=z\n", "key_2")
	f.Add("", "k")
	f.Fuzz(func(t *testing.T, existing, key string) {
		if validateKey("k", key) != nil {
			key = "fallback-key-0123456789"
		}
		out := RenderDropIn(existing, key, key+"-admin")
		k, a := DropInKeys(out)
		if k != key || a != key+"-admin" {
			t.Fatalf("keys read back %q %q from:\n%s", k, a, out)
		}
		if again := RenderDropIn(out, key, key+"-admin"); again != out {
			t.Fatalf("not idempotent:\n%s\n---\n%s", out, again)
		}
	})
}
