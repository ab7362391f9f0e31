package wire

import (
	"bufio"
	"cmp"
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/miekg/dns"
)

// DNS over TCP keeps miekg/dns's loop, which reads each query with two
// read(2)s (length, then body) and writes each answer with one write(2).
// A client that pipelines (RFC 7766 section 6.2.1.1) then costs three
// system calls per query. bufferedConn cuts that to about two per burst:
// reads go through a buffer, and answers wait in one until the loop is
// about to block for more input, when they leave in a single write. While
// requests stream in over several connections, reads pause to let them
// gather (tcp_linux.go).

// tcpBuffer is the size of each connection's read and write buffers.
const tcpBuffer = 16 << 10

// TCP connections are a resource a client can hold without sending much:
// a connection that asks one question every few seconds costs its client
// nothing and takes a slot. The Listener therefore admits every new
// connection, making room by closing the idlest one — of the same client
// when that client holds its share, else of all — as unbound and Knot do,
// rather than leave it waiting in the backlog behind those who hold the
// slots. Past half the slots taken, the idle timeout shrinks with the
// free ones (RFC 7766 section 6.2.3 lets a server under load use zero
// timeouts). A connection is idle while it waits for a request, from the
// moment it last took a whole one or sent an answer: bytes that do not
// complete a request do not make it busy, so a client that trickles a
// request byte by byte is cut by the same timeout.

// TCPConfig bounds a Listener's connections. A zero field takes the
// default it names.
type TCPConfig struct {
	// MaxConns is how many connections are served at once; 1000.
	MaxConns int
	// MaxConnsPerClient is how many of them one client holds: an IPv4
	// address or an IPv6 /64, which one host can fill; 100.
	MaxConnsPerClient int
	// ReadTimeout is how long a new connection has to send its first
	// request; 2 seconds.
	ReadTimeout time.Duration
	// IdleTimeout is how long a connection waits for its next request
	// while at most half the slots are taken; 10 seconds. It shrinks past
	// that, to minIdle when every slot is taken.
	IdleTimeout time.Duration
	// WriteTimeout is how long an answer may go without a byte of it
	// leaving: a slow reader is served as long as it reads (an AXFR of a
	// large zone to a slow secondary), one that stops is cut; 2 seconds.
	WriteTimeout time.Duration
}

// minIdle is the idle timeout when every slot is taken, unbound's floor:
// a client that connects and asks at once is still served.
const minIdle = 200 * time.Millisecond

// Reasons a connection is closed to make room, as TCPClosed counts them.
const (
	closedIdlest    = "idlest"     // the idlest of all, for a new one
	closedPerClient = "per-client" // the idlest of the new one's client
	closedIdle      = "idle"       // idle longer than the shrunk timeout
	closedRefused   = "refused"    // the new one: none was idle
)

// Listener returns ln, whose connections answer plain queries from c and
// buffer their reads and writes, for a miekg/dns server to serve: it reads
// from them the requests c cannot answer. Connections are admitted and
// timed as cfg says; miekg's read deadlines are ignored but for
// Shutdown's.
func (c *Cache) Listener(ln net.Listener, cfg TCPConfig) net.Listener {
	t := &tcpTable{
		max:       cmp.Or(cfg.MaxConns, 1000),
		perClient: cmp.Or(cfg.MaxConnsPerClient, 100),
		read:      cmp.Or(cfg.ReadTimeout, 2*time.Second),
		idleMax:   cmp.Or(cfg.IdleTimeout, 10*time.Second),
		write:     cmp.Or(cfg.WriteTimeout, 2*time.Second),
		closed:    c.counters.TCPClosed,
		conns:     make(map[*bufferedConn]struct{}),
		byClient:  make(map[clientKey]int),
	}
	t.gate.open()
	return &bufferedListener{Listener: ln, c: c, t: t}
}

// bufferedListener hands out buffered connections.
type bufferedListener struct {
	net.Listener
	c *Cache
	t *tcpTable
}

