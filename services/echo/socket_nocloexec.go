//go:build aix || darwin || (unix && portable)

package echo

import (
	"syscall"

	"golang.org/x/sys/unix"
)

// socket opens a TCP socket closed on exec. These systems have no
// SOCK_CLOEXEC: socket(2) then FD_CLOEXEC, under syscall.ForkLock as Go's
// net does, so that a process started between the two calls cannot
// inherit the socket.
//
// The build tag portable compiles this file on Linux too, so that CI runs
// the tests through it (.ci/run).
func socket(family int) (int, error) {
	syscall.ForkLock.RLock()
	defer syscall.ForkLock.RUnlock()
	t, err := unix.Socket(family, unix.SOCK_STREAM, 0)
	if err != nil {
		return -1, err
	}
	unix.CloseOnExec(t)
	return t, nil
}
