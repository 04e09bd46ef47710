package gateway

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
)

// DefaultMaxTokens is the completion size assumed for a chat completion or
// completion request that sets no max_tokens or max_completion_tokens.
const DefaultMaxTokens = 512

// messageOverhead is the tokens counted for each chat message on top of its
// text: the role and the chat template around it.
const messageOverhead = 4

// member is one member of a JSON object: its decoded key and the offsets of
// its raw value in the object's text.
type member struct {
	key        string
	start, end int
}

// jsonObject is a parsed JSON object whose members point into its text.
type jsonObject struct {
	text    []byte
	members []member
}

// parseObject parses text as a JSON object with unique keys. Keys are
// compared exactly, as the upstream does; a repeated key is an error, since
// two parsers may disagree on which one counts.
func parseObject(text []byte, field string) (*jsonObject, error) {
	s := jsonScanner{b: text}
	if s.peek() != '{' {
		whole := jsonScanner{b: text}
		if whole.value(nil) && whole.atEnd() {
			return nil, fmt.Errorf("%s: must be a JSON object", field)
		}
		return nil, whole.syntaxError(field)
	}
	s.enter('{')
	obj := &jsonObject{text: text}
	var seen map[string]bool
	for first := true; ; first = false {
		key, more, ok := s.nextKey(first)
		if !ok {
			return nil, s.syntaxError(field)
		}
		if !more {
			break
		}
		name := string(key)
		s.ws()
		start := s.i
		if !s.value(nil) {
			return nil, s.syntaxError(joinField(field, name))
		}
		if seen == nil && len(obj.members) >= 8 {
			seen = make(map[string]bool, 2*len(obj.members))
			for _, m := range obj.members {
				seen[m.key] = true
			}
		}
		if seen != nil && seen[name] || seen == nil && obj.member(name) != nil {
			return nil, fmt.Errorf("%s: repeated key", joinField(field, name))
		}
		if seen != nil {
			seen[name] = true
		}
		obj.members = append(obj.members, member{key: name, start: start, end: s.i})
	}
	if !s.atEnd() {
		return nil, fmt.Errorf("%s: unexpected data after the JSON object", field)
	}
	return obj, nil
}

// syntaxError describes where the scanner stopped on invalid JSON.
func (s *jsonScanner) syntaxError(field string) error {
	if s.i >= len(s.b) {
		return fmt.Errorf("%s: unexpected end of JSON", field)
	}
	return fmt.Errorf("%s: invalid JSON at offset %d", field, s.i)
}

// eachElem calls fn with each element of raw, a valid JSON array.
func eachElem(raw []byte, fn func(i int, elem []byte) error) error {
	s := jsonScanner{b: raw}
	s.enter('[')
	for i := 0; ; i++ {
		more, ok := s.nextElem(i == 0)
		if !ok || !more {
			return nil
		}
		s.ws()
		start := s.i
		s.value(nil)
		if err := fn(i, raw[start:s.i]); err != nil {
			return err
		}
	}
}

// stringValue returns the characters of raw, a valid JSON string, and
// whether raw is one.
func stringValue(raw []byte) (int64, bool) {
	if len(raw) == 0 || raw[0] != '"' {
		return 0, false
	}
	s := jsonScanner{b: raw}
	_, n, _, ok := s.str()
	return n, ok
}

// get returns the raw value of key, or nil.
func (o *jsonObject) get(key string) []byte {
	if m := o.member(key); m != nil {
		return o.text[m.start:m.end]
	}
	return nil
}

func (o *jsonObject) member(key string) *member {
	for i := range o.members {
		if o.members[i].key == key {
			return &o.members[i]
		}
	}
	return nil
}

// joinField names member key of field.
func joinField(field, key string) string {
	if field == "" || field == "body" {
		return key
	}
	return field + "." + key
}

// isNull reports whether raw is absent or JSON null.
func isNull(raw []byte) bool { return raw == nil || string(raw) == "null" }

// splice returns b with b[start:end] replaced by insert, in a new slice.
func splice(b []byte, start, end int, insert string) []byte {
	out := make([]byte, 0, len(b)-(end-start)+len(insert))
	out = append(out, b[:start]...)
	out = append(out, insert...)
	return append(out, b[end:]...)
}

