//go:build unix

package main

import (
	"errors"
	"io"
	"net"
	"syscall"
	"unsafe"
)

// sock reads and writes a connection with raw system calls, leaving the
// waiting to the runtime's poller as net does. A plain Read or Write goes
// through entersyscall, which wakes the runtime's sysmon thread from its
// deep sleep and has it poll every 20 µs, taking the P from a write that
// lasts longer than that and waking another thread to hold it. At a write
// a millisecond that was 4 of the 5.4 context switches per write and more
// than half of churn's CPU; raw calls bring it to about 1.4. The socket is
// non-blocking, so each call returns at once, as RawSyscall requires.
type sock struct {
	rc    syscall.RawConn
	buf   []byte
	n     int
	errno syscall.Errno

	// the callbacks, made once so that passing them allocates nothing
	readFD, writeFD func(fd uintptr) bool
}

func newSock(nc net.Conn) (*sock, error) {
	sc, ok := nc.(syscall.Conn)
	if !ok {
		return nil, errors.New("connection without a file descriptor")
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return nil, err
	}
	s := &sock{rc: rc}
	s.readFD = s.read
	s.writeFD = s.write
	return s, nil
}

// read is one read(2) into s.buf; false asks the poller to wait until the
// socket is readable.
func (s *sock) read(fd uintptr) bool {
	for {
		n, _, e := syscall.RawSyscall(syscall.SYS_READ, fd, uintptr(unsafe.Pointer(unsafe.SliceData(s.buf))), uintptr(len(s.buf)))
		switch e {
		case syscall.EINTR:
			continue
		case syscall.EAGAIN:
			return false
		}
		s.n, s.errno = int(n), e
		return true
	}
}

// write sends all of s.buf, waiting for room if it must.
func (s *sock) write(fd uintptr) bool {
	for len(s.buf) > 0 {
		n, _, e := syscall.RawSyscall(syscall.SYS_WRITE, fd, uintptr(unsafe.Pointer(unsafe.SliceData(s.buf))), uintptr(len(s.buf)))
		switch e {
		case 0:
			s.buf = s.buf[n:]
		case syscall.EINTR:
		case syscall.EAGAIN:
			return false
		default:
			s.errno = e
			return true
		}
	}
	return true
}

func (s *sock) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	s.buf, s.n, s.errno = p, 0, 0
	err := s.rc.Read(s.readFD)
	s.buf = nil
	switch {
	case err != nil:
		return 0, err
	case s.errno != 0:
		return 0, s.errno
	case s.n == 0:
		return 0, io.EOF
	}
	return s.n, nil
}

func (s *sock) Write(p []byte) (int, error) {
	s.buf, s.errno = p, 0
	err := s.rc.Write(s.writeFD)
	n := len(p) - len(s.buf)
	s.buf = nil
	if err == nil && s.errno != 0 {
		err = s.errno
	}
	return n, err
}
