package transfer_test

import (
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/annuaire/annuaire/authority"
	"github.com/annuaire/annuaire/authority/internal/authtest"
	"github.com/annuaire/annuaire/authority/transfer"
	"github.com/annuaire/annuaire/authority/tsig"
	"github.com/annuaire/annuaire/authority/zone"
	"github.com/annuaire/annuaire/internal/testenv"
	"github.com/annuaire/annuaire/registry"
)

// xfrKey is the TSIG key of the transfer tests; its secret is base64.
var xfrKey = tsig.Key{Algorithm: dns.HmacSHA256, Name: "xfr.", Secret: "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LXNlY3JldA=="}

// startXfr serves s on loopback, UDP and TCP on one port, and returns
// HOST:PORT. It stops with the test.
func startXfr(t testing.TB, s *authority.Server) string {
	t.Helper()
	if s.Logger == nil {
		s.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	return authtest.Start(t, s)
}

// records is the zone of a server with the default zone, as AXFR sends it.
func records(snap *registry.Snapshot) []dns.RR {
	rrs, _ := zone.New(zone.Config{}).Records(snap, registry.DefaultZone)
	return rrs
}

func xfrRegister(t testing.TB, reg *registry.Registry, service string, port uint16, host string, addr string) string {
	t.Helper()
	var id string
	_, err := reg.Update(func(tx *registry.Tx) (err error) {
		id, err = tx.Register(registry.Registration{Service: service, Host: host, Port: new(int(port)), Addresses: []netip.Addr{netip.MustParseAddr(addr)}})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// xfr runs a transfer of type qtype (with serial in the authority section
// for IXFR) and returns every record received.
func xfr(t testing.TB, addr string, qtype uint16, serial uint32, key *tsig.Key) ([]dns.RR, error) {
	t.Helper()
	m := new(dns.Msg)
	tr := new(dns.Transfer)
	if qtype == dns.TypeIXFR {
		m.SetIxfr("svc.internal.", serial, "ns.svc.internal.", "hostmaster.svc.internal.")
	} else {
		m.SetAxfr("svc.internal.")
	}
	if key != nil {
		m.SetTsig(key.Name, dns.HmacSHA256, 300, 0)
		tr.TsigSecret = map[string]string{key.Name: key.Secret}
	}
	ch, err := tr.In(m, addr)
	if err != nil {
		return nil, err
	}
	var rrs []dns.RR
	for env := range ch {
		if env.Error != nil {
			return rrs, env.Error
		}
		rrs = append(rrs, env.RR...)
	}
	return rrs, nil
}

func xfrStrings(rrs []dns.RR) []string {
	out := make([]string, len(rrs))
	for i, rr := range rrs {
		out[i] = rr.String()
	}
	slices.Sort(out)
	return out
}

func TestAXFR(t *testing.T) {
	reg := registry.New(1)
	xfrRegister(t, reg, "echo", 7007, "host", "127.0.0.1")
	s := &authority.Server{Registry: reg, Keys: []tsig.Key{xfrKey}}
	addr := startXfr(t, s)

	t.Run("OK", func(t *testing.T) {
		rrs, err := xfr(t, addr, dns.TypeAXFR, 0, &xfrKey)
		if err != nil {
			t.Fatal(err)
		}
		want := records(reg.Snapshot())
		if rrs[0].Header().Rrtype != dns.TypeSOA || rrs[len(rrs)-1].String() != rrs[0].String() {
			t.Fatalf("AXFR must start and end with the SOA: %v", rrs)
		}
		if got := xfrStrings(rrs[:len(rrs)-1]); !slices.Equal(got, xfrStrings(want)) {
			t.Errorf("AXFR = %q\nwant %q", got, xfrStrings(want))
		}
	})
	t.Run("ErrNoKey", func(t *testing.T) {
		_, err := xfr(t, addr, dns.TypeAXFR, 0, nil)
		if err == nil || !strings.Contains(err.Error(), "REFUSED") && !strings.Contains(err.Error(), "5") {
			t.Fatalf("AXFR without key: err = %v, want REFUSED", err)
		}
	})
	t.Run("ErrBadSecret", func(t *testing.T) {
		bad := tsig.Key{Name: xfrKey.Name, Secret: "d3Jvbmctc2VjcmV0"}
		if _, err := xfr(t, addr, dns.TypeAXFR, 0, &bad); err == nil {
			t.Fatal("AXFR with a wrong secret succeeded")
		}
	})
	t.Run("ErrUDP", func(t *testing.T) {
		m := new(dns.Msg)
		m.SetAxfr("svc.internal.")
		m.SetTsig(xfrKey.Name, dns.HmacSHA256, 300, 0)
		c := &dns.Client{TsigSecret: map[string]string{xfrKey.Name: xfrKey.Secret}}
		r, _, err := c.Exchange(m, addr)
		if err != nil {
			t.Fatal(err)
		}
		if r.Rcode != dns.RcodeFormatError || len(r.Answer) != 0 {
			t.Errorf("AXFR over UDP: rcode %s, %d answers; want FORMERR", dns.RcodeToString[r.Rcode], len(r.Answer))
		}
	})
	t.Run("ErrOtherZone", func(t *testing.T) {
		m := new(dns.Msg)
		m.SetAxfr("example.")
		tr := &dns.Transfer{}
		ch, err := tr.In(m, addr)
		if err != nil {
			t.Fatal(err)
		}
		env := <-ch
		if env.Error == nil {
			t.Fatal("AXFR of another zone succeeded")
		}
	})
}

func TestAXFRAllowTransfer(t *testing.T) {
	reg := registry.New(1)
	xfrRegister(t, reg, "echo", 7007, "host", "127.0.0.1")
	s := &authority.Server{Registry: reg, AllowTransfer: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}}
	addr := startXfr(t, s)
	if _, err := xfr(t, addr, dns.TypeAXFR, 0, nil); err != nil {
		t.Fatalf("AXFR from an allowed network: %v", err)
	}
	s2 := &authority.Server{Registry: reg, AllowTransfer: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}}
	if _, err := xfr(t, startXfr(t, s2), dns.TypeAXFR, 0, nil); err == nil {
		t.Fatal("AXFR from a network not allowed succeeded")
	}
}

// TestAXFRLarge checks that a zone larger than one message arrives whole,
// every message signed (dns.Transfer checks each MAC).
func TestAXFRLarge(t *testing.T) {
	reg := registry.New(1)
	_, err := reg.Update(func(tx *registry.Tx) error {
		for i := range 3000 {
			host := fmt.Sprintf("h%d", i)
			if err := tx.PutHost(registry.Host{Name: host, Addrs: []netip.Addr{netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)})}}); err != nil {
				return err
			}
			if _, err := tx.PutInstance(registry.Instance{Service: "echo", Host: host, Port: 7, TTL: 10, TXT: registry.TXT{"path=" + strings.Repeat("x", 100)}}); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	s := &authority.Server{Registry: reg, Keys: []tsig.Key{xfrKey}}
	addr := startXfr(t, s)

	m := new(dns.Msg)
	m.SetAxfr("svc.internal.")
	m.SetTsig(xfrKey.Name, dns.HmacSHA256, 300, 0)
	// Rendering 3,000 instances under -race on a shared machine can take
	// longer than the default 2s before the first message: not what this
	// test is about.
	tr := &dns.Transfer{TsigSecret: map[string]string{xfrKey.Name: xfrKey.Secret}, ReadTimeout: 30 * time.Second}
	ch, err := tr.In(m, addr)
	if err != nil {
		t.Fatal(err)
	}
	var rrs []dns.RR
	msgs := 0
	for env := range ch {
		if env.Error != nil {
			t.Fatal(env.Error)
		}
		msgs++
		rrs = append(rrs, env.RR...)
	}
	want := records(reg.Snapshot())
	if len(rrs) != len(want)+1 {
		t.Errorf("got %d records, want %d", len(rrs), len(want)+1)
	}
	if msgs < 2 {
		t.Errorf("zone of %d records came in %d message(s)", len(rrs), msgs)
	}
}

// applyIXFR applies an IXFR answer to zone (without its SOA), as a
// secondary does, and returns the new zone without its SOA. An answer in
// AXFR form replaces the zone.
func applyIXFR(t testing.TB, zone, ixfr []dns.RR) []dns.RR {
	t.Helper()
	if len(ixfr) < 2 {
		t.Fatalf("IXFR answer of %d records", len(ixfr))
	}
	last := ixfr[0].(*dns.SOA).Serial
	if _, ok := ixfr[1].(*dns.SOA); !ok {
		return ixfr[1 : len(ixfr)-1] // AXFR form
	}
	set := map[string]dns.RR{}
	for _, rr := range zone {
		set[rr.String()] = rr
	}
	body := ixfr[1 : len(ixfr)-1]
	deleting := false
	for _, rr := range body {
		if soa, ok := rr.(*dns.SOA); ok {
			deleting = !deleting
			if !deleting && soa.Serial > last {
				t.Fatalf("sequence to serial %d beyond %d", soa.Serial, last)
			}
			continue
		}
		k := rr.String()
		if deleting {
			if _, ok := set[k]; !ok {
				t.Errorf("IXFR deletes %q, not in the zone", k)
			}
			delete(set, k)
		} else {
			if _, ok := set[k]; ok {
				t.Errorf("IXFR adds %q, already in the zone", k)
			}
			set[k] = rr
		}
	}
	out := make([]dns.RR, 0, len(set))
	for _, rr := range set {
		out = append(out, rr)
	}
	return out
}

func TestIXFR(t *testing.T) {
	reg := registry.New(41)
	echo := xfrRegister(t, reg, "echo", 7007, "host", "127.0.0.1")
	s := &authority.Server{Registry: reg, Keys: []tsig.Key{xfrKey}}
	addr := startXfr(t, s)

	axfr, err := xfr(t, addr, dns.TypeAXFR, 0, &xfrKey)
	if err != nil {
		t.Fatal(err)
	}
	old := axfr[0].(*dns.SOA).Serial
	zone := axfr[1 : len(axfr)-1]

	t.Run("UpToDate", func(t *testing.T) {
		rrs, err := xfr(t, addr, dns.TypeIXFR, old, &xfrKey)
		if err != nil {
			t.Fatal(err)
		}
		if len(rrs) != 1 || rrs[0].(*dns.SOA).Serial != old {
			t.Fatalf("IXFR from the current serial = %v, want its SOA alone", rrs)
		}
	})

	// Several kinds of change: a new service, a new host, a health change,
	// a deregistration that takes its automatic host away.
	xfrRegister(t, reg, "http", 8080, "web", "127.0.0.2")
	xfrRegister(t, reg, "echo", 7008, "host2", "::1")
	if err := reg.SetHealth(echo, registry.Critical); err != nil {
		t.Fatal(err)
	}
	if err := reg.Deregister(echo); err != nil {
		t.Fatal(err)
	}

	t.Run("Incremental", func(t *testing.T) {
		rrs, err := xfr(t, addr, dns.TypeIXFR, old, &xfrKey)
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := rrs[1].(*dns.SOA); !ok {
			t.Fatalf("IXFR from a served serial came in AXFR form: %v", rrs)
		}
		got := applyIXFR(t, zone, rrs)
		want, err := xfr(t, addr, dns.TypeAXFR, 0, &xfrKey)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(xfrStrings(got), xfrStrings(want[1:len(want)-1])) {
			t.Errorf("old zone + IXFR = %q\nAXFR = %q", xfrStrings(got), xfrStrings(want[1:len(want)-1]))
		}
	})
	t.Run("UnknownSerial", func(t *testing.T) {
		// A serial before the registry began: no history reaches it.
		rrs, err := xfr(t, addr, dns.TypeIXFR, old-1000, &xfrKey)
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := rrs[1].(*dns.SOA); ok {
			t.Fatal("IXFR from a serial never served came as differences")
		}
		if !slices.Equal(xfrStrings(rrs[:len(rrs)-1]), xfrStrings(records(reg.Snapshot()))) {
			t.Error("IXFR fallback is not the whole zone")
		}
	})
	t.Run("UDPTooBig", func(t *testing.T) {
		m := new(dns.Msg)
		m.SetIxfr("svc.internal.", old, "ns.svc.internal.", "hostmaster.svc.internal.")
		m.SetTsig(xfrKey.Name, dns.HmacSHA256, 300, 0)
		c := &dns.Client{TsigSecret: map[string]string{xfrKey.Name: xfrKey.Secret}, UDPSize: 512}
		for range 20 {
			xfrRegister(t, reg, "telnet", 2300, "a-rather-long-host-name-to-fill-the-message", "127.0.0.9")
			xfrRegister(t, reg, "telnet", 2301, "another-rather-long-host-name-to-fill-it", "127.0.0.10")
		}
		r, _, err := c.Exchange(m, addr)
		if err != nil {
			t.Fatal(err)
		}
		if len(r.Answer) != 1 || r.Answer[0].(*dns.SOA).Serial != reg.Snapshot().Serial() {
			t.Errorf("IXFR over UDP that does not fit = %v, want the current SOA alone", r.Answer)
		}
	})
}

func TestDiffRecords(t *testing.T) {
	rr := func(s string) dns.RR { r, _ := dns.NewRR(s); return r }
	old := []dns.RR{rr("a.z. 10 IN A 10.0.0.1"), rr("b.z. 10 IN A 10.0.0.2"), rr("c.z. 10 IN A 10.0.0.3")}
	cur := []dns.RR{rr("a.z. 10 IN A 10.0.0.1"), rr("b.z. 20 IN A 10.0.0.2"), rr("d.z. 10 IN A 10.0.0.4")}
	del, add := transfer.DiffRecords(old, cur)
	if got, want := xfrStrings(del), xfrStrings([]dns.RR{old[1], old[2]}); !slices.Equal(got, want) {
		t.Errorf("deleted %q, want %q", got, want)
	}
	if got, want := xfrStrings(add), xfrStrings([]dns.RR{cur[1], cur[2]}); !slices.Equal(got, want) {
		t.Errorf("added %q, want %q", got, want)
	}
}

// TestRewind checks that the zone rebuilt from the registry's history for
// every past serial is exactly the zone that was served at that serial,
// and that a server that never sent a version (after a restart) still
// answers IXFR with differences.
func TestRewind(t *testing.T) {
	reg := registry.New(1000)
	var snaps []*registry.Snapshot
	step := func(fn func(tx *registry.Tx) error) {
		t.Helper()
		snaps = append(snaps, reg.Snapshot())
		if _, err := reg.Update(fn); err != nil {
			t.Fatal(err)
		}
	}
	addr := func(s string) []netip.Addr { return []netip.Addr{netip.MustParseAddr(s)} }
	echo := registry.Instance{ID: "e1", Service: "echo", Host: "a", Port: 7, TTL: 10, TXT: registry.TXT{"v=1"}}
	step(func(tx *registry.Tx) error {
		if err := tx.PutHost(registry.Host{Name: "a", Addrs: addr("10.0.0.1"), Auto: true}); err != nil {
			return err
		}
		_, err := tx.PutInstance(echo)
		return err
	})
	step(func(tx *registry.Tx) error {
		_, err := tx.PutInstance(registry.Instance{ID: "e2", Service: "echo", Host: "a", Port: 8})
		return err
	})
	step(func(tx *registry.Tx) error { return tx.SetHealth("e1", registry.Critical) })
	step(func(tx *registry.Tx) error {
		// Moves e1 to a new host: the old automatic host stays for e2.
		if err := tx.PutHost(registry.Host{Name: "b", Addrs: addr("::2"), Auto: true}); err != nil {
			return err
		}
		moved := echo
		moved.Host, moved.TXT = "b", registry.TXT{"v=2"}
		_, err := tx.PutInstance(moved)
		return err
	})
	step(func(tx *registry.Tx) error { return tx.DeleteInstance("e2") }) // takes host a with it
	step(func(tx *registry.Tx) error {
		return tx.PutHost(registry.Host{Name: "static", Addrs: addr("10.0.0.9")})
	})
	step(func(tx *registry.Tx) error {
		return tx.PutHost(registry.Host{Name: "static", Addrs: addr("10.0.0.10"), TTL: 30})
	})
	step(func(tx *registry.Tx) error {
		_, err := tx.PutInstance(registry.Instance{ID: "m", Service: "smtp", Host: "static", Port: 25})
		return err
	})
	step(func(tx *registry.Tx) error { return tx.DeleteHost("static") })
	step(func(tx *registry.Tx) error { return tx.DeleteInstance("e1") })
	step(func(tx *registry.Tx) error {
		if err := tx.PutHost(registry.Host{Name: "a", Addrs: addr("10.0.0.3"), Auto: true}); err != nil {
			return err
		}
		_, err := tx.PutInstance(registry.Instance{ID: "e1", Service: "echo", Host: "a", Port: 7, Label: "Back again"})
		return err
	})
	cur := reg.Snapshot()
	for _, old := range snaps {
		back, ok := transfer.Rewind(cur, old.Serial())
		if !ok {
			t.Fatalf("no history back to serial %d", old.Serial())
		}
		got := transfer.WithSerial(records(back), old.Serial())
		if want := records(old); !slices.Equal(xfrStrings(got), xfrStrings(want)) {
			t.Errorf("zone rewound to serial %d =\n%q\nwant\n%q", old.Serial(), xfrStrings(got), xfrStrings(want))
		}
	}

	// Over the network, from a server that never sent the old version.
	s2 := &authority.Server{Registry: reg, Keys: []tsig.Key{xfrKey}}
	srvAddr := startXfr(t, s2)
	first := snaps[0]
	rrs, err := xfr(t, srvAddr, dns.TypeIXFR, first.Serial(), &xfrKey)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := rrs[1].(*dns.SOA); !ok {
		t.Fatal("IXFR after a restart came in AXFR form")
	}
	old := records(first)[1:]
	if got, want := xfrStrings(applyIXFR(t, old, rrs)), xfrStrings(records(cur)[1:]); !slices.Equal(got, want) {
		t.Errorf("old zone + IXFR = %q\nwant %q", got, want)
	}
}

// TestTransferLogs: every transfer a secondary may make is logged (a
// secondary of a forward and a reverse zone makes several at each
// change, and the rate limit of lines anyone can cause dropped them),
// while refused ones stay aggregated.
func TestTransferLogs(t *testing.T) {
	reg := registry.New(1)
	xfrRegister(t, reg, "echo", 7, "box", "127.0.0.1")
	logs := &testenv.LogBuffer{}
	s := &authority.Server{Registry: reg, Logger: slog.New(slog.NewTextHandler(logs, nil)),
		AllowTransfer: []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}}
	addr := startXfr(t, s)
	for range 12 {
		if _, err := xfr(t, addr, dns.TypeAXFR, 0, nil); err != nil {
			t.Fatal(err)
		}
	}
	if n := strings.Count(logs.String(), `msg="zone transfer" `); n != 12 {
		t.Errorf("12 transfers from an allowed source over TCP: %d lines\n%s", n, logs)
	}

	// The same from a source not allowed: the first few, then one line
	// that counts the rest, later.
	refused := &authority.Server{Registry: reg, Logger: slog.New(slog.NewTextHandler(logs, nil))}
	addr = startXfr(t, refused)
	for range 12 {
		xfr(t, addr, dns.TypeAXFR, 0, nil)
	}
	if n := strings.Count(logs.String(), `msg="zone transfer refused"`); n >= 12 || n == 0 {
		t.Errorf("12 refused transfers: %d lines, want a few\n%s", n, logs)
	}
}
