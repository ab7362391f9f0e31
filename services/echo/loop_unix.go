//go:build unix

package echo

import (
	"errors"
	"fmt"
	"net"
	"os"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// What the two single-goroutine designs share, select (select_unix.go) and
// epoll (epoll_linux.go): sockets made non-blocking, and for each client
// the bytes read and not yet sent back. Only the waiting differs.

// loopBufSize bounds what one connection may have read but not yet sent
// back. A client that sends but does not read fills its buffer; the loop
// stops reading from it until the buffer drains, and TCP's flow control
// then slows that client alone.
const loopBufSize = 64 << 10

// loopConn is one client of a select or epoll loop.
type loopConn struct {
	fd         int
	buf        []byte
	start, end int       // buf[start:end] is read and not yet sent back
	eof        bool      // nothing more to read: the client sent FIN, or we are draining
	last       time.Time // last progress, for the idle timeout
}

func newLoopConn(fd int) *loopConn {
	return &loopConn{fd: fd, buf: make([]byte, loopBufSize), last: time.Now()}
}

// wantsRecv reports whether c is to be read: not at its end, and with room.
func (c *loopConn) wantsRecv() bool { return !c.eof && c.end < len(c.buf) }

// pending reports whether c holds bytes to send back.
func (c *loopConn) pending() bool { return c.end > c.start }

// done reports whether c can be closed: everything read was sent back, and
// nothing more comes.
func (c *loopConn) done() bool { return c.eof && !c.pending() }

// recv is s.recv(): it reads what fits in c's buffer, and reports whether
// anything moved (bytes, or the client's end of file) and an error that
// ends the connection.
func (c *loopConn) recv() (bool, error) {
	n, _, err := unix.Recvfrom(c.fd, c.buf[c.end:], 0)
	switch {
	case n > 0:
		c.end += n
		return true, nil
	case err == nil:
		c.eof = true // the client shut down its sending side
		return true, nil
	case errors.Is(err, unix.EAGAIN), errors.Is(err, unix.EINTR):
		return false, nil
	}
	return false, err
}

// send is s.send(): it sends what c's buffer holds, as much as the socket
// takes, and reports whether anything moved and an error that ends the
// connection.
func (c *loopConn) send() (bool, error) {
	// MSG_NOSIGNAL: a client gone away is an EPIPE, not a SIGPIPE.
	n, err := unix.SendmsgN(c.fd, c.buf[c.start:c.end], nil, nil, unix.MSG_NOSIGNAL)
	if n > 0 {
		c.start += n
	}
	if c.start == c.end {
		c.start, c.end = 0, 0
	} else if c.end == len(c.buf) {
		c.end = copy(c.buf, c.buf[c.start:c.end]) // make room to read again
		c.start = 0
	}
	if err != nil && !errors.Is(err, unix.EAGAIN) && !errors.Is(err, unix.EINTR) {
		return n > 0, err
	}
	return n > 0, nil
}

// closed reports whether c is closed, without waiting.
func closed(c <-chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}

// dupFD returns a descriptor of its own for ln's socket, so that the loop
// can call accept on it directly. It shares the socket's O_NONBLOCK with
// Go's descriptor, so an accept never waits.
func dupFD(ln net.Listener) (int, error) {
	sc, ok := ln.(syscall.Conn)
	if !ok {
		return -1, fmt.Errorf("echo: a loop over descriptors needs a socket listener, not %T", ln)
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return -1, err
	}
	fd, dupErr := -1, error(nil)
	err = rc.Control(func(u uintptr) {
		fd, dupErr = unix.FcntlInt(u, unix.F_DUPFD_CLOEXEC, 0)
	})
	if err == nil {
		err = dupErr
	}
	if err != nil {
		return -1, os.NewSyscallError("dup", err)
	}
	return fd, nil
}
