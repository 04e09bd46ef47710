package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/thon-dev/thon/sandboxes"
	"github.com/thon-dev/thon/sandboxes/docker"
	"github.com/thon-dev/thon/store"
)

// measureThon starts a fresh group of n users with thon's sandbox manager,
// StartGroup then WaitOperation, in a fresh database. The manager reports
// a sandbox done only once its /healthz answered; every port is checked
// once more afterwards, outside the timing.
func measureThon(ctx context.Context, cl *cleaner, dc *docker.Client, lim limits, w loadedWorkload, n, concurrency int, log *slog.Logger) (measurement, error) {
	dir, err := os.MkdirTemp("", "thon-bench-")
	if err != nil {
		return measurement{}, err
	}
	defer os.RemoveAll(dir)
	st, err := store.Open(ctx, filepath.Join(dir, "thon.db"))
	if err != nil {
		return measurement{}, err
	}
	defer st.Close()

	group := newName("bt")
	r := store.Roster{Groups: []store.RosterGroup{{Name: group}}}
	for i := range n {
		u := fmt.Sprintf("user%d", i)
		r.Groups[0].Users = append(r.Groups[0].Users, store.RosterUser{Name: u, Email: u + "@example.com"})
	}
	if _, err := st.ImportRoster(ctx, r); err != nil {
		return measurement{}, err
	}
	base := portBase(n)
	m, err := sandboxes.NewManager(st, dc, sandboxes.Config{
		Image:        lim.image,
		PortStart:    base,
		PortEnd:      base + n + portSlack - 1,
		Workspace:    sandboxes.WorkspaceVolume,
		MemoryBytes:  lim.memory,
		NanoCPUs:     lim.nanoCPUs,
		PidsLimit:    lim.pids,
		Concurrency:  concurrency,
		ReadyTimeout: lim.readyWait,
		Logger:       log,
		// The original workload: the files as an organiser passes them
		// (--kilo, --vscode-settings), read and filled in per sandbox.
		KiloFile:           w.kilo,
		VSCodeSettingsFile: w.settings,
	})
	if err != nil {
		return measurement{}, err
	}
	cl.add(group)
	defer cl.remove(group)

	start, cpu0 := time.Now(), busyCPU()
	op, err := m.StartGroup(ctx, group)
	if err != nil {
		return measurement{}, err
	}
	done, err := m.WaitOperation(ctx, op.ID)
	elapsed, cpu := time.Since(start), busyCPU()-cpu0
	if err != nil {
		if ctx.Err() == nil {
			return measurement{}, err
		}
		// The operation runs on without ctx: let the launches end so that
		// the cleanup finds every container, unless asked again to stop.
		fmt.Fprintln(os.Stderr, "interrupted: letting thon's launches end, then cleaning up (interrupt again to clean up now)")
		wctx, wstop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		_, _ = m.WaitOperation(wctx, op.ID)
		wstop()
		return measurement{}, ctx.Err()
	}
	if done.Failed > 0 {
		var errs []error
		for _, res := range done.Results {
			if !res.OK {
				errs = append(errs, fmt.Errorf("%s: %s", res.User, res.Error))
			}
		}
		return measurement{}, fmt.Errorf("%d of %d sandboxes failed: %w", done.Failed, n, errors.Join(errs...))
	}

	list, total, err := m.List(ctx, sandboxes.ListFilter{Group: group, PerPage: 500})
	if err != nil {
		return measurement{}, err
	}
	if total != n {
		return measurement{}, fmt.Errorf("%d sandboxes recorded, want %d", total, n)
	}
	ports := make([]int, 0, len(list))
	for _, in := range list {
		if in.State != sandboxes.StateRunning {
			return measurement{}, fmt.Errorf("sandbox %s is %s after the operation, not running", in.User, in.State)
		}
		ports = append(ports, in.Port)
	}
	if err := checkHealthy(ctx, ports); err != nil {
		return measurement{}, err
	}
	last := list[len(list)-1]
	if err := checkFiles(ctx, w, last.Port, last.User); err != nil {
		return measurement{}, err
	}
	return measurement{workload: w.name, n: n, side: "thon", concurrency: concurrency, elapsed: elapsed, cpu: cpu}, nil
}
