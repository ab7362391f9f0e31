package authority

import (
	"net"
	"strings"
	"testing"

	"github.com/miekg/dns"
)

// recorder is a dns.ResponseWriter that keeps what the handler wrote.
type recorder struct {
	tcp  bool
	msgs []*dns.Msg
	raw  [][]byte
}

func (w *recorder) LocalAddr() net.Addr {
	if w.tcp {
		return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 53}
	}
	return &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 53}
}

func (w *recorder) RemoteAddr() net.Addr {
	if w.tcp {
		return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 5353}
	}
	return &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 5353}
}

func (w *recorder) WriteMsg(m *dns.Msg) error {
	b, err := m.Pack()
	if err != nil {
		return err
	}
	w.raw = append(w.raw, b)
	w.msgs = append(w.msgs, m)
	return nil
}

func (w *recorder) Write(b []byte) (int, error) {
	m := new(dns.Msg)
	if err := m.Unpack(b); err != nil {
		return 0, err
	}
	w.raw = append(w.raw, b)
	w.msgs = append(w.msgs, m)
	return len(b), nil
}

func (w *recorder) Close() error        { return nil }
func (w *recorder) TsigStatus() error   { return nil }
func (w *recorder) TsigTimersOnly(bool) {}
func (w *recorder) Hijack()             {}

// A testCase is a question and the whole response expected, written as
// zone-file text, one record per line.
type testCase struct {
	qname  string
	qtype  uint16
	qclass uint16 // 0 means IN
	tcp    bool
	edns   bool   // send an OPT record, with bufsize and do
	size   uint16 // EDNS UDP size; 0 means 1232
	do     bool

	rcode int
	noAA  bool // the response is not authoritative
	tc    bool

	answer, ns, extra string // the OPT record is checked apart, not listed
}

func (tc testCase) request() *dns.Msg {
	r := new(dns.Msg)
	r.SetQuestion(tc.qname, tc.qtype)
	r.RecursionDesired = false
	if tc.qclass != 0 {
		r.Question[0].Qclass = tc.qclass
	}
	if tc.edns {
		size := tc.size
		if size == 0 {
			size = 1232
		}
		r.SetEdns0(size, tc.do)
	}
	return r
}

// check compares a response with the expected one, section by section.
func (tc testCase) check(t *testing.T, m *dns.Msg) {
	t.Helper()
	if m.Rcode != tc.rcode {
		t.Errorf("rcode %s, want %s", dns.RcodeToString[m.Rcode], dns.RcodeToString[tc.rcode])
	}
	if m.Authoritative == tc.noAA {
		t.Errorf("aa=%v, want %v", m.Authoritative, !tc.noAA)
	}
	if m.Truncated != tc.tc {
		t.Errorf("tc=%v, want %v", m.Truncated, tc.tc)
	}
	if m.RecursionAvailable || m.AuthenticatedData || m.Zero || !m.Response {
		t.Errorf("flags: %s", m.MsgHdr.String())
	}
	if len(m.Question) != 1 || m.Question[0].Name != presented(t, tc.qname) {
		t.Errorf("question %v, want %s as asked", m.Question, tc.qname)
	}
	opt := m.IsEdns0()
	switch {
	case tc.edns && opt == nil:
		t.Errorf("no OPT record in the response to an EDNS query")
	case !tc.edns && opt != nil:
		t.Errorf("OPT record in the response to a query without EDNS: %v", opt)
	case opt != nil && (opt.Version() != 0 || opt.Do() != tc.do || len(opt.Option) != 0):
		t.Errorf("OPT %v: want version 0, do=%v, no options", opt, tc.do)
	}
	var extra []dns.RR
	for _, rr := range m.Extra {
		if rr.Header().Rrtype != dns.TypeOPT {
			extra = append(extra, rr)
		}
	}
	compareSection(t, "answer", m.Answer, tc.answer)
	compareSection(t, "authority", m.Ns, tc.ns)
	compareSection(t, "additional", extra, tc.extra)
}

