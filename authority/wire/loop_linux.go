//go:build !portable

package wire

import (
	"errors"
	"net"
	"net/netip"
	"os"
	"runtime"
	"syscall"
	"time"
	"unsafe"

	"github.com/annuaire/annuaire/authority/zone"
	"golang.org/x/sys/unix"
)

// The batched readers of a *net.UDPConn on Linux (see loop.go): one per
// CPU on the socket, each taking up to batchSize datagrams per recvmmsg(2)
// and sending the answers with one sendmmsg(2).

const (
	// batchSize is the datagrams per system call. Against dnsperf, 32
	// beat 8, 16 and 64 (282k and 279k q/s in two alternating rounds,
	// against 276k and 269k for 16, 270k and 240k for 64): larger bursts
	// of answers cost the client more than they save the server.
	batchSize = 32
	// socketBuffer is the receive and send buffer asked of the kernel.
	socketBuffer = 4 << 20
	// A reader that has not waited on its socket for yieldAfter yields
	// (see batch.yield); by sleeping yieldFor where it has no poke.
	yieldAfter = 500 * time.Microsecond
	yieldFor   = 20 * time.Microsecond
	// lingerFor bounds a reader's wait in recvmmsg (see lingerOn).
	lingerFor = 200 * time.Microsecond
	// Two yields in a row in which the rest of the process took more
	// than crowdedAfter of CPU stop lingering for crowdedFor (see
	// batch.yield).
	crowdedAfter = 100 * time.Microsecond
	crowdedFor   = 50 * time.Millisecond
	// After a batch of fewer than coalesceBelow datagrams, while at
	// least two arrive per coalesceFor (over the last rateWindow), a
	// reader sleeps coalesceFor before its next read, crowdedCoalesceFor
	// while the process is crowded (see coalesce).
	coalesceFor        = 50 * time.Microsecond
	crowdedCoalesceFor = 450 * time.Microsecond
	coalesceBelow      = 16
	rateWindow         = time.Millisecond
)

