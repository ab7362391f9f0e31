package zone

import (
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/miekg/dns"

	"github.com/annuaire/annuaire/authority/internal/authtest"
	"github.com/annuaire/annuaire/registry"
)

// TestRecordsMatchQueries checks that Records is each zone the queries
// answer from, the forward zone and every reverse zone held: each of its
// RRsets is exactly the answer to a query for its name and type, and each
// of its names answers ANY (over TCP: the whole node) with exactly its
// records there.
func TestRecordsMatchQueries(t *testing.T) {
	servers := map[string]server{
		"test":     testServer(t),
		"big":      {New(Config{Origin: "Example.ORG"}), authtest.Big(t, 300)},
		"empty":    {New(Config{}), authtest.Big(t, 0)},
		"networks": {New(Config{Reverse: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("::/124")}}), authtest.Registry(t)},
	}
	for name, s := range servers {
		held := s.Held(s.reg.Snapshot())
		if len(held) < 2 && name != "empty" {
			t.Errorf("%s: holds %v: no reverse zone", name, held)
		}
		for _, h := range held {
			t.Run(name+"/"+h.Name, func(t *testing.T) { testRecordsMatchQueries(t, s, h) })
		}
	}
}

func testRecordsMatchQueries(t *testing.T, s server, h Held) {
	snap := s.reg.Snapshot()
	rrs, ok := s.Records(snap, h.Name)
	if !ok || len(rrs) == 0 || rrs[0].Header().Rrtype != dns.TypeSOA || rrs[0].Header().Name != h.Name || rrs[0].(*dns.SOA).Serial != h.Serial {
		t.Fatalf("Records does not start with the SOA of %v: %v", h, rrs[:min(1, len(rrs))])
	}
	if again, _ := s.Records(snap, h.Name); !slices.EqualFunc(rrs, again, func(a, b dns.RR) bool { return a.String() == b.String() }) {
		t.Error("Records is not stable")
	}
	type key struct {
		name string
		typ  uint16
	}
	sets := map[key][]string{}
	nodes := map[string][]string{}
	asked := map[string]string{} // lowercased name → name as Records has it
	var order []string
	for _, rr := range rrs {
		h := rr.Header()
		k := key{strings.ToLower(h.Name), h.Rrtype}
		sets[k] = append(sets[k], rr.String())
		if _, ok := nodes[k.name]; !ok {
			order = append(order, h.Name)
			asked[k.name] = h.Name
		}
		nodes[k.name] = append(nodes[k.name], rr.String())
	}
	for i := 2; i < len(order); i++ { // canonical order after the apex
		if a, b := labelsOf(t, order[i-1]), labelsOf(t, order[i]); compareNames(a, b) >= 0 {
			t.Errorf("%s sorts before %s", order[i-1], order[i])
		}
	}
	ask := func(name string, qtype uint16) []string {
		r := new(dns.Msg)
		r.SetQuestion(name, qtype)
		m := s.respond(r, true)
		if m.Rcode != dns.RcodeSuccess || !m.Authoritative {
			t.Errorf("%s %s: rcode %s aa %v", name, dns.TypeToString[qtype], dns.RcodeToString[m.Rcode], m.Authoritative)
		}
		var got []string
		for _, rr := range m.Answer {
			got = append(got, rr.String())
		}
		slices.Sort(got)
		return got
	}
	for k, want := range sets {
		slices.Sort(want)
		if got := ask(asked[k.name], k.typ); !slices.Equal(got, want) {
			t.Errorf("%s %s:\n%s\nRecords has:\n%s", k.name, dns.TypeToString[k.typ], strings.Join(got, "\n"), strings.Join(want, "\n"))
		}
	}
	for name, want := range nodes {
		slices.Sort(want)
		if got := ask(asked[name], dns.TypeANY); !slices.Equal(got, want) {
			t.Errorf("%s ANY:\n%s\nRecords has:\n%s", name, strings.Join(got, "\n"), strings.Join(want, "\n"))
		}
	}
}

func labelsOf(t *testing.T, name string) []string {
	l, ok := rawLabels(name)
	if !ok {
		t.Fatalf("bad name %q", name)
	}
	return l
}

