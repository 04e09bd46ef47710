package api

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"sync"
	"time"

	"github.com/thon-dev/thon/sandboxes"
	"github.com/thon-dev/thon/store"
)

// Workspace work done on behalf of the group routes.
const (
	// workspaceConcurrency bounds the engine calls of one request.
	workspaceConcurrency = 8
	// workspaceTimeout bounds the workspace work of one request, so that
	// an engine that hangs cannot hold an import's answer forever.
	workspaceTimeout = 2 * time.Minute
)

// What became of a deleted user's workspace.
const (
	workspaceKept    = "kept"
	workspaceDeleted = "deleted"
	workspaceNone    = "none" // sandboxes are not configured, or workspaces are ephemeral
)

// importResponse is the answer of POST /api/groups/import: what the import
// changed and, when sandboxes keep persistent workspaces, how creating the
// workspace of every user of the roster went.
type importResponse struct {
	store.ImportResult
	Workspaces *workspaceReport `json:"workspaces,omitempty"`
}

// workspaceReport counts the workspaces an import ensured. The import is
// committed whatever happens here: a failure (an engine that is down)
// leaves the workspaces to be created when the sandboxes first start.
type workspaceReport struct {
	Ensured int `json:"ensured"`
	Failed  int `json:"failed"`
	// Error is the first failure's message.
	Error string `json:"error,omitempty"`
}

// addedUser is the answer of POST /api/groups/{group_id}/users: the user
// and, when sandboxes keep persistent workspaces, its workspace.
type addedUser struct {
	store.User
	Workspace *workspaceStatus `json:"workspace,omitempty"`
}

// workspaceStatus says whether a new user's workspace was created.
type workspaceStatus struct {
	Name    string `json:"name"`
	Ensured bool   `json:"ensured"`
	Error   string `json:"error,omitempty"`
}

// workspaceFate says what became of a deleted user's workspace: kept,
// deleted or none (thon keeps no workspace for the user). A workspace
// that could not be deleted is kept, and WorkspaceError says why.
type workspaceFate struct {
	Workspace      string `json:"workspace"`
	WorkspaceName  string `json:"workspace_name,omitempty"`
	WorkspaceError string `json:"workspace_error,omitempty"`
}

// deletedUser answers DELETE /api/groups/{group_id}/users/{user_id}.
type deletedUser struct {
	Deleted       store.User `json:"deleted"`
	SandboxKilled bool       `json:"sandbox_killed"`
	workspaceFate
}

// userWorkspace is the fate of one user's workspace in a group deletion.
type userWorkspace struct {
	User string `json:"user"`
	workspaceFate
}

// deletedGroup answers DELETE /api/groups/{group_id}.
type deletedGroup struct {
	Deleted         store.Group     `json:"deleted"`
	SandboxesKilled int             `json:"sandboxes_killed"`
	Workspaces      []userWorkspace `json:"workspaces"`
}

// persistentWorkspaces reports whether sandboxes keep a workspace per user
// (a named volume or a host directory).
func (s *Server) persistentWorkspaces() bool {
	return s.sandboxes != nil && s.sandboxes.Config().Workspace != sandboxes.WorkspaceEphemeral
}

// groupUser names a user of a group.
type groupUser struct{ group, user string }