// InjectIncludeUsage makes a streamed chat completion request ask for the
// usage chunk: when body has "stream": true it sets
// "stream_options.include_usage" to true, adding it where absent and
// keeping the other stream_options. All other bytes of body are kept as
// they are. It returns body itself when nothing needs changing, and whether
// the request streams. An error names the offending field.
func InjectIncludeUsage(body []byte) (out []byte, stream bool, err error) {
	obj, err := parseObject(body, "body")
	if err != nil {
		return nil, false, err
	}
	switch raw := obj.get("stream"); string(raw) {
	case "true":
	case "", "false", "null":
		return body, false, nil
	default:
		return nil, false, errors.New("stream: must be a boolean")
	}
	so := obj.member("stream_options")
	if so == nil {
		last := obj.members[len(obj.members)-1] // "stream" at least
		return splice(body, last.end, last.end, `,"stream_options":{"include_usage":true}`), true, nil
	}
	raw := body[so.start:so.end]
	if isNull(raw) {
		return splice(body, so.start, so.end, `{"include_usage":true}`), true, nil
	}
	if raw[0] != '{' {
		return nil, false, errors.New("stream_options: must be an object")
	}
	opts, err := parseObject(raw, "stream_options")
	if err != nil {
		return nil, false, err
	}
	iu := opts.member("include_usage")
	switch {
	case iu == nil && len(opts.members) == 0:
		return splice(body, so.start, so.end, `{"include_usage":true}`), true, nil
	case iu == nil:
		last := opts.members[len(opts.members)-1]
		at := so.start + last.end
		return splice(body, at, at, `,"include_usage":true`), true, nil
	}
	switch string(raw[iu.start:iu.end]) {
	case "true":
		return body, true, nil
	case "false", "null":
		return splice(body, so.start+iu.start, so.start+iu.end, "true"), true, nil
	default:
		return nil, false, errors.New("stream_options.include_usage: must be a boolean")
	}
}

// Estimator sizes requests before they are sent upstream.
type Estimator struct {
	// DefaultMaxTokens is the completion size assumed for a chat
	// completion or completion request that sets none; 0 means
	// DefaultMaxTokens. Embeddings requests generate nothing.
	DefaultMaxTokens int64
}

// EstimateRequest returns the model and the estimated total tokens of a
// chat completion, completion or embeddings request body, with the
// package's DefaultMaxTokens. See Estimator.Estimate.
func EstimateRequest(body []byte) (model string, estimate int64, err error) {
	model, u, err := Estimator{}.Estimate(body)
	return model, u.Total, err
}

// Estimate returns the model and the estimated usage of a request body:
// the prompt (a token per four characters of messages, tools, input or
// prompt, plus a few tokens per chat message) and the completion
// (max_completion_tokens, else max_tokens, else the default, times n). An
// error names the offending field, e.g. "messages[2].content: ...".
func (e Estimator) Estimate(body []byte) (model string, u Usage, err error) {
	obj, err := parseObject(body, "body")
	if err != nil {
		return "", Usage{}, err
	}
	if raw := obj.get("model"); !isNull(raw) {
		if raw[0] != '"' {
			return "", Usage{}, errors.New("model: must be a string")
		}
		if bytes.IndexByte(raw, '\\') < 0 {
			model = string(raw[1 : len(raw)-1])
		} else if err := json.Unmarshal(raw, &model); err != nil {
			return "", Usage{}, fmt.Errorf("model: %w", err)
		}
	}

	var chars, tokens int64
	generates := true
	switch {
	case obj.get("messages") != nil:
		c, n, err := messageChars(obj.get("messages"))
		if err != nil {
			return "", Usage{}, err
		}
		chars += c
		tokens += n * messageOverhead
		for _, k := range []string{"tools", "functions"} {
			if raw := obj.get(k); !isNull(raw) {
				chars += int64(len(raw))
			}
		}
	case obj.get("input") != nil:
		c, n, err := inputSize(obj.get("input"), "input")
		if err != nil {
			return "", Usage{}, err
		}
		chars, tokens = c, n
		generates = false
	case obj.get("prompt") != nil:
		c, n, err := inputSize(obj.get("prompt"), "prompt")
		if err != nil {
			return "", Usage{}, err
		}
		chars, tokens = c, n
	default:
		return "", Usage{}, errors.New("messages: required (or input for embeddings, prompt for completions)")
	}

	var completion int64
	if generates {
		completion = e.DefaultMaxTokens
		if completion <= 0 {
			completion = DefaultMaxTokens
		}
		for _, k := range []string{"max_tokens", "max_completion_tokens"} { // the latter wins
			if raw := obj.get(k); !isNull(raw) {
				n, err := parseCount(raw)
				if err != nil {
					return "", Usage{}, fmt.Errorf("%s: %w", k, err)
				}
				completion = n
			}
		}
		if raw := obj.get("n"); !isNull(raw) {
			n, err := parseCount(raw)
			if err != nil || n < 1 {
				return "", Usage{}, errors.New("n: must be a positive integer")
			}
			completion = min(completion*n, MaxTokenLimit)
		}
	}
	prompt := min(charsToTokens(chars)+tokens, MaxTokenLimit)
	return model, Usage{Prompt: prompt, Completion: completion, Total: min(prompt+completion, MaxTokenLimit)}, nil
}

