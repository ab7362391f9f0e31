package authority

import (
	"bufio"
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

// bufferedListener hands out buffered connections.
type bufferedListener struct {
	net.Listener
	writeTimeout time.Duration // bounds each write of held answers
}

func (l bufferedListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	b := &bufferedConn{Conn: c, timeout: l.writeTimeout}
	b.r = bufio.NewReaderSize(flushingReader{b}, tcpBuffer)
	return b, nil
}

// A bufferedConn is a TCP connection whose writes are held until the next
// read that would wait on the socket, or until tcpBuffer bytes are held.
type bufferedConn struct {
	net.Conn
	r       *bufio.Reader // reads through flushingReader
	timeout time.Duration

	mu   sync.Mutex // guards the fields below: a handler may write from another goroutine
	w    []byte     // answers not yet written
	werr error      // the first failed write: later ones fail too
}

func (c *bufferedConn) Read(p []byte) (int, error) { return c.r.Read(p) }

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
	return f.c.Conn.Read(p)
}
