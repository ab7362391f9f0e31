//go:build !portable

package wire

import (
	"io"
	"net"
	"os"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// A TCP connection's reads and writes are raw system calls, as the UDP
// loop's are (loop_linux.go): the socket is non-blocking, so read(2) and
// send(2) return EAGAIN rather than block, and the poller waits then, with
// the connection's deadlines, as it did. Through Syscall each call told
// the scheduler that it might block, and the runtime's monitor, polling
// every 20 µs while such calls came that often, handed the P to another
// thread whenever one outlasted its tick: under dnsperf over TCP the
// monitor's sleeps and the thread switches they caused took 23% of the
// server's CPU (perf record).
//
// Those hand-overs were also what let the other connections run while
// one of them kept finding requests to read: a goroutine that never
// waits never returns to the scheduler, and the others, ready on the
// network, stay unnoticed until the scheduler polls it, or the monitor
// every 10 ms. So a connection that has read yieldReads times without
// waiting sleeps yieldFor before its next read, its answers sent (see
// yield).

// yieldReads is how many reads in a row find data before a connection
// yields: a client that pipelines without pause gets there, one that
// waits for its answers does not.
const yieldReads = 16

// rawTCP sets c up to read and write with raw system calls, if its
// connection is a TCP socket.
func (c *bufferedConn) rawTCP() {
	tc, ok := c.Conn.(*net.TCPConn)
	if !ok {
		return
	}
	if rc, err := tc.SyscallConn(); err == nil {
		c.sock = rc
		c.readFn, c.writeFn = c.rawRead, c.rawWrite // made once: no closure per call
	}
}

// read is Conn.Read.
func (c *bufferedConn) read(p []byte) (int, error) {
	if c.sock == nil || len(p) == 0 {
		return c.Conn.Read(p)
	}
	c.yield()
	c.rp, c.rn, c.rerrno, c.rwaited = p, 0, 0, false
	err := c.sock.Read(c.readFn)
	n := c.rn
	c.rp = nil
	if c.rwaited {
		c.streak = 0
	} else {
		c.streak++
	}
	switch {
	case err != nil:
		return 0, err
	case c.rerrno != 0:
		return 0, c.opError("read", c.rerrno)
	case n == 0:
		return 0, io.EOF
	}
	return n, nil
}

func (c *bufferedConn) rawRead(fd uintptr) bool {
	for {
		n, _, e := unix.RawSyscall(unix.SYS_READ, fd, uintptr(unsafe.Pointer(&c.rp[0])), uintptr(len(c.rp)))
		switch e {
		case 0:
			c.rn = int(n)
			return true
		case unix.EINTR:
		case unix.EAGAIN:
			c.rwaited = true
			return false // wait for the poller
		default:
			c.rerrno = e
			return true
		}
	}
}

// yield sleeps yieldFor once the connection has read yieldReads times
// without waiting: the scheduler then polls the network and runs the
// other connections. It comes after the answers have been sent (read is
// called once they are), so that the client has what it waits for and
// can send more: a sleep with no goroutine left to run lasts until the
// network wakes the poller, or 1 ms (the poller's resolution). Counted in
// reads rather than time: on a loaded machine, where the server is
// descheduled between reads, 500 µs passed without a wait on every
// connection at once, and they all slept while their clients waited for
// the answers to what they had just read (server idle, 28-47k q/s).
func (c *bufferedConn) yield() {
	if c.streak >= yieldReads {
		c.streak = 0
		time.Sleep(yieldFor)
	}
}

// write is Conn.Write, with c.mu held: it returns how much of p it wrote
// when the write deadline passes.
func (c *bufferedConn) write(p []byte) (int, error) {
	if c.sock == nil || len(p) == 0 {
		return c.Conn.Write(p)
	}
	c.wp, c.wn, c.werrno = p, 0, 0
	err := c.sock.Write(c.writeFn)
	n := c.wn
	c.wp = nil
	if err == nil && c.werrno != 0 {
		err = c.opError("write", c.werrno)
	}
	return n, err
}

func (c *bufferedConn) rawWrite(fd uintptr) bool {
	for c.wn < len(c.wp) {
		// send(2) with MSG_NOSIGNAL: a client gone is EPIPE, not SIGPIPE.
		n, _, e := unix.RawSyscall6(unix.SYS_SENDTO, fd, uintptr(unsafe.Pointer(&c.wp[c.wn])), uintptr(len(c.wp)-c.wn), unix.MSG_NOSIGNAL, 0, 0)
		switch e {
		case 0:
			c.wn += int(n)
		case unix.EINTR:
		case unix.EAGAIN:
			return false // wait for the poller
		default:
			c.werrno = e
			return true
		}
	}
	return true
}

// opError is the error net.Conn's Read and Write give for errno.
func (c *bufferedConn) opError(op string, errno syscall.Errno) error {
	return &net.OpError{Op: op, Net: "tcp", Source: c.LocalAddr(), Addr: c.RemoteAddr(), Err: os.NewSyscallError(op, errno)}
}
