package wire

import (
	"encoding/binary"

	"github.com/miekg/dns"

	"github.com/annuaire/annuaire/registry"
)

// A registry change touches few answers: registering an instance of
// _echo._tcp changes what is said about _echo._tcp and its neighbours,
// not about h7 or _http._tcp. So packed answers outlive the snapshot they
// were built from: each one records the serial it is known to be valid
// at, and is carried forward, change set by change set, as long as no
// change touches what it read. Under a stream of registrations the cache
// then keeps most of its answers instead of starting empty at each one.
//
// What an answer read is recorded as it is built: the lookup reads the
// registry through a recording view of the snapshot, which notes a key for
// every index read (the host of a name, the hosts below it, the instances
// of a type, the types table, ...; see registry.Reads). A change set's keys
// are those of the index entries it wrote or removed. Nothing here knows
// which answers read what: an answer of a new shape, read through the
// Snapshot's methods, is kept or dropped on what it actually read.
//
// The forward zone's SOA serial, in SOA answers and in negative answers'
// authority section (RFC 2308 section 3), is not a read: every change
// moves it, and it is patched in when an answer is sent, never a reason
// to rebuild. A reverse zone's serial moves only with the zone's records:
// it is read (registry.Snapshot.ReverseSerial), like them. A
// change set too large to list, or a gap in the history, makes every
// answer stale.

// keptGens is how many change sets a view remembers: an answer last
// validated further back than that is rebuilt.
const keptGens = 256

// maxGenChanges bounds the rows of a change set whose keys are listed;
// past it (a bulk load), every answer is stale.
const maxGenChanges = 1000

// A view is the snapshot the cache answers from, with the recent
// change sets that led to it. Views are immutable and only move forward.
type view struct {
	snap   *registry.Snapshot
	serial uint32
	gens   []gen // oldest first, the last one ending at serial
}

// A gen is what one change set touched.
type gen struct {
	prev, serial uint32
	keys         []registry.Key // sorted
	all          bool           // everything may have changed
}

// view returns the view to answer from: snap's, or a newer one if
// another reader already moved past snap.
func (c *Cache) view(snap *registry.Snapshot) *view {
	if v := c.cur.Load(); v != nil && v.snap == snap {
		return v
	}
	c.viewMu.Lock()
	defer c.viewMu.Unlock()
	v := c.cur.Load()
	if v != nil && v.snap == snap {
		return v
	}
	nv := &view{snap: snap, serial: snap.Serial()}
	if v != nil {
		sets, ok := snap.History(v.serial)
		if !ok {
			if _, older := v.snap.History(nv.serial); older {
				return v // a reader that loaded its snapshot before v was published
			}
			sets = []registry.ChangeSet{{Prev: v.serial, Serial: nv.serial}} // a gap
		}
		// Only the last keptGens are kept: listing older ones is wasted.
		sets = sets[max(0, len(sets)-keptGens):]
		gens := make([]gen, 0, len(v.gens)+len(sets))
		gens = append(gens, v.gens...)
		for _, cs := range sets {
			g := gen{prev: cs.Prev, serial: cs.Serial, all: !ok || len(cs.Changes) > maxGenChanges}
			if !g.all {
				g.keys = snap.Touched(cs)
			}
			gens = append(gens, g)
		}
		nv.gens = gens[max(0, len(gens)-keptGens):]
	}
	c.cur.Store(nv)
	return nv
}

// fresh reports whether e, last known valid at some serial, is still the
// answer in view v, and if so records that it is valid at v's serial.
func (e *entry) fresh(v *view) bool {
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
		if g.all || meet(g.keys, e.keys) {
			return false
		}
	}
	e.serial.CompareAndSwap(at, v.serial)
	return true
}

// meet reports whether two sorted lists of keys share one.
func meet(a, b []registry.Key) bool {
	for len(a) > 0 && len(b) > 0 {
		switch {
		case a[0] < b[0]:
			a = a[1:]
		case a[0] > b[0]:
			b = b[1:]
		default:
			return true
		}
	}
	return false
}

// serialOffsets returns where the SOA serial sits in a packed message,
// for each SOA record whose serial is serial.
func serialOffsets(msg []byte, serial uint32) []int {
	if len(msg) < 12 {
		return nil
	}
	count := int(binary.BigEndian.Uint16(msg[6:])) + int(binary.BigEndian.Uint16(msg[8:])) + int(binary.BigEndian.Uint16(msg[10:]))
	off := nameEnd(msg) + 4 // one question: parse's rule
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
