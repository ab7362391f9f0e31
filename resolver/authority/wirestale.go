package authority

import (
	"encoding/binary"
	"slices"
	"strings"

	"github.com/miekg/dns"

	"github.com/annuaire/annuaire/registry"
)

// A registry change touches few answers: registering an instance of
// _echo._tcp changes what is said about _echo._tcp and its neighbours,
// not about h7 or _http._tcp. So packed answers outlive the snapshot they
// were built from: each one records the serial it is known to be valid
// at, and is carried forward, change set by change set, as long as no
// change touches the names it depends on. Under a stream of registrations
// the cache then keeps most of its answers instead of starting empty at
// each one.
//
// What an answer depends on, and so what makes it stale:
//   - its question name Q, and every name below Q: a name that appears or
//     goes below Q turns NXDOMAIN into NODATA (an empty non-terminal,
//     RFC 8020) and back, and what is at Q itself is what the answer says;
//   - every name the message carries, as an owner or as the target of an
//     SRV, MX, NS or PTR record: additional-section addresses (RFC 2782,
//     RFC 6763 section 12) come from those;
//   - for a service's one-label name (echo.svc.internal A), the addresses
//     of its instances' hosts: any host change makes it stale;
//   - the SOA serial, in SOA answers and in negative answers' authority
//     section (RFC 2308 section 3): patched in when the answer is sent,
//     never a reason to rebuild.
//
// A change names, for an instance (before and after), the instance's
// DNS-SD name, its _service._proto, the service's one-label name and the
// type enumeration; for a host, its name and its addresses' reverse
// names. A change set too large to list, or a gap in the history, makes
// every answer stale.

// wireGens is how many change sets a view remembers: an answer last
// validated further back than that is rebuilt.
const wireGens = 256

// wireGenNames bounds the names one change set lists; past it (a bulk
// load), every answer is stale.
const wireGenNames = 4096

// A wireView is the snapshot the cache answers from, with the recent
// change sets that led to it. Views are immutable and only move forward.
type wireView struct {
	snap   *registry.Snapshot
	serial uint32
	gens   []wireGen // oldest first, the last one ending at serial
}

// A wireGen is what one change set touched.
type wireGen struct {
	prev, serial uint32
	names        []string // lowercased names in wire form
	hosts        bool     // a host row changed
	all          bool     // everything may have changed
}

// view returns the view to answer from: snap's, or a newer one if
// another reader already moved past snap.
func (c *wireCache) view(z *zone, snap *registry.Snapshot) *wireView {
	if v := c.cur.Load(); v != nil && v.snap == snap {
		return v
	}
	c.viewMu.Lock()
	defer c.viewMu.Unlock()
	v := c.cur.Load()
	if v != nil && v.snap == snap {
		return v
	}
	nv := &wireView{snap: snap, serial: snap.Serial()}
	if v != nil {
		sets, ok := snap.History(v.serial)
		if !ok {
			if _, older := v.snap.History(nv.serial); older {
				return v // a reader that loaded its snapshot before v was published
			}
			sets = []registry.ChangeSet{{Prev: v.serial, Serial: nv.serial}} // a gap
		}
		// Only the last wireGens are kept: listing older ones is wasted.
		sets = sets[max(0, len(sets)-wireGens):]
		gens := make([]wireGen, 0, len(v.gens)+len(sets))
		gens = append(gens, v.gens...)
		for _, cs := range sets {
			gens = append(gens, z.changed(cs, ok))
		}
		nv.gens = gens[max(0, len(gens)-wireGens):]
	}
	c.cur.Store(nv)
	return nv
}

// changed lists what a change set touched; known is false for a gap in
// the history, where anything may have.
func (z *zone) changed(cs registry.ChangeSet, known bool) wireGen {
	g := wireGen{prev: cs.Prev, serial: cs.Serial, all: !known}
	origin := z.wireOrigin()
	for _, ch := range cs.Changes {
		for _, inst := range []*registry.Instance{ch.Instance, ch.OldInstance} {
			if inst == nil {
				continue
			}
			svc, proto := "_"+inst.Service, "_"+inst.Proto
			g.names = append(g.names,
				wireName(origin, inst.Label, svc, proto),
				wireName(origin, svc, proto),
				wireName(origin, inst.Service),
				wireName(origin, enumLabels...))
		}
		for _, h := range []*registry.Host{ch.Host, ch.OldHost} {
			if h == nil {
				continue
			}
			g.hosts = true
			g.names = append(g.names, wireName(origin, strings.Split(h.Name, ".")...))
			for _, a := range h.Addrs {
				if rev, err := dns.ReverseAddr(a.String()); err == nil {
					g.names = append(g.names, wireFromText(rev))
				}
			}
		}
		if len(g.names) > wireGenNames {
			return wireGen{prev: cs.Prev, serial: cs.Serial, all: true}
		}
	}
	slices.Sort(g.names)
	g.names = slices.Compact(g.names)
	return g
}

