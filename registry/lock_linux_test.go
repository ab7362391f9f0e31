package registry

import (
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// A lock file whose pid cannot be written fails Open. Before, the error
// was dropped (a shadowed err): the server ran with the previous holder's
// pid in the file, and "annuaire stop" signalled that stale pid. A FIFO
// takes the lock but cannot be truncated (EINVAL), like a file whose
// write fails on a full disk.
func TestLockPIDWriteFails(t *testing.T) {
	dir := t.TempDir()
	if err := unix.Mkfifo(filepath.Join(dir, "lock"), 0o600); err != nil {
		t.Skipf("mkfifo: %v", err)
	}
	r, err := Open(dir, Options{})
	if err == nil {
		r.Close()
		t.Fatal("Open succeeded with a lock file that holds no pid")
	}
	if !strings.Contains(err.Error(), "write pid") {
		t.Errorf("Open: %v, want the pid write's error", err)
	}
	// The failed Open let the lock go: a second one fails the same way,
	// not with ErrLocked.
	if _, err := Open(dir, Options{}); err == nil || !strings.Contains(err.Error(), "write pid") {
		t.Errorf("second Open: %v, want the pid write's error again", err)
	}
}
