package tcpserver

import (
	"bufio"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"
)

// lines is a small protocol for the tests: each line is answered "ok
// LINE"; the line "wait" first blocks until release is closed; a session
// told to stop, or idle too long, says "bye" and ends.
type lines struct {
	idleTimeout time.Duration
	entered     chan struct{} // gets a value when "wait" starts waiting
	release     chan struct{}
	contexts    chan context.Context // gets each connection's context
}

func newLines() *lines {
	return &lines{
		idleTimeout: 10 * time.Second,
		entered:     make(chan struct{}, 10),
		release:     make(chan struct{}),
		contexts:    make(chan context.Context, 10),
	}
}

func (p *lines) serve(c *Conn) {
	p.contexts <- c.Context()
	r := bufio.NewReader(c)
	for {
		if !c.StartIdle(p.idleTimeout) {
			io.WriteString(c, "bye\n")
			return
		}
		line, err := r.ReadString('\n')
		if !c.EndIdle() {
			io.WriteString(c, "bye\n")
			return
		}
		var ne net.Error
		switch {
		case errors.As(err, &ne) && ne.Timeout():
			io.WriteString(c, "bye\n")
			return
		case err != nil:
			return
		}
		line = strings.TrimSpace(line)
		if line == "wait" {
			p.entered <- struct{}{}
			<-p.release
		}
		if _, err := io.WriteString(c, "ok "+line+"\n"); err != nil {
			return
		}
	}
}

// start serves s on a fresh loopback port; the server stops when the test
// ends.
func start(t *testing.T, s *Server) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil && !errors.Is(err, ErrServerClosed) {
			t.Errorf("Serve: %v", err)
		}
	})
	return ln.Addr().String()
}

type client struct {
	t  *testing.T
	nc net.Conn
	r  *bufio.Reader
}

func dial(t *testing.T, addr string) *client {
	t.Helper()
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	nc.SetDeadline(time.Now().Add(20 * time.Second))
	return &client{t: t, nc: nc, r: bufio.NewReader(nc)}
}

// do sends line and checks the answer.
func (c *client) do(line, want string) {
	c.t.Helper()
	if _, err := io.WriteString(c.nc, line+"\n"); err != nil {
		c.t.Fatal(err)
	}
	c.expect(want)
}

func (c *client) expect(want string) {
	c.t.Helper()
	got, err := c.r.ReadString('\n')
	if err != nil || got != want+"\n" {
		c.t.Fatalf("got %q, %v; want %q", got, err, want)
	}
}

func (c *client) expectEOF() {
	c.t.Helper()
	if got, err := c.r.ReadString('\n'); err != io.EOF {
		c.t.Fatalf("want EOF, got %q, %v", got, err)
	}
}

func quiet() *slog.Logger { return slog.New(slog.DiscardHandler) }

func TestServe(t *testing.T) {
	p := newLines()
	s := &Server{Handle: p.serve, Logger: quiet()}
	addr := start(t, s)
	c1, c2 := dial(t, addr), dial(t, addr)
	c1.do("one", "ok one")
	c2.do("two", "ok two")
	c1.do("three", "ok three")
	if st := s.Stats(); st != (Stats{Accepted: 2, Active: 2}) {
		t.Errorf("stats %+v", st)
	}
	c1.nc.Close()
	waitActive(t, s, 1)
}

func TestIdleTimeout(t *testing.T) {
	p := newLines()
	p.idleTimeout = 50 * time.Millisecond
	c := dial(t, start(t, &Server{Handle: p.serve, Logger: quiet()}))
	c.expect("bye")
	c.expectEOF()
}

// TestMaxConns: a connection beyond the cap gets the refusal and is
// closed, and the slot is free again once a session ends.
func TestMaxConns(t *testing.T) {
	p := newLines()
	s := &Server{Handle: p.serve, MaxConns: 1, Refusal: "busy\r\n", Logger: quiet()}
	addr := start(t, s)
	c1 := dial(t, addr)
	c1.do("a", "ok a")
	c2 := dial(t, addr)
	if b, err := io.ReadAll(c2.r); string(b) != "busy\r\n" || err != nil {
		t.Errorf("refused client got %q, %v", b, err)
	}
	c1.nc.Close()
	waitActive(t, s, 0)
	c3 := dial(t, addr)
	c3.do("c", "ok c")
	if st := s.Stats(); st != (Stats{Accepted: 2, Rejected: 1, Active: 1}) {
		t.Errorf("stats %+v", st)
	}
}