func (l *bufferedListener) Close() error {
	l.t.gate.close()
	return l.Listener.Close()
}

func (l *bufferedListener) Accept() (net.Conn, error) {
	for {
		nc, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		b := &bufferedConn{Conn: nc, cache: l.c, t: l.t, key: clientKeyOf(nc.RemoteAddr()), ip: remoteIP(nc.RemoteAddr()), last: time.Now()}
		b.r = bufio.NewReaderSize(flushingReader{b}, tcpBuffer)
		b.rawTCP()
		b.idleSince.Store(b.last.UnixNano()) // idle until its first read returns
		if l.t.admit(b) {
			return b, nil
		}
		nc.Close() // every slot busy with a request: the new one goes
	}
}

// A clientKey is what the per-client limit counts by: an IPv4 address, or
// an IPv6 /64, and the family.
type clientKey [9]byte

func clientKeyOf(a net.Addr) clientKey {
	var k clientKey
	ta, ok := a.(*net.TCPAddr)
	if !ok {
		return k
	}
	ip := ta.AddrPort().Addr().Unmap()
	if ip.Is4() {
		b := ip.As4()
		copy(k[:], b[:])
		k[8] = 4
		return k
	}
	b := ip.As16()
	copy(k[:], b[:8])
	k[8] = 6
	return k
}

// tcpTable is a listener's connections.
type tcpTable struct {
	max, perClient int
	read, idleMax  time.Duration
	write          time.Duration
	closed         func(reason string) // nil: not counted

	n atomic.Int64 // connections admitted and not yet closed or evicted

	gate tcpGate // when reads pause to let requests gather (tcp_linux.go)

	mu       sync.Mutex // guards the fields below
	conns    map[*bufferedConn]struct{}
	byClient map[clientKey]int
}

// idle is the idle timeout now: idleMax while at most half the slots are
// taken, then in proportion to the free ones, down to minIdle.
func (t *tcpTable) idle() time.Duration {
	n, half := int(t.n.Load()), t.max/2
	if n <= half {
		return t.idleMax
	}
	d := time.Duration(float64(t.idleMax) * float64(t.max-n) / float64(t.max-half))
	return max(d, minIdle)
}

// admit makes room for c and counts it in, or reports that there is none:
// every connection that would have to go is busy with a request.
func (t *tcpTable) admit(c *bufferedConn) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.byClient[c.key] >= t.perClient {
		v := t.idlest(func(o *bufferedConn) bool { return o.key == c.key })
		if v == nil {
			t.count(closedRefused)
			return false
		}
		t.evict(v, closedPerClient)
	}
	if int(t.n.Load()) >= t.max {
		v := t.idlest(nil)
		if v == nil {
			t.count(closedRefused)
			return false
		}
		t.evict(v, closedIdlest)
	}
	if int(t.n.Load()) >= t.max/2 {
		// Under pressure, those already waiting get the shrunk timeout
		// too (a waiting read's deadline was set with the old one).
		idle := t.idle().Nanoseconds()
		now := time.Now().UnixNano()
		for o := range t.conns {
			if since := o.idleSince.Load(); o.counted && since != 0 && now-since > idle {
				t.evict(o, closedIdle)
			}
		}
	}
	t.conns[c] = struct{}{}
	t.byClient[c.key]++
	c.counted = true
	t.n.Add(1)
	return true
}

// idlest returns the counted connection that has waited for a request the
// longest, among those match accepts (nil: all); nil if none is waiting.
func (t *tcpTable) idlest(match func(*bufferedConn) bool) *bufferedConn {
	var v *bufferedConn
	var oldest int64
	for o := range t.conns {
		since := o.idleSince.Load()
		if !o.counted || since == 0 || match != nil && !match(o) {
			continue
		}
		if v == nil || since < oldest {
			v, oldest = o, since
		}
	}
	return v
}

// evict closes c to make room: its read ends now, miekg closes it.
func (t *tcpTable) evict(c *bufferedConn, reason string) {
	t.releaseLocked(c)
	t.count(reason)
	c.expire()
}

