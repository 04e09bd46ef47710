package api

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/thon-dev/thon/sandboxes"
	"github.com/thon-dev/thon/store"
)

// Limits of the instance routes.
const (
	maxRenewMinutes = 7 * 24 * 60 // a week
	maxBulkIDs      = 1000
	maxListPage     = 1_000_000
)

// instanceRoutes registers the sandbox routes. Actions that change a
// sandbox run to completion even when the client goes away, so that a
// dropped connection never leaves a sandbox half done.
func (s *Server) instanceRoutes() {
	s.handleSandboxes("GET", "/api/instances", s.listInstances)
	s.handleSandboxes("POST", "/api/instances", s.createInstance)
	s.handleSandboxes("POST", "/api/instances/bulk/pause", s.bulkAction(sandboxes.ActionPause))
	s.handleSandboxes("POST", "/api/instances/bulk/resume", s.bulkAction(sandboxes.ActionResume))
	s.handleSandboxes("POST", "/api/instances/bulk/kill", s.bulkAction(sandboxes.ActionKill))
	s.handleSandboxes("GET", "/api/instances/{id}", s.getInstance)
	s.handleSandboxes("DELETE", "/api/instances/{id}", s.instanceAction((*sandboxes.Manager).Kill, false))
	s.handleSandboxes("POST", "/api/instances/{id}/pause", s.instanceAction((*sandboxes.Manager).Pause, true))
	s.handleSandboxes("POST", "/api/instances/{id}/resume", s.instanceAction((*sandboxes.Manager).Resume, true))
	s.handleSandboxes("POST", "/api/instances/{id}/recreate", s.instanceAction((*sandboxes.Manager).Recreate, true))
	s.handleSandboxes("POST", "/api/instances/{id}/renew", s.renewInstance)
	s.handleSandboxes("POST", "/api/users/{user_id}/launch", s.launchUser)
	s.handleSandboxes("POST", "/api/users/{user_id}/stop", s.stopUser)
	s.handleSandboxes("POST", "/api/groups/{group_id}/users/{user_id}/launch", s.launchGroupUser)
	s.handleSandboxes("POST", "/api/groups/{group_id}/users/{user_id}/stop", s.stopGroupUser)
}

// handleSandboxes registers a route that needs the sandbox manager; without
// one it answers 503.
func (s *Server) handleSandboxes(method, pattern string, h handlerFunc) {
	s.handle(method, pattern, func(w http.ResponseWriter, r *http.Request) error {
		if s.sandboxes == nil {
			return errorf(http.StatusServiceUnavailable, "", "sandboxes are not configured")
		}
		return h(w, r)
	})
}

// instanceList is the answer of GET /api/instances.
type instanceList struct {
	Instances []sandboxes.Instance `json:"instances"`
	Total     int                  `json:"total"`
	Page      int                  `json:"page"`
	PerPage   int                  `json:"per_page"`
}

// instanceCreateRequest is the body of POST /api/instances.
type instanceCreateRequest struct {
	Group string `json:"group"`
	User  string `json:"user"`
}

// renewRequest is the body of POST /api/instances/{id}/renew.
type renewRequest struct {
	Minutes int `json:"minutes"`
}

// bulkRequest is the body of POST /api/instances/bulk/{action}: either
// instance IDs or a group whose live instances are all acted on.
type bulkRequest struct {
	IDs   []int64 `json:"ids,omitempty"`
	Group string  `json:"group,omitempty"`
}

// bulkResults is the answer of the bulk routes: one result per instance,
// in the order of the request's IDs.
type bulkResults struct {
	Results []sandboxes.Result `json:"results"`
}

// emptyRequest is the body of the action routes that take no input: an
// empty body or {}.
type emptyRequest struct{}

func (s *Server) listInstances(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	page, err := intQuery(q, "page", 1, maxListPage)
	if err != nil {
		return err
	}
	perPage, err := intQuery(q, "per_page", 1, 500)
	if err != nil {
		return err
	}
	f := sandboxes.ListFilter{State: q.Get("state"), Group: q.Get("group"), Page: page, PerPage: perPage}
	list, total, err := s.sandboxes.List(r.Context(), f)
	if err != nil {
		return err
	}
	if list == nil {
		list = []sandboxes.Instance{}
	}
	if page == 0 {
		page = 1
	}
	if perPage == 0 {
		perPage = 50
	}
	writeJSON(w, http.StatusOK, instanceList{Instances: list, Total: total, Page: page, PerPage: perPage})
	return nil
}

// createInstance launches the sandbox of a user. It answers 201 with a
// Location when this request created the sandbox, and 200 when the user's
// sandbox existed already (it is resumed or started again if need be).
func (s *Server) createInstance(w http.ResponseWriter, r *http.Request) error {
	var req instanceCreateRequest
	if err := s.decodeJSON(w, r, &req); err != nil {
		return err
	}
	if req.Group == "" {
		return badRequest("group", "group is required")
	}
	if req.User == "" {
		return badRequest("user", "user is required")
	}
	return s.launch(w, r, req.Group, req.User)
}

