// Command echoload measures a TCP echo server (RFC 862) from the outside,
// for bench/echo.sh: throughput with N connections, or connections per
// second. It prints one number on stdout, so that the script can compare
// annuaire's echo with socat or ncat in the same run.
//
//	echoload -addr 127.0.0.1:7 -conns 50 -secs 5          # MB/s echoed back
//	echoload -addr 127.0.0.1:7 -cps -conns 4 -secs 5      # connections/s
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:7007", "echo server address")
	conns := flag.Int("conns", 1, "connections (throughput) or parallel loops (-cps)")
	secs := flag.Float64("secs", 5, "how long to send")
	chunk := flag.Int("chunk", 16<<10, "bytes per write (throughput)")
	cps := flag.Bool("cps", false, "connect, send 32 bytes, read them back, close, in a loop")
	flag.Parse()
	d := time.Duration(*secs * float64(time.Second))
	var err error
	if *cps {
		err = connsPerSecond(*addr, *conns, d)
	} else {
		err = throughput(*addr, *conns, *chunk, d)
	}
	if err != nil {
		log.SetFlags(0)
		log.Fatal("echoload: ", err)
	}
}

// throughput opens every connection first, then writes for d on each while a
// reader per connection counts what comes back. After d the reader drains
// what is still in flight, until it has read back all that was written or a
// grace period ends. It does not rely on the server passing a half-close on
// (ncat --exec does not). The figure counts bytes that made the round trip,
// over the time from the first write to the last byte read. Connections
// close with a reset, so that servers with a process per connection end them
// at once.
func throughput(addr string, n, chunk int, d time.Duration) error {
	cs := make([]*net.TCPConn, n)
	for i := range cs {
		c, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			return fmt.Errorf("dial %s (connection %d): %w", addr, i, err)
		}
		cs[i] = c.(*net.TCPConn)
		defer cs[i].Close()
		defer cs[i].SetLinger(0)
	}
	const grace = 3 * time.Second
	var echoed, short atomic.Int64
	var last atomic.Int64 // UnixNano of the last byte read
	var wg sync.WaitGroup
	errs := make(chan error, 2*n)
	start := time.Now()
	stop := start.Add(d)
	for _, c := range cs {
		c.SetWriteDeadline(stop.Add(grace))
		c.SetReadDeadline(stop.Add(grace))
		var written atomic.Int64
		wdone := make(chan struct{})
		wg.Add(2)
		go func() {
			defer wg.Done()
			// wakes a reader that already has everything, blocked in Read
			defer c.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
			defer close(wdone)
			buf := make([]byte, chunk)
			for i := range buf {
				buf[i] = byte(i)
			}
			for time.Now().Before(stop) {
				k, err := c.Write(buf)
				written.Add(int64(k))
				if err != nil {
					errs <- fmt.Errorf("write %s: %w", addr, err)
					return
				}
			}
		}()
		go func() {
			defer wg.Done()
			buf := make([]byte, 64<<10)
			var got int64
			for {
				select {
				case <-wdone:
					if got >= written.Load() {
						return
					}
				default:
				}
				k, err := c.Read(buf)
				got += int64(k)
				echoed.Add(int64(k))
				if k > 0 {
					last.Store(time.Now().UnixNano())
				}
				if errors.Is(err, os.ErrDeadlineExceeded) && time.Now().Before(stop.Add(grace)) {
					c.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
					continue
				}
				if err != nil {
					select {
					case <-wdone:
						if got >= written.Load() {
							return
						}
					default:
					}
					short.Add(1) // timeout or EOF before all came back
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		return err
	}
	if k := short.Load(); k > 0 {
		fmt.Fprintf(os.Stderr, "echoload: %s: %d of %d connections did not echo everything back within %v\n", addr, k, n, grace)
	}
	el := time.Duration(last.Load() - start.UnixNano())
	fmt.Printf("%.1f\n", float64(echoed.Load())/1e6/el.Seconds())
	return nil
}

// connsPerSecond runs n loops of dial, write 32 bytes, read 32 bytes, close
// for d. The client closes with SO_LINGER 0 (a reset): otherwise every
// connection leaves a TIME_WAIT socket on the client side and a few seconds
// at this rate exhaust the ephemeral ports of one address pair.
func connsPerSecond(addr string, n int, d time.Duration) error {
	var done atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, n)
	start := time.Now()
	stop := start.Add(d)
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			msg := []byte("0123456789abcdef0123456789abcdef")
			buf := make([]byte, len(msg))
			for time.Now().Before(stop) {
				c, err := net.DialTimeout("tcp", addr, 5*time.Second)
				if err != nil {
					errs <- fmt.Errorf("dial %s: %w", addr, err)
					return
				}
				c.SetDeadline(time.Now().Add(5 * time.Second))
				if _, err = c.Write(msg); err == nil {
					_, err = io.ReadFull(c, buf)
				}
				c.(*net.TCPConn).SetLinger(0)
				c.Close()
				if err != nil {
					errs <- fmt.Errorf("echo %s: %w", addr, err)
					return
				}
				done.Add(1)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		return err
	}
	fmt.Printf("%.0f\n", float64(done.Load())/time.Since(start).Seconds())
	return nil
}
