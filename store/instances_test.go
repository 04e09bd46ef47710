package store

import (
	"context"
	"errors"
	"testing"
	"time"
)

func TestInstanceLifecycle(t *testing.T) {
	s := openTest(t)
	ctx := context.Background()
	exp := time.Now().Add(time.Hour).UTC().Truncate(time.Microsecond)
	a, err := s.CreateInstance(ctx, InstanceRecord{Group: "alpha", User: "alice", Name: "thon-alpha-alice", State: "starting", Port: 8443, ExpiresAt: &exp})
	if err != nil {
		t.Fatal(err)
	}
	if a.ID == 0 {
		t.Fatal("no id")
	}
	// The same port, or a second live instance of alice, is a conflict.
	if _, err := s.CreateInstance(ctx, InstanceRecord{Group: "beta", User: "bob", State: "starting", Port: 8443}); !errors.Is(err, ErrConflict) {
		t.Errorf("port reuse: %v", err)
	}
	if _, err := s.CreateInstance(ctx, InstanceRecord{Group: "alpha", User: "alice", State: "starting", Port: 8444}); !errors.Is(err, ErrConflict) {
		t.Errorf("second live instance: %v", err)
	}
	if _, err := s.CreateInstance(ctx, InstanceRecord{Group: "Bad Name", User: "x", State: "starting", Port: 9000}); err == nil {
		t.Error("bad group name accepted")
	}
	live, err := s.LiveInstance(ctx, "alpha", "alice")
	if err != nil || live.ID != a.ID || live.ExpiresAt == nil || !live.ExpiresAt.Equal(exp) {
		t.Fatalf("live = %+v, %v", live, err)
	}
	up, err := s.UpdateInstance(ctx, a.ID, "instance.running", func(r *InstanceRecord) error {
		r.State, r.ContainerID = "running", "abc"
		return nil
	})
	if err != nil || up.State != "running" || up.ContainerID != "abc" {
		t.Fatalf("update = %+v, %v", up, err)
	}
	// A failed change leaves the record alone.
	if _, err := s.UpdateInstance(ctx, a.ID, "x", func(r *InstanceRecord) error { r.State = "bogus"; return errors.New("no") }); err == nil {
		t.Error("change error not returned")
	}
	if g, _ := s.GetInstance(ctx, a.ID); g.State != "running" {
		t.Errorf("state after failed change = %s", g.State)
	}
	used, err := s.UsedPorts(ctx)
	if err != nil || !used[8443] {
		t.Errorf("used ports = %v, %v", used, err)
	}
	expired, err := s.ExpiredInstances(ctx, exp.Add(time.Second))
	if err != nil || len(expired) != 1 {
		t.Errorf("expired = %v, %v", expired, err)
	}
	term, err := s.TerminateInstance(ctx, a.ID)
	if err != nil || term.State != StateTerminated || term.Port != 0 || term.TerminatedAt == nil {
		t.Fatalf("terminate = %+v, %v", term, err)
	}
	// The port and the user are free again.
	b, err := s.CreateInstance(ctx, InstanceRecord{Group: "alpha", User: "alice", State: "starting", Port: 8443})
	if err != nil {
		t.Fatalf("relaunch after terminate: %v", err)
	}
	list, total, err := s.ListInstances(ctx, InstanceFilter{Live: true})
	if err != nil || total != 1 || len(list) != 1 || list[0].ID != b.ID {
		t.Errorf("live list = %+v, %d, %v", list, total, err)
	}
	all, total, err := s.ListInstances(ctx, InstanceFilter{Group: "alpha", Limit: 1})
	if err != nil || total != 2 || len(all) != 1 {
		t.Errorf("paged list = %+v, %d, %v", all, total, err)
	}
	byState, _, err := s.ListInstances(ctx, InstanceFilter{States: []string{StateTerminated}})
	if err != nil || len(byState) != 1 || byState[0].ID != a.ID {
		t.Errorf("by state = %+v, %v", byState, err)
	}
	if err := s.DeleteInstance(ctx, b.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := s.GetInstance(ctx, b.ID); !errors.Is(err, ErrNotFound) {
		t.Errorf("deleted instance: %v", err)
	}
}

// TestInstanceRestartsAndExit keeps what the engine did to a sandbox:
// the restarts, the last exit and whether it is kept paused.
func TestInstanceRestartsAndExit(t *testing.T) {
	s := openTest(t)
	ctx := context.Background()
	started := time.Date(2026, 5, 1, 10, 0, 0, 123456789, time.UTC)
	a, err := s.CreateInstance(ctx, InstanceRecord{Group: "alpha", User: "alice", State: "running", Port: 8443, StartedAt: &started})
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := s.GetInstance(ctx, a.ID); got.Restarts != 0 || got.LastExit != nil || got.KeepPaused ||
		got.StartedAt == nil || !got.StartedAt.Equal(started) {
		t.Fatalf("new instance: restarts %d exit %+v keep %v started %v", got.Restarts, got.LastExit, got.KeepPaused, got.StartedAt)
	}
	exited := started.Add(time.Minute)
	restarted := exited.Add(time.Second)
	if _, err := s.UpdateInstance(ctx, a.ID, "", func(r *InstanceRecord) error {
		r.Restarts++
		r.StartedAt = &restarted
		r.LastExit = &InstanceExit{Code: 137, OOMKilled: true, Error: "port is already allocated", At: exited}
		r.KeepPaused = true
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	got, err := s.GetInstance(ctx, a.ID)
	if err != nil {
		t.Fatal(err)
	}
	want := InstanceExit{Code: 137, OOMKilled: true, Error: "port is already allocated", At: exited}
	if got.Restarts != 1 || got.LastExit == nil || *got.LastExit != want || !got.KeepPaused || !got.StartedAt.Equal(restarted) {
		t.Errorf("after update: restarts %d exit %+v keep %v started %v", got.Restarts, got.LastExit, got.KeepPaused, got.StartedAt)
	}
	// Terminating keeps the history.
	term, err := s.TerminateInstance(ctx, a.ID)
	if err != nil || term.Restarts != 1 || term.LastExit == nil || term.LastExit.Code != 137 {
		t.Errorf("terminated: %+v %v", term, err)
	}
}
