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
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/annuaire/annuaire/services/tcpserver"
)

// Server is the console. Its zero value works (answering "not available" to
// list and lookup); the exported fields must not change once Serve or
// Shutdown has been called.
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

	// Logger gets a line per temporary accept error; nil means
	// slog.Default().
	Logger *slog.Logger

	once sync.Once        // sets up tcp from the fields above
	tcp  tcpserver.Server // the connections

	commands atomic.Int64
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
	st := s.tcp.Stats()
	return Stats{Accepted: st.Accepted, Rejected: st.Rejected, Active: st.Active, Commands: s.commands.Load()}
}

// Serve accepts console sessions on ln until ctx ends or Shutdown is called.
// When ctx ends it shuts the server down, gives sessions ShutdownTimeout to
// finish, and returns nil; after Shutdown it returns ErrServerClosed.
// ln is closed when Serve returns.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	return s.conns().Serve(ctx, ln)
}

// Shutdown stops the server: it closes the listeners, tells every session
// waiting for a command that the console is closing, lets a command that
// runs finish, and waits for all of them or for ctx to
// end, after which the remaining connections are closed and ctx's error is
// returned. It is safe to call more than once.
func (s *Server) Shutdown(ctx context.Context) error {
	return s.conns().Shutdown(ctx)
}

// conns sets up the connection server on first use; Stats reads its
// counters without it, so a scrape before Serve fixes no setting.
func (s *Server) conns() *tcpserver.Server {
	s.once.Do(func() {
		s.tcp.Name = "telnet"
		s.tcp.MaxConns = orInt(s.MaxConns, 50)
		s.tcp.Refusal = "annuaire console: too many connections, try again later\r\n"
		s.tcp.ErrClosed = ErrServerClosed
		s.tcp.ShutdownTimeout = s.ShutdownTimeout
		s.tcp.Logger = s.Logger
		s.tcp.Handle = func(tc *tcpserver.Conn) { (&conn{srv: s, nc: tc}).serve() }
	})
	return &s.tcp
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
