package api

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os/exec"
	"slices"
	"strings"
	"testing"

	"github.com/thon-dev/thon/internal/dockertest"
	"github.com/thon-dev/thon/sandboxes"
	"github.com/thon-dev/thon/sandboxes/docker"
	"github.com/thon-dev/thon/store"
)

// volumeLabels returns the labels of a Docker volume, and false when the
// volume does not exist.
func volumeLabels(t *testing.T, name string) (map[string]string, bool) {
	t.Helper()
	out, err := exec.Command("docker", "volume", "inspect", "-f", "{{json .Labels}}", name).CombinedOutput()
	if err != nil {
		if strings.Contains(strings.ToLower(string(out)), "no such volume") {
			return nil, false
		}
		t.Fatalf("docker volume inspect %s: %v %s", name, err, out)
	}
	var labels map[string]string
	if err := json.Unmarshal(out, &labels); err != nil {
		t.Fatalf("labels of volume %s: %v (%s)", name, err, out)
	}
	return labels, true
}

// wantWorkspaceVolume fails unless the workspace volume of group/user
// exists with thon's labels.
func wantWorkspaceVolume(t *testing.T, group, user string) {
	t.Helper()
	name := sandboxes.VolumeName(group, user)
	labels, ok := volumeLabels(t, name)
	if !ok {
		t.Fatalf("volume %s does not exist", name)
	}
	want := map[string]string{"thon.managed-by": "thon", "thon.group": group, "thon.user": user}
	for k, v := range want {
		if labels[k] != v {
			t.Errorf("volume %s: label %s = %q, want %q (labels %v)", name, k, labels[k], v, labels)
		}
	}
}

// dockerList lists the containers or volumes labelled with group.
func dockerList(t *testing.T, kind, group string) []string {
	t.Helper()
	args := []string{"ps", "-aq"}
	if kind == "volume" {
		args = []string{"volume", "ls", "-q"}
	}
	out, err := exec.Command("docker", append(args, "--filter", "label=thon.group="+group)...).CombinedOutput()
	if err != nil {
		t.Fatalf("docker %v: %v %s", args, err, out)
	}
	list := strings.Fields(string(out))
	slices.Sort(list)
	return list
}

// launch starts the sandbox of a user through the API.
func (e *sandboxEnv) launch(user string) sandboxes.Instance {
	e.t.Helper()
	return e.instance(e.doJSON("POST", "/api/instances", map[string]string{"group": e.group, "user": user}), 201)
}

func TestImportAndAddUserEnsureWorkspaces(t *testing.T) {
	e := newSandboxEnv(t, []string{"alice"}, nil)
	g := e.group

	// Every user of the file gets a workspace, the existing one included.
	var res importResponse
	roster := fmt.Sprintf("groups:\n  %s: [alice, bob, carol]\n", g)
	e.do("POST", "/api/groups/import", "application/yaml", []byte(roster)).wantStatus(t, 200).decode(t, &res)
	if res.UsersCreated != 2 || res.Workspaces == nil || *res.Workspaces != (workspaceReport{Ensured: 3}) {
		t.Fatalf("import = %+v, workspaces %+v; want 2 users created and 3 workspaces ensured", res, res.Workspaces)
	}
	for _, u := range []string{"alice", "bob", "carol"} {
		wantWorkspaceVolume(t, g, u)
	}
	// Importing again finds them there.
	e.do("POST", "/api/groups/import", "application/yaml", []byte(roster)).wantStatus(t, 200).decode(t, &res)
	if res.UsersCreated != 0 || res.Workspaces == nil || *res.Workspaces != (workspaceReport{Ensured: 3}) {
		t.Errorf("re-import = %+v, workspaces %+v", res, res.Workspaces)
	}

	var added addedUser
	e.doJSON("POST", "/api/groups/"+g+"/users", map[string]string{"name": "dave"}).wantStatus(t, 201).decode(t, &added)
	want := workspaceStatus{Name: sandboxes.VolumeName(g, "dave"), Ensured: true}
	if added.Name != "dave" || added.Group != g || added.ID == 0 || added.Workspace == nil || *added.Workspace != want {
		t.Fatalf("added user = %+v, workspace %+v; want dave with %+v", added.User, added.Workspace, want)
	}
	wantWorkspaceVolume(t, g, "dave")
	if got := dockerList(t, "volume", g); len(got) != 4 {
		t.Errorf("volumes of the group = %v, want 4", got)
	}
}

