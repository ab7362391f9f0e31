package echo

import (
	"context"
	"net"

	"github.com/annuaire/annuaire/services/netserver"
)

// ServePacket echoes UDP datagrams on pc, each one sent back whole to its
// sender (RFC 862: "When a datagram is received, the data from it is sent
// back in an answering datagram"), in every mode: UDP has no connection to
// accept, so the designs differ only for TCP. The loop is netserver's
// recvfrom/sendto, whose Guard keeps a forged source from making echo
// answer itself or another small service forever (CVE-1999-0103). It
// closes pc and keeps netserver's stop contract.
func (s *Server) ServePacket(ctx context.Context, pc net.PacketConn) error {
	return s.packets().ServePacket(ctx, pc)
}

// packets sets up the datagram server on first use; Stats reads its
// counters without it, so a scrape before ServePacket fixes no setting.
func (s *Server) packets() *netserver.PacketServer {
	s.udpOnce.Do(func() {
		s.udp.Name = "echo"
		s.udp.Reply = func(req []byte) []byte { return req }
		s.udp.MaxDatagram = s.MaxDatagram
		s.udp.Guard = s.Guard
		s.udp.Logger = s.Logger
	})
	return &s.udp
}
