package main

import (
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
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
