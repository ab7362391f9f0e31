package registry

import (
	"fmt"
	"iter"
	"net/netip"
	"slices"
	"strconv"
)

// Reverse zones. The DNS server holds the reverse zones (in-addr.arpa,
// ip6.arpa) of the addresses it serves, and each has a SOA serial of its
// own: the registry serial of the last change that touched a PTR record
// in it. It grows when the zone changes (RFC 1982) and stays put when the
// zone does not, so that secondaries transfer a reverse zone only when it
// changed.
//
// When the last address of a network goes, no host row is left to say
// when: so the registry keeps, for each network that ever held an
// address, the serial of the last change to its addresses, a Stamp. Stamps
// are written in the transaction of the change, kept in checkpoints and
// rebuilt by replaying the journal, so a zone's serial survives restarts.
// The network is ReverseNet's, the /24 of an IPv4 address or the /64 of
// an IPv6 one: the default reverse zones. A zone made of several networks
// (a --reverse 10.0.0.0/8) has the largest of their serials, exactly the
// serial of its last change; one narrower than its network (an IPv6 /80)
// shares the network's serial, which may then move when a neighbour
// changes, never backwards. A stamp per network rather than per address
// keeps their number that of the networks used, not of every address
// ever registered.
//
// Two floor stamps, 0.0.0.0/0 and ::/0, hold a serial below which no
// reverse zone's goes: the serial at which stamps began (a new registry,
// or one restored from a checkpoint that predates them), raised to any
// serial jump past lost journal records, which may have changed any zone.

// A Stamp is the serial of the last change to the PTR records of the
// addresses in Net, a ReverseNet or a floor (a /0).
type Stamp struct {
	Net    netip.Prefix `json:"net"`
	Serial uint32       `json:"serial"`
}

// ReverseNet returns the network of a, the /24 of an IPv4 address or the
// /64 of an IPv6 one: the reverse zone that holds a's PTR records unless
// the DNS server is told otherwise, and the unit of the stamps that give
// reverse zones their serials.
func ReverseNet(a netip.Addr) netip.Prefix {
	a = a.Unmap().WithZone("")
	bits := 64
	if a.Is4() {
		bits = 24
	}
	p, _ := a.Prefix(bits)
	return p
}

// floors are the floor stamps' networks.
var floors = [2]netip.Prefix{netip.PrefixFrom(netip.IPv4Unspecified(), 0), netip.PrefixFrom(netip.IPv6Unspecified(), 0)}

// netKey is the index key of a network, and of an address as a full-length
// one: the family, then each octet (IPv4) or nibble (IPv6) down to the
// prefix length, each followed by a dot, so that a network's key is a
// prefix of the keys of every address and network in it, and every dot
// ends a part a read may ask for (see isSeparator): 127.0.0.0/24 is
// "4.127.0.0.", 2001:db8::/32 "6.2.0.0.1.0.d.b.8.". A prefix length off
// those boundaries is cut down to one.
//
// The key has room bytes of capacity beyond its length, and no more: a
// host's address key lives as long as the host, and memdb appends the
// host's name key to it (addrIndex).
func netKey(p netip.Prefix, room int) []byte {
	var buf [66]byte
	key := appendNetKey(buf[:0], p)
	return append(make([]byte, 0, len(key)+room), key...)
}

func appendNetKey(key []byte, p netip.Prefix) []byte {
	a := p.Addr().Unmap()
	if a.Is4() {
		key = append(key, "4."...)
		for i, b := range a.As4() {
			if (i+1)*8 > p.Bits() {
				break
			}
			key = append(strconv.AppendUint(key, uint64(b), 10), '.')
		}
		return key
	}
	key = append(key, "6."...)
	b := a.As16()
	for i := range p.Bits() / 4 {
		n := b[i/2] >> 4
		if i%2 == 1 {
			n = b[i/2] & 0xf
		}
		key = append(key, "0123456789abcdef"[n], '.')
	}
	return key
}

// addrNet is an address as the full-length network of the index keys.
func addrNet(a netip.Addr) netip.Prefix {
	a = a.Unmap().WithZone("")
	return netip.PrefixFrom(a, a.BitLen())
}

// HasAddrIn reports whether some host has an address in p: whether a
// reverse name, or a default reverse zone, exists.
func (s *reader) HasAddrIn(p netip.Prefix) bool {
	for range s.HostsIn(p) {
		return true
	}
	return false
}

