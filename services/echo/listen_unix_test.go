//go:build unix

package echo

import (
	"testing"

	"golang.org/x/sys/unix"
)

// The listening socket is closed on exec from its first instant, so that
// a child of process mode started meanwhile cannot inherit it (with the
// portable build tag, through macOS's two calls under the fork lock).
func TestSocketCloseOnExec(t *testing.T) {
	fd, err := socket(unix.AF_INET)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	flags, err := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0)
	if err != nil {
		t.Fatal(err)
	}
	if flags&unix.FD_CLOEXEC == 0 {
		t.Errorf("socket flags %#x: FD_CLOEXEC not set", flags)
	}
}
