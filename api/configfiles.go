package api

import (
	"net/http"
	"slices"
	"strings"

	"github.com/thon-dev/thon/store"
)

// configFileRoutes registers the config-file slot routes; {key} is one of
// store.ConfigKeys().
func (s *Server) configFileRoutes() {
	s.handle("GET", "/api/config-files", s.listConfigFiles)
	s.handle("GET", "/api/config-files/{key}", s.getConfigFile)
	s.handle("PUT", "/api/config-files/{key}", s.putConfigFile)
	s.handle("DELETE", "/api/config-files/{key}", s.deleteConfigFile)
	s.handle("POST", "/api/config-files/{key}/upload", s.uploadConfigFile)
}

// configFileList is the answer of GET /api/config-files.
type configFileList struct {
	ConfigFiles []store.ConfigFile `json:"config_files"`
}

// configFilePutRequest is the JSON body of PUT /api/config-files/{key}.
type configFilePutRequest struct {
	Content *string `json:"content"`
}

// deletedConfigFile answers DELETE /api/config-files/{key}.
type deletedConfigFile struct {
	Deleted string `json:"deleted"`
}

// configKey returns the request's {key}, or a 404 naming the valid keys.
func configKey(r *http.Request) (string, error) {
	key := r.PathValue("key")
	keys := store.ConfigKeys()
	if !slices.Contains(keys, key) {
		return "", errorf(http.StatusNotFound, "key", "unknown config file %q: valid keys are %s",
			key, strings.Join(keys, ", "))
	}
	return key, nil
}

func (s *Server) listConfigFiles(w http.ResponseWriter, r *http.Request) error {
	files, err := s.store.ConfigFiles(r.Context())
	if err != nil {
		return err
	}
	if files == nil {
		files = []store.ConfigFile{}
	}
	writeJSON(w, http.StatusOK, configFileList{ConfigFiles: files})
	return nil
}

func (s *Server) getConfigFile(w http.ResponseWriter, r *http.Request) error {
	key, err := configKey(r)
	if err != nil {
		return err
	}
	f, err := s.store.ConfigFile(r.Context(), key)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, f)
	return nil
}

// putConfigFile stores the content given as JSON {"content": "..."} or, with
// Content-Type text/plain (or a YAML type), as the raw body.
func (s *Server) putConfigFile(w http.ResponseWriter, r *http.Request) error {
	key, err := configKey(r)
	if err != nil {
		return err
	}
	mt, err := mediaType(r)
	if err != nil {
		return err
	}
	var content string
	switch {
	case isJSONType(mt):
		var req configFilePutRequest
		if err := s.decodeJSON(w, r, &req); err != nil {
			return err
		}
		if req.Content == nil {
			return badRequest("content", "content is required")
		}
		content = *req.Content
	case textTypes[mt]:
		data, err := s.readTextBody(w, r, "content")
		if err != nil {
			return err
		}
		content = string(data)
	default:
		return unsupportedType(mt, "application/json or text/plain")
	}
	return s.storeConfigFile(w, r, key, content)
}

func (s *Server) uploadConfigFile(w http.ResponseWriter, r *http.Request) error {
	key, err := configKey(r)
	if err != nil {
		return err
	}
	file, err := s.readMultipartFile(w, r, "file")
	if err != nil {
		return err
	}
	return s.storeConfigFile(w, r, key, string(file.data))
}

// storeConfigFile validates and stores content in slot key; a rejected
// content is a 400 naming "content" and leaves the slot as it was.
func (s *Server) storeConfigFile(w http.ResponseWriter, r *http.Request, key, content string) error {
	f, err := s.store.PutConfigFile(r.Context(), key, content)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, f)
	return nil
}

func (s *Server) deleteConfigFile(w http.ResponseWriter, r *http.Request) error {
	key, err := configKey(r)
	if err != nil {
		return err
	}
	if err := s.store.DeleteConfigFile(r.Context(), key); err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, deletedConfigFile{Deleted: key})
	return nil
}
