package echo

import (
	"context"
	"net"
)

// ServePacket echoes UDP datagrams on pc, each one sent back whole to its
// sender (RFC 862: "When a datagram is received, the data from it is sent
// back in an answering datagram"), in every mode: UDP has no connection to
// accept, so the designs differ only for TCP. It closes pc and returns as
// Serve does: nil after ctx ends, ErrServerClosed after Shutdown.
func (s *Server) ServePacket(ctx context.Context, pc net.PacketConn) error {
	defer pc.Close()
	if !s.startServing(nil, pc) {
		return s.closedErr() // as in Serve
	}
	defer s.serving.Done()
	defer s.forget(nil, pc)
	stop := context.AfterFunc(ctx, s.drain)
	defer stop()

	size := s.MaxDatagram
	if size <= 0 {
		size = DefaultMaxDatagram
	}
	buf := make([]byte, size)
	for {
		n, from, err := pc.ReadFrom(buf) // recvfrom()
		if err != nil {
			if s.draining() {
				return s.closedErr()
			}
			return err
		}
		if _, err := pc.WriteTo(buf[:n], from); err != nil { // sendto()
			// One unreachable sender must not stop the service.
			s.logger().Debug("echo: udp reply", "to", from, "err", err)
			continue
		}
		s.datagrams.Add(1)
	}
}
