package wire

import (
	"fmt"
	"net/netip"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/annuaire/annuaire/authority/internal/authtest"
	"github.com/annuaire/annuaire/authority/zone"
	"github.com/annuaire/annuaire/registry"
)

// BenchmarkWireAnswer compares, per kind of question, the full path
// (unpack, answer, pack: what miekg's loop did per datagram) with a hit
// of the wire cache.
func BenchmarkWireAnswer(b *testing.B) {
	s := newServer(authtest.Bench(b, 100))
	for _, q := range []struct {
		name  string
		qtype uint16
	}{
		{"h7.svc.internal.", dns.TypeA},
		{"_s7._tcp.svc.internal.", dns.TypeSRV},
		{"inst._s7._tcp.svc.internal.", dns.TypeTXT},
		{"svc.internal.", dns.TypeSOA},
		{"nx7.svc.internal.", dns.TypeA},
	} {
		r := new(dns.Msg)
		r.SetQuestion(q.name, q.qtype)
		req, _ := r.Pack()
		kind := dns.TypeToString[q.qtype]
		if q.name[:2] == "nx" {
			kind = "NXDOMAIN"
		}
		b.Run("path=full/"+kind, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				m := new(dns.Msg)
				if err := m.Unpack(req); err != nil {
					b.Fatal(err)
				}
				if _, err := s.respond(m, false).Pack(); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run("path=cache/"+kind, func(b *testing.B) {
			out := make([]byte, zone.MaxUDPSize)
			b.ReportAllocs()
			for b.Loop() {
				if n := s.Answer(req, out, false); n == 0 {
					b.Fatal("not cached")
				}
			}
		})
	}
}

// BenchmarkWireScale answers the mix from the cache and by the full path
// at registry sizes 100, 100k and 1M, and reports the heap each
// registered instance takes. The 1M registry takes about a minute to
// build: -short stops at 100k.
func BenchmarkWireScale(b *testing.B) {
	for _, n := range []int{100, 100000, 1000000} {
		if testing.Short() && n > 100000 {
			continue
		}
		b.Run(fmt.Sprintf("instances=%d", n), func(b *testing.B) {
			runtime.GC()
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			reg := authtest.Bench(b, n)
			runtime.GC()
			runtime.ReadMemStats(&after)
			perInstance := float64(after.HeapAlloc-before.HeapAlloc) / float64(n)
			s := newServer(reg)
			mix := authtest.BenchMix(b)
			b.Run("path=cache", func(b *testing.B) {
				out := make([]byte, zone.MaxUDPSize)
				b.ReportAllocs()
				i := 0
				for b.Loop() {
					s.Answer(mix[i%len(mix)], out, false)
					i++
				}
				b.ReportMetric(perInstance, "heap-bytes/instance")
			})
			b.Run("path=full", func(b *testing.B) {
				b.ReportAllocs()
				i := 0
				for b.Loop() {
					m := new(dns.Msg)
					m.Unpack(mix[i%len(mix)])
					s.respond(m, false).Pack()
					i++
				}
			})
			runtime.KeepAlive(reg)
		})
	}
}

// BenchmarkWireUnderUpdates answers the mix while registrations stream in
// at a fixed rate, each one a new snapshot. Compare ns/op with
// updates/s=0: the difference is the answers each update makes stale
// (BenchmarkWireAfterUpdate counts them), built again by the full path,
// and the checks of the others against the update.
func BenchmarkWireUnderUpdates(b *testing.B) {
	for _, rate := range []int{0, 1000} {
		b.Run(fmt.Sprintf("updates/s=%d", rate), func(b *testing.B) {
			reg := authtest.Bench(b, 100000)
			s := newServer(reg)
			mix := authtest.BenchMix(b)
			stop := make(chan struct{})
			done := make(chan struct{})
			var updates atomic.Int64
			go func() {
				defer close(done)
				if rate == 0 {
					return
				}
				t := time.NewTicker(time.Second / time.Duration(rate))
				defer t.Stop()
				for i := 0; ; i++ {
					select {
					case <-stop:
						return
					case <-t.C:
					}
					reg.Register(registry.Instance{Service: "stream", Proto: "tcp", Label: fmt.Sprintf("x%d", i), Host: "h1", Port: uint16(i)}, nil)
					updates.Add(1)
				}
			}()
			out := make([]byte, zone.MaxUDPSize)
			n := 0
			start := time.Now()
			for b.Loop() {
				if k := s.Answer(mix[n%len(mix)], out, false); k == 0 {
					b.Fatal("not answered")
				}
				n++
			}
			elapsed := time.Since(start)
			close(stop)
			<-done
			b.ReportMetric(float64(updates.Load())/elapsed.Seconds(), "updates/s")
		})
	}
}

// BenchmarkWireGuard is what cookies and rate limiting add to a cache
// hit: a client cookie alone (a server cookie made), a valid server
// cookie (checked, sent back), and an answer counted by the limiter for a
// client it does not exempt (a rate it never reaches), beside one it
// exempts.
func BenchmarkWireGuard(b *testing.B) {
	s := newServer(authtest.Bench(b, 100))
	s.Guard(NewCookies(), RateLimit{Rate: 1 << 30, Exempt: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}})
	r := new(dns.Msg)
	r.SetQuestion("_s7._tcp.svc.internal.", dns.TypeSRV)
	r.SetEdns0(1232, false)
	plain, _ := r.Pack()
	opt := r.IsEdns0()
	opt.Option = []dns.EDNS0{&dns.EDNS0_COOKIE{Code: dns.EDNS0COOKIE, Cookie: "0102030405060708"}}
	clientOnly, _ := r.Pack()
	out := make([]byte, zone.MaxUDPSize)
	remote := netip.MustParseAddr("192.0.2.1")
	n := s.AnswerFrom(clientOnly, out, false, remote)
	m := new(dns.Msg)
	if n <= 0 || m.Unpack(out[:n]) != nil {
		b.Fatal("not answered")
	}
	opt.Option = m.IsEdns0().Option // the server cookie it gave
	valid, _ := r.Pack()
	for _, c := range []struct {
		name string
		req  []byte
		from netip.Addr
	}{
		{"exempt", plain, netip.MustParseAddr("127.0.0.1")},
		{"limited", plain, remote},
		{"cookie=client", clientOnly, remote},
		{"cookie=valid", valid, remote},
	} {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if n := s.AnswerFrom(c.req, out, false, c.from); n <= 0 {
					b.Fatal("not answered")
				}
			}
		})
	}
}
