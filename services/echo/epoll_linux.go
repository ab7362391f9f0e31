//go:build !portable

package echo

import (
	"errors"
	"net"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// epollUnsupported is empty: Linux has epoll.
const epollUnsupported = ""

// serveEpoll is select (select_unix.go) as Linux does it at scale: one
// goroutine watches the listening socket t and every connection s at once,
// and calls accept, recv or send only on a socket the kernel reported
// ready, on non-blocking descriptors, so no call ever waits.
//
//	t=socket(); t.bind(); t.listen()      → Listen (listen_unix.go)
//	loop:
//	    ready = epoll_wait(t, s1, s2 ...)  → select.select(lectures, écritures, [])
//	    t readable   → s=t.accept(), and watch s
//	    s readable   → s.recv() into s's buffer
//	    s writable   → s.send() from s's buffer
//
// epoll is select without select's limit of FD_SETSIZE descriptors and
// without handing the whole list to the kernel at each call: the list
// lives in the kernel, in the epoll descriptor, and changes with
// epoll_ctl; epoll_wait returns only the ready ones. Each connection has
// a bounded buffer (loopBufSize). Shutdown wakes the loop through an
// eventfd.
func (s *Server) serveEpoll(ln net.Listener) error {
	t, err := dupFD(ln)
	if err != nil {
		return err
	}
	p := &poller{s: s, t: t, ep: -1, wake: -1, conns: make(map[int]*epollConn)}
	defer p.closeAll()
	if p.ep, err = unix.EpollCreate1(unix.EPOLL_CLOEXEC); err != nil {
		return os.NewSyscallError("epoll_create1", err)
	}
	if p.wake, err = unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC); err != nil {
		return os.NewSyscallError("eventfd", err)
	}
	if err := p.ctl(unix.EPOLL_CTL_ADD, p.wake, unix.EPOLLIN); err != nil {
		return err
	}
	if err := p.watchListener(true); err != nil {
		return err
	}
	// A stop or a forced stop wakes the loop. The eventfd is closed only
	// after done, when no stop can write to it any more: its number may
	// be reused once closed.
	wfd := p.wake
	wake := func() { unix.Write(wfd, []byte{1, 0, 0, 0, 0, 0, 0, 0}) }
	done, ok := s.drain.Add(wake, wake)
	if !ok {
		return net.ErrClosed
	}
	p.wake = -1 // closeAll leaves it to the end
	defer func() {
		p.closeAll() // the connections first: Shutdown returns once they are closed
		done()
		unix.Close(wfd)
	}()

	drain, force := s.drain.Started(), s.drain.Forced()
	events := make([]unix.EpollEvent, 128)
	for {
		if closed(force) {
			return net.ErrClosed
		}
		if closed(drain) {
			p.stopAccepting()
			if len(p.conns) == 0 {
				return net.ErrClosed
			}
		}
		n, err := unix.EpollWait(p.ep, events, p.timeout()) // select.select(...)
		if err != nil {
			if errors.Is(err, unix.EINTR) {
				continue
			}
			return os.NewSyscallError("epoll_wait", err)
		}
		listenerReady := false
		for _, ev := range events[:n] {
			switch fd := int(ev.Fd); fd {
			case wfd:
				var b [8]byte
				unix.Read(wfd, b[:])
			case p.t:
				listenerReady = true
			default:
				p.handle(fd, ev.Events)
			}
		}
		// Accept after the connections' events: a descriptor closed above
		// may be reused by accept, and must not get its predecessor's event.
		if listenerReady {
			p.accept()
		}
		p.expire(time.Now())
	}
}

// epollConn is one client of the epoll loop.
type epollConn struct {
	*loopConn
	events uint32 // what epoll watches for fd
}

// poller is the state of one poll loop; only that loop touches it.
type poller struct {
	s        *Server
	ep, wake int  // wake is -1 once the loop runs: serveEpoll owns it
	t        int  // the listening socket; -1 once closed
	watchedT bool // whether epoll watches t (not at MaxConns)
	conns    map[int]*epollConn
}

func (p *poller) ctl(op, fd int, events uint32) error {
	ev := unix.EpollEvent{Events: events, Fd: int32(fd)}
	if err := unix.EpollCtl(p.ep, op, fd, &ev); err != nil {
		return os.NewSyscallError("epoll_ctl", err)
	}
	return nil
}

