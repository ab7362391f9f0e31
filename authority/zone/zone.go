// Package zone is where a name becomes records: the zone annuaire answers
// for, computed from a registry snapshot when a question comes. For each
// healthy instance of service S over protocol P on host H, the zone Z
// holds:
//
//	Z                          SOA, NS, and MX from the instances of _smtp._tcp
//	H.Z                        A, AAAA (every registered host)
//	S.Z                        A, AAAA: the hosts of S's healthy instances
//	_S._P.Z                    SRV (RFC 2782), PTR (DNS-SD browsing, RFC 6763)
//	<instance>._S._P.Z         SRV, TXT
//	<sub>._sub._S._P.Z         PTR: the instances with that subtype (RFC 6763 section 7.1)
//	_services._dns-sd._udp.Z   PTR _S._P.Z, one per service type
//
// and the reverse (PTR) name of every registered address. A service whose
// instances all fail their checks keeps its names, which answer NODATA:
// never a dead address.
//
// Zone.Respond answers a standard query as a whole message (additional
// section, EDNS, truncation, negative answers); Zone.Records lists the zone
// as AXFR carries it. Both read the registry only through the snapshot
// they are given, which is what lets the wire cache record what an answer
// read (package wire).
package zone

import (
	"cmp"
	"iter"
	"net/netip"
	"slices"
	"strings"

	"github.com/miekg/dns"

	"github.com/annuaire/annuaire/registry"
)

// The DNS-SD service type enumeration name, RFC 6763 section 9.
var enumLabels = []string{"_services", "_dns-sd", "_udp"}

// The DNS-SD browse and registration domains, RFC 6763 section 11: b, db
// and lb answer where to browse, r and dr where to register.
var browseLabels = []string{"b", "db", "lb", "r", "dr"}

// Relative splits a question name into its labels below the origin,
// unescaped, leftmost first. ok is false when the name is not in the zone.
func (z *Zone) Relative(qname string) (rel []string, ok bool) {
	labels, ok := rawLabels(qname)
	if !ok || len(labels) < len(z.labels) {
		return nil, false
	}
	n := len(labels) - len(z.labels)
	for i, l := range z.labels {
		if !registry.SameName(labels[n+i], l) {
			return nil, false
		}
	}
	return labels[:n], true
}

// instanceName is the DNS-SD name of an instance, RFC 6763 section 4.1:
// <Instance>._<service>._<proto>.<zone>, the label escaped as miekg/dns
// presents names.
func (z *Zone) instanceName(inst *registry.Instance) string {
	return EscapeLabel(inst.Label) + "." + z.abs(typeName(inst.Proto, inst.Service))
}

func typeName(proto, service string) string { return "_" + service + "._" + proto }

// additions collects what an answer's additional section will carry, in
// the order it was asked for: instances' SRV and TXT (RFC 6763 section
// 12.1), then hosts' A and AAAA.
type additions struct {
	insts []*registry.Instance
	hosts []string
	seen  map[string]bool
}

func (a *additions) host(name string) {
	if a == nil || a.seen[name] {
		return
	}
	if a.seen == nil {
		a.seen = make(map[string]bool)
	}
	a.seen[name] = true
	a.hosts = append(a.hosts, name)
}

func (a *additions) instance(inst *registry.Instance) {
	if a == nil {
		return
	}
	a.insts = append(a.insts, inst)
	a.host(inst.Host)
}

// Lookup returns the records of type qtype (every type for ANY) at the
// name whose labels below the origin are rel, with owner as their owner
// name, as a query for them would answer: what UPDATE's prerequisites
// compare with (RFC 2136 section 3.2).
func (z *Zone) Lookup(snap *registry.Snapshot, rel []string, owner string, qtype uint16) (rrs []dns.RR, exists bool) {
	return z.lookup(snap, rel, owner, qtype, nil)
}

