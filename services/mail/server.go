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
	"cmp"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/annuaire/annuaire/services/netserver"
)

// Receiver is the SMTP receiver: it speaks SMTP on each connection a
// netserver.Server hands it (Handle) and keeps the messages it receives.
// Its zero value is ready to use; the exported fields must not change once
// a connection has been handled.
type Receiver struct {
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

	// Logger gets one line per delivered message and per notable error;
	// nil discards them.
	Logger *slog.Logger

	store store

	delivered atomic.Int64
}

// Handle runs one SMTP session on c, as a netserver.Server's Handle. When
// the server shuts down, a session waiting for a command is told that the
// service is closing (421) and one in the middle of a message finishes it.
func (s *Receiver) Handle(c *netserver.Conn) { (&conn{srv: s, nc: c}).serve() }

// Refusal is what a client beyond the server's connection cap is told, as
// a netserver.Server's Refusal.
func (s *Receiver) Refusal() string {
	return "421 " + s.hostname() + " Too many connections, try again later\r\n"
}

// Delivered counts the messages accepted with 250; it is safe for
// concurrent use.
func (s *Receiver) Delivered() int64 { return s.delivered.Load() }

func (s *Receiver) hostname() string { return cmp.Or(s.Hostname, "annuaire") }

func (s *Receiver) logger() *slog.Logger {
	if s.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return s.Logger
}
