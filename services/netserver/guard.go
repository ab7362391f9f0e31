package netserver

import (
	"hash/maphash"
	"net/netip"
	"sync"
	"time"
)

// A Guard decides which datagrams the small UDP services may answer.
// Echo, daytime and their kind answer whoever the source address names,
// and UDP source addresses can be forged: one datagram "from" another such
// service makes the two answer each other forever (CVE-1999-0103, the
// echo/chargen loop; a datagram from the echo service's own address and
// port makes it answer itself), and a stream of them turns the service
// into a reflector aimed at a victim. A Guard refuses, as the BSD inetds
// do for their internal services:
//
//   - a source port below 1024 (OpenBSD inetd's dg_badinput): the
//     well-known services live there — echo 7, discard 9, daytime 13,
//     qotd 17, chargen 19, time 37, but also DNS and NTP — and no client
//     sends from one;
//   - the port of any datagram service that shares the Guard, from any
//     address (FreeBSD inetd's check_loop): the server's own address and
//     port, a sibling service of the same process, and the same service of
//     another annuaire, which listens on the same ports;
//   - and, per source network (IPv4 /24, IPv6 /56, as DNS response rate
//     limiting counts them), more than Rate answers a second, a burst of
//     twice that allowed; each KiB of an answer counts as one more answer,
//     so that a source asking for 64 KiB echoes gets about 100 KiB a
//     second, not 1.7 GB.
//
// The zero Guard is ready to use. Its memory is fixed: sources share
// buckets of a fixed table, so a forged flood from every address cannot
// grow it, only make colliding sources share a budget.
type Guard struct {
	// Rate is the answers a second each source network may get; zero
	// means DefaultRate.
	Rate float64

	mu      sync.Mutex // guards the fields below
	ports   map[uint16]int
	seed    maphash.Seed
	buckets []bucket
}

// DefaultRate is a Guard's Rate when it is zero: ample for a person with
// nc or a program that asks and waits, far below a flood.
const DefaultRate = 100

// guardBuckets is the size of a Guard's table: 4,096 sources (64 KiB)
// before two share a budget.
const guardBuckets = 4096

type bucket struct {
	tokens float64
	last   int64 // unix nanoseconds of the last refill; 0: never used
}

// Reasons a Guard refuses a source, for the log.
const (
	refusedWellKnown = "sent from a well-known port: the loop of CVE-1999-0103"
	refusedSibling   = "sent from the port of a datagram service of this process: the loop of CVE-1999-0103"
	refusedAddress   = "sent from an address that cannot send"
)

// refuse says why a datagram from src must not be answered, or "".
func (g *Guard) refuse(src netip.AddrPort) string {
	ip := src.Addr().Unmap()
	switch {
	case src.Port() < 1024:
		return refusedWellKnown
	case !ip.IsValid() || ip.IsUnspecified() || ip.IsMulticast() || ip == netip.AddrFrom4([4]byte{255, 255, 255, 255}):
		return refusedAddress
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.ports[src.Port()] > 0 {
		return refusedSibling
	}
	return ""
}

// spend takes the cost of an answer of size bytes from src's budget and
// reports whether there was enough.
func (g *Guard) spend(src netip.Addr, size int) bool {
	return g.spendAt(src, size, time.Now())
}

func (g *Guard) spendAt(src netip.Addr, size int, now time.Time) bool {
	rate := g.Rate
	if rate <= 0 {
		rate = DefaultRate
	}
	burst := 2 * rate
	cost := 1 + float64(size/1024)

	g.mu.Lock()
	defer g.mu.Unlock()
	if g.buckets == nil {
		g.seed = maphash.MakeSeed()
		g.buckets = make([]bucket, guardBuckets)
	}
	b := &g.buckets[g.index(src)]
	t := now.UnixNano()
	if b.last == 0 {
		b.tokens = burst
	} else if elapsed := t - b.last; elapsed > 0 {
		b.tokens = min(burst, b.tokens+rate*float64(elapsed)/1e9)
	}
	b.last = t
	if b.tokens < cost {
		return false
	}
	b.tokens -= cost
	return true
}

// index is src's network's bucket.
func (g *Guard) index(src netip.Addr) int {
	src = src.Unmap()
	bits := 56
	if src.Is4() {
		bits = 24
	}
	p, _ := src.Prefix(bits)
	a := p.Addr().As16()
	return int(maphash.Bytes(g.seed, a[:]) % guardBuckets)
}

func (g *Guard) addPort(port uint16) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.ports == nil {
		g.ports = make(map[uint16]int)
	}
	g.ports[port]++
}

func (g *Guard) removePort(port uint16) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.ports[port]--; g.ports[port] <= 0 {
		delete(g.ports, port)
	}
}
