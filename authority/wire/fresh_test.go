package wire

import (
	"bytes"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/miekg/dns"

	"github.com/annuaire/annuaire/authority/internal/authtest"
	"github.com/annuaire/annuaire/authority/zone"
	"github.com/annuaire/annuaire/internal/registrytest"
	"github.com/annuaire/annuaire/registry"
)

// staleRequests are questions over every kind of name the updates of
// TestWireCacheAcrossUpdates touch or leave alone, in two cases and two
// EDNS shapes.
func staleRequests() []*dns.Msg {
	names := []string{
		"svc.internal.", "a.svc.internal.", "b.svc.internal.", "echo.svc.internal.", "www.lab.svc.internal.",
		"lab.svc.internal.", "_tcp.svc.internal.", "_udp.svc.internal.", "_echo._tcp.svc.internal.", "_http._tcp.svc.internal.",
		`Echo\032One._echo._tcp.svc.internal.`, `My\032Web\.v2._http._tcp.svc.internal.`, "nope.svc.internal.",
		"_services._dns-sd._udp.svc.internal.", "_dns-sd._udp.svc.internal.", "_many._tcp.svc.internal.", "many.svc.internal.",
		"ns.svc.internal.", "m7.svc.internal.", "m8.svc.internal.", "1.0.0.127.in-addr.arpa.", "7.0.9.10.in-addr.arpa.",
		"70.0.9.10.in-addr.arpa.", "2.0.0.127.in-addr.arpa.",
		"late.svc.internal.", "_late._tcp.svc.internal.", "L1._late._tcp.svc.internal.", "lab2.svc.internal.",
		"x.lab2.svc.internal.", "auto.svc.internal.", "_smtp._tcp.svc.internal.", "_bulk._tcp.svc.internal.",
		"_printer._sub._http._tcp.svc.internal.", "_printer._sub._echo._tcp.svc.internal.", "_sub._echo._tcp.svc.internal.",
		// Reverse zones: apexes (their serials), addresses, the network
		// address and its browse domains, names above a zone, a network
		// that comes and goes, the IPv6 zone's empty non-terminals.
		"0.0.127.in-addr.arpa.", "0.9.10.in-addr.arpa.", "0.127.in-addr.arpa.", "53.0.0.127.in-addr.arpa.",
		"54.0.0.127.in-addr.arpa.", "0.0.0.127.in-addr.arpa.", "b._dns-sd._udp.0.0.0.127.in-addr.arpa.",
		"50.2.0.192.in-addr.arpa.", "2.0.192.in-addr.arpa.", "0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.ip6.arpa.",
		"2.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa.", "0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa.",
		"0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa.",
		"b._dns-sd._udp.svc.internal.", "lb._dns-sd._udp.svc.internal.",
	}
	types := []uint16{dns.TypeA, dns.TypeAAAA, dns.TypeSRV, dns.TypeTXT, dns.TypeSOA, dns.TypeNS, dns.TypeMX, dns.TypePTR, dns.TypeANY}
	var reqs []*dns.Msg
	for _, n := range names {
		for _, t := range types {
			for _, upper := range []bool{false, true} {
				for _, edns := range []bool{false, true} {
					r := new(dns.Msg)
					r.SetQuestion(dns.CanonicalName(n), t)
					if upper {
						r.Question[0].Name = authtest.Upper(n)
					}
					if edns {
						r.SetEdns0(4096, true)
					}
					reqs = append(reqs, r)
				}
			}
		}
	}
	return reqs
}

