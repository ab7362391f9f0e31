package resolver

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"os/exec"
	"slices"
	"strings"
	"testing"

	"github.com/annuaire/annuaire/authority"
	"github.com/annuaire/annuaire/internal/testenv"
	"github.com/annuaire/annuaire/registry"
)

// serveAuthority serves reg's zone svc.internal. over UDP on a loopback
// port until the test ends, and returns its address.
func serveAuthority(t *testing.T, reg *registry.Registry) string {
	t.Helper()
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
	// The socket is bound: questions wait in it until ServePacket reads.
	return pc.LocalAddr().String()
}

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
	r := &Resolver{Server: serveAuthority(t, reg)}
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

// TestLookupSRVName resolves a service by the name of its SRV record, as
// dig shows it and a user copies it: "_echo._udp.svc.internal." is
// "echo/udp", relative to the zone or not, in any case. It used to be
// read as a host name: an A question, NODATA, "no such service".
func TestLookupSRVName(t *testing.T) {
	dig := testenv.NeedTool(t, "dig")
	reg := registry.New(1)
	for proto, port := range map[string]uint16{"tcp": 7007, "udp": 7008} {
		_, err := reg.Register(registry.Instance{Service: "echo", Proto: proto, Host: "box", Port: port},
			&registry.Host{Name: "box", Addrs: []netip.Addr{netip.MustParseAddr("127.0.0.1")}, Auto: true})
		if err != nil {
			t.Fatal(err)
		}
	}
	server := serveAuthority(t, reg)
	host, port, _ := net.SplitHostPort(server)
	r := &Resolver{Server: server}
	for proto, want := range map[string]string{"tcp": "127.0.0.1:7007", "udp": "127.0.0.1:7008"} {
		out, err := exec.Command(dig, "@"+host, "-p", port, "+noall", "+answer", "_echo._"+proto+".svc.internal.", "SRV").CombinedOutput()
		if err != nil {
			t.Fatalf("dig: %v\n%s", err, out)
		}
		owner := strings.Fields(string(out))[0] // "_echo._udp.svc.internal."
		for _, name := range []string{owner, strings.TrimSuffix(owner, "."), "_echo._" + proto, "_ECHO._" + strings.ToUpper(proto) + ".svc.internal"} {
			c, err := r.Lookup(t.Context(), name)
			if err != nil {
				t.Errorf("%s: %v\n%s", name, err, c.Text())
				continue
			}
			if c.Service != "echo" || c.Proto != proto || len(c.Candidates) != 1 || c.Candidates[0].HostPort() != want {
				t.Errorf("%s: service %s/%s, candidates %+v; want echo/%s at %s\n%s", name, c.Service, c.Proto, c.Candidates, proto, want, c.Text())
			}
		}
	}
}

// TestLookupInstance resolves a DNS-SD instance by its name (RFC 6763
// section 4.3), one with spaces, a dot and UTF-8 in its label, written
// with the dot escaped as a user types it, relative to the zone or not:
// its SRV, its target's address, and its TXT kept as the bytes served.
func TestLookupInstance(t *testing.T) {
	_, port := listenEcho(t)
	reg := registry.New(1)
	txt := registry.TXT{"txtvers=1", "note=étage \"2\"", "bin=\x00\xff", "duplex"}
	_, err := reg.Register(registry.Instance{Service: "ipp", Proto: "tcp", Host: "printer", Port: uint16(port), TTL: 10,
		Label: "Imprimante Salle 2.3 (étage)", TXT: txt, Subtypes: []string{"_printer"}},
		&registry.Host{Name: "printer", Addrs: []netip.Addr{netip.MustParseAddr("127.0.0.1")}, TTL: 10})
	if err != nil {
		t.Fatal(err)
	}
	r := &Resolver{Server: serveAuthority(t, reg)}
	for _, name := range []string{`Imprimante Salle 2\.3 (étage)._ipp._tcp`, `IMPRIMANTE Salle 2\.3 (étage)._IPP._tcp.svc.internal.`, `Imprimante\032Salle\0322\.3\032\(\195\169tage\)._ipp._tcp`} {
		c, err := r.Lookup(t.Context(), name)
		if err != nil {
			t.Fatalf("%s: %v\n%s", name, err, c.Text())
		}
		if want := fmt.Sprintf("127.0.0.1:%d", port); len(c.Candidates) != 1 || c.Candidates[0].HostPort() != want || c.Service != "ipp" {
			t.Errorf("%s: candidates %+v, want %s\n%s", name, c.Candidates, want, c.Text())
		}
		if !slices.Equal(c.TXT, txt) {
			t.Errorf("%s: TXT %q, want %q", name, c.TXT, txt)
		}
		b, _ := json.Marshal(c)
		if !bytes.Contains(b, []byte(`"txt":["txtvers=1","note=étage \"2\"",{"base64":"YmluPQD/"},"duplex"]`)) {
			t.Errorf("%s: JSON %s", name, b)
		}
	}
	if _, err := r.Lookup(t.Context(), `Imprimante Salle 2\.4 (étage)._ipp._tcp`); err == nil {
		t.Error("an instance that does not exist was found")
	}
	// "café" and "CAFÉ" are two names: only ASCII folds.
	if _, err := r.Lookup(t.Context(), `IMPRIMANTE SALLE 2\.3 (ÉTAGE)._ipp._tcp`); err == nil {
		t.Error("É folded to é")
	}
}