// lookup returns the records of type qtype (every type for ANY) that the
// zone holds at the name whose labels below the origin are rel, with owner
// as their owner name, and whether that name exists at all: a name without
// records exists when names exist below it (an empty non-terminal, RFC
// 8020). Names the additional section should describe go to add, if not nil.
//
// Every name of the zone comes from one of the branches below, and a name
// may come from several (a host named "echo" and the service echo): their
// records are merged.
func (z *Zone) lookup(snap *registry.Snapshot, rel []string, owner string, qtype uint16, add *additions) (rrs []dns.RR, exists bool) {
	want := func(t uint16) bool { return qtype == t || qtype == dns.TypeANY }
	lc := make([]string, len(rel))
	for i, l := range rel {
		lc[i] = registry.FoldName(l)
	}
	if len(lc) == 0 { // the apex
		exists = true
		if want(dns.TypeSOA) {
			rrs = append(rrs, z.soa(owner, snap.Serial(), soaTTL))
		}
		if want(dns.TypeNS) {
			rrs = append(rrs, z.nsRecords(owner, add)...)
		}
		if want(dns.TypeMX) {
			rrs = append(rrs, z.mx(snap, owner, add)...)
		}
	}

	// Addresses: of a host of that name, and, for a one-label name that is
	// a service, of the hosts of the service's healthy instances.
	var addrs addrSet
	if name, ok := hostName(lc); ok {
		if h, ok := snap.Host(name); ok {
			exists = true
			addrs.add(h.Addrs, h.TTL)
		} else if snap.HasHostBelow(name) {
			exists = true
		}
	}
	if len(lc) == 1 && !strings.HasPrefix(lc[0], "_") {
		for _, proto := range []string{"tcp", "udp"} {
			if _, ok := snap.Type(proto, lc[0]); !ok {
				continue
			}
			exists = true // even when no instance is healthy: NODATA, never NXDOMAIN
			if !want(dns.TypeA) && !want(dns.TypeAAAA) {
				continue
			}
			for inst := range snap.Instances(proto, lc[0]) {
				if !inst.Healthy() {
					continue
				}
				if h, ok := snap.Host(inst.Host); ok {
					addrs.add(h.Addrs, min(h.TTL, inst.TTL))
				}
			}
		}
	}
	if want(dns.TypeA) {
		rrs = addrs.appendRRs(rrs, owner, false)
	}
	if want(dns.TypeAAAA) {
		rrs = addrs.appendRRs(rrs, owner, true)
	}

	switch {
	case len(lc) == 1 && isProto(lc[0]): // _tcp, _udp
		proto := lc[0][1:]
		if proto == "udp" || snap.HasProto(proto) {
			exists = true // _udp is above the browse domains
		}

	case len(lc) == 2 && isService(lc[0]) && isProto(lc[1]): // _echo._tcp
		proto, service := lc[1][1:], lc[0][1:]
		if _, ok := snap.Type(proto, service); ok {
			exists = true
			if want(dns.TypeSRV) {
				rrs = append(rrs, z.srv(snap, proto, service, owner, add)...)
			}
			if want(dns.TypePTR) {
				rrs = append(rrs, z.instancePTR(snap, proto, service, owner, add)...)
			}
		}
		if lc[0] == enumLabels[1] && lc[1] == enumLabels[2] {
			exists = true // _dns-sd._udp, above the browse domains
		}

	case len(lc) == 3 && slices.Equal(lc, enumLabels):
		if hasTypes(snap) {
			exists = true
			if want(dns.TypePTR) {
				rrs = append(rrs, z.enumeration(snap, owner)...)
			}
		}

	case len(lc) == 3 && slices.Contains(browseLabels, lc[0]) && slices.Equal(lc[1:], enumLabels[1:]):
		exists = true
		if want(dns.TypePTR) {
			rrs = append(rrs, z.browsePTR(owner))
		}
	}
	if len(lc) == 3 && isService(lc[1]) && isProto(lc[2]) { // Instance._echo._tcp
		proto, service := lc[2][1:], lc[1][1:]
		if inst, ok := snap.ByLabel(proto, service, rel[0]); ok && inst.Healthy() {
			// An unhealthy instance is withdrawn from DNS altogether, as
			// a DNS-SD goodbye would (RFC 6762 section 10.1), so that the
			// zone a transfer carries has no trace of it either.
			exists = true
			if want(dns.TypeSRV) {
				rrs = append(rrs, z.srvRR(inst, owner, inst.TTL))
				add.host(inst.Host)
			}
			if want(dns.TypeTXT) {
				rrs = append(rrs, txtRR(inst, owner))
			}
		}
	}
	// Subtypes, RFC 6763 section 7.1: _printer._sub._http._tcp lists the
	// instances of _http._tcp that have the subtype _printer, and
	// _sub._http._tcp is above it. Like a type, a subtype whose instances
	// all fail their checks keeps its name, which answers NODATA.
	if len(lc) == 4 && lc[1] == "_sub" && isService(lc[2]) && isProto(lc[3]) {
		proto, service := lc[3][1:], lc[2][1:]
		ptrs, found := z.subtypePTR(snap, proto, service, rel[0], owner, add)
		exists = exists || found
		if want(dns.TypePTR) {
			rrs = append(rrs, ptrs...)
		}
	}
	if len(lc) == 3 && lc[0] == "_sub" && isService(lc[1]) && isProto(lc[2]) && snap.HasSubtypes(lc[2][1:], lc[1][1:]) {
		exists = true
	}
	return rrs, exists
}

