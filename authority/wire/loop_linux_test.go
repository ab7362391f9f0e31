//go:build !portable

package wire

import (
	"net"
	"net/netip"
	"runtime"
	"sync/atomic"
	"testing"
	"time"
	"unsafe"

	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sys/unix"

	"github.com/annuaire/annuaire/authority/internal/authtest"
)

// TestBatchYield checks when a reader gives up its P: never right after
// it waited on its socket, and after yieldAfter of work without a wait;
// with a poke, or by sleeping where it has none.
func TestBatchYield(t *testing.T) {
	for _, tc := range []struct {
		name string
		poke *poke
	}{{"poke", newPoke()}, {"sleep", nil}} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.poke != nil {
				defer tc.poke.f.Close()
			}
			b := batch{poke: tc.poke}
			start := time.Now()
			b.waited = true
			b.yield(time.Now())
			if b.waited || b.busy.Before(start) {
				t.Fatalf("after a wait: waited %v, busy since %v (before %v)", b.waited, b.busy, start)
			}
			busy := b.busy
			b.yield(time.Now()) // busy for less than yieldAfter: no yield
			if b.busy != busy {
				t.Errorf("yielded %v after a wait", time.Since(busy))
			}
			b.busy = time.Now().Add(-2 * yieldAfter)
			before := time.Now()
			b.yield(before)
			if !b.busy.After(before) || tc.poke == nil && time.Since(before) < yieldFor {
				t.Errorf("busy for %v without a wait: did not yield (busy since %v)", 2*yieldAfter, b.busy)
			}
		})
	}
}

// TestPoke checks that a poke lets a goroutine run whose socket became
// readable while the only P was kept busy: the goroutine is not runnable
// until something polls the network, and a Gosched alone does not.
func TestPoke(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	p := newPoke()
	if p == nil {
		t.Fatal("no eventfd")
	}
	defer p.f.Close()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	var read atomic.Bool
	done := make(chan struct{})
	go func() {
		defer close(done)
		if _, _, err := pc.ReadFrom(make([]byte, 1)); err == nil {
			read.Store(true)
		}
	}()
	runtime.Gosched() // the reader parks in the poller
	c, err := net.Dial("udp", pc.LocalAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write([]byte{1}); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		p.poll()
		// Behind every goroutine the poll made ready. Gosched takes the
		// global queue first one time in 61: a second round then lets
		// them run.
		runtime.Gosched()
		runtime.Gosched()
		if read.Load() {
			break
		}
	}
	if !read.Load() {
		t.Error("a goroutine whose socket is readable did not run after the poke")
	}
	pc.Close()
	<-done
}

// TestBatchYieldCrowded checks that two yields in a row that the rest of
// the process fills stop the reader lingering for a while, and that one
// does not.
func TestBatchYieldCrowded(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	b := batch{poke: newPoke()}
	if b.poke == nil {
		t.Fatal("no eventfd")
	}
	defer b.poke.f.Close()
	// Another goroutine, ready when the reader yields, takes the P for
	// twice crowdedAfter of CPU, once per yield. Buffered, so that neither
	// side's send gives it the P before the yield.
	ready := make(chan struct{}, 1)
	done := make(chan struct{}, 1)
	var burnt atomic.Int32
	go func() {
		for range ready {
			// CPU, not wall time: on a loaded machine the thread
			// may wait for its CPU meanwhile
			for start := processCPU(); processCPU()-start < 2*crowdedAfter; {
			}
			burnt.Add(1)
			done <- struct{}{}
		}
	}()
	defer close(ready)
	// crowd reports whether the other goroutine ran within the yield: a
	// collection, or the scheduler's turn for its global queue, can put
	// it after.
	crowd := func() (time.Time, bool) {
		now := time.Now()
		b.busy = now.Add(-2 * yieldAfter)
		n := burnt.Load()
		ready <- struct{}{}
		b.yield(now)
		within := burnt.Load() > n
		<-done
		return now, within
	}
	for range 5 {
		b.quiet, b.filled = time.Time{}, false
		now, within := crowd()
		if !within {
			continue
		}
		if !b.quiet.IsZero() {
			t.Errorf("one yield the others kept %v stopped lingering (quiet until %v)", b.busy.Sub(now), b.quiet)
		}
		if now, within = crowd(); !within {
			continue
		}
		if !b.quiet.After(now.Add(crowdedFor / 2)) {
			t.Errorf("a second yield the others kept %v did not stop lingering (quiet until %v)", b.busy.Sub(now), b.quiet)
		}
		return
	}
	t.Fatal("the other goroutine never ran within a yield")
}

