package resolver

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/annuaire/annuaire/internal/testenv"
	"github.com/annuaire/annuaire/registry"
)

// testZone is svc.internal. with an echo service on box, whose port the
// tests fill in; telnet has a well-known port but no host.
const testZone = `$ORIGIN svc.internal.
$TTL 60
@               IN SOA  ns hostmaster 1 3600 600 86400 30
@               IN NS   ns
ns              IN A    127.0.0.1
box             IN A    127.0.0.1
_echo._tcp      10 IN SRV  0 0 %d box
_gone._tcp      IN SRV  0 0 0 .
_web._tcp       IN SRV  0 0 %d box
`

// listen returns a TCP listener on loopback that accepts and echoes, and
// stops with the test.
func listenEcho(t testing.TB) (net.Listener, int) {
	t.Helper()
	ln := testenv.ServeTCP(t, testenv.Echo)
	return ln, testenv.Port(ln)
}

// deadPort returns a loopback port nothing listens on.
func deadPort(t testing.TB) int {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	return p
}

func newTest(t testing.TB, zone string) (*zoneServer, *Resolver) {
	t.Helper()
	s := startZone(t, "svc.internal.", zone)
	return s, &Resolver{Server: s.Addr, Timeout: time.Second, DialTimeout: time.Second, intN: rand.New(rand.NewPCG(1, 2)).IntN}
}

func TestLookupSRV(t *testing.T) {
	_, port := listenEcho(t)
	s, r := newTest(t, fmt.Sprintf(testZone, port, port))
	c, err := r.Lookup(t.Context(), "echo")
	if err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprintf("127.0.0.1:%d", port)
	if len(c.Candidates) != 1 || c.Candidates[0].HostPort() != want {
		t.Fatalf("candidates %+v, want %s", c.Candidates, want)
	}
	// SRV, and AAAA: the additional section gave box's A but not its
	// AAAA, which RFC 8305 section 3 still asks for.
	if n := s.queries.Load(); n != 2 {
		t.Errorf("%d queries, want 2: SRV with the A in the additional section, then AAAA", n)
	}
	text := c.Text()
	lines := strings.Split(strings.TrimSpace(text), "\n")
	if !strings.HasSuffix(lines[len(lines)-1], want) {
		t.Errorf("last line %q does not end with %s", lines[len(lines)-1], want)
	}
	sum := fmt.Sprintf("echo → _echo._tcp.svc.internal. SRV 0 0 %d box.svc.internal. → box.svc.internal. A 127.0.0.1 → %s", port, want)
	if lines[len(lines)-1] != sum {
		t.Errorf("summary\n got %s\nwant %s", lines[len(lines)-1], sum)
	}
	t.Logf("\n%s", text)

	b, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	var shape map[string]any
	json.Unmarshal(b, &shape)
	for _, k := range []string{"name", "service", "proto", "zone", "steps", "candidates", "error"} {
		if _, ok := shape[k]; !ok {
			t.Errorf("JSON lacks %q: %s", k, b)
		}
	}
	step := shape["steps"].([]any)[1].(map[string]any)
	for _, k := range []string{"step", "question", "server", "answers", "rcode", "cached", "duration_us", "skipped", "error"} {
		if _, ok := step[k]; !ok {
			t.Errorf("step JSON lacks %q: %v", k, step)
		}
	}
	if step["question"] != "_echo._tcp.svc.internal. SRV" || step["answers"].([]any)[0] != fmt.Sprintf("_echo._tcp.svc.internal. 10 IN SRV 0 0 %d box.svc.internal.", port) {
		t.Errorf("SRV step %v", step)
	}
	cand := shape["candidates"].([]any)[0].(map[string]any)
	for _, k := range []string{"host", "address", "port", "priority", "weight"} {
		if _, ok := cand[k]; !ok {
			t.Errorf("candidate JSON lacks %q: %v", k, cand)
		}
	}
}

func TestLookupNoAdditional(t *testing.T) {
	s, r := newTest(t, fmt.Sprintf(testZone, 7, 7))
	s.noExtra.Store(true)
	c, err := r.Lookup(t.Context(), "echo.svc.internal.")
	if err != nil {
		t.Fatal(err)
	}
	if c.Candidates[0].HostPort() != "127.0.0.1:7" || s.queries.Load() != 3 {
		t.Errorf("candidates %v after %d queries, want 127.0.0.1:7 after SRV, A, AAAA", c.Candidates, s.queries.Load())
	}
}

