// Package authority is annuaire's authoritative DNS server: it answers for
// one zone and the reverse zones of its addresses, over UDP and TCP, from
// the registry. It listens, dispatches
// each request by opcode and counts what it answers; the parts live below:
//
//	zone      a name becomes records: the zone, answers, AXFR's records
//	wire      the fast path: packed answers, the UDP loop, TCP buffering
//	update    RFC 2136 UPDATE
//	tsig      RFC 8945 keys and signatures
//	transfer  AXFR, IXFR and NOTIFY to secondaries
//
// Every answer is the one the zone gives from the registry's newest
// snapshot: a change is visible to the next query. Plain queries are
// answered from packed answers that the wire cache carries across
// snapshots for as long as no change touches what they read.
package authority

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/miekg/dns"

	"github.com/annuaire/annuaire/authority/transfer"
	"github.com/annuaire/annuaire/authority/tsig"
	"github.com/annuaire/annuaire/authority/update"
	"github.com/annuaire/annuaire/authority/wire"
	"github.com/annuaire/annuaire/authority/zone"
	"github.com/annuaire/annuaire/internal/lograte"
	"github.com/annuaire/annuaire/registry"
)

// Server answers DNS questions for one zone from a registry. Its exported
// fields are read when Serve or ServePacket is first called and must not
// change afterwards.
type Server struct {
	// Registry is the source of every answer. Required.
	Registry *registry.Registry

	// Zone is the zone's origin, a fully qualified name; "" means
	// registry.DefaultZone.
	Zone string

	// NS are the name servers of every zone served, each fully qualified
	// or relative to Zone; nil means "ns". The first is the SOA's MNAME.
	// The addresses of those inside Zone come from the registry hosts of
	// those names, which the caller registers.
	NS []string

	// SOA are the SOA timers of every zone served; a zero field means its
	// zone.DefaultTimers value.
	SOA zone.Timers

	// Reverse lists the networks whose reverse zones are served, on octet
	// or nibble boundaries; nil means the /24 or /64 of every registered
	// address (registry.ReverseNet).
	Reverse []netip.Prefix

	// Logger receives one line per update, transfer and notable error,
	// never one per query; nil means slog.Default(). Lines that anyone
	// can cause with a packet (a refused update, a transfer, a NOTIFY)
	// are aggregated by source: a few at once, then one per
	// remoteLogEvery with a count of those dropped (package lograte).
	Logger *slog.Logger

	// ReadTimeout is how long a new TCP connection has to send its first
	// request; zero means 2 seconds. WriteTimeout is how long an answer
	// may go without a byte of it leaving (a slow reader is served as long
	// as it reads); zero means 2 seconds. IdleTimeout closes a TCP
	// connection that waits that long for its next request; zero means 10
	// seconds (RFC 7766 section 6.2.3 suggests tens of seconds). It
	// shrinks once more than half of MaxTCPConns are taken.
	ReadTimeout, WriteTimeout, IdleTimeout time.Duration

	// MaxTCPConns caps the TCP connections served at once, and
	// MaxTCPConnsPerClient those of one IPv4 address or IPv6 /64; zero
	// means 1000 and 100. A new connection is always admitted: the idlest
	// one (of its client, if it holds its share) is closed to make room,
	// as unbound and Knot do (see wire.TCPConfig).
	MaxTCPConns, MaxTCPConnsPerClient int

	// Keys may sign RFC 2136 updates (TSIG, RFC 8945); see tsig.ParseKey.
	// With none, every UPDATE is REFUSED.
	Keys []tsig.Key

	// AllowTransfer lists the networks that may AXFR and IXFR the zone
	// without a TSIG key; nil means only requests signed with one of Keys.
	AllowTransfer []netip.Prefix

	// Notify lists the secondaries (HOST:PORT) that RunNotify tells of
	// every change (RFC 1996).
	Notify []string

	// Metrics, if not nil, counts requests, transfers and notifies.
	Metrics *Metrics

	// RateLimit limits the UDP answers each client network gets, against
	// reflection attacks (see wire.RateLimit); nil means DefaultRateLimit.
	// One whose Rate is 0 limits nothing. Every answer carries a server
	// cookie (RFC 7873, RFC 9018) when the query has a COOKIE option, and
	// a query with a valid one is never limited.
	RateLimit *wire.RateLimit

	once  sync.Once // sets the fields below from the exported ones
	err   error     // the configuration's
	z     *zone.Zone
	cache *wire.Cache
	upd   *update.Handler
	xfr   *transfer.Handler

	runs sync.WaitGroup // one per running Serve or ServePacket

	mu     sync.Mutex // guards the fields below
	closed bool
	quit   chan struct{}   // closed by Shutdown
	drain  context.Context // Shutdown's ctx: how long in-flight queries get
}

