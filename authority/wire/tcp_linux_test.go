//go:build !portable

package wire

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/annuaire/annuaire/authority/internal/authtest"
)

// TestTCPGate checks when the last connection to find its socket empty
// pauses (see tcpPauseFor): while requests come fast, from two
// connections or more, once no other is active and no pause is under
// way; after a pause that did not pay, once per tcpProbeEvery; never
// once the listener is closed.
func TestTCPGate(t *testing.T) {
	fast := 4 * int(rateWindow/tcpPauseFor) // requests per rateWindow: 4 per pause
	slow := int(rateWindow/tcpPauseFor) - 1
	for _, tc := range []struct {
		name      string
		taken     []int // by each connection that finds its socket empty in the window
		alone     bool  // the deciding connection is the one that took them
		others    bool  // another connection is still active at the decision
		round     bool  // a pause is under way
		closed    bool
		lastPaid  int // the last pause: 0 none, 1 paid, -1 did not
		sinceTry  time.Duration
		wantPause bool
	}{
		{name: "fast, two connections", taken: []int{fast / 2, fast / 2}, wantPause: true},
		{name: "fast, one request per wait", taken: ones(fast), wantPause: true},
		{name: "fast, one connection", taken: []int{fast}, alone: true},
		{name: "slow", taken: []int{slow / 2, slow - slow/2}},
		{name: "another connection active", taken: []int{fast / 2, fast / 2}, others: true},
		{name: "a pause under way", taken: []int{fast / 2, fast / 2}, round: true},
		{name: "closed", taken: []int{fast / 2, fast / 2}, closed: true},
		{name: "the last pause paid", taken: []int{fast / 2, fast / 2}, lastPaid: 1, wantPause: true},
		{name: "the last pause did not pay", taken: []int{fast / 2, fast / 2}, lastPaid: -1, sinceTry: tcpProbeEvery / 2},
		{name: "the last pause did not pay, time to try", taken: []int{fast / 2, fast / 2}, lastPaid: -1, sinceTry: tcpProbeEvery, wantPause: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := &tcpGate{poke: newPoke()}
			if g.poke == nil {
				t.Fatal("no eventfd")
			}
			defer g.close()
			tb := &tcpTable{}
			start := time.Now()
			g.window = start.UnixNano()
			// The window's connections, another, and the one that
			// decides as it closes the window (after rateWindow).
			conns := make([]*bufferedConn, len(tc.taken)+2)
			for i := range conns {
				conns[i] = &bufferedConn{t: tb}
				g.enter(conns[i])
			}
			c := conns[len(conns)-1]
			if tc.alone {
				g.leave(conns[0])
				conns[0] = c
			}
			for i, n := range tc.taken {
				conns[i].taken = n
				if g.drained(conns[i], start.Add(rateWindow/2)) {
					t.Fatalf("paused with other connections active")
				}
				g.enter(conns[i]) // it reads again
			}
			for _, o := range conns[:len(tc.taken)] {
				if o != c {
					g.leave(o)
				}
			}
			if !tc.others {
				g.leave(conns[len(conns)-2])
			}
			switch tc.lastPaid {
			case 1:
				g.measuring, g.after, g.waits = true, 3, 2
			case -1:
				g.measuring, g.after, g.waits = true, 1, 1
				g.probed = start.Add(rateWindow - tc.sinceTry).UnixNano()
			}
			g.round = tc.round
			if tc.closed {
				g.close()
			}
			got := g.drained(c, start.Add(rateWindow))
			if got != tc.wantPause {
				t.Errorf("pause %v, want %v (rate %d per %v, %d pipelining, pays %v)", got, tc.wantPause, g.rate, tcpPauseFor, g.spread, g.pays)
			}
			if got && !g.round {
				t.Errorf("paused without marking the round")
			}
			if c.active || g.active.Load() != map[bool]int64{true: 1, false: 0}[tc.others] {
				t.Errorf("%d active after the decision", g.active.Load())
			}
		})
	}
}

// TestTCPPauseLength checks how long pauses last: for each connection to
// gather tcpGather requests at the last window's rate, from tcpPauseFor
// to tcpPauseMax.
func TestTCPPauseLength(t *testing.T) {
	ms := time.Millisecond
	for _, tc := range []struct {
		taken, conns int
		d, want      time.Duration
	}{
		{tcpGather * 20 * 2, 20, ms, tcpPauseFor},    // 200k/s over 20: 500 µs
		{tcpGather * 20 * 3 / 2, 20, ms, 2 * ms / 3}, // 150k/s: 667 µs
		{tcpGather * 20, 20, ms, ms},                 // 100k/s: 1 ms
		{tcpGather * 20 / 2, 20, ms, tcpPauseMax},    // 50k/s: 2 ms, at most tcpPauseMax
		{tcpGather * 2 * 10, 2, ms, tcpPauseFor},     // 2 connections: 100 µs, at least tcpPauseFor
		{tcpGather * 20 * 2, 20, 2 * ms, ms},         // the same count over a longer window
		{0, 20, ms, tcpPauseFor},                     // nothing taken
	} {
		if got := length(tc.taken, tc.conns, tc.d); got != tc.want {
			t.Errorf("%d requests from %d connections in %v: pauses of %v, want %v", tc.taken, tc.conns, tc.d, got, tc.want)
		}
	}
}

