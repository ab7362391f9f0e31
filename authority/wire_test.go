package authority

import (
	"bytes"
	"context"
	"io"
	"net"
	"testing"
	"time"

	"github.com/annuaire/annuaire/authority/internal/authtest"
	"github.com/annuaire/annuaire/authority/zone"
	"github.com/annuaire/annuaire/registry"
)

// TestTCPPipelined: queries sent in one burst on one connection, some
// answered from the cache inside the connection and some by miekg/dns
// (two questions: FORMERR), come back in order, each as the full path
// would answer it.
func TestTCPPipelined(t *testing.T) {
	reg := authtest.Many(t)
	addr := authtest.Start(t, &Server{Registry: reg, Zone: authtest.Zone})
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var burst []byte
	reqs, want := mixedRequests(t, reg, true)
	for _, b := range reqs {
		burst = append(burst, byte(len(b)>>8), byte(len(b)))
		burst = append(burst, b...)
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
		if !sameAnswer(got, w) {
			t.Fatalf("answer %d differs", i)
		}
	}
}

// TestPortableUDP: on a datagram socket that is not a *net.UDPConn (as
// every socket is outside Linux), one reader answers from the wire cache
// and hands the rest to the full path; every answer is the full path's.
func TestPortableUDP(t *testing.T) {
	reg := authtest.Many(t)
	addr := authtest.Start(t, portable{&Server{Registry: reg, Zone: authtest.Zone}})
	c, err := net.Dial("udp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	buf := make([]byte, 4096)
	reqs, answers := mixedRequests(t, reg, false)
	for i, b := range reqs {
		want := answers[i]
		c.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := c.Write(b); err != nil {
			t.Fatal(err)
		}
		n, err := c.Read(buf)
		if err != nil {
			t.Fatalf("answer %d: %v", i, err)
		}
		if !sameAnswer(buf[:n], want) {
			t.Fatalf("answer %d differs", i)
		}
	}
}

// sameAnswer reports whether a server's answer is the full path's, want:
// byte for byte, but for the server cookie where want has room for one
// (zone.CookieRoom), which must be filled.
func sameAnswer(got, want []byte) bool {
	n := len(want) - zone.CookieRoom
	if len(got) != len(want) || n < 12 || string(want[n-12:n-8]) != "\x00\x0a\x00\x18" {
		return bytes.Equal(got, want)
	}
	return bytes.Equal(got[:n], want[:n]) && !bytes.Equal(got[n:], want[n:])
}

// mixedRequests are 300 requests, every seventh with two questions (the
// full path's FORMERR) and the others plain, packed, with the full path's
// answers to them from reg.
func mixedRequests(t *testing.T, reg *registry.Registry, tcp bool) (reqs, answers [][]byte) {
	z := zone.New(zone.Config{Origin: authtest.Zone})
	for i, r := range authtest.Requests()[:300] {
		if i%7 == 3 {
			r.Question = append(r.Question, r.Question[0])
		}
		b, err := r.Pack()
		if err != nil {
			t.Fatal(err)
		}
		w, err := z.Respond(reg.Snapshot(), r, tcp).Pack()
		if err != nil {
			t.Fatal(err)
		}
		reqs, answers = append(reqs, b), append(answers, w)
	}
	return reqs, answers
}

// portable serves UDP on a socket that hides its *net.UDPConn.
type portable struct{ *Server }

func (p portable) ServePacket(ctx context.Context, pc net.PacketConn) error {
	return p.Server.ServePacket(ctx, struct{ net.PacketConn }{pc})
}

// BenchmarkUDPRoundTrip sends the mix through the server's UDP loop on
// loopback, 32 queries in flight, and reads every answer.
func BenchmarkUDPRoundTrip(b *testing.B) {
	addr := authtest.Start(b, &Server{Registry: authtest.Bench(b, 100), Zone: authtest.Zone})
	c, err := net.Dial("udp", addr)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	mix := authtest.BenchMix(b)
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
