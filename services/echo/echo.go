// Package echo is the echo service of RFC 862 — every byte received is sent
// back — served over TCP in the four designs of the sockets course and over
// UDP as a plain recvfrom/sendto loop.
//
// The designs, one file each, follow the course's diagrams:
//
//	iterative.go        one client at a time; the others wait in the listen queue
//	concurrent.go       a goroutine per connection (the default)
//	process_unix.go     a child process per connection: the "veilleur" accepts,
//	                    an "exécutant" serves (the Go equivalent of fork)
//	poll_linux.go       one goroutine, non-blocking sockets and epoll: the
//	                    course's select, on the server side
//
// Listen (listen_unix.go) makes the listening socket with the course's
// calls in the course's order — socket, bind, listen(backlog) — so that the
// size of the listen queue is the one asked for.
//
// Every design runs on Linux; poll mode needs Linux's epoll, and process
// mode a Unix system (see Modes).
package echo

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Defaults for the zero Server.
const (
	DefaultMaxConns    = 256
	DefaultIdleTimeout = 5 * time.Minute
	DefaultMaxChildren = 64
	DefaultMaxDatagram = 65535
)

// ErrServerClosed is returned by Serve and ServePacket after Shutdown.
var ErrServerClosed = errors.New("echo: server closed")

// Server echoes what its clients send. The zero value is ready to use: it
// serves in "concurrent" mode with the defaults below. Exported fields are
// read when Serve or ServePacket is called and must not change afterwards.
type Server struct {
	// Mode picks the design that serves TCP: "concurrent" (the default when
	// empty), "iterative", "process" or "poll". UDP is the same loop in
	// every mode.
	Mode string

	// MaxConns caps the TCP connections served at once in concurrent and
	// poll modes; 0 means DefaultMaxConns (256). At the cap the server stops
	// calling accept, so new clients wait in the listen queue, exactly as
	// they do behind an iterative server.
	MaxConns int

	// IdleTimeout closes a connection that neither sends nor receives for
	// that long; 0 means DefaultIdleTimeout (5 minutes).
	IdleTimeout time.Duration

	// MaxChildren caps the child processes of process mode; 0 means
	// DefaultMaxChildren (64). At the cap the parent waits for a child to
	// exit before it accepts again (it never refuses a connection).
	MaxChildren int

	// ChildCommand returns the command that process mode starts for each
	// connection. The server appends "-idle DURATION" to its Args, gives it
	// the connection as file descriptor 3 (ExtraFiles) and starts it; the
	// command must end up in RunChild. If nil, the running binary
	// (os.Executable) is re-run as "BINARY echo-child", the hidden
	// subcommand that cmd/annuaire wires to RunChild.
	ChildCommand func() *exec.Cmd

	// MaxDatagram is the largest UDP datagram echoed whole; 0 means
	// DefaultMaxDatagram (65535). Longer datagrams come back truncated.
	MaxDatagram int

	// Logger receives a line per connection at debug level and notable
	// errors (a child that crashed) at warn level; nil discards them.
	Logger *slog.Logger

	accepted  atomic.Int64 // TCP connections accepted, in every mode
	active    atomic.Int64 // TCP connections being served now
	datagrams atomic.Int64 // UDP datagrams echoed
	stopping  atomic.Bool  // set by drain before it cuts reads short

	// serving counts Serve and ServePacket calls in progress; conns counts
	// the goroutines that serve or reap one connection.
	serving, conns sync.WaitGroup

	mu          sync.Mutex // guards the fields below
	drainCh     chan struct{}
	forceCh     chan struct{}
	shutdown    bool // Shutdown was called, not just a Serve context ended
	listeners   map[net.Listener]struct{}
	packetConns map[net.PacketConn]struct{}
	tracked     map[net.Conn]struct{}
	children    map[*os.Process]struct{}
	wakers      map[*func()]struct{}
}

// Stats are the server's counters, for a metrics exporter.
type Stats struct {
	Accepted  int64 // TCP connections accepted since the start
	Active    int64 // TCP connections being served now
	Datagrams int64 // UDP datagrams echoed since the start
}

// Stats returns the server's counters.
func (s *Server) Stats() Stats {
	return Stats{Accepted: s.accepted.Load(), Active: s.active.Load(), Datagrams: s.datagrams.Load()}
}