func (p *poller) watchListener(on bool) error {
	if p.t < 0 || on == p.watchedT {
		return nil
	}
	p.watchedT = on
	if on {
		return p.ctl(unix.EPOLL_CTL_ADD, p.t, unix.EPOLLIN)
	}
	return p.ctl(unix.EPOLL_CTL_DEL, p.t, 0)
}

// timeout is epoll_wait's: forever with no client, else short enough to
// notice idle clients.
func (p *poller) timeout() int {
	if len(p.conns) == 0 {
		return -1
	}
	return int(min(p.s.idleTimeout(), time.Second)/time.Millisecond) + 1
}

// accept takes every connection queued on t, up to MaxConns; at the cap it
// stops watching t, so new clients wait in the listen queue.
func (p *poller) accept() {
	for len(p.conns) < p.s.maxConns() {
		fd, err := accept(p.t) // s=t.accept()
		switch {
		case err == nil:
		case errors.Is(err, unix.EAGAIN), errors.Is(err, unix.EINTR):
			return
		case errors.Is(err, unix.ECONNABORTED):
			continue
		default:
			// Out of descriptors: the queue stays full and t readable; a
			// short pause keeps the loop from spinning.
			p.s.logger().Warn("echo: accept", "err", os.NewSyscallError("accept4", err))
			time.Sleep(10 * time.Millisecond)
			return
		}
		c := &epollConn{loopConn: newLoopConn(fd), events: unix.EPOLLIN}
		if err := p.ctl(unix.EPOLL_CTL_ADD, fd, c.events); err != nil {
			unix.Close(fd)
			continue
		}
		p.conns[fd] = c
		p.s.accepted.Add(1)
		p.s.active.Add(1)
	}
	p.watchListener(false)
}

// handle moves bytes for one ready connection: recv what fits in its
// buffer, send what the buffer holds.
func (p *poller) handle(fd int, events uint32) {
	c := p.conns[fd]
	if c == nil {
		return
	}
	if events&unix.EPOLLERR != 0 {
		p.closeConn(c)
		return
	}
	moved := false
	if events&(unix.EPOLLIN|unix.EPOLLHUP) != 0 && c.wantsRecv() {
		m, err := c.recv()
		if err != nil {
			p.closeConn(c)
			return
		}
		moved = m
	}
	if c.pending() {
		m, err := c.send()
		if err != nil {
			p.closeConn(c)
			return
		}
		moved = moved || m
	}
	if moved {
		c.last = time.Now()
	} else if events&unix.EPOLLHUP != 0 {
		p.closeConn(c) // hung up and nothing more can move
		return
	}
	p.update(c)
}

// update closes c when it is done, else tells epoll what c waits for:
// readable while its buffer has room, writable while it holds bytes.
func (p *poller) update(c *epollConn) {
	if c.done() {
		p.closeConn(c) // everything read was sent back
		return
	}
	var want uint32
	if c.wantsRecv() {
		want |= unix.EPOLLIN
	}
	if c.pending() {
		want |= unix.EPOLLOUT
	}
	if want != c.events {
		c.events = want
		if err := p.ctl(unix.EPOLL_CTL_MOD, c.fd, want); err != nil {
			p.closeConn(c)
		}
	}
}

func (p *poller) closeConn(c *epollConn) {
	unix.Close(c.fd) // s.close(); closing also removes it from epoll
	delete(p.conns, c.fd)
	p.s.active.Add(-1)
	if len(p.conns) < p.s.maxConns() {
		p.watchListener(true)
	}
}

// expire closes the clients idle for longer than IdleTimeout.
func (p *poller) expire(now time.Time) {
	idle := p.s.idleTimeout()
	for _, c := range p.conns {
		if now.Sub(c.last) > idle {
			p.closeConn(c)
		}
	}
}

// stopAccepting closes t and ends reading on every connection: each one
// closes once its buffer is sent back.
func (p *poller) stopAccepting() {
	if p.t >= 0 {
		p.watchListener(false)
		unix.Close(p.t)
		p.t = -1
	}
	for _, c := range p.conns {
		if !c.eof {
			c.eof = true
			p.update(c)
		}
	}
}

// closeAll closes every descriptor of the loop; it may be called twice.
func (p *poller) closeAll() {
	for _, c := range p.conns {
		p.closeConn(c)
	}
	for _, fd := range []*int{&p.t, &p.wake, &p.ep} {
		if *fd >= 0 {
			unix.Close(*fd)
			*fd = -1
		}
	}
}