// subtypePTR is the browse RRset of a subtype (RFC 6763 section 7.1): a
// PTR per healthy instance that has it; found says whether any instance,
// healthy or not, has the subtype.
func (z *Zone) subtypePTR(snap *registry.Snapshot, proto, service, sub, owner string, add *additions) (rrs []dns.RR, found bool) {
	return z.instancePTRs(snap.Subtype(proto, service, sub), owner, add)
}

// mx synthesizes the apex MX RRset from the healthy instances of
// _smtp._tcp: that is how a mail client finds "mail" in the zone. One MX
// per host, with the lowest priority of the host's instances.
func (z *Zone) mx(snap *registry.Snapshot, owner string, add *additions) []dns.RR {
	var rrs []dns.RR
	ttl := uint32(registry.MaxTTL)
	for inst := range snap.Instances("tcp", "smtp") {
		if !inst.Healthy() {
			continue
		}
		ttl = min(ttl, inst.TTL)
		target := z.abs(inst.Host)
		i := slices.IndexFunc(rrs, func(rr dns.RR) bool { return rr.(*dns.MX).Mx == target })
		if i >= 0 {
			rrs[i].(*dns.MX).Preference = min(rrs[i].(*dns.MX).Preference, inst.Priority)
			continue
		}
		rrs = append(rrs, &dns.MX{
			Hdr:        dns.RR_Header{Name: owner, Rrtype: dns.TypeMX, Class: dns.ClassINET},
			Preference: inst.Priority,
			Mx:         target,
		})
		add.host(inst.Host)
	}
	return setTTL(rrs, ttl)
}

// srv is the _service._proto SRV RRset of RFC 2782: one record per
// healthy instance. Its TTL is the smallest of the instances' (RFC 2181
// section 5.2: one TTL per RRset).
func (z *Zone) srv(snap *registry.Snapshot, proto, service, owner string, add *additions) []dns.RR {
	var rrs []dns.RR
	ttl := uint32(registry.MaxTTL)
	for inst := range snap.Instances(proto, service) {
		if !inst.Healthy() {
			continue
		}
		ttl = min(ttl, inst.TTL)
		rrs = append(rrs, z.srvRR(inst, owner, 0))
		add.host(inst.Host)
	}
	return setTTL(rrs, ttl)
}

func (z *Zone) srvRR(inst *registry.Instance, owner string, ttl uint32) *dns.SRV {
	return &dns.SRV{
		Hdr:      dns.RR_Header{Name: owner, Rrtype: dns.TypeSRV, Class: dns.ClassINET, Ttl: ttl},
		Priority: inst.Priority,
		Weight:   inst.Weight,
		Port:     inst.Port,
		Target:   z.abs(inst.Host),
	}
}

// instancePTR is the DNS-SD browse RRset, RFC 6763 section 4.1.
func (z *Zone) instancePTR(snap *registry.Snapshot, proto, service, owner string, add *additions) []dns.RR {
	rrs, _ := z.instancePTRs(snap.Instances(proto, service), owner, add)
	return rrs
}