// Serve echoes TCP connections accepted on ln, in the design s.Mode names,
// and closes ln when it returns. It stops when ctx ends or Shutdown is
// called: no more accepts, reads are cut short, and each connection gets to
// send back what it has read. Serve then returns once its connections are
// done — or closed, when Shutdown's own context ends — with nil after ctx
// ended and ErrServerClosed after Shutdown. Ending ctx drains the whole
// server, as Shutdown with a context that never ends: a client that stops
// reading then holds Serve up to IdleTimeout, which Shutdown can cut.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	defer ln.Close()
	if err := CheckMode(s.Mode); err != nil {
		return fmt.Errorf("echo: Mode %w", err)
	}
	var serve func(net.Listener) error
	switch s.Mode {
	case "", "concurrent":
		serve = s.serveConcurrent
	case "iterative":
		serve = s.serveIterative
	case "process":
		serve = s.serveProcess
	case "poll":
		serve = s.servePoll
	}
	if !s.startServing(ln, nil) {
		// Already stopped: by Shutdown (ErrServerClosed), or by the end of
		// a context (nil), possibly this one before this call got here.
		return s.closedErr()
	}
	defer s.serving.Done()
	defer s.forget(ln, nil)
	stop := context.AfterFunc(ctx, s.drain)
	defer stop()
	err := serve(ln)
	if s.draining() {
		// Every design lets its connections finish before it returns.
		s.conns.Wait()
		return s.closedErr()
	}
	return err
}

// Modes returns the designs this system can run, in the course's order:
// all four on Linux; no "poll" (epoll) on other Unix systems; on Windows,
// which has neither fork nor epoll, "iterative" and "concurrent".
func Modes() []string {
	var ms []string
	for _, m := range []string{"iterative", "concurrent", "process", "poll"} {
		if unsupported(m) == "" {
			ms = append(ms, m)
		}
	}
	return ms
}

// CheckMode returns nil if mode names a design this system can run ("" is
// "concurrent"), and otherwise an error of one line that says why not and
// what runs instead, to follow the name of a flag or field:
//
//	"poll" needs Linux's epoll(7); on darwin use iterative, concurrent or process
func CheckMode(mode string) error {
	switch why := unsupported(mode); why {
	case "":
		return nil
	case "unknown":
		return fmt.Errorf("%q is not a design: want %s", mode, orList(Modes()))
	default:
		return fmt.Errorf("%q %s; on %s use %s", mode, why, runtime.GOOS, orList(Modes()))
	}
}

// unsupported says why this system cannot run mode, or "".
func unsupported(mode string) string {
	switch mode {
	case "", "concurrent", "iterative":
		return ""
	case "process":
		return processUnsupported
	case "poll":
		return pollUnsupported
	}
	return "unknown"
}

// orList reads "a, b or c".
func orList(s []string) string {
	if len(s) < 2 {
		return strings.Join(s, "")
	}
	return strings.Join(s[:len(s)-1], ", ") + " or " + s[len(s)-1]
}

// Shutdown stops the server: listeners close, blocked reads return at once
// (a deadline in the past; SIGTERM for process mode's children), and the
// connections in flight get until ctx ends to send back what they have
// read. Then the rest are closed and the children killed. Shutdown returns
// once every Serve and connection is done: nil, or ctx's error if it had to
// force them. It is safe to call more than once.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.shutdown = true
	s.mu.Unlock()
	s.drain()
	done := make(chan struct{})
	go func() {
		s.serving.Wait()
		s.conns.Wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		s.force()
		<-done
		return ctx.Err()
	}
}

// startServing registers a listener or packet conn, unless the server is
// already stopping.
func (s *Server) startServing(ln net.Listener, pc net.PacketConn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.initLocked()
	if s.isClosedLocked() {
		return false
	}
	s.serving.Add(1)
	if ln != nil {
		s.listeners[ln] = struct{}{}
	}
	if pc != nil {
		s.packetConns[pc] = struct{}{}
	}
	return true
}

func (s *Server) forget(ln net.Listener, pc net.PacketConn) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.listeners, ln)
	delete(s.packetConns, pc)
}

