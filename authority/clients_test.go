package authority

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/annuaire/annuaire/authority/internal/authtest"
	"github.com/annuaire/annuaire/internal/testenv"
	"github.com/annuaire/annuaire/registry"
)

// The clients of issue 13: resolvers and libraries that are not ours,
// asking annuaire for its forward and reverse zones.

// clientsRegistry holds an echo instance on a (127.0.0.1), http on web
// (127.0.0.2 and 2001:db8::2), and the name server ns (127.0.0.53).
func clientsRegistry(t *testing.T) *registry.Registry {
	t.Helper()
	reg := registry.New(1000)
	if _, err := reg.Update(func(tx *registry.Tx) error {
		for _, h := range []registry.Host{
			{Name: "ns", Addrs: authtest.Addrs("127.0.0.53"), TTL: 10},
			{Name: "a", Addrs: authtest.Addrs("127.0.0.1"), TTL: 10},
			{Name: "web", Addrs: authtest.Addrs("127.0.0.2", "2001:db8::2"), TTL: 10},
		} {
			if err := tx.PutHost(h); err != nil {
				return err
			}
		}
		for _, inst := range []registry.Instance{
			{Service: "echo", Host: "a", Port: 7007, TTL: 10},
			{Service: "http", Host: "web", Port: 8080, TTL: 10},
		} {
			if _, err := tx.PutInstance(inst); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return reg
}

// unboundConf makes unbound a resolver whose stub zones, the forward zone
// and two reverse zones, are annuaire's. RFC 6303's local zones of unbound
// (127.in-addr.arpa., 8.b.d.0.1.0.0.2.ip6.arpa.) would answer in its place.
const unboundConf = `server:
    interface: 127.0.0.1
    port: %[1]d
    do-daemonize: no
    chroot: ""
    username: ""
    directory: "%[2]s"
    pidfile: "%[2]s/unbound.pid"
    use-syslog: no
    logfile: ""
    verbosity: 1
    module-config: "iterator"
    do-not-query-localhost: no
    qname-minimisation: no
    prefetch: no
    access-control: 127.0.0.0/8 allow
    local-zone: "127.in-addr.arpa." nodefault
    local-zone: "8.b.d.0.1.0.0.2.ip6.arpa." nodefault
remote-control:
    control-enable: no
stub-zone:
    name: "svc.internal."
    stub-addr: 127.0.0.1@%[3]s
stub-zone:
    name: "0.0.127.in-addr.arpa."
    stub-addr: 127.0.0.1@%[3]s
stub-zone:
    name: "0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa."
    stub-addr: 127.0.0.1@%[3]s
`

// TestUnbound puts unbound in front of annuaire, as a network's resolver
// would be: it resolves services, and the reverse names of known
// addresses, and caches the NXDOMAIN of an unknown one (issue 13: every
// unknown address was an uncached SERVFAIL, "got REFUSED").
func TestUnbound(t *testing.T) {
	unbound := testenv.NeedTool(t, "unbound")
	m := NewMetrics()
	addr := authtest.Start(t, &Server{Registry: clientsRegistry(t), Metrics: m, Logger: slog.New(slog.DiscardHandler)})
	_, port, _ := net.SplitHostPort(addr)

	dir := t.TempDir()
	uport := testenv.FreePort(t)
	conf := testenv.WriteConf(t, filepath.Join(dir, "unbound.conf"), fmt.Sprintf(unboundConf, uport, dir, port))
	testenv.Daemon(t, "unbound", nil, unbound, "-d", "-c", conf)
	resolver := fmt.Sprintf("127.0.0.1:%d", uport)
	ask := func(args ...string) digResult {
		t.Helper()
		return dig(t, resolver, append([]string{"+tries=5"}, args...)...)
	}
	digPath := testenv.NeedTool(t, "dig")
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		err := exec.Command(digPath, "@127.0.0.1", "-p", fmt.Sprint(uport), "+time=1", "+tries=1", "svc.internal", "SOA").Run()
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("unbound does not answer: %v", err)
		}
	}

	for _, c := range []struct {
		args   string
		status string
		answer []string
	}{
		{"_http._tcp.svc.internal SRV", "NOERROR", []string{"_http._tcp.svc.internal. 10 IN SRV 0 0 8080 web.svc.internal."}},
		{"-x 127.0.0.2", "NOERROR", []string{"2.0.0.127.in-addr.arpa. 10 IN PTR web.svc.internal."}},
		{"-x 2001:db8::2", "NOERROR", []string{"2.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa. 10 IN PTR web.svc.internal."}},
		{"-x 127.0.0.9", "NXDOMAIN", nil},
		{"-x 2001:db8::9", "NXDOMAIN", nil},
	} {
		r := ask(strings.Fields(c.args)...)
		// unbound counts down the TTLs it caches.
		for i, rr := range r.answer {
			f := strings.Fields(rr)
			f[1] = "10"
			r.answer[i] = strings.Join(f, " ")
		}
		if r.status != c.status || !slices.Equal(r.answer, c.answer) {
			t.Errorf("%s through unbound: %s %v, want %s %v", c.args, r.status, r.answer, c.status, c.answer)
		}
	}
	// Asked again, the unknown address is answered from unbound's cache:
	// annuaire said NXDOMAIN once.
	asked := answered(t, m, "PTR", "NXDOMAIN")
	for range 3 {
		if r := ask("-x", "127.0.0.9"); r.status != "NXDOMAIN" {
			t.Errorf("again: %s", r.status)
		}
	}
	if after := answered(t, m, "PTR", "NXDOMAIN"); asked != 2 || after != asked {
		t.Errorf("annuaire answered %v NXDOMAIN PTR queries, then %v after asking again: want 2 (one per address), unbound's cache for the rest", asked, after)
	}
}

// answered returns how many requests of qtype m counted answered with
// rcode.
func answered(t *testing.T, m *Metrics, qtype, rcode string) float64 {
	t.Helper()
	pr := prometheus.NewRegistry()
	pr.MustRegister(m)
	families, err := pr.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != "annuaire_dns_requests_total" {
			continue
		}
		for _, c := range f.GetMetric() {
			labels := map[string]string{}
			for _, l := range c.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["qtype"] == qtype && labels["rcode"] == rcode {
				return c.GetCounter().GetValue()
			}
		}
	}
	return 0
}

