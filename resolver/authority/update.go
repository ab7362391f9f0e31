package authority

import "github.com/miekg/dns"

// update answers RFC 2136 UPDATE. (Being written: see the update task.)
func (s *Server) update(w dns.ResponseWriter, r *dns.Msg) {
	m := new(dns.Msg)
	m.SetRcode(r, dns.RcodeRefused)
	w.WriteMsg(m)
}

// notify answers RFC 1996 NOTIFY: annuaire is a primary and takes none.
func (s *Server) notify(w dns.ResponseWriter, r *dns.Msg) {
	m := new(dns.Msg)
	m.SetRcode(r, dns.RcodeRefused)
	w.WriteMsg(m)
}
