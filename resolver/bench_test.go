package resolver

import (
	"fmt"
	"net"
	"testing"

	"github.com/annuaire/annuaire/internal/testenv"
)

// acceptAndClose serves a loopback port that accepts and drops every
// connection, the cheapest peer for measuring a dial.
func acceptAndClose(b *testing.B) int {
	return testenv.Port(testenv.ServeTCP(b, func(net.Conn) {}))
}

// closeNow closes without TIME_WAIT, so that a long benchmark does not run
// out of ephemeral ports.
func closeNow(c net.Conn) {
	c.(*net.TCPConn).SetLinger(0)
	c.Close()
}

// BenchmarkDialName dials "echo" with a warm cache: the cost over
// BenchmarkDialLiteral is what the name costs.
func BenchmarkDialName(b *testing.B) {
	port := acceptAndClose(b)
	_, r := newTest(b, fmt.Sprintf(testZone, port, port))
	ctx := b.Context()
	conn, err := r.Dial(ctx, "tcp", "echo") // warm the cache
	if err != nil {
		b.Fatal(err)
	}
	closeNow(conn)
	b.ReportAllocs()
	for b.Loop() {
		conn, err := r.Dial(ctx, "tcp", "echo")
		if err != nil {
			b.Fatal(err)
		}
		closeNow(conn)
	}
}

// BenchmarkDialLiteral dials the address:port "echo" resolves to.
func BenchmarkDialLiteral(b *testing.B) {
	addr := fmt.Sprintf("127.0.0.1:%d", acceptAndClose(b))
	ctx := b.Context()
	var d net.Dialer
	b.ReportAllocs()
	for b.Loop() {
		conn, err := d.DialContext(ctx, "tcp", addr)
		if err != nil {
			b.Fatal(err)
		}
		closeNow(conn)
	}
}

// BenchmarkLookupWarm is the resolving part of BenchmarkDialName alone.
func BenchmarkLookupWarm(b *testing.B) {
	_, r := newTest(b, fmt.Sprintf(testZone, 7, 7))
	ctx := b.Context()
	r.Lookup(ctx, "echo")
	b.ReportAllocs()
	for b.Loop() {
		if _, err := r.Lookup(ctx, "echo"); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkLookupCold asks the local server every time: SRV with the
// address in the additional section (one query), and SRV then A and
// AAAA when the server leaves the additional section empty.
func BenchmarkLookupCold(b *testing.B) {
	for _, extra := range []bool{true, false} {
		name := "SRV+additional"
		if !extra {
			name = "SRV,A,AAAA"
		}
		b.Run(name, func(b *testing.B) {
			s, r := newTest(b, fmt.Sprintf(testZone, 7, 7))
			s.noExtra.Store(!extra)
			r.NoCache = true
			ctx := b.Context()
			b.ReportAllocs()
			for b.Loop() {
				if _, err := r.Lookup(ctx, "echo"); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
