//go:build unix

package atomicfile

import (
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// limitFileSize makes writes past 4 bytes fail with EFBIG, as a full disk
// would fail them with ENOSPC, for the rest of the test. The limit is the
// process's: the tests of this package do not run in parallel. (Go ignores
// the SIGXFSZ that comes with it, so the write returns the error.)
func limitFileSize(t *testing.T) {
	var old unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_FSIZE, &old); err != nil {
		t.Fatal(err)
	}
	lim := old
	lim.Cur = 4 // untyped: int64 on the BSDs, uint64 elsewhere
	if err := unix.Setrlimit(unix.RLIMIT_FSIZE, &lim); err != nil {
		t.Skipf("cannot lower RLIMIT_FSIZE: %v", err)
	}
	t.Cleanup(func() { unix.Setrlimit(unix.RLIMIT_FSIZE, &old) })
}

// A write that fails is reported, and what the file held stays whole:
// the bug of issue 12 was a pid or token write whose error was dropped.
func TestWriteFileFails(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "pid")
	if err := WriteFile(path, []byte("1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	limitFileSize(t)
	for _, write := range []struct {
		name string
		fn   func(string, []byte, os.FileMode) error
	}{{"WriteFile", WriteFile}, {"WriteNew", WriteNew}} {
		err := write.fn(path, []byte("123456789\n"), 0o600)
		if !errors.Is(err, syscall.EFBIG) {
			t.Errorf("%s past the size limit: %v, want EFBIG", write.name, err)
		}
		if got := content(t, path); got != "1\n" {
			t.Errorf("after a failed %s the file holds %q, want the old %q", write.name, got, "1\n")
		}
		onlyNames(t, dir, "pid")
	}
}
