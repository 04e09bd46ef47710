package gateway

import (
	"encoding/json"
	"math"
	"strconv"
)

// maxJSONDepth bounds the nesting a jsonScanner follows, as encoding/json
// does.
const maxJSONDepth = 1000

// jsonScanner walks JSON text in place, validating it, without allocating.
// It serves the metering of answers, where only a few fields matter and
// everything else is skipped.
type jsonScanner struct {
	b     []byte
	i     int
	depth int
}

func (s *jsonScanner) ws() {
	for s.i < len(s.b) {
		switch s.b[s.i] {
		case ' ', '\t', '\n', '\r':
			s.i++
		default:
			return
		}
	}
}

// peek returns the next byte that is not white space, or 0 at the end.
func (s *jsonScanner) peek() byte {
	s.ws()
	if s.i < len(s.b) {
		return s.b[s.i]
	}
	return 0
}

// atEnd reports whether only white space is left.
func (s *jsonScanner) atEnd() bool {
	s.ws()
	return s.i == len(s.b)
}

// enter consumes the opening byte c of an object or array.
func (s *jsonScanner) enter(c byte) bool {
	if s.peek() != c || s.depth >= maxJSONDepth {
		return false
	}
	s.i++
	s.depth++
	return true
}

// nextKey moves to the next member of an object: it consumes the ','
// before it (unless first) and the ':' after its key. more is false at the
// closing '}', which it consumes.
func (s *jsonScanner) nextKey(first bool) (key []byte, more, ok bool) {
	c := s.peek()
	if c == '}' {
		s.i++
		s.depth--
		return nil, false, true
	}
	if !first {
		if c != ',' {
			return nil, false, false
		}
		s.i++
		c = s.peek()
	}
	if c != '"' {
		return nil, false, false
	}
	raw, _, escaped, ok := s.str()
	if !ok {
		return nil, false, false
	}
	if s.peek() != ':' {
		return nil, false, false
	}
	s.i++
	if escaped {
		raw = unescapeKey(raw)
	}
	return raw, true, true
}

// nextElem moves to the next element of an array, consuming the ','
// before it (unless first). more is false at the closing ']', which it
// consumes.
func (s *jsonScanner) nextElem(first bool) (more, ok bool) {
	c := s.peek()
	if c == ']' {
		s.i++
		s.depth--
		return false, true
	}
	if !first {
		if c != ',' {
			return false, false
		}
		s.i++
		if s.peek() == ']' {
			return false, false
		}
	}
	return true, true
}

// str consumes a string and returns its raw contents (between the quotes),
// the number of characters it decodes to (each escape counting as one),
// and whether it holds escapes.
func (s *jsonScanner) str() (raw []byte, chars int64, escaped, ok bool) {
	if s.peek() != '"' {
		return nil, 0, false, false
	}
	s.i++
	start := s.i
	for s.i < len(s.b) {
		c := s.b[s.i]
		switch {
		case c == '"':
			raw = s.b[start:s.i]
			s.i++
			return raw, chars, escaped, true
		case c == '\\':
			escaped = true
			if s.i+1 >= len(s.b) {
				return nil, 0, false, false
			}
			switch s.b[s.i+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				s.i += 2
			case 'u':
				if s.i+6 > len(s.b) {
					return nil, 0, false, false
				}
				for _, h := range s.b[s.i+2 : s.i+6] {
					if !isHex(h) {
						return nil, 0, false, false
					}
				}
				s.i += 6
			default:
				return nil, 0, false, false
			}
			chars++
		case c < 0x20:
			return nil, 0, false, false
		default:
			if c&0xC0 != 0x80 { // not a UTF-8 continuation byte
				chars++
			}
			s.i++
		}
	}
	return nil, 0, false, false
}