// instancePTRs is a browse RRset: one PTR per healthy instance of insts,
// whose SRV, TXT and addresses are added (RFC 6763 section 12.1); found
// says whether insts had any instance, healthy or not.
func (z *Zone) instancePTRs(insts iter.Seq[*registry.Instance], owner string, add *additions) (rrs []dns.RR, found bool) {
	ttl := uint32(registry.MaxTTL)
	for inst := range insts {
		found = true
		if !inst.Healthy() {
			continue
		}
		ttl = min(ttl, inst.TTL)
		rrs = append(rrs, &dns.PTR{
			Hdr: dns.RR_Header{Name: owner, Rrtype: dns.TypePTR, Class: dns.ClassINET},
			Ptr: z.instanceName(inst),
		})
		add.instance(inst)
	}
	return setTTL(rrs, ttl), found
}

// enumeration lists every service type, RFC 6763 section 9, including
// types whose instances are all failing: their names still exist.
func (z *Zone) enumeration(snap *registry.Snapshot, owner string) []dns.RR {
	var rrs []dns.RR
	for t := range snap.Types() {
		rrs = append(rrs, &dns.PTR{
			Hdr: dns.RR_Header{Name: owner, Rrtype: dns.TypePTR, Class: dns.ClassINET, Ttl: registry.DefaultTTL},
			Ptr: z.abs(typeName(t.Proto, t.Service)),
		})
	}
	return rrs
}

// browsePTR is a browse or registration domain's answer, RFC 6763
// section 11: this zone.
func (z *Zone) browsePTR(owner string) *dns.PTR {
	return &dns.PTR{Hdr: dns.RR_Header{Name: owner, Rrtype: dns.TypePTR, Class: dns.ClassINET, Ttl: soaTTL}, Ptr: z.origin}
}

// txtRR is an instance's TXT record: its strings in the order given
// (RFC 6763 section 6.7), each the bytes registered, or a single empty
// string when it has none (section 6.1).
func txtRR(inst *registry.Instance, owner string) *dns.TXT {
	return &dns.TXT{
		Hdr: dns.RR_Header{Name: owner, Rrtype: dns.TypeTXT, Class: dns.ClassINET, Ttl: inst.TTL},
		Txt: txtStrings(inst.TXT),
	}
}

// addrSet gathers the addresses of one name, without duplicates, with the
// smallest TTL of the records they come from.
type addrSet struct {
	addrs []netip.Addr
	ttl   uint32
}

func (s *addrSet) add(addrs []netip.Addr, ttl uint32) {
	if len(addrs) == 0 {
		return
	}
	if len(s.addrs) == 0 || ttl < s.ttl {
		s.ttl = ttl
	}
	for _, a := range addrs {
		if !slices.Contains(s.addrs, a) {
			s.addrs = append(s.addrs, a)
		}
	}
}

func (s *addrSet) appendRRs(rrs []dns.RR, owner string, v6 bool) []dns.RR {
	for _, a := range s.addrs {
		switch {
		case !v6 && a.Is4():
			rrs = append(rrs, &dns.A{
				Hdr: dns.RR_Header{Name: owner, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: s.ttl},
				A:   a.AsSlice(),
			})
		case v6 && a.Is6():
			rrs = append(rrs, &dns.AAAA{
				Hdr:  dns.RR_Header{Name: owner, Rrtype: dns.TypeAAAA, Class: dns.ClassINET, Ttl: s.ttl},
				AAAA: a.AsSlice(),
			})
		}
	}
	return rrs
}

// hostAddrs returns the A or AAAA RRset of a registry host, owned by its
// name in the zone.
func (z *Zone) hostAddrs(snap *registry.Snapshot, name string, v6 bool) []dns.RR {
	h, ok := snap.Host(name)
	if !ok {
		return nil
	}
	var s addrSet
	s.add(h.Addrs, h.TTL)
	return s.appendRRs(nil, z.abs(name), v6)
}

