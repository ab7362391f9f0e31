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
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/annuaire/annuaire/services/tcpserver"
)

// Server receives mail over SMTP. Its zero value is ready to use; the
// exported fields must not change once Serve or Shutdown has been called.
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

	once sync.Once        // sets up tcp from the fields above
	tcp  tcpserver.Server // the connections

	store store

	delivered atomic.Int64
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
	st := s.tcp.Stats()
	return Stats{Accepted: st.Accepted, Rejected: st.Rejected, Active: st.Active, Delivered: s.delivered.Load()}
}

// Serve accepts SMTP sessions on ln until ctx ends or Shutdown is called.
// When ctx ends it shuts the server down, gives sessions ShutdownTimeout to
// finish, and returns nil; after Shutdown it returns ErrServerClosed.
// ln is closed when Serve returns.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	return s.conns().Serve(ctx, ln)
}

// Shutdown stops the server: it closes the listeners, tells every session
// waiting for a command that the service is closing (421), lets sessions in
// the middle of a message finish it, and waits for all of them or for ctx to
// end, after which the remaining connections are closed and ctx's error is
// returned. It is safe to call more than once.
func (s *Server) Shutdown(ctx context.Context) error {
	return s.conns().Shutdown(ctx)
}

// conns sets up the connection server on first use; Stats reads its
// counters without it, so a scrape before Serve fixes no setting.
func (s *Server) conns() *tcpserver.Server {
	s.once.Do(func() {
		s.tcp.Name = "mail"
		s.tcp.MaxConns = orInt(s.MaxConns, 100)
		s.tcp.Refusal = "421 " + s.hostname() + " Too many connections, try again later\r\n"
		s.tcp.ErrClosed = ErrServerClosed
		s.tcp.ShutdownTimeout = s.ShutdownTimeout
		s.tcp.Logger = s.Logger
		s.tcp.Handle = func(tc *tcpserver.Conn) { (&conn{srv: s, nc: tc}).serve() }
	})
	return &s.tcp
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