func TestTruncatedRetriesTCP(t *testing.T) {
	s, r := newTest(t, fmt.Sprintf(testZone, 7, 7))
	s.truncate.Store(true)
	c, err := r.Lookup(t.Context(), "echo")
	if err != nil {
		t.Fatal(err)
	}
	if c.Candidates[0].Port != 7 || s.queries.Load() != 4 {
		t.Errorf("candidates %v after %d queries, want port 7 after UDP then TCP for SRV, then for AAAA", c.Candidates, s.queries.Load())
	}
}

func TestErrors(t *testing.T) {
	_, r := newTest(t, fmt.Sprintf(testZone, 7, 7))
	for _, tt := range []struct {
		name, msg string
		is        error
	}{
		{"telnet", "telnet: _telnet._tcp.svc.internal. SRV: NXDOMAIN; telnet.svc.internal. A: NXDOMAIN; well-known port 23/tcp, but no host is registered", ErrNoHost},
		{"nosuch", "nosuch: _nosuch._tcp.svc.internal. SRV: NXDOMAIN; nosuch.svc.internal. A: NXDOMAIN; not a well-known service either: no such service", ErrNoSuchService},
		{"gone", `gone: _gone._tcp.svc.internal. SRV: 0 0 0 .; target ".": service decidedly not available`, ErrNotAvailable},
		{"box", "box: _box._tcp.svc.internal. SRV: NXDOMAIN; box.svc.internal. A: 127.0.0.1; box.svc.internal. has an address but no port: no SRV record and not a well-known service: no such service", ErrNoSuchService},
		// 16 letters: no service name (RFC 6335 section 5.1, the registry's
		// rule), so no SRV is asked, as the registry could hold none.
		{"sixteen-letters0", "sixteen-letters0: sixteen-letters0.svc.internal. A: NXDOMAIN; not a well-known service either: no such service", ErrNoSuchService},
		{"127.0.0.1", "127.0.0.1: 127.0.0.1 is not a service name in svc.internal., and no port was given: no such service", ErrNoSuchService},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c, err := r.Lookup(t.Context(), tt.name)
			var le *LookupError
			if !errors.As(err, &le) || !errors.Is(err, tt.is) {
				t.Fatalf("err %v, want a *LookupError wrapping %v", err, tt.is)
			}
			if err.Error() != tt.msg {
				t.Errorf("message\n got %s\nwant %s", err, tt.msg)
			}
			if c == nil || c.Error != err.Error() {
				t.Errorf("chain error %q", c.Error)
			}
			t.Logf("\n%s", c.Text())
		})
	}

	dead := &Resolver{Server: fmt.Sprintf("127.0.0.1:%d", deadPort(t)), Timeout: 200 * time.Millisecond}
	_, err := dead.Lookup(t.Context(), "echo")
	if !errors.Is(err, ErrServerUnreachable) || err.(*LookupError).IsNotFound() {
		t.Errorf("dead server: %v, want ErrServerUnreachable", err)
	}
}

func TestCache(t *testing.T) {
	_, port := listenEcho(t)
	s, r := newTest(t, fmt.Sprintf(testZone, port, port))
	ctx := t.Context()
	for i := range 2 {
		conn, err := r.Dial(ctx, "tcp", "echo")
		if err != nil {
			t.Fatal(err)
		}
		conn.Close()
		if n := s.queries.Load(); n != 2 {
			t.Fatalf("dial %d: %d queries in all, want 2 (SRV, AAAA)", i+1, n)
		}
	}
	// Negative answers are cached too, for the SOA's MINIMUM (RFC 2308).
	r.Lookup(ctx, "nosuch")
	n := s.queries.Load()
	r.Lookup(ctx, "nosuch")
	if s.queries.Load() != n {
		t.Errorf("second lookup of an unknown name sent %d queries", s.queries.Load()-n)
	}
	c, _ := r.Lookup(ctx, "nosuch")
	if !c.Steps[1].Cached {
		t.Errorf("cached step not marked: %+v", c.Steps[1])
	}

	nc := &Resolver{Server: s.Addr, NoCache: true}
	nc.Lookup(ctx, "echo")
	nc.Lookup(ctx, "echo")
	if got := s.queries.Load() - n; got != 4 {
		t.Errorf("NoCache: %d queries for two lookups, want 4 (SRV and AAAA each time)", got)
	}
}

