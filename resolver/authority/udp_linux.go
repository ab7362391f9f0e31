package authority

import (
	"errors"
	"net"
	"net/netip"
	"os"
	"runtime"
	"sync"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The UDP hot path. miekg/dns's server reads one datagram per system call,
// starts a goroutine for each and unpacks every request whole; at 100k
// queries/s that loop, not the answer, is what costs. packetLoop instead
// runs one reader per CPU on the socket, each taking up to batchSize
// datagrams per recvmmsg(2) and sending the answers with one sendmmsg(2),
// answering plain queries from the wire cache without allocating, and
// handing every other datagram to a miekg/dns server reading from
// slowConn, so that UPDATE, NOTIFY, TSIG, transfers and malformed requests
// keep exactly their behaviour.

const (
	// batchSize is the datagrams per system call. Against dnsperf, 32
	// beat 8, 16 and 64 (282k and 279k q/s in two alternating rounds,
	// against 276k and 269k for 16, 270k and 240k for 64): larger bursts
	// of answers cost the client more than they save the server.
	batchSize = 32
	// readSize is miekg's UDPSize as run sets it: padded EDNS queries fit.
	readSize = 4096
	// slowQueue bounds the datagrams waiting for the full path; past it
	// they are dropped, as a full socket buffer would.
	slowQueue = 256
	// socketBuffer is the receive and send buffer asked of the kernel.
	socketBuffer = 4 << 20
	// A reader that has not waited on its socket for yieldAfter sleeps
	// yieldFor (see batch.yield).
	yieldAfter = 500 * time.Microsecond
	yieldFor   = 20 * time.Microsecond
)

// A packetLoop answers on one UDP socket.
type packetLoop struct {
	s    *Server
	conn *net.UDPConn
	raw  syscall.RawConn
	slow *slowConn
	wg   sync.WaitGroup // one per reader
}

// newPacketLoop returns the loop of conn, or nil if conn cannot have one.
func newPacketLoop(s *Server, conn *net.UDPConn) *packetLoop {
	raw, err := conn.SyscallConn()
	if err != nil {
		return nil
	}
	// Bursts of thousands of queries overflow the default socket buffers
	// (about 200 KiB, some 270 datagrams on loopback) long before the CPU
	// is busy: ask for 4 MiB, forcing past net.core.rmem_max when
	// privileged, as NSD does.
	raw.Control(func(fd uintptr) {
		for _, opt := range [][2]int{{unix.SO_RCVBUFFORCE, unix.SO_RCVBUF}, {unix.SO_SNDBUFFORCE, unix.SO_SNDBUF}} {
			if unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, opt[0], socketBuffer) != nil {
				unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, opt[1], socketBuffer)
			}
		}
	})
	l := &packetLoop{s: s, conn: conn, raw: raw}
	l.slow = &slowConn{
		UDPConn: conn,
		in:      make(chan slowPacket, slowQueue),
		unblock: make(chan struct{}),
		closed:  make(chan struct{}),
	}
	return l
}

// start runs the readers, one per CPU the process may run on; they end
// when the socket is closed.
func (l *packetLoop) start() {
	// GOMAXPROCS may exceed the CPUs (annuaire serve keeps at least two
	// Ps when its journal's syncs block): two readers taking turns on one CPU cost 12% more CPU per
	// query than one, in context switches.
	n := runtime.GOMAXPROCS(0)
	var cpus unix.CPUSet
	if unix.SchedGetaffinity(0, &cpus) == nil && cpus.Count() > 0 {
		n = min(n, cpus.Count())
	}
	for range n {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			newBatch(l).run()
		}()
	}
}

// A batch is one reader's buffers, allocated once: the kernel writes into
// them in place.
type batch struct {
	l     *packetLoop
	hdrs  [batchSize]unix.Mmsghdr
	iovs  [batchSize]unix.Iovec
	names [batchSize][unix.SizeofSockaddrInet6]byte
	bufs  [batchSize][readSize]byte

	out     [batchSize]unix.Mmsghdr
	outIovs [batchSize]unix.Iovec
	outBufs [batchSize][maxUDPSize]byte

	n, sent int   // datagrams read; answers sent of nOut
	nOut    int   // answers to send
	errno   error // of the last system call

	waited bool      // the last read found the socket empty and waited
	busy   time.Time // since when the reader has not waited

	readFn, writeFn func(fd uintptr) bool // made once: no closure per call
}

