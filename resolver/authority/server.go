// Package authority is annuaire's authoritative DNS server: it answers for
// one zone, over UDP and TCP, from a registry snapshot.
package authority

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/miekg/dns"

	"github.com/annuaire/annuaire/registry"
)

// DefaultZone is the zone served when Server.Zone is empty.
const DefaultZone = "svc.internal."

// Server answers DNS questions for one zone from a registry. Its exported
// fields are read when Serve or ServePacket is first called and must not
// change afterwards.
type Server struct {
	// Registry is the source of every answer. Required.
	Registry *registry.Registry

	// Zone is the zone's origin, a fully qualified name; "" means DefaultZone.
	Zone string

	// NS is the name server's host name relative to Zone; "" means "ns".
	// The zone's NS record points at it, and its A/AAAA come from the
	// registry host of that name, which the caller registers.
	NS string

	// Logger receives one line per update, transfer and notable error,
	// never one per query; nil means slog.Default().
	Logger *slog.Logger

	// ReadTimeout and WriteTimeout bound each TCP read and write; zero
	// means 2 seconds. IdleTimeout closes an idle TCP connection; zero
	// means 10 seconds (RFC 7766 section 6.2.3 suggests tens of seconds).
	ReadTimeout, WriteTimeout, IdleTimeout time.Duration

	mu      sync.Mutex // guards the fields below
	servers []*dns.Server
	closed  bool
}

// ErrServerClosed is returned by Serve and ServePacket after Shutdown.
var ErrServerClosed = errors.New("authority: server closed")

// Serve answers DNS over TCP on ln until ctx is done or Shutdown is called.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	return s.run(ctx, &dns.Server{Listener: ln, Net: "tcp"})
}

// ServePacket answers DNS over UDP on pc until ctx is done or Shutdown is
// called.
func (s *Server) ServePacket(ctx context.Context, pc net.PacketConn) error {
	return s.run(ctx, &dns.Server{PacketConn: pc, Net: "udp"})
}

func (s *Server) run(ctx context.Context, srv *dns.Server) error {
	srv.Handler = s
	srv.MsgAcceptFunc = accept
	srv.MaxTCPQueries = -1 // miekg's default of 128 breaks persistent clients
	srv.ReadTimeout = orDefault(s.ReadTimeout, 2*time.Second)
	srv.WriteTimeout = orDefault(s.WriteTimeout, 2*time.Second)
	idle := orDefault(s.IdleTimeout, 10*time.Second)
	srv.IdleTimeout = func() time.Duration { return idle }

	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return ErrServerClosed
	}
	s.servers = append(s.servers, srv)
	s.mu.Unlock()

	done := make(chan error, 1)
	go func() { done <- srv.ActivateAndServe() }()
	select {
	case err := <-done:
		if s.isClosed() {
			return ErrServerClosed
		}
		return err
	case <-ctx.Done():
		shutCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.ShutdownContext(shutCtx)
		<-done
		return nil
	}
}

// Shutdown stops every Serve and ServePacket call: listeners close, and
// queries in flight get until ctx ends to be answered.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.closed = true
	servers := s.servers
	s.servers = nil
	s.mu.Unlock()
	var errs []error
	for _, srv := range servers {
		if err := srv.ShutdownContext(ctx); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func (s *Server) isClosed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}

// ServeDNS dispatches a request by opcode; it makes Server a dns.Handler.
func (s *Server) ServeDNS(w dns.ResponseWriter, r *dns.Msg) {
	switch r.Opcode {
	case dns.OpcodeQuery:
		if len(r.Question) == 1 && (r.Question[0].Qtype == dns.TypeAXFR || r.Question[0].Qtype == dns.TypeIXFR) {
			s.transfer(w, r)
			return
		}
		s.query(w, r)
	case dns.OpcodeUpdate:
		s.update(w, r)
	case dns.OpcodeNotify:
		s.notify(w, r)
	default:
		m := new(dns.Msg)
		m.SetRcode(r, dns.RcodeNotImplemented)
		w.WriteMsg(m)
	}
}

// accept lets UPDATE through to ServeDNS, which miekg's default
// MsgAcceptFunc answers NOTIMP: RFC 2136 updates carry many records in the
// answer (prerequisite) and authority (update) sections.
func accept(dh dns.Header) dns.MsgAcceptAction {
	const qr = 1 << 15
	if dh.Bits&qr != 0 {
		return dns.MsgIgnore // never answer a response (RFC 1035 section 7.3)
	}
	opcode := int(dh.Bits>>11) & 0xF
	if opcode == dns.OpcodeUpdate {
		if dh.Qdcount != 1 { // RFC 2136 section 2.3: ZOCOUNT must be 1
			return dns.MsgReject
		}
		return dns.MsgAccept
	}
	return dns.DefaultMsgAcceptFunc(dh)
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