// launch launches the sandbox of a user given by names and answers it: 201
// with a Location for a new sandbox, 200 for the one the user had.
func (s *Server) launch(w http.ResponseWriter, r *http.Request, group, user string) error {
	prior := s.liveInstanceID(r.Context(), group, user)
	in, err := s.sandboxes.Launch(context.WithoutCancel(r.Context()), group, user)
	if err != nil {
		return err
	}
	s.writeLaunched(w, in, prior)
	return nil
}

// liveInstanceID is the ID of the user's live sandbox, 0 if there is none.
func (s *Server) liveInstanceID(ctx context.Context, group, user string) int64 {
	rec, err := s.store.LiveInstance(ctx, group, user)
	if err != nil {
		return 0
	}
	return rec.ID
}

// writeLaunched answers a launch: 201 with a Location for a new sandbox,
// 200 for the one the user had (prior).
func (s *Server) writeLaunched(w http.ResponseWriter, in sandboxes.Instance, prior int64) {
	if in.ID == prior {
		writeJSON(w, http.StatusOK, in)
		return
	}
	w.Header().Set("Location", "/api/instances/"+strconv.FormatInt(in.ID, 10))
	writeJSON(w, http.StatusCreated, in)
}

func (s *Server) getInstance(w http.ResponseWriter, r *http.Request) error {
	id, err := pathID(r, "id")
	if err != nil {
		return err
	}
	in, err := s.sandboxes.Get(r.Context(), id)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, in)
	return nil
}

// instanceAction returns the handler of an action on one instance that
// answers the instance as it is afterwards. withBody says whether the
// route takes a (possibly empty) JSON body.
func (s *Server) instanceAction(act func(*sandboxes.Manager, context.Context, int64) (sandboxes.Instance, error), withBody bool) handlerFunc {
	return func(w http.ResponseWriter, r *http.Request) error {
		id, err := pathID(r, "id")
		if err != nil {
			return err
		}
		if withBody {
			if err := s.decodeOptionalJSON(w, r, &emptyRequest{}); err != nil {
				return err
			}
		}
		in, err := act(s.sandboxes, context.WithoutCancel(r.Context()), id)
		if err != nil {
			return err
		}
		writeJSON(w, http.StatusOK, in)
		return nil
	}
}

func (s *Server) renewInstance(w http.ResponseWriter, r *http.Request) error {
	id, err := pathID(r, "id")
	if err != nil {
		return err
	}
	var req renewRequest
	if err := s.decodeJSON(w, r, &req); err != nil {
		return err
	}
	if req.Minutes < 1 || req.Minutes > maxRenewMinutes {
		return badRequest("minutes", "minutes must be from 1 to %d, got %d", maxRenewMinutes, req.Minutes)
	}
	in, err := s.sandboxes.Renew(context.WithoutCancel(r.Context()), id, time.Duration(req.Minutes)*time.Minute)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, in)
	return nil
}

// bulkAction returns the handler of a bulk action. It answers 200 with a
// result per instance, each saying whether the action succeeded on it.
func (s *Server) bulkAction(a sandboxes.Action) handlerFunc {
	return func(w http.ResponseWriter, r *http.Request) error {
		var req bulkRequest
		if err := s.decodeJSON(w, r, &req); err != nil {
			return err
		}
		ids, err := s.bulkIDs(r.Context(), req)
		if err != nil {
			return err
		}
		results := s.sandboxes.Bulk(context.WithoutCancel(r.Context()), a, ids)
		if results == nil {
			results = []sandboxes.Result{}
		}
		writeJSON(w, http.StatusOK, bulkResults{Results: results})
		return nil
	}
}

// bulkIDs checks a bulk request and returns the instance IDs it selects:
// the given IDs, or every live instance of the given group.
func (s *Server) bulkIDs(ctx context.Context, req bulkRequest) ([]int64, error) {
	switch {
	case req.Group != "" && req.IDs != nil:
		return nil, badRequest("group", "give ids or group, not both")
	case req.Group != "":
		return s.groupInstanceIDs(ctx, req.Group)
	case len(req.IDs) == 0:
		return nil, badRequest("ids", "ids must list 1 to %d instance IDs, or give group instead", maxBulkIDs)
	case len(req.IDs) > maxBulkIDs:
		return nil, badRequest("ids", "ids lists %d instance IDs; at most %d are allowed", len(req.IDs), maxBulkIDs)
	}
	seen := make(map[int64]int, len(req.IDs))
	for i, id := range req.IDs {
		if id < 1 {
			return nil, badRequest("ids", "ids[%d] is %d, not an instance ID (a positive integer)", i, id)
		}
		if j, dup := seen[id]; dup {
			return nil, badRequest("ids", "ids[%d] repeats instance %d of ids[%d]", i, id, j)
		}
		seen[id] = i
	}
	return req.IDs, nil
}