// parseCount parses a non-negative integer.
func parseCount(raw []byte) (int64, error) {
	n, err := strconv.ParseInt(string(raw), 10, 64)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("must be a non-negative integer, got %s", truncate(raw, 32))
	}
	return min(n, MaxTokenLimit), nil
}

// truncate returns raw as a string of at most n bytes, for messages.
func truncate(raw []byte, n int) string {
	if len(raw) > n {
		return string(raw[:n]) + "..."
	}
	return string(raw)
}

// messageChars returns the characters of the text in chat messages and the
// number of messages.
func messageChars(raw []byte) (chars, count int64, err error) {
	if raw[0] != '[' {
		return 0, 0, errors.New("messages: must be an array of messages")
	}
	err = eachElem(raw, func(i int, m []byte) error {
		count++
		field := "messages[" + strconv.Itoa(i) + "]"
		if m[0] != '{' {
			return fmt.Errorf("%s: must be an object", field)
		}
		obj, err := parseObject(m, field)
		if err != nil {
			return err
		}
		for _, mem := range obj.members {
			val := m[mem.start:mem.end]
			switch mem.key {
			case "role":
			case "content":
				c, err := contentChars(val, field+".content")
				if err != nil {
					return err
				}
				chars += c
			default: // name, tool_calls, reasoning_content, tool_call_id...
				chars += stringChars(val)
			}
		}
		return nil
	})
	if err == nil && count == 0 {
		err = errors.New("messages: must not be empty")
	}
	return chars, count, err
}

// contentChars returns the characters of a message's content: a string,
// null or an array of content parts, whose "text" members count.
func contentChars(raw []byte, field string) (int64, error) {
	if isNull(raw) {
		return 0, nil
	}
	if n, ok := stringValue(raw); ok {
		return n, nil
	}
	if raw[0] != '[' {
		return 0, fmt.Errorf("%s: must be a string or an array of content parts", field)
	}
	var chars int64
	err := eachElem(raw, func(j int, p []byte) error {
		pf := field + "[" + strconv.Itoa(j) + "]"
		if p[0] != '{' {
			return fmt.Errorf("%s: must be an object", pf)
		}
		obj, err := parseObject(p, pf)
		if err != nil {
			return err
		}
		if t := obj.get("text"); t != nil {
			n, ok := stringValue(t)
			if !ok {
				return fmt.Errorf("%s.text: must be a string", pf)
			}
			chars += n
		}
		return nil
	})
	return chars, err
}

// stringChars returns the characters of every string in raw, valid JSON.
func stringChars(raw []byte) int64 {
	var n int64
	s := jsonScanner{b: raw}
	s.value(&n)
	return n
}

// inputSize returns the size of an embeddings input or a completion prompt:
// a string, a token array, or an array of strings, token arrays or
// multimodal objects. Strings give characters, token ids give tokens.
func inputSize(raw []byte, field string) (chars, tokens int64, err error) {
	if isNull(raw) {
		return 0, 0, fmt.Errorf("%s: must not be null", field)
	}
	if n, ok := stringValue(raw); ok {
		return n, 0, nil
	}
	if raw[0] != '[' {
		return 0, 0, fmt.Errorf("%s: must be a string or an array", field)
	}
	err = eachElem(raw, func(i int, it []byte) error {
		switch c := it[0]; {
		case c == '"':
			n, _ := stringValue(it)
			chars += n
		case c == '-' || isDigit(c):
			tokens++
		case c == '[':
			return eachElem(it, func(_ int, id []byte) error {
				if id[0] != '-' && !isDigit(id[0]) {
					return fmt.Errorf("%s[%d]: must be an array of token ids", field, i)
				}
				tokens++
				return nil
			})
		case c == '{':
			chars += stringChars(it)
		default:
			return fmt.Errorf("%s[%d]: must be a string, a token id, an array of token ids or an object", field, i)
		}
		return nil
	})
	return chars, tokens, err
}
