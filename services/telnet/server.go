// Package telnet is annuaire's console, reached with a telnet client: it
// prints the directory and follows a name through the chain name → address
// → port, the way "annuaire lookup" does.
//
// It speaks the part of the telnet protocol a console needs: the Network
// Virtual Terminal of RFC 854 (CRLF line endings, IAC escaping) and the
// option negotiation of RFC 855, refusing every option (DO is answered WONT,
// WILL is answered DONT, and WONT/DONT are never answered, so two refusing
// parties cannot loop, RFC 1143). It negotiates nothing first, so the
// client stays in its default line-by-line mode with local echo, which is
// what a console wants. Subnegotiations are skipped, AYT is answered, EC
// and EL edit the line, IP drops it.
package telnet

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

// Server is the console. Its zero value works (answering "not available" to
// list and lookup); the exported fields are read when a connection starts
// and must not change while the server runs.
type Server struct {
	// List returns the directory listing for the list command; nil makes
	// list say it is not available.
	List func(ctx context.Context) (string, error)

	// Lookup returns the chain for one name, as "annuaire lookup NAME"
	// prints it; nil makes lookup say it is not available.
	Lookup func(ctx context.Context, name string) (string, error)

	// Banner is printed when a client connects; "" means a banner that
	// names the console and the chain that led the client to it.
	Banner string

	// Prompt precedes each command; "" means "annuaire> ".
	Prompt string

	// MaxLine caps a command line in bytes; a longer line is discarded
	// with a message. Zero means 1024.
	MaxLine int

	// MaxConns caps simultaneous connections; a client beyond it is told
	// so and closed. Zero means 50.
	MaxConns int

	// IdleTimeout closes a session that sends no complete line for that
	// long; zero means 5 minutes.
	IdleTimeout time.Duration

	// WriteTimeout bounds each write to the client; zero means 30 seconds.
	WriteTimeout time.Duration

	// CommandTimeout bounds each List or Lookup call; zero means 10
	// seconds.
	CommandTimeout time.Duration

	// ShutdownTimeout is how long Serve lets sessions finish once its
	// context ends; zero means 5 seconds.
	ShutdownTimeout time.Duration

	// Logger gets a line per notable error; nil means slog.Default().
	Logger *slog.Logger

	closing atomic.Bool // set once by Shutdown; read without mu by sessions

	mu        sync.Mutex // guards the fields below
	listeners map[net.Listener]struct{}
	conns     map[*conn]struct{}

	accepted, rejected, active, commands atomic.Int64
}

// ErrServerClosed is returned by Serve after Shutdown.
var ErrServerClosed = errors.New("telnet: server closed")

// Stats counts a server's connections and commands since it was created.
type Stats struct {
	Accepted int64 `json:"accepted"` // connections served
	Rejected int64 `json:"rejected"` // connections refused (MaxConns)
	Active   int64 `json:"active"`   // connections open now
	Commands int64 `json:"commands"` // command lines run
}

// Stats returns the server's counters; it is safe for concurrent use.
func (s *Server) Stats() Stats {
	return Stats{
		Accepted: s.accepted.Load(),
		Rejected: s.rejected.Load(),
		Active:   s.active.Load(),
		Commands: s.commands.Load(),
	}
}

// Serve accepts console sessions on ln until ctx ends or Shutdown is called.
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
				s.logger().Warn("telnet: accept", "addr", ln.Addr().String(), "err", err, "retry", delay)
				time.Sleep(delay)
				continue
			}
			return fmt.Errorf("telnet: accept on %s: %w", ln.Addr(), err)
		}
		delay = 0
		cctx, cancel := context.WithCancel(ctx)
		c := &conn{srv: s, nc: nc, ctx: cctx, cancel: cancel}
		if !s.addConn(c) {
			cancel()
			s.rejected.Add(1)
			// A fresh socket's send buffer is empty, so this write does not
			// block the accept loop; the deadline is for safety.
			nc.SetWriteDeadline(time.Now().Add(time.Second))
			fmt.Fprintf(nc, "annuaire console: too many connections, try again later\r\n")
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
// waiting for a command that the console is closing, lets a command that
// runs finish, and waits for all of them or for ctx to
// end, after which the remaining connections are closed and ctx's error is
// returned. It is safe to call more than once.
func (s *Server) Shutdown(ctx context.Context) error {
	s.closing.Store(true)
	s.mu.Lock()
	var errs []error
	for ln := range s.listeners {
		if err := ln.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
			errs = append(errs, fmt.Errorf("telnet: close %s: %w", ln.Addr(), err))
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
				c.cancel()
				c.nc.Close()
			}
			s.mu.Unlock()
			return errors.Join(append(errs, fmt.Errorf("telnet: shutdown: %w", ctx.Err()))...)
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
	if s.closing.Load() || len(s.conns) >= orInt(s.MaxConns, 50) {
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
	c.cancel()
	c.nc.Close()
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.conns, c)
	s.active.Add(-1)
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
