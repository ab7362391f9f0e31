package authority

import (
	"context"
	"errors"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/netip"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/annuaire/annuaire/authority/internal/authtest"
	"github.com/annuaire/annuaire/authority/zone"
	"github.com/miekg/dns"
)

func queryOver(t *testing.T, network, addr string, r *dns.Msg) *dns.Msg {
	t.Helper()
	c := &dns.Client{Net: network, Timeout: 3 * time.Second, UDPSize: 4096}
	m, _, err := c.Exchange(r, addr)
	if err != nil {
		t.Fatalf("%s %s: %v", network, r.Question[0].Name, err)
	}
	if m.Id != r.Id {
		t.Fatalf("id %d, want %d", m.Id, r.Id)
	}
	return m
}

// TestUDPAndTCP asks over real sockets with miekg's client.
func TestUDPAndTCP(t *testing.T) {
	addr := authtest.Start(t, &Server{Registry: authtest.Registry(t), Zone: authtest.Zone})
	for _, network := range []string{"udp", "tcp"} {
		for _, tc := range []authtest.Case{
			authtest.Queries["SOA mixed case"], authtest.Queries["SRV"], authtest.Queries["DNS-SD browse"], authtest.Queries["NXDOMAIN"],
			authtest.Queries["reverse PTR"], authtest.Queries["outside the zone"], authtest.Queries["EDNS DO echoed"],
		} {
			t.Run(network+" "+tc.Name, func(t *testing.T) {
				tc.TCP = network == "tcp"
				tc.Check(t, queryOver(t, network, addr, tc.Request()))
			})
		}
	}

	// One TCP connection, many queries (RFC 7766 section 6.2.1).
	conn, err := dns.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	for i := range 200 {
		r := new(dns.Msg)
		r.SetQuestion("a.svc.internal.", dns.TypeA)
		if err := conn.WriteMsg(r); err != nil {
			t.Fatalf("query %d: %v", i, err)
		}
		m, err := conn.ReadMsg()
		if err != nil || m.Id != r.Id || len(m.Answer) != 1 {
			t.Fatalf("query %d: %v %v", i, m, err)
		}
	}
}