// batched sets l up with batched readers if its socket can have them.
func (l *PacketLoop) batched() bool {
	conn, ok := l.pc.(*net.UDPConn)
	if !ok {
		return false
	}
	raw, err := conn.SyscallConn()
	if err != nil {
		return false
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
	l.raw = raw
	raw.Control(func(fd uintptr) { l.linger = lingerOn(int(fd)) })
	// One reader per CPU the process may run on. GOMAXPROCS may exceed
	// the CPUs (annuaire serve keeps at least two Ps when its journal's
	// syncs block): two readers taking turns on one CPU cost 12% more CPU
	// per query than one, in context switches.
	l.readers = runtime.GOMAXPROCS(0)
	var cpus unix.CPUSet
	if unix.SchedGetaffinity(0, &cpus) == nil && cpus.Count() > 0 {
		l.readers = min(l.readers, cpus.Count())
	}
	l.read = func() { newBatch(l).run() }
	return true
}

// A batch is one reader's buffers, allocated once: the kernel writes into
// them in place.
type batch struct {
	l     *PacketLoop
	hdrs  [batchSize]unix.Mmsghdr
	iovs  [batchSize]unix.Iovec
	names [batchSize][unix.SizeofSockaddrInet6]byte
	bufs  [batchSize][readSize]byte

	out     [batchSize]unix.Mmsghdr
	outIovs [batchSize]unix.Iovec
	outBufs [batchSize][zone.MaxUDPSize]byte

	n, sent int   // datagrams read; answers sent of nOut
	nOut    int   // answers to send
	errno   error // of the last system call

	linger bool      // the next recv may wait in the system call (see lingerOn)
	handed bool      // a datagram of the last batch went to the full path
	waited bool      // the last read found the socket empty and waited
	busy   time.Time // since when the reader has not waited
	quiet  time.Time // when the reader may linger again (see yield)
	filled bool      // the rest of the process filled the last yield

	window   time.Time // start of the rate window (see count)
	windowN  int       // datagrams read in it
	arrivals int       // datagrams per coalesceFor in the last window

	readFn, writeFn func(fd uintptr) bool // made once: no closure per call

	poke *poke // nil if no eventfd could be had: yield sleeps instead
}

func newBatch(l *PacketLoop) *batch {
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
	b.poke = newPoke()
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
	flags := uintptr(unix.MSG_DONTWAIT)
	if b.linger {
		// The first call of a read waits, for lingerFor at most.
		b.linger, flags = false, unix.MSG_WAITFORONE
	}
	n, _, e := unix.RawSyscall6(unix.SYS_RECVMMSG, fd, uintptr(unsafe.Pointer(&b.hdrs[0])), batchSize, flags, 0, 0)
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
	if b.poke != nil {
		defer b.poke.f.Close()
	}
	var now time.Time
	for {
		// A datagram handed to the full path waits for the P, as does
		// the rest of the process while it is busy (see yield): read
		// without lingering, so that an empty socket gives it up at once.
		b.linger = l.linger && !b.handed && !now.Before(b.quiet)
		if d := b.coalesce(now); d > 0 {
			b.gather(now, d)
		}
		b.handed = false
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
		start := b.answer()
		if b.nOut > 0 {
			b.sent = 0
			if err := l.raw.Write(b.writeFn); err != nil {
				return
			}
		}
		// A batch all for the full path yields too: its goroutines need
		// the P.
		now = time.Now()
		b.count(now)
		b.observe(start, now)
		b.yield(now)
	}
}

// coalesce returns how long the reader should let datagrams gather before
// its next read, if at all: after a short batch (more than one datagram,
// fewer than coalesceBelow) while the arrival rate brings at least two in
// coalesceFor; never after a datagram was handed to the full path, whose
// goroutine needs the P at once.
//
// Each read costs its two system calls and, when it finds the socket
// empty, a sleep and a wake-up, whatever the batch. Against dnsperf at
// full rate, where the client's CPU is the limit, the reader mostly found
// two to four datagrams per read and answered 195–213k queries per
// CPU-second (Knot 194–228k in the same runs). Sleeping 50 µs after such
// a batch took its batches to 7–12 datagrams on average and the reader to
// 278–309k per CPU-second, with dnsperf's average latency no longer
// (0.9–1.0 ms against 1.1 ms: the client spends less on its own reads).
// It is the receive side's interrupt coalescing (NAPI, ethtool's
// rx-usecs), done by the reader, and costs what it does there: a datagram
// that comes during the pause waits for it, 50 µs or so (plus the
// kernel's timer slack, 50 µs by default). Answers are sent before the
// pause, never held by it. Sparse traffic is not paused: a lone datagram
// (a client that waits for each answer before its next query) is
// answered and read at once, as before; nor is a batch of coalesceBelow or
// more, which already pays for its calls.
//
// While the process is crowded (see yield) the pause is longer,
// crowdedCoalesceFor, and starts with a yield (see gather).
func (b *batch) coalesce(now time.Time) time.Duration {
	switch {
	case b.handed || b.n < 2 || b.n >= coalesceBelow || b.arrivals < 2:
		return 0
	case now.Before(b.quiet):
		return crowdedCoalesceFor
	}
	return coalesceFor
}

// gather lets datagrams gather for d before the next read. While the
// process is crowded, the pause is the rest of the process's turn: a
// yield (unless the reader yielded since the batch, at now), then a raw
// sleep for what is left of d, if anything.
//
// Under 1,000 API writes/s the reader once neither lingered nor paused
// while crowded, so that every pause in the datagrams went to the writes;
// its batches fell to 5–7 datagrams and dnsperf, which shares its CPU with
// the writes' client, got 0.82–0.85 of the queries/s it got without the
// writes (0.99 before the coalescing, when the rate without writes was
// lower). Pausing 50 µs through the runtime (time.Sleep) did worse
// (0.69–0.86): with nothing else to run, the P waits in epoll_pwait,
// which every datagram then wakes. A raw pause of 150 µs
// alone kept the batches at about 20 but left the writes only the yields
// every yieldAfter: write p50 1.7–2.1 ms against 1.0–1.2 in the same
// rounds. A yield first, which a poke makes cheap (see yield), gives them
// a turn per batch, and the raw sleep after it wakes no one. On the
// quiet machine (bench/run.sh updates, alternating with the binary
// before, 07:10–07:18 on 5 Dec), reads kept 0.83–0.87 of their rate
// with a pause of 150 µs, 0.86–0.94 with 300 µs (before: 0.83–0.90), as
// dnsperf then spends no more per query with the writes than without;
// write p50 1.3–2.0 ms for all three. 450 µs kept 0.91–0.95 where 300
// kept 0.88–0.91 in three alternating runs (09:36–09:46, the other
// session's work partly on the machine), write p50 1.2–2.1 ms for both;
// a datagram that comes while the process is crowded waits 150 µs more
// at most. A second poke at the end of the pause, to give the writes a
// turn on both sides of it, did not shorten them (p50 1.33 ms against
// 1.10, reads 0.93 for both).
func (b *batch) gather(now time.Time, d time.Duration) {
	if now.Before(b.quiet) {
		if !b.busy.After(now) {
			b.yieldNow()
		}
		d -= b.busy.Sub(now)
	}
	if d > 0 {
		pause(d)
	}
}

// count adds the last batch to the arrival rate, measured over windows of
// rateWindow at least: in datagrams per coalesceFor.
func (b *batch) count(now time.Time) {
	b.windowN += b.n
	if d := now.Sub(b.window); d >= rateWindow {
		b.arrivals = int(int64(b.windowN) * int64(coalesceFor) / int64(d))
		b.window, b.windowN = now, 0
	}
}

// pause sleeps for d without giving up the P, as the linger does (see
// lingerOn): through the runtime, the sleep would wake the poller at
// every datagram that comes meanwhile.
func pause(d time.Duration) {
	ts := unix.NsecToTimespec(d.Nanoseconds())
	unix.RawSyscall6(unix.SYS_CLOCK_NANOSLEEP, unix.CLOCK_MONOTONIC, 0, uintptr(unsafe.Pointer(&ts)), 0, 0, 0)
}

// answer writes the answers to the b.n datagrams read into b.out (b.nOut
// of them) and hands the others to the full path. It returns when it
// started if answers' latency is observed.
func (b *batch) answer() (start time.Time) {
	l := b.l
	b.nOut = 0
	if l.c.counters.UDPLatency != nil {
		start = time.Now()
	}
	for i := range b.n {
		h := &b.hdrs[i]
		req := b.bufs[i][:h.Len]
		var n int
		if h.Hdr.Flags&unix.MSG_TRUNC == 0 {
			n = l.c.AnswerFrom(req, b.outBufs[b.nOut][:], false, sockaddrIP(b.names[i][:], h.Hdr.Namelen))
		}
		if n < 0 {
			continue // rate limited
		}
		if n == 0 {
			if addr := sockaddrUDP(b.names[i][:], h.Hdr.Namelen); addr != nil {
				l.slow.hand(req, addr)
				b.handed = true
			}
			continue
		}
		o := &b.out[b.nOut]
		o.Hdr.Name = h.Hdr.Name // answer to where it came from
		o.Hdr.Namelen = h.Hdr.Namelen
		b.outIovs[b.nOut].SetLen(n)
		b.nOut++
	}
	return start
}

// observe records the latency of the answers sent, from start to now.
func (b *batch) observe(start, now time.Time) {
	latency := b.l.c.counters.UDPLatency
	if latency == nil || b.nOut == 0 {
		return
	}
	latency(now.Sub(start).Seconds(), b.nOut)
}

// yield lets the rest of the process run when queries have kept this
// reader busy for yieldAfter without a pause. The runtime notices a ready
// connection, or a journal sync finished, only when a P goes looking for
// work; with one P (one CPU) that this loop never gives up, that waits
// for the monitor's poll every 10 ms. With dnsperf saturating the CPU and
// 1,000 API writes/s, writes then had a p99 of 26–81 ms and missed up to
// 11% of their slots; the full path's goroutines (UPDATE, NOTIFY, TSIG)
// waited alike. The reader's poke (see poke) makes the P poll the
// network; a Gosched then puts the reader behind every goroutine that
// poll made ready. Only under load: a reader that finds its socket empty
// waits there anyway.
//
// The yield slept yieldFor (time.Sleep) before the poke: with nothing
// else to run, the P then waited in epoll_pwait, woken by every datagram
// that came meanwhile, and a yield cost the process 20–60 µs of CPU on
// the benchmarks' guest (80 µs on average from sleep to return, 1,400
// yields a second at full rate). A poke costs three system calls and a
// park: 3.3–3.6 µs of process CPU against 33–40 µs for the sleep
// (BenchmarkBatchYield, nothing else to run), and it returns at once
// where the sleep, with no datagram to wake the poller, lasted 1.1 ms:
// the poller's timeout is rounded up to a millisecond.
//
// Two yields in a row in which the rest of the process used more than
// crowdedAfter of CPU say it has work: the reader then stops lingering
// (see lingerOn) for crowdedFor, so that every pause in the datagrams is
// theirs, and pauses longer, starting with a yield (see gather). With
// dnsperf at full rate and 1,000 API writes/s, a reader that lingered
// regardless took the writes from p50 1.7 ms and 945/s to p50 25 ms and
// 699/s. The process's CPU time, not the yield's length: a sleep with
// nothing to run lasted until a datagram woke the poller, and gaps in the
// traffic made one in ten yields look crowded. Two yields over 100 µs,
// not one over 50 µs: the sleeping yield's own park, polls and wake-ups
// cost the process 20–60 µs of CPU, a few over 50 µs, and with nothing
// else to run one such yield in 50 ms kept the reader from lingering in
// 60–90% of its batches.
func (b *batch) yield(now time.Time) {
	switch {
	case b.waited:
		b.waited, b.busy = false, now
	case now.Sub(b.busy) > yieldAfter:
		b.yieldNow()
	}
}

func (b *batch) yieldNow() {
	cpu := processCPU()
	if b.poke != nil {
		b.poke.poll()
	} else {
		time.Sleep(yieldFor)
	}
	runtime.Gosched()
	b.busy = time.Now()
	filled := processCPU()-cpu > crowdedAfter
	if filled && b.filled {
		b.quiet = b.busy.Add(crowdedFor)
	}
	b.filled = filled
}

// A poke makes a reader's P poll the network at once (see yield): an
// eventfd the reader writes to, then waits on through the runtime's
// poller. The P, finding nothing else to run, polls without blocking
// (findRunnable's netpoll(0)) and readies the reader with every goroutine
// whose socket or eventfd became ready meanwhile; it never waits in
// epoll_pwait, since the eventfd is ready already.
type poke struct {
	f       *os.File
	raw     syscall.RawConn
	written bool
	fn      func(fd uintptr) bool // made once: no closure per call
}

func newPoke() *poke {
	fd, err := unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC)
	if err != nil {
		return nil
	}
	f := os.NewFile(uintptr(fd), "poke")
	raw, err := f.SyscallConn()
	if err != nil {
		f.Close()
		return nil
	}
	p := &poke{f: f, raw: raw}
	p.fn = p.step
	return p
}