// eachWorkspace runs fn on the workspace of every user, a few at a time,
// and returns each one's error. Once the engine is found unavailable the
// users not yet started are not tried: they get that error.
func (s *Server) eachWorkspace(ctx context.Context, users []groupUser, fn func(context.Context, string, string) error) []error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), workspaceTimeout)
	defer cancel()
	errs := make([]error, len(users))
	var (
		mu   sync.Mutex
		down error
		wg   sync.WaitGroup
		sem  = make(chan struct{}, workspaceConcurrency)
	)
	for i, u := range users {
		sem <- struct{}{}
		mu.Lock()
		stop := down
		mu.Unlock()
		if stop != nil {
			<-sem
			errs[i] = stop
			continue
		}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			err := fn(ctx, u.group, u.user)
			if err != nil {
				err = fmt.Errorf("workspace of %s/%s: %w", u.group, u.user, err)
			}
			errs[i] = err
			if errors.Is(err, sandboxes.ErrUnavailable) {
				mu.Lock()
				if down == nil {
					down = err
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return errs
}

// ensureWorkspaces creates the workspace of every user of an imported
// roster; nil when there are none to create.
func (s *Server) ensureWorkspaces(ctx context.Context, roster store.Roster) *workspaceReport {
	if !s.persistentWorkspaces() {
		return nil
	}
	var users []groupUser
	for _, g := range roster.Groups {
		for _, u := range g.Users {
			users = append(users, groupUser{g.Name, u.Name})
		}
	}
	rep := &workspaceReport{}
	for _, err := range s.eachWorkspace(ctx, users, s.sandboxes.EnsureWorkspace) {
		if err == nil {
			rep.Ensured++
			continue
		}
		rep.Failed++
		if rep.Error == "" {
			rep.Error = err.Error()
		}
	}
	if rep.Failed > 0 {
		s.logger.Warn("workspaces of an import not created; they are created when the sandboxes start",
			"failed", rep.Failed, "error", rep.Error)
	}
	return rep
}

// ensureWorkspace creates the workspace of a new user; nil when there is
// none to create.
func (s *Server) ensureWorkspace(ctx context.Context, group, user string) *workspaceStatus {
	if !s.persistentWorkspaces() {
		return nil
	}
	st := &workspaceStatus{Name: s.sandboxes.WorkspaceName(group, user), Ensured: true}
	if err := s.eachWorkspace(ctx, []groupUser{{group, user}}, s.sandboxes.EnsureWorkspace)[0]; err != nil {
		st.Ensured, st.Error = false, err.Error()
		s.logger.Warn("workspace of a new user not created; it is created when the sandbox starts",
			"group", group, "user", user, "error", err)
	}
	return st
}

// dropWorkspaces deletes the workspaces of deleted users when del is set,
// and says what became of each.
func (s *Server) dropWorkspaces(ctx context.Context, users []groupUser, del bool) []workspaceFate {
	fates := make([]workspaceFate, len(users))
	if !s.persistentWorkspaces() {
		for i := range fates {
			fates[i].Workspace = workspaceNone
		}
		return fates
	}
	for i, u := range users {
		fates[i] = workspaceFate{Workspace: workspaceKept, WorkspaceName: s.sandboxes.WorkspaceName(u.group, u.user)}
	}
	if !del {
		return fates
	}
	for i, err := range s.eachWorkspace(ctx, users, s.sandboxes.DeleteWorkspace) {
		if err != nil {
			fates[i].WorkspaceError = err.Error()
			s.logger.Error("workspace of a deleted user not deleted", "workspace", fates[i].WorkspaceName, "error", err)
			continue
		}
		fates[i].Workspace = workspaceDeleted
	}
	return fates
}

// killLive kills the live sandbox of a user, if there is one, and reports
// whether it did. A sandbox killed meanwhile by someone else is no error.
func (s *Server) killLive(ctx context.Context, group, user string) (bool, error) {
	rec, err := s.store.LiveInstance(ctx, group, user)
	if errors.Is(err, store.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	if _, err := s.sandboxes.Kill(ctx, rec.ID); err != nil {
		if in, gerr := s.sandboxes.Get(ctx, rec.ID); errors.Is(gerr, sandboxes.ErrNotFound) ||
			(gerr == nil && in.State == sandboxes.StateTerminated) {
			return false, nil
		}
		return false, fmt.Errorf("killing the sandbox of %s/%s (instance %d): %w", group, user, rec.ID, err)
	}
	return true, nil
}

// killGroup kills every live sandbox of a group, a few at a time, and
// returns how many it killed and the first failure.
func (s *Server) killGroup(ctx context.Context, group string) (int, error) {
	recs, _, err := s.store.ListInstances(ctx, store.InstanceFilter{Live: true, Group: group})
	if err != nil {
		return 0, err
	}
	users := make([]groupUser, len(recs))
	for i, rec := range recs {
		users[i] = groupUser{rec.Group, rec.User}
	}
	killed := make([]bool, len(recs))
	errs := make([]error, len(recs))
	var wg sync.WaitGroup
	sem := make(chan struct{}, workspaceConcurrency)
	for i, u := range users {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			killed[i], errs[i] = s.killLive(ctx, u.group, u.user)
		}()
	}
	wg.Wait()
	n, failed := 0, 0
	var first error
	for i := range recs {
		if killed[i] {
			n++
		}
		if errs[i] != nil {
			failed++
			if first == nil {
				first = errs[i]
			}
		}
	}
	if first != nil {
		return n, fmt.Errorf("%d of %d sandboxes of group %s not killed: %w", failed, len(recs), group, first)
	}
	return n, nil
}

// deleteUserAndSandbox deletes a user: its live sandbox is killed first,
// and if that fails the user is kept and the error answered. The
// workspace is deleted afterwards when del is set, and kept otherwise.
func (s *Server) deleteUserAndSandbox(ctx context.Context, group, user string, del bool) (deletedUser, error) {
	if _, err := s.store.GetUser(ctx, group, user); err != nil {
		return deletedUser{}, err
	}
	var killed bool
	if s.sandboxes != nil {
		var err error
		if killed, err = s.killLive(ctx, group, user); err != nil {
			return deletedUser{}, fmt.Errorf("user %s/%s not deleted: %w", group, user, err)
		}
	}
	u, err := s.store.DeleteUser(ctx, group, user)
	if err != nil {
		return deletedUser{}, err
	}
	if s.sandboxes != nil {
		// A launch that read the user before the deletion may have
		// recorded a sandbox since; launches after it fail.
		k, err := s.killLive(ctx, group, user)
		if err != nil {
			s.logger.Error("sandbox launched while its user was deleted not killed", "group", group, "user", user, "error", err)
		}
		killed = killed || k
	}
	fate := s.dropWorkspaces(ctx, []groupUser{{group, user}}, del)[0]
	return deletedUser{Deleted: u, SandboxKilled: killed, workspaceFate: fate}, nil
}

// deleteGroupAndSandboxes deletes a group like deleteUserAndSandbox does
// a user: every live sandbox of the group is killed first, and if one
// kill fails the group is kept and the error answered.
func (s *Server) deleteGroupAndSandboxes(ctx context.Context, name string, del bool) (deletedGroup, error) {
	if _, err := s.store.GetGroup(ctx, name); err != nil {
		return deletedGroup{}, err
	}
	var killed int
	if s.sandboxes != nil {
		var err error
		if killed, err = s.killGroup(ctx, name); err != nil {
			return deletedGroup{}, fmt.Errorf("group %s not deleted: %w", name, err)
		}
	}
	g, err := s.store.DeleteGroup(ctx, name)
	if err != nil {
		return deletedGroup{}, err
	}
	if s.sandboxes != nil {
		k, err := s.killGroup(ctx, name) // launches that raced the deletion
		if err != nil {
			s.logger.Error("sandboxes launched while their group was deleted not killed", "group", name, "error", err)
		}
		killed += k
	}
	users := make([]groupUser, len(g.Users))
	for i, u := range g.Users {
		users[i] = groupUser{g.Name, u.Name}
	}
	out := deletedGroup{Deleted: normalizeGroup(g), SandboxesKilled: killed, Workspaces: make([]userWorkspace, len(users))}
	for i, fate := range s.dropWorkspaces(ctx, users, del) {
		out.Workspaces[i] = userWorkspace{User: users[i].user, workspaceFate: fate}
	}
	return out, nil
}

// boolQuery parses the query parameter name as a boolean; an absent or
// empty one is false.
func boolQuery(q url.Values, name string) (bool, error) {
	v := q.Get(name)
	if v == "" {
		return false, nil
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		return false, badRequest(name, "%s must be true or false, got %q", name, v)
	}
	return b, nil
}
