package api

import (
	"context"
	"net/http"
	"net/url"

	"github.com/thon-dev/thon/store"
)

// groupRoutes registers the group and user routes. {group_id} is a group
// name and {user_id} a user name, as in the original API.
func (s *Server) groupRoutes() {
	s.handle("GET", "/api/groups", s.listGroups)
	s.handle("POST", "/api/groups", s.createGroup)
	s.handle("GET", "/api/groups/export", s.exportGroups)
	s.handle("POST", "/api/groups/import", s.importGroups)
	s.handle("GET", "/api/groups/{group_id}", s.getGroup)
	s.handle("PUT", "/api/groups/{group_id}", s.updateGroup)
	s.handle("DELETE", "/api/groups/{group_id}", s.deleteGroup)
	s.handle("POST", "/api/groups/{group_id}/users", s.addUser)
	s.handle("DELETE", "/api/groups/{group_id}/users/{user_id}", s.deleteUser)
	s.handle("POST", "/api/groups/{group_id}/users/{user_id}/transfer", s.transferUser)
}

// groupList is the answer of GET /api/groups.
type groupList struct {
	Groups []store.Group `json:"groups"`
}

// groupCreateRequest is the body of POST /api/groups.
type groupCreateRequest struct {
	Name  string `json:"name"`
	Title string `json:"title"`
}

// groupUpdateRequest is the body of PUT /api/groups/{group_id}; an absent
// field is left as it is.
type groupUpdateRequest struct {
	Name  *string `json:"name"`
	Title *string `json:"title"`
	// Shared lets the members open each other's sandboxes.
	Shared *bool `json:"shared"`
}

// userCreateRequest is the body of POST /api/groups/{group_id}/users;
// "username" is accepted as the original's name for "name".
type userCreateRequest struct {
	Name     string `json:"name"`
	Username string `json:"username"`
	Email    string `json:"email"`
}

// userTransferRequest is the body of POST .../users/{user_id}/transfer.
type userTransferRequest struct {
	ToGroup string `json:"to_group"`
}

func (s *Server) listGroups(w http.ResponseWriter, r *http.Request) error {
	groups, err := s.store.ListGroups(r.Context())
	if err != nil {
		return err
	}
	if groups == nil {
		groups = []store.Group{}
	}
	for i := range groups {
		groups[i] = normalizeGroup(groups[i])
	}
	writeJSON(w, http.StatusOK, groupList{Groups: groups})
	return nil
}

func (s *Server) createGroup(w http.ResponseWriter, r *http.Request) error {
	var req groupCreateRequest
	if err := s.decodeJSON(w, r, &req); err != nil {
		return err
	}
	g, err := s.store.CreateGroup(r.Context(), req.Name, req.Title)
	if err != nil {
		return err
	}
	w.Header().Set("Location", "/api/groups/"+url.PathEscape(g.Name))
	writeJSON(w, http.StatusCreated, normalizeGroup(g))
	return nil
}

func (s *Server) getGroup(w http.ResponseWriter, r *http.Request) error {
	g, err := s.store.GetGroup(r.Context(), r.PathValue("group_id"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, normalizeGroup(g))
	return nil
}

func (s *Server) updateGroup(w http.ResponseWriter, r *http.Request) error {
	var req groupUpdateRequest
	if err := s.decodeJSON(w, r, &req); err != nil {
		return err
	}
	if req.Name == nil && req.Title == nil && req.Shared == nil {
		return badRequest("name", "nothing to update: give name, title or shared")
	}
	var newName string
	if req.Name != nil {
		if *req.Name == "" {
			return badRequest("name", "name must not be empty")
		}
		newName = *req.Name
	}
	g, err := s.store.UpdateGroup(r.Context(), r.PathValue("group_id"),
		store.GroupUpdate{Name: newName, Title: req.Title, Shared: req.Shared})
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, normalizeGroup(g))
	return nil
}

