//go:build !portable

package wire

import (
	"io"
	"net"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
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
	paused := false
	for {
		n, _, e := unix.RawSyscall(unix.SYS_READ, fd, uintptr(unsafe.Pointer(&c.rp[0])), uintptr(len(c.rp)))
		switch e {
		case 0:
			c.rn = int(n)
			if n > 0 {
				c.t.gate.enter(c)
			}
			return true
		case unix.EINTR:
		case unix.EAGAIN:
			// Once only: the read after the pause, empty too, waits.
			if !paused && c.t.gate.drained(c, time.Now()) {
				paused = true
				c.t.gate.pause()
				continue
			}
			c.rwaited = true
			return false // wait for the poller
		default:
			c.rerrno = e
			return true
		}
	}
}

// DNS over TCP pays per read and per write, whatever they carry: against
// dnsperf (20 connections, pinned to one CPU beside the server's), the
// read(2) that found a few requests, the send(2) of their answers, the
// read that then found the socket empty and the wait in the poller took 80
// to 90% of the server's CPU. How many requests a read finds depends on
// how fast the client sends: 3.3 at 150k queries/s (450k queries per
// server CPU-second), one at 60k (one send and two reads per query, 80k to
// 150k per CPU-second), where Knot answers about 100k per CPU-second at
// any rate. That is why annuaire's figure over TCP fell with the machine's
// slow state, where dnsperf sends more slowly (issue 19).
//
// So while requests stream in, the last connection to find its socket
// empty lets them gather for a while before it waits, as the UDP reader
// does after a short batch (see coalesce): it sleeps holding the P, so
// that with one P (annuaire pinned to one CPU) no event wakes the process
// meanwhile, then every connection reads what gathered (see
// tcpGate.pause). Against dnsperf at 60k, 100k and full rate, in twelve
// alternating runs on the shared machine (5 Dec), pauses of 500 µs took
// reads per query from 0.33–1.9 to 0.18–0.69, sends from 0.21–0.94 to
// 0.11–0.42, and queries per server CPU-second 1.3 to 2.3 times higher
// (0.98 in one pair). But each connection's turn costs two reads and a
// send, whatever it carries, and at 100k queries/s over 20 connections 500
// µs gathers two or three requests each: 141–198k queries per server
// CPU-second at 100k, where Knot made 101–115k. So a pause lasts long
// enough for each connection to gather tcpGather requests at the rate of
// the last window (length), from 500 µs to 1 ms: on the quiet machine
// (12:47, three servers in turn, dnsperf at 100k then at full rate, twice)
// 247k and 270k queries per server CPU-second at 100k, against 186k and
// 191k with 500 µs, and 328k and 388k at full rate, against 255k and 330k
// (Knot 86–97k). Always 1 ms gathered more still (584k at full rate
// against 438k with 500 µs, 12:29), but the rest of the process waits for
// the pauses too: under 1,000 API writes/s over TCP the writes fell to
// 905/s, p50 5.8 ms, against 962/s and 3.4 ms with 500 µs in the same run
// (bench/run.sh updates); with the length from the rate, which is 500–700
// µs at full rate, 999/s and 4.1 ms against 996/s and 4.1 ms.
//
// A request that comes during a pause waits for it, 1 ms at most. Hence
// the conditions (tcpGate.drained): requests came at two or more per
// tcpPauseFor over the last rateWindow, from two connections or more (a
// lone connection is never paused: a client that waits for each answer
// before its next query would wait for every pause); and a pause pays for
// its wait (the reads after it took at least three requests for two
// waits), else only one pause per tcpProbeEvery tries whether it now
// would: clients that each wait for their answer, where a pause gathers
// one request per connection, lose at most one pause's time in every
// tcpProbeEvery.
const (
	tcpPauseFor   = 500 * time.Microsecond
	tcpPauseMax   = time.Millisecond
	tcpGather     = 5 // requests per connection a pause aims to gather
	tcpProbeEvery = 10 * time.Millisecond
)

