package authority

import "github.com/miekg/dns"

// query answers a standard query. (Being written: see the authority task.)
func (s *Server) query(w dns.ResponseWriter, r *dns.Msg) {
	m := new(dns.Msg)
	m.SetRcode(r, dns.RcodeServerFailure)
	w.WriteMsg(m)
}
