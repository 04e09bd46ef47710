package jsonc

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func TestStandardize(t *testing.T) {
	for i, tc := range []struct {
		in   string
		want string
	}{
		{in: `{}`, want: `{}`},
		{in: `{"a": 1, // note` + "\n" + `"b": 2}`, want: `{"a": 1,        ` + "\n" + `"b": 2}`},
		{in: `{"a": /* x */ 1}`, want: `{"a":         1}`},
		{in: "{\"a\": /* x\n y */ 1}", want: "{\"a\":     \n      1}"},
		{in: `{"a": 1,}`, want: `{"a": 1 }`},
		{in: `[1, 2, ]`, want: `[1, 2  ]`},
		{in: "[1, 2, // c\n]", want: "[1, 2      \n]"},
		{in: `[[1,],{"x":[],},]`, want: `[[1 ],{"x":[] } ]`},
		{in: `{"url": "http://x//y", "c": "/* no */"}`, want: `{"url": "http://x//y", "c": "/* no */"}`},
		{in: `{"q": "a\"//b",}`, want: `{"q": "a\"//b" }`},
		{in: "\xEF\xBB\xBF{}", want: "   {}"},
		{in: "{\"a\": 1, // c\r\n}", want: "{\"a\": 1      \r\n}"},
		// a comma that does not follow a value is left for the decoder to reject
		{in: `[,]`, want: `[,]`},
		{in: `{,}`, want: `{,}`},
		{in: `[1,,]`, want: `[1,,]`},
		{in: `{"a":,}`, want: `{"a":,}`},
		{in: ``, want: ``},
	} {
		got, err := Standardize([]byte(tc.in))
		if err != nil {
			t.Errorf("case %d: unexpected error: %v", i, err)
			continue
		}
		if string(got) != tc.want {
			t.Errorf("case %d: got %q, want %q", i, got, tc.want)
		}
		if len(got) != len(tc.in) {
			t.Errorf("case %d: length changed from %d to %d", i, len(tc.in), len(got))
		}
	}
}

func TestStandardizeDoesNotModifyInput(t *testing.T) {
	in := []byte(`{"a": 1, /* c */}`)
	orig := bytes.Clone(in)
	if _, err := Standardize(in); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(in, orig) {
		t.Errorf("input modified: %q", in)
	}
}

func TestErrors(t *testing.T) {
	for i, tc := range []struct {
		in       string
		line     int
		column   int
		contains string
	}{
		{in: "{\n  \"a\": 1\n  /* open", line: 3, column: 3, contains: "unterminated /* comment"},
		{in: "{\n  \"a\": 1,\n  \"b\" 2\n}", line: 3, column: 7, contains: "invalid character '2'"},
		{in: "{\n  // c\n  \"a\": [1,,]\n}", line: 3, column: 11, contains: "invalid character ','"},
		{in: "{\"é\": x}", line: 1, column: 7, contains: "invalid character 'x'"},
		{in: "{\"a\": 1", line: 1, column: 8, contains: "unexpected end of JSON input"},
		{in: "[1,]", line: 1, column: 1, contains: "expected a JSON object, found an array"},
		{in: "\n\n  null", line: 3, column: 3, contains: "expected a JSON object, found null"},
		{in: "  \"s\" // c", line: 1, column: 3, contains: "expected a JSON object, found a string"},
		{in: "", line: 1, column: 1, contains: "unexpected end of JSON input"},
		{in: "{} {}", line: 1, column: 4, contains: "invalid character '{' after top-level value"},
	} {
		err := ValidateObject([]byte(tc.in))
		var se *SyntaxError
		if !errors.As(err, &se) {
			t.Errorf("case %d: got %v (%T), want *SyntaxError", i, err, err)
			continue
		}
		if se.Line != tc.line || se.Column != tc.column {
			t.Errorf("case %d: got line %d column %d, want line %d column %d (%v)", i, se.Line, se.Column, tc.line, tc.column, err)
		}
		if !strings.Contains(err.Error(), tc.contains) {
			t.Errorf("case %d: error %q does not contain %q", i, err, tc.contains)
		}
		if !strings.HasPrefix(err.Error(), "line ") {
			t.Errorf("case %d: error %q does not start with the line", i, err)
		}
	}
}

