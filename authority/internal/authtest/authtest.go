// Package authtest holds what the DNS server's tests share: the test zone
// and its registries, servers on loopback, request sets and a recording
// dns.ResponseWriter. For tests only.
package authtest

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/annuaire/annuaire/registry"
)

// Zone is the zone of every test server.
const Zone = "svc.internal."

// Registry returns a registry holding one of everything the zone can
// say:
//
//	ns       127.0.0.53                   the NS host
//	a        127.0.0.1 ::1                echo tcp 7007 "Echo One", echo udp 7007, telnet tcp 23 (critical)
//	b        127.0.0.2                    echo tcp 7008, http tcp 8080 "My Web.v2", smtp tcp 25
//	echo     192.0.2.7                    a host named like a service
//	www.lab  10.0.0.1                     lab is an empty non-terminal
func Registry(tb testing.TB) *registry.Registry {
	tb.Helper()
	reg := registry.New(2026112401)
	hosts := []registry.Host{
		{Name: "ns", Addrs: Addrs("127.0.0.53"), TTL: 60},
		{Name: "a", Addrs: Addrs("127.0.0.1", "::1"), TTL: 30},
		{Name: "b", Addrs: Addrs("127.0.0.2"), TTL: 10},
		{Name: "echo", Addrs: Addrs("192.0.2.7"), TTL: 10},
		{Name: "www.lab", Addrs: Addrs("10.0.0.1"), TTL: 10},
	}
	insts := []registry.Instance{
		{Service: "echo", Proto: "tcp", Host: "a", Port: 7007, Priority: 10, Weight: 5, Label: "Echo One", TTL: 10, TXT: registry.TXT{"path=/", "v=1"}},
		{Service: "echo", Proto: "udp", Host: "a", Port: 7007, TTL: 10},
		{Service: "echo", Proto: "tcp", Host: "b", Port: 7008, Priority: 20, TTL: 20},
		{Service: "http", Proto: "tcp", Host: "b", Port: 8080, Label: "My Web.v2", TTL: 10},
		{Service: "smtp", Proto: "tcp", Host: "b", Port: 25, Priority: 10, TTL: 10},
		{ID: "telnet", Service: "telnet", Proto: "tcp", Host: "a", Port: 23, TTL: 10},
	}
	_, err := reg.Update(func(tx *registry.Tx) error {
		for _, h := range hosts {
			if err := tx.PutHost(h); err != nil {
				return err
			}
		}
		for _, i := range insts {
			if _, err := tx.PutInstance(i); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		tb.Fatal(err)
	}
	if err := reg.SetHealth("telnet", registry.Critical); err != nil {
		tb.Fatal(err)
	}
	return reg
}

func Addrs(ss ...string) []netip.Addr {
	var out []netip.Addr
	for _, s := range ss {
		out = append(out, netip.MustParseAddr(s))
	}
	return out
}

// A Server is what Start serves: an authority.Server (named by an
// interface: the server's own tests use this package, which cannot import
// it).
type Server interface {
	ServePacket(ctx context.Context, pc net.PacketConn) error
	Serve(ctx context.Context, ln net.Listener) error
}

// Start serves s over UDP and TCP on the same loopback port, as dig +tcp
// expects, and returns the address. The server stops when the test ends,
// and must stop without an error.
func Start(tb testing.TB, s Server) string {
	tb.Helper()
	var (
		pc  net.PacketConn
		ln  net.Listener
		err error
	)
	for range 20 { // the UDP port the OS picks may be taken in TCP
		pc, err = net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			tb.Fatal(err)
		}
		ln, err = net.Listen("tcp", pc.LocalAddr().String())
		if err == nil {
			break
		}
		pc.Close()
	}
	if err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	errs := make(chan error, 2)
	go func() { errs <- s.ServePacket(ctx, pc) }()
	go func() { errs <- s.Serve(ctx, ln) }()
	tb.Cleanup(func() {
		cancel()
		for range 2 {
			select {
			case err := <-errs:
				if err != nil {
					tb.Errorf("serve: %v", err)
				}
			case <-time.After(10 * time.Second):
				tb.Error("server did not stop")
				return
			}
		}
	})
	return pc.LocalAddr().String()
}

// Big holds _big._tcp with n instances on n hosts: an SRV RRset
// too large for UDP once n passes about 45.
func Big(tb testing.TB, n int) *registry.Registry {
	tb.Helper()
	reg := registry.New(1)
	_, err := reg.Update(func(tx *registry.Tx) error {
		for i := range n {
			host := fmt.Sprintf("h%d", i)
			if err := tx.PutHost(registry.Host{Name: host, Addrs: Addrs(fmt.Sprintf("10.0.%d.%d", i/250, i%250+1)), TTL: 10}); err != nil {
				return err
			}
			if _, err := tx.PutInstance(registry.Instance{Service: "big", Host: host, Port: uint16(1000 + i), TTL: 10}); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		tb.Fatal(err)
	}
	return reg
}

// The benchmark zone of bench/run.sh: hosts h1..h20 with one instance
// each of s1..s20, then n-20 more instances on 1,000 other hosts.
func Bench(tb testing.TB, n int) *registry.Registry {
	tb.Helper()
	reg := registry.New(1)
	_, err := reg.Update(func(tx *registry.Tx) error {
		for i := 1; i <= 20; i++ {
			h := registry.Host{Name: fmt.Sprintf("h%d", i), Addrs: []netip.Addr{netip.AddrFrom4([4]byte{10, 0, 0, byte(i)})}, TTL: 60}
			if err := tx.PutHost(h); err != nil {
				return err
			}
			if _, err := tx.PutInstance(registry.Instance{Service: fmt.Sprintf("s%d", i), Proto: "tcp", Label: "inst",
				Host: h.Name, Port: uint16(8000 + i), TTL: 60, TXT: registry.TXT{"v=1"}}); err != nil {
				return err
			}
		}
		for i := range 1000 {
			if err := tx.PutHost(registry.Host{Name: fmt.Sprintf("bh%d", i), Addrs: []netip.Addr{netip.AddrFrom4([4]byte{10, 1, byte(i >> 8), byte(i)})}, TTL: 10}); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		tb.Fatal(err)
	}
	for done := 20; done < n; {
		k := min(100000, n-done)
		_, err := reg.Update(func(tx *registry.Tx) error {
			for i := done; i < done+k; i++ {
				if _, err := tx.PutInstance(registry.Instance{ID: fmt.Sprintf("b%d", i), Service: fmt.Sprintf("b%d", i/100), Proto: "tcp",
					Label: fmt.Sprintf("i%d", i%100), Host: fmt.Sprintf("bh%d", i%1000), Port: uint16(10000 + i%50000), TTL: 10}); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			tb.Fatal(err)
		}
		done += k
	}
	return reg
}

// BenchMix is the query mix of bench/run.sh, packed, with EDNS as dnsperf
// sends it (none): 40% A, 30% SRV, 5% instance TXT, 5% SOA, 20% NXDOMAIN
// (issue 19), in that order for each of the 20 hosts.
func BenchMix(tb testing.TB) [][]byte {
	var out [][]byte
	for i := 1; i <= 20; i++ {
		for _, q := range []struct {
			name  string
			qtype uint16
			times int // of 20
		}{
			{fmt.Sprintf("h%d.svc.internal.", i), dns.TypeA, 8},
			{fmt.Sprintf("_s%d._tcp.svc.internal.", i), dns.TypeSRV, 6},
			{fmt.Sprintf("inst._s%d._tcp.svc.internal.", i), dns.TypeTXT, 1},
			{"svc.internal.", dns.TypeSOA, 1},
			{fmt.Sprintf("nx%d.svc.internal.", i), dns.TypeA, 4},
		} {
			r := new(dns.Msg)
			r.SetQuestion(q.name, q.qtype)
			b, err := r.Pack()
			if err != nil {
				tb.Fatal(err)
			}
			for range q.times {
				out = append(out, b)
			}
		}
	}
	return out
}

// Many is the test zone (Registry) plus _many._tcp, 60 instances on
// hosts m0..m59, whose SRV RRset does not fit in 512 bytes.
func Many(tb testing.TB) *registry.Registry {
	tb.Helper()
	reg := Registry(tb)
	_, err := reg.Update(func(tx *registry.Tx) error {
		for i := range 60 {
			inst := registry.Instance{Service: "many", Proto: "tcp", Host: fmt.Sprintf("m%d", i), Port: uint16(1000 + i), Label: fmt.Sprintf("M %d", i), TTL: 10}
			if err := tx.PutHost(registry.Host{Name: inst.Host, Addrs: Addrs(fmt.Sprintf("10.9.0.%d", i)), TTL: 10}); err != nil {
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
	return reg
}

// Requests yields requests over names, types, cases, EDNS shapes and
// header bits: what the cache must answer exactly as the full path does.
func Requests() []*dns.Msg {
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
		Upper,
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

// Upper is s with ASCII letters in capitals, as 0x20 randomisation may
// ask.
func Upper(s string) string {
	b := []byte(s)
	for i, c := range b {
		if 'a' <= c && c <= 'z' {
			b[i] = c - ('a' - 'A')
		}
	}
	return string(b)
}

// A Recorder is a dns.ResponseWriter that keeps what the handler wrote.
type Recorder struct {
	TCP  bool       // a TCP connection's writer, else UDP's
	Msgs []*dns.Msg // what was written, in order
	Raw  [][]byte   // the same, packed
}

func (w *Recorder) LocalAddr() net.Addr {
	if w.TCP {
		return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 53}
	}
	return &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 53}
}

func (w *Recorder) RemoteAddr() net.Addr {
	if w.TCP {
		return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 5353}
	}
	return &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 5353}
}

func (w *Recorder) WriteMsg(m *dns.Msg) error {
	b, err := m.Pack()
	if err != nil {
		return err
	}
	w.Raw = append(w.Raw, b)
	w.Msgs = append(w.Msgs, m)
	return nil
}

func (w *Recorder) Write(b []byte) (int, error) {
	m := new(dns.Msg)
	if err := m.Unpack(b); err != nil {
		return 0, err
	}
	w.Raw = append(w.Raw, b)
	w.Msgs = append(w.Msgs, m)
	return len(b), nil
}

func (w *Recorder) Close() error        { return nil }
func (w *Recorder) TsigStatus() error   { return nil }
func (w *Recorder) TsigTimersOnly(bool) {}
func (w *Recorder) Hijack()             {}