// TestEscaping checks that names built from raw labels read back the same
// way miekg/dns reads them from the wire.
func TestEscaping(t *testing.T) {
	for _, raw := range []string{"plain", "My Printer", "a.b", `back\slash`, `quo"te`, "semi;colon", "at@(x)", "caf\u00e9", "tab\there", "'"} {
		name := EscapeLabel(raw) + ".svc.internal."
		labels, ok := rawLabels(name)
		if !ok || len(labels) != 3 || labels[0] != raw {
			t.Errorf("%q: escaped %q reads back as %q", raw, name, labels)
			continue
		}
		buf := make([]byte, 256)
		n, err := dns.PackDomainName(name, buf, 0, nil, false)
		if err != nil {
			t.Fatal(err)
		}
		back, _, err := dns.UnpackDomainName(buf[:n], 0)
		if err != nil || back != name {
			t.Errorf("%q: miekg presents %q, we build %q", raw, back, name)
		}
	}
	txt := &dns.TXT{Hdr: dns.RR_Header{Name: ".", Rrtype: dns.TypeTXT, Class: dns.ClassINET}, Txt: []string{EscapeString("k=a \"b\" \\ caf\u00e9\x01")}}
	buf := make([]byte, 512)
	n, err := dns.PackRR(txt, buf, 0, nil, false)
	if err != nil {
		t.Fatal(err)
	}
	back, _, err := dns.UnpackRR(buf[:n], 0)
	if err != nil || back.(*dns.TXT).Txt[0] != txt.Txt[0] {
		t.Errorf("TXT %q reads back as %v (%v)", txt.Txt[0], back, err)
	}
}

// TestParseReverse: a reverse name is the network its address labels
// name and the labels left of them; reverseName writes a network back.
func TestParseReverse(t *testing.T) {
	for name, want := range map[string]string{
		"1.0.0.127.in-addr.arpa.":                "127.0.0.1/32",
		"1.0.0.127.IN-ADDR.ARPA.":                "127.0.0.1/32",
		"01.0.0.127.in-addr.arpa.":               "127.0.0.0/24 01",
		"256.0.0.127.in-addr.arpa.":              "127.0.0.0/24 256",
		"0.0.127.in-addr.arpa.":                  "127.0.0.0/24",
		"5.1.0.0.127.in-addr.arpa.":              "127.0.0.1/32 5",
		"b._dns-sd._udp.0.0.0.127.in-addr.arpa.": "127.0.0.0/32 b._dns-sd._udp",
		"in-addr.arpa.":                          "0.0.0.0/0",
		"1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa.": "2001:db8::1/128",
		"1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.B.D.0.1.0.0.2.ip6.arpa.": "2001:db8::1/128",
		"10.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa.":  "2001:db8::/120 10",
		"g.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa.": "2001:db8::/124 g",
		"8.b.d.0.1.0.0.2.ip6.arpa.":       "2001:db8::/32",
		"arpa.":                           "",
		"svc.internal.":                   "",
		"1.0.0.127.in-addr.arpa.example.": "",
	} {
		n, ok := parseReverse(name)
		got := ""
		if ok {
			got = n.net.String()
			if len(n.rest) > 0 {
				got += " " + strings.Join(n.rest, ".")
			}
		}
		if got != want {
			t.Errorf("%s: %q, want %q", name, got, want)
		}
		if ok && len(n.rest) == 0 && !strings.EqualFold(reverseName(n.net), name) {
			t.Errorf("reverseName(%s) = %s, want %s", n.net, reverseName(n.net), name)
		}
	}
}

// TestChangesVisible: every answer comes from a fresh snapshot, so a
// change shows in the next query, with the serial bumped.
func TestChangesVisible(t *testing.T) {
	s := testServer(t)
	ask := func(name string, qtype uint16) *dns.Msg {
		r := new(dns.Msg)
		r.SetQuestion(name, qtype)
		return s.respond(r, false)
	}
	serial := func(m *dns.Msg) uint32 {
		for _, rr := range append(m.Answer, m.Ns...) {
			if soa, ok := rr.(*dns.SOA); ok {
				return soa.Serial
			}
		}
		t.Fatalf("no SOA in %v", m)
		return 0
	}
	before := serial(ask("svc.internal.", dns.TypeSOA))
	id, err := s.reg.Register(registry.Instance{Service: "ftp", Host: "a", Port: 2121}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if m := ask("_ftp._tcp.svc.internal.", dns.TypeSRV); len(m.Answer) != 1 {
		t.Errorf("new instance not answered: %v", m)
	}
	if after := serial(ask("svc.internal.", dns.TypeSOA)); after != before+1 {
		t.Errorf("serial %d after one change from %d", after, before)
	}
	if err := s.reg.SetHealth(id, registry.Critical); err != nil {
		t.Fatal(err)
	}
	for _, q := range []struct {
		name  string
		qtype uint16
	}{{"_ftp._tcp.svc.internal.", dns.TypeSRV}, {"_ftp._tcp.svc.internal.", dns.TypePTR}, {"ftp.svc.internal.", dns.TypeA}} {
		if m := ask(q.name, q.qtype); m.Rcode != dns.RcodeSuccess || len(m.Answer) != 0 || len(m.Ns) != 1 {
			t.Errorf("%s %s of a failing instance: want NODATA, got %v", q.name, dns.TypeToString[q.qtype], m)
		}
	}
	if err := s.reg.Deregister(id); err != nil {
		t.Fatal(err)
	}
	if m := ask("_ftp._tcp.svc.internal.", dns.TypeSRV); m.Rcode != dns.RcodeNameError {
		t.Errorf("deregistered type: want NXDOMAIN, got %v", m)
	}
}
