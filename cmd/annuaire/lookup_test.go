package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"strings"
	"testing"

	"github.com/annuaire/annuaire/internal/testenv"
	"github.com/miekg/dns"
)

// startZoneDNS serves zone-file text over UDP on loopback: the records of
// the name and type asked, the addresses of SRV targets in the additional
// section, NXDOMAIN with the SOA otherwise. Enough for the commands; the
// resolver package tests the chain against richer servers.
func startZoneDNS(t *testing.T, zone string) string {
	t.Helper()
	var rrs []dns.RR
	zp := dns.NewZoneParser(strings.NewReader(zone), "svc.internal.", "")
	for rr, ok := zp.Next(); ok; rr, ok = zp.Next() {
		rrs = append(rrs, rr)
	}
	if err := zp.Err(); err != nil {
		t.Fatal(err)
	}
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h := dns.HandlerFunc(func(w dns.ResponseWriter, req *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(req)
		m.Authoritative = true
		q := req.Question[0]
		for _, rr := range rrs {
			if strings.EqualFold(rr.Header().Name, q.Name) && rr.Header().Rrtype == q.Qtype {
				m.Answer = append(m.Answer, rr)
			}
			if srv, ok := rr.(*dns.SRV); ok && strings.EqualFold(rr.Header().Name, q.Name) && q.Qtype == dns.TypeSRV {
				for _, a := range rrs {
					if _, isA := a.(*dns.A); isA && strings.EqualFold(a.Header().Name, srv.Target) {
						m.Extra = append(m.Extra, a)
					}
				}
			}
		}
		if len(m.Answer) == 0 {
			m.Rcode = dns.RcodeNameError
			m.Ns = []dns.RR{rrs[0]} // the SOA comes first
		}
		w.WriteMsg(m)
	})
	srv := &dns.Server{PacketConn: pc, Handler: h}
	started := make(chan struct{})
	srv.NotifyStartedFunc = func() { close(started) }
	go srv.ActivateAndServe()
	<-started
	t.Cleanup(func() { srv.Shutdown() })
	return pc.LocalAddr().String()
}

// startEcho runs an echo server on loopback and returns its port.
func startEcho(t *testing.T) int {
	t.Helper()
	return testenv.Port(testenv.ServeTCP(t, testenv.Echo))
}

func echoZone(port int) string {
	return fmt.Sprintf(`$TTL 60
@          IN SOA ns hostmaster 1 3600 600 86400 30
box        IN A   127.0.0.1
_echo._tcp IN SRV 0 0 %d box
`, port)
}

// run runs the command in-process with the given stdin and environment.
func run(t *testing.T, stdin string, envv map[string]string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	var out, errb bytes.Buffer
	e := &env{stdin: strings.NewReader(stdin), stdout: &out, stderr: &errb, getenv: func(k string) string { return envv[k] }}
	code = exitCode(e, Run(t.Context(), e, args))
	return out.String(), errb.String(), code
}

func TestLookupCommand(t *testing.T) {
	port := startEcho(t)
	server := startZoneDNS(t, echoZone(port))
	envv := map[string]string{"ANNUAIRE_SERVER": server}

	out, errs, code := run(t, "", envv, "lookup", "echo")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if code != 0 || !strings.HasSuffix(lines[len(lines)-1], fmt.Sprintf("127.0.0.1:%d", port)) {
		t.Fatalf("exit %d\n%s%s", code, out, errs)
	}
	t.Logf("annuaire lookup echo\n%s", out)

	out, _, code = run(t, "", nil, "lookup", "--server", server, "--zone", "svc.internal.", "--json", "echo")
	var c struct {
		Service    string
		Candidates []struct{ Address string }
	}
	if err := json.Unmarshal([]byte(out), &c); code != 0 || err != nil || c.Service != "echo" || c.Candidates[0].Address != "127.0.0.1" {
		t.Errorf("--json: exit %d, %v\n%s", code, err, out)
	}

	out, errs, code = run(t, "", envv, "lookup", "telnet")
	if code != 1 || !strings.Contains(errs, "telnet: _telnet._tcp.svc.internal. SRV: NXDOMAIN; telnet.svc.internal. A: NXDOMAIN; well-known port 23/tcp, but no host is registered") {
		t.Errorf("telnet: exit %d\n%s%s", code, out, errs)
	}
	t.Logf("annuaire lookup telnet\n%s%s", out, errs)

	// -h says what NAME may be, and annuaire's own convention for mail.
	out, _, code = run(t, "", envv, "lookup", "-h")
	if code != 0 || !strings.Contains(out, "the _smtp._tcp SRV record first") || !strings.Contains(out, "RFC 5321 section 5.1: its MX") {
		t.Errorf("lookup -h: exit %d\n%s", code, out)
	}

	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"lookup", "--bogus", "echo"}, "unknown flag --bogus"},
		{[]string{"lookup"}, "want one NAME, got 0 arguments"},
		{[]string{"lookup", "a", "b"}, "want one NAME, got 2 arguments"},
	} {
		out, errs, code = run(t, "", envv, tc.args...)
		if want := "annuaire lookup: " + tc.want + "\ntry 'annuaire lookup --help'\n"; code != 2 || errs != want || out != "" {
			t.Errorf("%q: exit %d, stdout %q, stderr %q; want 2 and %q", tc.args, code, out, errs, want)
		}
	}
}
