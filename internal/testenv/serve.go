package testenv

import (
	"io"
	"net"
	"strings"
	"sync"
	"testing"
)

// ServeTCP runs handle for every connection to a new loopback port, in a
// goroutine each, and closes the connection when handle returns. The
// listener, every connection still open and their goroutines end with the
// test.
func ServeTCP(tb testing.TB, handle func(net.Conn)) net.Listener {
	tb.Helper()
	ln, err := ServeTCPOn(tb, "127.0.0.1:0", handle)
	if err != nil {
		tb.Fatal(err)
	}
	return ln
}

// ServeTCPOn is ServeTCP on a given address; binding it may fail, and the
// test decides what that means.
func ServeTCPOn(tb testing.TB, address string, handle func(net.Conn)) (net.Listener, error) {
	ln, err := net.Listen("tcp", address)
	if err != nil {
		return nil, err
	}
	var (
		wg     sync.WaitGroup
		mu     sync.Mutex
		open   = map[net.Conn]bool{}
		closed bool
	)
	tb.Cleanup(func() {
		ln.Close()
		mu.Lock()
		closed = true
		for c := range open {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			if closed { // accepted as the test ended
				mu.Unlock()
				c.Close()
				return
			}
			open[c] = true
			mu.Unlock()
			wg.Go(func() {
				defer func() {
					mu.Lock()
					delete(open, c)
					mu.Unlock()
					c.Close()
				}()
				handle(c)
			})
		}
	})
	return ln, nil
}

// Echo is an echo server's handle (RFC 862): what comes back is what was
// sent, until the client's end of stream.
func Echo(c net.Conn) { io.Copy(c, c) }

// Port is a listener's port.
func Port(ln net.Listener) int { return ln.Addr().(*net.TCPAddr).Port }

// FreePort returns a loopback port free for both UDP and TCP, for a
// program that must be told its port before it starts (knotd, nsd,
// named, unbound).
func FreePort(tb testing.TB) int {
	tb.Helper()
	for range 20 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			tb.Fatal(err)
		}
		port := Port(ln)
		pc, err := net.ListenPacket("udp", ln.Addr().String())
		ln.Close()
		if err == nil {
			pc.Close()
			return port
		}
	}
	tb.Fatal("no free port for UDP and TCP")
	return 0
}

// LogBuffer is a buffer that a server's logger writes while the test
// reads it.
type LogBuffer struct {
	mu sync.Mutex // guards b
	b  strings.Builder
}

func (l *LogBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *LogBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
