package authority

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/annuaire/annuaire/registry"
)

// wireTestServer is the test zone plus a service with 60 instances, whose
// SRV RRset does not fit in 512 bytes: truncation is compared too.
func wireTestServer(tb testing.TB) *Server {
	tb.Helper()
	reg := newTestRegistry(tb)
	_, err := reg.Update(func(tx *registry.Tx) error {
		for i := range 60 {
			inst := registry.Instance{Service: "many", Proto: "tcp", Host: fmt.Sprintf("m%d", i), Port: uint16(1000 + i), Label: fmt.Sprintf("M %d", i)}
			if err := tx.PutHost(registry.Host{Name: inst.Host, Addrs: addrs(fmt.Sprintf("10.9.0.%d", i))}); err != nil {
				return err
			}
			if _, err := tx.PutInstance(inst); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		tb.Fatal(err)
	}
	return &Server{Registry: reg, Zone: testZone}
}

// wireRequests yields requests over names, types, cases, EDNS shapes and
// header bits: what the cache must answer exactly as the full path does.
func wireRequests() []*dns.Msg {
	names := []string{
		"svc.internal.", "a.svc.internal.", "b.svc.internal.", "echo.svc.internal.", "www.lab.svc.internal.",
		"lab.svc.internal.", "_tcp.svc.internal.", "_echo._tcp.svc.internal.", "_http._tcp.svc.internal.",
		`Echo\032One._echo._tcp.svc.internal.`, `My\032Web\.v2._http._tcp.svc.internal.`, "nope.svc.internal.",
		"_services._dns-sd._udp.svc.internal.", "_many._tcp.svc.internal.", "many.svc.internal.",
		"telnet.svc.internal.", "1.0.0.127.in-addr.arpa.", "example.com.", "m7.svc.internal.",
	}
	types := []uint16{dns.TypeA, dns.TypeAAAA, dns.TypeSRV, dns.TypeTXT, dns.TypeSOA, dns.TypeNS, dns.TypeMX,
		dns.TypePTR, dns.TypeANY, dns.TypeCNAME, 999}
	cases := []func(string) string{
		func(s string) string { return s },
		upperASCII,
		func(s string) string { // 0x20: every other letter
			b := []byte(s)
			for i := 0; i < len(b); i += 2 {
				if 'a' <= b[i] && b[i] <= 'z' {
					b[i] -= 'a' - 'A'
				}
			}
			return string(b)
		},
	}
	type shape struct {
		edns bool
		size uint16
		do   bool
	}
	shapes := []shape{{}, {true, 512, false}, {true, 1232, false}, {true, 4096, true}, {true, 600, true}, {true, 100, false}}
	var reqs []*dns.Msg
	id := uint16(1)
	for _, n := range names {
		for _, t := range types {
			for ci, c := range cases {
				for si, sh := range shapes {
					r := new(dns.Msg)
					r.SetQuestion(c(n), t)
					r.Id = id
					id++
					r.RecursionDesired = (ci+si)%2 == 0
					r.CheckingDisabled = si%3 == 0
					if sh.edns {
						r.SetEdns0(sh.size, sh.do)
						if si == 4 {
							opt := r.IsEdns0()
							opt.Option = append(opt.Option, &dns.EDNS0_COOKIE{Code: dns.EDNS0COOKIE, Cookie: "0102030405060708"})
						}
					}
					reqs = append(reqs, r)
				}
			}
		}
	}
	return reqs
}

// TestWireCacheMatchesFullPath: for every request, the cached answer (as
// cached, then as a hit, over both transports) is byte for byte the full
// path's, and plain lowercase questions do take the cache.
func TestWireCacheMatchesFullPath(t *testing.T) {
	s := wireTestServer(t)
	out := make([]byte, dns.MaxMsgSize)
	fast, total := 0, 0
	for _, tcp := range []bool{false, true} {
		for _, r := range wireRequests() {
			total++
			for pass := range 2 { // miss, then hit
				cached := wireMatches(t, s, r, tcp, out, fmt.Sprintf("pass %d", pass))
				if !cached && pass == 1 && r.Question[0].Name == dns.CanonicalName(r.Question[0].Name) {
					t.Errorf("%v tcp=%v: lowercase question not cached", r.Question[0], tcp)
				}
				if cached && pass == 1 {
					fast++
				}
			}
		}
	}
	t.Logf("%d of %d requests answered from the cache", fast, total)
	if fast < total/3 { // every lowercase request, and some others
		t.Errorf("only %d of %d requests from the cache", fast, total)
	}
}

// wireMatches asks s the request r from the wire cache and fails the test
// unless the answer, if the cache gives one, is byte for byte the full
// path's from the newest snapshot. It reports whether the cache answered.
func wireMatches(t *testing.T, s *Server, r *dns.Msg, tcp bool, out []byte, when string) bool {
	t.Helper()
	req, err := r.Pack()
	if err != nil {
		t.Fatal(err)
	}
	want, err := s.respond(r.Copy(), tcp).Pack()
	if err != nil {
		t.Fatal(err)
	}
	n, _ := s.answerWire(req, out, tcp)
	if n == 0 {
		return false
	}
	if !bytes.Equal(out[:n], want) {
		got := new(dns.Msg)
		got.Unpack(out[:n])
		wm := new(dns.Msg)
		wm.Unpack(want)
		t.Fatalf("%s: %v tcp=%v: cached answer differs\ngot:\n%v\nwant:\n%v", when, r.Question[0], tcp, got, wm)
	}
	return true
}

// TestWireCacheFollowsSnapshots: an update is seen by the next query.
func TestWireCacheFollowsSnapshots(t *testing.T) {
	s := wireTestServer(t)
	r := new(dns.Msg)
	r.SetQuestion("late.svc.internal.", dns.TypeA)
	req, _ := r.Pack()
	out := make([]byte, 512)
	ask := func() *dns.Msg {
		n, _ := s.answerWire(req, out, false)
		m := new(dns.Msg)
		if err := m.Unpack(out[:n]); err != nil {
			t.Fatal(err)
		}
		return m
	}
	if m := ask(); m.Rcode != dns.RcodeNameError {
		t.Fatalf("before: rcode %s", dns.RcodeToString[m.Rcode])
	}
	if _, err := s.Registry.Update(func(tx *registry.Tx) error {
		return tx.PutHost(registry.Host{Name: "late", Addrs: addrs("192.0.2.99")})
	}); err != nil {
		t.Fatal(err)
	}
	if m := ask(); m.Rcode != dns.RcodeSuccess || len(m.Answer) != 1 {
		t.Fatalf("after: %v", m)
	}
}

// TestWireParseRejects: what must go the full way does.
func TestWireParseRejects(t *testing.T) {
	base := func() *dns.Msg {
		r := new(dns.Msg)
		r.SetQuestion("a.svc.internal.", dns.TypeA)
		return r
	}
	for name, r := range map[string]*dns.Msg{
		"response": func() *dns.Msg { r := base(); r.Response = true; return r }(),
		"notify":   func() *dns.Msg { r := base(); r.Opcode = dns.OpcodeNotify; return r }(),
		"update":   func() *dns.Msg { r := base(); r.Opcode = dns.OpcodeUpdate; return r }(),
		"axfr":     func() *dns.Msg { r := base(); r.Question[0].Qtype = dns.TypeAXFR; return r }(),
		"two questions": func() *dns.Msg {
			r := base()
			r.Question = append(r.Question, r.Question[0])
			return r
		}(),
		"tsig":    func() *dns.Msg { r := base(); r.SetTsig("k.", dns.HmacSHA256, 300, time.Now().Unix()); return r }(),
		"badvers": func() *dns.Msg { r := base(); r.SetEdns0(1232, false); r.IsEdns0().SetVersion(1); return r }(),
		"ecs": func() *dns.Msg {
			r := base()
			r.SetEdns0(1232, false)
			r.IsEdns0().Option = []dns.EDNS0{&dns.EDNS0_SUBNET{Code: dns.EDNS0SUBNET, Family: 1, SourceNetmask: 24, Address: net.IPv4(10, 0, 0, 0)}}
			return r
		}(),
		"answer rr": func() *dns.Msg {
			r := base()
			rr, _ := dns.NewRR("a.svc.internal. 1 IN A 1.2.3.4")
			r.Answer = []dns.RR{rr}
			return r
		}(),
	} {
		b, err := r.Pack()
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if _, ok := parseWire(b, false); ok {
			t.Errorf("%s: taken by the hot path", name)
		}
	}
}

func upperASCII(s string) string {
	b := []byte(s)
	for i, c := range b {
		if 'a' <= c && c <= 'z' {
			b[i] = c - ('a' - 'A')
		}
	}
	return string(b)
}

// TestTCPPipelined: queries sent in one burst on one connection, some
// answered from the cache inside the connection and some by miekg/dns
// (two questions: FORMERR), come back in order, each as the full path
// would answer it.
func TestTCPPipelined(t *testing.T) {
	s := wireTestServer(t)
	addr := startServer(t, s)
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var burst []byte
	var want [][]byte
	for i, r := range wireRequests()[:300] {
		if i%7 == 3 {
			r.Question = append(r.Question, r.Question[0]) // full path
		}
		b, err := r.Pack()
		if err != nil {
			t.Fatal(err)
		}
		burst = append(burst, byte(len(b)>>8), byte(len(b)))
		burst = append(burst, b...)
		w, err := s.respond(r, true).Pack()
		if err != nil {
			t.Fatal(err)
		}
		want = append(want, w)
	}
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Write(burst); err != nil {
		t.Fatal(err)
	}
	for i, w := range want {
		var l [2]byte
		if _, err := io.ReadFull(c, l[:]); err != nil {
			t.Fatalf("answer %d: %v", i, err)
		}
		got := make([]byte, int(l[0])<<8|int(l[1]))
		if _, err := io.ReadFull(c, got); err != nil {
			t.Fatalf("answer %d: %v", i, err)
		}
		if !bytes.Equal(got, w) {
			t.Fatalf("answer %d differs", i)
		}
	}
}

// TestWireCacheCasePatterns: whether a cached answer fits a mixed-case
// question depends on which letters are capitals (miekg/dns compresses
// case-sensitively), not only on the question: a first "B.svc.internal."
// must not make the cache answer "b.svC.internAl." with a pointer into a
// suffix that no longer matches. Found by FuzzWireCache.
func TestWireCacheCasePatterns(t *testing.T) {
	s := wireTestServer(t)
	out := make([]byte, dns.MaxMsgSize)
	for _, name := range []string{"b.svc.internal.", "B.svc.internal.", "b.svC.internAl.", "B.SVC.INTERNAL.", "nope.Svc.internal.", "nope.svc.INTERNAL."} {
		for _, qtype := range []uint16{dns.TypeTXT, dns.TypeA, dns.TypeANY} {
			r := new(dns.Msg)
			r.SetQuestion(name, qtype)
			for range 2 {
				wireMatches(t, s, r, false, out, name)
			}
		}
	}
}
