package authority

import "github.com/miekg/dns"

// transfer answers AXFR and IXFR. (Being written: see the transfer task.)
func (s *Server) transfer(w dns.ResponseWriter, r *dns.Msg) {
	m := new(dns.Msg)
	m.SetRcode(r, dns.RcodeRefused)
	w.WriteMsg(m)
}