// TestWireCacheAcrossUpdates: after each of a series of registry changes,
// every answer the cache gives — carried over from an earlier snapshot or
// built again — is byte for byte the full path's from the newest snapshot;
// and answers the change did not touch are carried over, not rebuilt.
func TestWireCacheAcrossUpdates(t *testing.T) {
	s := testServer(t)
	reg := s.reg
	put := func(insts ...registry.Instance) func(*registry.Tx) error {
		return func(tx *registry.Tx) error {
			for _, i := range insts {
				if _, err := tx.PutInstance(i); err != nil {
					return err
				}
			}
			return nil
		}
	}
	host := func(name string, a ...string) func(*registry.Tx) error {
		return func(tx *registry.Tx) error { return tx.PutHost(registry.Host{Name: name, Addrs: authtest.Addrs(a...)}) }
	}
	steps := []struct {
		name string
		fn   func(*registry.Tx) error
		// kept is a question the change does not touch: its entry must
		// survive; touched is one it does: its entry must be rebuilt.
		kept, touched string
	}{
		{"new service", put(registry.Instance{ID: "late", Service: "late", Proto: "tcp", Host: "a", Port: 99, Label: "L1"}),
			"www.lab.svc.internal. A", "_late._tcp.svc.internal. SRV"},
		{"instance on a host with an address", put(registry.Instance{ID: "e7", Service: "echo", Proto: "tcp", Host: "m7", Port: 7}),
			"_http._tcp.svc.internal. SRV", "_echo._tcp.svc.internal. SRV"},
		{"host address changes", host("m7", "10.9.0.70"),
			"_http._tcp.svc.internal. SRV", "echo.svc.internal. A"},
		{"health withdraws an instance", func(tx *registry.Tx) error {
			for inst := range tx.Instances("tcp", "echo") {
				if inst.Label == "Echo One" {
					return tx.SetHealth(inst.ID, registry.Critical)
				}
			}
			return fmt.Errorf("no Echo One")
		}, "www.lab.svc.internal. A", `echo\032one._echo._tcp.svc.internal. SRV`},
		{"host deleted", func(tx *registry.Tx) error { return tx.DeleteHost("b") },
			"www.lab.svc.internal. A", "_http._tcp.svc.internal. SRV"},
		{"host back", host("b", "127.0.0.2", "2001:db8::2"), "www.lab.svc.internal. A", "svc.internal. MX"},
		{"new empty non-terminal", host("x.lab2", "192.0.2.50"), "_http._tcp.svc.internal. SRV", "lab2.svc.internal. A"},
		{"reverse zone of a new address", host("x.lab2", "192.0.2.50", "10.9.0.99"), "0.0.127.in-addr.arpa. SOA", "0.9.10.in-addr.arpa. SOA"},
		{"reverse name of a new address", host("m7", "10.9.0.70", "127.0.0.54"), "2.0.192.in-addr.arpa. SOA", "54.0.0.127.in-addr.arpa. PTR"},
		{"empty non-terminal gone", func(tx *registry.Tx) error { return tx.DeleteHost("x.lab2") },
			"_http._tcp.svc.internal. SRV", "lab2.svc.internal. A"},
		{"reverse zone gone", func(tx *registry.Tx) error { return tx.DeleteHost("echo") },
			"0.0.127.in-addr.arpa. SOA", "2.0.192.in-addr.arpa. SOA"},
		{"name server moves", host("ns", "127.0.0.54"), "_http._tcp.svc.internal. SRV", "svc.internal. NS"},
		{"mail on another host", put(registry.Instance{ID: "smtp2", Service: "smtp", Proto: "tcp", Host: "a", Port: 25, Priority: 5}),
			"www.lab.svc.internal. A", "svc.internal. MX"},
		{"TXT changes", func(tx *registry.Tx) error {
			for inst := range tx.Instances("tcp", "http") {
				i := *inst
				i.TXT = registry.TXT{"path=/v3"}
				_, err := tx.PutInstance(i)
				return err
			}
			return fmt.Errorf("no http")
		}, "_echo._tcp.svc.internal. SRV", `my\032web\.v2._http._tcp.svc.internal. TXT`},
		// A subtype (RFC 6763 section 7.1) is an answer shape the cache has
		// no code for: what its lookup read keeps it fresh.
		{"subtype added", func(tx *registry.Tx) error {
			for inst := range tx.Instances("tcp", "http") {
				i := *inst
				i.Subtypes = []string{"_printer"}
				_, err := tx.PutInstance(i)
				return err
			}
			return fmt.Errorf("no http")
		}, "_echo._tcp.svc.internal. SRV", "_printer._sub._http._tcp.svc.internal. PTR"},
		{"subtype on another type", func(tx *registry.Tx) error {
			_, err := tx.PutInstance(registry.Instance{ID: "e8", Service: "echo", Proto: "tcp", Host: "m7", Port: 8, Subtypes: []string{"_printer"}})
			return err
		}, "_printer._sub._http._tcp.svc.internal. PTR", "_printer._sub._echo._tcp.svc.internal. PTR"},
		{"subtype gone", func(tx *registry.Tx) error {
			inst, _ := tx.Instance("e8")
			i := *inst
			i.Subtypes = nil
			_, err := tx.PutInstance(i)
			return err
		}, "_printer._sub._http._tcp.svc.internal. PTR", "_sub._echo._tcp.svc.internal. PTR"},
		{"type gone", func(tx *registry.Tx) error { return tx.DeleteInstance("late") },
			"www.lab.svc.internal. A", "_services._dns-sd._udp.svc.internal. PTR"},
		{"host named like a former service", host("late", "192.0.2.88"), "_echo._tcp.svc.internal. SRV", "late.svc.internal. A"},
		{"bulk: everything stale", func(tx *registry.Tx) error {
			for i := range 5000 {
				if _, err := tx.PutInstance(registry.Instance{Service: "bulk", Proto: "tcp", Host: "m8", Port: uint16(10000 + i)}); err != nil {
					return err
				}
			}
			return nil
		}, "", "www.lab.svc.internal. A"},
	}

	out := make([]byte, dns.MaxMsgSize)
	reqs := staleRequests()
	// check asks every request over both transports and compares.
	check := func(step string) {
		t.Helper()
		for _, tcp := range []bool{false, true} {
			for _, r := range reqs {
				for range 2 { // as it is, then as a hit
					wireMatches(t, s, r, tcp, out, "after "+step)
				}
			}
		}
	}
	// cached returns the UDP, no-EDNS entry of "name TYPE", as cached.
	cached := func(q string) *entry {
		var name, typ string
		fmt.Sscan(q, &name, &typ)
		r := new(dns.Msg)
		r.SetQuestion(name, dns.StringToType[typ])
		req, _ := r.Pack()
		wq, ok := parse(req, false)
		if !ok {
			t.Fatalf("%s: not a plain query", q)
		}
		var kb [maxKey]byte
		return s.get(wq.key(&kb, false))
	}

	check("start")
	for _, st := range steps {
		var kept, touched *entry
		if st.kept != "" {
			kept = cached(st.kept)
		}
		touched = cached(st.touched)
		if _, err := reg.Update(st.fn); err != nil {
			t.Fatalf("%s: %v", st.name, err)
		}
		check(st.name)
		if kept != nil && cached(st.kept) != kept {
			t.Errorf("%s: the answer to %s was rebuilt; the change does not touch it", st.name, st.kept)
		}
		if touched == nil || cached(st.touched) == touched {
			t.Errorf("%s: the answer to %s was not rebuilt", st.name, st.touched)
		}
	}
}