// TestGoResolver: Go's own resolver (net.Resolver, not annuaire's
// package) finds names for known addresses, and for an unknown one says
// "no such host", not "server misbehaving" as a REFUSED made it.
func TestGoResolver(t *testing.T) {
	addr := authtest.Start(t, &Server{Registry: clientsRegistry(t)})
	r := &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, network, addr)
	}}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for ip, want := range map[string]string{"127.0.0.2": "web.svc.internal.", "2001:db8::2": "web.svc.internal.", "127.0.0.53": "ns.svc.internal."} {
		names, err := r.LookupAddr(ctx, ip)
		if err != nil || !slices.Equal(names, []string{want}) {
			t.Errorf("LookupAddr(%s) = %v, %v; want %s", ip, names, err, want)
		}
	}
	for _, ip := range []string{"127.0.0.9", "2001:db8::9"} {
		_, err := r.LookupAddr(ctx, ip)
		var dnsErr *net.DNSError
		if !errors.As(err, &dnsErr) || !dnsErr.IsNotFound {
			t.Errorf("LookupAddr(%s): %v, want not found", ip, err)
		}
	}
}

// dnspythonScript resolves, transfers (AXFR, then IXFR once the Go side
// changed the registry) and sends NOTIFYs with dnspython, printing one
// JSON object per step.
const dnspythonScript = `
import json, sys, time
import dns.message, dns.opcode, dns.query, dns.rcode, dns.resolver, dns.versioned, dns.zone

host, port = sys.argv[1], int(sys.argv[2])
zones = ["svc.internal.", "0.0.127.in-addr.arpa.", "0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa."]

def text(z):
    return sorted(l for l in z.to_text(relativize=False).splitlines() if l)

r = dns.resolver.Resolver(configure=False)
r.nameservers, r.port = [host], port
out = {
    "srv": [rr.to_text() for rr in r.resolve("_http._tcp.svc.internal.", "SRV")],
    "ptr": [rr.to_text() for rr in r.resolve_address("127.0.0.2")],
    "ptr6": [rr.to_text() for rr in r.resolve_address("2001:db8::2")],
}
try:
    r.resolve_address("127.0.0.9")
    out["unknown"] = "an answer"
except dns.resolver.NXDOMAIN:
    out["unknown"] = "NXDOMAIN"
versions = {}
for name in zones:
    out[name] = text(dns.zone.from_xfr(dns.query.xfr(host, name, port=port)))
    versions[name] = dns.versioned.Zone(name)
    dns.query.inbound_xfr(host, versions[name], port=port)
print(json.dumps(out), flush=True)

sys.stdin.readline()  # the Go side changed the registry
out = {}
for name in zones:
    dns.query.inbound_xfr(host, versions[name], port=port)  # IXFR from the serial held
    out[name] = text(versions[name])

rcodes = []
for i in range(31):
    n = dns.message.make_query("svc.internal.", "SOA")
    n.set_opcode(dns.opcode.NOTIFY)
    rcodes.append(dns.rcode.to_text(dns.query.udp(n, host, port=port, timeout=2).rcode()))
out["notify"] = sorted(set(rcodes))
print(json.dumps(out), flush=True)
`