// TestBatchCoalesce checks when a reader lets datagrams gather before its
// next read, and for how long: after a short batch of more than one, while
// they arrive fast enough to bring two more in coalesceFor, for
// coalesceFor, or crowdedCoalesceFor while the process is crowded; never
// after a lone datagram, a batch that already pays for its calls, a batch
// that handed a datagram to the full path, or at a slower rate.
func TestBatchCoalesce(t *testing.T) {
	// per coalesceFor: datagrams in rateWindow that make the rate
	fast := int(2 * rateWindow / coalesceFor)
	slow := int(rateWindow/coalesceFor) - 1
	for _, tc := range []struct {
		name            string
		n, rate         int // the last batch, and the datagrams of the last window
		crowded, handed bool
		want            time.Duration
	}{
		{"short batch, fast", 3, fast, false, false, coalesceFor},
		{"two, fast", 2, fast, false, false, coalesceFor},
		{"lone datagram, fast", 1, fast, false, false, 0},
		{"none", 0, fast, false, false, 0},
		{"short batch, slow", 3, slow, false, false, 0},
		{"batch of coalesceBelow", coalesceBelow, fast, false, false, 0},
		{"full batch", batchSize, fast, false, false, 0},
		{"short batch, fast, crowded", 3, fast, true, false, crowdedCoalesceFor},
		{"lone datagram, fast, crowded", 1, fast, true, false, 0},
		{"short batch, slow, crowded", 3, slow, true, false, 0},
		{"full batch, crowded", batchSize, fast, true, false, 0},
		{"short batch, fast, handed", 3, fast, false, true, 0},
		{"short batch, fast, crowded, handed", 3, fast, true, true, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var b batch
			start := time.Now()
			b.window = start
			// the window's datagrams, then the batch that closes it
			b.n = tc.rate - tc.n
			b.count(start.Add(rateWindow / 2))
			b.n = tc.n
			now := start.Add(rateWindow)
			b.count(now)
			b.handed = tc.handed
			if tc.crowded {
				b.quiet = now.Add(crowdedFor)
			}
			if got := b.coalesce(now); got != tc.want {
				t.Errorf("after a batch of %d with %d datagrams in %v (crowded %v, handed %v): pause %v (%d per %v), want %v",
					tc.n, tc.rate, rateWindow, tc.crowded, tc.handed, got, b.arrivals, coalesceFor, tc.want)
			}
		})
	}
}

// TestBatchGather checks that a crowded reader's pause starts with a
// yield, in which the rest of the process runs, unless it yielded since
// its last batch; and that a calm reader's does not give up the P.
func TestBatchGather(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	b := batch{poke: newPoke()}
	if b.poke == nil {
		t.Fatal("no eventfd")
	}
	defer b.poke.f.Close()
	var ran atomic.Int32
	ready := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for range ready {
			ran.Add(1)
		}
	}()
	// Once it waits on ready, a send makes the other goroutine ready for
	// the P, which the reader keeps until it yields.
	wake := func() {
		for sent := false; !sent; {
			select {
			case ready <- struct{}{}:
				sent = true
			default:
				runtime.Gosched()
			}
		}
	}
	wake()
	now := time.Now()
	b.gather(now, coalesceFor)
	if n := ran.Load(); n != 0 {
		t.Errorf("calm: the other goroutine ran during the pause")
	}
	b.quiet = now.Add(crowdedFor)
	now = time.Now()
	b.gather(now, crowdedCoalesceFor)
	if n := ran.Load(); n != 1 {
		t.Errorf("crowded: the other goroutine did not run during the pause")
	}
	wake()
	now = time.Now()
	b.busy = now.Add(time.Microsecond) // a yield at the end of the batch
	b.gather(now, crowdedCoalesceFor)
	if n := ran.Load(); n != 1 {
		t.Errorf("crowded, just yielded: the other goroutine ran during the pause")
	}
	close(ready)
	<-done
}