// TestTCPGatePause checks that a pause lets the rest of the process run
// first, before its sleep, and ends the round, counting the reads after
// it.
func TestTCPGatePause(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	g := &tcpGate{poke: newPoke(), round: true}
	if g.poke == nil {
		t.Fatal("no eventfd")
	}
	defer g.close()
	ran := make(chan bool, 1) // whether before the sleep
	ready := make(chan struct{})
	go func() {
		<-ready
		g.mu.Lock()
		ran <- !g.measuring // set once the sleep is over
		g.mu.Unlock()
	}()
	runtime.Gosched() // the other goroutine waits on ready
	close(ready)      // and is ready for the P, which this one keeps
	g.pause()
	select {
	case first := <-ran:
		if !first {
			t.Errorf("the other goroutine ran after the sleep, not before")
		}
	default:
		t.Errorf("the other goroutine did not run during the pause")
	}
	if g.round || !g.measuring {
		t.Errorf("after the pause: round %v, measuring %v", g.round, g.measuring)
	}
}

func ones(n int) []int {
	s := make([]int, n)
	for i := range s {
		s[i] = 1
	}
	return s
}

// TestTCPPause serves real connections through the gate: twenty that
// pipeline get every answer, in order and byte for byte the full path's,
// and the listener pauses between their bursts; a lone client is never
// paused.
func TestTCPPause(t *testing.T) {
	s := newServer(authtest.Bench(t, 100))
	mix := authtest.BenchMix(t)
	want := make([][]byte, len(mix))
	for i, req := range mix {
		r := new(dns.Msg)
		if err := r.Unpack(req); err != nil {
			t.Fatal(err)
		}
		b, err := s.respond(r, true).Pack()
		if err != nil {
			t.Fatal(err)
		}
		want[i] = b
	}
	serve := func(t *testing.T) (string, *tcpGate) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		bl := s.Listener(ln, TCPConfig{})
		srv := &dns.Server{Listener: bl, Net: "tcp", MaxTCPQueries: -1, Handler: dns.HandlerFunc(func(w dns.ResponseWriter, r *dns.Msg) {
			w.WriteMsg(s.respond(r, true))
		})}
		go srv.ActivateAndServe()
		t.Cleanup(func() { srv.Shutdown() })
		return ln.Addr().String(), &bl.(*bufferedListener).t.gate
	}
	paused := func(g *tcpGate) int {
		g.mu.Lock()
		defer g.mu.Unlock()
		return g.paused
	}
	// ask sends the requests of mix from first on, burst at a time, in
	// one write each, and checks the answers.
	ask := func(c net.Conn, first, n, burst int) error {
		var out []byte
		for i := first; i < first+n; i += burst {
			out = out[:0]
			for j := i; j < i+burst; j++ {
				q := mix[j%len(mix)]
				out = binary.BigEndian.AppendUint16(out, uint16(len(q)))
				out = append(out, q...)
			}
			if _, err := c.Write(out); err != nil {
				return err
			}
			for j := i; j < i+burst; j++ {
				var size [2]byte
				if _, err := io.ReadFull(c, size[:]); err != nil {
					return err
				}
				got := make([]byte, binary.BigEndian.Uint16(size[:]))
				if _, err := io.ReadFull(c, got); err != nil {
					return err
				}
				if w := want[j%len(mix)]; !bytes.Equal(got, w) {
					return fmt.Errorf("answer %d differs\ngot:\n%v\nwant:\n%v", j, unpacked(got), unpacked(w))
				}
			}
		}
		return nil
	}

	t.Run("pipelining", func(t *testing.T) {
		addr, g := serve(t)
		var wg sync.WaitGroup
		errs := make(chan error, 20)
		for k := range 20 {
			wg.Go(func() {
				c, err := net.Dial("tcp", addr)
				if err != nil {
					errs <- err
					return
				}
				defer c.Close()
				errs <- ask(c, 7*k, 2000, 20)
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				t.Fatal(err)
			}
		}
		if paused(g) == 0 {
			t.Errorf("20 connections pipelining 40,000 requests: no pause")
		}
	})
	t.Run("alone", func(t *testing.T) {
		addr, g := serve(t)
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if err := ask(c, 0, 2000, 1); err != nil {
			t.Fatal(err)
		}
		if err := ask(c, 0, 20000, 20); err != nil {
			t.Fatal(err)
		}
		if n := paused(g); n != 0 {
			t.Errorf("a lone connection, one request at a time then 20: %d pauses", n)
		}
	})
}

func unpacked(b []byte) *dns.Msg {
	m := new(dns.Msg)
	m.Unpack(b)
	return m
}
