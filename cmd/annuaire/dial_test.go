package main

import (
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/annuaire/annuaire/internal/testenv"
	"github.com/annuaire/annuaire/services/echo"
)

func TestDialCommand(t *testing.T) {
	port := startEcho(t)
	envv := map[string]string{"ANNUAIRE_SERVER": startZoneDNS(t, echoZone(port))}

	out, errs, code := run(t, "bonjour\n", envv, "dial", "echo")
	if code != 0 || out != "bonjour\n" {
		t.Fatalf("exit %d, stdout %q\n%s", code, out, errs)
	}

	out, errs, code = run(t, "bonjour\n", envv, "dial", "--trace", "echo")
	if code != 0 || out != "bonjour\n" || !strings.Contains(errs, "_echo._tcp.svc.internal.") ||
		!strings.Contains(errs, fmt.Sprintf("remote 127.0.0.1:%d", port)) {
		t.Errorf("--trace: exit %d, stdout %q\n%s", code, out, errs)
	}
	t.Logf("annuaire dial --trace echo\n%s", errs)

	_, errs, code = run(t, "", envv, "dial", "nosuch")
	if code != 1 || !strings.Contains(errs, "nosuch: _nosuch._tcp.svc.internal. SRV: NXDOMAIN") {
		t.Errorf("nosuch: exit %d\n%s", code, errs)
	}
	_, _, code = run(t, "", envv, "dial", "--nope", "echo")
	if code != 2 {
		t.Errorf("bad flag: exit %d, want 2", code)
	}
}

// TestDialHalfClose: the server answers only after the client's EOF, as an
// HTTP/1.0 server or `sort` over the network would; the relay must
// half-close rather than close.
func TestDialHalfClose(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		b, _ := io.ReadAll(c) // until the client's FIN
		fmt.Fprintf(c, "got %d bytes\n", len(b))
	}()
	envv := map[string]string{"ANNUAIRE_SERVER": startZoneDNS(t, echoZone(ln.Addr().(*net.TCPAddr).Port))}
	out, errs, code := run(t, "GET / HTTP/1.0\r\n\r\n", envv, "dial", "echo")
	if code != 0 || out != "got 18 bytes\n" {
		t.Errorf("exit %d, stdout %q\n%s", code, out, errs)
	}
}

// TestDialWaitsInQueue: an iterative echo server (listen(1)) busy with a
// client that holds its connection. `annuaire dial` connects at once (the
// kernel queues the connection), waits as nc would, says so with
// --trace, and gets its echo when the first client leaves.
func TestDialWaitsInQueue(t *testing.T) {
	ln, err := echo.Listen(t.Context(), "tcp", "127.0.0.1:0", 1)
	if err != nil {
		t.Fatal(err)
	}
	srv := &echo.Server{Mode: "iterative"}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(t.Context(), ln) }()
	t.Cleanup(func() {
		srv.Shutdown(t.Context())
		<-done
	})
	port := ln.Addr().(*net.TCPAddr).Port

	// The first client, served: its echo comes back, and it stays.
	first, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer first.Close()
	io.WriteString(first, "premier\n")
	if _, err := io.ReadFull(first, make([]byte, 8)); err != nil {
		t.Fatal(err)
	}
	leave := time.AfterFunc(2*time.Second, func() { first.Close() })
	defer leave.Stop()

	envv := map[string]string{"ANNUAIRE_SERVER": startZoneDNS(t, echoZone(port))}
	out, errs, code := run(t, "second\n", envv, "dial", "--trace", "echo")
	t.Logf("annuaire dial --trace echo\n%s", errs)
	if code != 0 || out != "second\n" {
		t.Fatalf("exit %d, stdout %q", code, out)
	}
	connected, waiting, firstByte := strings.Index(errs, "connected: "), strings.Index(errs, "waiting: "), strings.Index(errs, "first byte from")
	if connected < 0 || waiting < connected || firstByte < waiting || !strings.Contains(errs, "may be serving another client") {
		t.Errorf("--trace should say connected, then waiting, then the first byte")
	}
}

// TestDialTraceRace: --trace shows each connection attempt of the race
// with its start, the blackholed ones cancelled when the live one wins.
func TestDialTraceRace(t *testing.T) {
	port := startEcho(t)
	for _, ip := range []string{"127.0.0.2", "127.0.0.3"} {
		if ln, err := net.Listen("tcp", fmt.Sprintf("%s:%d", ip, port)); err != nil {
			t.Skipf("port %d taken on %s: %v", port, ip, err)
		} else {
			ln.Close()
		}
		testenv.Blackhole(t, fmt.Sprintf("%s:%d", ip, port))
	}
	envv := map[string]string{"ANNUAIRE_SERVER": startZoneDNS(t, fmt.Sprintf(`$TTL 60
@          IN SOA ns hostmaster 1 3600 600 86400 30
box        IN A   127.0.0.2
box        IN A   127.0.0.3
box        IN A   127.0.0.1
_echo._tcp IN SRV 0 0 %d box
`, port))}
	out, errs, code := run(t, "bonjour\n", envv, "dial", "--trace", "echo")
	t.Logf("annuaire dial --trace echo\n%s", errs)
	if code != 0 || out != "bonjour\n" {
		t.Fatalf("exit %d, stdout %q", code, out)
	}
	for _, want := range []string{
		fmt.Sprintf("connect    127.0.0.2:%d → cancelled: 127.0.0.1:%d connected first   (at +", port, port),
		fmt.Sprintf("connect    127.0.0.3:%d → cancelled: 127.0.0.1:%d connected first   (at +", port, port),
		fmt.Sprintf("connect    127.0.0.1:%d → 127.0.0.1:", port),
	} {
		if !strings.Contains(errs, want) {
			t.Errorf("--trace lacks %q", want)
		}
	}
}

// TestDialUDP dials a service by its UDP SRV record ("echo/udp", and the
// record's own name "_echo._udp") against a UDP echo in Python, where no
// TCP listens on that port: the datagrams go over UDP and come back, and
// the dial ends a second after stdin. It used to look up _echo._udp and
// connect over TCP: refused here, and with the hosted echo and daytime,
// which listen on one port for both, a TCP answer shown as the UDP one.
func TestDialUDP(t *testing.T) {
	port := testenv.PythonServer(t, `
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1], flush=True)
while True:
    data, peer = s.recvfrom(65535)
    s.sendto(data, peer)
`)
	envv := map[string]string{"ANNUAIRE_SERVER": startZoneDNS(t, fmt.Sprintf(`$TTL 60
@          IN SOA ns hostmaster 1 3600 600 86400 30
box        IN A   127.0.0.1
_echo._udp IN SRV 0 0 %d box
`, port))}
	for _, name := range []string{"echo/udp", "_echo._udp"} {
		out, errs, code := run(t, "bonjour\n", envv, "dial", "--trace", name)
		if code != 0 || out != "bonjour\n" || !strings.Contains(errs, fmt.Sprintf("first datagram from 127.0.0.1:%d", port)) {
			t.Errorf("dial %s: exit %d, stdout %q\n%s", name, code, out, errs)
		}
	}
}
