package gateway

import (
	"bytes"
	"encoding/json"
	"reflect"
	"strings"
	"testing"
)

func TestInjectIncludeUsage(t *testing.T) {
	for i, tc := range []struct {
		in, want string
		stream   bool
		same     bool // the input slice itself comes back
	}{
		{`{"model":"m","stream":true,"messages":[]}`,
			`{"model":"m","stream":true,"messages":[],"stream_options":{"include_usage":true}}`, true, false},
		{"{\n  \"stream\": true,\n  \"messages\": [ {\"role\": \"user\", \"content\": \"hi\"} ]\n}\n",
			"{\n  \"stream\": true,\n  \"messages\": [ {\"role\": \"user\", \"content\": \"hi\"} ],\"stream_options\":{\"include_usage\":true}\n}\n", true, false},
		{`{"stream":true,"stream_options":{}}`, `{"stream":true,"stream_options":{"include_usage":true}}`, true, false},
		{`{"stream":true,"stream_options": { } }`, `{"stream":true,"stream_options": {"include_usage":true} }`, true, false},
		{`{"stream_options":{"continuous_usage_stats":true},"stream":true}`,
			`{"stream_options":{"continuous_usage_stats":true,"include_usage":true},"stream":true}`, true, false},
		{`{"stream":true,"stream_options":{"include_usage":false,"x":1}}`,
			`{"stream":true,"stream_options":{"include_usage":true,"x":1}}`, true, false},
		{`{"stream":true,"stream_options":{"include_usage": null}}`,
			`{"stream":true,"stream_options":{"include_usage": true}}`, true, false},
		{`{"stream":true,"stream_options":null}`, `{"stream":true,"stream_options":{"include_usage":true}}`, true, false},
		{`{"stream":true,"stream_options":{"include_usage":true}}`, `{"stream":true,"stream_options":{"include_usage":true}}`, true, true},
		{`{"stream":false,"messages":[]}`, `{"stream":false,"messages":[]}`, false, true},
		{`{"stream":null}`, `{"stream":null}`, false, true},
		{`{"messages":[],"Stream":true}`, `{"messages":[],"Stream":true}`, false, true},
		{`{"input":"x"}`, `{"input":"x"}`, false, true},
		{`{"stream":true,"content":"caf\u00e9 \"q\" 😀"}`, `{"stream":true,"content":"caf\u00e9 \"q\" 😀","stream_options":{"include_usage":true}}`, true, false},
	} {
		in := []byte(tc.in)
		out, stream, err := InjectIncludeUsage(in)
		if err != nil {
			t.Errorf("case %d: %v", i, err)
			continue
		}
		if string(out) != tc.want || stream != tc.stream {
			t.Errorf("case %d: got %s, %v; want %s, %v", i, out, stream, tc.want, tc.stream)
		}
		if same := len(out) > 0 && &out[0] == &in[0]; same != tc.same {
			t.Errorf("case %d: returned the input slice = %v, want %v", i, same, tc.same)
		}
		if !json.Valid(out) {
			t.Errorf("case %d: output is not valid JSON: %s", i, out)
		}
	}
}

func TestInjectIncludeUsageErrors(t *testing.T) {
	for i, tc := range []struct{ in, want string }{
		{``, "body: unexpected end of JSON"},
		{`not json`, "body: invalid JSON"},
		{`[1]`, "body: must be a JSON object"},
		{`{"stream":true}{}`, "body: unexpected data after the JSON object"},
		{`{"stream":true,"stream":false}`, "stream: repeated key"},
		{`{"stream":"yes"}`, "stream: must be a boolean"},
		{`{"stream":true,"stream_options":5}`, "stream_options: must be an object"},
		{`{"stream":true,"stream_options":{"include_usage":"yes"}}`, "stream_options.include_usage: must be a boolean"},
		{`{"stream":true,"stream_options":{"a":1,"a":2}}`, "stream_options.a: repeated key"},
		{`{"model":"m","stream":true,"messages":[}`, "messages: invalid JSON"},
	} {
		out, _, err := InjectIncludeUsage([]byte(tc.in))
		if err == nil || !strings.HasPrefix(err.Error(), tc.want) {
			t.Errorf("case %d: error %v, want it to start with %q", i, err, tc.want)
		}
		if out != nil {
			t.Errorf("case %d: output %q on error", i, out)
		}
	}
}