// TestWireCacheHistoryGap: an answer validated further back than the
// view remembers is rebuilt, never trusted.
func TestWireCacheHistoryGap(t *testing.T) {
	s := testServer(t)
	r := new(dns.Msg)
	r.SetQuestion("_echo._tcp.svc.internal.", dns.TypeSRV)
	req, _ := r.Pack()
	out := make([]byte, 4096)
	s.Answer(req, out, false)
	// A change that touches the answer, then more than the view
	// remembers that do not.
	if _, err := s.reg.Update(func(tx *registry.Tx) error { return tx.DeleteHost("a") }); err != nil {
		t.Fatal(err)
	}
	for i := range keptGens + 10 {
		if _, err := s.reg.Update(func(tx *registry.Tx) error {
			return tx.PutHost(registry.Host{Name: fmt.Sprintf("g%d", i), Addrs: authtest.Addrs("192.0.2.1")})
		}); err != nil {
			t.Fatal(err)
		}
		s.view(s.reg.Snapshot()) // the cache sees every snapshot, and remembers keptGens
	}
	n := s.Answer(req, out, false)
	want, _ := s.respond(r.Copy(), false).Pack()
	if !bytes.Equal(out[:n], want) {
		t.Fatal("stale answer after a gap")
	}
}

// BenchmarkWireAfterUpdate: one op is a registration (an instance of a
// service the mix does not ask about, on one of its hosts, registered or
// withdrawn in turn) followed by the mix's 81 questions, each once. It
// reports how many of the mix's answers each update made the cache
// rebuild: when every answer lived and died with its snapshot, all 81.
func BenchmarkWireAfterUpdate(b *testing.B) {
	for _, n := range []int{100, 100000} {
		b.Run(fmt.Sprintf("instances=%d", n), func(b *testing.B) {
			s := newServer(authtest.Bench(b, n))
			// the mix's questions without its repeats in a row: 100
			// requests, 81 distinct
			mix := slices.CompactFunc(authtest.BenchMix(b), bytes.Equal)
			out := make([]byte, zone.MaxUDPSize)
			pass := func() {
				for _, req := range mix {
					if k := s.Answer(req, out, false); k == 0 {
						b.Fatal("not answered")
					}
				}
			}
			i := 0
			update := func() {
				var err error
				if i%2 == 0 {
					_, err = s.reg.Register(registry.Instance{ID: "churn", Service: "churn", Proto: "tcp", Host: "h1", Port: 9}, nil)
				} else {
					err = s.reg.Deregister("churn")
				}
				if err != nil {
					b.Fatal(err)
				}
				i++
			}
			pass()
			c := s.Cache
			entries := func() map[*entry]bool {
				m := make(map[*entry]bool)
				t := c.tab.Load()
				for i := range t.slots {
					if e := t.slots[i].Load(); e != nil {
						m[e] = true
					}
				}
				return m
			}
			rebuilt, updates := 0, 0
			for range 20 {
				before := entries()
				update()
				pass()
				for e := range entries() {
					if !before[e] {
						rebuilt++
					}
				}
				updates++
			}
			b.ResetTimer()
			for b.Loop() {
				update()
				pass()
			}
			b.ReportMetric(float64(rebuilt)/float64(updates), "rebuilt/update")
		})
	}
}

