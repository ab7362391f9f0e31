package netserver

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// DefaultMaxConns caps a Server's connections when MaxConns is zero.
const DefaultMaxConns = 100

// Server accepts TCP connections and hands each to Handle in its own
// goroutine, under the package's stop contract. Its zero value needs only
// Handle; the exported fields must not change once Serve or Shutdown has
// been called.
type Server struct {
	// Handle speaks the protocol on one connection; the connection is
	// closed and its context cancelled when Handle returns.
	Handle func(c *Conn)

	// Name begins every error and log line, as "mail: accept on …"; ""
	// means "netserver".
	Name string

	// MaxConns caps simultaneous connections; zero means DefaultMaxConns.
	MaxConns int

	// Refusal is written to a connection beyond MaxConns before it is
	// closed; "" writes nothing.
	Refusal string

	// DrainTimeout is how long connections get to finish once Serve's
	// context ends; zero means DefaultDrainTimeout.
	DrainTimeout time.Duration

	// Logger gets a line per temporary accept error; nil discards them.
	Logger *slog.Logger

	drain Drain

	mu    sync.Mutex // guards conns
	conns int

	accepted, rejected atomic.Int64
}

// Stats counts a server's connections since it was created.
type Stats struct {
	Accepted int64 // connections handed to Handle
	Rejected int64 // connections refused (MaxConns)
	Active   int64 // connections open now
}

// Stats returns the server's counters; it is safe for concurrent use, even
// before Serve.
func (s *Server) Stats() Stats {
	s.mu.Lock()
	active := s.conns
	s.mu.Unlock()
	return Stats{Accepted: s.accepted.Load(), Rejected: s.rejected.Load(), Active: int64(active)}
}

// Serve accepts connections on ln and closes it when it returns, under
// the package's stop contract.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	defer ln.Close()
	return s.drain.Run(ctx, s.DrainTimeout, func() { ln.Close() }, func() error {
		return s.accept(ctx, ln)
	})
}

// accept is the accept loop; it ends when ln is closed.
func (s *Server) accept(ctx context.Context, ln net.Listener) error {
	var delay time.Duration // backoff after temporary accept errors, as net/http
	for {
		nc, err := ln.Accept()
		if err != nil {
			if s.drain.Stopping() {
				return err
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				delay = min(max(2*delay, 5*time.Millisecond), time.Second)
				s.logger().Warn(s.name()+": accept", "addr", ln.Addr().String(), "err", err, "retry", delay)
				time.Sleep(delay)
				continue
			}
			return fmt.Errorf("%s: accept on %s: %w", s.name(), ln.Addr(), err)
		}
		delay = 0
		if !s.take() {
			s.rejected.Add(1)
			if s.Refusal != "" {
				// A fresh socket's send buffer is empty, so this write does
				// not block the accept loop; the deadline is for safety.
				nc.SetWriteDeadline(time.Now().Add(time.Second))
				nc.Write([]byte(s.Refusal))
			}
			nc.Close()
			continue
		}
		// Not cancelled by ctx's end: that starts the drain, in which a
		// request in flight still gets DrainTimeout to finish.
		cctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
		c := &Conn{Conn: nc, drain: &s.drain, ctx: cctx, cancel: cancel}
		done, ok := s.drain.Add(c.wake, func() { cancel(); nc.Close() })
		if !ok {
			cancel()
			nc.Close()
			s.release()
			continue
		}
		s.accepted.Add(1)
		go func() {
			defer done() // last: Shutdown returns once the rest is undone
			defer s.release()
			defer nc.Close()
			defer cancel()
			s.Handle(c)
		}()
	}
}

// Shutdown stops the server under the package's stop contract: a
// connection waiting between two requests (see Conn.StartIdle) is woken,
// one in the middle of a request finishes it.
func (s *Server) Shutdown(ctx context.Context) error {
	if err := s.drain.Shutdown(ctx); err != nil {
		return fmt.Errorf("%s: shutdown: %w", s.name(), err)
	}
	return nil
}

// take counts a new connection unless the server is full.
func (s *Server) take() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.conns >= cmp.Or(max(s.MaxConns, 0), DefaultMaxConns) {
		return false
	}
	s.conns++
	return true
}

func (s *Server) release() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.conns--
}

func (s *Server) logger() *slog.Logger { return orDiscard(s.Logger) }

func (s *Server) name() string { return cmp.Or(s.Name, "netserver") }

// orDiscard is l, or a logger that discards when l is nil.
func orDiscard(l *slog.Logger) *slog.Logger {
	if l == nil {
		return slog.New(slog.DiscardHandler)
	}
	return l
}
