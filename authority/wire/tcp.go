package wire

import (
	"bufio"
	"encoding/binary"
	"net"
	"sync"
	"time"
)

// DNS over TCP keeps miekg/dns's loop, which reads each query with two
// read(2)s (length, then body) and writes each answer with one write(2).
// A client that pipelines (RFC 7766 section 6.2.1.1) then costs three
// system calls per query. bufferedConn cuts that to about two per burst:
// reads go through a buffer, and answers wait in one until the loop is
// about to block for more input, when they leave in a single write.

// tcpBuffer is the size of each connection's read and write buffers.
const tcpBuffer = 16 << 10

// Listener returns ln, whose connections answer plain queries from c and
// buffer their reads and writes, for a miekg/dns server to serve: it reads
// from them the requests c cannot answer. writeTimeout bounds each write
// of held answers; idleTimeout is how long a connection waits for a
// request once it has answered one itself (miekg's IdleTimeout).
func (c *Cache) Listener(ln net.Listener, writeTimeout, idleTimeout time.Duration) net.Listener {
	return bufferedListener{Listener: ln, c: c, writeTimeout: writeTimeout, idleTimeout: idleTimeout}
}

// bufferedListener hands out buffered connections.
type bufferedListener struct {
	net.Listener
	c            *Cache
	writeTimeout time.Duration
	idleTimeout  time.Duration
}

func (l bufferedListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	b := &bufferedConn{Conn: c, cache: l.c, timeout: l.writeTimeout, idle: l.idleTimeout}
	b.r = bufio.NewReaderSize(flushingReader{b}, tcpBuffer)
	return b, nil
}

// A bufferedConn is a TCP connection whose writes are held until the next
// read that would wait on the socket, or until tcpBuffer bytes are held.
type bufferedConn struct {
	net.Conn
	r       *bufio.Reader // reads through flushingReader
	cache   *Cache        // nil: nothing is answered here
	timeout time.Duration
	idle    time.Duration

	// Read's state: bytes of a request for miekg/dns, and how many more
	// bytes pass through unparsed (a request too large to hold).
	pending []byte
	hold    []byte
	raw     int

	dmu       sync.Mutex // guards the fields below
	shut      bool       // a deadline in the past was set: Shutdown's
	renewNext bool       // a request was answered here since miekg set the deadline

	mu   sync.Mutex // guards the fields below: a handler may write from another goroutine
	w    []byte     // answers not yet written
	werr error      // the first failed write: later ones fail too
}

// Read gives miekg/dns the requests the wire cache cannot answer; plain
// queries are answered here, their answers held with the others. Answers
// keep the order of the requests: miekg asks for the next request only
// once it has answered the last.
func (c *bufferedConn) Read(p []byte) (int, error) {
	for len(c.pending) == 0 {
		if c.cache == nil {
			return c.r.Read(p)
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
			continue
		}
		if c.answer(req[2:]) {
			c.r.Discard(size)
			c.dmu.Lock()
			c.renewNext = true // the next read waits for a new request
			c.dmu.Unlock()
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
		return false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.werr != nil {
		return true // the connection is dead: nothing more will be sent
	}
	at := len(c.w)
	c.w = binary.BigEndian.AppendUint16(c.w, uint16(len(e.msg)))
	c.w = append(c.w, e.msg...)
	q.patch(c.w[at+2:], e, e.serial.Load())
	c.cache.count(e)
	if o := c.cache.counters.TCPLatency; o != nil {
		o.Observe(0) // answered as read
	}
	if len(c.w) >= tcpBuffer {
		c.flushLocked()
	}
	return true
}

// SetReadDeadline marks a deadline in the past (miekg's Shutdown) so that
// the connection's own loop no longer renews it.
func (c *bufferedConn) SetReadDeadline(t time.Time) error {
	c.dmu.Lock()
	defer c.dmu.Unlock()
	if !t.IsZero() && !t.After(time.Now()) {
		c.shut = true
	}
	c.renewNext = false
	return c.Conn.SetReadDeadline(t)
}

// renew gives the next request the idle timeout, as miekg does after
// each request it reads itself, once a request was answered here.
func (c *bufferedConn) renew() {
	c.dmu.Lock()
	defer c.dmu.Unlock()
	if c.renewNext && !c.shut && c.idle > 0 {
		c.Conn.SetReadDeadline(time.Now().Add(c.idle))
	}
	c.renewNext = false
}

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
	// A client that stops reading must not hold the connection forever.
	c.Conn.SetWriteDeadline(time.Now().Add(c.timeout))
	_, c.werr = c.Conn.Write(c.w)
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
	return c.Conn.Close()
}

// flushingReader is the socket as the read buffer sees it: before waiting
// for input, the answers to the queries already read go out.
type flushingReader struct{ c *bufferedConn }

func (f flushingReader) Read(p []byte) (int, error) {
	if err := f.c.flush(); err != nil {
		return 0, err
	}
	f.c.renew()
	return f.c.Conn.Read(p)
}
