package zone

import (
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"github.com/miekg/dns"

	"github.com/annuaire/annuaire/registry"
)

// The reverse zones. annuaire is authoritative for the reverse zones of
// the addresses it serves, each a zone of its own (RFC 1035 section 3.5,
// RFC 3596 section 2.5): by default the /24 or /64 of every registered
// address (registry.ReverseNet), or the networks of Config.Reverse. Each
// has an SOA and the NS records of the forward zone; a PTR record per
// host for each address that has a name; NXDOMAIN with the SOA for one
// that has none (RFC 2308), so that resolvers cache it; and the DNS-SD
// browse domains of RFC 6763 section 11 at the zone's network address:
// b._dns-sd._udp.0.0.0.127.in-addr.arpa. PTR svc.internal. for
// 127.0.0.0/24. Its serial is the registry serial of the last change to
// its PTR records (registry.Snapshot.ReverseSerial).

// A revName is a name under in-addr.arpa. or ip6.arpa. as the address
// labels it ends with (up to 4 octets, or 32 nibbles), read as a network,
// and the labels left of them: "b._dns-sd._udp.0.0.0.127.in-addr.arpa."
// is 127.0.0.0/32 with rest b, _dns-sd, _udp; "0.0.127.in-addr.arpa." is
// 127.0.0.0/24.
type revName struct {
	net  netip.Prefix
	rest []string // lowercased
}

// full reports whether n names one address, or a name below it.
func (n revName) full() bool { return n.net.Bits() == n.net.Addr().BitLen() }

// parseReverse reads a name as a revName; ok is false for a name that is
// not under in-addr.arpa. or ip6.arpa. (those two included).
func parseReverse(qname string) (n revName, ok bool) {
	labels, ok := rawLabels(qname)
	if !ok || len(labels) < 2 || !registry.SameName(labels[len(labels)-1], "arpa") {
		return n, false
	}
	for i := range labels {
		labels[i] = registry.FoldName(labels[i])
	}
	var b [16]byte
	k := 0 // address labels read, from the right
	switch labels[len(labels)-2] {
	case "in-addr":
		labels = labels[:len(labels)-2]
		for ; k < 4 && k < len(labels); k++ {
			l := labels[len(labels)-1-k]
			v, err := strconv.ParseUint(l, 10, 8)
			if err != nil || strconv.FormatUint(v, 10) != l { // no "01", no "+1"
				break
			}
			b[k] = byte(v)
		}
		n.net = netip.PrefixFrom(netip.AddrFrom4([4]byte(b[:4])), 8*k)
	case "ip6":
		labels = labels[:len(labels)-2]
		for ; k < 32 && k < len(labels); k++ {
			l := labels[len(labels)-1-k]
			v, err := strconv.ParseUint(l, 16, 4)
			if len(l) != 1 || err != nil {
				break
			}
			b[k/2] |= byte(v) << (4 * (1 - k%2))
		}
		n.net = netip.PrefixFrom(netip.AddrFrom16(b), 4*k)
	default:
		return n, false
	}
	n.rest = labels[:len(labels)-k]
	return n, true
}

// reverseName is the name of a network's reverse zone, or of an address
// as a full-length network: 127.0.0.0/24 is "0.0.127.in-addr.arpa.".
func reverseName(p netip.Prefix) string {
	var b strings.Builder
	a := p.Addr()
	if a.Is4() {
		o := a.As4()
		for i := p.Bits()/8 - 1; i >= 0; i-- {
			b.WriteString(strconv.Itoa(int(o[i])))
			b.WriteByte('.')
		}
		b.WriteString("in-addr.arpa.")
		return b.String()
	}
	o := a.As16()
	for i := p.Bits()/4 - 1; i >= 0; i-- {
		v := o[i/2] >> 4
		if i%2 == 1 {
			v = o[i/2] & 0xf
		}
		b.WriteByte("0123456789abcdef"[v])
		b.WriteByte('.')
	}
	b.WriteString("ip6.arpa.")
	return b.String()
}

