package llm_test

import (
	"context"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/thon-dev/thon/internal/lemonadetest"
	"github.com/thon-dev/thon/llm"
)

func TestWatcherStates(t *testing.T) {
	srv := lemonadetest.New(lemonadetest.Options{APIKey: "watch-key-0123456789", Version: "10.9.1"})
	defer srv.Close()
	ctx := context.Background()

	w := llm.NewWatcher(newClient(t, srv.URL(), "watch-key-0123456789", ""), time.Hour)
	if st := w.State(); st.Status != llm.StatusUnknown || !st.LastCheck.IsZero() {
		t.Errorf("initial state = %+v", st)
	}
	if err := newClient(t, srv.URL(), "watch-key-0123456789", "").Load(ctx, llm.LoadRequest{ModelName: "user.gemma-4-31b-it"}); err != nil {
		t.Fatal(err)
	}
	st := w.Check(ctx)
	if st.Status != llm.StatusUp || st.Version != "10.9.1" || !slices.Equal(st.LoadedModels, []string{"user.gemma-4-31b-it"}) || st.LastError != "" {
		t.Errorf("up state = %+v", st)
	}
	if st.LastCheck.IsZero() || !w.State().LastCheck.Equal(st.LastCheck) {
		t.Errorf("LastCheck not recorded: %+v", w.State())
	}
	// the returned state is a copy
	st.LoadedModels[0] = "changed"
	if w.State().LoadedModels[0] != "user.gemma-4-31b-it" {
		t.Errorf("State shares its slice")
	}

	bad := llm.NewWatcher(newClient(t, srv.URL(), "wrong", ""), 0)
	if st := bad.Check(ctx); st.Status != llm.StatusUnauthorized || !strings.Contains(st.LastError, "rejected the API key") {
		t.Errorf("unauthorized state = %+v", st)
	}

	srv.Close()
	st = w.Check(ctx)
	if st.Status != llm.StatusDown || !strings.Contains(st.LastError, srv.URL()) || st.Version != "10.9.1" || len(st.LoadedModels) != 0 {
		t.Errorf("down state = %+v", st)
	}
}

func TestWatcherRunConcurrent(t *testing.T) {
	srv := lemonadetest.Start(t, lemonadetest.Options{})
	w := llm.NewWatcher(newClient(t, srv.URL(), "", ""), time.Millisecond)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		w.Run(ctx)
		close(done)
	}()
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for w.State().Status != llm.StatusUp {
				time.Sleep(time.Millisecond)
			}
			for range 50 {
				_ = w.State()
			}
		}()
	}
	wg.Wait()
	cancel()
	<-done
	if st := w.State(); st.Status != llm.StatusUp {
		t.Errorf("state after Run = %+v", st)
	}
	// a check cut short by its context records nothing
	before := w.State()
	dead, stop := context.WithCancel(context.Background())
	stop()
	if st := w.Check(dead); st.LastCheck != before.LastCheck || st.Status != before.Status {
		t.Errorf("cancelled check changed the state: %+v -> %+v", before, st)
	}
}
