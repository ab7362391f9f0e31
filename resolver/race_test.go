package resolver

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// A fakeNet scripts connection attempts: each address connects, or is
// refused, after a delay; until then it waits, and gives up when its
// context ends unless told to ignore it (a connect that completes while
// being cancelled).
type fakeNet map[netip.AddrPort]fakeHost

type fakeHost struct {
	after        time.Duration
	refuse       bool
	hang         bool // never answers: a black hole
	ignoreCancel bool
	conn         *fakeConn // set when it connected
}

type fakeConn struct {
	net.Conn
	raddr  netip.AddrPort
	closed atomic.Bool
}

func (c *fakeConn) RemoteAddr() net.Addr { return net.TCPAddrFromAddrPort(c.raddr) }
func (c *fakeConn) LocalAddr() net.Addr  { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 40000} }
func (c *fakeConn) Close() error         { c.closed.Store(true); return nil }

func (fn fakeNet) dial(ctx context.Context, network string, raddr netip.AddrPort) (net.Conn, error) {
	h, ok := fn[raddr]
	if !ok {
		return nil, syscall.ECONNREFUSED
	}
	var timer <-chan time.Time
	if !h.hang {
		timer = time.After(h.after)
	}
	done := ctx.Done()
	if h.ignoreCancel {
		done = nil
	}
	select {
	case <-timer:
	case <-done:
		if ctx.Err() == context.DeadlineExceeded {
			return nil, &net.OpError{Op: "dial", Net: network, Err: os.ErrDeadlineExceeded} // "i/o timeout", as net says
		}
		return nil, &net.OpError{Op: "dial", Net: network, Err: ctx.Err()}
	}
	if h.refuse {
		return nil, &net.OpError{Op: "dial", Net: network, Err: &net.OpError{Err: syscall.ECONNREFUSED}}
	}
	return h.conn, nil
}

func fake(t *testing.T, hosts map[string]fakeHost) (fakeNet, *Resolver) {
	fn := fakeNet{}
	for a, h := range hosts {
		ap := netip.MustParseAddrPort(a)
		if !h.refuse && !h.hang {
			h.conn = &fakeConn{raddr: ap}
		}
		fn[ap] = h
	}
	return fn, &Resolver{dialFunc: fn.dial, DialTimeout: 5 * time.Second}
}

// connects returns the connect steps of a chain, in the order they began.
func connects(c *Chain) []Step {
	var out []Step
	for _, s := range c.Steps {
		if s.Step == "connect" {
			out = append(out, s)
		}
	}
	return out
}

func chainOf(addrs ...string) *Chain {
	c := &Chain{Name: "box"}
	for _, a := range addrs {
		ap := netip.MustParseAddrPort(a)
		c.Candidates = append(c.Candidates, Candidate{Host: "box.svc.internal.", Address: ap.Addr().String(), Port: ap.Port()})
	}
	return c
}

func us(d time.Duration) int64 { return d.Microseconds() }

// TestRaceStaggered: attempts start FallbackDelay apart without waiting for
// the earlier ones to fail, families interleaved; the first to connect
// wins and the others are cancelled (RFC 8305 sections 4 and 5).
func TestRaceStaggered(t *testing.T) {
	_, r := fake(t, map[string]fakeHost{
		"[2001:db8::1]:7": {hang: true},
		"192.0.2.1:7":     {hang: true},
		"[2001:db8::2]:7": {after: 10 * time.Millisecond},
		"192.0.2.2:7":     {after: 10 * time.Millisecond},
	})
	c := chainOf("[2001:db8::1]:7", "[2001:db8::2]:7", "192.0.2.1:7", "192.0.2.2:7")
	conn, err := r.DialChain(t.Context(), "tcp", c)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("\n%s", c.Text())
	if got := conn.RemoteAddr().String(); got != "[2001:db8::2]:7" {
		t.Errorf("connected to %s, want the third attempt, [2001:db8::2]:7", got)
	}
	steps := connects(c)
	order := []string{"[2001:db8::1]:7", "192.0.2.1:7", "[2001:db8::2]:7"}
	if len(steps) != 3 {
		t.Fatalf("%d attempts, want 3", len(steps))
	}
	for i, s := range steps {
		if s.Question != order[i] {
			t.Errorf("attempt %d to %s, want %s (families interleaved, IPv6 first)", i, s.Question, order[i])
		}
		if i > 0 {
			// Timers do not fire early; a loaded machine may fire them late.
			if gap := s.StartUS - steps[i-1].StartUS; gap < us(240*time.Millisecond) || gap > us(time.Second) {
				t.Errorf("attempt %d began %dµs after the one before, want about 250ms", i, gap)
			}
		}
	}
	for _, s := range steps[:2] {
		if !strings.Contains(s.Error, "cancelled: [2001:db8::2]:7 connected first") {
			t.Errorf("loser %s: %q", s.Question, s.Error)
		}
	}
}

