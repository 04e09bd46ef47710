package gateway

import (
	"bytes"
	"strings"
	"testing"
)

// llamaStream is a streamed chat completion as llama-server sends it with
// stream_options.include_usage: a role chunk, content chunks, keep-alive
// comments, a finish chunk, the usage chunk with "choices": [] and [DONE].
const llamaStream = `data: {"choices":[{"finish_reason":null,"index":0,"delta":{"role":"assistant","content":null}}],"created":1760000000,"id":"chatcmpl-1","model":"Qwen3-0.6B-GGUF","system_fingerprint":"b6500","object":"chat.completion.chunk"}

: ping

data: {"choices":[{"finish_reason":null,"index":0,"delta":{"content":"Hello"}}],"created":1760000000,"id":"chatcmpl-1","model":"Qwen3-0.6B-GGUF","object":"chat.completion.chunk"}

data: {"choices":[{"finish_reason":null,"index":0,"delta":{"content":" wörld \"quoted\"\n"}}],"created":1760000000,"id":"chatcmpl-1","model":"Qwen3-0.6B-GGUF","object":"chat.completion.chunk"}

data: {"choices":[{"finish_reason":"stop","index":0,"delta":{}}],"created":1760000000,"id":"chatcmpl-1","model":"Qwen3-0.6B-GGUF","object":"chat.completion.chunk"}

data: {"choices":[],"created":1760000000,"id":"chatcmpl-1","model":"Qwen3-0.6B-GGUF","object":"chat.completion.chunk","usage":{"completion_tokens":5,"prompt_tokens":17,"total_tokens":22,"prompt_tokens_details":{"cached_tokens":0}},"timings":{"prompt_n":17,"prompt_ms":12.5,"predicted_n":5,"predicted_ms":40.1}}

data: [DONE]

`

// noUsageStream is a stream whose upstream reports no usage; "usage": null
// appears in every chunk as OpenAI sends it.
const noUsageStream = "data: {\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"}}],\"usage\":null}\n\n" +
	": ping\n\n" +
	"data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"abcdefgh\"}}],\"usage\":null}\n\n" +
	"data: {\"choices\":[{\"index\":0,\"delta\":{\"reasoning_content\":\"thinking\"}}],\"usage\":null}\n\n" +
	"data: {\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\"{\\\"x\\\":1}\"}}]}}],\"usage\":null}\n\n" +
	"data: [DONE]\n\n"

type sseWant struct {
	usage    Usage
	reported bool
	done     bool
	events   int
}

func sseCases() []struct {
	name   string
	stream string
	max    int
	want   sseWant
} {
	return []struct {
		name   string
		stream string
		max    int
		want   sseWant
	}{
		{"llama-server LF", llamaStream, 0, sseWant{Usage{17, 5, 22}, true, true, 6}},
		{"llama-server CRLF", strings.ReplaceAll(llamaStream, "\n", "\r\n"), 0, sseWant{Usage{17, 5, 22}, true, true, 6}},
		{"llama-server CR", strings.ReplaceAll(llamaStream, "\n", "\r"), 0, sseWant{Usage{17, 5, 22}, true, true, 6}},
		// 8 + 8 + 7 ({"x":1}) + 0 characters: 23, so 6 tokens, plus the
		// prompt estimate of 40.
		{"no usage", noUsageStream, 0, sseWant{Usage{40, 6, 46}, false, true, 5}},
		{"usage on the finish chunk, no space after colon, other fields",
			"event: message\nid: 7\nretry: 1000\ndata:{\"choices\":[{\"index\":0,\"delta\":{\"content\":\"hi\"},\"finish_reason\":\"stop\"}],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":1,\"total_tokens\":4}}\n\ndata:[DONE]\n\n",
			0, sseWant{Usage{3, 1, 4}, true, true, 2}},
		{"event split over data lines",
			"data: {\"choices\":[],\ndata: \"usage\":{\"prompt_tokens\":9,\n" +
				"data:  \"completion_tokens\":2}}\n\n",
			0, sseWant{Usage{9, 2, 11}, true, false, 1}},
		{"total below prompt plus completion, later usage wins",
			"data: {\"usage\":{\"prompt_tokens\":1,\"completion_tokens\":1,\"total_tokens\":2}}\n\n" +
				"data: {\"usage\":{\"prompt_tokens\":10,\"completion_tokens\":5,\"total_tokens\":3}}\n\n",
			0, sseWant{Usage{10, 5, 15}, true, false, 2}},
		{"invalid JSON and bare data ignored",
			"data: {\"choices\":[{\"delta\":{\"content\":\"abcd\"}}]\n\ndata\n\ndata: {\"choices\":[{\"delta\":{\"content\":\"abcd\"}}]}\n\n",
			0, sseWant{Usage{40, 1, 41}, false, false, 3}},
		{"line over the cap skipped",
			"data: {\"choices\":[{\"delta\":{\"content\":\"" + strings.Repeat("x", 200) + "\"}}]}\n\n" +
				": " + strings.Repeat("p", 500) + "\n\n" +
				"data: {\"choices\":[],\"usage\":{\"prompt_tokens\":2,\"completion_tokens\":2,\"total_tokens\":4}}\n\n",
			128, sseWant{Usage{2, 2, 4}, true, false, 1}},
		{"unterminated last event not dispatched",
			"data: {\"choices\":[{\"delta\":{\"content\":\"abcd\"}}]}\n\ndata: {\"usage\":{\"prompt_tokens\":2,\"completion_tokens\":2,\"total_tokens\":4}}\n",
			0, sseWant{Usage{40, 1, 41}, false, false, 1}},
		{"comments only", ": ping\n\n: ping\r\n\r\n", 0, sseWant{Usage{40, 0, 40}, false, false, 0}},
	}
}