// poll returns once the runtime's poller has seen the eventfd written.
func (p *poke) poll() {
	p.written = false
	p.raw.Read(p.fn)
}

// step writes the eventfd on its first call, after RawRead has cleared
// the file's readiness, so that the poller's one event for the write
// (edge-triggered) cannot have been taken for an earlier wait; on its
// second, the wait is over: it empties the eventfd.
func (p *poke) step(fd uintptr) bool {
	v := [8]byte{1}
	if !p.written {
		p.written = true
		unix.RawSyscall(unix.SYS_WRITE, fd, uintptr(unsafe.Pointer(&v[0])), uintptr(len(v)))
		return false
	}
	unix.RawSyscall(unix.SYS_READ, fd, uintptr(unsafe.Pointer(&v[0])), uintptr(len(v)))
	return true
}

// processCPU is the CPU time of the whole process (all its threads). The
// call is raw, as the reader's others are (see recv): the vDSO does not
// serve this clock, and through Syscall the call would wake the monitor.
func processCPU() time.Duration {
	var ts unix.Timespec
	if _, _, e := unix.RawSyscall(unix.SYS_CLOCK_GETTIME, unix.CLOCK_PROCESS_CPUTIME_ID, uintptr(unsafe.Pointer(&ts)), 0); e != 0 {
		return 0
	}
	return time.Duration(ts.Nano())
}