// forwardRecords returns every record of the forward zone (see Records).
func (z *Zone) forwardRecords(snap *registry.Snapshot) []dns.RR {
	type node struct {
		rel   []string
		owner string
	}
	var nodes []node
	seen := make(map[string]bool)
	addNode := func(rel []string, owner string) {
		key := registry.FoldName(owner)
		if !seen[key] {
			seen[key] = true
			nodes = append(nodes, node{rel, owner})
		}
	}
	addNode(nil, z.origin)
	for h := range snap.Hosts() {
		addNode(strings.Split(h.Name, "."), z.abs(h.Name))
	}
	types := false
	for t := range snap.Types() {
		types = true
		addNode([]string{t.Service}, z.abs(t.Service))
		addNode([]string{"_" + t.Service, "_" + t.Proto}, z.abs(typeName(t.Proto, t.Service)))
		for inst := range snap.Instances(t.Proto, t.Service) {
			if inst.Healthy() {
				addNode([]string{inst.Label, "_" + t.Service, "_" + t.Proto}, z.instanceName(inst))
			}
			for _, st := range inst.Subtypes {
				addNode([]string{st, "_sub", "_" + t.Service, "_" + t.Proto}, EscapeLabel(st)+"._sub."+z.abs(typeName(t.Proto, t.Service)))
			}
		}
	}
	if types {
		addNode(enumLabels, z.abs(strings.Join(enumLabels, ".")))
	}
	for _, b := range browseLabels {
		addNode([]string{b, enumLabels[1], enumLabels[2]}, z.abs(b+"."+enumLabels[1]+"."+enumLabels[2]))
	}

	slices.SortFunc(nodes, func(a, b node) int { return compareNames(a.rel, b.rel) })
	var rrs []dns.RR
	for _, n := range nodes {
		set, _ := z.lookup(snap, n.rel, n.owner, dns.TypeANY, nil)
		sortRRs(set)
		rrs = append(rrs, set...)
	}
	return rrs
}

// compareNames orders relative names canonically (RFC 4034 section 6.1):
// label by label from the right, each compared as lowercased bytes.
func compareNames(a, b []string) int {
	for i, j := len(a)-1, len(b)-1; i >= 0 && j >= 0; i, j = i-1, j-1 {
		if c := strings.Compare(registry.FoldName(a[i]), registry.FoldName(b[j])); c != 0 {
			return c
		}
	}
	return cmp.Compare(len(a), len(b))
}

// sortRRs orders the records of one name by type, then by record data in
// wire form (RFC 4034 section 6.3).
func sortRRs(rrs []dns.RR) {
	rdata := func(rr dns.RR) []byte {
		buf := make([]byte, dns.Len(rr))
		n, err := dns.PackRR(rr, buf, 0, nil, false)
		if err != nil {
			return nil
		}
		hdr := dns.Len(&dns.ANY{Hdr: *rr.Header()}) // owner, type, class, TTL, length
		if hdr > n {
			return buf[:n]
		}
		return buf[hdr:n]
	}
	slices.SortStableFunc(rrs, func(a, b dns.RR) int {
		if c := cmp.Compare(a.Header().Rrtype, b.Header().Rrtype); c != 0 {
			return c
		}
		return strings.Compare(string(rdata(a)), string(rdata(b)))
	})
}

// hostName joins relative labels into a registry host name; ok is false if
// a label holds a dot, which no host name can.
func hostName(lc []string) (string, bool) {
	if len(lc) == 0 {
		return "", false
	}
	for _, l := range lc {
		if strings.IndexByte(l, '.') >= 0 || l == "" {
			return "", false
		}
	}
	return strings.Join(lc, "."), true
}

func isProto(l string) bool   { return l == "_tcp" || l == "_udp" }
func isService(l string) bool { return len(l) > 1 && l[0] == '_' }

func hasTypes(snap *registry.Snapshot) bool {
	for range snap.Types() {
		return true
	}
	return false
}

func setTTL(rrs []dns.RR, ttl uint32) []dns.RR {
	for _, rr := range rrs {
		rr.Header().Ttl = ttl
	}
	return rrs
}