// presented returns a name as miekg/dns presents it once read from the
// wire: \032 comes back as "\ ".
func presented(t *testing.T, name string) string {
	buf := make([]byte, 256)
	n, err := dns.PackDomainName(name, buf, 0, nil, false)
	if err != nil {
		t.Fatalf("bad test name %q: %v", name, err)
	}
	s, _, err := dns.UnpackDomainName(buf[:n], 0)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func compareSection(t *testing.T, section string, got []dns.RR, want string) {
	t.Helper()
	var w []string
	for _, line := range strings.Split(strings.TrimSpace(want), "\n") {
		if line = strings.TrimSpace(line); line == "" {
			continue
		}
		rr, err := dns.NewRR(line)
		if err != nil {
			t.Fatalf("bad test record %q: %v", line, err)
		}
		w = append(w, rr.String())
	}
	var g []string
	for _, rr := range got {
		g = append(g, rr.String())
	}
	if strings.Join(g, "\n") != strings.Join(w, "\n") {
		t.Errorf("%s section:\n%s\nwant:\n%s", section, strings.Join(g, "\n"), strings.Join(w, "\n"))
	}
}

const (
	soaNeg = `svc.internal. 10 IN SOA ns.svc.internal. hostmaster.svc.internal. 2026112403 300 60 86400 10`
	soaPos = `svc.internal. 60 IN SOA ns.svc.internal. hostmaster.svc.internal. 2026112403 300 60 86400 10`
)

var queryTests = map[string]testCase{
	"SOA": {qname: "svc.internal.", qtype: dns.TypeSOA, answer: soaPos},
	"SOA mixed case": {qname: "SvC.InTeRnAl.", qtype: dns.TypeSOA,
		answer: `SvC.InTeRnAl. 60 IN SOA ns.svc.internal. hostmaster.svc.internal. 2026112403 300 60 86400 10`},
	"NS": {qname: "svc.internal.", qtype: dns.TypeNS,
		answer: `svc.internal. 60 IN NS ns.svc.internal.`,
		extra:  `ns.svc.internal. 60 IN A 127.0.0.53`},
	"MX from smtp": {qname: "svc.internal.", qtype: dns.TypeMX,
		answer: `svc.internal. 10 IN MX 10 b.svc.internal.`,
		extra:  `b.svc.internal. 10 IN A 127.0.0.2`},
	"apex A is NODATA": {qname: "svc.internal.", qtype: dns.TypeA, ns: soaNeg},
	// An RRset's records come in instance label order (b-7008 before
	// Echo One), their targets' addresses in that order too.
	"SRV": {qname: "_echo._tcp.svc.internal.", qtype: dns.TypeSRV,
		answer: `_echo._tcp.svc.internal. 10 IN SRV 20 0 7008 b.svc.internal.
		         _echo._tcp.svc.internal. 10 IN SRV 10 5 7007 a.svc.internal.`,
		extra: `b.svc.internal. 10 IN A 127.0.0.2
		        a.svc.internal. 30 IN A 127.0.0.1
		        a.svc.internal. 30 IN AAAA ::1`},
	"SRV mixed case": {qname: "_ECHO._Udp.svc.INTERNAL.", qtype: dns.TypeSRV,
		answer: `_ECHO._Udp.svc.INTERNAL. 10 IN SRV 0 0 7007 a.svc.internal.`,
		extra: `a.svc.internal. 30 IN A 127.0.0.1
		        a.svc.internal. 30 IN AAAA ::1`},
	"SRV all critical is NODATA":       {qname: "_telnet._tcp.svc.internal.", qtype: dns.TypeSRV, ns: soaNeg},
	"service A all critical is NODATA": {qname: "telnet.svc.internal.", qtype: dns.TypeA, ns: soaNeg},
	"SRV unknown service":              {qname: "_ftp._tcp.svc.internal.", qtype: dns.TypeSRV, rcode: dns.RcodeNameError, ns: soaNeg},
	"SRV name with A asked":            {qname: "_echo._tcp.svc.internal.", qtype: dns.TypeA, ns: soaNeg},
	"host A":                           {qname: "a.svc.internal.", qtype: dns.TypeA, answer: `a.svc.internal. 30 IN A 127.0.0.1`},
	"host AAAA":                        {qname: "A.svc.internal.", qtype: dns.TypeAAAA, answer: `A.svc.internal. 30 IN AAAA ::1`},
	"host without AAAA":                {qname: "b.svc.internal.", qtype: dns.TypeAAAA, ns: soaNeg},
	"host two labels":                  {qname: "www.lab.svc.internal.", qtype: dns.TypeA, answer: `www.lab.svc.internal. 10 IN A 10.0.0.1`},
	"empty non-terminal of a host":     {qname: "lab.svc.internal.", qtype: dns.TypeA, ns: soaNeg},
	"below a host":                     {qname: "x.www.lab.svc.internal.", qtype: dns.TypeA, rcode: dns.RcodeNameError, ns: soaNeg},
	"service A merges host and instances": {qname: "echo.svc.internal.", qtype: dns.TypeA,
		answer: `echo.svc.internal. 10 IN A 192.0.2.7
		         echo.svc.internal. 10 IN A 127.0.0.2
		         echo.svc.internal. 10 IN A 127.0.0.1`},
	"service AAAA":               {qname: "echo.svc.internal.", qtype: dns.TypeAAAA, answer: `echo.svc.internal. 10 IN AAAA ::1`},
	"service A":                  {qname: "http.svc.internal.", qtype: dns.TypeA, answer: `http.svc.internal. 10 IN A 127.0.0.2`},
	"no alias in DNS":            {qname: "mail.svc.internal.", qtype: dns.TypeA, rcode: dns.RcodeNameError, ns: soaNeg},
	"_tcp empty non-terminal":    {qname: "_tcp.svc.internal.", qtype: dns.TypeA, ns: soaNeg},
	"_udp empty non-terminal":    {qname: "_udp.svc.internal.", qtype: dns.TypeTXT, ns: soaNeg},
	"_dns-sd empty non-terminal": {qname: "_dns-sd._udp.svc.internal.", qtype: dns.TypePTR, ns: soaNeg},
	"_sctp does not exist":       {qname: "_sctp.svc.internal.", qtype: dns.TypeA, rcode: dns.RcodeNameError, ns: soaNeg},
	"NXDOMAIN":                   {qname: "nope.svc.internal.", qtype: dns.TypeA, rcode: dns.RcodeNameError, ns: soaNeg},
	"unknown type at apex":       {qname: "svc.internal.", qtype: 1000, ns: soaNeg},

	"DNS-SD enumeration": {qname: "_services._dns-sd._udp.svc.internal.", qtype: dns.TypePTR,
		answer: `_services._dns-sd._udp.svc.internal. 10 IN PTR _echo._tcp.svc.internal.
		         _services._dns-sd._udp.svc.internal. 10 IN PTR _http._tcp.svc.internal.
		         _services._dns-sd._udp.svc.internal. 10 IN PTR _smtp._tcp.svc.internal.
		         _services._dns-sd._udp.svc.internal. 10 IN PTR _telnet._tcp.svc.internal.
		         _services._dns-sd._udp.svc.internal. 10 IN PTR _echo._udp.svc.internal.`},
	"DNS-SD browse": {qname: "_echo._tcp.svc.internal.", qtype: dns.TypePTR,
		answer: `_echo._tcp.svc.internal. 10 IN PTR b-7008._echo._tcp.svc.internal.
		         _echo._tcp.svc.internal. 10 IN PTR Echo\ One._echo._tcp.svc.internal.`,
		extra: `b-7008._echo._tcp.svc.internal. 20 IN SRV 20 0 7008 b.svc.internal.
		        b-7008._echo._tcp.svc.internal. 20 IN TXT ""
		        Echo\ One._echo._tcp.svc.internal. 10 IN SRV 10 5 7007 a.svc.internal.
		        Echo\ One._echo._tcp.svc.internal. 10 IN TXT "path=/" "v=1"
		        b.svc.internal. 10 IN A 127.0.0.2
		        a.svc.internal. 30 IN A 127.0.0.1
		        a.svc.internal. 30 IN AAAA ::1`},
	"DNS-SD browse, label with a dot": {qname: "_http._tcp.svc.internal.", qtype: dns.TypePTR,
		answer: `_http._tcp.svc.internal. 10 IN PTR My\ Web\.v2._http._tcp.svc.internal.`,
		extra: `My\ Web\.v2._http._tcp.svc.internal. 10 IN SRV 0 0 8080 b.svc.internal.
		        My\ Web\.v2._http._tcp.svc.internal. 10 IN TXT ""
		        b.svc.internal. 10 IN A 127.0.0.2`},
	"DNS-SD browse, all critical": {qname: "_telnet._tcp.svc.internal.", qtype: dns.TypePTR, ns: soaNeg},
	"DNS-SD instance SRV": {qname: `my\ web\.V2._http._tcp.svc.internal.`, qtype: dns.TypeSRV,
		answer: `my\ web\.V2._http._tcp.svc.internal. 10 IN SRV 0 0 8080 b.svc.internal.`,
		extra:  `b.svc.internal. 10 IN A 127.0.0.2`},
	"DNS-SD instance TXT": {qname: `Echo\032One._echo._tcp.svc.internal.`, qtype: dns.TypeTXT,
		answer: `Echo\ One._echo._tcp.svc.internal. 10 IN TXT "path=/" "v=1"`},
	"DNS-SD instance TXT empty": {qname: `b-7008._echo._tcp.svc.internal.`, qtype: dns.TypeTXT,
		answer: `b-7008._echo._tcp.svc.internal. 20 IN TXT ""`},
	"DNS-SD instance A is NODATA":   {qname: `b-7008._echo._tcp.svc.internal.`, qtype: dns.TypeA, ns: soaNeg},
	"DNS-SD label split at its dot": {qname: `v2._http._tcp.svc.internal.`, qtype: dns.TypeSRV, rcode: dns.RcodeNameError, ns: soaNeg},
	"DNS-SD critical instance":      {qname: `a-23._telnet._tcp.svc.internal.`, qtype: dns.TypeSRV, rcode: dns.RcodeNameError, ns: soaNeg},

	"reverse PTR": {qname: "1.0.0.127.in-addr.arpa.", qtype: dns.TypePTR, answer: `1.0.0.127.in-addr.arpa. 30 IN PTR a.svc.internal.`},
	"reverse PTR v6": {qname: "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.IP6.ARPA.", qtype: dns.TypePTR,
		answer: `1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.IP6.ARPA. 30 IN PTR a.svc.internal.`},
	"reverse other type":   {qname: "1.0.0.127.in-addr.arpa.", qtype: dns.TypeA},
	"reverse unregistered": {qname: "9.0.0.127.in-addr.arpa.", qtype: dns.TypePTR, rcode: dns.RcodeRefused, noAA: true},
	"reverse partial":      {qname: "0.0.127.in-addr.arpa.", qtype: dns.TypePTR, rcode: dns.RcodeRefused, noAA: true},
	"outside the zone":     {qname: "example.com.", qtype: dns.TypeA, rcode: dns.RcodeRefused, noAA: true},
	"parent of the zone":   {qname: "internal.", qtype: dns.TypeSOA, rcode: dns.RcodeRefused, noAA: true},
	"zone as a label":      {qname: "svc.internal.example.", qtype: dns.TypeSOA, rcode: dns.RcodeRefused, noAA: true},

	"ANY over UDP: one RRset": {qname: "svc.internal.", qtype: dns.TypeANY,
		answer: `svc.internal. 60 IN NS ns.svc.internal.`,
		extra:  `ns.svc.internal. 60 IN A 127.0.0.53`},
	"ANY over TCP: the node": {qname: "b-7008._echo._tcp.svc.internal.", qtype: dns.TypeANY, tcp: true,
		answer: `b-7008._echo._tcp.svc.internal. 20 IN SRV 20 0 7008 b.svc.internal.
		         b-7008._echo._tcp.svc.internal. 20 IN TXT ""`,
		extra: `b.svc.internal. 10 IN A 127.0.0.2`},
	"ANY at an empty non-terminal": {qname: "_tcp.svc.internal.", qtype: dns.TypeANY, ns: soaNeg},
	"class ANY":                    {qname: "a.svc.internal.", qtype: dns.TypeA, qclass: dns.ClassANY, answer: `a.svc.internal. 30 IN A 127.0.0.1`},
	"class CHAOS":                  {qname: "version.bind.", qtype: dns.TypeTXT, qclass: dns.ClassCHAOS, rcode: dns.RcodeRefused, noAA: true},
	"class CHAOS in zone":          {qname: "a.svc.internal.", qtype: dns.TypeA, qclass: dns.ClassCHAOS, rcode: dns.RcodeRefused, noAA: true},
	"qtype OPT":                    {qname: "svc.internal.", qtype: dns.TypeOPT, rcode: dns.RcodeFormatError, noAA: true},
	"qtype MAILB":                  {qname: "svc.internal.", qtype: dns.TypeMAILB, rcode: dns.RcodeNotImplemented, noAA: true},

	"EDNS": {qname: "svc.internal.", qtype: dns.TypeSOA, edns: true, answer: soaPos},
	"EDNS DO echoed": {qname: "nope.svc.internal.", qtype: dns.TypeSOA, edns: true, do: true,
		rcode: dns.RcodeNameError, ns: soaNeg},
	"EDNS small size means 512": {qname: "a.svc.internal.", qtype: dns.TypeA, edns: true, size: 100,
		answer: `a.svc.internal. 30 IN A 127.0.0.1`},
}

func TestQuery(t *testing.T) {
	s := &Server{Registry: newTestRegistry(t), Zone: testZone}
	for name, tc := range queryTests {
		t.Run(name, func(t *testing.T) {
			w := &recorder{tcp: tc.tcp}
			s.ServeDNS(w, tc.request())
			if len(w.msgs) != 1 {
				t.Fatalf("%d responses, want 1", len(w.msgs))
			}
			// What the client sees: the packed message, unpacked.
			m := new(dns.Msg)
			if err := m.Unpack(w.raw[0]); err != nil {
				t.Fatal(err)
			}
			tc.check(t, m)
		})
	}
}