// TestRaceLateWinnerClosed: an attempt that connects after another won is
// closed before the dial returns: one connection is kept.
func TestRaceLateWinnerClosed(t *testing.T) {
	fn, r := fake(t, map[string]fakeHost{
		"192.0.2.1:7": {after: 300 * time.Millisecond, ignoreCancel: true},
		"192.0.2.2:7": {after: 10 * time.Millisecond},
	})
	r.FallbackDelay = 100 * time.Millisecond
	c := chainOf("192.0.2.1:7", "192.0.2.2:7")
	conn, err := r.DialChain(t.Context(), "tcp", c)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("\n%s", c.Text())
	if conn.RemoteAddr().String() != "192.0.2.2:7" {
		t.Errorf("connected to %v", conn.RemoteAddr())
	}
	late := fn[netip.MustParseAddrPort("192.0.2.1:7")].conn
	if !late.closed.Load() {
		t.Errorf("the late connection to 192.0.2.1:7 is still open")
	}
	if s := connects(c)[0]; !strings.Contains(s.Error, "connected after 192.0.2.2:7: closed") {
		t.Errorf("late attempt: %q", s.Error)
	}
}

// TestRaceFailureStartsNext: when no attempt is left running, the next
// starts at once rather than after the delay.
func TestRaceFailureStartsNext(t *testing.T) {
	_, r := fake(t, map[string]fakeHost{
		"192.0.2.1:7": {refuse: true},
		"192.0.2.2:7": {refuse: true},
		"192.0.2.3:7": {after: time.Millisecond},
	})
	r.FallbackDelay = 2 * time.Second
	c := chainOf("192.0.2.1:7", "192.0.2.2:7", "192.0.2.3:7")
	start := time.Now()
	conn, err := r.DialChain(t.Context(), "tcp", c)
	if err != nil {
		t.Fatal(err)
	}
	conn.Close()
	if d := time.Since(start); d > time.Second {
		t.Errorf("took %v: refusals waited for the 2s delay", d)
	}
	if n := len(connects(c)); n != 3 {
		t.Errorf("%d attempts, want 3\n%s", n, c.Text())
	}
}

// TestRaceTargetsInOrder: the next SRV target is tried only when every
// attempt at this one has failed, and its addresses are asked only then.
func TestRaceTargetsInOrder(t *testing.T) {
	s, _ := newTest(t, `$ORIGIN svc.internal.
$TTL 60
@ IN SOA ns hostmaster 1 3600 600 86400 30
first  IN A 192.0.2.1
first  IN A 192.0.2.2
second IN A 192.0.2.3
_echo._tcp IN SRV 0 0 7 first
_echo._tcp IN SRV 10 0 7 second
`)
	_, r := fake(t, map[string]fakeHost{
		"192.0.2.1:7": {hang: true},
		"192.0.2.2:7": {hang: true},
		"192.0.2.3:7": {after: time.Millisecond},
	})
	r.Server, r.DialTimeout = s.Addr, 400*time.Millisecond
	conn, c, err := r.DialTrace(t.Context(), "tcp", "echo")
	if err != nil {
		t.Fatalf("%v\n%s", err, c.Text())
	}
	conn.Close()
	t.Logf("\n%s", c.Text())
	steps := connects(c)
	if len(steps) != 3 || steps[2].Question != "192.0.2.3:7" || conn.RemoteAddr().String() != "192.0.2.3:7" {
		t.Fatalf("attempts %+v, want first's two then second's", steps)
	}
	lost := steps[1].StartUS + steps[1].DurationUS // first's last attempt gave up
	if steps[2].StartUS < lost {
		t.Errorf("second began at %dµs, before first's attempts were all lost (%dµs)", steps[2].StartUS, lost)
	}
	for _, s := range steps[:2] {
		if !strings.Contains(s.Error, "timeout") {
			t.Errorf("%s: %q, want a timeout", s.Question, s.Error)
		}
	}
}

// TestSRVPortZero: port 0 is not dialable: the target is skipped, and
// the chain says so.
func TestSRVPortZero(t *testing.T) {
	_, live := listenEcho(t)
	_, r := newTest(t, fmt.Sprintf(`$ORIGIN svc.internal.
$TTL 60
@ IN SOA ns hostmaster 1 3600 600 86400 30
box IN A 127.0.0.1
_echo._tcp IN SRV 0 0 0 box
_echo._tcp IN SRV 10 0 %d box
_zero._tcp IN SRV 0 0 0 box
`, live))
	c, err := r.Lookup(t.Context(), "echo")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("\n%s", c.Text())
	if len(c.Candidates) != 1 || c.Candidates[0].Port != uint16(live) || !strings.Contains(c.Text(), "skip       _echo._tcp.svc.internal. 60 IN SRV 0 0 0 box.svc.internal. → port 0 cannot be dialled") {
		t.Errorf("candidates %+v", c.Candidates)
	}
	conn, err := r.Dial(t.Context(), "tcp", "echo")
	if err != nil {
		t.Fatal(err)
	}
	roundTrip(t, conn)
	if _, err := r.Lookup(t.Context(), "zero"); err == nil || !strings.Contains(err.Error(), "every SRV target has port 0") {
		t.Errorf("only port 0: %v", err)
	}
}
