package zone

import (
	"strings"

	"github.com/miekg/dns"

	"github.com/annuaire/annuaire/registry"
)

// Respond returns the response to a standard query (opcode QUERY, RFC
// 1035 section 4.1) from snap: an answer, or an error. It knows nothing of
// sockets: tcp only says how large the response may be. Every read of the
// registry goes through snap, so that a recording view of it records what
// the response depends on.
func (z *Zone) Respond(snap *registry.Snapshot, r *dns.Msg, tcp bool) *dns.Msg {
	e, rcode := requestEDNS(r, tcp)
	if rcode != dns.RcodeSuccess {
		return errorReply(r, e, rcode)
	}
	if len(r.Question) == 0 && e.cookie != "" {
		// RFC 7873 section 5.4: a query with no question and a COOKIE
		// asks for a server cookie.
		return errorReply(r, e, dns.RcodeSuccess)
	}
	if len(r.Question) != 1 {
		// RFC 9619: a QUERY carries exactly one question.
		return errorReply(r, e, dns.RcodeFormatError)
	}
	q := r.Question[0]
	switch q.Qclass {
	case dns.ClassINET, dns.ClassANY:
	default:
		// The zone exists in class IN only; for any other class we hold no
		// zone at all, which is what REFUSED says (RFC 8906 section 3.1.6).
		return errorReply(r, e, dns.RcodeRefused)
	}
	switch {
	case q.Qtype == dns.TypeOPT:
		// OPT is a pseudo-record of the additional section (RFC 6891
		// section 6.1.1): asking for it is malformed.
		return errorReply(r, e, dns.RcodeFormatError)
	case q.Qtype == dns.TypeMAILA || q.Qtype == dns.TypeMAILB || q.Qtype == dns.TypeTKEY || q.Qtype == dns.TypeTSIG:
		// Meta-types we do not implement (RFC 6895 section 3.1).
		return errorReply(r, e, dns.RcodeNotImplemented)
	}
	m := z.answer(snap, question{Question: q, edns: e, tcp: tcp})
	copyHeader(m, r)
	return m
}

// ErrorReply is the response to r that says rcode alone, with the OPT
// record an EDNS request is owed (RFC 6891 section 7).
func ErrorReply(r *dns.Msg, tcp bool, rcode int) *dns.Msg {
	e, _ := requestEDNS(r, tcp)
	return errorReply(r, e, rcode)
}

// requestEDNS reads the request's OPT record. A request with more than one
// OPT, or one not owned by the root, is malformed (RFC 6891 section
// 6.1.1); a version above 0 gets BADVERS (section 6.1.3).
func requestEDNS(r *dns.Msg, tcp bool) (edns, int) {
	e := edns{size: dns.MinMsgSize}
	if tcp {
		e.size = dns.MaxMsgSize
	}
	var opt *dns.OPT
	for _, rr := range r.Extra {
		o, ok := rr.(*dns.OPT)
		if !ok {
			continue
		}
		if opt != nil {
			return e, dns.RcodeFormatError
		}
		opt = o
		e.present = true
		e.do = opt.Do()
	}
	if opt == nil {
		return e, dns.RcodeSuccess
	}
	if opt.Hdr.Name != "." {
		return e, dns.RcodeFormatError
	}
	if opt.Version() != 0 {
		return e, dns.RcodeBadVers
	}
	for _, o := range opt.Option {
		c, ok := o.(*dns.EDNS0_COOKIE)
		if !ok {
			continue
		}
		// RFC 7873 section 5.2.2: a client cookie of 8 bytes, then
		// nothing or a server cookie of 8 to 32; anything else, or two
		// options, is malformed.
		n := len(c.Cookie) / 2
		if e.cookie != "" || len(c.Cookie)%2 != 0 || n != 8 && (n < 16 || n > 40) {
			e.cookie = ""
			return e, dns.RcodeFormatError
		}
		e.cookie = strings.ToLower(c.Cookie[:16])
	}
	if !tcp {
		// RFC 6891 section 6.2.5: below 512 means 512.
		e.size = min(max(int(opt.UDPSize()), dns.MinMsgSize), MaxUDPSize)
	}
	return e, dns.RcodeSuccess
}

// errorReply is a response with rcode and no records but the OPT record
// an EDNS request is owed (RFC 6891 section 7), including for BADVERS,
// whose extended bits miekg/dns writes into it.
func errorReply(r *dns.Msg, e edns, rcode int) *dns.Msg {
	m := &dns.Msg{}
	m.Response = true
	if len(r.Question) == 1 {
		m.Question = []dns.Question{r.Question[0]}
	}
	copyHeader(m, r)
	m.Rcode = rcode
	if e.present {
		m.Extra = []dns.RR{responseOPT(e)}
	}
	return m
}

// copyHeader copies what a response repeats from its request: ID, opcode,
// and for QUERY the RD and CD bits (RFC 1035 section 4.1.1, RFC 6840
// section 5.9). Everything else (RA, AD, Z) stays clear.
func copyHeader(m, r *dns.Msg) {
	m.Id = r.Id
	m.Opcode = r.Opcode
	if r.Opcode == dns.OpcodeQuery {
		m.RecursionDesired = r.RecursionDesired
		m.CheckingDisabled = r.CheckingDisabled
	}
}
