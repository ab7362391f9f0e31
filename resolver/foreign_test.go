package resolver

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/annuaire/annuaire/internal/testenv"

	"github.com/miekg/dns"

	"github.com/annuaire/annuaire/registry"
)

// foreignServers are the real authoritative servers the resolver is
// tested against: each writes its configuration for a zone file in dir
// and a loopback port, and returns the command that runs it in the
// foreground.
var foreignServers = []struct {
	name   string
	config func(bin, dir string, port int) *exec.Cmd
}{
	{"knotd", func(bin, dir string, port int) *exec.Cmd {
		conf := fmt.Sprintf(`server:
    rundir: "%[1]s"
    listen: 127.0.0.1@%[2]d
    pidfile: "%[1]s/knot.pid"
database:
    storage: "%[1]s"
log:
  - target: stderr
    any: warning
zone:
  - domain: svc.internal.
    file: "%[1]s/svc.internal.zone"
    journal-content: none
    zonefile-sync: -1
  - domain: example.test.
    file: "%[1]s/example.test.zone"
    journal-content: none
    zonefile-sync: -1
`, dir, port)
		os.WriteFile(filepath.Join(dir, "knot.conf"), []byte(conf), 0o644)
		return exec.Command(bin, "-c", filepath.Join(dir, "knot.conf"))
	}},
	{"nsd", func(bin, dir string, port int) *exec.Cmd {
		conf := fmt.Sprintf(`server:
    ip-address: 127.0.0.1
    port: %[2]d
    username: ""
    chroot: ""
    zonesdir: "%[1]s"
    pidfile: "%[1]s/nsd.pid"
    database: ""
    xfrdfile: "%[1]s/xfrd.state"
    xfrdir: "%[1]s"
    zonelistfile: "%[1]s/zone.list"
    verbosity: 0
remote-control:
    control-enable: no
zone:
    name: svc.internal
    zonefile: "%[1]s/svc.internal.zone"
zone:
    name: example.test
    zonefile: "%[1]s/example.test.zone"
`, dir, port)
		os.WriteFile(filepath.Join(dir, "nsd.conf"), []byte(conf), 0o644)
		return exec.Command(bin, "-d", "-c", filepath.Join(dir, "nsd.conf"))
	}},
}

// startForeign runs server on a free loopback port with zone (zone-file
// text for svc.internal.) and foreign (for example.test., a zone that is
// not the Resolver's) and returns host:port once it answers.
func startForeign(t *testing.T, server int, zone, foreign string) string {
	t.Helper()
	fs := foreignServers[server]
	bin := testenv.NeedTool(t, fs.name)
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "svc.internal.zone"), []byte(zone), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "example.test.zone"), []byte(foreign), 0o644); err != nil {
		t.Fatal(err)
	}
	for attempt := 0; attempt < 5; attempt++ {
		// Pick a port free on both UDP and TCP, then let the server take
		// it; another process can win the race, hence the retries.
		pc, ln := listenBoth(t)
		port := pc.LocalAddr().(*net.UDPAddr).Port
		pc.Close()
		ln.Close()
		var out strings.Builder
		cmd := fs.config(bin, dir, port)
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		exited := make(chan struct{})
		go func() { cmd.Wait(); close(exited) }()
		stop := func() {
			cmd.Process.Kill()
			<-exited
		}
		addr := fmt.Sprintf("127.0.0.1:%d", port)
		if waitAnswers(addr, exited) {
			t.Cleanup(stop)
			return addr
		}
		stop()
		t.Logf("%s on port %d did not start:\n%s", fs.name, port, out.String())
	}
	t.Fatalf("%s would not start", fs.name)
	return ""
}

// waitAnswers polls addr with an SOA question until it answers, for up to
// 10 seconds or until the server exits.
func waitAnswers(addr string, exited <-chan struct{}) bool {
	m := new(dns.Msg)
	m.SetQuestion("svc.internal.", dns.TypeSOA)
	c := dns.Client{Timeout: 200 * time.Millisecond}
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); {
		select {
		case <-exited:
			return false
		default:
		}
		if in, _, err := c.Exchange(m, addr); err == nil && in.Rcode == dns.RcodeSuccess && len(in.Answer) > 0 {
			return true
		}
		time.Sleep(50 * time.Millisecond)
	}
	return false
}

