package llm

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
)

// marshalCanonical encodes v as deterministic JSON: object keys sorted,
// two-space indent, no HTML escaping, a final newline. Numbers read with
// UseNumber keep their original spelling.
func marshalCanonical(v any) ([]byte, error) {
	raw, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var generic any
	if err := dec.Decode(&generic); err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(generic); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// decodeObject decodes a JSON document whose top level must be an object.
// Empty input is an empty object. Errors carry name:line:column. Duplicate
// keys keep the last value.
func decodeObject(name string, data []byte) (map[string]any, error) {
	if len(bytes.TrimSpace(data)) == 0 {
		return map[string]any{}, nil
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, jsonError(name, data, dec.InputOffset(), err)
	}
	end := dec.InputOffset()
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		rest := data[end:]
		end += int64(len(rest) - len(bytes.TrimLeft(rest, " \t\r\n")))
		line, col := lineCol(data, end)
		return nil, fmt.Errorf("%s:%d:%d: unexpected data after the top-level value", name, line, col)
	}
	m, ok := v.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("%s:1:1: the top level must be a JSON object", name)
	}
	return m, nil
}

func jsonError(name string, data []byte, offset int64, err error) error {
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &syn):
		offset = syn.Offset
	case errors.As(err, &typ):
		offset = typ.Offset
	case errors.Is(err, io.ErrUnexpectedEOF):
		offset = int64(len(data))
		err = errors.New("unexpected end of input")
	}
	line, col := lineCol(data, offset)
	return fmt.Errorf("%s:%d:%d: %w", name, line, col, err)
}

// lineCol turns a byte offset into a 1-based line and column.
func lineCol(data []byte, offset int64) (int, int) {
	if offset > int64(len(data)) {
		offset = int64(len(data))
	}
	if offset < 0 {
		offset = 0
	}
	before := data[:offset]
	line := bytes.Count(before, []byte("\n")) + 1
	col := int(offset) - bytes.LastIndexByte(before, '\n')
	return line, col
}

// deepMerge merges src into dst: objects merge key by key, every other
// value (arrays included) replaces. dst is modified and returned.
func deepMerge(dst, src map[string]any) map[string]any {
	if dst == nil {
		dst = map[string]any{}
	}
	for k, sv := range src {
		sm, sIsObj := sv.(map[string]any)
		dm, dIsObj := dst[k].(map[string]any)
		if sIsObj && dIsObj {
			dst[k] = deepMerge(dm, sm)
			continue
		}
		if sIsObj {
			dst[k] = deepMerge(map[string]any{}, sm)
			continue
		}
		dst[k] = sv
	}
	return dst
}

// toObject converts a struct into a generic JSON object.
func toObject(v any) (map[string]any, error) {
	raw, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var m map[string]any
	if err := dec.Decode(&m); err != nil {
		return nil, err
	}
	return m, nil
}