func (s *Server) initLocked() {
	if s.drainCh == nil {
		s.drainCh = make(chan struct{})
		s.forceCh = make(chan struct{})
		s.listeners = make(map[net.Listener]struct{})
		s.packetConns = make(map[net.PacketConn]struct{})
		s.tracked = make(map[net.Conn]struct{})
		s.children = make(map[*os.Process]struct{})
		s.wakers = make(map[*func()]struct{})
	}
}

// closed reports whether c is closed, without waiting.
func closed(c <-chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}

func (s *Server) isClosedLocked() bool { return closed(s.drainCh) }

// channels returns the channels closed when the drain starts and when it
// is cut short.
func (s *Server) channels() (drain, force <-chan struct{}) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.initLocked()
	return s.drainCh, s.forceCh
}

func (s *Server) draining() bool {
	d, _ := s.channels()
	return closed(d)
}

func (s *Server) closedErr() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.shutdown {
		return ErrServerClosed
	}
	return nil
}

// drain starts the graceful stop; see Shutdown.
func (s *Server) drain() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.initLocked()
	if s.isClosedLocked() {
		return
	}
	close(s.drainCh)
	s.stopping.Store(true)
	for ln := range s.listeners {
		ln.Close()
	}
	past := time.Unix(1, 0)
	for pc := range s.packetConns {
		pc.SetReadDeadline(past)
	}
	for c := range s.tracked {
		c.SetReadDeadline(past)
	}
	for p := range s.children {
		p.Signal(os.Interrupt) // the child drains, as the server does
	}
	for w := range s.wakers {
		(*w)()
	}
}

// force ends the drain: connections close, children are killed.
func (s *Server) force() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if closed(s.forceCh) {
		return
	}
	close(s.forceCh)
	for c := range s.tracked {
		c.Close()
	}
	for p := range s.children {
		p.Kill()
	}
	for w := range s.wakers {
		(*w)()
	}
}

// track registers c so that drain and force reach it; false means the
// server is stopping and c must not be served.
func (s *Server) track(c net.Conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.isClosedLocked() {
		return false
	}
	s.tracked[c] = struct{}{}
	return true
}

func (s *Server) untrack(c net.Conn) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.tracked, c)
}

func (s *Server) logger() *slog.Logger {
	if s.Logger != nil {
		return s.Logger
	}
	return slog.New(slog.DiscardHandler)
}

func (s *Server) idleTimeout() time.Duration {
	if s.IdleTimeout > 0 {
		return s.IdleTimeout
	}
	return DefaultIdleTimeout
}

func (s *Server) maxConns() int {
	if s.MaxConns > 0 {
		return s.MaxConns
	}
	return DefaultMaxConns
}

// echoConn is the service itself (RFC 862: "any data received is sent
// back"), shared by the iterative, concurrent and process designs: read,
// write back, until the client closes, goes idle, or stopping is set.
//
// A stop sets stopping and then a read deadline in the past; checking
// stopping after each deadline renewal means the renewal can never undo
// the stop.
func echoConn(c net.Conn, idle time.Duration, stopping *atomic.Bool) {
	buf := make([]byte, 32<<10)
	for {
		c.SetReadDeadline(time.Now().Add(idle))
		if stopping.Load() {
			return
		}
		n, err := c.Read(buf) // s.recv()
		if n > 0 {
			c.SetWriteDeadline(time.Now().Add(idle))
			if _, werr := c.Write(buf[:n]); werr != nil { // s.send()
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// acceptBackoff reports whether an accept error is worth a retry after a
// pause — out of descriptors or memory, as net/http retries them — rather
// than the end of the listener.
func acceptBackoff(err error, delay *time.Duration) bool {
	if !errors.Is(err, syscall.EMFILE) && !errors.Is(err, syscall.ENFILE) &&
		!errors.Is(err, syscall.ENOBUFS) && !errors.Is(err, syscall.ENOMEM) {
		return false
	}
	if *delay == 0 {
		*delay = 5 * time.Millisecond
	} else if *delay *= 2; *delay > time.Second {
		*delay = time.Second
	}
	time.Sleep(*delay)
	return true
}

// addWaker registers a function that drain and force call to wake a poll
// loop blocked in epoll_wait.
func (s *Server) addWaker(w *func()) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.initLocked()
	s.wakers[w] = struct{}{}
}

func (s *Server) removeWaker(w *func()) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.wakers, w)
}
