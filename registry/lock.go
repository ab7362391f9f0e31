package registry

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// ErrLocked is wrapped by the error Open returns when another process
// holds the data directory.
var ErrLocked = errors.New("data directory in use")

// ErrNotLocked is returned by LockOwner when no process holds the data
// directory.
var ErrNotLocked = errors.New("data directory not in use")

// A LockedError says which process holds a data directory.
type LockedError struct {
	Dir string
	PID int // 0 if the holder had not written its pid yet
}

func (e *LockedError) Error() string {
	return fmt.Sprintf("data directory %s is in use by pid %d", e.Dir, e.PID)
}

func (e *LockedError) Unwrap() error { return ErrLocked }

// lockDir takes DIR/lock with flock(2) and writes our pid in it. flock is
// released by the kernel when the process dies, however it dies: a stale
// lock file never blocks a restart, unlike an O_EXCL pid file.
func lockDir(dir string) (*os.File, error) {
	path := filepath.Join(dir, "lock")
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("registry: lock data directory: %w", err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		defer f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, &LockedError{Dir: dir, PID: readPID(f)}
		}
		return nil, fmt.Errorf("registry: flock %s: %w", path, err)
	}
	pid := []byte(strconv.Itoa(os.Getpid()) + "\n")
	if err := f.Truncate(0); err == nil {
		_, err = f.WriteAt(pid, 0)
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("registry: write pid to %s: %w", path, err)
	}
	return f, nil
}

// LockOwner returns the pid of the process that holds the data directory
// dir, so that "annuaire stop" can signal it, or ErrNotLocked.
func LockOwner(dir string) (pid int, err error) {
	path := filepath.Join(dir, "lock")
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return 0, fmt.Errorf("registry: %s: %w", dir, ErrNotLocked)
	}
	if err != nil {
		return 0, fmt.Errorf("registry: %w", err)
	}
	defer f.Close()
	if err := unix.Flock(int(f.Fd()), unix.LOCK_SH|unix.LOCK_NB); err == nil {
		unix.Flock(int(f.Fd()), unix.LOCK_UN)
		return 0, fmt.Errorf("registry: %s: %w", dir, ErrNotLocked)
	} else if !errors.Is(err, unix.EWOULDBLOCK) {
		return 0, fmt.Errorf("registry: flock %s: %w", path, err)
	}
	// The holder writes its pid just after taking the lock: give it a moment.
	for range 20 {
		if pid = readPID(f); pid != 0 {
			return pid, nil
		}
		time.Sleep(10 * time.Millisecond)
	}
	return 0, fmt.Errorf("registry: %s is locked by a process that wrote no pid", path)
}

func readPID(f *os.File) int {
	b := make([]byte, 32)
	n, _ := f.ReadAt(b, 0)
	pid, err := strconv.Atoi(strings.TrimSpace(string(b[:n])))
	if err != nil {
		return 0
	}
	return pid
}
