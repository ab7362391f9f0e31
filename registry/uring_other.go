//go:build !linux || portable

package registry

import (
	"errors"
	"os"
)

// uring is Linux's io_uring (uring_linux.go). Elsewhere newURing has none
// to give, and the journal writes and syncs in its own system calls.
//
// The build tag portable compiles this file on Linux too, so that CI runs
// the tests through it (.ci/run).
type uring struct{}

func newURing() (*uring, error) { return nil, errors.New("io_uring is Linux's") }

// writeSync is the plain write and sync, for the type to be complete;
// the journal never calls it, as newURing returns no ring.
func (*uring) writeSync(f *os.File, buf []byte, off int64) error {
	if _, err := f.WriteAt(buf, off); err != nil {
		return err
	}
	return fdatasync(f)
}

func (*uring) close() {}
