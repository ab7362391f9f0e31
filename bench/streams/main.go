// Command streams is the event-stream attack of issue 18 section 1, from
// outside: it opens -n connections to annuaire's /api/events from
// -sources loopback addresses in turn (127.0.0.2, 127.0.0.3, ...), as
// fast as -parallel connections at once allow, and holds every one the
// server keeps open for -hold. Every -silent-th stream never reads past
// its response head, with a 4 KB receive buffer: the reader that used to
// hold the server's memory; the others read everything, as curl -N does.
//
// It prints what the server answered, one count per outcome (a stream; a
// refusal, told by its status and message: 429 or 503, at accept or by
// the stream's own cap; a connection error), then, at the end of -hold,
// what became of the streams: still open, closed by the server, reset.
// bench/streams/run.sh runs several at once, each under its own
// file-descriptor limit, and checks the rest of the server meanwhile.
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/signal"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

func main() {
	addr := flag.String("web", "", "annuaire's web `address`, HOST:PORT")
	n := flag.Int("n", 5000, "connections to open")
	from := flag.String("from", "127.0.0.2", "first source `address`")
	sources := flag.Int("sources", 10, "source addresses, from -from on, used in turn")
	silent := flag.Int("silent", 2, "every `k`-th stream never reads (0: all read)")
	parallel := flag.Int("parallel", 64, "connections being opened at once")
	hold := flag.Duration("hold", time.Minute, "how long to hold what the server kept open")
	flag.Parse()
	first, err := netip.ParseAddr(*from)
	if *addr == "" || err != nil || *n < 1 || *sources < 1 {
		flag.Usage()
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	a := &attack{web: *addr, silent: *silent}
	srcs := make([]netip.Addr, *sources)
	for i := range srcs {
		srcs[i] = first
		first = first.Next()
	}

	start := time.Now()
	jobs := make(chan int)
	var wg sync.WaitGroup
	for range *parallel {
		wg.Go(func() {
			for i := range jobs {
				a.open(i, srcs[i%len(srcs)])
			}
		})
	}
	for i := range *n {
		jobs <- i
	}
	close(jobs)
	wg.Wait()
	fmt.Printf("opened %d connections from %d addresses in %v:\n", *n, len(srcs), time.Since(start).Round(time.Millisecond))
	a.printOutcomes()

	select {
	case <-ctx.Done():
	case <-time.After(*hold):
	}
	a.printEnd()
}

// An attack is the connections opened, and what the server did with them.
type attack struct {
	web    string
	silent int

	mu       sync.Mutex
	outcomes map[string]int // guarded by mu
	silentC  []net.Conn     // guarded by mu: streams that never read
	held     []net.Conn     // guarded by mu: refused streams whose connection stays

	readers, readersEnded atomic.Int64
	readBytes             atomic.Int64
}

func (a *attack) count(outcome string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.outcomes == nil {
		a.outcomes = map[string]int{}
	}
	a.outcomes[outcome]++
}

// open opens connection i from src and sorts out the server's answer.
func (a *attack) open(i int, src netip.Addr) {
	quiet := a.silent > 0 && i%a.silent == a.silent-1
	d := net.Dialer{LocalAddr: net.TCPAddrFromAddrPort(netip.AddrPortFrom(src, 0)), Timeout: 10 * time.Second}
	c, err := d.Dial("tcp", a.web)
	if err != nil {
		a.count("connect error: " + short(err))
		return
	}
	if quiet {
		c.(*net.TCPConn).SetReadBuffer(4096)
	}
	fmt.Fprintf(c, "GET /api/events HTTP/1.1\r\nHost: %s\r\n\r\n", a.web)
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReaderSize(c, 512)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		a.count("no answer: " + short(err))
		c.Close()
		return
	}
	c.SetReadDeadline(time.Time{})
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		msg := strings.TrimSuffix(strings.TrimPrefix(strings.TrimSpace(string(body)), `{"error":"`), `"}`)
		msg = strings.TrimSpace(strings.TrimSuffix(strings.TrimPrefix(msg, "{\n  \"error\": \""), "\"\n}"))
		if resp.Close {
			a.count(fmt.Sprintf("%d, closed: %s", resp.StatusCode, msg))
			c.Close()
			return
		}
		// Refused by the stream's cap on a connection the server keeps:
		// an attacker keeps it too.
		a.count(fmt.Sprintf("%d, kept open: %s", resp.StatusCode, msg))
		a.mu.Lock()
		a.held = append(a.held, c)
		a.mu.Unlock()
		return
	}
	if quiet {
		a.count("200, a stream that never reads")
		a.mu.Lock()
		a.silentC = append(a.silentC, c)
		a.mu.Unlock()
		return
	}
	a.count("200, a stream read to the end")
	a.readers.Add(1)
	go func() {
		io.Copy(counter{&a.readBytes}, resp.Body)
		a.readersEnded.Add(1)
		c.Close()
	}()
}

func (a *attack) printOutcomes() {
	a.mu.Lock()
	defer a.mu.Unlock()
	keys := make([]string, 0, len(a.outcomes))
	for k := range a.outcomes {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		fmt.Printf("%8d  %s\n", a.outcomes[k], k)
	}
}

// printEnd says what became of the connections the server kept: a
// stream that never read is probed with a read (what it gets first: data
// still buffered, the end, or a reset).
func (a *attack) printEnd() {
	a.mu.Lock()
	defer a.mu.Unlock()
	var open, closed, reset int
	for _, c := range a.silentC {
		switch state(c) {
		case "open":
			open++
		case "reset":
			reset++
		default:
			closed++
		}
	}
	heldOpen := 0
	for _, c := range a.held {
		if state(c) == "open" {
			heldOpen++
		}
	}
	fmt.Printf("after the hold: readers %d open, %d ended by the server (%d MB read); "+
		"silent streams %d still open, %d reset, %d closed; refused connections kept by the server %d of %d\n",
		a.readers.Load()-a.readersEnded.Load(), a.readersEnded.Load(), a.readBytes.Load()>>20,
		open, reset, closed, heldOpen, len(a.held))
}

// state reads c until it blocks: "open" if it would, "reset" or "closed"
// if the server ended it.
func state(c net.Conn) string {
	buf := make([]byte, 64<<10)
	for {
		c.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
		_, err := c.Read(buf)
		switch {
		case err == nil:
			continue
		case errors.Is(err, os.ErrDeadlineExceeded):
			return "open"
		case errors.Is(err, syscall.ECONNRESET):
			return "reset"
		default:
			return "closed"
		}
	}
}

// A counter counts the bytes written to it.
type counter struct{ n *atomic.Int64 }

func (c counter) Write(p []byte) (int, error) {
	c.n.Add(int64(len(p)))
	return len(p), nil
}

// short is an error without the addresses net.OpError puts in it.
func short(err error) string {
	var se *os.SyscallError
	if errors.As(err, &se) {
		return se.Err.Error()
	}
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return "timeout"
	}
	return err.Error()
}
