package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// quietAfter is how long `dial --trace` waits for the server's first byte
// before saying that it is waiting.
const quietAfter = time.Second

const dialAbout = `Looks NAME up as "annuaire lookup" does and connects to the first
candidate that answers (RFC 8305: IPv6 and IPv4 raced, a new attempt
every 250 ms), then relays like nc: stdin to the connection, the
connection to stdout. At the end of stdin it half-closes the connection,
so that the server sees EOF and can still answer; it exits when both
directions are done, or at Ctrl-C. A UDP service ("echo/udp") is
dialled over UDP: each read of stdin is one datagram, and the dial ends
once nothing came for a second after the end of stdin, as nc -u -w1.

--trace prints on stderr the chain, each connection attempt with its
start, the local and remote address:port, and a notice when the server
says nothing for a second (an iterative server busy with another client
has not accepted the connection yet: the kernel queued it). --select
relays in one loop waiting in select(2) on stdin and the socket, as the
course's last slide.

` + namesAbout

const dialExample = `
$ printf 'bonjour\n' | annuaire dial echo
bonjour
`

// runDial connects to a service by name and relays, like nc: stdin to the
// connection, the connection to stdout. At the end of stdin it half-closes
// the connection (the server sees EOF and can still answer); it returns
// when both directions are done.
//
//	$ printf 'bonjour\n' | annuaire dial echo
//	bonjour
//
// With --select the relay is one loop waiting in select(2) on stdin and
// the socket, as the course's last slide (dial_select.go); without it,
// a goroutine copies each way.
//
// With --trace, stderr shows the chain, every connection attempt with its
// start (RFC 8305's race), and, when the server says nothing for a while,
// that the connection waits: a connect succeeds as soon as the kernel
// queues the connection, and an iterative server busy with another client
// reads it only when it accepts it.
func runDial(ctx context.Context, e *env, args []string) error {
	fs := newFlagSet(e, "dial")
	r := resolverFlags(e, fs)
	trace := fs.Bool("trace", false, "print the chain, each connection attempt with its start, the local and remote address:port and timings to stderr")
	useSelect := fs.Bool("select", false, "relay in one loop that waits in select(2) on stdin and the socket at once, as the course's select.select([clisock, sys.stdin], ...) (Unix)")
	if err := parseFlags(e, fs, args); err != nil {
		return err
	}
	name, err := nameArg(fs)
	if err != nil {
		return err
	}
	var relay *selectRelay
	if *useSelect {
		if relay, err = newSelectRelay(e); err != nil {
			return err
		}
	}

	start := time.Now()
	conn, c, err := r.DialTrace(ctx, "tcp", name)
	if *trace && c != nil {
		fmt.Fprint(e.stderr, c.Text())
	}
	if err != nil {
		return serverHint(err)
	}
	defer conn.Close()
	var tr *dialTrace
	if *trace {
		tr = &dialTrace{w: e.stderr, start: start, remote: conn.RemoteAddr().String()}
		tr.printf("connected: local %s → remote %s after %v\n",
			conn.LocalAddr(), conn.RemoteAddr(), time.Since(start).Round(time.Microsecond))
	}

	// closed ends a relay: what went each way, and its error unless the
	// user interrupted it.
	closed := func(sent, received int64, err error) error {
		if tr != nil {
			tr.printf("closed after %v: sent %d bytes, received %d bytes\n",
				time.Since(start).Round(time.Microsecond), sent, received)
		}
		if err != nil && ctx.Err() == nil {
			return fmt.Errorf("dial %s: %w", name, err)
		}
		return nil
	}

	if uc, ok := conn.(*net.UDPConn); ok {
		if relay != nil {
			return fmt.Errorf("dial %s: --select relays a TCP stream; dial a UDP service without it", name)
		}
		return closed(relayDatagrams(ctx, e, uc, tr))
	}
	if relay != nil {
		return closed(relay.run(ctx, conn, tr))
	}

	// Closing the connection when ctx ends unblocks both copies.
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()

	var sent, received atomic.Int64
	upDone := make(chan error, 1)
	go func() {
		n, err := io.Copy(conn, e.stdin)
		sent.Store(n)
		if cw, ok := conn.(interface{ CloseWrite() error }); ok && err == nil {
			err = cw.CloseWrite() // EOF for the server, which may still answer
		}
		upDone <- err
	}()
	var down io.Reader = conn
	if tr != nil {
		quiet := time.AfterFunc(quietAfter, func() { tr.waiting(sent.Load()) })
		defer quiet.Stop()
		down = &firstByte{r: conn, first: func() {
			quiet.Stop()
			tr.printf("first byte from %s after %v\n", tr.remote, time.Since(start).Round(time.Microsecond))
		}}
	}
	n, downErr := io.Copy(e.stdout, down)
	received.Store(n)
	// The server has closed its side. If stdin is still open nothing can
	// be read back any more, so only wait for it while it is moving.
	var upErr error
	select {
	case upErr = <-upDone:
	case <-ctx.Done():
	}
	if tr != nil {
		tr.printf("closed after %v: sent %d bytes, received %d bytes\n",
			time.Since(start).Round(time.Microsecond), sent.Load(), received.Load())
	}
	if ctx.Err() != nil {
		return nil // interrupted by the user: not a failure
	}
	if downErr != nil {
		return fmt.Errorf("dial %s: reading from %s: %w", name, conn.RemoteAddr(), downErr)
	}
	if upErr != nil && !errors.Is(upErr, net.ErrClosed) {
		return fmt.Errorf("dial %s: writing to %s: %w", name, conn.RemoteAddr(), upErr)
	}
	return nil
}

