package echo

import (
	"fmt"
	"io"
	"net"
	"sync"
	"testing"
)

// BenchmarkThroughput echoes 64 KiB chunks over 1 and 50 connections at
// once; MB/s counts the bytes sent (as many come back).
func BenchmarkThroughput(b *testing.B) {
	const chunk = 64 << 10
	for _, mode := range modes {
		for _, nconns := range []int{1, 50} {
			b.Run(fmt.Sprintf("%s/conns=%d", mode, nconns), func(b *testing.B) {
				ts := start(b, mode, 0)
				conns := make([]*net.TCPConn, nconns)
				for i := range conns {
					conns[i] = dial(b, ts.addr)
					if mode != "iterative" { // the iterative server serves one at a time
						roundTrip(b, conns[i], "w") // wait for the connection (or its child) to be served
					}
				}
				b.SetBytes(chunk)
				b.ResetTimer()
				var wg sync.WaitGroup
				for i, c := range conns {
					n := b.N / nconns
					if i < b.N%nconns {
						n++
					}
					if n == 0 {
						c.CloseWrite()
						continue
					}
					wg.Go(func() { // write while reading, as a real client must
						buf := make([]byte, chunk)
						for range n {
							if _, err := c.Write(buf); err != nil {
								b.Error(err)
								return
							}
						}
						c.CloseWrite() // the end, for which the iterative server waits
					})
					wg.Go(func() {
						if _, err := io.CopyN(io.Discard, c, int64(n)*chunk); err != nil {
							b.Error(err)
						}
					})
				}
				wg.Wait()
			})
		}
	}
}

// BenchmarkConnect measures connections per second: connect, one byte
// there and back, close — the cost of accept, and in process mode of
// starting a child.
func BenchmarkConnect(b *testing.B) {
	for _, mode := range modes {
		b.Run(mode, func(b *testing.B) {
			ts := start(b, mode, 0)
			buf := make([]byte, 1)
			b.ResetTimer()
			for range b.N {
				c, err := net.Dial("tcp", ts.addr)
				if err != nil {
					b.Fatal(err)
				}
				if _, err := c.Write(buf); err != nil {
					b.Fatal(err)
				}
				if _, err := io.ReadFull(c, buf); err != nil {
					b.Fatal(err)
				}
				c.Close()
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "conns/s")
		})
	}
}
