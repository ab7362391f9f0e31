package registry

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
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

// lockDir takes DIR/lock and writes our pid in it. The lock (flock(2) on
// Unix, LockFileEx on Windows) is released by the system when the process
// dies, however it dies: a stale lock file never blocks a restart, unlike
// an O_EXCL pid file.
//
// The pid is written in place, not through atomicfile: the lock belongs to
// this very file, and a file renamed over it would be another, unlocked
// one. The pid is a whole line, and readPID takes nothing less; a failed
// write fails Open, so the file never names a process that is not the
// holder.
func lockDir(dir string) (*os.File, error) {
	path := filepath.Join(dir, "lock")
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("registry: lock data directory: %w", err)
	}
	held, err := tryLock(f)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("registry: lock %s: %w", path, err)
	}
	if held {
		defer f.Close()
		return nil, &LockedError{Dir: dir, PID: readPID(f)}
	}
	if err := writePID(f, os.Getpid()); err != nil {
		f.Close() // and the lock with it
		return nil, fmt.Errorf("registry: write pid to %s: %w", path, err)
	}
	return f, nil
}

func writePID(f *os.File, pid int) error {
	if err := f.Truncate(0); err != nil {
		return err
	}
	_, err := f.WriteAt([]byte(strconv.Itoa(pid)+"\n"), 0)
	return err
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
	held, err := isLocked(f)
	if err != nil {
		return 0, fmt.Errorf("registry: lock %s: %w", path, err)
	}
	if !held {
		return 0, fmt.Errorf("registry: %s: %w", dir, ErrNotLocked)
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

// readPID reads the holder's pid, or 0 until it has written a whole line.
func readPID(f *os.File) int {
	b := make([]byte, 32)
	n, _ := f.ReadAt(b, 0)
	line, ok := strings.CutSuffix(string(b[:n]), "\n")
	if !ok {
		return 0
	}
	pid, err := strconv.Atoi(line)
	if err != nil || pid <= 0 {
		return 0
	}
	return pid
}
