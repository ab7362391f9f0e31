package main

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"slices"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/annuaire/annuaire/registry"
	"github.com/annuaire/annuaire/resolver"
	"github.com/annuaire/annuaire/services/daytime"
	"github.com/annuaire/annuaire/services/discard"
	"github.com/annuaire/annuaire/services/echo"
	"github.com/annuaire/annuaire/services/mail"
	"github.com/annuaire/annuaire/services/netserver"
	"github.com/annuaire/annuaire/services/telnet"
	"github.com/annuaire/annuaire/services/web"
)

// hostedService is one service annuaire hosts: one row of the table
// below, saying what inetd.conf says of a service (its name, its sockets,
// how it is served) and which flag places it.
type hostedService struct {
	service string   // its name in the directory: _service._proto
	flag    string   // --flag ADDR places it; "" disables it
	addr    string   // the flag's default
	help    string   // what it is: the flag's usage and the README's flag table
	protos  []string // "tcp", "udp" or both, bound on one port

	// listen opens its TCP listener; nil means net.ListenConfig's.
	listen func(ctx context.Context, f *serveFlags, addr string) (net.Listener, error)

	// start builds its server from the parts of the process.
	start func(p *process) hostedServer

	// maxConns is its cap on TCP connections at once when descriptors
	// are plenty; nil means netserver.DefaultMaxConns. perConns is the
	// most file descriptors it holds with a cap of n; nil means n. serve
	// shares its descriptor limit out by these (fdPlan).
	maxConns func(f *serveFlags) int
	perConns func(n int) int
}

// conns is the row's connection cap when descriptors are plenty.
func (h hostedService) conns(f *serveFlags) int {
	if h.maxConns == nil {
		return netserver.DefaultMaxConns
	}
	return h.maxConns(f)
}

// descriptors is the most file descriptors the row's server holds with a
// cap of n connections.
func (h hostedService) descriptors(n int) int {
	if h.perConns == nil {
		return n
	}
	return h.perConns(n)
}

// hostedServer is a hosted service's server as its row built it: how to
// serve each socket, shut it down, and count its connections.
type hostedServer struct {
	serve       func(context.Context, net.Listener) error   // its TCP socket
	servePacket func(context.Context, net.PacketConn) error // its UDP socket
	shutdown    func(context.Context) error
	stats       func() (accepted, open int64) // TCP connections, for /metrics
}

var (
	tcp    = []string{"tcp"}
	tcpUDP = []string{"tcp", "udp"}
)