// reverseZone returns the network of the reverse zone that holds n, if
// one does in snap. A name above every zone (0.127.in-addr.arpa. when the
// zone is 127.0.0.0/24) is in none.
func (z *Zone) reverseZone(snap *registry.Snapshot, n revName) (netip.Prefix, bool) {
	if z.reverse != nil {
		best := netip.Prefix{}
		for _, p := range z.reverse {
			if p.Bits() <= n.net.Bits() && p.Contains(n.net.Addr()) && p.Bits() >= best.Bits() {
				best = p
			}
		}
		return best, best.IsValid()
	}
	net := registry.ReverseNet(n.net.Addr())
	if n.net.Bits() < net.Bits() || !snap.HasAddrIn(net) {
		return netip.Prefix{}, false
	}
	return net, true
}

// reverseLookup is lookup for the reverse zone of the network zn: the
// records of type qtype (every type for ANY) at the name n, with owner
// as their owner name, and whether the name exists.
func (z *Zone) reverseLookup(snap *registry.Snapshot, zn netip.Prefix, n revName, owner string, qtype uint16, add *additions) (rrs []dns.RR, exists bool) {
	want := func(t uint16) bool { return qtype == t || qtype == dns.TypeANY }
	if n.net == zn && len(n.rest) == 0 { // the apex
		exists = true
		if want(dns.TypeSOA) {
			rrs = append(rrs, z.soa(owner, snap.ReverseSerial(zn), soaTTL))
		}
		if want(dns.TypeNS) {
			rrs = append(rrs, z.nsRecords(owner, add)...)
		}
	}
	// The browse domains hang below the zone's network address; the names
	// between it and the apex are empty non-terminals.
	browse := n.full() && n.net.Addr() == zn.Addr()
	switch {
	case len(n.rest) == 0 && n.full():
		ttl := uint32(registry.MaxTTL)
		var ptrs []dns.RR
		for h := range snap.HostsByAddr(n.net.Addr()) {
			exists = true
			ttl = min(ttl, h.TTL)
			ptrs = append(ptrs, &dns.PTR{
				Hdr: dns.RR_Header{Name: owner, Rrtype: dns.TypePTR, Class: dns.ClassINET},
				Ptr: z.abs(h.Name),
			})
		}
		if want(dns.TypePTR) {
			rrs = append(rrs, setTTL(ptrs, ttl)...)
		}
		exists = exists || browse
	case len(n.rest) == 0:
		exists = exists || n.net.Contains(zn.Addr()) || snap.HasAddrIn(n.net)
	case browse && slices.Equal(n.rest, enumLabels[2:]), browse && slices.Equal(n.rest, enumLabels[1:]):
		exists = true // _udp, _dns-sd._udp
	case browse && len(n.rest) == 3 && slices.Contains(browseLabels, n.rest[0]) && slices.Equal(n.rest[1:], enumLabels[1:]):
		exists = true
		if want(dns.TypePTR) {
			rrs = append(rrs, z.browsePTR(owner))
		}
	}
	return rrs, exists
}

// reverseNets returns the networks of the reverse zones held in snap, in
// canonical order: IPv4 first, each family in address order.
func (z *Zone) reverseNets(snap *registry.Snapshot) []netip.Prefix {
	if z.reverse != nil {
		nets := slices.Clone(z.reverse)
		slices.SortFunc(nets, func(a, b netip.Prefix) int {
			if c := a.Addr().Compare(b.Addr()); c != 0 {
				return c
			}
			return a.Bits() - b.Bits()
		})
		return nets
	}
	return slices.Collect(snap.ReverseNets())
}

