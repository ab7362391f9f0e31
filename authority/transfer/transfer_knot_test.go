package transfer_test

import (
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/annuaire/annuaire/authority"
	"github.com/annuaire/annuaire/authority/tsig"
	"github.com/annuaire/annuaire/internal/testenv"
	"github.com/annuaire/annuaire/registry"
)

// xfrTool returns the path of an external program, skipping the test when
// it is missing, or failing it under CI where it must be installed.
func xfrTool(t *testing.T, name string) string {
	t.Helper()
	path, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s is required under CI: %v", name, err)
		}
		t.Skipf("%s not installed: %v", name, err)
	}
	return path
}

// knotConf is a Knot DNS configuration making Knot a secondary of annuaire
// for svc.internal and the reverse zone of 127.0.0.0/24: transfers and
// NOTIFY signed with one TSIG key. It is
// the configuration the README's "Scaling out" section shows.
const knotConf = `server:
    listen: 127.0.0.1@%[1]d
    rundir: "%[2]s"

log:
  - target: stderr
    any: info

database:
    storage: "%[2]s"

key:
  - id: %[3]s
    algorithm: hmac-sha256
    secret: %[4]s

remote:
  - id: annuaire
    address: %[5]s
    key: %[3]s

acl:
  - id: notify-from-annuaire
    address: 127.0.0.1
    key: %[3]s
    action: notify

zone:
  - domain: svc.internal
    master: annuaire
    acl: notify-from-annuaire
    storage: "%[2]s"
    zonefile-sync: -1
    zonefile-load: none
    journal-content: all
  - domain: 0.0.127.in-addr.arpa
    master: annuaire
    acl: notify-from-annuaire
    storage: "%[2]s"
    zonefile-sync: -1
    zonefile-load: none
    journal-content: all
`

// TestKnotSecondary runs Knot as a secondary of annuaire: it loads the
// forward zone and a reverse zone by AXFR, and follows registrations
// through NOTIFY and IXFR, the PTR records of their addresses too.
func TestKnotSecondary(t *testing.T) {
	knotd := xfrTool(t, "knotd")
	reg := registry.New(100)
	if _, err := reg.Update(func(tx *registry.Tx) error {
		return tx.PutHost(registry.Host{Name: "ns", Addrs: []netip.Addr{netip.MustParseAddr("127.0.0.1")}})
	}); err != nil {
		t.Fatal(err)
	}
	xfrRegister(t, reg, "echo", 7007, "host", "127.0.0.1")

	knotPort := testenv.FreePort(t)
	knotAddr := fmt.Sprintf("127.0.0.1:%d", knotPort)
	addr, logs := startPrimary(t, reg, knotAddr)

	dir := t.TempDir()
	host, port, _ := net.SplitHostPort(addr)
	conf := fmt.Sprintf(knotConf, knotPort, dir, strings.TrimSuffix(xfrKey.Name, "."), xfrKey.Secret, host+"@"+port)
	testenv.Daemon(t, "knotd", []func() string{annuaireLog(logs)}, knotd, "-c", testenv.WriteConf(t, filepath.Join(dir, "knot.conf"), conf))

	ask := askAt(knotAddr)
	servedSerial := func() uint32 {
		r, err := ask("svc.internal.", dns.TypeSOA)
		if err != nil || r.Rcode != dns.RcodeSuccess || len(r.Answer) != 1 {
			return 0
		}
		return r.Answer[0].(*dns.SOA).Serial
	}
	first := reg.Snapshot().Serial()
	waitFor(t, "Knot to load the zone", func() bool { return servedSerial() == first })
	r, err := ask("_echo._tcp.svc.internal.", dns.TypeSRV)
	if err != nil || len(r.Answer) != 1 || r.Answer[0].(*dns.SRV).Port != 7007 {
		t.Fatalf("Knot's echo SRV = %v (%v)", r, err)
	}

	// A registration reaches Knot by NOTIFY and IXFR.
	start := time.Now()
	id := xfrRegister(t, reg, "http", 8080, "web", "127.0.0.2")
	second := reg.Snapshot().Serial()
	waitFor(t, "Knot to serve the new SRV", func() bool {
		r, err := ask("_http._tcp.svc.internal.", dns.TypeSRV)
		return err == nil && len(r.Answer) == 1 && r.Answer[0].(*dns.SRV).Port == 8080
	})
	t.Logf("registration served by Knot after %v", time.Since(start))
	if got := servedSerial(); !registry.SerialLess(first, got) || got != second {
		t.Errorf("Knot serves serial %d, want %d (after %d)", got, second, first)
	}
	if !strings.Contains(logs.String(), "type=IXFR") || !strings.Contains(logs.String(), "mode=incremental") {
		t.Errorf("no incremental IXFR in annuaire's log:\n%s", logs.String())
	}

	waitFor(t, "Knot to serve the new PTR", func() bool { return servedPTR(ask) == "web.svc.internal." })

	// A deregistration too.
	if err := reg.Deregister(id); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "Knot to drop the SRV", func() bool {
		r, err := ask("_http._tcp.svc.internal.", dns.TypeSRV)
		return err == nil && r.Rcode == dns.RcodeNameError
	})
	waitFor(t, "Knot to drop the PTR", func() bool { return servedPTR(ask) == "NXDOMAIN" })
	if got, want := servedSerial(), reg.Snapshot().Serial(); got != want {
		t.Errorf("Knot serves serial %d, want %d", got, want)
	}
}

// startPrimary serves reg's zones on a loopback port as a primary that
// signs with xfrKey and sends NOTIFY to secondary, until the test ends; it
// returns the primary's address and its log.
func startPrimary(t *testing.T, reg *registry.Registry, secondary string) (string, *testenv.LogBuffer) {
	t.Helper()
	logs := new(testenv.LogBuffer)
	s := &authority.Server{Registry: reg, Keys: []tsig.Key{xfrKey}, Notify: []string{secondary},
		Logger: slog.New(slog.NewTextHandler(logs, nil))}
	addr := startXfr(t, s)
	runNotify(t, s)
	return addr, logs
}

// askAt returns a function asking the server at addr one question over UDP.
func askAt(addr string) func(name string, qtype uint16) (*dns.Msg, error) {
	return func(name string, qtype uint16) (*dns.Msg, error) {
		m := new(dns.Msg)
		m.SetQuestion(name, qtype)
		r, _, err := (&dns.Client{Timeout: time.Second}).Exchange(m, addr)
		return r, err
	}
}

// servedPTR is what a secondary that ask queries says of 127.0.0.2: the
// name of its PTR, NXDOMAIN with the reverse zone's SOA, or else how it
// failed.
func servedPTR(ask func(string, uint16) (*dns.Msg, error)) string {
	r, err := ask("2.0.0.127.in-addr.arpa.", dns.TypePTR)
	switch {
	case err != nil:
		return err.Error()
	case r.Rcode == dns.RcodeNameError && len(r.Ns) > 0 && r.Ns[0].Header().Name == "0.0.127.in-addr.arpa.":
		return "NXDOMAIN"
	case r.Rcode == dns.RcodeSuccess && len(r.Answer) == 1:
		if ptr, ok := r.Answer[0].(*dns.PTR); ok {
			return ptr.Ptr
		}
	}
	return r.String()
}

// annuaireLog is the primary's log under a heading, for testenv.Daemon.
func annuaireLog(logs *testenv.LogBuffer) func() string {
	return func() string { return "annuaire log:\n" + logs.String() }
}