func (t *tcpTable) count(reason string) {
	if t.closed != nil {
		t.closed(reason)
	}
}

// release forgets c, once; releaseLocked with mu held.
func (t *tcpTable) release(c *bufferedConn) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.releaseLocked(c)
	delete(t.conns, c)
}

func (t *tcpTable) releaseLocked(c *bufferedConn) {
	if !c.counted {
		return
	}
	c.counted = false
	t.n.Add(-1)
	if t.byClient[c.key]--; t.byClient[c.key] <= 0 {
		delete(t.byClient, c.key)
	}
}

// A bufferedConn is a TCP connection whose writes are held until the next
// read that would wait on the socket, or until tcpBuffer bytes are held.
type bufferedConn struct {
	net.Conn
	r     *bufio.Reader // reads through flushingReader
	cache *Cache        // nil: nothing is answered here
	t     *tcpTable
	key   clientKey
	ip    netip.Addr // the client's

	// Read's state: bytes of a request for miekg/dns, and how many more
	// bytes pass through unparsed (a request too large to hold).
	pending []byte
	hold    []byte
	raw     int

	// The idle clock, kept by the connection's reader: took says a whole
	// request was taken since it last waited, last is when it last took
	// one or sent answers (or was accepted), started that it took one.
	took, started bool
	last          time.Time

	// idleSince is, while the reader waits for a request, when the
	// connection became idle (Unix ns); 0 while it is busy.
	idleSince atomic.Int64
	counted   bool // in the table's counts; guarded by the table's mu

	dmu  sync.Mutex // guards shut
	shut bool       // a deadline in the past was set: Shutdown's, or an eviction

	mu   sync.Mutex // guards the fields below: a handler may write from another goroutine
	w    []byte     // answers not yet written
	werr error      // the first failed write: later ones fail too

	// Raw reads and writes (tcp_linux.go): the socket, and each call's
	// buffer, progress and errno, the write's under mu.
	sock            syscall.RawConn // nil: through Conn
	readFn, writeFn func(fd uintptr) bool
	rp, wp          []byte
	rn, wn          int
	rerrno, werrno  syscall.Errno
	rwaited         bool // the last read waited for the poller
	streak          int  // reads in a row that did not wait

	// The gate's view of the connection (tcp_linux.go), kept by its
	// reader: it is counted in the gate's active ones, took taken
	// requests since its socket was last found empty, and was last found
	// so in the gate's window starting at window.
	active bool
	taken  int
	window int64
}

// Read gives miekg/dns the requests the wire cache cannot answer; plain
// queries are answered here, their answers held with the others. Answers
// keep the order of the requests: miekg asks for the next request only
// once it has answered the last.
func (c *bufferedConn) Read(p []byte) (int, error) {
	for len(c.pending) == 0 {
		if c.cache == nil {
			n, err := c.r.Read(p)
			c.took = c.took || n > 0
			return n, err
		}
		if c.raw > 0 {
			n, err := c.r.Read(p[:min(len(p), c.raw)])
			c.raw -= n
			return n, err
		}
		hdr, err := c.r.Peek(2)
		if err != nil {
			c.raw = 1 << 30 // the stream ends: let miekg see how
			continue
		}
		size := 2 + int(binary.BigEndian.Uint16(hdr))
		req, err := c.r.Peek(size)
		if err != nil {
			c.raw = size // larger than the buffer, or cut short
			c.took = true
			continue
		}
		c.took = true
		c.taken++
		if c.answer(req[2:]) {
			c.r.Discard(size)
			continue
		}
		c.hold = append(c.hold[:0], req...)
		c.r.Discard(size)
		c.pending = c.hold
	}
	n := copy(p, c.pending)
	c.pending = c.pending[n:]
	return n, nil
}