// udpLinger is how long dial waits for datagrams once stdin has ended,
// when it relays UDP: a datagram service has no end of stream to say it
// is done, so silence ends it, as `nc -u -w1`.
const udpLinger = time.Second

// relayDatagrams relays over a connected UDP socket ("echo/udp"): each
// read of stdin goes as one datagram, as nc -u sends them, and each
// datagram received is written to stdout. After the end of stdin it stops
// once nothing came for udpLinger. A port where nothing listens answers
// with ICMP port unreachable, which reads as "connection refused".
func relayDatagrams(ctx context.Context, e *env, conn *net.UDPConn, tr *dialTrace) (sent, received int64, err error) {
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	var (
		sentN atomic.Int64
		eof   atomic.Bool
	)
	upDone := make(chan error, 1)
	go func() {
		// 65,507 bytes: the largest UDP payload over IPv4.
		buf := make([]byte, 65507)
		for {
			n, rerr := e.stdin.Read(buf)
			if n > 0 {
				if _, werr := conn.Write(buf[:n]); werr != nil {
					upDone <- werr
					return
				}
				sentN.Add(int64(n))
			}
			if rerr != nil {
				eof.Store(true)
				conn.SetReadDeadline(time.Now().Add(udpLinger))
				if errors.Is(rerr, io.EOF) {
					rerr = nil
				}
				upDone <- rerr
				return
			}
		}
	}()
	buf := make([]byte, 65535)
	for {
		n, rerr := conn.Read(buf)
		if n > 0 {
			if received == 0 && tr != nil {
				tr.printf("first datagram from %s after %v\n", tr.remote, time.Since(tr.start).Round(time.Microsecond))
			}
			if eof.Load() {
				conn.SetReadDeadline(time.Now().Add(udpLinger))
			}
			if _, werr := e.stdout.Write(buf[:n]); werr != nil {
				return sentN.Load(), received, werr
			}
			received += int64(n)
		}
		if rerr == nil {
			continue
		}
		sent = sentN.Load()
		if ne, ok := errors.AsType[net.Error](rerr); ok && ne.Timeout() && eof.Load() {
			return sent, received, <-upDone // quiet since the end of stdin: done
		}
		return sent, received, fmt.Errorf("reading from %s: %w", conn.RemoteAddr(), rerr)
	}
}

// A dialTrace prints `dial --trace` lines after the connect, from the
// relay and from its quiet timer.
type dialTrace struct {
	w      io.Writer
	start  time.Time
	remote string

	mu sync.Mutex // guards w
}

func (t *dialTrace) printf(format string, args ...any) {
	t.mu.Lock()
	defer t.mu.Unlock()
	fmt.Fprintf(t.w, format, args...)
}

func (t *dialTrace) waiting(sent int64) {
	t.printf("waiting: connected, no byte from %s yet after %v (sent %d bytes): the server may be serving another client;\n"+
		"  if so, the kernel completed the handshake and queued this connection (the listen backlog), where it waits until the server accepts it\n",
		t.remote, time.Since(t.start).Round(time.Millisecond), sent)
}

// firstByte calls first once, when the first bytes are read.
type firstByte struct {
	r     io.Reader
	first func()
	once  sync.Once
}

func (f *firstByte) Read(p []byte) (int, error) {
	n, err := f.r.Read(p)
	if n > 0 {
		f.once.Do(f.first)
	}
	return n, err
}