func TestImportWithDockerDown(t *testing.T) {
	e := newUnreachableEnv(t, Options{})

	// The import stands; the workspaces are reported as not created.
	var res importResponse
	e.do("POST", "/api/groups/import", "application/yaml", []byte("groups:\n  gamma: [dave, erin]\n  alpha: [alice]\n")).
		wantStatus(t, 200).decode(t, &res)
	ws := res.Workspaces
	if res.GroupsCreated != 1 || res.UsersCreated != 2 || ws == nil || ws.Ensured != 0 || ws.Failed != 3 ||
		!strings.Contains(ws.Error, "/nonexistent.sock") || !strings.Contains(ws.Error, "workspace of ") {
		t.Fatalf("import = %+v, workspaces %+v", res, ws)
	}
	var g store.Group
	e.do("GET", "/api/groups/gamma", "", nil).wantStatus(t, 200).decode(t, &g)
	if len(g.Users) != 2 {
		t.Errorf("imported group = %+v, want dave and erin", g)
	}

	var added addedUser
	e.doJSON("POST", "/api/groups/gamma/users", map[string]string{"name": "fred"}).wantStatus(t, 201).decode(t, &added)
	if w := added.Workspace; added.Name != "fred" || w == nil || w.Ensured || w.Name != sandboxes.VolumeName("gamma", "fred") ||
		!strings.Contains(w.Error, "/nonexistent.sock") {
		t.Fatalf("added user = %+v, workspace %+v", added.User, added.Workspace)
	}
	e.do("GET", "/api/groups/gamma", "", nil).wantStatus(t, 200).decode(t, &g)
	if len(g.Users) != 3 {
		t.Errorf("group after adding fred = %+v", g)
	}

	// Without a sandbox no engine is needed to delete a user; a workspace
	// that cannot be deleted is kept, and the answer says why.
	var du deletedUser
	e.do("DELETE", "/api/groups/gamma/users/fred?delete_workspace=true", "", nil).wantStatus(t, 200).decode(t, &du)
	if du.Deleted.Name != "fred" || du.SandboxKilled || du.Workspace != workspaceKept ||
		du.WorkspaceName != sandboxes.VolumeName("gamma", "fred") || !strings.Contains(du.WorkspaceError, "/nonexistent.sock") {
		t.Errorf("deleted user = %+v", du)
	}
	e.do("DELETE", "/api/groups/gamma/users/erin", "", nil).wantStatus(t, 200).decode(t, &du)
	if du.Deleted.Name != "erin" || du.SandboxKilled || du.Workspace != workspaceKept || du.WorkspaceError != "" {
		t.Errorf("deleted user = %+v", du)
	}
}