// fresh reports whether e, last known valid at some serial, is still the
// answer in view v, and if so records that it is valid at v's serial.
func (e *wireEntry) fresh(v *wireView) bool {
	at := e.serial.Load()
	if at == v.serial {
		return true
	}
	i := len(v.gens) - 1
	for i >= 0 && v.gens[i].prev != at {
		i--
	}
	if i < 0 {
		return false // validated before the view's memory
	}
	for _, g := range v.gens[i:] {
		if g.all || g.hosts && e.anyHost {
			return false
		}
		for _, n := range g.names {
			if below(n, e.qname) {
				return false
			}
			if _, found := slices.BinarySearch(e.deps, n); found {
				return false
			}
		}
	}
	e.serial.CompareAndSwap(at, v.serial)
	return true
}

// below reports whether the wire-form name n is q or a name below q.
func below(n, q string) bool {
	for off := 0; off < len(n); off += int(n[off]) + 1 {
		if len(n)-off == len(q) && n[off:] == q {
			return true
		}
		if n[off] == 0 {
			break
		}
	}
	return false
}

// depend records in e what the answer m, built from snap, depends on
// besides its question name (see the top of this file).
func (e *wireEntry) depend(z *zone, snap *registry.Snapshot, m *dns.Msg) {
	var deps []string
	for _, sec := range [][]dns.RR{m.Answer, m.Ns, m.Extra} {
		for _, rr := range sec {
			if rr.Header().Rrtype == dns.TypeOPT {
				continue
			}
			deps = append(deps, wireFromText(rr.Header().Name))
			switch rr := rr.(type) {
			case *dns.SRV:
				deps = append(deps, wireFromText(rr.Target))
			case *dns.MX:
				deps = append(deps, wireFromText(rr.Mx))
			case *dns.NS:
				deps = append(deps, wireFromText(rr.Ns))
			case *dns.PTR:
				deps = append(deps, wireFromText(rr.Ptr))
			}
		}
	}
	slices.Sort(deps)
	e.deps = slices.Compact(deps)
	if len(m.Question) == 1 {
		if rel, ok := z.relative(m.Question[0].Name); ok && len(rel) == 1 {
			l := lowerASCII(rel[0])
			_, tcp := snap.Type("tcp", l)
			_, udp := snap.Type("udp", l)
			e.anyHost = tcp || udp
		}
	}
}

// serialOffsets returns where the SOA serial sits in a packed message,
// for each SOA record whose serial is serial.
func serialOffsets(msg []byte, serial uint32) []int {
	if len(msg) < 12 {
		return nil
	}
	count := int(binary.BigEndian.Uint16(msg[6:])) + int(binary.BigEndian.Uint16(msg[8:])) + int(binary.BigEndian.Uint16(msg[10:]))
	off := wireNameEnd(msg) + 4 // one question: parseWire's rule
	var offs []int
	for range count {
		off = skipName(msg, off)
		if off+10 > len(msg) {
			return offs
		}
		typ := binary.BigEndian.Uint16(msg[off:])
		rdlen := int(binary.BigEndian.Uint16(msg[off+8:]))
		off += 10 + rdlen
		if off > len(msg) {
			return offs
		}
		// SERIAL is the first of the five 32-bit fields that end the
		// RDATA (RFC 1035 section 3.3.13).
		if s := off - 20; typ == dns.TypeSOA && rdlen >= 22 && binary.BigEndian.Uint32(msg[s:]) == serial {
			offs = append(offs, s)
		}
	}
	return offs
}

// skipName returns the offset past the possibly compressed name at off.
func skipName(msg []byte, off int) int {
	for off < len(msg) {
		switch l := int(msg[off]); {
		case l == 0:
			return off + 1
		case l&0xC0 == 0xC0:
			return off + 2
		default:
			off += l + 1
		}
	}
	return off
}

// wireOrigin is the zone's name in wire form, lowercased.
func (z *zone) wireOrigin() string { return wireFromText(z.origin) }

// wireName prepends raw (unescaped) labels to a wire-form suffix,
// lowercasing them as the cache key does.
func wireName(suffix string, labels ...string) string {
	var b []byte
	for _, l := range labels {
		if l == "" || len(l) > 63 {
			continue // never a name of the zone
		}
		b = append(b, byte(len(l)))
		b = append(b, lowerASCII(l)...)
	}
	return string(b) + suffix
}

// wireFromText converts a presentation-form name to lowercased wire form;
// an invalid name gives "", which matches nothing.
func wireFromText(name string) string {
	var buf [256]byte
	n, err := dns.PackDomainName(dns.Fqdn(name), buf[:], 0, nil, false)
	if err != nil {
		return ""
	}
	return lowerASCII(string(buf[:n])) // length bytes are at most 63: never letters
}
