// Package mail is annuaire's hosted mail service: a small SMTP receiver
// (a subset of RFC 5321) that keeps the messages it receives in memory so a
// lab can show them, and never relays anything anywhere.
//
// It speaks enough SMTP for real clients (swaks, net/smtp, a mail user
// agent) and for a human typing into nc or "annuaire dial mail": EHLO/HELO,
// MAIL, RCPT, DATA with dot-stuffing, RSET, NOOP, VRFY, HELP and QUIT, with
// the SIZE (RFC 1870) and 8BITMIME (RFC 6152) extensions. There is no TLS,
// no AUTH and no PIPELINING.
//
// Lines may end with CRLF or a bare LF: a human typing into nc sends bare
// LF, and since this server is the final destination of every message and
// never relays one, accepting bare LF cannot make two servers disagree on
// where a message ends (the "SMTP smuggling" problem that RFC 5321 section
// 2.3.8 guards against). Stored messages use CRLF line endings.
package mail

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// Server receives mail over SMTP. Its zero value is ready to use; the
// exported fields are read when a connection starts and must not change
// while the server runs.
type Server struct {
	// Hostname names the server in the greeting and replies; "" means
	// "annuaire".
	Hostname string

	// MaxSize is the largest message accepted, in bytes (after dot-stuffing
	// is removed, with CRLF line endings); zero means 1 MiB. It is
	// advertised as EHLO's SIZE (RFC 1870).
	MaxSize int

	// MaxMessages is how many received messages are kept; the oldest is
	// dropped first. Zero means 100.
	MaxMessages int

	// MaxRecipients caps RCPT commands per message; zero means 100, the
	// minimum RFC 5321 section 4.5.3.1.8 asks a server to accept.
	MaxRecipients int

	// PreviewSize is how many bytes of each message's body are kept in
	// Message.Body; zero means 64 KiB.
	PreviewSize int

	// MaxConns caps simultaneous connections; a client beyond it gets 421
	// and is closed. Zero means 100.
	MaxConns int

	// MaxErrors is how many error replies a session may collect before the
	// server says 421 and closes it; zero means 10.
	MaxErrors int

	// IdleTimeout is how long the server waits for each command or data
	// line; zero means 5 minutes (RFC 5321 section 4.5.3.2.7). A line must
	// arrive whole within it, so a client trickling bytes cannot hold a
	// session forever.
	IdleTimeout time.Duration

	// WriteTimeout bounds each reply's write; zero means 30 seconds.
	WriteTimeout time.Duration

	// ShutdownTimeout is how long Serve lets sessions finish once its
	// context ends; zero means 5 seconds.
	ShutdownTimeout time.Duration

	// Logger gets one line per delivered message and per notable error;
	// nil means slog.Default().
	Logger *slog.Logger

	closing atomic.Bool // set once by Shutdown; read without mu by sessions

	mu        sync.Mutex // guards the fields below
	listeners map[net.Listener]struct{}
	conns     map[*conn]struct{}

	store store

	accepted, rejected, active, delivered atomic.Int64
}

// ErrServerClosed is returned by Serve after Shutdown.
var ErrServerClosed = errors.New("mail: server closed")

// Stats counts a server's connections and messages since it was created.
type Stats struct {
	Accepted  int64 `json:"accepted"`  // connections served
	Rejected  int64 `json:"rejected"`  // connections refused (MaxConns)
	Active    int64 `json:"active"`    // connections open now
	Delivered int64 `json:"delivered"` // messages accepted with 250
}

// Stats returns the server's counters; it is safe for concurrent use.
func (s *Server) Stats() Stats {
	return Stats{
		Accepted:  s.accepted.Load(),
		Rejected:  s.rejected.Load(),
		Active:    s.active.Load(),
		Delivered: s.delivered.Load(),
	}
}