// reverseRecords returns every record of the reverse zone of zn (see
// Records).
func (z *Zone) reverseRecords(snap *registry.Snapshot, zn netip.Prefix) []dns.RR {
	type node struct {
		n      revName
		labels []string // every label, for the canonical order
		owner  string
	}
	var nodes []node
	addNode := func(n revName) {
		owner := strings.Join(n.rest, ".")
		if owner != "" {
			owner += "."
		}
		owner += reverseName(n.net)
		labels, _ := rawLabels(owner)
		nodes = append(nodes, node{n, labels, owner})
	}
	addNode(revName{net: zn})
	net := netip.PrefixFrom(zn.Addr(), zn.Addr().BitLen())
	if net != zn {
		addNode(revName{net: net}) // the network address, under which the browse domains hang
	}
	for _, b := range browseLabels {
		addNode(revName{net: net, rest: []string{b, enumLabels[1], enumLabels[2]}})
	}
	seen := map[netip.Addr]bool{net.Addr(): true}
	for h := range snap.HostsIn(zn) {
		for _, a := range h.Addrs {
			if zn.Contains(a) && !seen[a] {
				seen[a] = true
				addNode(revName{net: netip.PrefixFrom(a, a.BitLen())})
			}
		}
	}
	slices.SortFunc(nodes, func(a, b node) int { return compareNames(a.labels, b.labels) })
	var rrs []dns.RR
	for _, n := range nodes {
		set, _ := z.reverseLookup(snap, zn, n.n, n.owner, dns.TypeANY, nil)
		sortRRs(set)
		rrs = append(rrs, set...)
	}
	return rrs
}

// Holds reports whether apex is the name of a zone held in snap.
func (z *Zone) Holds(snap *registry.Snapshot, apex string) bool {
	_, _, ok := z.apex(snap, apex)
	return ok
}

// apex tells which zone held in snap apex names: the forward zone, or the
// reverse zone of the network zn.
func (z *Zone) apex(snap *registry.Snapshot, apex string) (zn netip.Prefix, forward, ok bool) {
	if rel, in := z.Relative(apex); in {
		return netip.Prefix{}, true, len(rel) == 0
	}
	n, rev := parseReverse(apex)
	if !rev || len(n.rest) > 0 {
		return netip.Prefix{}, false, false
	}
	zn, held := z.reverseZone(snap, n)
	return zn, false, held && zn == n.net
}

// A Held is a zone annuaire is authoritative for, and its serial.
type Held struct {
	Name   string // fully qualified, lowercased
	Serial uint32
}

// Held returns the zones held in snap: the forward zone first, then the
// reverse zones in canonical order.
func (z *Zone) Held(snap *registry.Snapshot) []Held {
	if z.none {
		return nil
	}
	held := []Held{{z.origin, snap.Serial()}}
	for _, p := range z.reverseNets(snap) {
		held = append(held, Held{reverseName(p), snap.ReverseSerial(p)})
	}
	return held
}

// Records returns every record of the zone named apex (the forward zone
// or a reverse zone held in snap) as AXFR carries it and as queries
// answer it: the SOA first, then every RRset in the canonical order of
// RFC 4034 section 6 (names, then types, then record data). ok is false
// when apex is not the name of a zone held.
func (z *Zone) Records(snap *registry.Snapshot, apex string) (rrs []dns.RR, ok bool) {
	zn, forward, ok := z.apex(snap, apex)
	switch {
	case !ok:
		return nil, false
	case forward:
		rrs = z.forwardRecords(snap)
	default:
		rrs = z.reverseRecords(snap, zn)
	}
	// The apex sorts first; within it, SOA must lead (RFC 5936 section 2.2).
	i := slices.IndexFunc(rrs, func(rr dns.RR) bool { return rr.Header().Rrtype == dns.TypeSOA })
	if i > 0 {
		soa := rrs[i]
		copy(rrs[1:i+1], rrs[:i])
		rrs[0] = soa
	}
	return rrs, true
}

// SOA returns the SOA record of the zone h, as its apex answers it.
func (z *Zone) SOA(h Held) *dns.SOA { return z.soa(h.Name, h.Serial, soaTTL) }