func TestMaxConnsSilent(t *testing.T) {
	p := newLines()
	addr := start(t, &Server{Handle: p.serve, MaxConns: 1, Logger: quiet()})
	dial(t, addr).do("a", "ok a")
	dial(t, addr).expectEOF()
}

// TestShutdown: an idle session is woken and says bye, a busy one finishes
// its request first, and Shutdown waits for both; Serve then returns
// ErrServerClosed, and so does any later Serve.
func TestShutdown(t *testing.T) {
	p := newLines()
	s := &Server{Handle: p.serve, Logger: quiet()}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- s.Serve(context.Background(), ln) }()
	addr := ln.Addr().String()

	idle := dial(t, addr)
	idle.do("x", "ok x")
	busy := dial(t, addr)
	busy.do("y", "ok y")
	io.WriteString(busy.nc, "wait\n")
	<-p.entered

	shut := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		shut <- s.Shutdown(ctx)
	}()
	idle.expect("bye")
	idle.expectEOF()
	select {
	case err := <-shut:
		t.Fatalf("Shutdown returned %v with a request in flight", err)
	case <-time.After(100 * time.Millisecond):
	}
	close(p.release)
	busy.expect("ok wait")
	busy.expect("bye")
	busy.expectEOF()
	if err := <-shut; err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if err := <-served; !errors.Is(err, ErrServerClosed) {
		t.Fatalf("Serve: %v", err)
	}
	if st := s.Stats(); st != (Stats{Accepted: 2}) {
		t.Errorf("stats %+v", st)
	}
	if err := s.Shutdown(context.Background()); err != nil {
		t.Errorf("second Shutdown: %v", err)
	}
	if _, err := net.Dial("tcp", addr); err == nil {
		t.Error("listener still open")
	}
	ln2, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Serve(context.Background(), ln2); !errors.Is(err, ErrServerClosed) {
		t.Errorf("Serve after Shutdown: %v", err)
	}
	if _, err := ln2.Accept(); !errors.Is(err, net.ErrClosed) {
		t.Errorf("Serve after Shutdown left its listener open: %v", err)
	}
}

// TestErrClosed: Serve after Shutdown returns the caller's sentinel.
func TestErrClosed(t *testing.T) {
	errMine := errors.New("mine: server closed")
	s := &Server{Handle: newLines().serve, ErrClosed: errMine}
	if err := s.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Serve(context.Background(), ln); err != errMine {
		t.Errorf("Serve: %v", err)
	}
}

// TestShutdownDeadline: a session that never finishes is cut off, its
// context cancelled, when Shutdown's context ends.
func TestShutdownDeadline(t *testing.T) {
	p := newLines()
	s := &Server{Handle: p.serve, Name: "lines", Logger: quiet()}
	c := dial(t, start(t, s))
	ctx := <-p.contexts
	io.WriteString(c.nc, "wait\n")
	<-p.entered
	defer close(p.release)

	sctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	err := s.Shutdown(sctx)
	if !errors.Is(err, context.DeadlineExceeded) || !strings.HasPrefix(err.Error(), "lines: shutdown: ") {
		t.Fatalf("Shutdown: %v", err)
	}
	c.expectEOF()
	if ctx.Err() == nil {
		t.Error("connection's context not cancelled")
	}
}

// TestServeContext: once Serve's context ends, connections' contexts end,
// idle sessions are woken, and Serve returns nil after they are gone.
func TestServeContext(t *testing.T) {
	p := newLines()
	s := &Server{Handle: p.serve, Logger: quiet()}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- s.Serve(ctx, ln) }()
	c := dial(t, ln.Addr().String())
	c.do("x", "ok x")
	cctx := <-p.contexts
	cancel()
	c.expect("bye")
	c.expectEOF()
	if err := <-served; err != nil {
		t.Fatalf("Serve: %v", err)
	}
	if cctx.Err() == nil {
		t.Error("connection's context not cancelled")
	}
	if st := s.Stats(); st.Active != 0 {
		t.Errorf("stats %+v", st)
	}
}

