package authtest

import (
	"strings"
	"testing"

	"github.com/miekg/dns"
)

// A Case is a question and the whole response expected, written as
// zone-file text, one record per line.
type Case struct {
	Name  string
	Type  uint16
	Class uint16 // 0 means IN
	TCP   bool
	EDNS  bool   // send an OPT record, with bufsize and do
	Size  uint16 // EDNS UDP size; 0 means 1232
	DO    bool

	Rcode int
	NoAA  bool // the response is not authoritative
	TC    bool

	Answer, Ns, Extra string // the OPT record is checked apart, not listed
}

// Request is the question as a query, without RD.
func (tc Case) Request() *dns.Msg {
	r := new(dns.Msg)
	r.SetQuestion(tc.Name, tc.Type)
	r.RecursionDesired = false
	if tc.Class != 0 {
		r.Question[0].Qclass = tc.Class
	}
	if tc.EDNS {
		size := tc.Size
		if size == 0 {
			size = 1232
		}
		r.SetEdns0(size, tc.DO)
	}
	return r
}

// Check compares a response with the expected one, section by section.
func (tc Case) Check(t *testing.T, m *dns.Msg) {
	t.Helper()
	if m.Rcode != tc.Rcode {
		t.Errorf("rcode %s, want %s", dns.RcodeToString[m.Rcode], dns.RcodeToString[tc.Rcode])
	}
	if m.Authoritative == tc.NoAA {
		t.Errorf("aa=%v, want %v", m.Authoritative, !tc.NoAA)
	}
	if m.Truncated != tc.TC {
		t.Errorf("tc=%v, want %v", m.Truncated, tc.TC)
	}
	if m.RecursionAvailable || m.AuthenticatedData || m.Zero || !m.Response {
		t.Errorf("flags: %s", m.MsgHdr.String())
	}
	if len(m.Question) != 1 || m.Question[0].Name != presented(t, tc.Name) {
		t.Errorf("question %v, want %s as asked", m.Question, tc.Name)
	}
	opt := m.IsEdns0()
	switch {
	case tc.EDNS && opt == nil:
		t.Errorf("no OPT record in the response to an EDNS query")
	case !tc.EDNS && opt != nil:
		t.Errorf("OPT record in the response to a query without EDNS: %v", opt)
	case opt != nil && (opt.Version() != 0 || opt.Do() != tc.DO || len(opt.Option) != 0):
		t.Errorf("OPT %v: want version 0, do=%v, no options", opt, tc.DO)
	}
	var extra []dns.RR
	for _, rr := range m.Extra {
		if rr.Header().Rrtype != dns.TypeOPT {
			extra = append(extra, rr)
		}
	}
	compareSection(t, "answer", m.Answer, tc.Answer)
	compareSection(t, "authority", m.Ns, tc.Ns)
	compareSection(t, "additional", extra, tc.Extra)
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
	// The reverse zones' serial is that of the change that registered
	// the hosts: the two changes after it touched no address.
	soaNeg127 = `0.0.127.in-addr.arpa. 10 IN SOA ns.svc.internal. hostmaster.svc.internal. 2026112402 300 60 86400 10`
	soaNeg6   = `0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.ip6.arpa. 10 IN SOA ns.svc.internal. hostmaster.svc.internal. 2026112402 300 60 86400 10`
	v6Net     = `0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.ip6.arpa.`
)