// TestDNSPython: dnspython resolves forward and reverse names, transfers
// the forward zone and both reverse zones by AXFR (dns.zone.from_xfr
// checks each has its SOA and NS), follows a change by IXFR, and a NOTIFY
// it sends is refused, the log lines it causes rate-limited.
//
// The transfers are counted from the metrics, not the log: its lines are
// aggregated by source (lograte), and one source asks eight here.
func TestDNSPython(t *testing.T) {
	python := testenv.Python(t, "dns.resolver", "dns.query", "dns.zone", "dns.versioned")
	reg := clientsRegistry(t)
	logs := new(testenv.LogBuffer)
	m := NewMetrics()
	s := &Server{Registry: reg, AllowTransfer: []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")},
		Logger: slog.New(slog.NewTextHandler(logs, nil)), Metrics: m}
	addr := authtest.Start(t, s)
	host, port, _ := net.SplitHostPort(addr)

	cmd := exec.Command(python, "-c", dnspythonScript, host, port)
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Wait()
	defer stdin.Close()
	lines := bufio.NewScanner(stdout)
	lines.Buffer(nil, 1<<20)
	step := func() map[string]any {
		t.Helper()
		if !lines.Scan() {
			stdin.Close()
			cmd.Wait()
			t.Fatalf("dnspython: %v\n%s", lines.Err(), stderr.String())
		}
		var out map[string]any
		if err := json.Unmarshal(lines.Bytes(), &out); err != nil {
			t.Fatalf("dnspython printed %q: %v", lines.Text(), err)
		}
		return out
	}
	strs := func(v any) []string {
		var out []string
		for _, s := range v.([]any) {
			out = append(out, s.(string))
		}
		return out
	}

	out := step()
	for key, want := range map[string][]string{
		"srv":  {"0 0 8080 web.svc.internal."},
		"ptr":  {"web.svc.internal."},
		"ptr6": {"web.svc.internal."},
	} {
		if got := strs(out[key]); !slices.Equal(got, want) {
			t.Errorf("%s: %v, want %v", key, got, want)
		}
	}
	if out["unknown"] != "NXDOMAIN" {
		t.Errorf("an unknown address: %v, want NXDOMAIN", out["unknown"])
	}
	rev := strs(out["0.0.127.in-addr.arpa."])
	for _, want := range []string{
		"0.0.127.in-addr.arpa. 60 IN NS ns.svc.internal.",
		"1.0.0.127.in-addr.arpa. 10 IN PTR a.svc.internal.",
		"2.0.0.127.in-addr.arpa. 10 IN PTR web.svc.internal.",
		"53.0.0.127.in-addr.arpa. 10 IN PTR ns.svc.internal.",
		"b._dns-sd._udp.0.0.0.127.in-addr.arpa. 60 IN PTR svc.internal.",
	} {
		if !slices.Contains(rev, want) {
			t.Errorf("the reverse zone by AXFR lacks %q:\n%s", want, strings.Join(rev, "\n"))
		}
	}
	if rev6 := strs(out["0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa."]); !slices.Contains(rev6,
		"2.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa. 10 IN PTR web.svc.internal.") {
		t.Errorf("the IPv6 reverse zone by AXFR:\n%s", strings.Join(rev6, "\n"))
	}

	// A new host: the forward zone and the 127.0.0.0/24 zone change, the
	// IPv6 zone does not.
	if _, err := reg.Register(registry.Instance{Service: "ftp", Host: "files", Port: 21, TTL: 10},
		&registry.Host{Name: "files", Addrs: authtest.Addrs("127.0.0.3"), Auto: true, TTL: 10}); err != nil {
		t.Fatal(err)
	}
	fmt.Fprintln(stdin)
	out = step()
	if got := strs(out["0.0.127.in-addr.arpa."]); !slices.Contains(got, "3.0.0.127.in-addr.arpa. 10 IN PTR files.svc.internal.") {
		t.Errorf("the reverse zone after IXFR:\n%s", strings.Join(got, "\n"))
	}
	if got := strs(out["svc.internal."]); !slices.Contains(got, "_ftp._tcp.svc.internal. 10 IN SRV 0 0 21 files.svc.internal.") {
		t.Errorf("the forward zone after IXFR:\n%s", strings.Join(got, "\n"))
	}
	// Two zones changed, one did not: each IXFR answered as such (RFC
	// 1995 section 4), none falling back to a full transfer.
	if got := counted(t, m, "annuaire_dns_transfers_total"); got["fullAXFR"] != 6 || got["incrementalIXFR"] != 2 || got["uptodateIXFR"] != 1 || len(got) != 3 {
		t.Errorf("transfers counted %v, want 6 AXFR full (two per zone), 2 IXFR incremental and 1 IXFR uptodate", got)
	}
	// 31 NOTIFYs: REFUSED (RFC 1996 section 3.10), logged, the log lines
	// rate-limited: a burst, the rest dropped until remoteLogEvery passes.
	if got := strs(out["notify"]); !slices.Equal(got, []string{"REFUSED"}) {
		t.Errorf("NOTIFYs sent to annuaire were answered %v, want REFUSED", got)
	}
	log := logs.String()
	if n := strings.Count(log, `msg="notify refused"`); n != remoteLogBurst ||
		!strings.Contains(log, `level=WARN msg="notify refused" client=127.0.0.1:`) || !strings.Contains(log, `reason="annuaire is this zone's primary"`) {
		t.Errorf("%d log lines for 31 NOTIFYs, want %d:\n%s", n, remoteLogBurst, log)
	}
}
