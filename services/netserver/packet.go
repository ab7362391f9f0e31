package netserver

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"net"
	"sync/atomic"
)

// DefaultMaxDatagram is the largest datagram a PacketServer reads whole
// when MaxDatagram is zero: as much as UDP's 16-bit length can say.
const DefaultMaxDatagram = 65535

// PacketServer answers the datagrams of a UDP socket one at a time — the
// course's recvfrom/sendto loop — under the package's stop contract. Its
// zero value reads and drops every datagram (discard); the exported fields
// must not change once ServePacket or Shutdown has been called.
type PacketServer struct {
	// Reply returns the answer to one datagram, sent back to its sender;
	// nil sends nothing, and so does a nil Reply. req is only valid during
	// the call; the answer may be req itself.
	Reply func(req []byte) []byte

	// Name begins every error and log line; "" means "netserver".
	Name string

	// MaxDatagram is the largest datagram read whole; zero means
	// DefaultMaxDatagram. Longer ones are truncated to it.
	MaxDatagram int

	// Guard decides which senders get an answer; nil means a Guard of this
	// server's own. The datagram services of one process share one, so
	// that none of them answers another (see Guard).
	Guard *Guard

	// Logger gets a line per refused datagram at debug level; nil discards
	// them.
	Logger *slog.Logger

	drain Drain
	own   Guard // the Guard when Guard is nil

	received, replied, refused atomic.Int64
}

// PacketStats counts a PacketServer's datagrams since it was created.
type PacketStats struct {
	Received int64 // datagrams read
	Replied  int64 // answers sent
	Refused  int64 // datagrams not answered by the Guard's rules
}

// Stats returns the server's counters; it is safe for concurrent use.
func (s *PacketServer) Stats() PacketStats {
	return PacketStats{Received: s.received.Load(), Replied: s.replied.Load(), Refused: s.refused.Load()}
}

// ServePacket answers datagrams on pc, which must be a *net.UDPConn, and
// closes pc when it returns, under the package's stop contract. Nothing
// is in flight between two datagrams, so a stop ends it at once.
func (s *PacketServer) ServePacket(ctx context.Context, pc net.PacketConn) error {
	defer pc.Close()
	uc, ok := pc.(*net.UDPConn)
	if !ok {
		return fmt.Errorf("%s: serving datagrams needs a *net.UDPConn, not %T", s.name(), pc)
	}
	return s.drain.Run(ctx, 0, func() { uc.SetReadDeadline(aLongTimeAgo) }, func() error {
		return s.loop(uc)
	})
}

// Shutdown stops the server under the package's stop contract.
func (s *PacketServer) Shutdown(ctx context.Context) error {
	if err := s.drain.Shutdown(ctx); err != nil {
		return fmt.Errorf("%s: shutdown: %w", s.name(), err)
	}
	return nil
}

func (s *PacketServer) loop(uc *net.UDPConn) error {
	g := s.Guard
	if g == nil {
		g = &s.own
	}
	port := uint16(uc.LocalAddr().(*net.UDPAddr).Port)
	g.addPort(port)
	defer g.removePort(port)

	buf := make([]byte, cmp.Or(max(s.MaxDatagram, 0), DefaultMaxDatagram))
	for {
		n, from, err := uc.ReadFromUDPAddrPort(buf) // recvfrom()
		if err != nil {
			if s.drain.Stopping() {
				return err
			}
			return fmt.Errorf("%s: read on %s: %w", s.name(), uc.LocalAddr(), err)
		}
		s.received.Add(1)
		if s.Reply == nil {
			continue
		}
		if why := g.refuse(from); why != "" {
			s.refuse(from.String(), why)
			continue
		}
		reply := s.Reply(buf[:n])
		if reply == nil {
			continue
		}
		if !g.spend(from.Addr(), len(reply)) {
			s.refuse(from.String(), "over its rate")
			continue
		}
		if _, err := uc.WriteToUDPAddrPort(reply, from); err != nil { // sendto()
			// One unreachable sender must not stop the service.
			s.logger().Debug(s.name()+": reply", "to", from.String(), "err", err)
			continue
		}
		s.replied.Add(1)
	}
}

func (s *PacketServer) refuse(from, why string) {
	s.refused.Add(1)
	s.logger().Debug(s.name()+": datagram not answered", "from", from, "why", why)
}

func (s *PacketServer) logger() *slog.Logger { return orDiscard(s.Logger) }

func (s *PacketServer) name() string { return cmp.Or(s.Name, "netserver") }
