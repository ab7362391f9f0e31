package echo

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"runtime"
	"sync/atomic"
	"testing"
	"time"
)

// waitServe returns what Serve returned, or fails after limit.
func waitServe(t *testing.T, done chan error, limit time.Duration) error {
	t.Helper()
	select {
	case err := <-done:
		done <- err // for the cleanup
		return err
	case <-time.After(limit):
		t.Fatalf("Serve did not return within %v", limit)
		return nil
	}
}

// stallingClient connects a client that sends and never reads, and returns
// once its sends stall: the server's buffers and the client's are full, so
// the server is blocked in send (or, in select and epoll modes, has
// stopped reading it).
func stallingClient(t *testing.T, addr string) net.Conn {
	t.Helper()
	c := dial(t, addr)
	roundTrip(t, c, "serve me first\n") // the server (or its child) is in its echo loop
	var sent atomic.Int64
	go func() {
		chunk := make([]byte, 64<<10)
		for {
			n, err := c.Write(chunk)
			sent.Add(int64(n))
			if err != nil {
				return
			}
		}
	}()
	last := int64(-1)
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		now := sent.Load()
		if now == last && now > 0 {
			return c
		}
		if time.Now().After(deadline) {
			t.Fatalf("the client's sends never stalled (%d bytes sent)", now)
		}
		last = now
	}
}

// TestContextEnd: when Serve's context ends, reads are cut short, clients
// see the end of their connection, and Serve returns nil.
func TestContextEnd(t *testing.T) {
	forModes(t, modes, func(t *testing.T, mode string) {
		ts := start(t, mode, 0)
		c := dial(t, ts.addr)
		roundTrip(t, c, "idle from now on\n")
		ts.cancel()
		if err := waitServe(t, ts.tcpDone, 5*time.Second); err != nil {
			t.Errorf("Serve after its context ended: %v, want nil", err)
		}
		if err := waitServe(t, ts.udpDone, 5*time.Second); err != nil {
			t.Errorf("ServePacket after its context ended: %v, want nil", err)
		}
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if n, err := c.Read(make([]byte, 1)); n != 0 || errors.Is(err, os.ErrDeadlineExceeded) {
			t.Errorf("client after the stop: read %d, %v; want the end of the connection", n, err)
		}
		// A process-mode test running in parallel may fork while we close
		// the listener: its child holds a copy of every descriptor until
		// exec closes them (close-on-exec), so give it a moment.
		for deadline := time.Now().Add(3 * time.Second); ; time.Sleep(50 * time.Millisecond) {
			c, err := net.DialTimeout("tcp", ts.addr, time.Second)
			if err != nil {
				break
			}
			c.Close()
			if time.Now().After(deadline) {
				t.Fatalf("dial after the stop still succeeds: the listener is open")
			}
		}
	})
}

// TestShutdownSlowClient: a client that sends without reading keeps its
// connection busy; Shutdown waits for it only until its context ends.
func TestShutdownSlowClient(t *testing.T) {
	forModes(t, modes, func(t *testing.T, mode string) {
		ts := start(t, mode, 0)
		stallingClient(t, ts.addr)

		ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		defer cancel()
		begin := time.Now()
		err := ts.Shutdown(ctx)
		took := time.Since(begin)
		t.Logf("Shutdown took %v", took)
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("Shutdown = %v, want context.DeadlineExceeded (the slow client had to be cut)", err)
		}
		if took > 3*time.Second {
			t.Errorf("Shutdown took %v with a 300 ms context", took)
		}
		if err := waitServe(t, ts.tcpDone, 3*time.Second); !errors.Is(err, ErrServerClosed) {
			t.Errorf("Serve after Shutdown: %v, want ErrServerClosed", err)
		}
		if err := ts.Shutdown(context.Background()); err != nil {
			t.Errorf("second Shutdown: %v", err)
		}
		if s := ts.Stats(); s.Active != 0 {
			t.Errorf("after Shutdown: %d connections still active", s.Active)
		}
	})
}

// TestShutdownDrains: Shutdown lets a connection send back what it has
// read before it closes it.
func TestShutdownDrains(t *testing.T) {
	forModes(t, modes, func(t *testing.T, mode string) {
		ts := start(t, mode, 0)
		c := dial(t, ts.addr)
		roundTrip(t, c, "before\n")
		if err := ts.Shutdown(context.Background()); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
		c.SetReadDeadline(time.Now().Add(time.Second))
		if b, err := io.ReadAll(c); len(b) != 0 || err != nil {
			t.Errorf("after Shutdown: %q, %v; want a clean end of stream", b, err)
		}
		if err := (&Server{}).Serve(context.Background(), ts.ln); err != nil && errors.Is(err, ErrServerClosed) {
			t.Logf("serve on a closed listener: %v", err)
		}
		if err := ts.Server.Serve(context.Background(), ts.ln); !errors.Is(err, ErrServerClosed) {
			t.Errorf("Serve after Shutdown: %v, want ErrServerClosed", err)
		}
	})
}

// TestNoGoroutineLeak runs each design with clients, stops it, and checks
// that the goroutine count comes back. Not parallel: it counts them all.
func TestNoGoroutineLeak(t *testing.T) {
	for _, mode := range modes {
		before := runtime.NumGoroutine()
		srv := &Server{Mode: mode, ChildCommand: testChild}
		ln, err := Listen(context.Background(), "tcp", "127.0.0.1:0", 0)
		if err != nil {
			t.Fatal(err)
		}
		pc, err := net.ListenPacket("udp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 2)
		go func() { done <- srv.Serve(context.Background(), ln) }()
		go func() { done <- srv.ServePacket(context.Background(), pc) }()
		var conns []net.Conn
		for range 5 {
			c, err := net.Dial("tcp", ln.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			c.SetDeadline(time.Now().Add(5 * time.Second))
			conns = append(conns, c)
		}
		roundTrip(t, conns[0], "x") // the others wait behind the iterative server
		if mode != "iterative" {
			for _, c := range conns[1:] {
				roundTrip(t, c, "y")
			}
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		srv.Shutdown(ctx)
		cancel()
		<-done
		<-done
		for _, c := range conns {
			c.Close()
		}
		var now int
		for deadline := time.Now().Add(3 * time.Second); ; time.Sleep(20 * time.Millisecond) {
			if now = runtime.NumGoroutine(); now <= before || time.Now().After(deadline) {
				break
			}
		}
		if now > before {
			buf := make([]byte, 1<<16)
			t.Errorf("%s: %d goroutines before, %d after Shutdown:\n%s", mode, before, now, buf[:runtime.Stack(buf, true)])
		}
	}
}