// TestBatchRate checks the arrival rate: counted over a whole window, kept
// until the next one closes.
func TestBatchRate(t *testing.T) {
	var b batch
	start := time.Now()
	b.count(start) // the first window starts
	b.n = 40
	b.count(start.Add(rateWindow / 2))
	if b.arrivals != 0 {
		t.Errorf("rate %d per %v before the first window closed", b.arrivals, coalesceFor)
	}
	b.count(start.Add(rateWindow)) // 80 in rateWindow
	if want := int(80 * coalesceFor / rateWindow); b.arrivals != want {
		t.Errorf("80 datagrams in %v: %d per %v, want %d", rateWindow, b.arrivals, coalesceFor, want)
	}
	b.n = 1
	b.count(start.Add(rateWindow + rateWindow/2))
	if want := int(80 * coalesceFor / rateWindow); b.arrivals != want {
		t.Errorf("mid-window: %d per %v, want the last window's %d", b.arrivals, coalesceFor, want)
	}
	b.count(start.Add(11 * rateWindow)) // 2 datagrams in 10 windows
	if b.arrivals != 0 {
		t.Errorf("2 datagrams in %v: %d per %v, want 0", 10*rateWindow, b.arrivals, coalesceFor)
	}
}

// BenchmarkBatch is a reader's work between its two system calls: a batch
// of 32 datagrams of the mix from a loopback client, answered from the
// cache with the server's counters and guard (cookies, rate limiting with
// loopback exempt), as annuaire serve runs it, and their latency handed
// to a hook that does nothing (what the server's does is measured by
// authority's BenchmarkLatency). One op is one batch; cpu-ns/query is per
// datagram.
func BenchmarkBatch(b *testing.B) {
	queries := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "q"}, []string{"qtype", "rcode"})
	c := newServer(authtest.Bench(b, 100)).Cache
	c.counters = Counters{
		Answers: func(qtype uint16, rcode int) prometheus.Counter {
			return queries.WithLabelValues(dns.TypeToString[qtype], dns.RcodeToString[rcode])
		},
		UDPLatency: func(float64, int) {},
	}
	c.Guard(NewCookies(), RateLimit{Rate: 200, Slip: 2, Exempt: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}})
	l := &PacketLoop{c: c}
	bt := newBatch(l)
	mix := authtest.BenchMix(b)
	for i := range batchSize {
		bt.hdrs[i].Len = uint32(copy(bt.bufs[i][:], mix[(i*7)%len(mix)]))
		bt.hdrs[i].Hdr.Namelen = unix.SizeofSockaddrInet4
		sa := (*unix.RawSockaddrInet4)(unsafe.Pointer(&bt.names[i][0]))
		sa.Family = unix.AF_INET
		sa.Port = uint16(40000 + i)
		sa.Addr = [4]byte{127, 0, 0, 1}
	}
	bt.n = batchSize
	bt.answer()
	if bt.nOut != batchSize {
		b.Fatalf("%d of %d answered from the cache", bt.nOut, batchSize)
	}
	// The machine is shared: wall time counts the other processes' turns,
	// this thread's CPU time does not.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	cpu0 := threadCPU(b)
	b.ReportAllocs()
	for b.Loop() {
		start := bt.answer()
		bt.observe(start, time.Now())
	}
	b.ReportMetric(float64(threadCPU(b)-cpu0)/float64(b.N*batchSize), "cpu-ns/query")
}

// threadCPU is the CPU time of the calling thread, in nanoseconds.
func threadCPU(tb testing.TB) int64 {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_THREAD_CPUTIME_ID, &ts); err != nil {
		tb.Fatal(err)
	}
	return ts.Nano()
}

// BenchmarkBatchYield is a reader's yield with nothing else to run, by a
// poke or by sleeping; cpu-ns/op is the process's CPU per yield.
func BenchmarkBatchYield(b *testing.B) {
	for _, bc := range []struct {
		name string
		poke *poke
	}{{"poke", newPoke()}, {"sleep", nil}} {
		b.Run(bc.name, func(b *testing.B) {
			if bc.poke != nil {
				defer bc.poke.f.Close()
			}
			bt := batch{poke: bc.poke}
			cpu0 := processCPU()
			for b.Loop() {
				bt.yieldNow()
			}
			b.ReportMetric(float64(processCPU()-cpu0)/float64(b.N), "cpu-ns/op")
		})
	}
}