// Serve accepts SMTP sessions on ln until ctx ends or Shutdown is called.
// When ctx ends it shuts the server down, gives sessions ShutdownTimeout to
// finish, and returns nil; after Shutdown it returns ErrServerClosed.
// ln is closed when Serve returns.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	if !s.addListener(ln) {
		ln.Close()
		return ErrServerClosed
	}
	defer s.removeListener(ln)

	// The watcher turns ctx's end into a Shutdown, and Serve waits for it so
	// that its caller knows the sessions are gone when Serve returns.
	serveDone := make(chan struct{})
	watchDone := make(chan struct{})
	go func() {
		defer close(watchDone)
		select {
		case <-ctx.Done():
			sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), orDuration(s.ShutdownTimeout, 5*time.Second))
			defer cancel()
			s.Shutdown(sctx)
		case <-serveDone:
		}
	}()
	defer func() { close(serveDone); <-watchDone }()

	var delay time.Duration // backoff after temporary accept errors, as net/http
	for {
		nc, err := ln.Accept()
		if err != nil {
			if s.closing.Load() {
				if ctx.Err() != nil {
					return nil
				}
				return ErrServerClosed
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				delay = min(max(2*delay, 5*time.Millisecond), time.Second)
				s.logger().Warn("mail: accept", "addr", ln.Addr().String(), "err", err, "retry", delay)
				time.Sleep(delay)
				continue
			}
			return fmt.Errorf("mail: accept on %s: %w", ln.Addr(), err)
		}
		delay = 0
		c := &conn{srv: s, nc: nc}
		if !s.addConn(c) {
			s.rejected.Add(1)
			// A fresh socket's send buffer is empty, so this write does not
			// block the accept loop; the deadline is for safety.
			nc.SetWriteDeadline(time.Now().Add(time.Second))
			fmt.Fprintf(nc, "421 %s Too many connections, try again later\r\n", s.hostname())
			nc.Close()
			continue
		}
		s.accepted.Add(1)
		go func() {
			defer s.removeConn(c)
			c.serve()
		}()
	}
}

// Shutdown stops the server: it closes the listeners, tells every session
// waiting for a command that the service is closing (421), lets sessions in
// the middle of a message finish it, and waits for all of them or for ctx to
// end, after which the remaining connections are closed and ctx's error is
// returned. It is safe to call more than once.
func (s *Server) Shutdown(ctx context.Context) error {
	s.closing.Store(true)
	s.mu.Lock()
	var errs []error
	for ln := range s.listeners {
		if err := ln.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
			errs = append(errs, fmt.Errorf("mail: close %s: %w", ln.Addr(), err))
		}
		delete(s.listeners, ln)
	}
	for c := range s.conns {
		c.wake()
	}
	s.mu.Unlock()

	// Poll as net/http does: sessions end on their own schedule.
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		s.mu.Lock()
		n := len(s.conns)
		s.mu.Unlock()
		if n == 0 {
			return errors.Join(errs...)
		}
		select {
		case <-ctx.Done():
			s.mu.Lock()
			for c := range s.conns {
				c.nc.Close()
			}
			s.mu.Unlock()
			return errors.Join(append(errs, fmt.Errorf("mail: shutdown: %w", ctx.Err()))...)
		case <-tick.C:
		}
	}
}

func (s *Server) addListener(ln net.Listener) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing.Load() {
		return false
	}
	if s.listeners == nil {
		s.listeners = make(map[net.Listener]struct{})
	}
	s.listeners[ln] = struct{}{}
	return true
}

func (s *Server) removeListener(ln net.Listener) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ln.Close()
	delete(s.listeners, ln)
}

// addConn registers c unless the server is closing or full.
func (s *Server) addConn(c *conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing.Load() || len(s.conns) >= orInt(s.MaxConns, 100) {
		return false
	}
	if s.conns == nil {
		s.conns = make(map[*conn]struct{})
	}
	s.conns[c] = struct{}{}
	s.active.Add(1)
	return true
}

func (s *Server) removeConn(c *conn) {
	c.nc.Close()
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.conns, c)
	s.active.Add(-1)
}

func (s *Server) hostname() string {
	if s.Hostname == "" {
		return "annuaire"
	}
	return s.Hostname
}

func (s *Server) logger() *slog.Logger {
	if s.Logger == nil {
		return slog.Default()
	}
	return s.Logger
}

func orInt(v, def int) int {
	if v <= 0 {
		return def
	}
	return v
}

func orDuration(v, def time.Duration) time.Duration {
	if v <= 0 {
		return def
	}
	return v
}