// TestShutdownTimeout: when Serve's context ends, a session that does not
// finish gets ShutdownTimeout, then is closed and Serve returns.
func TestShutdownTimeout(t *testing.T) {
	p := newLines()
	s := &Server{Handle: p.serve, ShutdownTimeout: 50 * time.Millisecond, Logger: quiet()}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- s.Serve(ctx, ln) }()
	c := dial(t, ln.Addr().String())
	io.WriteString(c.nc, "wait\n")
	<-p.entered
	defer close(p.release)
	cancel()
	if err := <-served; err != nil {
		t.Fatalf("Serve: %v", err)
	}
	c.expectEOF()
}

// timeoutError is what a listener returns when it runs out of file
// descriptors, as far as Serve can tell: a net.Error that is a timeout.
type timeoutError struct{}

func (timeoutError) Error() string   { return "too many open files" }
func (timeoutError) Timeout() bool   { return true }
func (timeoutError) Temporary() bool { return true }

// fakeListener returns errs from Accept first, then the connections sent
// on conns, then net.ErrClosed once closed.
type fakeListener struct {
	errs   []error
	conns  chan net.Conn
	closed chan struct{}
}

func newFakeListener(errs ...error) *fakeListener {
	return &fakeListener{errs: errs, conns: make(chan net.Conn), closed: make(chan struct{})}
}

func (l *fakeListener) Accept() (net.Conn, error) {
	if len(l.errs) > 0 {
		err := l.errs[0]
		l.errs = l.errs[1:]
		return nil, err
	}
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.closed:
		return nil, net.ErrClosed
	}
}

func (l *fakeListener) Close() error {
	select {
	case <-l.closed:
		return net.ErrClosed
	default:
		close(l.closed)
		return nil
	}
}

func (l *fakeListener) Addr() net.Addr { return &net.TCPAddr{IP: net.IPv4(192, 0, 2, 1), Port: 25} }

// TestTemporaryAcceptError: Serve backs off and goes on accepting after
// timeout errors, and logs each.
func TestTemporaryAcceptError(t *testing.T) {
	var logged strings.Builder
	p := newLines()
	s := &Server{Handle: p.serve, Name: "lines", Logger: slog.New(slog.NewTextHandler(&logged, nil))}
	ln := newFakeListener(timeoutError{}, timeoutError{}, timeoutError{})
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- s.Serve(ctx, ln) }()

	server, client := net.Pipe()
	ln.conns <- server
	defer client.Close()
	go io.WriteString(client, "hello\n")
	r := bufio.NewReader(client)
	if got, err := r.ReadString('\n'); got != "ok hello\n" || err != nil {
		t.Errorf("got %q, %v", got, err)
	}
	cancel()
	// A pipe's writes wait for the reader, so take the session's goodbye.
	if got, err := r.ReadString('\n'); got != "bye\n" || err != nil {
		t.Errorf("got %q, %v", got, err)
	}
	if err := <-served; err != nil {
		t.Errorf("Serve: %v", err)
	}
	if n := strings.Count(logged.String(), "lines: accept"); n != 3 {
		t.Errorf("%d log lines, want 3:\n%s", n, logged.String())
	}
}

// TestAcceptError: any other accept error ends Serve, naming the address.
func TestAcceptError(t *testing.T) {
	broken := errors.New("broken")
	s := &Server{Handle: newLines().serve, Name: "lines"}
	ln := newFakeListener(broken)
	err := s.Serve(context.Background(), ln)
	if !errors.Is(err, broken) || err.Error() != "lines: accept on 192.0.2.1:25: broken" {
		t.Errorf("Serve: %v", err)
	}
	select {
	case <-ln.closed:
	default:
		t.Error("listener left open")
	}
}

// waitActive waits for the server to count n open connections: a session
// ends on its own schedule after its client leaves.
func waitActive(t *testing.T, s *Server, n int64) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for s.Stats().Active != n {
		if time.Now().After(deadline) {
			t.Fatalf("stats %+v, want %d active", s.Stats(), n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
