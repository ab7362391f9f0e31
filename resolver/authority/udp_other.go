//go:build !linux

package authority

import (
	"net"
	"sync"
)

// packetLoop is the batched UDP loop of Linux (udp_linux.go); elsewhere
// miekg/dns's own loop serves every datagram, through the wire cache all
// the same.
type packetLoop struct {
	slow net.PacketConn
	wg   sync.WaitGroup
}

func (s *Server) packetLoop(net.PacketConn) *packetLoop { return nil }

func (l *packetLoop) start() {}