// countingEcho is an echo listener that counts its connections.
type countingEcho struct {
	port int
	mu   sync.Mutex // guards n
	n    int
}

func startCounting(t *testing.T) *countingEcho {
	ln, port := listenEcho(t)
	ln.Close() // replaced by a counting one on the same port
	ln2, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln2.Close() })
	ce := &countingEcho{port: port}
	go func() {
		for {
			c, err := ln2.Accept()
			if err != nil {
				return
			}
			ce.mu.Lock()
			ce.n++
			ce.mu.Unlock()
			c.Close()
		}
	}()
	return ce
}

func (ce *countingEcho) count() int {
	ce.mu.Lock()
	defer ce.mu.Unlock()
	return ce.n
}

func TestForeign(t *testing.T) {
	for i, fs := range foreignServers {
		t.Run(fs.name, func(t *testing.T) { testForeign(t, i) })
	}
}

func testForeign(t *testing.T, server int) {
	dead := deadPort(t)
	live := startCounting(t)
	heavy, light := startCounting(t), startCounting(t)
	mailPort := startCounting(t)
	webPort := startCounting(t)
	zone := fmt.Sprintf(`$ORIGIN svc.internal.
$TTL 60
@            IN SOA  ns hostmaster 1 3600 600 86400 30
@            IN NS   ns
@            IN MX   10 mx1
ns           IN A    127.0.0.1
box          IN A    127.0.0.1
mx1          IN A    127.0.0.1
web          IN A    127.0.0.1
_echo._tcp   IN SRV  0 0 %d box
_echo._tcp   IN SRV  10 0 %d box
_split._tcp  IN SRV  0 90 %d box
_split._tcp  IN SRV  0 10 %d box
_zero._tcp   IN SRV  0 0 0 box
_zero._tcp   IN SRV  10 0 %d box
_cross._tcp  IN SRV  0 0 %d host.example.test.
`, dead, live.port, heavy.port, light.port, live.port, live.port)
	foreign := `$ORIGIN example.test.
$TTL 60
@            IN SOA  ns hostmaster 1 3600 600 86400 30
@            IN NS   ns
@            IN MX   10 mx
ns           IN A    127.0.0.1
mx           IN A    127.0.0.1
host         IN A    127.0.0.1
srv          IN A    127.0.0.2
_smtp._tcp   IN SRV  0 0 2525 srv
bare         IN A    127.0.0.1
nomail       IN TXT  "no MX, no address"
mail.nomail  IN A    127.0.0.2
`
	addr := startForeign(t, server, zone, foreign)
	cat, err := registry.ParseCatalog(fmt.Sprintf("smtp %d/tcp mail\nhttp %d/tcp web\n", mailPort.port, webPort.port))
	if err != nil {
		t.Fatal(err)
	}
	r := &Resolver{Server: addr, Catalog: cat, DialTimeout: 2 * time.Second, intN: rand.New(rand.NewPCG(5, 6)).IntN}
	ctx := t.Context()

	t.Run("Failover", func(t *testing.T) {
		c, err := r.Lookup(ctx, "echo")
		if err != nil {
			t.Fatal(err)
		}
		conn, err := r.DialChain(ctx, "tcp", c)
		if err != nil {
			t.Fatalf("%v\n%s", err, c.Text())
		}
		conn.Close()
		if got := conn.RemoteAddr().(*net.TCPAddr).Port; got != live.port {
			t.Errorf("connected to %d, want the priority-10 %d\n%s", got, live.port, c.Text())
		}
		t.Logf("\n%s", c.Text())
	})

	t.Run("Weights", func(t *testing.T) {
		const dials = 300
		for range dials {
			conn, err := r.Dial(ctx, "tcp", "split")
			if err != nil {
				t.Fatal(err)
			}
			conn.Close()
		}
		// Connections are counted as the listeners accept them.
		deadline := time.Now().Add(5 * time.Second)
		for heavy.count()+light.count() < dials && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		h, l := heavy.count(), light.count()
		t.Logf("weights 90/10 over %d dials: %d/%d", dials, h, l)
		if h+l != dials || h < 240 || h > 290 {
			t.Errorf("weights 90/10 over %d dials gave %d/%d", dials, h, l)
		}
	})

	t.Run("Unknown", func(t *testing.T) {
		_, err := r.Lookup(ctx, "nosuch")
		if !errors.Is(err, ErrNoSuchService) || !strings.HasPrefix(err.Error(), "nosuch: _nosuch._tcp.svc.internal. SRV: NXDOMAIN; nosuch.svc.internal. A: NXDOMAIN") {
			t.Errorf("%v", err)
		}
	})

	t.Run("MX", func(t *testing.T) {
		c, err := r.Lookup(ctx, "mail")
		if err != nil {
			t.Fatal(err)
		}
		if c.Candidates[0].Host != "mx1.svc.internal." || c.Candidates[0].Port != uint16(mailPort.port) {
			t.Errorf("candidates %+v\n%s", c.Candidates, c.Text())
		}
		conn, err := r.DialChain(ctx, "tcp", c)
		if err != nil {
			t.Fatal(err)
		}
		conn.Close()
		t.Logf("\n%s", c.Text())
	})

	t.Run("PortZero", func(t *testing.T) {
		conn, c, err := r.DialTrace(ctx, "tcp", "zero")
		if err != nil {
			t.Fatalf("%v\n%s", err, c.Text())
		}
		conn.Close()
		if got := conn.RemoteAddr().(*net.TCPAddr).Port; got != live.port || !strings.Contains(c.Text(), "port 0 cannot be dialled") {
			t.Errorf("connected to %d, want %d past the port-0 target\n%s", got, live.port, c.Text())
		}
	})

	// An SRV target in another zone the same server serves: whatever it
	// puts in the additional section, the client asks for the target.
	t.Run("OtherZoneTarget", func(t *testing.T) {
		c, err := r.Lookup(ctx, "cross")
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("\n%s", c.Text())
		asked := false
		for _, s := range c.Steps {
			asked = asked || s.Question == "host.example.test. A" && s.Skipped == "" && s.Rcode == "NOERROR"
		}
		if !asked || c.Candidates[0].HostPort() != fmt.Sprintf("127.0.0.1:%d", live.port) {
			t.Errorf("want host.example.test. asked for, and 127.0.0.1:%d", live.port)
		}
	})

	// Mail for a zone that is not the Resolver's: RFC 5321 section 5.1,
	// MX first (the zone's _smtp._tcp SRV is not asked), the implicit MX,
	// and an error rather than a host named mail.
	t.Run("ForeignMail", func(t *testing.T) {
		c, err := r.Lookup(ctx, "prof@example.test")
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("\n%s", c.Text())
		if want := fmt.Sprintf("127.0.0.1:%d", mailPort.port); c.Candidates[0].Host != "mx.example.test." || c.Candidates[0].HostPort() != want {
			t.Errorf("candidates %+v, want mx.example.test. at %s", c.Candidates, want)
		}
		c, err = r.Lookup(ctx, "@bare.example.test")
		if err != nil || c.Candidates[0].Host != "bare.example.test." {
			t.Errorf("implicit MX: %v\n%s", err, c.Text())
		}
		_, err = r.Lookup(ctx, "prof@nomail.example.test")
		if !errors.Is(err, ErrNoHost) || !strings.Contains(err.Error(), "has no address of its own to be the implicit MX") {
			t.Errorf("nomail: %v", err)
		}
	})

	t.Run("WellKnown", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		conn, err := r.Dial(ctx, "tcp", "web")
		if err != nil {
			t.Fatal(err)
		}
		conn.Close()
		if got := conn.RemoteAddr().(*net.TCPAddr).Port; got != webPort.port {
			t.Errorf("connected to %d, want the catalog's %d", got, webPort.port)
		}
	})
}