func TestCacheExpires(t *testing.T) {
	s, r := newTest(t, `$ORIGIN svc.internal.
@ 60 IN SOA ns hostmaster 1 3600 600 86400 1
_echo._tcp 1 IN SRV 0 0 7 box
box 1 IN A 127.0.0.1
`)
	r.Lookup(t.Context(), "echo")
	time.Sleep(1100 * time.Millisecond)
	r.Lookup(t.Context(), "echo")
	if n := s.queries.Load(); n != 4 {
		t.Errorf("%d queries, want 4 (SRV and AAAA twice): the TTL of 1s ran out", n)
	}
}

func TestSingleflight(t *testing.T) {
	s, r := newTest(t, fmt.Sprintf(testZone, 7, 7))
	s.delay.Store(int64(50 * time.Millisecond)) // so that the lookups overlap
	var wg sync.WaitGroup
	start := make(chan struct{})
	for range 50 {
		wg.Go(func() {
			<-start
			if _, err := r.Lookup(t.Context(), "echo"); err != nil {
				t.Error(err)
			}
		})
	}
	close(start)
	wg.Wait()
	if n := s.queries.Load(); n != 2 {
		t.Errorf("50 concurrent lookups sent %d queries, want 2 (SRV, AAAA)", n)
	}
}

func TestFailover(t *testing.T) {
	_, live := listenEcho(t)
	dead := deadPort(t)
	_, r := newTest(t, fmt.Sprintf(`$ORIGIN svc.internal.
$TTL 60
@ IN SOA ns hostmaster 1 3600 600 86400 30
box IN A 127.0.0.1
_echo._tcp IN SRV 0 0 %d box
_echo._tcp IN SRV 10 0 %d box
`, dead, live))
	c, err := r.Lookup(t.Context(), "echo")
	if err != nil {
		t.Fatal(err)
	}
	conn, err := r.DialChain(t.Context(), "tcp", c)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if got := conn.RemoteAddr().(*net.TCPAddr).Port; got != live {
		t.Errorf("connected to port %d, want the live %d", got, live)
	}
	var connects []Step
	for _, s := range c.Steps {
		if s.Step == "connect" {
			connects = append(connects, s)
		}
	}
	if len(connects) != 2 || connects[0].Error == "" || connects[1].Error != "" {
		t.Errorf("connect steps %+v, want a refusal then a success", connects)
	}
	t.Logf("\n%s", c.Text())
	roundTrip(t, conn)

	// All dead: the error names the connect step and each refusal.
	_, r2 := newTest(t, fmt.Sprintf(testZone, dead, dead))
	_, err = r2.Dial(t.Context(), "tcp", "echo")
	var le *LookupError
	if !errors.As(err, &le) || le.Step != "connect" || !strings.Contains(err.Error(), "refused") {
		t.Errorf("all dead: %v", err)
	}
}

// TestHappyEyeballs gives a host an IPv6 address nothing listens on and a
// live IPv4 one: the dial ends on IPv4, well before the dial timeout.
func TestHappyEyeballs(t *testing.T) {
	_, live := listenEcho(t)
	_, r := newTest(t, fmt.Sprintf(`$ORIGIN svc.internal.
$TTL 60
@ IN SOA ns hostmaster 1 3600 600 86400 30
box IN AAAA 100::1
box IN A 127.0.0.1
_echo._tcp IN SRV 0 0 %d box
`, live)) // 100::/64 is the discard prefix (RFC 6666): a black hole or unreachable
	r.DialTimeout = 10 * time.Second
	r.FallbackDelay = 50 * time.Millisecond
	start := time.Now()
	conn, err := r.Dial(t.Context(), "tcp", "echo")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("took %v: IPv4 did not race the stuck IPv6 attempt", d)
	}
	if !conn.RemoteAddr().(*net.TCPAddr).IP.Equal(net.IPv4(127, 0, 0, 1)) {
		t.Errorf("connected to %v", conn.RemoteAddr())
	}
}