func isHex(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

// number consumes a number and returns its text.
func (s *jsonScanner) number() ([]byte, bool) {
	s.ws()
	start := s.i
	if s.i < len(s.b) && s.b[s.i] == '-' {
		s.i++
	}
	switch {
	case s.i < len(s.b) && s.b[s.i] == '0':
		s.i++
	case s.i < len(s.b) && s.b[s.i] >= '1' && s.b[s.i] <= '9':
		for s.i < len(s.b) && isDigit(s.b[s.i]) {
			s.i++
		}
	default:
		return nil, false
	}
	if s.i < len(s.b) && s.b[s.i] == '.' {
		s.i++
		if s.i >= len(s.b) || !isDigit(s.b[s.i]) {
			return nil, false
		}
		for s.i < len(s.b) && isDigit(s.b[s.i]) {
			s.i++
		}
	}
	if s.i < len(s.b) && (s.b[s.i] == 'e' || s.b[s.i] == 'E') {
		s.i++
		if s.i < len(s.b) && (s.b[s.i] == '+' || s.b[s.i] == '-') {
			s.i++
		}
		if s.i >= len(s.b) || !isDigit(s.b[s.i]) {
			return nil, false
		}
		for s.i < len(s.b) && isDigit(s.b[s.i]) {
			s.i++
		}
	}
	return s.b[start:s.i], true
}

// literal consumes lit (true, false or null).
func (s *jsonScanner) literal(lit string) bool {
	s.ws()
	if len(s.b)-s.i < len(lit) || string(s.b[s.i:s.i+len(lit)]) != lit {
		return false
	}
	s.i += len(lit)
	return true
}

// value consumes any value. When count is not nil it adds the characters
// of every string value in it, except values of members named "role".
func (s *jsonScanner) value(count *int64) bool {
	switch c := s.peek(); {
	case c == '{':
		if !s.enter('{') {
			return false
		}
		for first := true; ; first = false {
			key, more, ok := s.nextKey(first)
			if !ok {
				return false
			}
			if !more {
				return true
			}
			sub := count
			if string(key) == "role" {
				sub = nil
			}
			if !s.value(sub) {
				return false
			}
		}
	case c == '[':
		if !s.enter('[') {
			return false
		}
		for first := true; ; first = false {
			more, ok := s.nextElem(first)
			if !ok {
				return false
			}
			if !more {
				return true
			}
			if !s.value(count) {
				return false
			}
		}
	case c == '"':
		_, n, _, ok := s.str()
		if ok && count != nil {
			*count += n
		}
		return ok
	case c == 't':
		return s.literal("true")
	case c == 'f':
		return s.literal("false")
	case c == 'n':
		return s.literal("null")
	default:
		_, ok := s.number()
		return ok
	}
}

// integer consumes a number and returns it as a non-negative count:
// fractions are truncated, negative and non-finite values give 0, and
// values are capped at MaxTokenLimit.
func (s *jsonScanner) integer() (int64, bool) {
	raw, ok := s.number()
	if !ok {
		return 0, false
	}
	var n int64
	for i, c := range raw {
		if !isDigit(c) {
			if i == 0 && c == '-' {
				return 0, true
			}
			// A fraction or exponent: rare, so parse it the slow way.
			f, err := strconv.ParseFloat(string(raw), 64)
			if err != nil && !math.IsInf(f, 0) || f < 0 || math.IsNaN(f) {
				return 0, true
			}
			return int64(min(f, MaxTokenLimit)), true
		}
		if n < MaxTokenLimit {
			n = n*10 + int64(c-'0')
		}
	}
	return min(n, MaxTokenLimit), true
}

// unescapeKey decodes an object key that holds escapes.
func unescapeKey(raw []byte) []byte {
	quoted := make([]byte, 0, len(raw)+2)
	quoted = append(quoted, '"')
	quoted = append(quoted, raw...)
	quoted = append(quoted, '"')
	var k string
	if err := json.Unmarshal(quoted, &k); err != nil {
		return raw
	}
	return []byte(k)
}