// hostedServices is annuaire's inetd.conf. Adding a service is a folder
// under services/ and a row here: its flag, listening, registration in
// the directory, banner line, health, shutdown, connection metrics and
// row in the README's flag table all come from the row.
//
// Defaults are loopback and the well-known port made unprivileged (below
// 1024 a port needs root): the number written twice, or padded with zeros
// when it has one digit, so that the port still names the service.
func hostedServices() []hostedService {
	return []hostedService{
		{service: "http", flag: "web", addr: "127.0.0.1:8080", protos: tcp,
			help:     "the page, the HTTP API and /metrics",
			maxConns: func(f *serveFlags) int { return f.webMaxConns },
			perConns: web.Descriptors,
			start: func(p *process) hostedServer {
				n := p.fds.conns("web")
				s := &web.Server{
					Registry: p.reg, Zone: p.zone, Token: p.token, Logger: p.logger, DrainTimeout: p.flags.drain,
					Tokens: web.TokensIn(p.flags.data), TokenPrefix: p.flags.tokenPrefix,
					TokenMaxInstances: studentLimit(p.flags.tokenMaxInstances), TokenRate: p.flags.tokenRate,
					Lookup:       p.lookup.Lookup,
					ChainLookup:  p.fresh.Lookup,
					Messages:     p.mailbox.Messages,
					Health:       p.checker.Heartbeat,
					LastCheck:    p.checker.Result,
					Metrics:      p.metrics.Handler(),
					MaxConns:     n,
					AllowedHosts: allowedHosts(p.flags),
					// A cap per address above the total would be no cap.
					MaxConnsPerClient: min(p.flags.webPerClient, n),
				}
				return hostedServer{serve: s.Serve, shutdown: s.Shutdown, stats: s.Stats}
			}},
		{service: "echo", flag: "echo", addr: "127.0.0.1:7007", protos: tcpUDP,
			help:     "echo (RFC 862) in the --echo-mode design with a --backlog queue",
			maxConns: func(*serveFlags) int { return echo.DefaultMaxConns },
			listen: func(ctx context.Context, f *serveFlags, addr string) (net.Listener, error) {
				return echo.Listen(ctx, "tcp", addr, f.backlog)
			},
			start: func(p *process) hostedServer {
				n := p.fds.conns("echo")
				s := &echo.Server{Mode: p.flags.echoMode, Guard: p.guard, DrainTimeout: p.flags.drain, Logger: p.logger,
					MaxConns: n, MaxChildren: min(n, echo.DefaultMaxChildren)}
				return hostedServer{serve: s.Serve, servePacket: s.ServePacket, shutdown: s.Shutdown,
					stats: func() (int64, int64) { st := s.Stats(); return st.Accepted, st.Active }}
			}},
		{service: "smtp", flag: "mail", addr: "127.0.0.1:2525", protos: tcp,
			help: "the SMTP receiver (RFC 5321) that the zone's MX names",
			start: func(p *process) hostedServer {
				return small(p, "mail", p.mailbox.Handle, p.mailbox.Refusal(), nil)
			}},
		{service: "telnet", flag: "telnet", addr: "127.0.0.1:2323", protos: tcp,
			help: "the telnet console (RFC 854)",
			// Each console may run a lookup: two sockets more.
			perConns: func(n int) int { return 3 * n },
			start: func(p *process) hostedServer {
				c := &telnet.Console{
					List: func(ctx context.Context) (string, error) { return directoryText(p.reg.Snapshot(), p.zone), nil },
					Lookup: func(ctx context.Context, name string) (string, error) {
						chain, err := p.lookup.Lookup(ctx, name)
						if chain == nil {
							return "", err
						}
						return chain.Text(), err
					},
				}
				return small(p, "telnet", c.Handle, telnet.Refusal, nil)
			}},
		{service: "daytime", flag: "daytime", addr: "127.0.0.1:1313", protos: tcpUDP,
			help: "daytime (RFC 867)",
			start: func(p *process) hostedServer {
				return small(p, "daytime", daytime.Handle, "", daytime.Reply)
			}},
		{service: "discard", flag: "discard", addr: "127.0.0.1:9009", protos: tcpUDP,
			help: "discard (RFC 863)",
			start: func(p *process) hostedServer {
				return small(p, "discard", discard.Handle, "", nil)
			}},
	}
}

// small serves a protocol as inetd serves its internal services: handle
// on each TCP connection (in a goroutine of its own), reply to each
// datagram (nil: none), both under netserver's stop contract.
func small(p *process, name string, handle func(*netserver.Conn), refusal string, reply func([]byte) []byte) hostedServer {
	tcp := &netserver.Server{Name: name, Handle: handle, Refusal: refusal, DrainTimeout: p.flags.drain, Logger: p.logger,
		MaxConns: p.fds.conns(name)}
	udp := &netserver.PacketServer{Name: name, Reply: reply, Guard: p.guard, Logger: p.logger}
	return hostedServer{
		serve:       tcp.Serve,
		servePacket: udp.ServePacket,
		shutdown: func(ctx context.Context) error {
			udp.Shutdown(ctx) // nothing is in flight between two datagrams
			return tcp.Shutdown(ctx)
		},
		stats: func() (int64, int64) { st := tcp.Stats(); return st.Accepted, st.Active },
	}
}

// allowedHosts are the names the web server answers to on loopback,
// besides its zone's: --web-allow-host's and this machine's, which a
// browser on it may be given.
func allowedHosts(f *serveFlags) []string {
	names := slices.Clone(f.webAllowHosts)
	if name, err := os.Hostname(); err == nil && name != "" {
		names = append(names, name)
	}
	return names
}

// usage is the row's flag usage.
func (h hostedService) usage() string {
	return fmt.Sprintf("`address` of %s, registered as %s; \"\" disables it", h.help, strings.Join(h.names(), " and "))
}

// readmeRow is the row's line in the README's flag table.
func (h hostedService) readmeRow() string {
	return fmt.Sprintf("| `--%s` | `%s` | %s: `%s` |", h.flag, h.addr, h.help, strings.Join(h.names(), "` and `"))
}

// names are the SRV names the service is registered under.
func (h hostedService) names() []string {
	var names []string
	for _, proto := range h.protos {
		names = append(names, "_"+h.service+"._"+proto)
	}
	return names
}

