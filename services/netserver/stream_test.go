package netserver

import (
	"bufio"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
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

// harness serves a lines protocol on a Server and remembers Serve's
// result; Serve's context ends with the test.
type harness struct {
	t      *testing.T
	addr   string
	stop   context.CancelFunc // ends Serve's context
	served chan error
	once   sync.Once // takes Serve's result from served into result
	result error
}

// serve runs s with p's protocol on a fresh loopback port.
func serve(t *testing.T, p *lines, s *Server) *harness {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return serveOn(t, p, s, ln)
}

func serveOn(t *testing.T, p *lines, s *Server, ln net.Listener) *harness {
	s.Handle = p.serve
	ctx, cancel := context.WithCancel(context.Background())
	h := &harness{t: t, addr: ln.Addr().String(), stop: cancel, served: make(chan error, 1)}
	go func() { h.served <- s.Serve(ctx, ln) }()
	t.Cleanup(func() { cancel(); h.wait() })
	return h
}

// wait returns what Serve returned, once it has.
func (h *harness) wait() error {
	h.once.Do(func() { h.result = <-h.served })
	return h.result
}

// client is one connection to a server under test.
type client struct {
	net.Conn
	t *testing.T
	r *bufio.Reader
}

func newClient(t *testing.T, nc net.Conn) *client {
	t.Cleanup(func() { nc.Close() })
	nc.SetDeadline(time.Now().Add(20 * time.Second))
	return &client{Conn: nc, t: t, r: bufio.NewReader(nc)}
}

func (h *harness) connect() *client {
	h.t.Helper()
	nc, err := net.Dial("tcp", h.addr)
	if err != nil {
		h.t.Fatal(err)
	}
	return newClient(h.t, nc)
}

// do sends line and checks the answer.
func (c *client) do(line, want string) {
	c.t.Helper()
	c.send(line)
	c.expect(want)
}

func (c *client) send(line string) {
	c.t.Helper()
	if _, err := io.WriteString(c, line+"\n"); err != nil {
		c.t.Fatal(err)
	}
}

func (c *client) expect(want string) {
	c.t.Helper()
	got, err := c.r.ReadString('\n')
	if err != nil || got != want+"\n" {
		c.t.Fatalf("got %q, %v; want %q", got, err, want)
	}
}

// expectEnd checks that the server sends nothing more and closes.
func (c *client) expectEnd() {
	c.t.Helper()
	if rest, err := io.ReadAll(c.r); len(rest) > 0 || err != nil {
		c.t.Fatalf("want the end, got %q, %v", rest, err)
	}
}

func TestServe(t *testing.T) {
	s := &Server{}
	h := serve(t, newLines(), s)
	c1, c2 := h.connect(), h.connect()
	c1.do("one", "ok one")
	c2.do("two", "ok two")
	c1.do("three", "ok three")
	if st := s.Stats(); st != (Stats{Accepted: 2, Active: 2}) {
		t.Errorf("stats %+v", st)
	}
	c1.Close()
	waitActive(t, s, 1)
}

func TestIdleTimeout(t *testing.T) {
	p := newLines()
	p.idleTimeout = 50 * time.Millisecond
	c := serve(t, p, &Server{}).connect()
	c.expect("bye")
	c.expectEnd()
}

// TestMaxConns: a connection beyond the cap gets the refusal and is
// closed, and the slot is free again once a session ends.
func TestMaxConns(t *testing.T) {
	s := &Server{MaxConns: 1, Refusal: "busy\r\n"}
	h := serve(t, newLines(), s)
	c1 := h.connect()
	c1.do("a", "ok a")
	if b, err := io.ReadAll(h.connect().r); string(b) != "busy\r\n" || err != nil {
		t.Errorf("refused client got %q, %v", b, err)
	}
	c1.Close()
	waitActive(t, s, 0)
	h.connect().do("c", "ok c")
	if st := s.Stats(); st != (Stats{Accepted: 2, Rejected: 1, Active: 1}) {
		t.Errorf("stats %+v", st)
	}
}

func TestMaxConnsSilent(t *testing.T) {
	h := serve(t, newLines(), &Server{MaxConns: 1})
	h.connect().do("a", "ok a")
	h.connect().expectEnd()
}

// TestShutdown: an idle session is woken and says bye, a busy one finishes
// its request first, and Shutdown waits for both; Serve then returns
// ErrServerClosed, and so does any later Serve.
func TestShutdown(t *testing.T) {
	p := newLines()
	s := &Server{}
	h := serve(t, p, s)
	idle := h.connect()
	idle.do("x", "ok x")
	busy := h.connect()
	busy.do("y", "ok y")
	busy.send("wait")
	<-p.entered

	shut := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		shut <- s.Shutdown(ctx)
	}()
	idle.expect("bye")
	idle.expectEnd()
	select {
	case err := <-shut:
		t.Fatalf("Shutdown returned %v with a request in flight", err)
	case <-time.After(100 * time.Millisecond):
	}
	close(p.release)
	busy.expect("ok wait")
	busy.expect("bye")
	busy.expectEnd()
	if err := <-shut; err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if err := h.wait(); !errors.Is(err, ErrServerClosed) {
		t.Fatalf("Serve: %v", err)
	}
	if st := s.Stats(); st != (Stats{Accepted: 2}) {
		t.Errorf("stats %+v", st)
	}
	if err := s.Shutdown(context.Background()); err != nil {
		t.Errorf("second Shutdown: %v", err)
	}
	if _, err := net.Dial("tcp", h.addr); err == nil {
		t.Error("listener still open")
	}
	again := serve(t, p, s)
	if err := again.wait(); !errors.Is(err, ErrServerClosed) {
		t.Errorf("Serve after Shutdown: %v", err)
	}
	if _, err := net.Dial("tcp", again.addr); err == nil {
		t.Error("Serve after Shutdown left its listener open")
	}
}

