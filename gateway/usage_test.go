package gateway

import (
	"bytes"
	"encoding/json"
	"regexp"
	"testing"
)

func TestParseUsage(t *testing.T) {
	for i, tc := range []struct {
		body     string
		want     Usage
		reported bool
	}{
		{`{"id":"chatcmpl-1","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"Hi there"},"finish_reason":"stop"}],"usage":{"completion_tokens":3,"prompt_tokens":11,"total_tokens":14,"prompt_tokens_details":{"cached_tokens":0}},"timings":{"prompt_n":11}}`,
			Usage{11, 3, 14}, true},
		{`{"object":"list","data":[{"object":"embedding","index":0,"embedding":[0.1,-0.2,3e-5]}],"model":"nomic","usage":{"prompt_tokens":6,"total_tokens":6}}`,
			Usage{6, 0, 6}, true},
		{` {"usage": {"prompt_tokens": 2.0, "completion_tokens": 1e1}} `, Usage{2, 10, 12}, true},
		{`{"usage":{"prompt_tokens":-4,"completion_tokens":"7","total_tokens":null}}`, Usage{0, 0, 0}, true},
		{`{"\u0075sage":{"prompt_tokens":1,"completion_tokens":1}}`, Usage{1, 1, 2}, true},
		// No usage: an estimate from the generated text ("Hello world!"
		// and "ok"), role excluded.
		{`{"choices":[{"message":{"role":"assistant","content":"Hello world!"}},{"text":"ok"}],"usage":null}`, Usage{0, 4, 4}, false},
		{`{"choices":[{"message":{"content":"Hi"}}]`, Usage{}, false},
		{`[{"usage":{"prompt_tokens":1}}]`, Usage{}, false},
		{`{"usage":{"prompt_tokens":1}} trailing`, Usage{}, false},
		{``, Usage{}, false},
	} {
		got, rep := ParseUsage([]byte(tc.body))
		if got != tc.want || rep != tc.reported {
			t.Errorf("case %d: ParseUsage = %+v, %v; want %+v, %v", i, got, rep, tc.want, tc.reported)
		}
	}
}

// plainCount matches the usage numbers the differential fuzz compares.
var plainCount = regexp.MustCompile(`^(0|[1-9][0-9]{0,14})$`)

// oracleUsage reads a top-level usage object with encoding/json, keeping
// the scanner's rules: exact keys, the last usage object wins, fields that
// are not plain counts make the case incomparable.
func oracleUsage(b []byte) (u Usage, has, comparable bool) {
	dec := json.NewDecoder(bytes.NewReader(b))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return u, false, false
	}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return u, false, false
		}
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return u, false, false
		}
		if tok != "usage" || raw[0] != '{' {
			continue
		}
		var fields map[string]json.RawMessage
		if err := json.Unmarshal(raw, &fields); err != nil {
			return u, false, false
		}
		u, has = Usage{}, true
		for k, dst := range map[string]*int64{"prompt_tokens": &u.Prompt, "completion_tokens": &u.Completion, "total_tokens": &u.Total} {
			v, ok := fields[k]
			if !ok {
				continue
			}
			if !plainCount.Match(v) || bytes.Count(raw, []byte(k)) > 1 {
				return u, false, false
			}
			json.Unmarshal(v, dst)
		}
	}
	if _, err := dec.Token(); err != nil {
		return u, false, false
	}
	return u, has, true
}

// FuzzCompletionScan checks the in-place JSON scanner against
// encoding/json: it accepts exactly the valid JSON objects, and reads the
// same usage.
func FuzzCompletionScan(f *testing.F) {
	for _, s := range []string{
		`{"choices":[],"usage":{"prompt_tokens":17,"completion_tokens":5,"total_tokens":22}}`,
		`{"a":[1,2.5e+3,-0.1,true,false,null,{"b":"\u00e9\n"}],"usage":null}`,
		`{"usage":{"prompt_tokens":1},"usage":{"completion_tokens":2}}`,
		`{"x":"\ud83d\ude00", "y" : [ ] , "z":{}}`,
		`{"bad":01}`, `{"bad":"\x"}`, `{"bad":[1,]}`, `{"a":1}x`, `"str"`, `[]`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var sc completionScan
		ok := sc.scan(b)
		trimmed := bytes.TrimLeft(b, " \t\r\n")
		isObject := json.Valid(b) && len(trimmed) > 0 && trimmed[0] == '{'
		if ok != isObject {
			t.Fatalf("scan accepted=%v, encoding/json valid object=%v", ok, isObject)
		}
		if !ok {
			return
		}
		want, has, comparable := oracleUsage(b)
		if !comparable {
			return
		}
		if sc.hasUsage != has || (has && sc.usage != want) {
			t.Fatalf("scan usage %+v (%v), encoding/json %+v (%v)", sc.usage, sc.hasUsage, want, has)
		}
	})
}