// process is what the hosted services are built from: the parts of one
// "annuaire serve".
type process struct {
	flags   *serveFlags
	logger  *slog.Logger
	reg     *registry.Registry
	zone    string
	token   string
	checker *registry.Checker
	metrics *processMetrics
	// lookup resolves through annuaire's own DNS server; fresh does too,
	// without a cache, for the page's pictures of the chains.
	lookup, fresh *resolver.Resolver
	mailbox       *mail.Receiver   // what the smtp service receives and the page shows
	guard         *netserver.Guard // shared by every datagram service: none answers another
	fds           fdPlan           // the connection caps, within the file-descriptor limit
}

// hosting is a row enabled by its flag, at run time.
type hosting struct {
	row     hostedService
	sockets []*socket
	srv     hostedServer
}

// socket is one bound socket of a hosted service, registered as one
// instance whose health is the socket's own.
type socket struct {
	proto   string // "tcp" or "udp"
	ln      net.Listener
	pc      net.PacketConn
	id      string      // its instance in the directory
	serving atomic.Bool // its serve loop runs
}

func (s *socket) addr() net.Addr {
	if s.ln != nil {
		return s.ln.Addr()
	}
	return s.pc.LocalAddr()
}

func (s *socket) close() {
	if s.ln != nil {
		s.ln.Close()
	}
	if s.pc != nil {
		s.pc.Close()
	}
}

// serve runs the server's loop on the socket, marking it as serving for
// as long as the loop runs.
func (s *socket) serve(ctx context.Context, srv hostedServer) error {
	s.serving.Store(true)
	defer s.serving.Store(false)
	if s.ln != nil {
		return srv.serve(ctx, s.ln)
	}
	return srv.servePacket(ctx, s.pc)
}

// healthy reports whether the socket is served: its serve loop runs and
// the socket is open. Nothing is dialed: an iterative echo busy with one
// client, whose listen queue is full, is serving (issue 15), and a UDP
// socket cannot be checked by a TCP connect.
func (s *socket) healthy() bool { return s.serving.Load() && s.open() }

// open reports whether the socket is open.
func (s *socket) open() bool {
	var c any = s.pc
	if s.ln != nil {
		c = s.ln
	}
	sc, ok := c.(syscall.Conn)
	if !ok {
		return true // not an operating system's socket: the loop is all there is to see
	}
	rc, err := sc.SyscallConn()
	// Control fails once the socket is closed.
	return err == nil && rc.Control(func(uintptr) {}) == nil
}

// Hosted instances carry a ttl check that the process feeds itself: every
// hostedBeat, each socket that is served heartbeats its instance; one
// whose loop has ended or whose socket has closed leaves DNS within
// hostedTTL.
const (
	hostedTTL  = 10 * time.Second
	hostedBeat = hostedTTL / 5
)

// hostedCheck is the check a hosted instance is registered with.
func hostedCheck(ttl time.Duration) *registry.Check {
	return &registry.Check{Type: "ttl", Interval: registry.Duration(ttl)}
}

// heartbeat feeds the hosted instances' checks every period until ctx
// ends.
func heartbeat(ctx context.Context, checker *registry.Checker, sockets []*socket, every time.Duration) error {
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		for _, s := range sockets {
			if s.healthy() {
				checker.Heartbeat(s.id)
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
	}
}

// listenHosted binds a row's sockets on addr: TCP and UDP on the same
// port when it serves both.
func listenHosted(ctx context.Context, f *serveFlags, h hostedService, addr string) ([]*socket, error) {
	listenTCP := func(addr string) (net.Listener, error) {
		if h.listen != nil {
			return h.listen(ctx, f, addr)
		}
		var lc net.ListenConfig
		return lc.Listen(ctx, "tcp", addr)
	}
	var tcp, udp bool
	for _, proto := range h.protos {
		tcp, udp = tcp || proto == "tcp", udp || proto == "udp"
	}
	switch {
	case tcp && udp:
		ln, pc, err := listenPair(ctx, listenTCP, addr)
		if err != nil {
			return nil, err
		}
		return []*socket{{proto: "tcp", ln: ln}, {proto: "udp", pc: pc}}, nil
	case tcp:
		ln, err := listenTCP(addr)
		if err != nil {
			return nil, err
		}
		return []*socket{{proto: "tcp", ln: ln}}, nil
	default:
		var lc net.ListenConfig
		pc, err := lc.ListenPacket(ctx, "udp", addr)
		if err != nil {
			return nil, err
		}
		return []*socket{{proto: "udp", pc: pc}}, nil
	}
}

// studentLimit is --token-max-instances as web.Server takes it: there 0
// is the default and a negative number no limit; here 0 is no limit.
func studentLimit(n int) int {
	if n == 0 {
		return -1
	}
	return n
}