// DefaultRateLimit is the rate limiting of a Server whose RateLimit is
// nil: 200 answers a second of each kind per client network, as NSD
// does; every second answer past that is sent truncated (a real client
// retries over TCP), the others dropped; loopback clients are exempt.
// Nothing can forge a loopback source from the network (the kernel drops
// such packets), so a server on loopback limits nothing, and one on all
// addresses limits its remote clients but not dig and dnsperf run beside
// it.
func DefaultRateLimit() wire.RateLimit {
	return wire.RateLimit{Rate: 200, Slip: 2, Exempt: []netip.Prefix{
		netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128")}}
}

// ErrServerClosed is returned by Serve and ServePacket after Shutdown.
var ErrServerClosed = errors.New("authority: server closed")

// Lines caused by remote packets, per message and source: remoteLogBurst
// at once, then one per remoteLogEvery; ten times that from all sources.
const (
	remoteLogBurst = 5
	remoteLogEvery = 10 * time.Second
)

// drainTimeout bounds how long queries in flight may take to be answered
// once the context given to Serve ends. DNS queries take microseconds:
// the wait is for the TCP writes to slow clients.
const drainTimeout = 5 * time.Second

// Serve answers DNS over TCP on ln until ctx is done or Shutdown is called,
// then closes ln.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	// Connections answer plain queries from the wire cache as they read
	// them, and buffer: pipelined queries and their answers take one
	// system call per burst rather than three per query.
	s.setup()
	bl := s.cache.Listener(ln, wire.TCPConfig{MaxConns: s.MaxTCPConns, MaxConnsPerClient: s.MaxTCPConnsPerClient,
		ReadTimeout: s.ReadTimeout, IdleTimeout: s.IdleTimeout, WriteTimeout: s.WriteTimeout})
	return s.run(ctx, &dns.Server{Listener: bl, Net: "tcp"}, "tcp", ln.Addr())
}

// ServePacket answers DNS over UDP on pc until ctx is done or Shutdown is
// called, then closes pc.
//
// Plain queries are answered from the wire cache by the loop that reads
// pc (batched on Linux), and every other datagram by the full path.
func (s *Server) ServePacket(ctx context.Context, pc net.PacketConn) error {
	s.setup()
	l := s.cache.PacketLoop(pc)
	l.Start()
	err := s.run(ctx, &dns.Server{PacketConn: l.Slow(), Net: "udp"}, "udp", pc.LocalAddr())
	l.Slow().Close() // run has closed it, unless it never started
	l.Wait()
	return err
}

func (s *Server) run(ctx context.Context, srv *dns.Server, network string, addr net.Addr) error {
	if s.err != nil {
		closeSocket(srv)
		return s.err
	}
	srv.Handler = s
	srv.MsgAcceptFunc = accept
	srv.MaxTCPQueries = -1 // miekg's default of 128 breaks persistent clients
	srv.UDPSize = 4096     // read buffer: miekg's default of 512 cuts padded EDNS queries
	srv.ReadTimeout = orDefault(s.ReadTimeout, 2*time.Second)
	srv.WriteTimeout = orDefault(s.WriteTimeout, 2*time.Second)
	idle := orDefault(s.IdleTimeout, 10*time.Second)
	srv.IdleTimeout = func() time.Duration { return idle }
	if len(s.Keys) > 0 {
		srv.TsigProvider = tsig.Keyring(s.Keys) // miekg verifies, the handlers decide
	}
	started := make(chan struct{})
	srv.NotifyStartedFunc = func() { close(started) }

	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		closeSocket(srv) // as net/http does: the socket was given to us
		return ErrServerClosed
	}
	if s.quit == nil {
		s.quit = make(chan struct{})
	}
	quit := s.quit
	s.runs.Add(1)
	s.mu.Unlock()
	defer s.runs.Done()

	done := make(chan error, 1)
	go func() { done <- srv.ActivateAndServe() }()

	var drain context.Context
	select {
	case err := <-done:
		if s.isClosed() {
			return ErrServerClosed
		}
		if err == nil {
			err = errors.New("stopped")
		}
		return fmt.Errorf("authority: serve %s %s: %w", network, addr, err)
	case <-ctx.Done():
		var cancel context.CancelFunc
		drain, cancel = context.WithTimeout(context.Background(), drainTimeout)
		defer cancel()
	case <-quit:
		s.mu.Lock()
		drain = s.drain
		s.mu.Unlock()
	}

	// miekg's ShutdownContext refuses a server that has not started yet
	// and would leave it running: wait until it has, or has failed.
	select {
	case <-started:
	case <-done:
		return s.stopErr()
	}
	srv.ShutdownContext(drain) // closes the socket; an expired drain only cuts the wait
	<-done
	return s.stopErr()
}

