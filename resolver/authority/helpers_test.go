package authority

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/annuaire/annuaire/registry"
)

const testZone = "svc.internal."

// newTestRegistry returns a registry holding one of everything the zone
// can say:
//
//	ns       127.0.0.53                   the NS host
//	a        127.0.0.1 ::1                echo tcp 7007 "Echo One", echo udp 7007, telnet tcp 23 (critical)
//	b        127.0.0.2                    echo tcp 7008, http tcp 8080 "My Web.v2", smtp tcp 25
//	echo     192.0.2.7                    a host named like a service
//	www.lab  10.0.0.1                     lab is an empty non-terminal
func newTestRegistry(tb testing.TB) *registry.Registry {
	tb.Helper()
	reg := registry.New(2026112401)
	hosts := []registry.Host{
		{Name: "ns", Addrs: addrs("127.0.0.53"), TTL: 60},
		{Name: "a", Addrs: addrs("127.0.0.1", "::1"), TTL: 30},
		{Name: "b", Addrs: addrs("127.0.0.2")},
		{Name: "echo", Addrs: addrs("192.0.2.7")},
		{Name: "www.lab", Addrs: addrs("10.0.0.1")},
	}
	insts := []registry.Instance{
		{Service: "echo", Proto: "tcp", Host: "a", Port: 7007, Priority: 10, Weight: 5, Label: "Echo One", TXT: map[string]string{"v": "1", "path": "/"}},
		{Service: "echo", Proto: "udp", Host: "a", Port: 7007},
		{Service: "echo", Proto: "tcp", Host: "b", Port: 7008, Priority: 20, TTL: 20},
		{Service: "http", Proto: "tcp", Host: "b", Port: 8080, Label: "My Web.v2"},
		{Service: "smtp", Proto: "tcp", Host: "b", Port: 25, Priority: 10},
		{ID: "telnet", Service: "telnet", Proto: "tcp", Host: "a", Port: 23},
	}
	_, err := reg.Update(func(tx *registry.Tx) error {
		for _, h := range hosts {
			if err := tx.PutHost(h); err != nil {
				return err
			}
		}
		for _, i := range insts {
			if _, err := tx.PutInstance(i); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		tb.Fatal(err)
	}
	if err := reg.SetHealth("telnet", registry.Critical); err != nil {
		tb.Fatal(err)
	}
	return reg
}

func addrs(ss ...string) []netip.Addr {
	var out []netip.Addr
	for _, s := range ss {
		out = append(out, netip.MustParseAddr(s))
	}
	return out
}

// startServer serves s over UDP and TCP on the same loopback port, as
// dig +tcp expects, and stops it when the test ends.
func startServer(tb testing.TB, s *Server) string {
	tb.Helper()
	var (
		pc  net.PacketConn
		ln  net.Listener
		err error
	)
	for range 20 { // the UDP port the OS picks may be taken in TCP
		pc, err = net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			tb.Fatal(err)
		}
		ln, err = net.Listen("tcp", pc.LocalAddr().String())
		if err == nil {
			break
		}
		pc.Close()
	}
	if err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	errs := make(chan error, 2)
	go func() { errs <- s.ServePacket(ctx, pc) }()
	go func() { errs <- s.Serve(ctx, ln) }()
	tb.Cleanup(func() {
		cancel()
		for range 2 {
			select {
			case err := <-errs:
				if err != nil && !errors.Is(err, ErrServerClosed) {
					tb.Errorf("serve: %v", err)
				}
			case <-time.After(10 * time.Second):
				tb.Error("server did not stop")
				return
			}
		}
	})
	return pc.LocalAddr().String()
}
