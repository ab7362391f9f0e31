package zone

import (
	"strings"

	"github.com/miekg/dns"

	"github.com/annuaire/annuaire/registry"
)

// MaxUDPSize caps UDP responses whatever size the requestor offers: 1232
// bytes cross any IPv6 path without fragmentation (the DNS flag day 2020
// value, RFC 9715); larger answers are truncated and come again over TCP.
// It is also the size our OPT record advertises.
const MaxUDPSize = 1232

// A question is everything an answer depends on besides the snapshot: the
// question as asked and the shape of the transport and of the request's
// EDNS. answer is a pure function of (snapshot, question), which is what a
// cache of packed answers would be keyed on.
type question struct {
	dns.Question
	edns
	tcp bool
}

// edns is the part of a request's OPT record (RFC 6891) that shapes the
// response. Options and unknown flags are ignored and never echoed
// (RFC 6891 sections 6.1.2 and 6.1.4), but for the COOKIE option.
type edns struct {
	present bool   // the request had an OPT record
	do      bool   // its DO bit, copied to the response (RFC 3225 section 3)
	size    int    // the largest response allowed: 512 to MaxUDPSize over UDP, 65535 over TCP
	cookie  string // the client cookie of its COOKIE option, in hex; "" if none
}

// A response to a request with a COOKIE option carries one (RFC 7873
// section 5.2): the client cookie, then CookieRoom zero bytes where the
// server puts its server cookie (wire.Cookies); the option is the last of
// the OPT record, which is the last record: the message's last bytes.
const CookieRoom = 16

// answer builds the response to one question from one snapshot. The
// header fields copied from the request (ID, RD, CD) are the caller's.
func (z *Zone) answer(snap *registry.Snapshot, q question) *dns.Msg {
	m := &dns.Msg{Compress: true}
	m.Response = true
	m.Question = []dns.Question{q.Question}

	// The zone that holds the name: the forward zone, or a reverse zone.
	var (
		lookup   func(qtype uint16, add *additions) ([]dns.RR, bool)
		negative func() dns.RR
	)
	if rel, in := z.Relative(q.Name); in {
		lookup = func(qtype uint16, add *additions) ([]dns.RR, bool) {
			return z.lookup(snap, rel, q.Name, qtype, add)
		}
		negative = func() dns.RR { return z.soa(z.origin, snap.Serial(), z.negativeTTL()) }
	} else if n, rev := parseReverse(q.Name); rev {
		if zn, held := z.reverseZone(snap, n); held {
			lookup = func(qtype uint16, add *additions) ([]dns.RR, bool) {
				return z.reverseLookup(snap, zn, n, q.Name, qtype, add)
			}
			negative = func() dns.RR { return z.soa(reverseName(zn), snap.ReverseSerial(zn), z.negativeTTL()) }
		}
	}
	if lookup == nil {
		// Not ours: RFC 8906 section 3.1.6 prefers REFUSED to silence,
		// and without aa a resolver knows to look elsewhere.
		m.Rcode = dns.RcodeRefused
		fit(m, nil, q.edns)
		return m
	}

	m.Authoritative = true
	qtype := q.Qtype
	if qtype == dns.TypeANY && !q.tcp {
		// RFC 8482 section 4.1: over UDP, one RRset of the name, the
		// one of lowest type number, never an amplifier. Over TCP the
		// whole node (section 4.4 allows transports to differ).
		all, _ := lookup(dns.TypeANY, nil)
		for i, rr := range all {
			if t := rr.Header().Rrtype; i == 0 || t < qtype {
				qtype = t
			}
		}
	}
	var add additions
	rrs, exists := lookup(qtype, &add)
	var extra func() [][]dns.RR
	switch {
	case !exists:
		m.Rcode = dns.RcodeNameError
		m.Ns = []dns.RR{negative()}
	case len(rrs) == 0:
		m.Ns = []dns.RR{negative()} // NODATA, RFC 2308 section 2.2
	default:
		m.Answer = rrs
		extra = func() [][]dns.RR { return z.additional(snap, &add) }
	}
	if q.Qclass == dns.ClassANY {
		// QCLASS * (RFC 1035 section 3.2.5): the class IN data, as NSD and
		// Knot both answer it; and as NSD does, not authoritative, since
		// a server cannot know it holds every class (RFC 1034 section
		// 3.7.1), so no SOA makes the negative answer cacheable. Knot sets
		// aa and adds the SOA; BIND answers FORMERR.
		m.Authoritative = false
		m.Ns = nil
	}
	fit(m, extra, q.edns)
	return m
}

// additional returns the RRsets of the additional section, most useful
// first: the SRV and TXT of instances a PTR answer names (RFC 6763 section
// 12.1), then the addresses of targets (RFC 2782, RFC 1035 section 4.3.2).
func (z *Zone) additional(snap *registry.Snapshot, add *additions) [][]dns.RR {
	var sets [][]dns.RR
	for _, inst := range add.insts {
		name := z.instanceName(inst)
		sets = append(sets, []dns.RR{z.srvRR(inst, name, inst.TTL)}, []dns.RR{txtRR(inst, name)})
	}
	for _, h := range add.hosts {
		for _, v6 := range []bool{false, true} {
			if rrs := z.hostAddrs(snap, h, v6); len(rrs) > 0 {
				sets = append(sets, rrs)
			}
		}
	}
	return sets
}

// fit adds the OPT record and as many additional RRsets as e.size allows.
// RFC 2181 section 9: additional data is dropped first, a whole RRset at a
// time, and without setting TC; if the answer and authority sections do not
// fit, TC is set and they are left out entirely, so that no client mistakes
// part of an RRset for the whole of it. The OPT record stays in every case
// (RFC 6891 section 7). extra is only called when the answer fits.
func fit(m *dns.Msg, extra func() [][]dns.RR, e edns) {
	size := max(e.size, dns.MinMsgSize)
	var opt []dns.RR
	if e.present {
		opt = []dns.RR{responseOPT(e)}
	}
	m.Extra = opt
	// Every record takes at least 12 bytes (a compressed owner and the
	// fixed fields): a large RRset is known not to fit without packing it.
	const minRR = 12
	if 12+minRR*(len(m.Answer)+len(m.Ns)) > size || m.Len() > size {
		m.Truncated = true
		m.Answer, m.Ns = nil, nil
		return
	}
	if extra == nil {
		return
	}
	sets := extra()
	// build puts the first n additional RRsets in, then the OPT record,
	// last, where most parsers look first.
	build := func(n int) {
		m.Extra = nil // never m.Extra[:0]: it may share opt's array
		for _, set := range sets[:n] {
			m.Extra = append(m.Extra, set...)
		}
		m.Extra = append(m.Extra, opt...)
	}
	build(len(sets))
	if m.Len() <= size {
		return
	}
	for n := 1; n <= len(sets); n++ {
		build(n)
		if m.Len() > size {
			build(n - 1)
			return
		}
	}
}

// responseOPT is the OPT record of every response to an EDNS request:
// version 0, our UDP size, the requestor's DO bit, and a COOKIE option if
// the request had one (see CookieRoom).
func responseOPT(e edns) *dns.OPT {
	o := &dns.OPT{Hdr: dns.RR_Header{Name: ".", Rrtype: dns.TypeOPT}}
	o.SetUDPSize(MaxUDPSize)
	if e.do {
		o.SetDo()
	}
	if e.cookie != "" {
		o.Option = []dns.EDNS0{&dns.EDNS0_COOKIE{Code: dns.EDNS0COOKIE, Cookie: e.cookie + strings.Repeat("00", CookieRoom)}}
	}
	return o
}