func closeSocket(srv *dns.Server) {
	if srv.Listener != nil {
		srv.Listener.Close()
	}
	if srv.PacketConn != nil {
		srv.PacketConn.Close()
	}
}

func (s *Server) stopErr() error {
	if s.isClosed() {
		return ErrServerClosed
	}
	return nil
}

// Shutdown stops every Serve and ServePacket call: sockets close, and
// queries in flight get until ctx ends to be answered. It returns when
// they have all returned, or with ctx's error. Calling it twice is safe.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	if !s.closed {
		s.closed = true
		s.drain = ctx
		if s.quit == nil {
			s.quit = make(chan struct{})
		}
		close(s.quit)
	}
	s.mu.Unlock()

	stopped := make(chan struct{})
	go func() { // ends when the runs do, which the closed quit guarantees
		s.runs.Wait()
		close(stopped)
	}()
	select {
	case <-stopped:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (s *Server) isClosed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}

// setup reads the configuration, once: the exported fields must not
// change afterwards.
func (s *Server) setup() {
	s.once.Do(func() {
		c := zone.Config{Origin: s.Zone, NS: s.NS, SOA: s.SOA, Reverse: s.Reverse}
		if err := c.Check(); err != nil {
			s.err = fmt.Errorf("authority: %w", err)
		}
		s.z = zone.New(c)
		s.cache = wire.New(s.Registry, s.z, s.Metrics.wireCounters())
		limit := DefaultRateLimit()
		if s.RateLimit != nil {
			limit = *s.RateLimit
		}
		s.cache.Guard(wire.NewCookies(), limit)
		// A remote packet may cause a log line, and a flood of them as
		// many: those lines are aggregated.
		remote := slog.New(lograte.New(s.logger().Handler(), remoteLogBurst, remoteLogEvery))
		s.upd = &update.Handler{Registry: s.Registry, Zone: s.z, Keys: s.Keys, Logger: s.logger(), Refusals: remote}
		s.xfr = &transfer.Handler{Registry: s.Registry, Zone: s.z, Keys: s.Keys, AllowTransfer: s.AllowTransfer,
			Logger: s.logger(), Refusals: remote, Count: s.Metrics.transfer}
	})
}

