package wire

import (
	"bytes"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/annuaire/annuaire/authority/internal/authtest"
	"github.com/annuaire/annuaire/authority/zone"
	"github.com/annuaire/annuaire/registry"
)

// TestWireCacheMatchesFullPath: for every request, the cached answer (as
// cached, then as a hit, over both transports) is byte for byte the full
// path's, and plain lowercase questions do take the cache.
// server is a cache and the registry and zone it answers from, as the DNS
// server holds them.
type server struct{ *Cache }

func newServer(reg *registry.Registry) server {
	return server{New(reg, zone.New(zone.Config{Origin: authtest.Zone}), Counters{})}
}

// testServer answers from authtest.Many: the test zone, and an SRV RRset
// that does not fit in 512 bytes, so that truncation is compared too.
func testServer(tb testing.TB) server { return newServer(authtest.Many(tb)) }

// respond is the full path's answer from the newest snapshot.
func (s server) respond(r *dns.Msg, tcp bool) *dns.Msg {
	return s.zone.Respond(s.reg.Snapshot(), r, tcp)
}

func TestWireCacheMatchesFullPath(t *testing.T) {
	s := testServer(t)
	out := make([]byte, dns.MaxMsgSize)
	fast, total := 0, 0
	for _, tcp := range []bool{false, true} {
		for _, r := range authtest.Requests() {
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
func wireMatches(t *testing.T, s server, r *dns.Msg, tcp bool, out []byte, when string) bool {
	t.Helper()
	req, err := r.Pack()
	if err != nil {
		t.Fatal(err)
	}
	want, err := s.respond(r.Copy(), tcp).Pack()
	if err != nil {
		t.Fatal(err)
	}
	n := s.Answer(req, out, tcp)
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
	s := testServer(t)
	r := new(dns.Msg)
	r.SetQuestion("late.svc.internal.", dns.TypeA)
	req, _ := r.Pack()
	out := make([]byte, 512)
	ask := func() *dns.Msg {
		n := s.Answer(req, out, false)
		m := new(dns.Msg)
		if err := m.Unpack(out[:n]); err != nil {
			t.Fatal(err)
		}
		return m
	}
	if m := ask(); m.Rcode != dns.RcodeNameError {
		t.Fatalf("before: rcode %s", dns.RcodeToString[m.Rcode])
	}
	if _, err := s.reg.Update(func(tx *registry.Tx) error {
		return tx.PutHost(registry.Host{Name: "late", Addrs: authtest.Addrs("192.0.2.99")})
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
		if _, ok := parse(b, false); ok {
			t.Errorf("%s: taken by the hot path", name)
		}
	}
}

// TestWireCacheCasePatterns: whether a cached answer fits a mixed-case
// question depends on which letters are capitals (miekg/dns compresses
// case-sensitively), not only on the question: a first "B.svc.internal."
// must not make the cache answer "b.svC.internAl." with a pointer into a
// suffix that no longer matches. Found by FuzzWireCache.
func TestWireCacheCasePatterns(t *testing.T) {
	s := testServer(t)
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

// TestTrailing: bytes after the records a header counts are trailing;
// a message cut short is not (it is malformed, and miekg/dns says so).
func TestTrailing(t *testing.T) {
	q := new(dns.Msg)
	q.SetQuestion("a.svc.internal.", dns.TypeA)
	plain, _ := q.Pack()
	q.SetEdns0(1232, true)
	withOPT, _ := q.Pack()
	u := new(dns.Msg)
	u.SetUpdate("svc.internal.")
	rr, _ := dns.NewRR("x.svc.internal. 60 IN A 127.0.0.9")
	u.Insert([]dns.RR{rr})
	update, _ := u.Pack()
	for name, c := range map[string]struct {
		b    []byte
		want bool
	}{
		"query":                 {plain, false},
		"query and junk":        {append(plain[:len(plain):len(plain)], 0), true},
		"query with OPT":        {withOPT, false},
		"OPT and junk":          {append(withOPT[:len(withOPT):len(withOPT)], "junk"...), true},
		"OPT not counted":       {append(plain[:len(plain):len(plain)], withOPT[len(plain):]...), true},
		"cut short":             {plain[:len(plain)-2], false},
		"update":                {update, false},
		"update and junk":       {append(update[:len(update):len(update)], 1, 2), true},
		"header only":           {plain[:12], false},
		"header and a byte":     {append(append([]byte(nil), 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0), 7), true},
		"bad label type (0x40)": {append(append([]byte(nil), plain[:12]...), 0x40, 0, 0, 1, 0, 1, 9), false},
	} {
		if got := trailing(c.b); got != c.want {
			t.Errorf("%s: trailing = %v, want %v", name, got, c.want)
		}
	}
}