func FuzzInjectIncludeUsage(f *testing.F) {
	for _, s := range []string{
		`{"model":"m","stream":true,"messages":[{"role":"user","content":"hi"}]}`,
		`{"stream":true,"stream_options":{"continuous_usage_stats":true}}`,
		`{"stream":true,"stream_options":{"include_usage":false}}`,
		`{"stream":true,"stream_options":null, "max_tokens": 10}`,
		`{"stream":false}`, `{}`, `[]`, `{"stream":true,"stream":true}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		orig := bytes.Clone(body)
		out, stream, err := InjectIncludeUsage(body)
		if !bytes.Equal(body, orig) {
			t.Fatal("input modified")
		}
		if err != nil {
			if err.Error() == "" {
				t.Fatal("empty error")
			}
			return
		}
		if !stream {
			if !bytes.Equal(out, body) {
				t.Fatalf("not streamed, yet changed: %s", out)
			}
			return
		}
		if !json.Valid(out) {
			t.Fatalf("invalid JSON out: %s", out)
		}
		var before, after map[string]json.RawMessage
		if err := json.Unmarshal(body, &before); err != nil {
			t.Fatalf("accepted a body encoding/json rejects: %v", err)
		}
		if err := json.Unmarshal(out, &after); err != nil {
			t.Fatal(err)
		}
		var opts map[string]json.RawMessage
		if err := json.Unmarshal(after["stream_options"], &opts); err != nil || string(opts["include_usage"]) != "true" {
			t.Fatalf("stream_options = %s, want include_usage true", after["stream_options"])
		}
		var oldOpts map[string]json.RawMessage
		json.Unmarshal(before["stream_options"], &oldOpts)
		delete(opts, "include_usage")
		delete(oldOpts, "include_usage")
		if len(opts) != len(oldOpts) || (len(opts) > 0 && !reflect.DeepEqual(opts, oldOpts)) {
			t.Fatalf("other stream_options changed: %v -> %v", oldOpts, opts)
		}
		delete(before, "stream_options")
		delete(after, "stream_options")
		if !reflect.DeepEqual(before, after) {
			t.Fatalf("other members changed:\n%s\n%s", body, out)
		}
	})
}

func TestEstimate(t *testing.T) {
	for i, tc := range []struct {
		body  string
		def   int64
		model string
		want  Usage
	}{
		// 12 characters: 3 tokens, plus 4 for the message; 512 default.
		{`{"model":"Qwen3-0.6B-GGUF","messages":[{"role":"user","content":"Hello there!"}]}`, 0,
			"Qwen3-0.6B-GGUF", Usage{7, 512, 519}},
		{`{"model":"m","messages":[{"role":"user","content":"Hello there!"}],"max_tokens":100}`, 0, "m", Usage{7, 100, 107}},
		{`{"messages":[{"role":"user","content":"x"}],"max_tokens":100,"max_completion_tokens":50,"n":2}`, 0, "", Usage{5, 100, 105}},
		{`{"messages":[{"role":"user","content":"x"}],"max_tokens":null}`, 64, "", Usage{5, 64, 69}},
		// Content parts: only text counts (8 characters); tool calls and
		// names count; a null content counts nothing.
		{`{"messages":[{"role":"user","content":[{"type":"text","text":"abcd"},{"type":"image_url","image_url":{"url":"data:x"}},{"type":"text","text":"éèêë"}]},` +
			`{"role":"assistant","content":null,"tool_calls":[{"id":"c1","type":"function","function":{"name":"f","arguments":"{}"}}]}],"max_tokens":0}`, 0, "",
			// 8 + c1 function f {} = 8+2+8+1+2 = 21 chars: 6 tokens, + 8.
			Usage{14, 0, 14}},
		// Tools count by their JSON text (44 bytes) with the messages.
		{`{"messages":[{"role":"user","content":"hi"}],"tools":[{"type":"function","function":{"name":"x"}}],"max_tokens":1}`, 0, "",
			Usage{(2+44+3)/4 + 4, 1, (2+44+3)/4 + 5}},
		// Embeddings: no completion.
		{`{"model":"nomic","input":"sixteen chars!!!"}`, 0, "nomic", Usage{4, 0, 4}},
		{`{"input":["abcd","efgh",[1,2,3],7,{"text":"ijkl"}]}`, 0, "", Usage{3 + 4, 0, 7}},
		// Completions.
		{`{"prompt":"abcdefgh","max_tokens":16}`, 0, "", Usage{2, 16, 18}},
	} {
		model, u, err := Estimator{DefaultMaxTokens: tc.def}.Estimate([]byte(tc.body))
		if err != nil {
			t.Errorf("case %d: %v", i, err)
			continue
		}
		if model != tc.model || u != tc.want {
			t.Errorf("case %d: got %q %+v, want %q %+v", i, model, u, tc.model, tc.want)
		}
	}
	model, est, err := EstimateRequest([]byte(`{"model":"m","messages":[{"role":"user","content":"Hello there!"}]}`))
	if err != nil || model != "m" || est != 7+DefaultMaxTokens {
		t.Errorf("EstimateRequest = %q, %d, %v", model, est, err)
	}
}

func TestEstimateErrors(t *testing.T) {
	for i, tc := range []struct{ body, want string }{
		{`{}`, "messages: required"},
		{`{"model":5,"messages":[]}`, "model: must be a string"},
		{`{"messages":{}}`, "messages: must be an array"},
		{`{"messages":[]}`, "messages: must not be empty"},
		{`{"messages":[{"role":"user","content":"a"},{"role":"user","content":"b"},{"role":"user","content":7}]}`,
			"messages[2].content: must be a string or an array of content parts"},
		{`{"messages":["hi"]}`, "messages[0]: must be an object"},
		{`{"messages":[{"content":[{"type":"text","text":5}]}]}`, "messages[0].content[0].text: must be a string"},
		{`{"messages":[{"content":["x"]}]}`, "messages[0].content[0]: must be an object"},
		{`{"messages":[{"content":"a","content":"b"}]}`, "messages[0].content: repeated key"},
		{`{"messages":[{"content":"a"}],"max_tokens":-1}`, "max_tokens: must be a non-negative integer"},
		{`{"messages":[{"content":"a"}],"max_completion_tokens":1.5}`, "max_completion_tokens: must be a non-negative integer"},
		{`{"messages":[{"content":"a"}],"n":0}`, "n: must be a positive integer"},
		{`{"input":null}`, "input: must not be null"},
		{`{"input":5}`, "input: must be a string or an array"},
		{`{"input":[true]}`, "input[0]: must be a string, a token id"},
		{`{"input":[[1,"a"]]}`, "input[0]: must be an array of token ids"},
		{`{"prompt":{}}`, "prompt: must be a string or an array"},
		{`{"messages":[{"content":"a"}]`, "body: unexpected end of JSON"},
	} {
		_, _, err := EstimateRequest([]byte(tc.body))
		if err == nil || !strings.HasPrefix(err.Error(), tc.want) {
			t.Errorf("case %d: error %v, want it to start with %q", i, err, tc.want)
		}
	}
}

func FuzzEstimateRequest(f *testing.F) {
	for _, s := range []string{
		`{"model":"m","messages":[{"role":"user","content":"Hello"}],"max_tokens":100}`,
		`{"messages":[{"role":"user","content":[{"type":"text","text":"a"}]}],"n":3,"tools":[]}`,
		`{"input":["a",[1,2],3,{"t":"x"}]}`, `{"prompt":"abc","max_completion_tokens":9}`,
		`{"messages":[{"content":null,"tool_calls":[{"function":{"arguments":"{}"}}]}]}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		model, u, err := Estimator{}.Estimate(body)
		if err != nil {
			if err.Error() == "" || model != "" || u != (Usage{}) {
				t.Fatalf("error %q with model %q, usage %+v", err, model, u)
			}
			return
		}
		if !json.Valid(body) {
			t.Fatalf("estimated an invalid body: %s", body)
		}
		if u.Prompt < 0 || u.Completion < 0 || u.Total != min(u.Prompt+u.Completion, MaxTokenLimit) || u.Total > MaxTokenLimit {
			t.Fatalf("inconsistent estimate %+v", u)
		}
	})
}

func BenchmarkEstimateRequest(b *testing.B) {
	body := []byte(`{"model":"Qwen3-0.6B-GGUF","stream":true,"max_tokens":256,"messages":[{"role":"system","content":"You are a helpful coding assistant."},{"role":"user","content":"Write a function that reverses a string in Go, with tests."}]}`)
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := EstimateRequest(body); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkInjectIncludeUsage(b *testing.B) {
	body := []byte(`{"model":"Qwen3-0.6B-GGUF","stream":true,"max_tokens":256,"messages":[{"role":"system","content":"You are a helpful coding assistant."},{"role":"user","content":"Write a function that reverses a string in Go, with tests."}]}`)
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := InjectIncludeUsage(body); err != nil {
			b.Fatal(err)
		}
	}
}
