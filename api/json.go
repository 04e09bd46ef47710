package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"reflect"
	"strconv"
	"strings"
)

// writeJSON writes v as the JSON response body with status.
func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		// Only our own response types reach here; they always marshal.
		status = http.StatusInternalServerError
		b = []byte(`{"error":"internal error"}`)
	}
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, _ = w.Write(append(b, '\n'))
}

// mediaType returns the request's media type, lowercased and without
// parameters, or "" when there is no Content-Type header.
func mediaType(r *http.Request) (string, error) {
	ct := r.Header.Get("Content-Type")
	if ct == "" {
		return "", nil
	}
	mt, _, err := mime.ParseMediaType(ct)
	if err != nil {
		return "", errorf(http.StatusUnsupportedMediaType, "", "invalid content type %q: %v", ct, err)
	}
	return mt, nil
}

// isJSONType reports whether mt is a JSON media type; a missing
// Content-Type counts as JSON.
func isJSONType(mt string) bool {
	return mt == "" || mt == "application/json" || strings.HasSuffix(mt, "+json")
}

// unsupportedType is the 415 error for media type mt.
func unsupportedType(mt, want string) error {
	return errorf(http.StatusUnsupportedMediaType, "", "unsupported content type %q: want %s", mt, want)
}

// readBody reads the whole request body, refusing more than limit bytes
// (the error is an *http.MaxBytesError, answered with 413).
func readBody(w http.ResponseWriter, r *http.Request, limit int64) ([]byte, error) {
	body := http.MaxBytesReader(w, r.Body, limit)
	data, err := io.ReadAll(body)
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return nil, err
		}
		return nil, badRequest("", "reading request body: %v", err)
	}
	return data, nil
}

// decodeJSON decodes the JSON request body into v strictly: the body must be
// one JSON object, no larger than the server's limit, with no unknown fields.
func (s *Server) decodeJSON(w http.ResponseWriter, r *http.Request, v any) error {
	mt, err := mediaType(r)
	if err != nil {
		return err
	}
	if !isJSONType(mt) {
		return unsupportedType(mt, "application/json")
	}
	data, err := readBody(w, r, s.maxBody)
	if err != nil {
		return err
	}
	return decodeStrict(data, v)
}

// decodeOptionalJSON is decodeJSON for routes whose body may be left out:
// an empty body (of any content type) leaves v as it is.
func (s *Server) decodeOptionalJSON(w http.ResponseWriter, r *http.Request, v any) error {
	data, err := readBody(w, r, s.maxBody)
	if err != nil {
		return err
	}
	if len(bytes.TrimSpace(data)) == 0 {
		return nil
	}
	mt, err := mediaType(r)
	if err != nil {
		return err
	}
	if !isJSONType(mt) {
		return unsupportedType(mt, "application/json")
	}
	return decodeStrict(data, v)
}

// decodeStrict decodes data, one JSON value, into v with unknown fields
// refused. Errors are 400s that say where in the body the problem is and,
// when known, name the field.
func decodeStrict(data []byte, v any) error {
	if len(bytes.TrimSpace(data)) == 0 {
		return badRequest("", "invalid JSON body: body is empty")
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return jsonError(data, dec.InputOffset(), err)
	}
	end := dec.InputOffset()
	if _, err := dec.Token(); err != io.EOF {
		for end < int64(len(data)) && isSpace(data[end]) {
			end++
		}
		return badRequest("", "invalid JSON body: %s: unexpected data after the JSON object",
			position(data, end+1))
	}
	return nil
}

// jsonError turns a decoding error into a 400 that names the position
// and, when known, the field.
func jsonError(data []byte, offset int64, err error) error {
	var (
		syntaxErr *json.SyntaxError
		typeErr   *json.UnmarshalTypeError
	)
	switch {
	case errors.Is(err, io.ErrUnexpectedEOF):
		return badRequest("", "invalid JSON body: %s: unexpected end of input", position(data, int64(len(data))))
	case errors.As(err, &syntaxErr):
		return badRequest("", "invalid JSON body: %s: %s", position(data, syntaxErr.Offset), syntaxErr.Error())
	case errors.As(err, &typeErr):
		pos := position(data, typeErr.Offset)
		if typeErr.Field == "" {
			return badRequest("", "invalid JSON body: %s: want a JSON object, got %s", pos, typeErr.Value)
		}
		return badRequest(typeErr.Field, "invalid JSON body: %s: field %q must be %s, got %s",
			pos, typeErr.Field, kindName(typeErr.Type), typeErr.Value)
	}
	msg := strings.TrimPrefix(err.Error(), "json: ")
	if rest, ok := strings.CutPrefix(msg, "unknown field "); ok {
		field, uerr := strconv.Unquote(rest)
		if uerr != nil {
			field = rest
		}
		// The decoder has read the whole object by now; point at the key.
		if i := bytes.Index(data, []byte(strconv.Quote(field))); i >= 0 {
			offset = int64(i) + 1
		}
		return badRequest(field, "invalid JSON body: %s: unknown field %q", position(data, offset), field)
	}
	return badRequest("", "invalid JSON body: %s: %s", position(data, offset), msg)
}

// isSpace reports whether c is JSON whitespace.
func isSpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\n' || c == '\r'
}

// kindName names the JSON type that decodes into t.
func kindName(t reflect.Type) string {
	if t == nil {
		return "a value"
	}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "a boolean"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "an integer"
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.Slice, reflect.Array:
		return "an array"
	case reflect.Struct, reflect.Map:
		return "an object"
	}
	return "a " + t.Kind().String()
}

// position formats the line and column of the byte that the decoder had
// just read after consuming offset bytes of data (both 1-based).
func position(data []byte, offset int64) string {
	if offset < 1 {
		offset = 1
	}
	if offset > int64(len(data)) {
		offset = int64(len(data))
	}
	before := data[:max(offset-1, 0)]
	line := bytes.Count(before, []byte{'\n'}) + 1
	col := len(before) - bytes.LastIndexByte(before, '\n')
	return fmt.Sprintf("line %d, column %d", line, col)
}