// ServeDNS dispatches a request by opcode; it makes Server a dns.Handler.
// Plain queries that Serve and ServePacket read are answered before they
// get here, from the wire cache; the answers are the same.
func (s *Server) ServeDNS(w dns.ResponseWriter, r *dns.Msg) {
	if r.Response {
		return // accept drops these already; this guards direct callers
	}
	s.setup()
	tcp := isTCP(w)
	w, done := s.Metrics.observe(w, r, tcp)
	defer done()
	w = s.cache.Writer(w, r, tcp) // cookies, rate limiting
	switch r.Opcode {
	case dns.OpcodeQuery:
		if len(r.Question) == 1 && (r.Question[0].Qtype == dns.TypeAXFR || r.Question[0].Qtype == dns.TypeIXFR) {
			s.xfr.Transfer(w, r, tcp)
			return
		}
		if r.IsTsig() != nil && len(s.Keys) > 0 {
			// A signed query gets a signed answer (RFC 8945 section 5.3):
			// nsupdate signs the SOA query that finds the zone.
			if tsig.Check(w, r) != nil {
				return
			}
			w = tsig.SigningWriter(w, r)
		}
		w.WriteMsg(s.z.Respond(s.Registry.Snapshot(), r, tcp))
	case dns.OpcodeUpdate:
		s.upd.ServeDNS(w, r)
	case dns.OpcodeNotify:
		s.xfr.RefuseNotify(w, r)
	default:
		// RFC 1035 section 4.1.1; the OPT record is owed even here
		// (RFC 6891 section 7).
		w.WriteMsg(zone.ErrorReply(r, tcp, dns.RcodeNotImplemented))
	}
}

// RunNotify tells every secondary in Notify that a zone changed (RFC
// 1996), until ctx ends: see transfer.Notifier.Run. It returns at once
// when Notify is empty.
//
// It is separate from Serve because Serve runs once per transport; the
// caller starts it once, next to them.
func (s *Server) RunNotify(ctx context.Context) error {
	s.setup()
	if s.err != nil {
		return s.err
	}
	n := &transfer.Notifier{Registry: s.Registry, Zone: s.z, Secondaries: s.Notify, Keys: s.Keys,
		Logger: s.logger(), Count: s.Metrics.notify}
	return n.Run(ctx)
}

// isTCP reports whether w is a stream: anything that is not a datagram
// socket gets whole answers.
func isTCP(w dns.ResponseWriter) bool {
	a := w.LocalAddr()
	if a == nil {
		return false
	}
	switch a.(type) {
	case *net.UDPAddr:
		return false
	case *net.TCPAddr:
		return true
	}
	n := a.Network()
	return n != "udp" && n != "udp4" && n != "udp6" && n != "unixgram"
}

// accept lets every request through to ServeDNS, which judges it whole.
// miekg's default MsgAcceptFunc answers NOTIMP to UPDATE (RFC 2136 updates
// carry many records in the answer and authority sections) and FORMERR to
// unknown opcodes and question counts without the OPT record an EDNS
// requestor is owed (RFC 6891 section 7); RFC 8906 section 8.1.4 wants
// NOTIMP for an unknown opcode even with no question.
func accept(dh dns.Header) dns.MsgAcceptAction {
	const qr = 1 << 15
	if dh.Bits&qr != 0 {
		return dns.MsgIgnore // never answer a response (RFC 1035 section 7.3)
	}
	opcode := int(dh.Bits>>11) & 0xF
	if opcode == dns.OpcodeUpdate && dh.Qdcount != 1 {
		return dns.MsgReject // RFC 2136 section 2.3: ZOCOUNT must be 1
	}
	return dns.MsgAccept
}

func orDefault(d, def time.Duration) time.Duration {
	if d > 0 {
		return d
	}
	return def
}

func (s *Server) logger() *slog.Logger {
	if s.Logger != nil {
		return s.Logger
	}
	return slog.Default()
}
