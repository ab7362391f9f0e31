//go:build unix

package authority

import (
	"syscall"

	"golang.org/x/sys/unix"
)

// slowNetwork is a net.Dialer's Control that asks for small TCP segments
// (536 bytes, IPv4's default MSS), as a secondary across a network would
// get, and an 8 KB receive buffer: the window then opens in small steps,
// at the pace of the reader.
func slowNetwork(network, address string, c syscall.RawConn) error {
	var err error
	c.Control(func(fd uintptr) {
		err = unix.SetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_MAXSEG, 536)
		if err == nil {
			err = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUF, 8<<10)
		}
	})
	return err
}