func TestDeleteKeepsWhatCannotBeKilled(t *testing.T) {
	e := newUnreachableEnv(t, Options{})
	ctx := context.Background()
	alice, err := e.store.GetUser(ctx, "alpha", "alice")
	if err != nil {
		t.Fatal(err)
	}
	// A live sandbox of alice, as a launch records it.
	rec, err := e.store.CreateInstance(ctx, store.InstanceRecord{
		Group: "alpha", User: "alice", UserID: alice.ID, ContainerID: "0123456789ab",
		Name: sandboxes.ContainerName("alpha", "alice"), State: string(sandboxes.StateRunning), Port: 40001,
		Image: dockertest.Image, Workspace: sandboxes.VolumeName("alpha", "alice"), URL: sandboxes.URLPath("alpha", "alice"),
	})
	if err != nil {
		t.Fatal(err)
	}

	for _, path := range []string{
		"/api/groups/alpha/users/alice",
		"/api/groups/alpha/users/alice?delete_workspace=true",
		"/api/groups/alpha",
		"/api/groups/alpha?delete_workspace=true",
	} {
		e.do("DELETE", path, "", nil).wantError(t, 503, "", "not deleted", "/nonexistent.sock")
	}
	if _, err := e.store.GetUser(ctx, "alpha", "alice"); err != nil {
		t.Errorf("alice after refused deletions: %v", err)
	}
	if g, err := e.store.GetGroup(ctx, "alpha"); err != nil || len(g.Users) != 2 {
		t.Errorf("alpha after refused deletions: %+v, %v", g, err)
	}
	if live, err := e.store.LiveInstance(ctx, "alpha", "alice"); err != nil || live.ID != rec.ID {
		t.Errorf("alice's sandbox after refused deletions: %+v, %v", live, err)
	}

	// Bob has no sandbox: deleting him needs no engine.
	var du deletedUser
	e.do("DELETE", "/api/groups/alpha/users/bob", "", nil).wantStatus(t, 200).decode(t, &du)
	if du.Deleted.Name != "bob" || du.SandboxKilled || du.Workspace != workspaceKept {
		t.Errorf("deleted bob = %+v", du)
	}
}

func TestWorkspacesNotConfigured(t *testing.T) {
	e := newTestEnv(t, Options{})
	r := e.do("POST", "/api/groups/import", "application/yaml", []byte("groups:\n  alpha: [alice, bob]\n  beta: [carol]\n")).
		wantStatus(t, 200)
	if strings.Contains(string(r.body), "workspaces") {
		t.Errorf("import without sandboxes answers %s, want no workspaces", r.body)
	}
	r = e.doJSON("POST", "/api/groups/alpha/users", map[string]string{"name": "dave"}).wantStatus(t, 201)
	var u store.User
	r.decode(t, &u)
	if strings.Contains(string(r.body), "workspace") || u.Name != "dave" {
		t.Errorf("add user without sandboxes answers %s, want the user alone", r.body)
	}

	for _, path := range []string{"/api/groups/alpha/users/alice", "/api/groups/alpha/users/bob?delete_workspace=true"} {
		var du deletedUser
		e.do("DELETE", path, "", nil).wantStatus(t, 200).decode(t, &du)
		if du.SandboxKilled || du.workspaceFate != (workspaceFate{Workspace: workspaceNone}) {
			t.Errorf("DELETE %s = %+v", path, du)
		}
	}
	var dg deletedGroup
	e.do("DELETE", "/api/groups/beta?delete_workspace=1", "", nil).wantStatus(t, 200).decode(t, &dg)
	if want := []userWorkspace{{User: "carol", workspaceFate: workspaceFate{Workspace: workspaceNone}}}; dg.SandboxesKilled != 0 ||
		!slices.Equal(dg.Workspaces, want) {
		t.Errorf("deleted group = %+v, want workspaces %+v", dg, want)
	}
}

func TestDeleteWorkspaceFlagIsChecked(t *testing.T) {
	e := newTestEnv(t, Options{})
	e.do("POST", "/api/groups/import", "application/yaml", []byte("groups:\n  alpha: [alice]\n")).wantStatus(t, 200)
	for _, path := range []string{
		"/api/groups/alpha/users/alice?delete_workspace=yes",
		"/api/groups/alpha/users/alice?delete_workspace=" + url.QueryEscape("true "),
		"/api/groups/alpha?delete_workspace=2",
		"/api/groups/alpha?delete_workspace=%00",
	} {
		e.do("DELETE", path, "", nil).wantError(t, 400, "delete_workspace", "delete_workspace must be true or false")
	}
	if _, err := e.store.GetUser(context.Background(), "alpha", "alice"); err != nil {
		t.Errorf("alice after refused deletions: %v", err)
	}
	e.do("DELETE", "/api/groups/alpha/users/nobody?delete_workspace=true", "", nil).wantError(t, 404, "")
	e.do("DELETE", "/api/groups/nope?delete_workspace=false", "", nil).wantError(t, 404, "")
}