// groupInstanceIDs lists the IDs of every live instance of a group.
func (s *Server) groupInstanceIDs(ctx context.Context, group string) ([]int64, error) {
	if err := store.ValidateName("group", group); err != nil {
		return nil, err
	}
	if _, err := s.store.GetGroup(ctx, group); err != nil {
		return nil, err
	}
	const perPage = 500
	ids := []int64{}
	for page := 1; ; page++ {
		list, total, err := s.sandboxes.List(ctx, sandboxes.ListFilter{Group: group, Page: page, PerPage: perPage})
		if err != nil {
			return nil, err
		}
		for _, in := range list {
			ids = append(ids, in.ID)
		}
		if len(list) < perPage || page*perPage >= total {
			return ids, nil
		}
	}
}

// launchUser launches the sandbox of the user with the ID {user_id}; it
// answers like POST /api/instances.
func (s *Server) launchUser(w http.ResponseWriter, r *http.Request) error {
	id, err := pathID(r, "user_id")
	if err != nil {
		return err
	}
	if err := s.decodeOptionalJSON(w, r, &emptyRequest{}); err != nil {
		return err
	}
	u, err := s.store.GetUserByID(r.Context(), id)
	if err != nil {
		return err
	}
	prior := s.liveInstanceID(r.Context(), u.Group, u.Name)
	in, err := s.sandboxes.LaunchUserID(context.WithoutCancel(r.Context()), id)
	if err != nil {
		return err
	}
	s.writeLaunched(w, in, prior)
	return nil
}

// stopUser kills the live sandbox of the user with the ID {user_id} and
// answers the terminated instance.
func (s *Server) stopUser(w http.ResponseWriter, r *http.Request) error {
	id, err := pathID(r, "user_id")
	if err != nil {
		return err
	}
	if err := s.decodeOptionalJSON(w, r, &emptyRequest{}); err != nil {
		return err
	}
	in, err := s.sandboxes.StopUserID(context.WithoutCancel(r.Context()), id)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, in)
	return nil
}

// launchGroupUser launches the sandbox of the user named {user_id} in the
// group named {group_id}; it answers like POST /api/instances.
func (s *Server) launchGroupUser(w http.ResponseWriter, r *http.Request) error {
	group, user, err := pathUser(r)
	if err != nil {
		return err
	}
	if err := s.decodeOptionalJSON(w, r, &emptyRequest{}); err != nil {
		return err
	}
	return s.launch(w, r, group, user)
}

// stopGroupUser kills the live sandbox of the user named {user_id} in the
// group named {group_id} and answers the terminated instance.
func (s *Server) stopGroupUser(w http.ResponseWriter, r *http.Request) error {
	group, user, err := pathUser(r)
	if err != nil {
		return err
	}
	if err := s.decodeOptionalJSON(w, r, &emptyRequest{}); err != nil {
		return err
	}
	in, err := s.sandboxes.StopUser(context.WithoutCancel(r.Context()), group, user)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, in)
	return nil
}

// pathUser returns the names {group_id} and {user_id} of a
// /api/groups/{group_id}/users/{user_id}/... path; a value that cannot be
// a name is a 400 naming it.
func pathUser(r *http.Request) (group, user string, err error) {
	group, user = r.PathValue("group_id"), r.PathValue("user_id")
	if err := store.ValidateName("group_id", group); err != nil {
		return "", "", err
	}
	if err := store.ValidateName("user_id", user); err != nil {
		return "", "", err
	}
	return group, user, nil
}

// pathID parses the path value name as a positive integer ID; anything
// else is a 400 naming it.
func pathID(r *http.Request, name string) (int64, error) {
	v := r.PathValue(name)
	id, err := strconv.ParseInt(v, 10, 64)
	if err != nil || id < 1 {
		return 0, badRequest(name, "%s must be a positive integer, got %q", name, v)
	}
	return id, nil
}

// intQuery parses the query parameter name as an integer from lo to hi;
// an absent or empty one is 0.
func intQuery(q url.Values, name string, lo, hi int) (int, error) {
	v := q.Get(name)
	if v == "" {
		return 0, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		var numErr *strconv.NumError
		if errors.As(err, &numErr) && errors.Is(numErr.Err, strconv.ErrRange) {
			return 0, badRequest(name, "%s must be from %d to %d, got %q", name, lo, hi, v)
		}
		return 0, badRequest(name, "%s must be an integer, got %q", name, v)
	}
	if n < lo || n > hi {
		return 0, badRequest(name, "%s must be from %d to %d, got %d", name, lo, hi, n)
	}
	return n, nil
}
