package resolver

import (
	"fmt"
	"net"
	"net/netip"
	"testing"

	"github.com/annuaire/annuaire/authority"
	"github.com/annuaire/annuaire/registry"
)

// TestAuthority looks up a registered service through annuaire's own
// authoritative server, as `annuaire lookup` does against `annuaire serve`.
func TestAuthority(t *testing.T) {
	_, port := listenEcho(t)
	reg := registry.New(1)
	_, err := reg.Register(registry.Instance{Service: "echo", Proto: "tcp", Host: "box", Port: uint16(port)},
		&registry.Host{Name: "box", Addrs: []netip.Addr{netip.MustParseAddr("127.0.0.1")}, Auto: true})
	if err != nil {
		t.Fatal(err)
	}
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &authority.Server{Registry: reg, Zone: "svc.internal."}
	done := make(chan error, 1)
	go func() { done <- srv.ServePacket(t.Context(), pc) }()
	t.Cleanup(func() {
		srv.Shutdown(t.Context())
		<-done
	})

	r := &Resolver{Server: pc.LocalAddr().String()}
	// The socket is bound: questions wait in it until ServePacket reads.
	c, err := r.Lookup(t.Context(), "echo")
	if err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprintf("127.0.0.1:%d", port)
	if c.Candidates[0].HostPort() != want {
		t.Fatalf("candidates %+v, want %s\n%s", c.Candidates, want, c.Text())
	}
	conn, err := r.DialChain(t.Context(), "tcp", c)
	if err != nil {
		t.Fatal(err)
	}
	roundTrip(t, conn)
	t.Logf("\n%s", c.Text())

	_, err = r.Lookup(t.Context(), "telnet")
	if err == nil || err.Error() != "telnet: _telnet._tcp.svc.internal. SRV: NXDOMAIN; telnet.svc.internal. A: NXDOMAIN; well-known port 23/tcp, but no host is registered" {
		t.Errorf("telnet: %v", err)
	}
}
