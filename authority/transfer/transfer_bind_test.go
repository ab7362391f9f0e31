package transfer_test

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/miekg/dns"

	"github.com/annuaire/annuaire/internal/testenv"
	"github.com/annuaire/annuaire/registry"
)

// namedConf makes BIND a secondary of annuaire for the forward zone and
// a reverse zone, transfers and NOTIFY signed with one TSIG key; the zone
// files are text, for named-checkzone.
const namedConf = `options {
	directory "%[2]s";
	listen-on port %[1]d { 127.0.0.1; };
	listen-on-v6 { none; };
	pid-file "%[2]s/named.pid";
	session-keyfile "%[2]s/session.key";
	managed-keys-directory "%[2]s";
	recursion no;
	notify no;
	dnssec-validation no;
	masterfile-format text;
};
controls { }; // no rndc channel: it would take port 953
key "%[3]s" { algorithm hmac-sha256; secret "%[4]s"; };
zone "svc.internal" { type secondary; primaries { 127.0.0.1 port %[5]s key "%[3]s"; }; file "%[2]s/svc.internal.db"; };
zone "0.0.127.in-addr.arpa" { type secondary; primaries { 127.0.0.1 port %[5]s key "%[3]s"; }; file "%[2]s/0.0.127.in-addr.arpa.db"; };
`

// TestBINDSecondary runs BIND as a secondary of annuaire carrying the
// forward zone and a reverse zone: both load by AXFR and follow changes by
// NOTIFY and IXFR, each at its own serial; BIND reads the serial from the
// SOA each NOTIFY carries; and the zones it wrote pass named-checkzone.
func TestBINDSecondary(t *testing.T) {
	named := testenv.NeedTool(t, "named")
	checkzone := testenv.NeedTool(t, "named-checkzone")
	reg := registry.New(300)
	if _, err := reg.Update(func(tx *registry.Tx) error {
		return tx.PutHost(registry.Host{Name: "ns", Addrs: []netip.Addr{netip.MustParseAddr("127.0.0.1")}})
	}); err != nil {
		t.Fatal(err)
	}
	xfrRegister(t, reg, "echo", 7007, "host", "127.0.0.10")

	namedPort := testenv.FreePort(t)
	namedAddr := fmt.Sprintf("127.0.0.1:%d", namedPort)
	addr, logs := startPrimary(t, reg, namedAddr)

	dir := t.TempDir()
	_, port, _ := net.SplitHostPort(addr)
	conf := fmt.Sprintf(namedConf, namedPort, dir, strings.TrimSuffix(xfrKey.Name, "."), xfrKey.Secret, port)
	args := []string{"-g"}
	if os.Geteuid() == 0 {
		args = append(args, "-u", "root") // named switches to the bind user otherwise, who cannot write dir
	}
	namedLog := testenv.Daemon(t, "named", []func() string{annuaireLog(logs)}, named,
		append(args, "-c", testenv.WriteConf(t, filepath.Join(dir, "named.conf"), conf))...)

	// An empty message for a failed query: BIND may be busy loading.
	ask := func(name string, qtype uint16) *dns.Msg {
		if r, err := askAt(namedAddr)(name, qtype); err == nil {
			return r
		}
		return new(dns.Msg)
	}
	serial := func(zone string) uint32 {
		if r := ask(zone, dns.TypeSOA); r.Rcode == dns.RcodeSuccess && len(r.Answer) == 1 {
			return r.Answer[0].(*dns.SOA).Serial
		}
		return 0
	}
	ptr := func(ip string) string {
		name, _ := dns.ReverseAddr(ip)
		r := ask(name, dns.TypePTR)
		if len(r.Answer) != 1 {
			return dns.RcodeToString[r.Rcode]
		}
		return r.Answer[0].(*dns.PTR).Ptr
	}
	const rev = "0.0.127.in-addr.arpa."
	revSerial := func() uint32 { return reg.Snapshot().ReverseSerial(netip.MustParsePrefix("127.0.0.0/24")) }

	waitFor(t, "BIND to load both zones", func() bool {
		return serial("svc.internal.") == reg.Snapshot().Serial() && serial(rev) == revSerial()
	})
	if got := ptr("127.0.0.10"); got != "host.svc.internal." {
		t.Errorf("BIND's PTR of 127.0.0.10 = %s", got)
	}
	if r := ask("9.0.0.127.in-addr.arpa.", dns.TypePTR); r.Rcode != dns.RcodeNameError || len(r.Ns) != 1 {
		t.Errorf("BIND's answer for an address without a name: %v, want NXDOMAIN with the SOA", r)
	}

	// A new address: both zones move, and BIND follows both.
	xfrRegister(t, reg, "http", 8080, "web", "127.0.0.2")
	waitFor(t, "BIND to serve the new PTR", func() bool { return ptr("127.0.0.2") == "web.svc.internal." })
	waitFor(t, "BIND to serve the new forward serial", func() bool { return serial("svc.internal.") == reg.Snapshot().Serial() })
	// An instance on a known host: the forward zone moves, the reverse
	// zone keeps its serial.
	waitFor(t, "BIND to serve the reverse zone's serial", func() bool { return serial(rev) == revSerial() })
	before := revSerial()
	xfrRegister(t, reg, "ftp", 21, "web", "127.0.0.2")
	waitFor(t, "BIND to serve the ftp SRV", func() bool { return len(ask("_ftp._tcp.svc.internal.", dns.TypeSRV).Answer) == 1 })
	if got := revSerial(); got != before {
		t.Errorf("the reverse zone's serial moved from %d to %d without a change in it", before, got)
	}
	// A query may time out on a loaded machine: a serial of 0 is none.
	waitFor(t, "BIND to keep the reverse zone's serial", func() bool { return serial(rev) == before })
	for _, want := range []string{"zone=0.0.127.in-addr.arpa. serial=", "type=IXFR"} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("annuaire's log lacks %q:\n%s", want, logs.String())
		}
	}
	// Once it holds the zones, BIND reads the serial of each NOTIFY from
	// its SOA ("no serial" without one; before the first transfer it
	// reads none).
	for _, z := range []string{"svc.internal", "0.0.127.in-addr.arpa"} {
		notified := regexp.MustCompile(`zone ` + regexp.QuoteMeta(z) + `/IN: notify from 127\.0\.0\.1#\d+: serial 303`)
		if !notified.MatchString(namedLog.String()) {
			t.Errorf("BIND did not read serial 303 from the NOTIFY of %s:\n%s", z, namedLog.String())
		}
	}

	// The zones as BIND wrote them pass named-checkzone.
	for _, z := range []string{"svc.internal", "0.0.127.in-addr.arpa"} {
		file := filepath.Join(dir, z+".db")
		waitFor(t, "BIND to write "+file, func() bool { _, err := os.Stat(file); return err == nil })
		if out, err := exec.Command(checkzone, z, file).CombinedOutput(); err != nil {
			t.Errorf("named-checkzone %s: %v\n%s", z, err, out)
		}
	}
}
