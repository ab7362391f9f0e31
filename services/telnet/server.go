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
	"sync/atomic"
	"time"

	"github.com/annuaire/annuaire/services/netserver"
)

// Console is the console: it runs a session on each connection a
// netserver.Server hands it (Handle). Its zero value works (answering "not
// available" to list and lookup); the exported fields must not change
// once a connection has been handled.
type Console struct {
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

	// IdleTimeout closes a session that sends no complete line for that
	// long; zero means 5 minutes.
	IdleTimeout time.Duration

	// WriteTimeout bounds each write to the client; zero means 30 seconds.
	WriteTimeout time.Duration

	// CommandTimeout bounds each List or Lookup call; zero means 10
	// seconds.
	CommandTimeout time.Duration

	commands atomic.Int64
}

// Handle runs one console session on c, as a netserver.Server's Handle.
// When the server shuts down, a session waiting for a command is told
// that the console is closing, and a command that runs finishes first.
func (s *Console) Handle(c *netserver.Conn) { (&conn{srv: s, nc: c}).serve() }

// Refusal is what a client beyond the server's connection cap is told, as
// a netserver.Server's Refusal.
const Refusal = "annuaire console: too many connections, try again later\r\n"

// Commands counts the command lines run; it is safe for concurrent use.
func (s *Console) Commands() int64 { return s.commands.Load() }