// TestEDNSAndErrors covers the requests that get an error, and the size
// limits, through ServeDNS.
func TestEDNSAndErrors(t *testing.T) {
	s := &Server{Registry: authtest.Registry(t), Zone: authtest.Zone}
	serve := func(r *dns.Msg, tcp bool) (*dns.Msg, int) {
		t.Helper()
		w := &authtest.Recorder{TCP: tcp}
		s.ServeDNS(w, r)
		if len(w.Msgs) != 1 {
			t.Fatalf("%d responses", len(w.Msgs))
		}
		m := new(dns.Msg)
		if err := m.Unpack(w.Raw[0]); err != nil {
			t.Fatal(err)
		}
		return m, len(w.Raw[0])
	}
	soa := func() *dns.Msg {
		r := new(dns.Msg)
		r.SetQuestion("svc.internal.", dns.TypeSOA)
		return r
	}
	wantOPT := func(t *testing.T, m *dns.Msg, rcode int, do bool) {
		t.Helper()
		if m.Rcode != rcode {
			t.Errorf("rcode %s, want %s", dns.RcodeToString[m.Rcode], dns.RcodeToString[rcode])
		}
		opt := m.IsEdns0()
		if opt == nil || opt.Version() != 0 || opt.Do() != do || len(opt.Option) != 0 {
			t.Errorf("OPT %v, want version 0 do=%v", opt, do)
		}
		if len(m.Answer)+len(m.Ns) != 0 || m.Authoritative {
			t.Errorf("an error with records or aa: %v", m)
		}
	}

	t.Run("BADVERS", func(t *testing.T) {
		r := soa()
		r.SetEdns0(4096, true)
		r.IsEdns0().SetVersion(1)
		r.IsEdns0().Option = []dns.EDNS0{&dns.EDNS0_LOCAL{Code: 65001, Data: []byte{1}}}
		m, _ := serve(r, false)
		wantOPT(t, m, dns.RcodeBadVers, true)
	})
	t.Run("two OPT", func(t *testing.T) {
		r := soa()
		r.SetEdns0(4096, false)
		r.SetEdns0(4096, false)
		m, _ := serve(r, false)
		wantOPT(t, m, dns.RcodeFormatError, false)
	})
	t.Run("OPT not at the root", func(t *testing.T) {
		r := soa()
		r.SetEdns0(4096, false)
		r.IsEdns0().Hdr.Name = "x."
		m, _ := serve(r, false)
		wantOPT(t, m, dns.RcodeFormatError, false)
	})
	t.Run("no question", func(t *testing.T) {
		r := soa()
		r.Question = nil
		r.SetEdns0(1232, false)
		m, _ := serve(r, false)
		wantOPT(t, m, dns.RcodeFormatError, false)
	})
	t.Run("two questions", func(t *testing.T) {
		r := soa()
		r.Question = append(r.Question, r.Question[0])
		m, _ := serve(r, false)
		if m.Rcode != dns.RcodeFormatError || m.IsEdns0() != nil {
			t.Errorf("%v", m)
		}
	})
	t.Run("unknown opcode", func(t *testing.T) {
		r := soa()
		r.Opcode = 15
		r.SetEdns0(1232, false)
		m, _ := serve(r, false)
		wantOPT(t, m, dns.RcodeNotImplemented, false)
		if m.Opcode != 15 {
			t.Errorf("opcode %d", m.Opcode)
		}
	})
	t.Run("response ignored", func(t *testing.T) {
		if accept(dns.Header{Bits: 1 << 15}) != dns.MsgIgnore {
			t.Error("a response is not ignored")
		}
	})

	big := &Server{Registry: authtest.Big(t, 25), Zone: authtest.Zone}
	bigServe := func(size uint16, tcp bool) (*dns.Msg, int) {
		r := new(dns.Msg)
		r.SetQuestion("_big._tcp.svc.internal.", dns.TypeSRV)
		if size > 0 {
			r.SetEdns0(size, false)
		}
		w := &authtest.Recorder{TCP: tcp}
		big.ServeDNS(w, r)
		m := new(dns.Msg)
		if err := m.Unpack(w.Raw[0]); err != nil {
			t.Fatal(err)
		}
		return m, len(w.Raw[0])
	}
	t.Run("additional dropped first, without TC", func(t *testing.T) {
		m, n := bigServe(4096, false) // capped at 1232
		if n > zone.MaxUDPSize || m.Truncated || len(m.Answer) != 25 {
			t.Fatalf("%d bytes, tc=%v, %d answers", n, m.Truncated, len(m.Answer))
		}
		extra := len(m.Extra) - 1
		if extra <= 0 || extra >= 25 || m.Extra[len(m.Extra)-1].Header().Rrtype != dns.TypeOPT {
			t.Errorf("%d additional records, want some, OPT last", extra)
		}
	})
	t.Run("answer too large: TC and no answer", func(t *testing.T) {
		m, n := bigServe(0, false)
		if n > 512 || !m.Truncated || len(m.Answer)+len(m.Ns)+len(m.Extra) != 0 || !m.Authoritative {
			t.Errorf("%d bytes, tc=%v, %v", n, m.Truncated, m)
		}
		m, _ = bigServe(600, false)
		if !m.Truncated || len(m.Answer) != 0 || m.IsEdns0() == nil {
			t.Errorf("EDNS 600: tc=%v, %d answers, OPT %v", m.Truncated, len(m.Answer), m.IsEdns0())
		}
	})
	t.Run("TCP whole", func(t *testing.T) {
		m, _ := bigServe(0, true)
		if m.Truncated || len(m.Answer) != 25 || len(m.Extra) != 25 {
			t.Errorf("tc=%v, %d answers, %d additional", m.Truncated, len(m.Answer), len(m.Extra))
		}
	})
}