// TestShutdownDeadline: a session that never finishes is cut off, its
// context cancelled, when Shutdown's context ends.
func TestShutdownDeadline(t *testing.T) {
	p := newLines()
	s := &Server{Name: "lines"}
	c := serve(t, p, s).connect()
	ctx := <-p.contexts
	c.send("wait")
	<-p.entered
	defer close(p.release)

	sctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	err := s.Shutdown(sctx)
	if !errors.Is(err, context.DeadlineExceeded) || !strings.HasPrefix(err.Error(), "lines: shutdown: ") {
		t.Fatalf("Shutdown: %v", err)
	}
	c.expectEnd()
	if ctx.Err() == nil {
		t.Error("connection's context not cancelled")
	}
}

// TestServeContext: once Serve's context ends, connections' contexts end,
// idle sessions are woken, and Serve returns nil after they are gone.
func TestServeContext(t *testing.T) {
	p := newLines()
	s := &Server{}
	h := serve(t, p, s)
	c := h.connect()
	cctx := <-p.contexts
	h.stop()
	c.expect("bye")
	c.expectEnd()
	if err := h.wait(); err != nil {
		t.Fatalf("Serve: %v", err)
	}
	if cctx.Err() == nil {
		t.Error("connection's context not cancelled")
	}
	if st := s.Stats(); st.Active != 0 {
		t.Errorf("stats %+v", st)
	}
}

// TestDrainTimeout: when Serve's context ends, a session that does not
// finish gets DrainTimeout, then is closed and Serve returns.
func TestDrainTimeout(t *testing.T) {
	p := newLines()
	h := serve(t, p, &Server{DrainTimeout: 50 * time.Millisecond})
	c := h.connect()
	c.send("wait")
	<-p.entered
	defer close(p.release)
	h.stop()
	if err := h.wait(); err != nil {
		t.Fatalf("Serve: %v", err)
	}
	c.expectEnd()
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
	ln := newFakeListener(timeoutError{}, timeoutError{}, timeoutError{})
	h := serveOn(t, newLines(), &Server{Name: "lines", Logger: slog.New(slog.NewTextHandler(&logged, nil))}, ln)

	server, pipe := net.Pipe()
	ln.conns <- server
	c := newClient(t, pipe)
	c.do("hello", "ok hello")
	h.stop()
	c.expect("bye") // a pipe's writes wait for the reader
	if err := h.wait(); err != nil {
		t.Errorf("Serve: %v", err)
	}
	if n := strings.Count(logged.String(), "lines: accept"); n != 3 {
		t.Errorf("%d log lines, want 3:\n%s", n, logged.String())
	}
}

// TestAcceptError: any other accept error ends Serve, naming the address.
func TestAcceptError(t *testing.T) {
	broken := errors.New("broken")
	ln := newFakeListener(broken)
	err := serveOn(t, newLines(), &Server{Name: "lines"}, ln).wait()
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
