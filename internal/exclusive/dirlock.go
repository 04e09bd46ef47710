// Package exclusive keeps one thon per data directory and per listen
// address. A data directory is held with an exclusive lock (flock) on a
// file in it; a listen address is checked against the TCP sockets other
// processes listen on, since Caddy listens with SO_REUSEPORT and a second
// Caddy would share the address silently instead of failing to bind.
package exclusive

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// ErrInUse matches the errors of LockDir and CheckListen that report a
// directory or an address another process holds.
var ErrInUse = errors.New("in use by another process")

// LockFile is the name of the lock file in a data directory.
const LockFile = "thon.lock"

// DirInUseError reports a data directory another process holds. PID and
// Command are what the holder wrote into the lock file (0 and "" if it
// wrote nothing readable): the lock itself is the truth, they only inform.
type DirInUseError struct {
	Dir     string
	PID     int
	Command string
}

func (e *DirInUseError) Error() string {
	if e.PID == 0 {
		return fmt.Sprintf("data directory %s is in use by another thon (it holds the lock on %s)", e.Dir, filepath.Join(e.Dir, LockFile))
	}
	return fmt.Sprintf("data directory %s is in use by another thon: pid %d (%s)", e.Dir, e.PID, e.Command)
}

// Is makes errors.Is(err, ErrInUse) true.
func (e *DirInUseError) Is(target error) bool { return target == ErrInUse }

// DirLock is the exclusive lock of this process on a data directory.
type DirLock struct {
	dir string
	f   *os.File
}

// LockDir takes the exclusive lock on dir (creating it if need be) and
// writes this process's pid and command line into the lock file. It
// fails at once with a *DirInUseError when another process holds it. The
// lock is the open file's: it is released by Close, or when the process
// ends however it ends. Within one process a directory must be locked
// once (a second LockDir of it fails too).
func LockDir(dir string) (*DirLock, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("data directory: %w", err)
	}
	path := filepath.Join(dir, LockFile)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("data directory lock: %w", err)
	}
	if err := flock(f, syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		defer f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			e := &DirInUseError{Dir: dir}
			if b, err := os.ReadFile(path); err == nil {
				e.PID, e.Command = parseHolder(string(b))
			}
			return nil, e
		}
		return nil, fmt.Errorf("locking %s: %w", path, err)
	}
	if err := writeHolder(f); err != nil {
		_ = flock(f, syscall.LOCK_UN)
		f.Close()
		return nil, fmt.Errorf("writing %s: %w", path, err)
	}
	return &DirLock{dir: dir, f: f}, nil
}

// Dir is the locked directory.
func (l *DirLock) Dir() string { return l.dir }

// Close empties the lock file and releases the lock.
func (l *DirLock) Close() error {
	terr := l.f.Truncate(0)
	uerr := flock(l.f, syscall.LOCK_UN)
	cerr := l.f.Close()
	return errors.Join(terr, uerr, cerr)
}

// flock retries the call when a signal interrupts it.
func flock(f *os.File, how int) error {
	for {
		err := syscall.Flock(int(f.Fd()), how)
		if !errors.Is(err, syscall.EINTR) {
			return err
		}
	}
}

// writeHolder replaces the lock file's content with "<pid> <command>".
func writeHolder(f *os.File) error {
	if err := f.Truncate(0); err != nil {
		return err
	}
	line := strconv.Itoa(os.Getpid()) + " " + strings.Join(os.Args, " ") + "\n"
	if _, err := f.WriteAt([]byte(line), 0); err != nil {
		return err
	}
	return f.Sync()
}

// parseHolder reads what writeHolder wrote; 0 and "" if it is not that.
func parseHolder(s string) (int, string) {
	line, _, _ := strings.Cut(s, "\n")
	p, cmd, _ := strings.Cut(line, " ")
	pid, err := strconv.Atoi(p)
	if err != nil || pid <= 0 {
		return 0, ""
	}
	return pid, cmd
}