// TestGarbage floods the server with junk and half-open connections and
// checks it still answers.
func TestGarbage(t *testing.T) {
	addr := authtest.Start(t, &Server{Registry: authtest.Registry(t), Zone: authtest.Zone, ReadTimeout: 500 * time.Millisecond,
		Logger: slog.New(slog.DiscardHandler)}) // junk parses as UPDATE now and then, which logs

	// TCP clients that connect and send nothing, or half a message.
	for i := range 20 {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if i%2 == 1 {
			c.Write([]byte{0, 100, 1, 2, 3, 4, 5})
		}
	}

	junk, err := net.Dial("udp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer junk.Close()
	rng := rand.New(rand.NewPCG(1, 2))
	valid, _ := authtest.Queries["SRV"].Request().Pack()
	for i := range 3000 {
		var b []byte
		switch i % 3 {
		case 0: // random bytes
			b = make([]byte, rng.IntN(600))
			for j := range b {
				b[j] = byte(rng.Uint32())
			}
		case 1: // a valid query with bytes flipped
			b = append([]byte(nil), valid...)
			for range 1 + rng.IntN(4) {
				b[rng.IntN(len(b))] = byte(rng.Uint32())
			}
		case 2: // a valid query cut short
			b = valid[:rng.IntN(len(valid))]
		}
		junk.Write(b)
	}

	// The flood may still fill the socket's buffer, where the kernel drops
	// what does not fit: ask as a resolver would, retrying.
	for _, network := range []string{"udp", "tcp"} {
		tc := authtest.Queries["SRV"]
		tc.TCP = network == "tcp"
		c := &dns.Client{Net: network, Timeout: time.Second}
		var m *dns.Msg
		for try := 0; try < 5 && m == nil; try++ {
			m, _, err = c.Exchange(tc.Request(), addr)
			if err != nil {
				t.Logf("%s try %d: %v", network, try, err)
			}
		}
		if m == nil {
			t.Fatalf("%s: no answer after the flood", network)
		}
		tc.Check(t, m)
	}
}

// TestShutdown checks that Serve and ServePacket return, and close their
// sockets, when their context ends and when Shutdown is called, however
// soon after they started.
func TestShutdown(t *testing.T) {
	// ours counts the goroutines of DNS servers: at the end, those this
	// test started must be gone. Other goroutines may come and go.
	ours := func() (int, string) {
		buf := make([]byte, 1<<20)
		stacks := string(buf[:runtime.Stack(buf, true)])
		n := 0
		for _, g := range strings.Split(stacks, "\n\n") {
			if strings.Contains(g, "miekg/dns.(*Server)") || strings.Contains(g, "authority.(*Server).run") {
				n++
			}
		}
		return n, stacks
	}
	before, _ := ours()
	listen := func(t *testing.T) (net.PacketConn, net.Listener) {
		pc, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		return pc, ln
	}
	wait := func(t *testing.T, errs chan error, want error) {
		t.Helper()
		for range 2 {
			select {
			case err := <-errs:
				if !errors.Is(err, want) {
					t.Errorf("returned %v, want %v", err, want)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("did not return")
			}
		}
	}
	closed := func(t *testing.T, pc net.PacketConn, ln net.Listener) {
		t.Helper()
		if c, err := net.DialTimeout("tcp", ln.Addr().String(), time.Second); err == nil {
			c.Close()
			t.Error("TCP port still open")
		}
		again, err := net.ListenPacket("udp", pc.LocalAddr().String())
		if err != nil {
			t.Errorf("UDP port still bound: %v", err)
		} else {
			again.Close()
		}
	}

	t.Run("context", func(t *testing.T) {
		for i := range 30 { // cancel at every moment of the start
			s := &Server{Registry: authtest.Registry(t)}
			pc, ln := listen(t)
			ctx, cancel := context.WithCancel(context.Background())
			errs := make(chan error, 2)
			go func() { errs <- s.ServePacket(ctx, pc) }()
			go func() { errs <- s.Serve(ctx, ln) }()
			if i > 0 {
				time.Sleep(time.Duration(i*i) * 20 * time.Microsecond)
			}
			cancel()
			wait(t, errs, nil)
			closed(t, pc, ln)
		}
	})

	t.Run("Shutdown", func(t *testing.T) {
		for i := range 30 {
			s := &Server{Registry: authtest.Registry(t)}
			pc, ln := listen(t)
			errs := make(chan error, 2)
			go func() { errs <- s.ServePacket(context.Background(), pc) }()
			go func() { errs <- s.Serve(context.Background(), ln) }()
			if i > 0 {
				time.Sleep(time.Duration(i*i) * 20 * time.Microsecond)
			}
			if i == 29 { // an idle client does not hold the shutdown
				c, err := net.Dial("tcp", ln.Addr().String())
				if err != nil {
					t.Fatal(err)
				}
				defer c.Close()
				time.Sleep(50 * time.Millisecond)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			if err := s.Shutdown(ctx); err != nil {
				t.Errorf("Shutdown: %v", err)
			}
			cancel()
			wait(t, errs, ErrServerClosed)
			closed(t, pc, ln)
			if err := s.Shutdown(context.Background()); err != nil {
				t.Errorf("second Shutdown: %v", err)
			}
			if err := s.Serve(context.Background(), ln); !errors.Is(err, ErrServerClosed) {
				t.Errorf("Serve after Shutdown: %v", err)
			}
		}
	})

	deadline := time.Now().Add(5 * time.Second)
	n, stacks := ours()
	for n > before && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
		n, stacks = ours()
	}
	if n > before {
		t.Errorf("%d server goroutines left, %d before:\n%s", n, before, stacks)
	}
}

// TestTCPConnCap: a connection beyond MaxTCPConns is served at once, the
// idlest one closed to make room; the server never runs out of sockets.
func TestTCPConnCap(t *testing.T) {
	addr := authtest.Start(t, &Server{Registry: authtest.Registry(t), Zone: authtest.Zone, MaxTCPConns: 2, ReadTimeout: 300 * time.Millisecond})
	for range 2 {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
	}
	tc := authtest.Queries["SOA"]
	tc.TCP = true
	tc.Check(t, queryOver(t, "tcp", addr, tc.Request())) // within the client's 3 s
}

// TestTrailingBytes: a request with bytes after its last record gets
// FORMERR, with its question, over UDP and TCP, whether its question is
// one the wire cache holds an answer to or one only the full path
// answers (issue 13: it was answered as if the bytes were not there).
func TestTrailingBytes(t *testing.T) {
	addr := authtest.Start(t, &Server{Registry: authtest.Registry(t), Zone: authtest.Zone, Logger: slog.New(slog.DiscardHandler)})
	requests := map[string]*dns.Msg{}
	q := new(dns.Msg)
	q.SetQuestion("a.svc.internal.", dns.TypeA)
	requests["plain query"] = q
	q = new(dns.Msg)
	q.SetQuestion("a.svc.internal.", dns.TypeA)
	q.SetEdns0(1232, false)
	requests["query with OPT"] = q
	q = new(dns.Msg)
	q.SetQuestion("svc.internal.", dns.TypeAXFR) // never the cache's
	requests["AXFR"] = q
	q = new(dns.Msg)
	q.SetNotify("svc.internal.")
	requests["NOTIFY"] = q
	for name, r := range requests {
		for _, network := range []string{"udp", "tcp"} {
			t.Run(name+" "+network, func(t *testing.T) {
				clean, err := r.Pack()
				if err != nil {
					t.Fatal(err)
				}
				ask := func(b []byte) *dns.Msg {
					t.Helper()
					c, err := net.Dial(network, addr)
					if err != nil {
						t.Fatal(err)
					}
					defer c.Close()
					c.SetDeadline(time.Now().Add(3 * time.Second))
					co := &dns.Conn{Conn: c}
					if _, err := co.Write(b); err != nil {
						t.Fatal(err)
					}
					m, err := co.ReadMsg()
					if err != nil {
						t.Fatal(err)
					}
					return m
				}
				if r.Opcode == dns.OpcodeQuery && r.Question[0].Qtype == dns.TypeA {
					if m := ask(clean); m.Rcode != dns.RcodeSuccess { // cached now
						t.Fatalf("without trailing bytes: %s", dns.RcodeToString[m.Rcode])
					}
				}
				m := ask(append(clean, "junk"...))
				if m.Rcode != dns.RcodeFormatError || m.Id != r.Id || len(m.Question) != 1 || m.Question[0] != r.Question[0] || len(m.Answer) != 0 {
					t.Errorf("with trailing bytes: %v, want FORMERR with the question", m)
				}
			})
		}
	}
}

// TestBadZoneConfig: a configuration no zone can have stops Serve and
// ServePacket with an error that says why, rather than serve nothing.
func TestBadZoneConfig(t *testing.T) {
	s := &Server{Registry: authtest.Registry(t), Reverse: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/12")}}
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if err := s.ServePacket(context.Background(), pc); err == nil || !strings.Contains(err.Error(), "10.0.0.0/12") {
		t.Errorf("ServePacket: %v, want an error naming the network", err)
	}
	if err := s.RunNotify(context.Background()); err == nil {
		t.Error("RunNotify started")
	}
}