// Queries are questions over every kind of name of the zone of Registry,
// with the whole answers expected.
var Queries = map[string]Case{
	"SOA": {Name: "svc.internal.", Type: dns.TypeSOA, Answer: soaPos},
	"SOA mixed case": {Name: "SvC.InTeRnAl.", Type: dns.TypeSOA,
		Answer: `SvC.InTeRnAl. 60 IN SOA ns.svc.internal. hostmaster.svc.internal. 2026112403 300 60 86400 10`},
	"NS": {Name: "svc.internal.", Type: dns.TypeNS,
		Answer: `svc.internal. 60 IN NS ns.svc.internal.`,
		Extra:  `ns.svc.internal. 60 IN A 127.0.0.53`},
	"MX from smtp": {Name: "svc.internal.", Type: dns.TypeMX,
		Answer: `svc.internal. 10 IN MX 10 b.svc.internal.`,
		Extra:  `b.svc.internal. 10 IN A 127.0.0.2`},
	"apex A is NODATA": {Name: "svc.internal.", Type: dns.TypeA, Ns: soaNeg},
	// An RRset's records come in instance label order (b-7008 before
	// Echo One), their targets' addresses in that order too.
	"SRV": {Name: "_echo._tcp.svc.internal.", Type: dns.TypeSRV,
		Answer: `_echo._tcp.svc.internal. 10 IN SRV 20 0 7008 b.svc.internal.
		         _echo._tcp.svc.internal. 10 IN SRV 10 5 7007 a.svc.internal.`,
		Extra: `b.svc.internal. 10 IN A 127.0.0.2
		        a.svc.internal. 30 IN A 127.0.0.1
		        a.svc.internal. 30 IN AAAA ::1`},
	"SRV mixed case": {Name: "_ECHO._Udp.svc.INTERNAL.", Type: dns.TypeSRV,
		Answer: `_ECHO._Udp.svc.INTERNAL. 10 IN SRV 0 0 7007 a.svc.internal.`,
		Extra: `a.svc.internal. 30 IN A 127.0.0.1
		        a.svc.internal. 30 IN AAAA ::1`},
	"SRV all critical is NODATA":       {Name: "_telnet._tcp.svc.internal.", Type: dns.TypeSRV, Ns: soaNeg},
	"service A all critical is NODATA": {Name: "telnet.svc.internal.", Type: dns.TypeA, Ns: soaNeg},
	"SRV unknown service":              {Name: "_ftp._tcp.svc.internal.", Type: dns.TypeSRV, Rcode: dns.RcodeNameError, Ns: soaNeg},
	"SRV name with A asked":            {Name: "_echo._tcp.svc.internal.", Type: dns.TypeA, Ns: soaNeg},
	"host A":                           {Name: "a.svc.internal.", Type: dns.TypeA, Answer: `a.svc.internal. 30 IN A 127.0.0.1`},
	"host AAAA":                        {Name: "A.svc.internal.", Type: dns.TypeAAAA, Answer: `A.svc.internal. 30 IN AAAA ::1`},
	"host without AAAA":                {Name: "b.svc.internal.", Type: dns.TypeAAAA, Ns: soaNeg},
	"host two labels":                  {Name: "www.lab.svc.internal.", Type: dns.TypeA, Answer: `www.lab.svc.internal. 10 IN A 10.0.0.1`},
	"empty non-terminal of a host":     {Name: "lab.svc.internal.", Type: dns.TypeA, Ns: soaNeg},
	"below a host":                     {Name: "x.www.lab.svc.internal.", Type: dns.TypeA, Rcode: dns.RcodeNameError, Ns: soaNeg},
	"service A merges host and instances": {Name: "echo.svc.internal.", Type: dns.TypeA,
		Answer: `echo.svc.internal. 10 IN A 192.0.2.7
		         echo.svc.internal. 10 IN A 127.0.0.2
		         echo.svc.internal. 10 IN A 127.0.0.1`},
	"service AAAA":               {Name: "echo.svc.internal.", Type: dns.TypeAAAA, Answer: `echo.svc.internal. 10 IN AAAA ::1`},
	"service A":                  {Name: "http.svc.internal.", Type: dns.TypeA, Answer: `http.svc.internal. 10 IN A 127.0.0.2`},
	"no alias in DNS":            {Name: "mail.svc.internal.", Type: dns.TypeA, Rcode: dns.RcodeNameError, Ns: soaNeg},
	"_tcp empty non-terminal":    {Name: "_tcp.svc.internal.", Type: dns.TypeA, Ns: soaNeg},
	"_udp empty non-terminal":    {Name: "_udp.svc.internal.", Type: dns.TypeTXT, Ns: soaNeg},
	"_dns-sd empty non-terminal": {Name: "_dns-sd._udp.svc.internal.", Type: dns.TypePTR, Ns: soaNeg},
	"_sctp does not exist":       {Name: "_sctp.svc.internal.", Type: dns.TypeA, Rcode: dns.RcodeNameError, Ns: soaNeg},
	"NXDOMAIN":                   {Name: "nope.svc.internal.", Type: dns.TypeA, Rcode: dns.RcodeNameError, Ns: soaNeg},
	"unknown type at apex":       {Name: "svc.internal.", Type: 1000, Ns: soaNeg},

	"DNS-SD enumeration": {Name: "_services._dns-sd._udp.svc.internal.", Type: dns.TypePTR,
		Answer: `_services._dns-sd._udp.svc.internal. 10 IN PTR _echo._tcp.svc.internal.
		         _services._dns-sd._udp.svc.internal. 10 IN PTR _http._tcp.svc.internal.
		         _services._dns-sd._udp.svc.internal. 10 IN PTR _smtp._tcp.svc.internal.
		         _services._dns-sd._udp.svc.internal. 10 IN PTR _telnet._tcp.svc.internal.
		         _services._dns-sd._udp.svc.internal. 10 IN PTR _echo._udp.svc.internal.`},
	"DNS-SD browse": {Name: "_echo._tcp.svc.internal.", Type: dns.TypePTR,
		Answer: `_echo._tcp.svc.internal. 10 IN PTR b-7008._echo._tcp.svc.internal.
		         _echo._tcp.svc.internal. 10 IN PTR Echo\ One._echo._tcp.svc.internal.`,
		Extra: `b-7008._echo._tcp.svc.internal. 20 IN SRV 20 0 7008 b.svc.internal.
		        b-7008._echo._tcp.svc.internal. 20 IN TXT ""
		        Echo\ One._echo._tcp.svc.internal. 10 IN SRV 10 5 7007 a.svc.internal.
		        Echo\ One._echo._tcp.svc.internal. 10 IN TXT "path=/" "v=1"
		        b.svc.internal. 10 IN A 127.0.0.2
		        a.svc.internal. 30 IN A 127.0.0.1
		        a.svc.internal. 30 IN AAAA ::1`},
	"DNS-SD browse, label with a dot": {Name: "_http._tcp.svc.internal.", Type: dns.TypePTR,
		Answer: `_http._tcp.svc.internal. 10 IN PTR My\ Web\.v2._http._tcp.svc.internal.`,
		Extra: `My\ Web\.v2._http._tcp.svc.internal. 10 IN SRV 0 0 8080 b.svc.internal.
		        My\ Web\.v2._http._tcp.svc.internal. 10 IN TXT ""
		        b.svc.internal. 10 IN A 127.0.0.2`},
	"DNS-SD browse, all critical": {Name: "_telnet._tcp.svc.internal.", Type: dns.TypePTR, Ns: soaNeg},
	"DNS-SD instance SRV": {Name: `my\ web\.V2._http._tcp.svc.internal.`, Type: dns.TypeSRV,
		Answer: `my\ web\.V2._http._tcp.svc.internal. 10 IN SRV 0 0 8080 b.svc.internal.`,
		Extra:  `b.svc.internal. 10 IN A 127.0.0.2`},
	"DNS-SD instance TXT": {Name: `Echo\032One._echo._tcp.svc.internal.`, Type: dns.TypeTXT,
		Answer: `Echo\ One._echo._tcp.svc.internal. 10 IN TXT "path=/" "v=1"`},
	"DNS-SD instance TXT empty": {Name: `b-7008._echo._tcp.svc.internal.`, Type: dns.TypeTXT,
		Answer: `b-7008._echo._tcp.svc.internal. 20 IN TXT ""`},
	"DNS-SD instance A is NODATA":   {Name: `b-7008._echo._tcp.svc.internal.`, Type: dns.TypeA, Ns: soaNeg},
	"DNS-SD label split at its dot": {Name: `v2._http._tcp.svc.internal.`, Type: dns.TypeSRV, Rcode: dns.RcodeNameError, Ns: soaNeg},
	"DNS-SD critical instance":      {Name: `a-23._telnet._tcp.svc.internal.`, Type: dns.TypeSRV, Rcode: dns.RcodeNameError, Ns: soaNeg},

	"reverse PTR": {Name: "1.0.0.127.in-addr.arpa.", Type: dns.TypePTR, Answer: `1.0.0.127.in-addr.arpa. 30 IN PTR a.svc.internal.`},
	"reverse PTR v6": {Name: "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.IP6.ARPA.", Type: dns.TypePTR,
		Answer: `1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.IP6.ARPA. 30 IN PTR a.svc.internal.`},
	"reverse other type":   {Name: "1.0.0.127.in-addr.arpa.", Type: dns.TypeA, Ns: soaNeg127},
	"reverse unregistered": {Name: "9.0.0.127.in-addr.arpa.", Type: dns.TypePTR, Rcode: dns.RcodeNameError, Ns: soaNeg127},
	"reverse zone SOA": {Name: "0.0.127.in-addr.arpa.", Type: dns.TypeSOA,
		Answer: `0.0.127.in-addr.arpa. 60 IN SOA ns.svc.internal. hostmaster.svc.internal. 2026112402 300 60 86400 10`},
	"reverse zone NS": {Name: "0.0.127.IN-ADDR.arpa.", Type: dns.TypeNS,
		Answer: `0.0.127.IN-ADDR.arpa. 60 IN NS ns.svc.internal.`,
		Extra:  `ns.svc.internal. 60 IN A 127.0.0.53`},
	"reverse zone apex PTR":         {Name: "0.0.127.in-addr.arpa.", Type: dns.TypePTR, Ns: soaNeg127},
	"reverse below an address":      {Name: "x.1.0.0.127.in-addr.arpa.", Type: dns.TypePTR, Rcode: dns.RcodeNameError, Ns: soaNeg127},
	"reverse not an octet":          {Name: "01.0.0.127.in-addr.arpa.", Type: dns.TypePTR, Rcode: dns.RcodeNameError, Ns: soaNeg127},
	"reverse above the zone":        {Name: "0.127.in-addr.arpa.", Type: dns.TypeSOA, Rcode: dns.RcodeRefused, NoAA: true},
	"reverse tree":                  {Name: "in-addr.arpa.", Type: dns.TypeSOA, Rcode: dns.RcodeRefused, NoAA: true},
	"reverse of no zone":            {Name: "9.0.0.11.in-addr.arpa.", Type: dns.TypePTR, Rcode: dns.RcodeRefused, NoAA: true},
	"reverse v6 unregistered":       {Name: "2" + v6Net[1:], Type: dns.TypePTR, Rcode: dns.RcodeNameError, Ns: soaNeg6},
	"reverse v6 empty non-terminal": {Name: "0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.ip6.arpa.", Type: dns.TypePTR, Ns: soaNeg6},
	"reverse v6 zone SOA": {Name: "0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.ip6.arpa.", Type: dns.TypeSOA,
		Answer: `0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.ip6.arpa. 60 IN SOA ns.svc.internal. hostmaster.svc.internal. 2026112402 300 60 86400 10`},
	"reverse v6 above the zone": {Name: "0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.ip6.arpa.", Type: dns.TypeSOA, Rcode: dns.RcodeRefused, NoAA: true},
	"reverse class ANY unregistered": {Name: "9.0.0.127.in-addr.arpa.", Type: dns.TypePTR, Class: dns.ClassANY,
		Rcode: dns.RcodeNameError, NoAA: true},

	"browse domain": {Name: "b._dns-sd._udp.svc.internal.", Type: dns.TypePTR,
		Answer: `b._dns-sd._udp.svc.internal. 60 IN PTR svc.internal.`},
	"default browse domain": {Name: "db._dns-sd._udp.svc.internal.", Type: dns.TypePTR,
		Answer: `db._dns-sd._udp.svc.internal. 60 IN PTR svc.internal.`},
	"legacy browse domain": {Name: "LB._dns-sd._udp.svc.internal.", Type: dns.TypePTR,
		Answer: `LB._dns-sd._udp.svc.internal. 60 IN PTR svc.internal.`},
	"registration domain": {Name: "r._dns-sd._udp.svc.internal.", Type: dns.TypePTR,
		Answer: `r._dns-sd._udp.svc.internal. 60 IN PTR svc.internal.`},
	"default registration domain": {Name: "dr._dns-sd._udp.svc.internal.", Type: dns.TypePTR,
		Answer: `dr._dns-sd._udp.svc.internal. 60 IN PTR svc.internal.`},
	"browse domain SRV is NODATA": {Name: "b._dns-sd._udp.svc.internal.", Type: dns.TypeSRV, Ns: soaNeg},
	"not a browse domain":         {Name: "x._dns-sd._udp.svc.internal.", Type: dns.TypePTR, Rcode: dns.RcodeNameError, Ns: soaNeg},
	"browse domain by subnet": {Name: "b._dns-sd._udp.0.0.0.127.in-addr.arpa.", Type: dns.TypePTR,
		Answer: `b._dns-sd._udp.0.0.0.127.in-addr.arpa. 60 IN PTR svc.internal.`},
	"registration domain by subnet v6": {Name: "dr._dns-sd._udp." + v6Net, Type: dns.TypePTR,
		Answer: `dr._dns-sd._udp.` + v6Net + ` 60 IN PTR svc.internal.`},
	"browse domain off the network address": {Name: "b._dns-sd._udp.1.0.0.127.in-addr.arpa.", Type: dns.TypePTR,
		Rcode: dns.RcodeNameError, Ns: soaNeg127},
	"browse _dns-sd by subnet is an empty non-terminal": {Name: "_dns-sd._udp.0.0.0.127.in-addr.arpa.", Type: dns.TypePTR, Ns: soaNeg127},
	"network address is an empty non-terminal":          {Name: "0.0.0.127.in-addr.arpa.", Type: dns.TypePTR, Ns: soaNeg127},
	"outside the zone":   {Name: "example.com.", Type: dns.TypeA, Rcode: dns.RcodeRefused, NoAA: true},
	"parent of the zone": {Name: "internal.", Type: dns.TypeSOA, Rcode: dns.RcodeRefused, NoAA: true},
	"zone as a label":    {Name: "svc.internal.example.", Type: dns.TypeSOA, Rcode: dns.RcodeRefused, NoAA: true},

	"ANY over UDP: one RRset": {Name: "svc.internal.", Type: dns.TypeANY,
		Answer: `svc.internal. 60 IN NS ns.svc.internal.`,
		Extra:  `ns.svc.internal. 60 IN A 127.0.0.53`},
	"ANY over TCP: the node": {Name: "b-7008._echo._tcp.svc.internal.", Type: dns.TypeANY, TCP: true,
		Answer: `b-7008._echo._tcp.svc.internal. 20 IN SRV 20 0 7008 b.svc.internal.
		         b-7008._echo._tcp.svc.internal. 20 IN TXT ""`,
		Extra: `b.svc.internal. 10 IN A 127.0.0.2`},
	"ANY at an empty non-terminal": {Name: "_tcp.svc.internal.", Type: dns.TypeANY, Ns: soaNeg},
	"class ANY":                    {Name: "a.svc.internal.", Type: dns.TypeA, Class: dns.ClassANY, NoAA: true, Answer: `a.svc.internal. 30 IN A 127.0.0.1`},
	"class ANY NXDOMAIN":           {Name: "nope.svc.internal.", Type: dns.TypeA, Class: dns.ClassANY, NoAA: true, Rcode: dns.RcodeNameError},
	"class ANY NODATA":             {Name: "b.svc.internal.", Type: dns.TypeAAAA, Class: dns.ClassANY, NoAA: true},
	"class ANY SRV": {Name: "_echo._udp.svc.internal.", Type: dns.TypeSRV, Class: dns.ClassANY, NoAA: true,
		Answer: `_echo._udp.svc.internal. 10 IN SRV 0 0 7007 a.svc.internal.`,
		Extra: `a.svc.internal. 30 IN A 127.0.0.1
		        a.svc.internal. 30 IN AAAA ::1`},
	"class CHAOS":         {Name: "version.bind.", Type: dns.TypeTXT, Class: dns.ClassCHAOS, Rcode: dns.RcodeRefused, NoAA: true},
	"class CHAOS in zone": {Name: "a.svc.internal.", Type: dns.TypeA, Class: dns.ClassCHAOS, Rcode: dns.RcodeRefused, NoAA: true},
	"qtype OPT":           {Name: "svc.internal.", Type: dns.TypeOPT, Rcode: dns.RcodeFormatError, NoAA: true},
	"qtype MAILB":         {Name: "svc.internal.", Type: dns.TypeMAILB, Rcode: dns.RcodeNotImplemented, NoAA: true},

	"EDNS": {Name: "svc.internal.", Type: dns.TypeSOA, EDNS: true, Answer: soaPos},
	"EDNS DO echoed": {Name: "nope.svc.internal.", Type: dns.TypeSOA, EDNS: true, DO: true,
		Rcode: dns.RcodeNameError, Ns: soaNeg},
	"EDNS small size means 512": {Name: "a.svc.internal.", Type: dns.TypeA, EDNS: true, Size: 100,
		Answer: `a.svc.internal. 30 IN A 127.0.0.1`},
}