// A tcpGate is a listener's state for pauses (see tcpPauseFor).
type tcpGate struct {
	active atomic.Int64 // connections whose last read found data
	poke   *poke        // nil if no eventfd could be had: no pauses

	mu     sync.Mutex    // guards the fields below
	window int64         // when the current rate window started (Unix ns)
	taken  int           // requests taken in it, by connections found empty
	conns  int           // connections found empty in it
	rate   int           // requests per tcpPauseFor in the last window closed
	spread int           // connections found empty in it
	long   time.Duration // the pauses' length, from that window (see length)
	round  bool          // a pause and the reads after it are under way
	closed bool          // the listener is: no more pauses

	// What the reads after the last pause took: requests, and waits
	// (sockets found empty); whether that pause paid; when a pause that
	// was not sure to pay was last tried; how many pauses were made.
	measuring    bool
	after, waits int
	pays         bool
	probed       int64
	paused       int
}

func (g *tcpGate) open() { g.poke = newPoke() }

func (g *tcpGate) close() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.poke != nil && !g.closed {
		g.poke.f.Close()
	}
	g.closed = true
}

// enter counts c among the active connections: its read found data.
func (g *tcpGate) enter(c *bufferedConn) {
	if !c.active {
		c.active = true
		g.active.Add(1)
	}
}

// leave counts c out of them: it is closed.
func (g *tcpGate) leave(c *bufferedConn) {
	if c.active {
		c.active = false
		g.active.Add(-1)
	}
}

// drained records that c found its socket empty at now, and reports
// whether c is to pause (see tcpPauseFor): it was the last active
// connection, no pause is under way, and the rate, the pipelining and
// the last pause's gain allow it.
func (g *tcpGate) drained(c *bufferedConn, now time.Time) bool {
	if !c.active {
		return false // a wake-up that found nothing: no request taken since
	}
	c.active = false
	last := g.active.Add(-1) == 0
	t := now.UnixNano()
	g.mu.Lock()
	defer g.mu.Unlock()
	if d := t - g.window; d >= int64(rateWindow) {
		g.rate = int(int64(g.taken) * int64(tcpPauseFor) / d)
		g.spread = g.conns
		g.long = length(g.taken, g.conns, time.Duration(d))
		g.window, g.taken, g.conns = t, 0, 0
	}
	g.taken += c.taken
	if c.window != g.window {
		c.window = g.window
		g.conns++
	}
	if g.measuring {
		g.after += c.taken
		g.waits++
	}
	c.taken = 0
	if !last || g.round {
		return false
	}
	if g.measuring {
		g.measuring = false
		g.pays = 2*g.after >= 3*g.waits
	}
	if g.closed || g.poke == nil || g.rate < 2 || g.spread < 2 {
		return false
	}
	if !g.pays {
		if t-g.probed < int64(tcpProbeEvery) {
			return false
		}
		g.probed = t
	}
	g.round = true
	g.paused++
	return true
}

// length is how long pauses last when taken requests came from conns
// connections in d: long enough that each connection gathers tcpGather
// requests at that rate, from tcpPauseFor to tcpPauseMax.
func length(taken, conns int, d time.Duration) time.Duration {
	if taken <= 0 {
		return tcpPauseFor
	}
	return min(max(time.Duration(int64(tcpGather*conns)*int64(d)/int64(taken)), tcpPauseFor), tcpPauseMax)
}

// pause lets requests gather for g.long, then every connection read
// them before the pausing one reads again. Until then no other connection
// pauses: each would otherwise pause in turn as it found its socket
// empty, one connection read per pause.
//
// The rest of the process runs first: a poke makes the P poll the network
// and the Gosched puts the pausing reader behind every goroutine that is
// ready (see batch.yield); the sleep is what is left of g.long after
// their turn, if anything, and keeps the P (see pause), so no event wakes
// it. Then another poke and Gosched let every connection whose requests
// gathered read them, and the reads after the pause are counted until
// the next decision.
//
// The rest of the process waits for the pauses too: what that costs the
// API's writes while dnsperf loads TCP is in BENCHMARKS.md (issue 19, 5
// Dec 2026, 13:25). Skipping the pauses for crowdedFor after two yields
// that the rest of the process filled, as the UDP reader stops
// lingering, did worse in the one run tried (1,918 write slots missed of
// 10,000, p99 111 ms).
func (g *tcpGate) pause() {
	g.mu.Lock()
	long := g.long
	g.mu.Unlock()
	start := time.Now()
	g.poke.poll()
	runtime.Gosched()
	if d := long - time.Since(start); d > 0 {
		pause(d)
	}
	g.mu.Lock()
	g.measuring, g.after, g.waits = true, 0, 0
	g.mu.Unlock()
	g.poke.poll()
	runtime.Gosched()
	g.mu.Lock()
	g.round = false
	g.mu.Unlock()
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