func TestMail(t *testing.T) {
	_, live := listenEcho(t)
	cat, err := registry.ParseCatalog(fmt.Sprintf("smtp %d/tcp mail\n", live))
	if err != nil {
		t.Fatal(err)
	}
	_, r := newTest(t, `$ORIGIN svc.internal.
$TTL 60
@ IN SOA ns hostmaster 1 3600 600 86400 30
@ IN MX 20 mx2
@ IN MX 10 mx1
mx1 IN A 127.0.0.2
mx2 IN A 127.0.0.1
`)
	r.Catalog = cat
	c, err := r.Lookup(t.Context(), "mail")
	if err != nil {
		t.Fatal(err)
	}
	if c.Service != "smtp" || len(c.Candidates) != 2 || c.Candidates[0].Host != "mx1.svc.internal." || c.Candidates[0].Port != uint16(live) {
		t.Errorf("service %s candidates %+v, want smtp on mx1 then mx2, port %d", c.Service, c.Candidates, live)
	}
	t.Logf("\n%s", c.Text())

	// Implicit MX: no MX, the zone's own address (RFC 5321 section 5.1).
	_, r2 := newTest(t, `$ORIGIN svc.internal.
$TTL 60
@ IN SOA ns hostmaster 1 3600 600 86400 30
@ IN A 127.0.0.1
`)
	r2.Catalog = cat
	conn, err := r2.Dial(t.Context(), "tcp", "mail")
	if err != nil {
		t.Fatal(err)
	}
	roundTrip(t, conn)
}

// TestMailRules: mail in the zone follows annuaire's convention (SRV,
// then MX, then the zone's own address), and says so; mail for another
// domain is RFC 5321 section 5.1 alone (MX, then the domain's own
// address); neither falls back to a host named mail.
func TestMailRules(t *testing.T) {
	_, r := newTest(t, `$ORIGIN svc.internal.
$TTL 60
@ IN SOA ns hostmaster 1 3600 600 86400 30
@ IN MX 10 mx
mx IN A 127.0.0.2
receiver IN A 127.0.0.3
_smtp._tcp IN SRV 0 0 2525 receiver
example.test. IN MX 10 mx.example.test.
mx.example.test. IN A 127.0.0.4
_smtp._tcp.example.test. IN SRV 0 0 2525 srv.example.test.
srv.example.test. IN A 127.0.0.5
bare.example.test. IN A 127.0.0.6
mail.nomail.example.test. IN A 127.0.0.7
`)
	for _, tt := range []struct {
		name, want, says string
	}{
		{"mail", "127.0.0.3:2525", "_smtp._tcp SRV first"},
		{"prof@svc.internal", "127.0.0.3:2525", "_smtp._tcp SRV first"},
		{"prof@example.test", "127.0.0.4:25", "its MX, else the domain's own address (RFC 5321 section 5.1); no SRV"},
		{"@Bare.Example.Test.", "127.0.0.6:25", "RFC 5321"},
		{"prof@example.test:2526", "127.0.0.4:2526", "RFC 5321"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c, err := r.Lookup(t.Context(), tt.name)
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("\n%s", c.Text())
			if c.Service != "smtp" || c.Candidates[0].HostPort() != tt.want || !strings.Contains(c.Text(), tt.says) {
				t.Errorf("service %s, first candidate %s, want smtp at %s, the chain saying %q", c.Service, c.Candidates[0].HostPort(), tt.want, tt.says)
			}
			if strings.Contains(tt.name, "example.test") && strings.Contains(c.Text(), "_smtp._tcp.example.test") {
				t.Errorf("asked for an SRV record in a foreign zone")
			}
		})
	}
	// No MX and no address at the domain itself: an error, not
	// mail.nomail.example.test (RFC 5321 section 5.1).
	_, err := r.Lookup(t.Context(), "prof@nomail.example.test")
	if !errors.Is(err, ErrNoHost) || !strings.Contains(err.Error(), "no MX, and nomail.example.test. has no address of its own to be the implicit MX (RFC 5321 section 5.1)") {
		t.Errorf("nomail: %v", err)
	}
	_, err = r.Lookup(t.Context(), "prof@nowhere.example.test")
	if !errors.Is(err, ErrNoHost) || !strings.Contains(err.Error(), "nowhere.example.test. does not exist") {
		t.Errorf("nowhere: %v", err)
	}

	// The same in the zone: no SRV, no MX, no address at the apex, but a
	// host named mail: not used.
	_, r2 := newTest(t, `$ORIGIN svc.internal.
$TTL 60
@ IN SOA ns hostmaster 1 3600 600 86400 30
mail IN A 127.0.0.1
`)
	c, err := r2.Lookup(t.Context(), "mail")
	if !errors.Is(err, ErrNoHost) || len(c.Candidates) != 0 {
		t.Errorf("mail without MX nor apex address: %v, candidates %+v\n%s", err, c.Candidates, c.Text())
	}
	t.Logf("\n%s", c.Text())
}

