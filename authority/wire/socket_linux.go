//go:build !portable

package wire

import (
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// A udpSocket is the batched readers' own descriptor of the socket, out
// of the runtime's poller (see detach). It serves as the readers' RawConn
// and as the socket the full path writes its answers to.
//
// Every net.UDPConn is registered with the runtime's epoll set, and epoll
// keeps an entry on the socket's wait queue for as long as it is: each
// datagram queued to the socket then runs epoll's callback, under the
// queue's lock, in the system call of whoever delivered it. Over loopback
// that is the client's sendto(2): with the socket in an epoll set, a
// client's sendto cost 0.10 to 0.19 µs more (3.3–4.7 µs, a microbenchmark
// with the socket drained on the other CPU), and dnsperf spent 3% of its
// CPU in sock_def_readable, 0.5% once out (perf record, 5 Dec 2026). The
// readers do not need the poller: under load they take their pauses in
// raw sleeps and their short waits in recvmmsg itself (see lingerOn),
// and the rest they wait in ppoll(2), which joins the wait queue only
// while it waits. In six alternating pairs on the quiet machine
// (bench/run.sh updates, 15:21 and 15:31 on 5 Dec) dnsperf got more
// queries/s in five: 110–157k against 104–145k.
//
// What it costs: a reader waiting in ppoll keeps its P until the
// runtime's monitor takes it back, 20 µs or more, where parked in the
// poller it gave it up at once; the rest of the process (the API's
// writes) waits that long when datagrams pause. Under 1,000 API writes/s
// reads kept 0.92 and 0.93 of their rate without them (medians of three
// pairs), against 0.94 and 0.90 with the poller, in the same runs.
type udpSocket struct {
	fd     int
	family int // of the socket, for the addresses WriteTo is given
	laddr  net.Addr

	// mu is held for reading by each use of fd, for writing by Close,
	// which closes fd only once no system call may still use it (the
	// number could otherwise be another file's by then).
	mu     sync.RWMutex
	closed atomic.Bool
	once   sync.Once
}

// detach gives the socket of conn, whose raw connection is raw, a
// descriptor of its own and closes conn, which takes the socket out of
// the runtime's poller; the socket stays open through the new
// descriptor. On an error conn is left as it was.
func detach(conn *net.UDPConn, raw syscall.RawConn) (*udpSocket, error) {
	fd, err := -1, error(nil)
	if cerr := raw.Control(func(s uintptr) { fd, err = unix.FcntlInt(s, unix.F_DUPFD_CLOEXEC, 0) }); cerr != nil {
		return nil, cerr
	}
	if err != nil {
		return nil, err
	}
	sa, err := unix.Getsockname(fd)
	if err != nil {
		unix.Close(fd)
		return nil, err
	}
	s := &udpSocket{fd: fd, family: unix.AF_INET, laddr: conn.LocalAddr()}
	if _, ok := sa.(*unix.SockaddrInet6); ok {
		s.family = unix.AF_INET6
	}
	conn.Close()
	return s, nil
}

// Control, Read and Write make s a syscall.RawConn: Read and Write call
// f until it reports done, waiting in ppoll(2) between calls. ppoll
// goes through the runtime's Syscall, so its thread gives up its P
// while it waits.
func (s *udpSocket) Control(f func(fd uintptr)) error {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed.Load() {
		return net.ErrClosed
	}
	f(uintptr(s.fd))
	return nil
}

func (s *udpSocket) Read(f func(fd uintptr) bool) error { return s.wait(f, unix.POLLIN) }

func (s *udpSocket) Write(f func(fd uintptr) bool) error { return s.wait(f, unix.POLLOUT) }

func (s *udpSocket) wait(f func(fd uintptr) bool, events int16) error {
	for {
		s.mu.RLock()
		if s.closed.Load() {
			s.mu.RUnlock()
			return net.ErrClosed
		}
		done := f(uintptr(s.fd))
		if !done {
			// Close shuts the socket down before it waits for mu: a
			// shut socket is always ready, so this cannot miss it.
			fds := [1]unix.PollFd{{Fd: int32(s.fd), Events: events}}
			unix.Ppoll(fds[:], nil, nil) // an error (EINTR) only means: try again
		}
		s.mu.RUnlock()
		if done {
			return nil
		}
	}
}

// WriteTo sends one datagram to addr, a *net.UDPAddr: the full path's
// answers.
func (s *udpSocket) WriteTo(p []byte, addr net.Addr) (int, error) {
	ua, ok := addr.(*net.UDPAddr)
	if !ok {
		return 0, &net.OpError{Op: "write", Net: "udp", Source: s.laddr, Addr: addr, Err: syscall.EINVAL}
	}
	sa, err := s.sockaddr(ua)
	if err != nil {
		return 0, &net.OpError{Op: "write", Net: "udp", Source: s.laddr, Addr: addr, Err: err}
	}
	var errno error
	err = s.Write(func(fd uintptr) bool {
		errno = unix.Sendto(int(fd), p, unix.MSG_DONTWAIT, sa)
		return errno != unix.EAGAIN && errno != unix.EINTR
	})
	if err == nil {
		err = errno
	}
	if err != nil {
		return 0, &net.OpError{Op: "write", Net: "udp", Source: s.laddr, Addr: addr, Err: err}
	}
	return len(p), nil
}

// sockaddr is addr in the socket's family: an IPv4 address is mapped
// into IPv6 for an IPv6 socket, as net does.
func (s *udpSocket) sockaddr(addr *net.UDPAddr) (unix.Sockaddr, error) {
	ap := addr.AddrPort()
	ip := ap.Addr()
	if s.family == unix.AF_INET6 {
		return &unix.SockaddrInet6{Port: int(ap.Port()), Addr: ip.As16()}, nil
	}
	if ip = ip.Unmap(); !ip.Is4() {
		return nil, syscall.EAFNOSUPPORT
	}
	return &unix.SockaddrInet4{Port: int(ap.Port()), Addr: ip.As4()}, nil
}

func (s *udpSocket) LocalAddr() net.Addr { return s.laddr }

// ReadFrom is never called: the readers take every datagram (slowConn
// has its own ReadFrom).
func (s *udpSocket) ReadFrom([]byte) (int, net.Addr, error) {
	return 0, nil, errors.New("wire: the batched readers take the datagrams")
}

// Deadlines do not apply: the readers wait until Close, the full path's
// writes never block for long on a datagram socket.
func (s *udpSocket) SetDeadline(time.Time) error      { return nil }
func (s *udpSocket) SetReadDeadline(time.Time) error  { return nil }
func (s *udpSocket) SetWriteDeadline(time.Time) error { return nil }

// Close shuts the socket down, which wakes whoever waits on it (ppoll,
// and recvmmsg in its linger), then closes it once they have left.
func (s *udpSocket) Close() error {
	err := net.ErrClosed
	s.once.Do(func() {
		s.closed.Store(true)
		// ENOTCONN for a socket with no peer, but it is shut down and
		// its waiters woken all the same.
		unix.Shutdown(s.fd, unix.SHUT_RDWR)
		s.mu.Lock()
		err = unix.Close(s.fd)
		s.mu.Unlock()
	})
	return err
}
