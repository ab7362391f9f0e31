//go:build unix

package echo

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"time"

	"github.com/annuaire/annuaire/internal/lograte"
	"golang.org/x/sys/unix"
)

// selectUnsupported is empty: every Unix system has select(2).
const selectUnsupported = ""

// serveSelect is the course's last slide on the server side: one goroutine
// waits in select(2) on the listening socket t and every connection s at
// once, then calls accept, recv or send only on a socket select reported
// ready, so that no call waits:
//
//	t=socket(); t.bind(); t.listen()         → Listen (listen_unix.go)
//	loop:
//	    liste_lectures  = [t, s1, s2 ...]      t, and each s with room in its buffer
//	    liste_ecritures = [s ...]              each s with bytes to send back
//	    readers, writers, errors =
//	        select.select(liste_lectures, liste_ecritures, [], delai)
//	    t in readers → s=t.accept(), and watch s
//	    s in readers → s.recv() into s's buffer, then s.send() what it can
//	    s in writers → s.send() the rest
//
// The lists are select(2)'s FD_SETs, bitmaps of descriptors that the loop
// rebuilds, and the kernel scans up to the highest, at every call. They
// have FD_SETSIZE bits (1024): a connection whose descriptor is past them
// cannot be watched, so it is closed at once and the client sees its
// connection end. epoll (epoll_linux.go) is Linux's answer to both
// limits. delai is the time left before the next client goes idle.
//
// One more descriptor is in the read list: a pipe, which a stop writes to
// so that select returns (the self-pipe trick).
func (s *Server) serveSelect(ln net.Listener) error {
	t, err := dupFD(ln)
	if err != nil {
		return err
	}
	l := &selectLoop{s: s, t: t, wake: -1, conns: make(map[int]*loopConn)}
	defer l.closeAll()
	wakeW := -1
	if l.wake, wakeW, err = pipe(); err != nil {
		return os.NewSyscallError("pipe", err)
	}
	if top := max(l.t, l.wake); top >= unix.FD_SETSIZE {
		unix.Close(wakeW)
		return fmt.Errorf("echo: select mode: descriptor %d is past select(2)'s FD_SETSIZE (%d)", top, unix.FD_SETSIZE)
	}
	// A stop or a forced stop wakes the loop. The pipe's writing end is
	// closed only after done, when no stop can write to it any more: its
	// number may be reused once closed.
	wake := func() { unix.Write(wakeW, []byte{1}) }
	done, ok := s.drain.Add(wake, wake)
	if !ok {
		unix.Close(wakeW)
		return net.ErrClosed
	}
	defer func() {
		l.closeAll() // the connections first: Shutdown returns once they are closed
		done()
		unix.Close(wakeW)
	}()

	drain, force := s.drain.Started(), s.drain.Forced()
	for {
		if closed(force) {
			return net.ErrClosed
		}
		if closed(drain) {
			l.stopAccepting()
			if len(l.conns) == 0 {
				return net.ErrClosed
			}
		}
		var lectures, ecritures unix.FdSet
		lectures.Set(l.wake)
		top := l.wake
		if l.t >= 0 && len(l.conns) < s.maxConns() {
			lectures.Set(l.t) // at MaxConns, new clients wait in the listen queue
			top = max(top, l.t)
		}
		for fd, c := range l.conns {
			if c.wantsRecv() {
				lectures.Set(fd)
			}
			if c.pending() {
				ecritures.Set(fd)
			}
			top = max(top, fd)
		}
		_, err := unix.Select(top+1, &lectures, &ecritures, nil, l.delai(time.Now())) // select.select(...)
		if err != nil {
			if errors.Is(err, unix.EINTR) {
				continue
			}
			return os.NewSyscallError("select", err)
		}
		if lectures.IsSet(l.wake) {
			var b [16]byte
			unix.Read(l.wake, b[:])
		}
		for fd, c := range l.conns {
			l.serve(c, lectures.IsSet(fd))
		}
		// Accept after the connections: a descriptor closed above may be
		// reused by accept, and must not get its predecessor's readiness.
		if l.t >= 0 && lectures.IsSet(l.t) {
			l.accept()
		}
		l.expire(time.Now())
	}
}

