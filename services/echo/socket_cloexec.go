//go:build (dragonfly || freebsd || linux || netbsd || openbsd || solaris) && !portable

package echo

import "golang.org/x/sys/unix"

// socket opens a TCP socket closed on exec, in one call (SOCK_CLOEXEC), so
// that process mode's children never inherit a listener.
func socket(family int) (int, error) {
	return unix.Socket(family, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
}