// ReverseSerial returns the serial of the reverse zone of the network p:
// the serial of the last change to the PTR records of its addresses, or
// the floor if none is newer.
func (s *reader) ReverseSerial(p netip.Prefix) uint32 {
	p = p.Masked()
	var serial uint32
	raise := func(st *Stamp) {
		if serial == 0 || SerialLess(serial, st.Serial) {
			serial = st.Serial
		}
	}
	for st := range rows[Stamp](s, tableStamps, indexID+"_prefix", p) {
		if p.Overlaps(st.Net) && st.Net.Bits() > 0 {
			raise(st)
		}
	}
	if n := ReverseNet(p.Addr()); p.Bits() > n.Bits() {
		if raw := s.first(tableStamps, indexID, n); raw != nil {
			raise(raw.(*Stamp))
		}
	}
	floor := floors[0]
	if p.Addr().Is6() {
		floor = floors[1]
	}
	if raw := s.first(tableStamps, indexID, floor); raw != nil {
		raise(raw.(*Stamp))
	}
	return serial
}

// ReverseNets yields the networks (see ReverseNet) that hold an address,
// in index order: IPv4 first, each family in address order.
func (s *reader) ReverseNets() iter.Seq[netip.Prefix] {
	return func(yield func(netip.Prefix) bool) {
		for st := range rows[Stamp](s, tableStamps, indexID+"_prefix", netip.Prefix{}) {
			if st.Net.Bits() > 0 && s.HasAddrIn(st.Net) && !yield(st.Net) {
				return
			}
		}
	}
}

// ptrNets appends the networks whose PTR records a change of a host from
// before to after (either nil for a new or a deleted host) changes: those
// of the addresses it gained or lost, or of all its addresses when it
// came, went or changed its TTL, which its PTR records carry.
func ptrNets(nets []netip.Prefix, before, after *Host) []netip.Prefix {
	var both []netip.Addr
	if before != nil && after != nil && before.TTL == after.TTL {
		for _, a := range before.Addrs {
			if !containsAddr(after.Addrs, a) {
				both = append(both, a)
			}
		}
		for _, a := range after.Addrs {
			if !containsAddr(before.Addrs, a) {
				both = append(both, a)
			}
		}
	} else {
		for _, h := range []*Host{before, after} {
			if h != nil {
				both = append(both, h.Addrs...)
			}
		}
	}
	for _, a := range both {
		if n := ReverseNet(a); !containsNet(nets, n) {
			nets = append(nets, n)
		}
	}
	return nets
}

// hostChange is a change as ptrNets reads it: the host before and after,
// nil for a new or a deleted one; ok is false for a change of another
// kind of row.
func hostChange(c Change) (before, after *Host, ok bool) {
	after, ok = c.Row.(*Host)
	if !ok {
		return nil, nil, false
	}
	before, _ = c.Old.(*Host)
	if c.Delete {
		after = nil
	}
	return before, after, true
}

func containsAddr(addrs []netip.Addr, a netip.Addr) bool {
	for _, b := range addrs {
		if b == a {
			return true
		}
	}
	return false
}

func containsNet(nets []netip.Prefix, n netip.Prefix) bool {
	for _, m := range nets {
		if m == n {
			return true
		}
	}
	return false
}

// stamp writes the stamps of the networks whose PTR records cs changed,
// at cs's serial: in Update's transaction, and again when the journal is
// replayed. A change set without changes is a serial jump (see
// jumpSerial), which raises the floors.
func (tx *Tx) stamp(cs ChangeSet) error {
	if len(cs.Changes) == 0 {
		return raiseFloors(tx.txn, cs.Serial, false)
	}
	var nets []netip.Prefix
	for _, c := range cs.Changes {
		if before, after, ok := hostChange(c); ok {
			nets = ptrNets(nets, before, after)
		}
	}
	for _, n := range nets {
		if err := tx.txn.Insert(tableStamps, &Stamp{Net: n, Serial: cs.Serial}); err != nil {
			return fmt.Errorf("registry: stamp %s: %w", n, err)
		}
	}
	return nil
}

// raiseFloors sets the floor stamps to serial: after a serial jump, or
// when stamps begin. With onlyMissing, floors already there stay.
func raiseFloors(tx interface {
	Insert(table string, obj any) error
	First(table, index string, args ...any) (any, error)
}, serial uint32, onlyMissing bool) error {
	for _, n := range floors {
		if onlyMissing {
			if raw, err := tx.First(tableStamps, indexID, n); err == nil && raw != nil {
				continue
			}
		}
		if err := tx.Insert(tableStamps, &Stamp{Net: n, Serial: serial}); err != nil {
			return fmt.Errorf("registry: floor stamp %s: %w", n, err)
		}
	}
	return nil
}