func meterResult(m *SSEMeter) sseWant {
	u, rep := m.Usage()
	return sseWant{u, rep, m.Done(), m.Events()}
}

func TestSSEMeter(t *testing.T) {
	for i, tc := range sseCases() {
		whole := &SSEMeter{MaxLine: tc.max, PromptEstimate: 40}
		n, err := whole.Write([]byte(tc.stream))
		if n != len(tc.stream) || err != nil {
			t.Fatalf("case %d (%s): Write = %d, %v", i, tc.name, n, err)
		}
		if got := meterResult(whole); got != tc.want {
			t.Errorf("case %d (%s): got %+v, want %+v", i, tc.name, got, tc.want)
			continue
		}
		// Split at every position, and byte by byte.
		for cut := 0; cut <= len(tc.stream); cut++ {
			m := &SSEMeter{MaxLine: tc.max, PromptEstimate: 40}
			m.Write([]byte(tc.stream[:cut]))
			m.Write([]byte(tc.stream[cut:]))
			if got := meterResult(m); got != tc.want {
				t.Fatalf("case %d (%s): split at %d: got %+v, want %+v", i, tc.name, cut, got, tc.want)
			}
		}
		m := &SSEMeter{MaxLine: tc.max, PromptEstimate: 40}
		for j := 0; j < len(tc.stream); j++ {
			m.Write([]byte{tc.stream[j]})
		}
		if got := meterResult(m); got != tc.want {
			t.Errorf("case %d (%s): byte by byte: got %+v, want %+v", i, tc.name, got, tc.want)
		}
	}
}

func TestSSEMeterAllocs(t *testing.T) {
	chunk := []byte("data: {\"choices\":[{\"finish_reason\":null,\"index\":0,\"delta\":{\"content\":\" token\"}}],\"created\":1760000000,\"id\":\"chatcmpl-1\",\"model\":\"m\",\"object\":\"chat.completion.chunk\"}\n\n: ping\n\n")
	var m SSEMeter
	m.Write(chunk)
	allocs := testing.AllocsPerRun(200, func() {
		m.Write(chunk[:17])
		m.Write(chunk[17:])
	})
	if allocs != 0 {
		t.Fatalf("SSEMeter.Write allocates %v times per event, want 0", allocs)
	}
}

func TestSSEMeterBoundedMemory(t *testing.T) {
	m := &SSEMeter{MaxLine: 1024}
	big := bytes.Repeat([]byte("y"), 64<<10)
	m.Write([]byte("data: "))
	for range 64 { // 4 MiB on one line
		m.Write(big)
	}
	if c := cap(m.data); c > 2048 {
		t.Fatalf("buffer grew to %d bytes for a line over a 1024-byte cap", c)
	}
	m.Write([]byte("\n\ndata: {\"usage\":{\"prompt_tokens\":1,\"completion_tokens\":1}}\n\n"))
	if u, rep := m.Usage(); !rep || u.Total != 2 {
		t.Fatalf("after a skipped line: %+v, %v", u, rep)
	}
}

func FuzzSSEMeter(f *testing.F) {
	for _, tc := range sseCases() {
		f.Add([]byte(tc.stream), uint16(7), uint16(300), uint8(0))
	}
	f.Add([]byte("data: [DONE]\r\n\r\n"), uint16(13), uint16(14), uint8(16))
	f.Fuzz(func(t *testing.T, stream []byte, a, b uint16, max uint8) {
		whole := &SSEMeter{MaxLine: int(max), PromptEstimate: 3}
		whole.Write(stream)
		want := meterResult(whole)
		if want.usage.Total < want.usage.Prompt+want.usage.Completion || want.usage.Prompt < 0 || want.usage.Completion < 0 {
			t.Fatalf("inconsistent usage %+v", want.usage)
		}
		i, j := int(a)%(len(stream)+1), int(b)%(len(stream)+1)
		if i > j {
			i, j = j, i
		}
		split := &SSEMeter{MaxLine: int(max), PromptEstimate: 3}
		split.Write(stream[:i])
		split.Write(stream[i:j])
		split.Write(nil)
		split.Write(stream[j:])
		if got := meterResult(split); got != want {
			t.Fatalf("split at %d and %d: %+v, whole: %+v", i, j, got, want)
		}
	})
}

func BenchmarkSSEMeter(b *testing.B) {
	stream := []byte(llamaStream)
	b.SetBytes(int64(len(stream)))
	b.ReportAllocs()
	for b.Loop() {
		var m SSEMeter
		m.Write(stream)
	}
}
