package llm

import (
	"errors"
	"slices"
	"strings"
	"testing"
)

func TestSplitArgs(t *testing.T) {
	for i, tc := range []struct {
		in   string
		want []string
		err  string
	}{
		{"", nil, ""},
		{"  -b 8192\t-ub  8192\n", []string{"-b", "8192", "-ub", "8192"}, ""},
		{`--x "a b" 'c d' e\ f`, []string{"--x", "a b", "c d", "e f"}, ""},
		{`"" ''`, []string{"", ""}, ""},
		{`"a\"b\\c"`, []string{`a"b\c`}, ""},
		{`'a\b'`, []string{`a\b`}, ""},
		{`ab"cd"ef`, []string{"abcdef"}, ""},
		{`"abc`, nil, "unterminated \" quote"},
		{`'abc`, nil, "unterminated ' quote"},
		{`abc\`, nil, "trailing backslash"},
		{"a\x00b", nil, "control character"},
	} {
		got, err := SplitArgs(tc.in)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("case %d: err = %v, want %q", i, err, tc.err)
			}
			continue
		}
		if err != nil || !slices.Equal(got, tc.want) {
			t.Errorf("case %d: got %q, %v; want %q", i, got, err, tc.want)
		}
	}
}

func TestJoinArgsRoundTrip(t *testing.T) {
	for i, args := range [][]string{
		{"-b", "1"}, {"a b", `c"d`, `e\f`, ""}, {"'", "\t\n"}, {"ünï", "$x"},
	} {
		got, err := SplitArgs(JoinArgs(args))
		if err != nil || !slices.Equal(got, args) {
			t.Errorf("case %d: %q -> %q -> %q, %v", i, args, JoinArgs(args), got, err)
		}
	}
}

func TestReservedArgsRefused(t *testing.T) {
	for _, flag := range ReservedArgs() {
		for _, in := range []string{flag + " 1", "--no-mmap " + flag + "=x"} {
			_, err := ParseLlamacppArgs(in)
			var ae *ArgError
			if !errors.As(err, &ae) {
				t.Errorf("%q: err = %v, want an ArgError", in, err)
				continue
			}
			if !strings.HasPrefix(ae.Arg, flag) || !strings.Contains(err.Error(), `"`+ae.Arg+`"`) {
				t.Errorf("%q: error %q does not name %s", in, err, flag)
			}
		}
	}
	for _, ok := range []string{
		"-ngl 99", "--gpu-layers 99", "--flash-attn on", "--no-mmap", "-kvu", "--cache-reuse 256",
		"--temp -1", // a negative value is not a flag
	} {
		if _, err := ParseLlamacppArgs(ok); err != nil {
			t.Errorf("%q refused: %v", ok, err)
		}
	}
	want := []string{"--ctx-size", "-c", "-m", "--model", "--port", "--jinja", "--no-jinja", "--metrics", "--mmproj",
		"--embeddings", "--embedding", "--reranking", "--rerank", "-np", "--parallel", "--device", "-dev", "-hf"}
	for _, w := range want {
		if !slices.Contains(ReservedArgs(), w) {
			t.Errorf("%s is not reserved", w)
		}
	}
	if slices.Contains(ReservedArgs(), "-ngl") {
		t.Errorf("-ngl is reserved, but Lemonade allows it since #2235")
	}
}

func FuzzSplitArgs(f *testing.F) {
	for _, s := range []string{
		"", "-b 8192 -np 3", `--x "a b" 'c' d\ e`, `"unterminated`, `\`, "--ctx-size=1", "-np=4 --parallel 7",
		"--chat-template-kwargs '{\"a\": 1}'",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		args, err := SplitArgs(s)
		if err != nil {
			return
		}
		again, err := SplitArgs(JoinArgs(args))
		if err != nil {
			t.Fatalf("JoinArgs(%q) = %q does not split: %v", args, JoinArgs(args), err)
		}
		if !slices.Equal(again, args) {
			t.Fatalf("round trip: %q -> %q -> %q", args, JoinArgs(args), again)
		}
		if err := CheckLlamacppArgs(args); err != nil {
			var ae *ArgError
			if !errors.As(err, &ae) || !slices.Contains(args, ae.Arg) {
				t.Fatalf("error %v does not name one of %q", err, args)
			}
		}
		if n, err := UsersFromArgs(s); err == nil && n < 1 {
			t.Fatalf("UsersFromArgs(%q) = %d", s, n)
		}
	})
}
