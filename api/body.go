package api

import (
	"errors"
	"io"
	"net/http"
	"unicode/utf8"
)

// multipartSlack is allowed on top of the upload limit for the multipart
// envelope (boundaries and part headers); the file itself is held to the limit.
const multipartSlack = 64 << 10

// textTypes are the media types accepted for a raw file body.
var textTypes = map[string]bool{
	"application/yaml":   true,
	"application/x-yaml": true,
	"text/yaml":          true,
	"text/x-yaml":        true,
	"text/plain":         true,
}

// textTypeList is textTypes for error messages.
const textTypeList = "application/yaml, text/yaml, application/x-yaml or text/plain"

// upload is a file received in a request.
type upload struct {
	name string // the client's file name, for messages only
	data []byte
}

// readTextBody reads a raw text body of at most the upload limit.
// field names the request field in errors about the content.
func (s *Server) readTextBody(w http.ResponseWriter, r *http.Request, field string) ([]byte, error) {
	data, err := readBody(w, r, s.maxUpload)
	if err != nil {
		return nil, err
	}
	if !utf8.Valid(data) {
		return nil, badRequest(field, "%s is not valid UTF-8 text", field)
	}
	return data, nil
}

// readMultipartFile reads the file in form field field of a
// multipart/form-data body. The file may be at most the upload limit;
// other form fields are skipped; the field must appear exactly once.
func (s *Server) readMultipartFile(w http.ResponseWriter, r *http.Request, field string) (upload, error) {
	mt, err := mediaType(r)
	if err != nil {
		return upload{}, err
	}
	if mt != "multipart/form-data" {
		return upload{}, unsupportedType(mt, "multipart/form-data")
	}
	r.Body = http.MaxBytesReader(w, r.Body, s.maxUpload+multipartSlack)
	mr, err := r.MultipartReader()
	if err != nil {
		return upload{}, badRequest(field, "invalid multipart body: %v", err)
	}
	var (
		file  upload
		found bool
	)
	for {
		part, err := mr.NextPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			return upload{}, multipartError(field, err)
		}
		if part.FormName() != field {
			if _, err := io.Copy(io.Discard, part); err != nil {
				return upload{}, multipartError(field, err)
			}
			continue
		}
		if found {
			return upload{}, badRequest(field, "multipart field %q appears more than once", field)
		}
		found = true
		data, err := io.ReadAll(io.LimitReader(part, s.maxUpload+1))
		if err != nil {
			return upload{}, multipartError(field, err)
		}
		if int64(len(data)) > s.maxUpload {
			return upload{}, &http.MaxBytesError{Limit: s.maxUpload}
		}
		file = upload{name: part.FileName(), data: data}
	}
	if !found {
		return upload{}, badRequest(field, "missing multipart field %q", field)
	}
	if !utf8.Valid(file.data) {
		return upload{}, badRequest(field, "uploaded file is not valid UTF-8 text")
	}
	if file.name == "" {
		file.name = "upload"
	}
	return file, nil
}

// multipartError maps an error reading a multipart body: too large stays
// a 413, anything else is a 400 naming field.
func multipartError(field string, err error) error {
	var tooBig *http.MaxBytesError
	if errors.As(err, &tooBig) {
		return err
	}
	return badRequest(field, "invalid multipart body: %v", err)
}
