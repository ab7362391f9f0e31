package transfer_test

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/miekg/dns"

	"github.com/annuaire/annuaire/internal/testenv"
	"github.com/annuaire/annuaire/registry"
)

// nsdConf makes NSD a secondary of annuaire for svc.internal and the
// reverse zone of 127.0.0.0/24, as knotConf does Knot.
const nsdConf = `server:
    ip-address: 127.0.0.1@%[1]d
    username: ""
    chroot: ""
    zonesdir: "%[2]s"
    database: ""
    zonelistfile: "%[2]s/zone.list"
    xfrdfile: "%[2]s/xfrd.state"
    xfrdir: "%[2]s"
    pidfile: "%[2]s/nsd.pid"
    logfile: "%[2]s/nsd.log"
    verbosity: 2

remote-control:
    control-enable: no

key:
    name: %[3]s
    algorithm: hmac-sha256
    secret: "%[4]s"

zone:
    name: svc.internal
    zonefile: "svc.internal.zone"
    request-xfr: %[5]s %[3]s
    allow-notify: 127.0.0.1 %[3]s

zone:
    name: 0.0.127.in-addr.arpa
    zonefile: "0.0.127.in-addr.arpa.zone"
    request-xfr: %[5]s %[3]s
    allow-notify: 127.0.0.1 %[3]s
`

// TestNSDSecondary is TestKnotSecondary with NSD: a second implementation
// of the secondary side reads annuaire's transfers and NOTIFY.
func TestNSDSecondary(t *testing.T) {
	nsd := xfrTool(t, "nsd")
	reg := registry.New(500)
	xfrRegister(t, reg, "echo", 7007, "host", "127.0.0.1")

	nsdPort := testenv.FreePort(t)
	nsdAddr := fmt.Sprintf("127.0.0.1:%d", nsdPort)
	addr, logs := startPrimary(t, reg, nsdAddr)

	dir := t.TempDir()
	host, port, _ := net.SplitHostPort(addr)
	conf := fmt.Sprintf(nsdConf, nsdPort, dir, strings.TrimSuffix(xfrKey.Name, "."), xfrKey.Secret, host+"@"+port)
	nsdLog := func() string { log, _ := os.ReadFile(filepath.Join(dir, "nsd.log")); return "nsd log:\n" + string(log) }
	testenv.Daemon(t, "nsd", []func() string{nsdLog, annuaireLog(logs)}, nsd, "-d", "-c", testenv.WriteConf(t, filepath.Join(dir, "nsd.conf"), conf))

	ask := askAt(nsdAddr)
	srvPort := func(name string) (uint16, bool) {
		r, err := ask(name, dns.TypeSRV)
		if err != nil || len(r.Answer) != 1 {
			return 0, false
		}
		srv, ok := r.Answer[0].(*dns.SRV)
		return srv.Port, ok
	}
	waitFor(t, "NSD to load the zone", func() bool { p, ok := srvPort("_echo._tcp.svc.internal."); return ok && p == 7007 })
	id := xfrRegister(t, reg, "http", 8080, "web", "127.0.0.2")
	waitFor(t, "NSD to serve the new SRV", func() bool { p, ok := srvPort("_http._tcp.svc.internal."); return ok && p == 8080 })
	waitFor(t, "NSD to serve the new PTR", func() bool { return servedPTR(ask) == "web.svc.internal." })
	if !strings.Contains(logs.String(), "mode=incremental") {
		t.Errorf("no incremental IXFR in annuaire's log:\n%s", logs.String())
	}
	if err := reg.Deregister(id); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "NSD to drop the SRV", func() bool { _, ok := srvPort("_http._tcp.svc.internal."); return !ok })
	waitFor(t, "NSD to drop the PTR", func() bool { return servedPTR(ask) == "NXDOMAIN" })
}
