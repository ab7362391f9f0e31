// Package echo is the echo service of RFC 862 — every byte received is sent
// back — served over TCP in the designs of the sockets course and over
// UDP as a plain recvfrom/sendto loop.
//
// The designs, one file each, follow the course's diagrams:
//
//	iterative.go        one client at a time; the others wait in the listen queue
//	concurrent.go       a goroutine per connection (the default)
//	process_unix.go     a child process per connection: the "veilleur" accepts,
//	                    an "exécutant" serves (the Go equivalent of fork)
//	select_unix.go      one goroutine, non-blocking sockets and select(2) over
//	                    the listener and every connection: the course's last
//	                    slide, on the server side
//	epoll_linux.go      the same loop waiting in Linux's epoll instead
//
// Listen (listen_unix.go) makes the listening socket with the course's
// calls in the course's order — socket, bind, listen(backlog) — so that the
// size of the listen queue is the one asked for.
//
// Every design runs on Linux; epoll mode needs Linux's epoll, and process
// and select modes a Unix system (see Modes).
package echo

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/annuaire/annuaire/services/netserver"
)

// Defaults for the zero Server.
const (
	DefaultMaxConns    = 256
	DefaultIdleTimeout = 5 * time.Minute
	DefaultMaxChildren = 64
)

// ErrServerClosed is returned by Serve and ServePacket after Shutdown:
// netserver's, which is net/http's.
var ErrServerClosed = netserver.ErrServerClosed

// Server echoes what its clients send. The zero value is ready to use: it
// serves in "concurrent" mode with the defaults below. Exported fields are
// read when Serve or ServePacket is called and must not change afterwards.
// It keeps netserver's stop contract, with netserver.Drain doing the
// stopping in every design.
type Server struct {
	// Mode picks the design that serves TCP: "concurrent" (the default when
	// empty), "iterative", "process", "select" or "epoll" ("poll" is
	// another name for "epoll", the design's first). UDP is the same loop
	// in every mode.
	Mode string

	// MaxConns caps the TCP connections served at once in concurrent,
	// select and epoll modes; 0 means DefaultMaxConns (256). At the cap the server stops
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
	// netserver.DefaultMaxDatagram (65535). Longer datagrams come back
	// truncated.
	MaxDatagram int

	// Guard decides which senders of datagrams get their echo: never a
	// well-known port nor a datagram service of this process, so that a
	// forged source cannot make echo answer itself or another service
	// forever, and at a bounded rate per source (see netserver.Guard). Nil
	// means a Guard of this server's own.
	Guard *netserver.Guard

	// DrainTimeout is how long connections get to send back what they
	// have read once Serve's context ends; 0 means
	// netserver.DefaultDrainTimeout (5 seconds).
	DrainTimeout time.Duration

	// Logger receives a line per connection at debug level and notable
	// errors (a child that crashed) at warn level; nil discards them.
	Logger *slog.Logger

	accepted atomic.Int64 // TCP connections accepted, in every mode
	active   atomic.Int64 // TCP connections being served now

	drain netserver.Drain // TCP: serve loops, connections, children, select and epoll loops

	udpOnce sync.Once // sets up udp from the fields above
	udp     netserver.PacketServer
}

// Stats are the server's counters, for a metrics exporter.
type Stats struct {
	Accepted  int64 // TCP connections accepted since the start
	Active    int64 // TCP connections being served now
	Datagrams int64 // UDP datagrams echoed since the start
	Refused   int64 // UDP datagrams not echoed (see Guard)
}

// Stats returns the server's counters.
func (s *Server) Stats() Stats {
	udp := s.udp.Stats()
	return Stats{Accepted: s.accepted.Load(), Active: s.active.Load(), Datagrams: udp.Replied, Refused: udp.Refused}
}

// Serve echoes TCP connections accepted on ln, in the design s.Mode names,
// and closes ln when it returns, under netserver's stop contract: when its
// context ends or Shutdown is called, no more accepts, reads are cut
// short, and each connection gets to send back what it has read — for
// DrainTimeout, or until Shutdown's context ends — before it is closed
// (a child of process mode is sent SIGINT, then killed).
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
	case "select":
		serve = s.serveSelect
	case "epoll", "poll":
		serve = s.serveEpoll
	}
	return s.drain.Run(ctx, s.DrainTimeout, func() { ln.Close() }, func() error { return serve(ln) })
}

// Modes returns the designs this system can run, in the course's order:
// all five on Linux; no "epoll" on other Unix systems; on Windows, which
// has neither fork nor epoll and whose select takes sockets only,
// "iterative" and "concurrent". CheckMode also takes "poll", the first
// name of "epoll".
func Modes() []string {
	var ms []string
	for _, m := range []string{"iterative", "concurrent", "process", "select", "epoll"} {
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
//	"epoll" needs Linux's epoll(7); on darwin use iterative, concurrent, process or select
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
	case "select":
		return selectUnsupported
	case "epoll", "poll":
		return epollUnsupported
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

// Shutdown stops the server under netserver's stop contract: listeners
// close, blocked reads return at once (a deadline in the past; SIGINT for
// process mode's children), and the connections in flight get until ctx
// ends to send back what they have read; then the rest are closed and the
// children killed.
func (s *Server) Shutdown(ctx context.Context) error {
	return errors.Join(s.packets().Shutdown(ctx), s.drain.Shutdown(ctx))
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

// aLongTimeAgo is a deadline in the past: a blocked read returns at once.
var aLongTimeAgo = time.Unix(1, 0)

// echoConn is the service itself (RFC 862: "any data received is sent
// back"), shared by the iterative, concurrent and process designs: read,
// write back, until the client closes, goes idle, or stopping is set.
//
// A stop sets stopping and then a read deadline in the past; checking
// stopping after each deadline renewal means the renewal can never undo
// the stop.
func echoConn(c net.Conn, idle time.Duration, stopping func() bool) {
	buf := make([]byte, 32<<10)
	for {
		c.SetReadDeadline(time.Now().Add(idle))
		if stopping() {
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