// TestWireCacheConcurrentUpdates: readers answering from the cache while
// updates stream in never see half of an update. Each update moves both
// instances of _pair._tcp to a new port in one transaction, so every
// answer must show one port twice.
func TestWireCacheConcurrentUpdates(t *testing.T) {
	s := testServer(t)
	move := func(port uint16) error {
		_, err := s.reg.Update(func(tx *registry.Tx) error {
			for _, id := range []string{"p1", "p2"} {
				if _, err := tx.PutInstance(registry.Instance{ID: id, Service: "pair", Proto: "tcp", Host: "a", Port: port, Label: id}); err != nil {
					return err
				}
			}
			return nil
		})
		return err
	}
	if err := move(1); err != nil {
		t.Fatal(err)
	}
	r := new(dns.Msg)
	r.SetQuestion("_pair._tcp.svc.internal.", dns.TypeSRV)
	req, _ := r.Pack()
	// Other questions, asked in between, keep the cache busy.
	var others [][]byte
	for _, o := range staleRequests() {
		b, _ := o.Pack()
		others = append(others, b)
	}
	done := make(chan struct{})
	errs := make(chan error, 4)
	for w := range 4 {
		go func() {
			out := make([]byte, dns.MaxMsgSize)
			for i := 0; ; i++ {
				select {
				case <-done:
					errs <- nil
					return
				default:
				}
				s.Answer(others[(i*4+w)%len(others)], out, false)
				n := s.Answer(req, out, w%2 == 1)
				m := new(dns.Msg)
				if err := m.Unpack(out[:n]); err != nil || len(m.Answer) != 2 {
					errs <- fmt.Errorf("answer %v: %v", m, err)
					return
				}
				if a, b := m.Answer[0].(*dns.SRV).Port, m.Answer[1].(*dns.SRV).Port; a != b {
					errs <- fmt.Errorf("half an update: ports %d and %d", a, b)
					return
				}
			}
		}()
	}
	for port := uint16(2); port < 300; port++ {
		if err := move(port); err != nil {
			t.Fatal(err)
		}
	}
	close(done)
	for range 4 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
}

