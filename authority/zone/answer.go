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

	var extra func() [][]dns.RR
	rel, inZone := z.Relative(q.Name)
	switch {
	case !inZone:
		rrs, ok := z.reverse(snap, q.Name, q.Qtype)
		if !ok {
			// Not ours: RFC 8906 section 3.1.6 prefers REFUSED to silence,
			// and without aa a resolver knows to look elsewhere.
			m.Rcode = dns.RcodeRefused
			break
		}
		// A registered address's reverse name: we answer its PTR records
		// with authority. Other types get NODATA without an SOA, since the
		// reverse zone is not ours to describe: RFC 2308 section 5 makes
		// that answer uncacheable, which is right.
		m.Authoritative = true
		m.Answer = rrs

	default:
		m.Authoritative = true
		qtype := q.Qtype
		if qtype == dns.TypeANY && !q.tcp {
			// RFC 8482 section 4.1: over UDP, one RRset of the name, the
			// one of lowest type number, never an amplifier. Over TCP the
			// whole node (section 4.4 allows transports to differ).
			all, _ := z.lookup(snap, rel, q.Name, dns.TypeANY, nil)
			for i, rr := range all {
				if t := rr.Header().Rrtype; i == 0 || t < qtype {
					qtype = t
				}
			}
		}
		var add additions
		rrs, exists := z.lookup(snap, rel, q.Name, qtype, &add)
		switch {
		case !exists:
			m.Rcode = dns.RcodeNameError
			m.Ns = []dns.RR{z.negativeSOA(snap)}
		case len(rrs) == 0:
			m.Ns = []dns.RR{z.negativeSOA(snap)} // NODATA, RFC 2308 section 2.2
		default:
			m.Answer = rrs
			extra = func() [][]dns.RR { return z.additional(snap, &add) }
		}
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