func TestWellKnownPort(t *testing.T) {
	_, live := listenEcho(t)
	cat, _ := registry.ParseCatalog(fmt.Sprintf("http %d/tcp www\n", live))
	_, r := newTest(t, `$ORIGIN svc.internal.
$TTL 60
@ IN SOA ns hostmaster 1 3600 600 86400 30
www IN A 127.0.0.1
`)
	r.Catalog = cat
	c, err := r.Lookup(t.Context(), "www")
	if err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprintf("127.0.0.1:%d", live)
	if c.Service != "http" || c.Candidates[0].HostPort() != want {
		t.Errorf("www: service %s candidates %+v, want http at %s", c.Service, c.Candidates, want)
	}
	if !strings.HasSuffix(c.Summary(), fmt.Sprintf("www.svc.internal. A 127.0.0.1 → port %d/tcp → %s", live, want)) {
		t.Errorf("summary %s", c.Summary())
	}
	t.Logf("\n%s", c.Text())
}

// TestHTTPTransport reaches a web server by name through http.Transport:
// the SRV port wins over the :80 the URL implies.
func TestHTTPTransport(t *testing.T) {
	web := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		io.WriteString(w, "bonjour")
	}))
	defer web.Close()
	port := web.Listener.Addr().(*net.TCPAddr).Port
	_, r := newTest(t, fmt.Sprintf(testZone, 7, port))
	client := &http.Client{Transport: &http.Transport{DialContext: r.DialContext}}
	defer client.CloseIdleConnections()
	for _, url := range []string{"http://web.svc.internal/", "http://web/", "http://web.svc.internal:0/", web.URL} {
		resp, err := client.Get(url)
		if err != nil {
			t.Fatalf("%s: %v", url, err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if string(b) != "bonjour" {
			t.Errorf("%s: %q", url, b)
		}
	}
}

func TestOrderSRV(t *testing.T) {
	rnd := rand.New(rand.NewPCG(3, 4))
	srv := func(prio, weight uint16, target string) *dns.SRV {
		return &dns.SRV{Priority: prio, Weight: weight, Target: target}
	}
	counts := map[string]int{}
	recs := []*dns.SRV{srv(10, 0, "zero"), srv(10, 90, "ninety"), srv(10, 10, "ten"), srv(0, 0, "first")}
	for range 10000 {
		o := orderSRV(recs, rnd.IntN)
		if o[0].Target != "first" || len(o) != 4 {
			t.Fatalf("order %v: priority 0 must come first", o)
		}
		counts[o[1].Target]++
	}
	// sum 100: ninety 90/101, ten 10/101, zero 1/101.
	if counts["ninety"] < 8500 || counts["ten"] < 700 || counts["ten"] > 1300 || counts["zero"] == 0 || counts["zero"] > 300 {
		t.Errorf("first picks among priority 10: %v", counts)
	}
	// All weights zero: no division by zero, and each gets a turn.
	counts = map[string]int{}
	for range 1000 {
		counts[orderSRV([]*dns.SRV{srv(0, 0, "a"), srv(0, 0, "b")}, rnd.IntN)[0].Target]++
	}
	if counts["a"] < 350 || counts["b"] < 350 {
		t.Errorf("zero weights: %v", counts)
	}
}

func roundTrip(t *testing.T, conn net.Conn) {
	t.Helper()
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(conn, "bonjour\n"); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 8)
	if _, err := io.ReadFull(conn, buf); err != nil || string(buf) != "bonjour\n" {
		t.Fatalf("echo: %q, %v", buf, err)
	}
}