// deleteGroup deletes a group and its users after killing their live
// sandboxes; ?delete_workspace=true deletes their workspaces too.
func (s *Server) deleteGroup(w http.ResponseWriter, r *http.Request) error {
	del, err := boolQuery(r.URL.Query(), "delete_workspace")
	if err != nil {
		return err
	}
	out, err := s.deleteGroupAndSandboxes(context.WithoutCancel(r.Context()), r.PathValue("group_id"), del)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (s *Server) addUser(w http.ResponseWriter, r *http.Request) error {
	var req userCreateRequest
	if err := s.decodeJSON(w, r, &req); err != nil {
		return err
	}
	name := req.Name
	if req.Username != "" {
		if name != "" && name != req.Username {
			return badRequest("username", "name %q and username %q differ: give one of them", name, req.Username)
		}
		name = req.Username
	}
	u, err := s.store.AddUser(r.Context(), r.PathValue("group_id"), store.RosterUser{Name: name, Email: req.Email})
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusCreated, addedUser{User: u, Workspace: s.ensureWorkspace(r.Context(), u.Group, u.Name)})
	return nil
}

// deleteUser deletes a user after killing its live sandbox;
// ?delete_workspace=true deletes its workspace too.
func (s *Server) deleteUser(w http.ResponseWriter, r *http.Request) error {
	del, err := boolQuery(r.URL.Query(), "delete_workspace")
	if err != nil {
		return err
	}
	out, err := s.deleteUserAndSandbox(context.WithoutCancel(r.Context()), r.PathValue("group_id"), r.PathValue("user_id"), del)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (s *Server) transferUser(w http.ResponseWriter, r *http.Request) error {
	var req userTransferRequest
	if err := s.decodeJSON(w, r, &req); err != nil {
		return err
	}
	if req.ToGroup == "" {
		return badRequest("to_group", "to_group is required")
	}
	u, err := s.store.TransferUser(r.Context(), r.PathValue("group_id"), r.PathValue("user_id"), req.ToGroup)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, u)
	return nil
}

// exportGroups answers the roster as the original groups.yaml, or as JSON
// with ?format=json.
func (s *Server) exportGroups(w http.ResponseWriter, r *http.Request) error {
	format := r.URL.Query().Get("format")
	if format != "" && format != "yaml" && format != "json" {
		return badRequest("format", "unknown format %q: want yaml or json", format)
	}
	roster, err := s.store.ExportRoster(r.Context())
	if err != nil {
		return err
	}
	if format == "json" {
		if roster.Groups == nil {
			roster.Groups = []store.RosterGroup{}
		}
		for i := range roster.Groups {
			if roster.Groups[i].Users == nil {
				roster.Groups[i].Users = []store.RosterUser{}
			}
		}
		writeJSON(w, http.StatusOK, roster)
		return nil
	}
	data, err := store.MarshalRoster(roster)
	if err != nil {
		return err
	}
	h := w.Header()
	h.Set("Content-Type", "application/yaml; charset=utf-8")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(data)
	return nil
}

// importGroups imports a groups file given as the raw body (YAML) or as
// the multipart field "file". The import is all-or-nothing; afterwards the
// workspace of every user of the file is created, and a failure there (an
// engine that is down) is reported without undoing the import.
func (s *Server) importGroups(w http.ResponseWriter, r *http.Request) error {
	mt, err := mediaType(r)
	if err != nil {
		return err
	}
	var file upload
	switch {
	case textTypes[mt]:
		data, err := s.readTextBody(w, r, "body")
		if err != nil {
			return err
		}
		file = upload{name: "body", data: data}
	case mt == "multipart/form-data":
		file, err = s.readMultipartFile(w, r, "file")
		if err != nil {
			return err
		}
	default:
		return unsupportedType(mt, textTypeList+" or multipart/form-data")
	}
	roster, err := store.ParseRoster(file.name, file.data)
	if err != nil {
		return err
	}
	res, err := s.store.ImportRoster(r.Context(), roster)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, importResponse{ImportResult: res, Workspaces: s.ensureWorkspaces(r.Context(), roster)})
	return nil
}

// normalizeGroup makes a group's user list an empty array, never null.
func normalizeGroup(g store.Group) store.Group {
	if g.Users == nil {
		g.Users = []store.User{}
	}
	return g
}
