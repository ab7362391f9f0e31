package wire

import (
	"errors"
	"net"
	"os"
	"sync"
	"syscall"
	"time"

	"github.com/annuaire/annuaire/authority/zone"
)

// The UDP hot path. miekg/dns's server reads one datagram per system call,
// starts a goroutine for each and unpacks every request whole; at 100k
// queries/s that loop, not the answer, is what costs. A PacketLoop instead
// reads the socket itself, answers plain queries from the cache without
// allocating, and hands every other datagram to a miekg/dns server reading
// from slowConn, so that UPDATE, NOTIFY, TSIG, transfers and malformed
// requests keep exactly their behaviour. On Linux, a *net.UDPConn gets
// one reader per CPU taking batches of datagrams per recvmmsg(2)
// (loop_linux.go); elsewhere one reader takes a datagram per read.

const (
	// readSize is miekg's UDPSize as the server sets it: padded EDNS
	// queries fit.
	readSize = 4096
	// slowQueue bounds the datagrams waiting for the full path; past it
	// they are dropped, as a full socket buffer would.
	slowQueue = 256
)

// A PacketLoop answers on one datagram socket.
type PacketLoop struct {
	c    *Cache
	pc   net.PacketConn
	slow *slowConn

	readers int    // how many run read
	read    func() // one reader, until the socket is closed
	raw     syscall.RawConn
	linger  bool           // readers may wait in recvmmsg (loop_linux.go)
	wg      sync.WaitGroup // one per reader
}

// PacketLoop returns the loop that answers on pc from c. Start runs it;
// a miekg/dns server reading Slow answers what it cannot.
func (c *Cache) PacketLoop(pc net.PacketConn) *PacketLoop {
	l := &PacketLoop{c: c, pc: pc, slow: &slowConn{
		PacketConn: pc,
		in:         make(chan slowPacket, slowQueue),
		unblock:    make(chan struct{}),
		closed:     make(chan struct{}),
	}}
	if !l.batched() {
		l.readers, l.read = 1, l.readEach
	}
	return l
}

// Slow is the socket as the full path's miekg/dns server must see it: the
// datagrams the readers hand it come in, its answers go straight out.
// Closing it closes the socket, which ends the readers.
func (l *PacketLoop) Slow() net.PacketConn { return l.slow }

// Start runs the readers; they end when the socket is closed.
func (l *PacketLoop) Start() {
	for range l.readers {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			l.read()
		}()
	}
}

// Wait returns once every reader has ended.
func (l *PacketLoop) Wait() { l.wg.Wait() }

// readEach is the portable reader: one datagram per read, its answer
// written at once.
func (l *PacketLoop) readEach() {
	buf := make([]byte, readSize)
	out := make([]byte, zone.MaxUDPSize)
	latency := l.c.counters.UDPLatency
	for {
		n, addr, err := l.pc.ReadFrom(buf)
		if errors.Is(err, net.ErrClosed) {
			return
		}
		if err != nil {
			continue // an ICMP error reported on the socket: nothing to do
		}
		var start time.Time
		if latency != nil {
			start = time.Now()
		}
		k := l.c.AnswerFrom(buf[:n], out, false, remoteIP(addr))
		if k == 0 {
			l.slow.hand(buf[:n], addr)
			continue
		}
		if k < 0 {
			continue // rate limited
		}
		l.pc.WriteTo(out[:k], addr)
		if latency != nil {
			latency(time.Since(start).Seconds(), 1)
		}
	}
}

// A slowPacket is a datagram for the full path.
type slowPacket struct {
	data []byte
	addr net.Addr
}

// slowConn is the socket as the miekg/dns server of the full path sees
// it: datagrams come from the readers, answers go straight out. It is not
// a *net.UDPConn, so miekg reads it with ReadFrom and writes with WriteTo.
type slowConn struct {
	net.PacketConn
	in      chan slowPacket
	unblock chan struct{} // closed by a read deadline in the past: Shutdown
	closed  chan struct{}
	once    sync.Once
	unonce  sync.Once
}

// hand queues a copy of a datagram for the miekg/dns server.
func (c *slowConn) hand(req []byte, addr net.Addr) {
	p := slowPacket{data: append([]byte(nil), req...), addr: addr}
	select {
	case c.in <- p:
	default: // the full path is saturated: drop, as a full socket would
	}
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
		err = c.PacketConn.Close()
	})
	return err
}
