package store

import (
	"context"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
)

// TestConcurrentWriters runs many goroutines that write (and read) at once;
// none may fail with SQLITE_BUSY or any other error.
func TestConcurrentWriters(t *testing.T) {
	s := openTest(t)
	ctx := context.Background()
	const workers, perWorker = 20, 5
	var wg sync.WaitGroup
	errs := make(chan error, workers*perWorker*4)
	for w := range workers {
		wg.Go(func() {
			group := fmt.Sprintf("g%d", w)
			if _, err := s.CreateGroup(ctx, group, ""); err != nil {
				errs <- err
				return
			}
			for i := range perWorker {
				if _, err := s.AddUser(ctx, group, RosterUser{Name: fmt.Sprintf("u%d", i)}); err != nil {
					errs <- err
				}
				if err := s.SetSetting(ctx, fmt.Sprintf("k%d", w), fmt.Sprint(i)); err != nil {
					errs <- err
				}
				if _, err := s.ListGroups(ctx); err != nil {
					errs <- err
				}
			}
			// the same shared roster from every worker: imports serialise
			if _, err := s.ImportRoster(ctx, exampleRoster); err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	users, err := s.ListUsers(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if want := workers*perWorker + 6; len(users) != want {
		t.Errorf("%d users, want %d", len(users), want)
	}
}

// TestTwoStoresOneFile writes through two Stores on the same file, as two
// processes (or two configs during a reload) would: SQLite's locking with
// BEGIN IMMEDIATE and busy_timeout makes them wait for each other.
func TestTwoStoresOneFile(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "thon.db")
	a, err := Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b, err := Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	var wg sync.WaitGroup
	errs := make(chan error, 100)
	for i, s := range []*Store{a, b, a, b} {
		wg.Go(func() {
			group := fmt.Sprintf("s%d", i)
			if _, err := s.CreateGroup(ctx, group, ""); err != nil {
				errs <- err
				return
			}
			for j := range 5 {
				if _, err := s.AddUser(ctx, group, RosterUser{Name: fmt.Sprintf("u%d", j)}); err != nil {
					errs <- err
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	users, err := a.ListUsers(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(users) != 20 {
		t.Errorf("%d users, want 20", len(users))
	}
}
