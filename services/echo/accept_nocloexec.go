//go:build unix && !((dragonfly || freebsd || illumos || linux) && !portable)

package echo

import (
	"syscall"

	"golang.org/x/sys/unix"
)

// accept is s=t.accept() for the select loop on systems without accept4
// (macOS, OpenBSD, NetBSD as golang.org/x/sys offers them): accept(2),
// then FD_CLOEXEC and O_NONBLOCK, under syscall.ForkLock as Go's net does,
// so that a child of process mode started between the calls cannot
// inherit the connection.
//
// The build tag portable compiles this file on Linux too, so that CI runs
// the tests through it (.ci/run).
func accept(t int) (int, error) {
	syscall.ForkLock.RLock()
	defer syscall.ForkLock.RUnlock()
	fd, _, err := unix.Accept(t)
	if err != nil {
		return -1, err
	}
	unix.CloseOnExec(fd)
	if err := unix.SetNonblock(fd, true); err != nil {
		unix.Close(fd)
		return -1, err
	}
	return fd, nil
}

// pipe returns a pipe whose ends are non-blocking and closed on exec, as
// accept does: how a stop wakes the select loop.
func pipe() (r, w int, err error) {
	syscall.ForkLock.RLock()
	defer syscall.ForkLock.RUnlock()
	var p [2]int
	if err := unix.Pipe(p[:]); err != nil {
		return -1, -1, err
	}
	for _, fd := range p {
		unix.CloseOnExec(fd)
		unix.SetNonblock(fd, true)
	}
	return p[0], p[1], nil
}