func newBatch(l *packetLoop) *batch {
	b := &batch{l: l}
	for i := range b.hdrs {
		b.iovs[i].Base = &b.bufs[i][0]
		b.iovs[i].SetLen(readSize)
		b.hdrs[i].Hdr.Iov = &b.iovs[i]
		b.hdrs[i].Hdr.SetIovlen(1)
		b.hdrs[i].Hdr.Name = &b.names[i][0]
		b.outIovs[i].Base = &b.outBufs[i][0]
		b.out[i].Hdr.Iov = &b.outIovs[i]
		b.out[i].Hdr.SetIovlen(1)
	}
	b.readFn = b.recv
	b.writeFn = b.send
	return b
}

// recv and send make raw system calls: with MSG_DONTWAIT neither can
// block, and a call through Syscall tells the scheduler it might. The
// runtime's sysmon thread then polls every 20 µs and, when a sendmmsg of a
// batch of answers lasts longer than that, hands the P to another thread
// and wakes it. Raw calls took 10 to 18% off the server's CPU per query
// against dnsperf (three alternating rounds).
func (b *batch) recv(fd uintptr) bool {
	for i := range b.hdrs {
		b.hdrs[i].Hdr.Namelen = unix.SizeofSockaddrInet6
		b.hdrs[i].Hdr.Flags = 0
	}
	n, _, e := unix.RawSyscall6(unix.SYS_RECVMMSG, fd, uintptr(unsafe.Pointer(&b.hdrs[0])), batchSize, unix.MSG_DONTWAIT, 0, 0)
	for e == unix.EINTR {
		n, _, e = unix.RawSyscall6(unix.SYS_RECVMMSG, fd, uintptr(unsafe.Pointer(&b.hdrs[0])), batchSize, unix.MSG_DONTWAIT, 0, 0)
	}
	if e == unix.EAGAIN {
		b.waited = true
		return false // wait for the poller
	}
	b.n, b.errno = int(n), nil
	if e != 0 {
		b.n, b.errno = 0, e
	}
	return true
}

func (b *batch) send(fd uintptr) bool {
	for b.sent < b.nOut {
		n, _, e := unix.RawSyscall6(unix.SYS_SENDMMSG, fd, uintptr(unsafe.Pointer(&b.out[b.sent])), uintptr(b.nOut-b.sent), unix.MSG_DONTWAIT, 0, 0)
		switch {
		case e == unix.EAGAIN:
			return false
		case e == unix.EINTR:
		case e != 0:
			b.sent++ // this datagram cannot go (its client is gone): skip it
		default:
			b.sent += int(n)
		}
	}
	return true
}

func (b *batch) run() {
	l := b.l
	for {
		if err := l.raw.Read(b.readFn); err != nil {
			return // the socket is closed
		}
		if b.errno != nil {
			if b.errno == unix.EINTR || b.errno == unix.ENOMEM || b.errno == unix.ENOBUFS {
				continue
			}
			if errors.Is(b.errno, unix.EBADF) {
				return
			}
			continue // an ICMP error queued on the socket: nothing to do
		}
		b.nOut = 0
		var start time.Time
		if l.s.Metrics != nil {
			start = time.Now()
		}
		for i := range b.n {
			h := &b.hdrs[i]
			req := b.bufs[i][:h.Len]
			var n int
			var e *wireEntry
			if h.Hdr.Flags&unix.MSG_TRUNC == 0 {
				n, e = l.s.answerWire(req, b.outBufs[b.nOut][:], false)
			}
			if n == 0 {
				l.slow.hand(req, b.names[i][:], h.Hdr.Namelen)
				continue
			}
			o := &b.out[b.nOut]
			o.Hdr.Name = h.Hdr.Name // answer to where it came from
			o.Hdr.Namelen = h.Hdr.Namelen
			b.outIovs[b.nOut].SetLen(n)
			b.nOut++
			if e.queries != nil {
				e.queries.Inc()
				if e.truncated {
					l.s.Metrics.truncated.Inc()
				}
			}
		}
		if b.nOut > 0 {
			b.sent = 0
			if err := l.raw.Write(b.writeFn); err != nil {
				return
			}
		}
		// A batch all for the full path yields too: its goroutines need
		// the P.
		now := time.Now()
		if l.s.Metrics != nil && b.nOut > 0 {
			d := now.Sub(start).Seconds()
			h := l.s.Metrics.latency.WithLabelValues("udp")
			for range b.nOut {
				h.Observe(d)
			}
		}
		b.yield(now)
	}
}