// answer holds the cached answer to req, if there is one.
func (c *bufferedConn) answer(req []byte) bool {
	q, e := c.cache.lookup(req, true)
	if e == nil {
		// A request with trailing bytes: FORMERR (see Cache.Answer).
		m := c.cache.formErr(req, dns.MaxMsgSize, true)
		if m == nil {
			return false
		}
		c.mu.Lock()
		defer c.mu.Unlock()
		if c.werr == nil {
			c.w = binary.BigEndian.AppendUint16(c.w, uint16(len(m)))
			c.w = append(c.w, m...)
		}
		return true
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.werr != nil {
		return true // the connection is dead: nothing more will be sent
	}
	at := len(c.w)
	c.w = binary.BigEndian.AppendUint16(c.w, uint16(len(e.msg)))
	c.w = append(c.w, e.msg...)
	c.cache.send(c.w[at+2:], req, &q, e, true, c.ip) // over TCP, never limited
	if o := c.cache.counters.TCPLatency; o != nil {
		o.Observe(0) // answered as read
	}
	if len(c.w) >= tcpBuffer {
		c.flushLocked()
	}
	return true
}

// SetReadDeadline only takes a deadline in the past (miekg's Shutdown):
// the connection keeps its own clock (flushingReader), which miekg's
// deadlines, set per request and never shortened, would override.
func (c *bufferedConn) SetReadDeadline(t time.Time) error {
	if t.IsZero() || t.After(time.Now()) {
		return nil
	}
	c.expire()
	return nil
}

// expire ends the connection's reads now, and for good.
func (c *bufferedConn) expire() {
	c.dmu.Lock()
	defer c.dmu.Unlock()
	c.shut = true
	c.Conn.SetReadDeadline(aLongTimeAgo)
}

var aLongTimeAgo = time.Unix(1, 0)

func (c *bufferedConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.werr != nil {
		return 0, c.werr
	}
	c.w = append(c.w, p...)
	if len(c.w) >= tcpBuffer {
		if err := c.flushLocked(); err != nil {
			return 0, err
		}
	}
	return len(p), nil
}

func (c *bufferedConn) flush() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.flushLocked()
}

func (c *bufferedConn) flushLocked() error {
	if c.werr != nil || len(c.w) == 0 {
		return c.werr
	}
	// A client that stops reading must not hold the connection forever;
	// one that reads slowly is served: each period of WriteTimeout in
	// which some of the answer left gives it another.
	for buf := c.w; len(buf) > 0; {
		c.Conn.SetWriteDeadline(time.Now().Add(c.t.write))
		n, err := c.write(buf)
		buf = buf[n:]
		if err != nil && !(n > 0 && errors.Is(err, os.ErrDeadlineExceeded)) {
			c.werr = err
			break
		}
	}
	c.w = c.w[:0]
	if cap(c.w) > 4*tcpBuffer {
		c.w = nil // an AXFR's worth: give it back
	}
	return c.werr
}

// Close sends what is held first: the last answers of a connection the
// client half-closed, or that the idle timeout ends.
func (c *bufferedConn) Close() error {
	c.flush()
	c.t.gate.leave(c)
	c.t.release(c)
	return c.Conn.Close()
}

// flushingReader is the socket as the read buffer sees it: before waiting
// for input, the answers to the queries already read go out.
type flushingReader struct{ c *bufferedConn }

func (f flushingReader) Read(p []byte) (int, error) {
	c := f.c
	if err := c.flush(); err != nil {
		return 0, err
	}
	now := time.Now()
	if c.took {
		c.took, c.started, c.last = false, true, now
	}
	timeout := c.t.read
	if c.started {
		timeout = c.t.idle()
	}
	c.dmu.Lock()
	if c.shut {
		c.dmu.Unlock()
		return 0, os.ErrDeadlineExceeded
	}
	c.Conn.SetReadDeadline(c.last.Add(timeout))
	c.idleSince.Store(c.last.UnixNano())
	c.dmu.Unlock()
	n, err := c.read(p)
	c.idleSince.Store(0)
	return n, err
}
