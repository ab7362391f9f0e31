package registry

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// A pid cut short ("12" of "1234\n", as a reader racing the holder's write
// could see it, or as a write that failed half-way leaves it) is no pid:
// "annuaire stop" must not signal pid 12.
func TestLockOwnerPartialPID(t *testing.T) {
	dir := t.TempDir()
	held, err := lockDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	if err := os.WriteFile(filepath.Join(dir, "lock"), []byte("12"), 0o600); err != nil {
		t.Fatal(err)
	}
	pid, err := LockOwner(dir)
	if err == nil || !strings.Contains(err.Error(), "wrote no pid") {
		t.Errorf("LockOwner with a partial pid = %d, %v; want the error that no pid was written", pid, err)
	}
}
