// Package tcpserver runs a goroutine per TCP connection under a cap and
// shuts them down gracefully; the protocol spoken on each connection is the
// caller's.
package tcpserver

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

// ErrServerClosed is returned by Serve after Shutdown.
var ErrServerClosed = errors.New("tcpserver: server closed")

// Server accepts connections and hands each to Handle in its own
// goroutine. Its zero value needs only Handle; the exported fields must
// not change once Serve or Shutdown has been called.
type Server struct {
	// Handle speaks the protocol on one connection; the connection is
	// closed and its context cancelled when Handle returns.
	Handle func(c *Conn)

	// Name begins every error and log line, as "mail: accept on …"; ""
	// means "tcpserver".
	Name string

	// MaxConns caps simultaneous connections; zero means 100.
	MaxConns int

	// Refusal is written to a connection beyond MaxConns before it is
	// closed; "" writes nothing.
	Refusal string

	// ErrClosed is what Serve returns after Shutdown; nil means
	// ErrServerClosed.
	ErrClosed error

	// ShutdownTimeout is how long Serve lets connections finish once its
	// context ends; zero means 5 seconds.
	ShutdownTimeout time.Duration

	// Logger gets a line per temporary accept error; nil means
	// slog.Default().
	Logger *slog.Logger

	closing atomic.Bool // set once by Shutdown; read without mu by connections

	mu        sync.Mutex // guards the fields below
	listeners map[net.Listener]struct{}
	conns     map[*Conn]struct{}

	accepted, rejected, active atomic.Int64
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
	return Stats{
		Accepted: s.accepted.Load(),
		Rejected: s.rejected.Load(),
		Active:   s.active.Load(),
	}
}

// Serve accepts connections on ln until ctx ends or Shutdown is called.
// When ctx ends it shuts the server down, gives connections
// ShutdownTimeout to finish, and returns nil; after Shutdown it returns
// ErrClosed. ln is closed when Serve returns.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	if !s.addListener(ln) {
		ln.Close()
		return s.errClosed()
	}
	defer s.removeListener(ln)

	// The watcher turns ctx's end into a Shutdown, and Serve waits for it so
	// that its caller knows the connections are gone when Serve returns.
	serveDone := make(chan struct{})
	watchDone := make(chan struct{})
	go func() {
		defer close(watchDone)
		select {
		case <-ctx.Done():
			timeout := s.ShutdownTimeout
			if timeout <= 0 {
				timeout = 5 * time.Second
			}
			sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), timeout)
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
				return s.errClosed()
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				delay = min(max(2*delay, 5*time.Millisecond), time.Second)
				cmp.Or(s.Logger, slog.Default()).Warn(s.name()+": accept", "addr", ln.Addr().String(), "err", err, "retry", delay)
				time.Sleep(delay)
				continue
			}
			return fmt.Errorf("%s: accept on %s: %w", s.name(), ln.Addr(), err)
		}
		delay = 0
		cctx, cancel := context.WithCancel(ctx)
		c := &Conn{Conn: nc, srv: s, ctx: cctx, cancel: cancel}
		if !s.addConn(c) {
			cancel()
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
		s.accepted.Add(1)
		go func() {
			defer s.removeConn(c)
			s.Handle(c)
		}()
	}
}

// Shutdown stops the server: it closes the listeners, wakes every
// connection waiting between two requests (see Conn.StartIdle), lets the
// others finish what they are doing, and waits for all of them to end or
// for ctx to end, after which the remaining connections are cancelled and
// closed and ctx's error is returned. It is safe to call more than once.
func (s *Server) Shutdown(ctx context.Context) error {
	s.closing.Store(true)
	s.mu.Lock()
	var errs []error
	for ln := range s.listeners {
		if err := ln.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
			errs = append(errs, fmt.Errorf("%s: close %s: %w", s.name(), ln.Addr(), err))
		}
		delete(s.listeners, ln)
	}
	for c := range s.conns {
		c.wake()
	}
	s.mu.Unlock()

	// Poll as net/http does: connections end on their own schedule.
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
				c.cancel()
				c.Close()
			}
			s.mu.Unlock()
			return errors.Join(append(errs, fmt.Errorf("%s: shutdown: %w", s.name(), ctx.Err()))...)
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
func (s *Server) addConn(c *Conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	maxConns := s.MaxConns
	if maxConns <= 0 {
		maxConns = 100
	}
	if s.closing.Load() || len(s.conns) >= maxConns {
		return false
	}
	if s.conns == nil {
		s.conns = make(map[*Conn]struct{})
	}
	s.conns[c] = struct{}{}
	s.active.Add(1)
	return true
}

func (s *Server) removeConn(c *Conn) {
	c.cancel()
	c.Close()
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.conns, c)
	s.active.Add(-1)
}

func (s *Server) errClosed() error { return cmp.Or(s.ErrClosed, ErrServerClosed) }

func (s *Server) name() string { return cmp.Or(s.Name, "tcpserver") }
