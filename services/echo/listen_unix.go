//go:build unix

package echo

import (
	"context"
	"net"
	"os"

	"golang.org/x/sys/unix"
)

// Listen opens a TCP listening socket on address with a listen queue of
// backlog connections, making the course's calls in the course's order:
//
//	t = socket(AF_INET, SOCK_STREAM, 0)
//	t.bind((addr, port))
//	t.listen(backlog)          # the course's listen(5)
//
// net.Listen always asks for the system's maximum (net.core.somaxconn), so
// a small queue needs the calls made by hand; the socket is then handed to
// Go's runtime with net.FileListener. Linux caps backlog at somaxconn and
// queues up to backlog+1 established connections. backlog <= 0 means
// net.Listen and the system's default. network is "tcp", "tcp4" or "tcp6".
// On Windows, where Go cannot make a net.Listener of a socket made by
// hand, only backlog <= 0 works.
//
// Errors are *net.OpError with Op "listen", as net.Listen's, so
// errors.Is(err, syscall.EADDRINUSE) works and the message reads
// "listen tcp 127.0.0.1:7007: bind: address already in use".
func Listen(ctx context.Context, network, address string, backlog int) (net.Listener, error) {
	if backlog <= 0 {
		var lc net.ListenConfig
		return lc.Listen(ctx, network, address)
	}
	addr, err := net.ResolveTCPAddr(network, address)
	if err != nil {
		return nil, &net.OpError{Op: "listen", Net: network, Err: err}
	}
	opErr := func(call string, err error) error {
		return &net.OpError{Op: "listen", Net: network, Addr: addr, Err: os.NewSyscallError(call, err)}
	}
	family, sa, err := sockaddr(network, addr)
	if err != nil {
		return nil, &net.OpError{Op: "listen", Net: network, Addr: addr, Err: err}
	}

	t, err := socket(family) // t=socket()
	if err != nil {
		return nil, opErr("socket", err)
	}
	f := os.NewFile(uintptr(t), "echo listener") // closes t on every path
	defer f.Close()
	// SO_REUSEADDR: a restarted server may bind while old connections
	// linger in TIME_WAIT (net.Listen sets it too).
	if err := unix.SetsockoptInt(t, unix.SOL_SOCKET, unix.SO_REUSEADDR, 1); err != nil {
		return nil, opErr("setsockopt", err)
	}
	if family == unix.AF_INET6 && network == "tcp" && addr.IP == nil {
		// ":7007" serves IPv4 too, as with net.Listen.
		unix.SetsockoptInt(t, unix.IPPROTO_IPV6, unix.IPV6_V6ONLY, 0)
	}
	if err := unix.Bind(t, sa); err != nil { // t.bind()
		return nil, opErr("bind", err)
	}
	if err := unix.Listen(t, backlog); err != nil { // t.listen(backlog)
		return nil, opErr("listen", err)
	}
	ln, err := net.FileListener(f) // dups t: f's copy is closed on return
	if err != nil {
		return nil, &net.OpError{Op: "listen", Net: network, Addr: addr, Err: err}
	}
	return ln, nil
}

// sockaddr picks the socket family and the address bind wants.
func sockaddr(network string, a *net.TCPAddr) (int, unix.Sockaddr, error) {
	ip4 := a.IP.To4()
	switch {
	case network == "tcp4" || (network == "tcp" && ip4 != nil && len(a.IP) > 0):
		sa := &unix.SockaddrInet4{Port: a.Port}
		if ip4 != nil {
			copy(sa.Addr[:], ip4)
		} else if len(a.IP) > 0 {
			return 0, nil, &net.AddrError{Err: "not an IPv4 address", Addr: a.IP.String()}
		}
		return unix.AF_INET, sa, nil
	default:
		sa := &unix.SockaddrInet6{Port: a.Port}
		if len(a.IP) > 0 {
			if ip4 != nil && network == "tcp6" {
				return 0, nil, &net.AddrError{Err: "not an IPv6 address", Addr: a.IP.String()}
			}
			copy(sa.Addr[:], a.IP.To16())
		}
		if a.Zone != "" {
			ifi, err := net.InterfaceByName(a.Zone)
			if err != nil {
				return 0, nil, err
			}
			sa.ZoneId = uint32(ifi.Index)
		}
		return unix.AF_INET6, sa, nil
	}
}