func TestEphemeralWorkspaces(t *testing.T) {
	dc, err := docker.New("unix:///nonexistent.sock")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = dc.Close() })
	st := openStore(t)
	m, err := sandboxes.NewManager(st, dc, sandboxes.Config{
		Image: dockertest.Image, Workspace: sandboxes.WorkspaceEphemeral,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	e := newTestEnv(t, Options{Store: st, Sandboxes: m})
	r := e.do("POST", "/api/groups/import", "application/yaml", []byte("groups:\n  alpha: [alice, bob]\n")).wantStatus(t, 200)
	if strings.Contains(string(r.body), "workspaces") {
		t.Errorf("import with ephemeral workspaces answers %s", r.body)
	}
	var du deletedUser
	e.do("DELETE", "/api/groups/alpha/users/alice?delete_workspace=true", "", nil).wantStatus(t, 200).decode(t, &du)
	if du.SandboxKilled || du.workspaceFate != (workspaceFate{Workspace: workspaceNone}) {
		t.Errorf("deleted user = %+v", du)
	}
}

func TestDeleteUserKillsSandbox(t *testing.T) {
	e := newSandboxEnv(t, []string{"alice", "bob", "carol"}, nil)
	g := e.group

	// Kept workspace: the sandbox goes, the volume stays.
	alice := e.launch("alice")
	if st := containerStatus(t, alice.Container); st != "running" {
		t.Fatalf("alice's container is %s", st)
	}
	var du deletedUser
	e.do("DELETE", "/api/groups/"+g+"/users/alice", "", nil).wantStatus(t, 200).decode(t, &du)
	want := workspaceFate{Workspace: workspaceKept, WorkspaceName: sandboxes.VolumeName(g, "alice")}
	if du.Deleted.Name != "alice" || !du.SandboxKilled || du.workspaceFate != want {
		t.Errorf("deleted alice = %+v, want sandbox killed and %+v", du, want)
	}
	if st := containerStatus(t, alice.Container); st != "absent" {
		t.Errorf("alice's container is %s after her deletion, want absent", st)
	}
	wantWorkspaceVolume(t, g, "alice")
	if in := e.instance(e.do("GET", fmt.Sprintf("/api/instances/%d", alice.ID), "", nil), 200); in.State != sandboxes.StateTerminated {
		t.Errorf("alice's instance = %+v, want terminated", in)
	}

	// Deleted workspace: the sandbox and the volume go.
	bob := e.launch("bob")
	wantWorkspaceVolume(t, g, "bob")
	e.do("DELETE", "/api/groups/"+g+"/users/bob?delete_workspace=true", "", nil).wantStatus(t, 200).decode(t, &du)
	want = workspaceFate{Workspace: workspaceDeleted, WorkspaceName: sandboxes.VolumeName(g, "bob")}
	if du.Deleted.Name != "bob" || !du.SandboxKilled || du.workspaceFate != want {
		t.Errorf("deleted bob = %+v, want sandbox killed and %+v", du, want)
	}
	if st := containerStatus(t, bob.Container); st != "absent" {
		t.Errorf("bob's container is %s after his deletion, want absent", st)
	}
	if _, ok := volumeLabels(t, sandboxes.VolumeName(g, "bob")); ok {
		t.Errorf("bob's volume survived delete_workspace=true")
	}

	// No sandbox: nothing to kill.
	e.do("DELETE", "/api/groups/"+g+"/users/carol?delete_workspace=false", "", nil).wantStatus(t, 200).decode(t, &du)
	if du.Deleted.Name != "carol" || du.SandboxKilled || du.Workspace != workspaceKept {
		t.Errorf("deleted carol = %+v", du)
	}
	if l := e.list("group=" + g); l.Total != 0 {
		t.Errorf("live instances after the deletions: %+v", l)
	}
	if got := dockerList(t, "container", g); len(got) != 0 {
		t.Errorf("containers of the group after the deletions: %v", got)
	}
}

func TestDeleteGroupKillsSandboxes(t *testing.T) {
	for _, del := range []bool{false, true} {
		t.Run(fmt.Sprintf("delete_workspace=%t", del), func(t *testing.T) {
			users := []string{"ann", "ben", "cat"}
			e := newSandboxEnv(t, users, nil)
			g := e.group
			e.do("POST", "/api/groups/import", "application/yaml", []byte(fmt.Sprintf("groups:\n  %s: [ann, ben, cat]\n", g))).
				wantStatus(t, 200)
			launched := []sandboxes.Instance{e.launch("ann"), e.launch("ben")}
			if got := dockerList(t, "container", g); len(got) != 2 {
				t.Fatalf("containers of the group = %v, want 2", got)
			}

			var dg deletedGroup
			e.do("DELETE", fmt.Sprintf("/api/groups/%s?delete_workspace=%t", g, del), "", nil).wantStatus(t, 200).decode(t, &dg)
			fate := workspaceKept
			if del {
				fate = workspaceDeleted
			}
			var want []userWorkspace
			for _, u := range users {
				want = append(want, userWorkspace{User: u, workspaceFate: workspaceFate{Workspace: fate, WorkspaceName: sandboxes.VolumeName(g, u)}})
			}
			if dg.Deleted.Name != g || len(dg.Deleted.Users) != 3 || dg.SandboxesKilled != 2 || !slices.Equal(dg.Workspaces, want) {
				t.Errorf("deleted group = %+v, want 2 sandboxes killed and workspaces %+v", dg, want)
			}
			for _, in := range launched {
				if st := containerStatus(t, in.Container); st != "absent" {
					t.Errorf("container %s is %s after the group's deletion, want absent", in.Container, st)
				}
			}
			if got := dockerList(t, "container", g); len(got) != 0 {
				t.Errorf("containers of the group after its deletion: %v", got)
			}
			vols := dockerList(t, "volume", g)
			if del && len(vols) != 0 {
				t.Errorf("volumes of the group after delete_workspace=true: %v", vols)
			}
			if !del {
				for _, u := range users {
					wantWorkspaceVolume(t, g, u)
				}
			}
			if l := e.list("state=all&group=" + g); l.Total != 2 || l.Instances[0].State != sandboxes.StateTerminated ||
				l.Instances[1].State != sandboxes.StateTerminated {
				t.Errorf("instances after the group's deletion: %+v", l)
			}
		})
	}
}

// FuzzDeleteFlags sends arbitrary delete_workspace values to the delete
// routes over a manager whose engine cannot be reached. Property: a value
// that is not a boolean is a 400 naming delete_workspace; nothing answers
// 5xx (no user has a sandbox, so nothing needs the engine).
func FuzzDeleteFlags(f *testing.F) {
	e := newUnreachableEnv(f, Options{})
	for _, s := range []string{"true", "false", "1", "0", "", "yes", "TRUE", "t", "\x00", "true&delete_workspace=false"} {
		f.Add(false, s)
		f.Add(true, s)
	}
	f.Fuzz(func(t *testing.T, group bool, value string) {
		path := "/api/groups/alpha/users/alice"
		if group {
			path = "/api/groups/beta"
		}
		req := httptest.NewRequest("DELETE", path+"?delete_workspace="+url.QueryEscape(value), nil)
		rec := httptest.NewRecorder()
		e.server.ServeHTTP(rec, e.authorize(req))
		var er Error
		switch rec.Code {
		case http.StatusOK, http.StatusNotFound:
		case http.StatusBadRequest:
			if err := json.Unmarshal(rec.Body.Bytes(), &er); err != nil || er.Field != "delete_workspace" {
				t.Fatalf("DELETE %s with %q: 400 not naming delete_workspace: %s", path, value, rec.Body.Bytes())
			}
		default:
			t.Fatalf("DELETE %s with %q: status %d: %s", path, value, rec.Code, rec.Body.Bytes())
		}
	})
}