// selectLoop is the state of one select loop; only that loop touches it.
type selectLoop struct {
	s     *Server
	t     int // the listening socket; -1 once closed
	wake  int // the pipe's reading end
	conns map[int]*loopConn
	warn  *slog.Logger // rate-limited: clients cause its lines
}

// delai is select's timeout: none without clients, else until the first
// one goes idle.
func (l *selectLoop) delai(now time.Time) *unix.Timeval {
	if len(l.conns) == 0 {
		return nil
	}
	idle := l.s.idleTimeout()
	first := now
	for _, c := range l.conns {
		if c.last.Before(first) {
			first = c.last
		}
	}
	tv := unix.NsecToTimeval(max(first.Add(idle).Sub(now), time.Millisecond).Nanoseconds())
	return &tv
}

// accept takes every connection queued on t, up to MaxConns.
func (l *selectLoop) accept() {
	for len(l.conns) < l.s.maxConns() {
		fd, err := accept(l.t) // s=t.accept()
		switch {
		case err == nil:
		case errors.Is(err, unix.EAGAIN), errors.Is(err, unix.EINTR):
			return
		case errors.Is(err, unix.ECONNABORTED):
			continue
		default:
			// Out of descriptors: the queue stays full and t readable; a
			// short pause keeps the loop from spinning.
			l.logger().Warn("echo: accept", "err", os.NewSyscallError("accept", err))
			time.Sleep(10 * time.Millisecond)
			return
		}
		if fd >= unix.FD_SETSIZE {
			unix.Close(fd)
			l.logger().Warn("echo: connection closed: its descriptor is past select(2)'s FD_SETSIZE", "fd", fd, "FD_SETSIZE", unix.FD_SETSIZE)
			continue
		}
		l.conns[fd] = newLoopConn(fd)
		l.s.accepted.Add(1)
		l.s.active.Add(1)
	}
}

// serve moves bytes for one connection after select: recv if it was
// readable, then send what its buffer holds (a socket not writable says
// EAGAIN, and the bytes wait for select to report it in writers).
func (l *selectLoop) serve(c *loopConn, readable bool) {
	moved := false
	if readable {
		m, err := c.recv()
		if err != nil {
			l.closeConn(c)
			return
		}
		moved = m
	}
	if c.pending() {
		m, err := c.send()
		if err != nil {
			l.closeConn(c)
			return
		}
		moved = moved || m
	}
	if moved {
		c.last = time.Now()
	}
	if c.done() {
		l.closeConn(c) // everything read was sent back
	}
}

func (l *selectLoop) closeConn(c *loopConn) {
	unix.Close(c.fd) // s.close()
	delete(l.conns, c.fd)
	l.s.active.Add(-1)
}

// expire closes the clients idle for longer than IdleTimeout.
func (l *selectLoop) expire(now time.Time) {
	idle := l.s.idleTimeout()
	for _, c := range l.conns {
		if now.Sub(c.last) >= idle {
			l.closeConn(c)
		}
	}
}

// stopAccepting closes t and ends reading on every connection: each one
// closes once its buffer is sent back.
func (l *selectLoop) stopAccepting() {
	if l.t >= 0 {
		unix.Close(l.t)
		l.t = -1
	}
	for _, c := range l.conns {
		c.eof = true
		if c.done() {
			l.closeConn(c)
		}
	}
}

// closeAll closes every descriptor of the loop; it may be called twice.
func (l *selectLoop) closeAll() {
	for _, c := range l.conns {
		l.closeConn(c)
	}
	for _, fd := range []*int{&l.t, &l.wake} {
		if *fd >= 0 {
			unix.Close(*fd)
			*fd = -1
		}
	}
}

func (l *selectLoop) logger() *slog.Logger {
	if l.warn == nil {
		l.warn = slog.New(lograte.New(l.s.logger().Handler(), 5, 10*time.Second))
	}
	return l.warn
}
