// Package jsonc reads JSON with comments and trailing commas (JSONC), the
// format of VS Code settings and Kilo Code configuration files.
package jsonc

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"
)

// SyntaxError is an error in JSONC input, located by line and column
// (both 1-based; the column counts characters, not bytes).
type SyntaxError struct {
	Offset int64 // byte offset of the problem in the input
	Line   int
	Column int
	Msg    string
}

// Error returns "line L, column C: msg".
func (e *SyntaxError) Error() string {
	return fmt.Sprintf("line %d, column %d: %s", e.Line, e.Column, e.Msg)
}

var bom = []byte{0xEF, 0xBB, 0xBF}

// Standardize returns plain JSON for JSONC input: // and /* */ comments
// are removed (outside strings) and trailing commas before } or ] are
// removed. Removed bytes are replaced by spaces and newlines are kept, so
// every byte offset of the output points at the same line and column as in
// the input. A leading UTF-8 byte order mark is blanked too. The input is not
// modified. The only error is an unterminated block comment; other syntax
// errors are left for the JSON decoder to report.
func Standardize(b []byte) ([]byte, error) {
	out := bytes.Clone(b)
	if out == nil {
		out = []byte{}
	}
	i := 0
	if bytes.HasPrefix(out, bom) {
		out[0], out[1], out[2] = ' ', ' ', ' '
		i = len(bom)
	}
	// last and prev are the offsets of the last two significant bytes
	// (outside strings and comments); -1 when there are none.
	last, prev := -1, -1
	mark := func(at int) { prev, last = last, at }
	for i < len(out) {
		c := out[i]
		switch {
		case c == '"':
			j := i + 1
			for j < len(out) && out[j] != '"' {
				if out[j] == '\\' {
					j++
				}
				j++
			}
			if j >= len(out) {
				// unterminated string: let the JSON decoder report it
				return out, nil
			}
			mark(j)
			i = j + 1
		case c == '/' && i+1 < len(out) && out[i+1] == '/':
			for i < len(out) && out[i] != '\n' {
				if out[i] != '\r' {
					out[i] = ' '
				}
				i++
			}
		case c == '/' && i+1 < len(out) && out[i+1] == '*':
			end := bytes.Index(out[i+2:], []byte("*/"))
			if end < 0 {
				return nil, newSyntaxError(b, int64(i), "unterminated /* comment")
			}
			end += i + 2 + 2
			for ; i < end; i++ {
				if out[i] != '\n' && out[i] != '\r' {
					out[i] = ' '
				}
			}
		case c == '}' || c == ']':
			// a comma that follows a value and precedes a closing bracket is
			// a trailing comma; one after '[', '{', ':' or ',' stays, so the
			// decoder still rejects it
			if last >= 0 && out[last] == ',' && prev >= 0 && !isOpenOrSep(out[prev]) {
				out[last] = ' '
			}
			mark(i)
			i++
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
			i++
		default:
			mark(i)
			i++
		}
	}
	return out, nil
}

func isOpenOrSep(c byte) bool {
	return c == '[' || c == '{' || c == ',' || c == ':'
}

// Unmarshal standardizes b and decodes it into v with encoding/json.
// Duplicate object keys are allowed; the last one wins. Errors are
// *SyntaxError values that say the line and column.
func Unmarshal(b []byte, v any) error {
	std, err := Standardize(b)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(std, v); err != nil {
		return locate(b, err)
	}
	return nil
}

// ValidateObject checks that b is exactly one JSON object once comments and
// trailing commas are removed. The error says line and column.
func ValidateObject(b []byte) error {
	var v any
	if err := Unmarshal(b, &v); err != nil {
		return err
	}
	if _, ok := v.(map[string]any); ok {
		return nil
	}
	std, _ := Standardize(b) // cannot fail: Unmarshal succeeded
	start := bytes.IndexFunc(std, func(r rune) bool { return !strings.ContainsRune(" \t\r\n", r) })
	return newSyntaxError(b, int64(max(start, 0)), "expected a JSON object, found "+kind(v))
}

func kind(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case bool:
		return "a boolean"
	case float64:
		return "a number"
	case string:
		return "a string"
	case []any:
		return "an array"
	default:
		return fmt.Sprintf("%T", v)
	}
}

// locate turns an encoding/json error into a *SyntaxError positioned in src.
func locate(src []byte, err error) error {
	var se *json.SyntaxError
	if errors.As(err, &se) {
		off := se.Offset
		if off < int64(len(src)) || !strings.Contains(se.Error(), "unexpected end") {
			off = errorOffset(off, len(src))
		}
		return newSyntaxError(src, off, trimJSONPrefix(se.Error()))
	}
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		return newSyntaxError(src, errorOffset(te.Offset, len(src)), trimJSONPrefix(te.Error()))
	}
	return err
}

// errorOffset converts encoding/json's "after reading n bytes" offset into
// the offset of the offending byte.
func errorOffset(n int64, size int) int64 {
	if n > 0 {
		n--
	}
	return min(n, int64(size))
}

func trimJSONPrefix(s string) string {
	return strings.TrimPrefix(s, "json: ")
}

func newSyntaxError(src []byte, off int64, msg string) *SyntaxError {
	line, col := Position(src, off)
	return &SyntaxError{Offset: off, Line: line, Column: col, Msg: msg}
}

// Position returns the 1-based line and column (in characters) of byte
// offset off in src. Offsets past the end point just after the last byte.
func Position(src []byte, off int64) (line, column int) {
	off = max(0, min(off, int64(len(src))))
	before := src[:off]
	line = 1 + bytes.Count(before, []byte{'\n'})
	lineStart := bytes.LastIndexByte(before, '\n') + 1
	column = 1 + utf8.RuneCount(before[lineStart:])
	return line, column
}
