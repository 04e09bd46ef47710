package gateway

// Usage is the token usage of one request.
type Usage struct {
	Prompt     int64 `json:"prompt_tokens"`
	Completion int64 `json:"completion_tokens"`
	Total      int64 `json:"total_tokens"`
}

// normalized returns u with no negative figure and a total of at least
// prompt plus completion.
func (u Usage) normalized() Usage {
	u.Prompt = max(u.Prompt, 0)
	u.Completion = max(u.Completion, 0)
	u.Total = max(u.Total, u.Prompt+u.Completion)
	return u
}

// charsToTokens converts a number of characters to an estimated number of
// tokens: four characters a token, rounded up.
func charsToTokens(chars int64) int64 {
	return (chars + 3) / 4
}

// ParseUsage reads the "usage" object of a JSON answer (chat completion,
// completion or embeddings) and reports whether the upstream gave one.
// Without one it returns an estimate of the completion from the characters
// of the generated choices (choices[].message, choices[].text) and false.
// A body that is not a JSON object gives a zero Usage and false.
func ParseUsage(jsonBody []byte) (Usage, bool) {
	var sc completionScan
	if !sc.scan(jsonBody) {
		return Usage{}, false
	}
	return sc.result(0)
}

// completionScan collects the usage and the generated characters of one
// chat completion, completion chunk or embeddings answer.
type completionScan struct {
	usage    Usage
	hasUsage bool
	chars    int64
}

// result returns the reported usage, or an estimate with prompt as the
// prompt tokens.
func (sc *completionScan) result(prompt int64) (Usage, bool) {
	if sc.hasUsage {
		return sc.usage.normalized(), true
	}
	c := charsToTokens(sc.chars)
	return Usage{Prompt: prompt, Completion: c, Total: prompt + c}.normalized(), false
}

// scan reads b, a JSON object, into sc; on invalid JSON it returns false
// and leaves sc unchanged.
func (sc *completionScan) scan(b []byte) bool {
	s := jsonScanner{b: b}
	out := completionScan{}
	if !s.enter('{') {
		return false
	}
	for first := true; ; first = false {
		key, more, ok := s.nextKey(first)
		if !ok {
			return false
		}
		if !more {
			break
		}
		switch string(key) {
		case "usage":
			if s.peek() == '{' {
				u, ok := scanUsage(&s)
				if !ok {
					return false
				}
				out.usage, out.hasUsage = u, true
			} else if !s.value(nil) {
				return false
			}
		case "choices":
			if s.peek() == '[' {
				if !scanChoices(&s, &out.chars) {
					return false
				}
			} else if !s.value(nil) {
				return false
			}
		default:
			if !s.value(nil) {
				return false
			}
		}
	}
	if !s.atEnd() {
		return false
	}
	sc.usage, sc.hasUsage, sc.chars = out.usage, out.hasUsage, out.chars
	return true
}

// scanUsage reads a usage object.
func scanUsage(s *jsonScanner) (Usage, bool) {
	var u Usage
	s.enter('{')
	for first := true; ; first = false {
		key, more, ok := s.nextKey(first)
		if !ok {
			return u, false
		}
		if !more {
			return u, true
		}
		var dst *int64
		switch string(key) {
		case "prompt_tokens":
			dst = &u.Prompt
		case "completion_tokens":
			dst = &u.Completion
		case "total_tokens":
			dst = &u.Total
		}
		if c := s.peek(); dst != nil && (c == '-' || isDigit(c)) {
			n, ok := s.integer()
			if !ok {
				return u, false
			}
			*dst = n
		} else if !s.value(nil) {
			return u, false
		}
	}
}

// scanChoices reads a choices array, adding the characters generated in
// each choice's delta, message or text to chars.
func scanChoices(s *jsonScanner, chars *int64) bool {
	s.enter('[')
	for first := true; ; first = false {
		more, ok := s.nextElem(first)
		if !ok {
			return false
		}
		if !more {
			return true
		}
		if s.peek() != '{' {
			if !s.value(nil) {
				return false
			}
			continue
		}
		s.enter('{')
		for first := true; ; first = false {
			key, more, ok := s.nextKey(first)
			if !ok {
				return false
			}
			if !more {
				break
			}
			var count *int64
			switch string(key) {
			case "delta", "message", "text":
				count = chars
			}
			if !s.value(count) {
				return false
			}
		}
	}
}
