package authority

import (
	"fmt"
	"net"
	"net/netip"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/annuaire/annuaire/registry"
)

// The benchmark zone of bench/run.sh: hosts h1..h20 with one instance
// each of s1..s20, then n-20 more instances on 1,000 other hosts.
func benchRegistry(tb testing.TB, n int) *registry.Registry {
	tb.Helper()
	reg := registry.New(1)
	_, err := reg.Update(func(tx *registry.Tx) error {
		for i := 1; i <= 20; i++ {
			h := registry.Host{Name: fmt.Sprintf("h%d", i), Addrs: []netip.Addr{netip.AddrFrom4([4]byte{10, 0, 0, byte(i)})}, TTL: 60}
			if err := tx.PutHost(h); err != nil {
				return err
			}
			if _, err := tx.PutInstance(registry.Instance{Service: fmt.Sprintf("s%d", i), Proto: "tcp", Label: "inst",
				Host: h.Name, Port: uint16(8000 + i), TTL: 60, TXT: map[string]string{"v": "1"}}); err != nil {
				return err
			}
		}
		for i := range 1000 {
			if err := tx.PutHost(registry.Host{Name: fmt.Sprintf("bh%d", i), Addrs: []netip.Addr{netip.AddrFrom4([4]byte{10, 1, byte(i >> 8), byte(i)})}}); err != nil {
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
					Label: fmt.Sprintf("i%d", i%100), Host: fmt.Sprintf("bh%d", i%1000), Port: uint16(10000 + i%50000)}); err != nil {
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

// benchMix is the query mix of bench/run.sh, packed, with EDNS as dnsperf
// sends it (none).
func benchMix(tb testing.TB) [][]byte {
	var out [][]byte
	for i := 1; i <= 20; i++ {
		for _, q := range []struct {
			name  string
			qtype uint16
		}{
			{fmt.Sprintf("h%d.svc.internal.", i), dns.TypeA},
			{fmt.Sprintf("h%d.svc.internal.", i), dns.TypeA},
			{fmt.Sprintf("_s%d._tcp.svc.internal.", i), dns.TypeSRV},
			{fmt.Sprintf("inst._s%d._tcp.svc.internal.", i), dns.TypeTXT},
			{"svc.internal.", dns.TypeSOA},
			{fmt.Sprintf("nx%d.svc.internal.", i), dns.TypeA},
		} {
			r := new(dns.Msg)
			r.SetQuestion(q.name, q.qtype)
			b, err := r.Pack()
			if err != nil {
				tb.Fatal(err)
			}
			out = append(out, b)
		}
	}
	return out
}

// BenchmarkWireAnswer compares, per kind of question, the full path
// (unpack, answer, pack: what miekg's loop did per datagram) with a hit
// of the wire cache.
func BenchmarkWireAnswer(b *testing.B) {
	s := &Server{Registry: benchRegistry(b, 100), Zone: testZone}
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
			out := make([]byte, maxUDPSize)
			b.ReportAllocs()
			for b.Loop() {
				if n, _ := s.answerWire(req, out, false); n == 0 {
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
			reg := benchRegistry(b, n)
			runtime.GC()
			runtime.ReadMemStats(&after)
			perInstance := float64(after.HeapAlloc-before.HeapAlloc) / float64(n)
			s := &Server{Registry: reg, Zone: testZone}
			mix := benchMix(b)
			b.Run("path=cache", func(b *testing.B) {
				out := make([]byte, maxUDPSize)
				b.ReportAllocs()
				i := 0
				for b.Loop() {
					s.answerWire(mix[i%len(mix)], out, false)
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
			reg := benchRegistry(b, 100000)
			s := &Server{Registry: reg, Zone: testZone}
			mix := benchMix(b)
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
			out := make([]byte, maxUDPSize)
			n := 0
			start := time.Now()
			for b.Loop() {
				if k, _ := s.answerWire(mix[n%len(mix)], out, false); k == 0 {
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

// BenchmarkUDPRoundTrip sends the mix through the server's UDP loop on
// loopback, 32 queries in flight, and reads every answer.
func BenchmarkUDPRoundTrip(b *testing.B) {
	s := &Server{Registry: benchRegistry(b, 100), Zone: testZone}
	addr := startServer(b, s)
	c, err := net.Dial("udp", addr)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	mix := benchMix(b)
	buf := make([]byte, 4096)
	const inflight = 32
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		for k := range inflight {
			if _, err := c.Write(mix[(i+k)%len(mix)]); err != nil {
				b.Fatal(err)
			}
		}
		c.SetReadDeadline(time.Now().Add(2 * time.Second))
		for range inflight {
			if _, err := c.Read(buf); err != nil {
				b.Fatal(err)
			}
		}
		i += inflight
	}
	b.ReportMetric(float64(inflight), "queries/op")
}