// FuzzWireCache checks the cache against the full path across registry
// changes of every kind. An input is a request (raw bytes, as a client may
// send anything) and a program of changes (registrytest.Apply: instances
// put, changed, deleted and their health set, hosts of one or more labels
// and addresses of both families put and deleted, TXT changed, several
// changes per update). The request and a panel of questions over every
// name the changes use are asked before the first update and after each:
// whatever the cache answers, carried over or built again, must be byte
// for byte what the full path answers from the newest snapshot. Each input
// starts from the same registry, so that a saved input replays alone.
// Seeds are in testdata/fuzz/FuzzWireCache.
func FuzzWireCache(f *testing.F) {
	const P, D, H, Ph, Dh, Ch, C = registrytest.OpPutInstance, registrytest.OpDeleteInstance, registrytest.OpSetHealth,
		registrytest.OpPutHost, registrytest.OpDeleteHost, registrytest.OpChangeInstance, registrytest.OpCommit
	programs := [][]byte{
		{P, 0, 0, 0, 0, 1, 1, 0, 0, 0, 0, 0, C, D, 0},                             // an instance of echo on a, then gone
		{Ph, 1, 2, 1, 3, 0, 0, C, Dh, 1},                                          // b moves to ::1 and 2001:db8::2, then goes
		{H, 3, 1, C, Ch, 3, 0, 2, C, Ch, 5, 3, 4},                                 // health, TXT, host of existing instances
		{Ph, 5, 1, 4, 0, 0, P, 3, 0, 5, 2, 2, 0, 0, 0, 0, 1},                      // a host below lab2; late on it
		{P, 2, 0, 1, 1, 0, 0, 0, 0, 0, 0, 0, Ch, 9, 4, 5},                         // mail on b, relabelled
		{Ph, 8, 1, 4, 1, 1, C, Ch, 40, 1, 2},                                      // m7 moves; an instance of many changes port
		{Ch, 0, 6, 1, C, Ch, 0, 6, 2, C, Ch, 0, 6, 3, C, H, 0, 1, C, Ch, 0, 6, 0}, // subtypes come, grow, change case, fail, go
	}
	for i, r := range staleRequests() {
		if i%7 == 0 {
			b, _ := r.Pack()
			f.Add(b, programs[i/7%len(programs)])
		}
	}
	panel := panelRequests()
	out := make([]byte, dns.MaxMsgSize)
	f.Fuzz(func(t *testing.T, req, program []byte) {
		s := testServer(t)
		// check asks the panel over UDP, and req over both transports
		// twice: as it is, then as a hit.
		check := func(when string) {
			for _, q := range panel {
				fuzzMatches(t, s, q, false, out, when)
			}
			for range 2 {
				for _, tcp := range []bool{false, true} {
					fuzzMatches(t, s, req, tcp, out, when)
				}
			}
		}
		check("at start")
		// At most maxUpdates updates: an input stays quick to run.
		const maxUpdates = 8
		for n := 1; len(program) > 0 && n <= maxUpdates; n++ {
			if _, err := s.reg.Update(func(tx *registry.Tx) (err error) {
				program, err = registrytest.Apply(tx, program)
				return err
			}); err != nil {
				t.Fatal(err)
			}
			check(fmt.Sprintf("after update %d", n))
		}
	})
}

// fuzzMatches is wireMatches for raw bytes, which may not be a request.
func fuzzMatches(t *testing.T, s server, req []byte, tcp bool, out []byte, when string) {
	t.Helper()
	k := s.Answer(req, out, tcp)
	if k == 0 {
		return
	}
	r := new(dns.Msg)
	if err := r.Unpack(req); err != nil {
		t.Fatalf("%s: answered a request that does not unpack: %v", when, err)
	}
	full := s.respond(r, tcp)
	if trailing(req) {
		full = zone.ErrorReply(r, tcp, dns.RcodeFormatError)
	}
	want, err := full.Pack()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(out[:k], want) {
		got, wm := new(dns.Msg), new(dns.Msg)
		got.Unpack(out[:k])
		wm.Unpack(want)
		t.Fatalf("%s, tcp=%v: cached answer differs from the full path's\ngot %x\n%v\nwant %x\n%v", when, tcp, out[:k], got, want, wm)
	}
}