// floorKeys appends the keys of the floor stamps: what a serial jump (a
// change set without changes) touches.
func (s *reader) floorKeys(keys []Key) []Key {
	for _, n := range floors {
		keys = s.rowKeys(keys, tableStamps, &Stamp{Net: n})
	}
	return keys
}

// stampKeys appends the keys of the stamps a change of a host from before
// to after writes (Host.derived).
func (s *reader) stampKeys(keys []Key, before, after *Host) []Key {
	for _, n := range ptrNets(nil, before, after) {
		keys = s.rowKeys(keys, tableStamps, &Stamp{Net: n})
	}
	return keys
}

// stampIndex indexes stamps by network, as netKey writes it, but for the
// floors, whose keys are "4/." and "6/.": no read of a network may find
// them, and no network's stamp may touch what a read of a floor records.
// Its arguments are netip.Prefix; an invalid one as a prefix finds every
// row.
type stampIndex struct{}

func stampKey(p netip.Prefix) []byte {
	if p.Bits() == 0 {
		if p.Addr().Is4() {
			return []byte("4/.")
		}
		return []byte("6/.")
	}
	return netKey(p, 0)
}

func (stampIndex) FromObject(raw any) (bool, []byte, error) {
	st, ok := raw.(*Stamp)
	if !ok {
		return false, nil, fmt.Errorf("stamp index: %T is not a *Stamp", raw)
	}
	return true, stampKey(st.Net), nil
}

func (stampIndex) FromArgs(args ...any) ([]byte, error) {
	p, err := prefixArg(args)
	if err != nil || !p.IsValid() {
		return nil, fmt.Errorf("stamp index: want a network, got %v", args)
	}
	return stampKey(p), nil
}

func (stampIndex) PrefixFromArgs(args ...any) ([]byte, error) {
	p, err := prefixArg(args)
	if err != nil || !p.IsValid() {
		return nil, err
	}
	return netKey(p, 0), nil
}

// addrIndex indexes a host under each of its addresses (netKey of the
// address), so that a prefix scan finds the hosts with an address in a
// network. Its arguments are netip.Prefix, an address as its full-length
// network.
type addrIndex struct{}

func (addrIndex) FromObject(raw any) (bool, [][]byte, error) {
	h, ok := raw.(*Host)
	if !ok {
		return false, nil, fmt.Errorf("addr index: %T is not a *Host", raw)
	}
	if len(h.Addrs) == 0 {
		return false, nil, nil
	}
	keys := make([][]byte, 0, len(h.Addrs))
	for _, a := range h.Addrs {
		// memdb appends the host's name key (nameField) to each, the
		// index not being unique.
		keys = append(keys, netKey(addrNet(a), fieldKeyLen(h.Name)))
	}
	return true, keys, nil
}

func (x addrIndex) FromArgs(args ...any) ([]byte, error) {
	p, err := prefixArg(args)
	if err != nil || !p.IsValid() {
		return nil, fmt.Errorf("addr index: want an address, got %v", args)
	}
	return netKey(p, 0), nil
}

func (x addrIndex) PrefixFromArgs(args ...any) ([]byte, error) { return x.FromArgs(args...) }

func prefixArg(args []any) (netip.Prefix, error) {
	if len(args) != 1 {
		return netip.Prefix{}, fmt.Errorf("want one argument, got %d", len(args))
	}
	p, ok := args[0].(netip.Prefix)
	if !ok {
		return netip.Prefix{}, fmt.Errorf("want a netip.Prefix, got %T", args[0])
	}
	return p, nil
}

// HostsIn yields, once each, the hosts that have an address in p.
func (s *reader) HostsIn(p netip.Prefix) iter.Seq[*Host] {
	return func(yield func(*Host) bool) {
		var seen map[string]bool
		for h := range rows[Host](s, tableHosts, indexAddr+"_prefix", p) {
			if seen[h.Name] || !slices.ContainsFunc(h.Addrs, p.Contains) {
				continue
			}
			if seen == nil {
				seen = make(map[string]bool)
			}
			seen[h.Name] = true
			if !yield(h) {
				return
			}
		}
	}
}
