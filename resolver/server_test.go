package resolver

import (
	"net"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// zoneServer is a small authoritative server for tests: it answers from
// zone-file text, puts the addresses of SRV and MX targets in the
// additional section, and counts the questions it gets.
type zoneServer struct {
	Addr    string // host:port, UDP and TCP
	origin  string
	rrs     []dns.RR
	soa     *dns.SOA
	queries atomic.Int64

	noExtra  atomic.Bool // leave the additional section empty
	truncate atomic.Bool // answer every UDP question with TC=1 and no records
	delay    atomic.Int64
}

// startZone serves zone (zone-file text with $ORIGIN origin) on 127.0.0.1.
func startZone(t testing.TB, origin, zone string) *zoneServer {
	t.Helper()
	s := &zoneServer{origin: dns.Fqdn(origin)}
	zp := dns.NewZoneParser(strings.NewReader(zone), s.origin, "test.zone")
	for rr, ok := zp.Next(); ok; rr, ok = zp.Next() {
		s.rrs = append(s.rrs, rr)
		if soa, ok := rr.(*dns.SOA); ok {
			s.soa = soa
		}
	}
	if err := zp.Err(); err != nil {
		t.Fatalf("zone: %v", err)
	}
	pc, ln := listenBoth(t)
	s.Addr = pc.LocalAddr().String()
	for _, srv := range []*dns.Server{{PacketConn: pc, Handler: s}, {Listener: ln, Handler: s}} {
		started := make(chan struct{})
		srv.NotifyStartedFunc = func() { close(started) }
		go srv.ActivateAndServe()
		<-started
		t.Cleanup(func() { srv.Shutdown() })
	}
	return s
}

// listenBoth binds UDP and TCP on the same free loopback port, retrying
// when another process took the TCP side first.
func listenBoth(t testing.TB) (net.PacketConn, net.Listener) {
	t.Helper()
	for range 20 {
		pc, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ln, err := net.Listen("tcp", pc.LocalAddr().String())
		if err == nil {
			return pc, ln
		}
		pc.Close()
	}
	t.Fatal("no free UDP+TCP port pair on 127.0.0.1")
	return nil, nil
}

func (s *zoneServer) ServeDNS(w dns.ResponseWriter, req *dns.Msg) {
	s.queries.Add(1)
	if d := s.delay.Load(); d > 0 {
		time.Sleep(time.Duration(d))
	}
	m := new(dns.Msg)
	m.SetReply(req)
	m.Authoritative = true
	q := req.Question[0]
	if _, udp := w.RemoteAddr().(*net.UDPAddr); udp && s.truncate.Load() {
		m.Truncated = true
		w.WriteMsg(m)
		return
	}
	exists := false
	for _, rr := range s.rrs {
		h := rr.Header()
		if dns.IsSubDomain(q.Name, h.Name) {
			exists = true // the name or an empty non-terminal above it
		}
		if strings.EqualFold(h.Name, q.Name) && h.Rrtype == q.Qtype {
			m.Answer = append(m.Answer, rr)
		}
	}
	for _, rr := range m.Answer {
		target := ""
		switch rr := rr.(type) {
		case *dns.SRV:
			target = rr.Target
		case *dns.MX:
			target = rr.Mx
		}
		if target == "" || s.noExtra.Load() {
			continue
		}
		for _, a := range s.rrs {
			if t := a.Header().Rrtype; strings.EqualFold(a.Header().Name, target) && (t == dns.TypeA || t == dns.TypeAAAA) && !slices.Contains(m.Extra, a) {
				m.Extra = append(m.Extra, a)
			}
		}
	}
	if len(m.Answer) == 0 {
		if !exists {
			m.Rcode = dns.RcodeNameError
		}
		if s.soa != nil {
			m.Ns = []dns.RR{s.soa}
		}
	}
	w.WriteMsg(m)
}