func TestUnmarshal(t *testing.T) {
	in := []byte(`{
		// duplicate keys: the last one wins
		"permission": {"bash": "allow"},
		"permission": {"bash": "deny", "read": "allow",},
		"list": [1, 2, 3,], /* trailing */
	}`)
	var got map[string]any
	if err := Unmarshal(in, &got); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{
		"permission": map[string]any{"bash": "deny", "read": "allow"},
		"list":       []any{1.0, 2.0, 3.0},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %#v, want %#v", got, want)
	}

	var typed struct {
		N int `json:"n"`
	}
	err := Unmarshal([]byte("{\n  \"n\": \"x\"\n}"), &typed)
	var se *SyntaxError
	if !errors.As(err, &se) || se.Line != 2 {
		t.Errorf("type error: got %v, want a *SyntaxError on line 2", err)
	}
}

// TestOriginalFiles checks that the original project's example files read
// as JSONC objects, including the skeleton's duplicate keys.
func TestOriginalFiles(t *testing.T) {
	for _, name := range []string{"kilo.jsonc.example", "kilo.jsonc.skeleton", "vscode-settings.jsonc.example"} {
		b, err := os.ReadFile(filepath.Join("testdata", name))
		if err != nil {
			t.Fatal(err)
		}
		if err := ValidateObject(b); err != nil {
			t.Errorf("%s: %v", name, err)
		}
		var m map[string]any
		if err := Unmarshal(b, &m); err != nil {
			t.Errorf("%s: %v", name, err)
		}
		if len(m) == 0 {
			t.Errorf("%s: no keys decoded", name)
		}
	}

	b, err := os.ReadFile(filepath.Join("testdata", "kilo.jsonc.skeleton"))
	if err != nil {
		t.Fatal(err)
	}
	var skel struct {
		Permission map[string]string `json:"permission"`
	}
	if err := Unmarshal(b, &skel); err != nil {
		t.Fatal(err)
	}
	// the second "permission" object (16 entries) replaces the first
	if len(skel.Permission) != 16 || skel.Permission["codesearch"] != "allow" {
		t.Errorf("skeleton permission = %v, want the second, full object", skel.Permission)
	}
}

func TestPosition(t *testing.T) {
	src := []byte("ab\ncé\r\nx")
	for i, tc := range []struct {
		off          int64
		line, column int
	}{
		{0, 1, 1}, {2, 1, 3}, {3, 2, 1}, {4, 2, 2}, {6, 2, 3}, {8, 3, 1}, {9, 3, 2}, {100, 3, 2}, {-4, 1, 1},
	} {
		l, c := Position(src, tc.off)
		if l != tc.line || c != tc.column {
			t.Errorf("case %d: offset %d: got %d:%d, want %d:%d", i, tc.off, l, c, tc.line, tc.column)
		}
	}
}

func FuzzStandardize(f *testing.F) {
	for _, name := range []string{"kilo.jsonc.example", "kilo.jsonc.skeleton", "vscode-settings.jsonc.example"} {
		b, err := os.ReadFile(filepath.Join("testdata", name))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	for _, s := range []string{`{}`, `[1,]`, `{"a":"//"}`, `/* x`, `"\"`, `{"a":[1,2,],}`, "\xEF\xBB\xBF[]", `[,]`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		out, err := Standardize(in)
		if err != nil {
			var se *SyntaxError
			if !errors.As(err, &se) {
				t.Fatalf("error %v is not a *SyntaxError", err)
			}
			if json.Valid(in) {
				t.Fatalf("valid JSON %q rejected: %v", in, err)
			}
			return
		}
		if len(out) != len(in) {
			t.Fatalf("length changed from %d to %d", len(in), len(out))
		}
		for i := range in {
			if (in[i] == '\n') != (out[i] == '\n') {
				t.Fatalf("newline at %d not kept", i)
			}
		}
		if json.Valid(in) {
			var a, b any
			if err := json.Unmarshal(in, &a); err != nil {
				t.Fatal(err)
			}
			if err := json.Unmarshal(out, &b); err != nil {
				t.Fatalf("standardized valid JSON does not decode: %v", err)
			}
			if !reflect.DeepEqual(a, b) {
				t.Fatalf("standardized %q to %q: values differ", in, out)
			}
			// the same value with comments around it reads the same
			commented := append(append([]byte("/* head */\n"), in...), "\n// tail"...)
			var c any
			if err := Unmarshal(commented, &c); err != nil {
				t.Fatalf("commented valid JSON %q: %v", commented, err)
			}
			if !reflect.DeepEqual(a, c) {
				t.Fatalf("commented %q: values differ", commented)
			}
		}
		// decoding must never panic, whatever the input
		var v any
		_ = Unmarshal(in, &v)
		_ = ValidateObject(in)
	})
}