// panelRequests are questions over every name registrytest's changes
// make, move or remove, each of the types its answers may hold, packed,
// with EDNS so that most answers fit.
func panelRequests() [][]byte {
	type q struct {
		name  string
		types []uint16
	}
	addrs := []uint16{dns.TypeA, dns.TypeAAAA, dns.TypeANY}
	qs := []q{
		{"", []uint16{dns.TypeSOA, dns.TypeNS, dns.TypeMX}},
		{"_services._dns-sd._udp", []uint16{dns.TypePTR}},
		{"_dns-sd._udp", []uint16{dns.TypePTR}},
		{"_tcp", []uint16{dns.TypeA}},
		{"_udp", []uint16{dns.TypeA}},
		{"lab2", addrs},
		{"x", addrs},
	}
	for _, h := range registrytest.Hosts {
		qs = append(qs, q{h, addrs})
	}
	for _, svc := range registrytest.Services {
		qs = append(qs, q{svc, addrs})
		for _, proto := range []string{"_tcp", "_udp"} {
			typ := "_" + svc + "." + proto
			qs = append(qs, q{typ, []uint16{dns.TypeSRV, dns.TypePTR}})
			for _, l := range registrytest.Labels {
				if l != "" {
					qs = append(qs, q{escapeLabel(l) + "." + typ, []uint16{dns.TypeSRV, dns.TypeTXT}})
				}
			}
			qs = append(qs, q{"_sub." + typ, []uint16{dns.TypePTR}})
			for _, st := range []string{"_printer", "_scan", "_sub", "_fax"} {
				qs = append(qs, q{st + "._sub." + typ, []uint16{dns.TypePTR, dns.TypeANY}})
			}
		}
	}
	var out [][]byte
	for _, q := range qs {
		name := authtest.Zone
		if q.name != "" {
			name = q.name + "." + authtest.Zone
		}
		for _, t := range q.types {
			r := new(dns.Msg)
			r.SetQuestion(name, t)
			r.SetEdns0(zone.MaxUDPSize, false)
			b, err := r.Pack()
			if err != nil {
				panic(err)
			}
			out = append(out, b)
		}
	}
	// The reverse zones of every address the changes use: each address,
	// a neighbour without a name, the zone's apex (its serial moves only
	// with its addresses), the network address and its browse domains,
	// and names above the zone and, for IPv6, between apex and address.
	ask := func(name string, types ...uint16) {
		for _, t := range types {
			r := new(dns.Msg)
			r.SetQuestion(name, t)
			r.SetEdns0(zone.MaxUDPSize, false)
			b, _ := r.Pack()
			out = append(out, b)
		}
	}
	for _, b := range []string{"b", "lb", "dr", "x"} {
		ask(b+"._dns-sd._udp."+authtest.Zone, dns.TypePTR)
	}
	for _, a := range registrytest.Addrs {
		rev, _ := dns.ReverseAddr(a.String())
		ask(rev, dns.TypePTR, dns.TypeANY)
		neighbour, _ := dns.ReverseAddr(a.Next().String())
		ask(neighbour, dns.TypePTR)
		labels := dns.SplitDomainName(rev)
		cut := 1 // the /24
		if a.Is6() {
			cut = 16 // the /64
		}
		apex := dns.Fqdn(strings.Join(labels[cut:], "."))
		ask(apex, dns.TypeSOA, dns.TypeNS, dns.TypeANY)
		ask(dns.Fqdn(strings.Join(labels[cut+1:], ".")), dns.TypeSOA) // above the zone
		if a.Is6() {
			ask(dns.Fqdn(strings.Join(labels[cut-3:], ".")), dns.TypePTR)
		}
		netAddr, _ := dns.ReverseAddr(registry.ReverseNet(a).Addr().String())
		ask(netAddr, dns.TypePTR)
		ask("b._dns-sd._udp."+netAddr, dns.TypePTR)
	}
	return out
}

// escapeLabel writes a label as presentation text: spaces and dots
// escaped.
func escapeLabel(l string) string {
	return strings.NewReplacer(" ", `\ `, ".", `\.`).Replace(l)
}