// lingerOn lets a reader wait for datagrams in recvmmsg(2) itself, for
// lingerFor at most, before it waits through the poller; it reports
// whether the socket allows it. Waiting through the poller costs, at each
// pause in the traffic, the recvmmsg that finds the socket empty, the
// scheduler's non-blocking epoll_pwait and its blocking one, then a
// thread's wake-up: at full rate against dnsperf, where the server idles
// between short bursts, that idle path was where annuaire spent more than
// Knot, which makes one epoll_wait per pause. A pause shorter than
// lingerFor now costs one system call that sleeps and returns with the
// datagram that woke it and those behind it.
//
// The call is raw, so the reader keeps its P while it sleeps: through
// Syscall, the runtime's monitor would take the P back after 20 µs and
// wake another thread, which is what the wait avoids. The rest of the
// process (TCP, the web server, the full path) therefore waits lingerFor
// at most for a P when datagrams pause, and the reader's yield still
// applies when they do not (a wait in the call counts as busy). A garbage
// collection's stop waits for it too.
//
// The socket's receive timeout bounds the wait, and the wait needs the
// socket blocking: O_NONBLOCK belongs to the open socket, which the
// net.UDPConn shares, so its own calls block too. Every other call on
// the socket passes MSG_DONTWAIT, and net only writes to it (the full
// path's answers), where blocking on a full buffer is a blocking UDP
// socket's ordinary behaviour.
func lingerOn(fd int) bool {
	tv := unix.NsecToTimeval(lingerFor.Nanoseconds())
	if unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv) != nil {
		return false
	}
	if unix.SetNonblock(fd, false) != nil {
		return false
	}
	return true
}

// sockaddrIP is the address of a raw socket address, without allocating;
// invalid if it is of no family the loop knows.
func sockaddrIP(name []byte, namelen uint32) netip.Addr {
	switch {
	case namelen >= unix.SizeofSockaddrInet4 && *(*uint16)(unsafe.Pointer(&name[0])) == unix.AF_INET:
		return netip.AddrFrom4([4]byte(name[4:8]))
	case namelen >= unix.SizeofSockaddrInet6 && *(*uint16)(unsafe.Pointer(&name[0])) == unix.AF_INET6:
		return netip.AddrFrom16([16]byte(name[8:24])).Unmap()
	}
	return netip.Addr{}
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
