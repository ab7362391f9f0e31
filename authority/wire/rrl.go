package wire

import (
	"encoding/binary"
	"net/netip"
	"sync/atomic"
	"time"
)

// Response rate limiting. A UDP query's source can be forged, so an
// answer to it can be aimed at a victim: 20,000 spoofed questions for
// _services._dns-sd._udp were answered 20,000 times at 16-22 times their
// size. As BIND, NSD and Knot do, answers are counted per client network
// (an IPv4 /24, an IPv6 /56) and kind of answer — the same question, the
// names that do not exist in the zone, the errors — and past Rate a
// second they are dropped, except every Slip-th, which is sent truncated
// (TC, no records: a real client asks again over TCP, which cannot be
// forged) or, to a client that sent a cookie, as BADCOOKIE with a new
// server cookie (it asks again with the cookie, which exempts it). A query
// with a valid server cookie cannot be forged and is never limited, nor
// are TCP answers.
//
// Each bucket is a GCRA cell (the "virtual scheduling" form of a token
// bucket): the time its next answer is due, advanced by 1/Rate per answer
// and allowed up to a second ahead, in one atomic word. Buckets live in a
// fixed table indexed by a hash: a flood of sources and names costs no
// memory, and two keys that share a cell share a limit, which errs on
// the side of limiting.

// RateLimit configures response rate limiting. The zero value limits
// nothing.
type RateLimit struct {
	// Rate is how many answers of one kind a client network gets per
	// second before they are limited; 0 turns limiting off.
	Rate int
	// Slip: every Slip-th limited answer is sent truncated (or BADCOOKIE)
	// rather than dropped; 1 sends them all so, 0 none.
	Slip int
	// IPv4Prefix and IPv6Prefix are the client networks' sizes; 0 means
	// 24 and 56.
	IPv4Prefix, IPv6Prefix int
	// Exempt lists the networks never limited.
	Exempt []netip.Prefix
}

// rrlCells is the size of the table of buckets: 8 bytes each.
const rrlCells = 1 << 16

// A limiter applies a RateLimit.
type limiter struct {
	cfg      RateLimit
	interval int64 // ns between answers at Rate
	epoch    time.Time
	slips    atomic.Uint64 // limited answers so far, for Slip
	cells    [rrlCells]atomic.Int64
}

func newLimiter(cfg RateLimit) *limiter {
	if cfg.Rate <= 0 {
		return nil
	}
	if cfg.IPv4Prefix == 0 {
		cfg.IPv4Prefix = 24
	}
	if cfg.IPv6Prefix == 0 {
		cfg.IPv6Prefix = 56
	}
	return &limiter{cfg: cfg, interval: int64(time.Second) / int64(cfg.Rate), epoch: time.Now()}
}

// What the limiter says of an answer.
const (
	send = iota
	drop
	slip
)

// Kinds of answers, each limited on its own (BIND's classes): the name
// in the key is the question's for answers and NODATA, none for names
// that do not exist (a flood of random names is one kind) and errors.
const (
	kindAnswer = iota + 1
	kindNoData
	kindNXDomain
	kindError
)

// rrlKey is the part of a bucket's key that the answer makes: its kind,
// and for answers and NODATA the question's type and name (in wire form,
// any case). It is computed once per cached answer.
func rrlKey(kind int, qtype uint16, name []byte) uint64 {
	h := uint64(14695981039346656037) // FNV-1a
	mix := func(b byte) {
		h ^= uint64(b)
		h *= 1099511628211
	}
	mix(byte(kind))
	if kind == kindAnswer || kind == kindNoData {
		mix(byte(qtype >> 8))
		mix(byte(qtype))
		for _, c := range name {
			if 'A' <= c && c <= 'Z' {
				c += 'a' - 'A' // length bytes are at most 63: never letters
			}
			mix(c)
		}
	}
	return h
}

// rrlKind is the kind of a packed answer, from its header.
func rrlKind(msg []byte) int {
	switch rcode, ancount := msg[3]&0xF, binary.BigEndian.Uint16(msg[6:]); {
	case rcode == 0 && ancount > 0:
		return kindAnswer
	case rcode == 0:
		return kindNoData
	case rcode == 3:
		return kindNXDomain
	}
	return kindError
}

// exempt reports whether answers to from are never limited.
func (l *limiter) exempt(from netip.Addr) bool {
	for _, p := range l.cfg.Exempt {
		if p.Contains(from) {
			return true
		}
	}
	return false
}

// take counts an answer whose key is key to the client from, and says
// whether to send it, drop it or slip it.
func (l *limiter) take(key uint64, from netip.Addr) int {
	bits := l.cfg.IPv6Prefix
	if from.Is4() {
		bits = l.cfg.IPv4Prefix
	}
	p, _ := from.Prefix(bits)
	a := p.Addr().As16()
	h := key ^ binary.BigEndian.Uint64(a[:8])*0x9E3779B97F4A7C15 ^ binary.BigEndian.Uint64(a[8:])*0xC2B2AE3D27D4EB4F
	h ^= h >> 31
	cell := &l.cells[h%rrlCells]
	now := int64(time.Since(l.epoch))
	for {
		due := cell.Load()
		next := max(due, now)
		if next-now > int64(time.Second) {
			break // a second's worth ahead: limited
		}
		if cell.CompareAndSwap(due, next+l.interval) {
			return send
		}
	}
	if s := uint64(l.cfg.Slip); s > 0 && l.slips.Add(1)%s == 0 {
		return slip
	}
	return drop
}