func TestDialUDP(t *testing.T) {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	go func() {
		buf := make([]byte, 512)
		n, from, err := pc.ReadFrom(buf)
		if err == nil {
			pc.WriteTo(buf[:n], from)
		}
	}()
	_, r := newTest(t, fmt.Sprintf(`$ORIGIN svc.internal.
$TTL 60
@ IN SOA ns hostmaster 1 3600 600 86400 30
box IN A 127.0.0.1
_echo._udp IN SRV 0 0 %d box
`, pc.LocalAddr().(*net.UDPAddr).Port))
	conn, err := r.Dial(t.Context(), "udp", "echo")
	if err != nil {
		t.Fatal(err)
	}
	roundTrip(t, conn)
	c, err := r.Lookup(t.Context(), "echo/udp")
	if err != nil || c.Proto != "udp" || c.Steps[1].Question != "_echo._udp.svc.internal. SRV" {
		t.Errorf("echo/udp: %v\n%s", err, c.Text())
	}
}

// TestSystemResolver: with Server "", the servers come from resolv.conf.
func TestSystemResolver(t *testing.T) {
	var r Resolver
	r.init()
	if len(r.servers) == 0 || r.zone != DefaultZone {
		t.Errorf("servers %v zone %q", r.servers, r.zone)
	}
	if _, _, err := net.SplitHostPort(r.servers[0]); err != nil {
		t.Errorf("server %q: %v", r.servers[0], err)
	}
}

// TestChainJSON pins the JSON the web page and the console render, field
// by field, against testdata/echo.chain.json (run with -update to rewrite).
func TestChainJSON(t *testing.T) {
	s, r := newTest(t, fmt.Sprintf(testZone, 7007, 7007))
	c, err := r.Lookup(t.Context(), "echo")
	if err != nil {
		t.Fatal(err)
	}
	for i := range c.Steps { // what varies from run to run
		c.Steps[i].DurationUS, c.Steps[i].StartUS = 0, 0
		if c.Steps[i].Server == s.Addr {
			c.Steps[i].Server = "127.0.0.1:1053"
		}
	}
	got, err := json.MarshalIndent(c, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	got = append(got, '\n')
	golden := filepath.Join("testdata", "echo.chain.json")
	if *update {
		os.WriteFile(golden, got, 0o644)
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("chain JSON differs from %s:\n%s", golden, got)
	}
}

var update = flag.Bool("update", false, "rewrite golden files in testdata")

// TestErrorsLikeNet: a *LookupError is a net.Error, so code written for
// net's errors tells a timeout from a refusal from a name that does not
// exist without knowing this package.
func TestErrorsLikeNet(t *testing.T) {
	silent, err := net.ListenPacket("udp", "127.0.0.1:0") // bound, never read: no answer
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	_, r := newTest(t, fmt.Sprintf(testZone, 7, 7))
	_, hung := fake(t, map[string]fakeHost{"192.0.2.1:7": {hang: true}})
	hung.DialTimeout = 100 * time.Millisecond
	for _, tt := range []struct {
		name                         string
		r                            *Resolver
		dial                         string
		timeout, temporary, notFound bool
	}{
		{"silent server", &Resolver{Server: silent.LocalAddr().String(), Timeout: 100 * time.Millisecond}, "echo", true, true, false},
		{"refused", &Resolver{Server: fmt.Sprintf("127.0.0.1:%d", deadPort(t))}, "echo", false, true, false},
		{"no such name", r, "nosuch", false, false, true},
		{"connect timeout", hung, "192.0.2.1:7", true, true, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := tt.r.Dial(t.Context(), "tcp", tt.dial)
			var ne net.Error
			if !errors.As(err, &ne) {
				t.Fatalf("%v is not a net.Error", err)
			}
			var le *LookupError
			errors.As(err, &le)
			if ne.Timeout() != tt.timeout || le.Temporary() != tt.temporary || le.IsNotFound() != tt.notFound {
				t.Errorf("%v: Timeout %v Temporary %v IsNotFound %v, want %v %v %v",
					err, ne.Timeout(), le.Temporary(), le.IsNotFound(), tt.timeout, tt.temporary, tt.notFound)
			}
		})
	}
}