// yield lets the rest of the process run when queries have kept this
// reader busy for yieldAfter without a pause. The runtime notices a ready
// connection, or a journal sync finished, only when a P goes looking for
// work; with one P (one CPU) that this loop never gives up, that waits
// for the monitor's poll every 10 ms. With dnsperf saturating the CPU and
// 1,000 API writes/s, writes then had a p99 of 26–81 ms and missed up to
// 11% of their slots; the full path's goroutines (UPDATE, NOTIFY, TSIG)
// waited alike. A sleep parks the reader and makes the P poll the
// network. It costs a few microseconds per yieldAfter of work, and only
// under load: a reader that finds its socket empty waits there anyway.
func (b *batch) yield(now time.Time) {
	switch {
	case b.waited:
		b.waited, b.busy = false, now
	case now.Sub(b.busy) > yieldAfter:
		time.Sleep(yieldFor)
		b.busy = time.Now()
	}
}

// A slowPacket is a datagram for the full path.
type slowPacket struct {
	data []byte
	addr *net.UDPAddr
}

// hand queues a copy of a datagram for the miekg/dns server.
func (c *slowConn) hand(req []byte, name []byte, namelen uint32) {
	addr := sockaddrUDP(name, namelen)
	if addr == nil {
		return
	}
	p := slowPacket{data: append([]byte(nil), req...), addr: addr}
	select {
	case c.in <- p:
	default: // the full path is saturated: drop, as a full socket would
	}
}

func sockaddrUDP(name []byte, namelen uint32) *net.UDPAddr {
	port := int(name[2])<<8 | int(name[3])
	switch {
	case namelen >= unix.SizeofSockaddrInet4 && *(*uint16)(unsafe.Pointer(&name[0])) == unix.AF_INET:
		return net.UDPAddrFromAddrPort(netip.AddrPortFrom(netip.AddrFrom4([4]byte(name[4:8])), uint16(port)))
	case namelen >= unix.SizeofSockaddrInet6 && *(*uint16)(unsafe.Pointer(&name[0])) == unix.AF_INET6:
		a := netip.AddrFrom16([16]byte(name[8:24]))
		return net.UDPAddrFromAddrPort(netip.AddrPortFrom(a, uint16(port)))
	}
	return nil
}

// slowConn is the socket as the miekg/dns server of the full path sees
// it: datagrams come from the readers, answers go straight out. It is not
// a *net.UDPConn, so miekg reads it with ReadFrom and writes with WriteTo.
type slowConn struct {
	*net.UDPConn
	in      chan slowPacket
	unblock chan struct{} // closed by a read deadline in the past: Shutdown
	closed  chan struct{}
	once    sync.Once
	unonce  sync.Once
}

func (c *slowConn) ReadFrom(b []byte) (int, net.Addr, error) {
	select {
	case p := <-c.in:
		return copy(b, p.data), p.addr, nil
	case <-c.unblock:
		return 0, nil, os.ErrDeadlineExceeded
	case <-c.closed:
		return 0, nil, net.ErrClosed
	}
}

func (c *slowConn) WriteTo(b []byte, addr net.Addr) (int, error) {
	return c.UDPConn.WriteTo(b, addr)
}

// SetReadDeadline only serves miekg's Shutdown, which unblocks its reader
// with a deadline in the past; the readers have their own.
func (c *slowConn) SetReadDeadline(t time.Time) error {
	if !t.IsZero() && !t.After(time.Now()) {
		c.unonce.Do(func() { close(c.unblock) })
	}
	return nil
}

func (c *slowConn) SetDeadline(t time.Time) error { return c.SetReadDeadline(t) }

// Close closes the socket, which ends the readers too.
func (c *slowConn) Close() error {
	var err error
	c.once.Do(func() {
		close(c.closed)
		err = c.UDPConn.Close()
	})
	return err
}

// packetLoop returns the batched loop of pc, or nil if it is not a UDP
// socket of its own.
func (s *Server) packetLoop(pc net.PacketConn) *packetLoop {
	conn, ok := pc.(*net.UDPConn)
	if !ok {
		return nil
	}
	return newPacketLoop(s, conn)
}
