package authority

import (
	"net"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/annuaire/annuaire/authority/internal/authtest"
	"github.com/annuaire/annuaire/internal/testenv"
)

// digResult is dig's output, read back.
type digResult struct {
	out        string
	status     string
	flags      []string
	answer     []string // records, fields joined by one space
	authority  []string
	additional []string
	opt        bool   // an OPT PSEUDOSECTION
	ednsLine   string // "; EDNS: version: 0, flags: do; udp: 1232"
}

var (
	digStatus = regexp.MustCompile(`status: ([A-Z0-9]+)`)
	digFlags  = regexp.MustCompile(`;; flags:([^;]*);`)
)

// dig runs the real dig against addr and parses what it prints.
func dig(t *testing.T, addr string, args ...string) digResult {
	t.Helper()
	path := testenv.NeedTool(t, "dig")
	host, port, _ := net.SplitHostPort(addr)
	argv := append([]string{"@" + host, "-p", port, "+time=2", "+tries=2"}, args...)
	out, err := exec.Command(path, argv...).CombinedOutput()
	if err != nil {
		t.Fatalf("dig %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	t.Logf("$ dig @%s -p %s %s\n%s", host, port, strings.Join(args, " "), out)
	r := digResult{out: string(out)}
	if m := digStatus.FindStringSubmatch(r.out); m != nil {
		r.status = m[1]
	}
	if m := digFlags.FindStringSubmatch(r.out); m != nil {
		r.flags = strings.Fields(m[1])
	}
	var section *[]string
	for _, line := range strings.Split(r.out, "\n") {
		switch {
		case strings.HasPrefix(line, ";; ANSWER SECTION:"):
			section = &r.answer
		case strings.HasPrefix(line, ";; AUTHORITY SECTION:"):
			section = &r.authority
		case strings.HasPrefix(line, ";; ADDITIONAL SECTION:"):
			section = &r.additional
		case strings.HasPrefix(line, ";; OPT PSEUDOSECTION:"):
			r.opt = true
		case strings.HasPrefix(line, "; EDNS:"):
			r.ednsLine = line
		case strings.TrimSpace(line) == "":
			section = nil
		case section != nil && !strings.HasPrefix(line, ";"):
			*section = append(*section, strings.Join(strings.Fields(line), " "))
		}
	}
	return r
}

func (r digResult) flag(f string) bool { return slices.Contains(r.flags, f) }

func hasType(rrs []string, typ string) bool {
	for _, rr := range rrs {
		if f := strings.Fields(rr); len(f) >= 4 && f[3] == typ {
			return true
		}
	}
	return false
}

// TestRFC8906 runs the checks of RFC 8906 section 8 ("Testing"), each
// with the dig command the RFC gives, against the server, and checks each
// of its "expect" lines. Section 8.3 is for servers without EDNS and does
// not apply.
func TestRFC8906(t *testing.T) {
	addr := authtest.Start(t, &Server{Registry: authtest.Registry(t), Zone: authtest.Zone})
	const zone = "svc.internal"

	type expect struct {
		status    string
		soa       *bool // the SOA in the answer section: present, absent, or not checked
		emptyAns  bool
		aa, rd    *bool
		checkAD   bool
		opt       bool
		noMBZ     bool
		noOpt100  bool
		do        bool
		version0  bool
		checkRest bool // the answer, authority and additional sections are empty
	}
	yes, no := new(bool), new(bool)
	*yes = true
	tests := []struct {
		section string
		args    string
		want    expect
	}{
		{"8.1.1 zone configured", "+noedns +noad +norec soa " + zone,
			expect{status: "NOERROR", soa: yes, aa: yes, rd: no, checkAD: true}},
		{"8.1.2 unknown types", "+noedns +noad +norec type1000 " + zone,
			expect{status: "NOERROR", emptyAns: true, aa: yes, rd: no, checkAD: true}},
		{"8.1.3.1 CD=1", "+noedns +noad +norec +cd soa " + zone,
			expect{status: "NOERROR", soa: yes, aa: yes, rd: no, checkAD: true}},
		{"8.1.3.2 AD=1", "+noedns +norec +ad soa " + zone,
			expect{status: "NOERROR", soa: yes, aa: yes, rd: no, checkAD: true}},
		{"8.1.3.3 reserved bit", "+noedns +noad +norec +zflag soa " + zone,
			expect{status: "NOERROR", soa: yes, noMBZ: true, aa: yes, rd: no, checkAD: true}},
		{"8.1.3.4 RD=1", "+noedns +noad +rec soa " + zone,
			expect{status: "NOERROR", soa: yes, aa: yes, rd: yes, checkAD: true}},
		{"8.1.4 unknown opcodes", "+noedns +noad +opcode=15 +norec +header-only soa " + zone,
			expect{status: "NOTIMP", soa: no, aa: no, rd: no, checkAD: true, checkRest: true}},
		{"8.1.5 TCP", "+noedns +noad +norec +tcp soa " + zone,
			expect{status: "NOERROR", soa: yes, aa: yes, rd: no, checkAD: true}},
		{"8.2.1 minimal EDNS", "+nocookie +edns=0 +noad +norec soa " + zone,
			expect{status: "NOERROR", soa: yes, opt: true, version0: true, aa: yes, checkAD: true}},
		{"8.2.2 EDNS version negotiation", "+nocookie +edns=1 +noednsneg +noad +norec soa " + zone,
			expect{status: "BADVERS", soa: no, opt: true, version0: true, aa: no, checkAD: true}},
		{"8.2.3 unknown EDNS options", "+nocookie +edns=0 +noad +norec +ednsopt=100 soa " + zone,
			expect{status: "NOERROR", soa: yes, opt: true, noOpt100: true, version0: true, aa: yes, checkAD: true}},
		{"8.2.4 unknown EDNS flags", "+nocookie +edns=0 +noad +norec +ednsflags=0x40 soa " + zone,
			expect{status: "NOERROR", soa: yes, opt: true, noMBZ: true, version0: true, aa: yes, checkAD: true}},
		{"8.2.5 version negotiation, unknown flags", "+nocookie +edns=1 +noednsneg +noad +norec +ednsflags=0x40 soa " + zone,
			expect{status: "BADVERS", soa: no, opt: true, noMBZ: true, version0: true, aa: no, checkAD: true}},
		{"8.2.6 version negotiation, unknown options", "+nocookie +edns=1 +noednsneg +noad +norec +ednsopt=100 soa " + zone,
			expect{status: "BADVERS", soa: no, opt: true, noOpt100: true, version0: true, aa: no, checkAD: true}},
		{"8.2.7 truncated responses", "+nocookie +edns=0 +noad +norec +dnssec +bufsize=512 +ignore dnskey " + zone,
			expect{status: "NOERROR", opt: true, version0: true}},
		{"8.2.8 DO=1", "+nocookie +edns=0 +noad +norec +dnssec soa " + zone,
			expect{status: "NOERROR", soa: yes, opt: true, do: true, version0: true, aa: yes}},
		{"8.2.9 version negotiation, DO=1", "+nocookie +edns=1 +noednsneg +noad +norec +dnssec soa " + zone,
			expect{status: "BADVERS", soa: no, opt: true, do: true, version0: true, aa: no}},
		{"8.2.10 multiple defined EDNS options", "+edns=0 +noad +norec +cookie +nsid +expire +subnet=0.0.0.0/0 soa " + zone,
			expect{status: "NOERROR", soa: yes, opt: true, version0: true, aa: yes, checkAD: true}},
	}
	for _, tt := range tests {
		t.Run(tt.section, func(t *testing.T) {
			t.Parallel()
			r := dig(t, addr, strings.Fields(tt.args)...)
			w := tt.want
			if r.status != w.status {
				t.Errorf("status: %s, want %s", r.status, w.status)
			}
			if w.soa != nil && hasType(r.answer, "SOA") != *w.soa {
				t.Errorf("SOA in the answer section: %v, want %v", !*w.soa, *w.soa)
			}
			if w.emptyAns && len(r.answer) != 0 {
				t.Errorf("answer section not empty: %v", r.answer)
			}
			if w.aa != nil && r.flag("aa") != *w.aa {
				t.Errorf("flag aa: %v, want %v", r.flag("aa"), *w.aa)
			}
			if w.rd != nil && r.flag("rd") != *w.rd {
				t.Errorf("flag rd: %v, want %v", r.flag("rd"), *w.rd)
			}
			if w.checkAD && r.flag("ad") {
				t.Errorf("flag ad present")
			}
			if r.opt != w.opt {
				t.Errorf("OPT record: %v, want %v", r.opt, w.opt)
			}
			if w.noMBZ && strings.Contains(r.out, "MBZ") {
				t.Errorf("MBZ present: a must-be-zero bit was copied")
			}
			if w.noOpt100 && strings.Contains(r.out, "OPT=100") {
				t.Errorf("OPT=100 echoed")
			}
			if w.version0 && !strings.HasPrefix(r.ednsLine, "; EDNS: version: 0,") {
				t.Errorf("EDNS line %q, want version 0", r.ednsLine)
			}
			if w.do && !strings.Contains(r.ednsLine, "flags: do") {
				t.Errorf("EDNS line %q, want DO=1", r.ednsLine)
			}
			if w.checkRest && len(r.answer)+len(r.authority)+len(r.additional) != 0 {
				t.Errorf("records in an error response: %v %v %v", r.answer, r.authority, r.additional)
			}
		})
	}
}

// TestDig asks the real dig, over UDP and TCP, for every record kind.
func TestDig(t *testing.T) {
	addr := authtest.Start(t, &Server{Registry: authtest.Registry(t), Zone: authtest.Zone})
	soa := "svc.internal. 10 IN SOA ns.svc.internal. hostmaster.svc.internal. 2026112403 300 60 86400 10"
	soa127 := "0.0.127.in-addr.arpa. 10 IN SOA ns.svc.internal. hostmaster.svc.internal. 2026112402 300 60 86400 10"
	soa6 := "0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.ip6.arpa. 10 IN SOA ns.svc.internal. hostmaster.svc.internal. 2026112402 300 60 86400 10"
	tests := []struct {
		name      string
		args      string
		status    string
		answer    []string
		authority []string
		extra     []string // must be in the additional section, among others
	}{
		{"SOA", "svc.internal SOA", "NOERROR",
			[]string{"svc.internal. 60 IN SOA ns.svc.internal. hostmaster.svc.internal. 2026112403 300 60 86400 10"}, nil, nil},
		{"NS", "svc.internal NS", "NOERROR",
			[]string{"svc.internal. 60 IN NS ns.svc.internal."}, nil, []string{"ns.svc.internal. 60 IN A 127.0.0.53"}},
		{"MX", "svc.internal MX", "NOERROR",
			[]string{"svc.internal. 10 IN MX 10 b.svc.internal."}, nil, []string{"b.svc.internal. 10 IN A 127.0.0.2"}},
		{"SRV mixed case", "_Echo._TCP.Svc.Internal SRV", "NOERROR",
			[]string{"_Echo._TCP.Svc.Internal. 10 IN SRV 20 0 7008 b.svc.internal.", "_Echo._TCP.Svc.Internal. 10 IN SRV 10 5 7007 a.svc.internal."}, // label order
			nil, []string{"a.svc.internal. 30 IN A 127.0.0.1", "a.svc.internal. 30 IN AAAA ::1", "b.svc.internal. 10 IN A 127.0.0.2"}},
		{"host A", "a.svc.internal A", "NOERROR", []string{"a.svc.internal. 30 IN A 127.0.0.1"}, nil, nil},
		{"host AAAA", "a.svc.internal AAAA", "NOERROR", []string{"a.svc.internal. 30 IN AAAA ::1"}, nil, nil},
		{"service A", "http.svc.internal A", "NOERROR", []string{"http.svc.internal. 10 IN A 127.0.0.2"}, nil, nil},
		{"DNS-SD enumeration", "_services._dns-sd._udp.svc.internal PTR", "NOERROR", []string{
			"_services._dns-sd._udp.svc.internal. 10 IN PTR _echo._tcp.svc.internal.",
			"_services._dns-sd._udp.svc.internal. 10 IN PTR _http._tcp.svc.internal.",
			"_services._dns-sd._udp.svc.internal. 10 IN PTR _smtp._tcp.svc.internal.",
			"_services._dns-sd._udp.svc.internal. 10 IN PTR _telnet._tcp.svc.internal.",
			"_services._dns-sd._udp.svc.internal. 10 IN PTR _echo._udp.svc.internal."}, nil, nil},
		{"DNS-SD browse", "_http._tcp.svc.internal PTR", "NOERROR",
			[]string{`_http._tcp.svc.internal. 10 IN PTR My\032Web\.v2._http._tcp.svc.internal.`}, nil,
			[]string{`My\032Web\.v2._http._tcp.svc.internal. 10 IN SRV 0 0 8080 b.svc.internal.`,
				`My\032Web\.v2._http._tcp.svc.internal. 10 IN TXT ""`, "b.svc.internal. 10 IN A 127.0.0.2"}},
		{"DNS-SD TXT", `Echo\032One._echo._tcp.svc.internal TXT`, "NOERROR",
			[]string{`Echo\032One._echo._tcp.svc.internal. 10 IN TXT "path=/" "v=1"`}, nil, nil},
		{"PTR", "-x 127.0.0.2", "NOERROR", []string{"2.0.0.127.in-addr.arpa. 10 IN PTR b.svc.internal."}, nil, nil},
		{"PTR v6", "-x ::1", "NOERROR",
			[]string{"1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.ip6.arpa. 30 IN PTR a.svc.internal."}, nil, nil},
		{"NXDOMAIN", "nope.svc.internal A", "NXDOMAIN", nil, []string{soa}, nil},
		{"NODATA", "b.svc.internal AAAA", "NOERROR", nil, []string{soa}, nil},
		{"NODATA all critical", "_telnet._tcp.svc.internal SRV", "NOERROR", nil, []string{soa}, nil},
		{"empty non-terminal", "_tcp.svc.internal A", "NOERROR", nil, []string{soa}, nil},
		{"REFUSED", "example.com A", "REFUSED", nil, nil, nil},
		// Issue 13: dig -x of an address without a name was REFUSED, and
		// a reverse zone had no SOA.
		{"PTR unknown address", "-x 127.0.0.9", "NXDOMAIN", nil, []string{soa127}, nil},
		{"PTR unknown address v6", "-x ::2", "NXDOMAIN", nil, []string{soa6}, nil},
		{"reverse name SOA", "1.0.0.127.in-addr.arpa SOA", "NOERROR", nil, []string{soa127}, nil},
		{"reverse zone SOA", "0.0.127.in-addr.arpa SOA", "NOERROR",
			[]string{"0.0.127.in-addr.arpa. 60 IN SOA ns.svc.internal. hostmaster.svc.internal. 2026112402 300 60 86400 10"}, nil, nil},
		{"reverse zone NS", "0.0.127.in-addr.arpa NS", "NOERROR",
			[]string{"0.0.127.in-addr.arpa. 60 IN NS ns.svc.internal."}, nil, []string{"ns.svc.internal. 60 IN A 127.0.0.53"}},
		{"reverse above the zone", "0.127.in-addr.arpa SOA", "REFUSED", nil, nil, nil},
		{"reverse of no zone", "-x 192.0.3.1", "REFUSED", nil, nil, nil},
		{"browse domain", "b._dns-sd._udp.svc.internal PTR", "NOERROR", []string{"b._dns-sd._udp.svc.internal. 60 IN PTR svc.internal."}, nil, nil},
		{"browse domain by subnet", "lb._dns-sd._udp.0.0.0.127.in-addr.arpa PTR", "NOERROR",
			[]string{"lb._dns-sd._udp.0.0.0.127.in-addr.arpa. 60 IN PTR svc.internal."}, nil, nil},
	}
	for _, tt := range tests {
		for _, transport := range []string{"+notcp", "+tcp"} {
			t.Run(tt.name+" "+transport, func(t *testing.T) {
				t.Parallel()
				r := dig(t, addr, append([]string{"+norec", transport}, strings.Fields(tt.args)...)...)
				if r.status != tt.status {
					t.Errorf("status %s, want %s", r.status, tt.status)
				}
				if r.flag("aa") != (tt.status != "REFUSED") || r.flag("ra") {
					t.Errorf("flags %v", r.flags)
				}
				if !slices.Equal(r.answer, tt.answer) {
					t.Errorf("answer:\n%s\nwant:\n%s", strings.Join(r.answer, "\n"), strings.Join(tt.answer, "\n"))
				}
				if !slices.Equal(r.authority, tt.authority) {
					t.Errorf("authority:\n%s\nwant:\n%s", strings.Join(r.authority, "\n"), strings.Join(tt.authority, "\n"))
				}
				for _, rr := range tt.extra {
					if !slices.Contains(r.additional, rr) {
						t.Errorf("additional section lacks %q:\n%s", rr, strings.Join(r.additional, "\n"))
					}
				}
			})
		}
	}
}

// TestDigTruncation: over UDP a too-large RRset sets TC and leaves the
// answer out; over TCP it comes whole.
func TestDigTruncation(t *testing.T) {
	addr := authtest.Start(t, &Server{Registry: authtest.Big(t, 100), Zone: authtest.Zone})

	r := dig(t, addr, "+norec", "+ignore", "+bufsize=1232", "_big._tcp.svc.internal", "SRV")
	if !r.flag("tc") || len(r.answer) != 0 || !r.opt {
		t.Errorf("UDP: flags %v, %d answers, OPT %v: want tc, no answer, OPT", r.flags, len(r.answer), r.opt)
	}
	r = dig(t, addr, "+norec", "+ignore", "+bufsize=512", "_big._tcp.svc.internal", "SRV")
	if !r.flag("tc") || len(r.answer) != 0 || !r.opt {
		t.Errorf("UDP 512: flags %v, %d answers, OPT %v: want tc, no answer, OPT", r.flags, len(r.answer), r.opt)
	}
	r = dig(t, addr, "+norec", "+ignore", "+noedns", "_big._tcp.svc.internal", "SRV")
	if !r.flag("tc") || len(r.answer) != 0 || r.opt {
		t.Errorf("UDP without EDNS: flags %v, %d answers, OPT %v: want tc, no answer, no OPT", r.flags, len(r.answer), r.opt)
	}
	r = dig(t, addr, "+norec", "+tcp", "_big._tcp.svc.internal", "SRV")
	if r.flag("tc") || len(r.answer) != 100 {
		t.Errorf("TCP: flags %v, %d answers, want 100", r.flags, len(r.answer))
	}
	// Without +ignore dig retries over TCP by itself.
	r = dig(t, addr, "+norec", "_big._tcp.svc.internal", "SRV")
	if len(r.answer) != 100 || !strings.Contains(r.out, "Truncated, retrying in TCP mode") {
		t.Errorf("dig did not retry over TCP: %d answers", len(r.answer))
	}
}
