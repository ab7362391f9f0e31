//go:build (dragonfly || freebsd || illumos || linux) && !portable

package echo

import "golang.org/x/sys/unix"

// accept is s=t.accept() for the select and epoll loops: the connection
// comes non-blocking and closed on exec, in one call (accept4), so that a
// child of process mode started meanwhile cannot inherit it.
func accept(t int) (int, error) {
	fd, _, err := unix.Accept4(t, unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC)
	return fd, err
}

// pipe returns a pipe whose ends are non-blocking and closed on exec, in
// one call (pipe2): how a stop wakes the select loop.
func pipe() (r, w int, err error) {
	var p [2]int
	err = unix.Pipe2(p[:], unix.O_NONBLOCK|unix.O_CLOEXEC)
	return p[0], p[1], err
}
