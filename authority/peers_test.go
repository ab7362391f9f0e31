package authority

import (
	"encoding/binary"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/annuaire/annuaire/authority/internal/authtest"
	"github.com/annuaire/annuaire/internal/testenv"
)

// peerZones are the zones clientsRegistry makes annuaire hold.
var peerZones = []string{"svc.internal.", "0.0.127.in-addr.arpa.", "0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa."}

// The peers' configurations as primaries of peerZones: %[1]d is the port,
// %[2]s the peer's own directory, %[3]s the zones' stanzas, %[4]s the
// directory of the zone files (ZONE.zone). A stanza has %[1]s, the zone
// without its final dot, and %[2]s, the zone files' directory.
const (
	nsdPrimaryConf = `server:
    ip-address: 127.0.0.1@%[1]d
    username: ""
    chroot: ""
    zonesdir: "%[4]s"
    database: ""
    zonelistfile: "%[2]s/zone.list"
    xfrdfile: "%[2]s/xfrd.state"
    xfrdir: "%[2]s"
    pidfile: "%[2]s/nsd.pid"
    logfile: "%[2]s/nsd.log"
remote-control:
    control-enable: no
%[3]s`
	nsdZone = `zone:
    name: %[1]s
    zonefile: "%[2]s/%[1]s.zone"
`
	knotPrimaryConf = `server:
    listen: 127.0.0.1@%[1]d
    rundir: "%[2]s"
log:
  - target: stderr
    any: warning
database:
    storage: "%[2]s"
zone:
%[3]s`
	knotZone = `  - domain: %[1]s
    file: "%[2]s/%[1]s.zone"
    zonefile-sync: -1
`
	namedPrimaryConf = `options {
	directory "%[2]s";
	listen-on port %[1]d { 127.0.0.1; };
	listen-on-v6 { none; };
	pid-file "%[2]s/named.pid";
	session-keyfile "%[2]s/session.key";
	managed-keys-directory "%[2]s";
	recursion no;
	notify no;
	dnssec-validation no;
};
controls { }; // no rndc channel: it would take port 953
%[3]s`
	namedZone = `zone "%[1]s" { type primary; file "%[2]s/%[1]s.zone"; };
`
)

// A peerProbe is a request sent alike to annuaire and to its peers, and
// the peers whose answer annuaire's must equal.
type peerProbe struct {
	name   string
	req    []byte
	follow []string // peers annuaire answers as; nil means all of them
	why    string   // where annuaire follows some peers, why (and the RFC)
	rcode  bool     // compare the rcode only (a refusal's aa means nothing)
}

// TestPeers serves annuaire's zones, as it transfers them, from NSD, Knot
// and BIND as primaries, and sends the four servers the same requests:
// annuaire answers each as the peers do — rcode, aa, the answer, whether
// the authority section holds an SOA — where they agree, and where they
// do not, as the peers its README cites (issue 13: QCLASS ANY as NSD and
// Knot; trailing bytes FORMERR, as Knot; a NOTIFY to a primary REFUSED,
// as NSD; QTYPE ANY one RRset, as NSD and Knot). The additional section is left out: what goes there is each
// server's choice (RFC 2181 section 5.4.1).
func TestPeers(t *testing.T) {
	peers := map[string]string{
		"nsd":  testenv.NeedTool(t, "nsd"),
		"knot": testenv.NeedTool(t, "knotd"),
		"bind": testenv.NeedTool(t, "named"),
	}
	addr := authtest.Start(t, &Server{Registry: clientsRegistry(t),
		AllowTransfer: []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}, Logger: slog.New(slog.DiscardHandler)})

	dir := t.TempDir()
	var nsdZones, knotZones, namedZones strings.Builder
	for _, z := range peerZones {
		writePeerZone(t, addr, z, filepath.Join(dir, z+"zone"))
		name := strings.TrimSuffix(z, ".")
		fmt.Fprintf(&nsdZones, nsdZone, name, dir)
		fmt.Fprintf(&knotZones, knotZone, name, dir)
		fmt.Fprintf(&namedZones, namedZone, name, dir)
	}
	servers := map[string]string{"annuaire": addr}
	for peer, bin := range peers {
		pdir := filepath.Join(dir, peer)
		if err := os.Mkdir(pdir, 0o700); err != nil {
			t.Fatal(err)
		}
		port := testenv.FreePort(t)
		var conf string
		var args []string
		switch peer {
		case "nsd":
			conf = fmt.Sprintf(nsdPrimaryConf, port, pdir, nsdZones.String(), dir)
			args = []string{"-d", "-c"}
		case "knot":
			conf = fmt.Sprintf(knotPrimaryConf, port, pdir, knotZones.String())
			args = []string{"-c"}
		case "bind":
			conf = fmt.Sprintf(namedPrimaryConf, port, pdir, namedZones.String())
			args = []string{"-g"}
			if os.Geteuid() == 0 {
				args = append(args, "-u", "root") // named switches to the bind user otherwise, who cannot write pdir
			}
			args = append(args, "-c")
		}
		startPeer(t, peer, pdir, conf, bin, args...)
		servers[peer] = fmt.Sprintf("127.0.0.1:%d", port)
	}
	for peer, a := range servers {
		waitPeer(t, peer, a)
	}

	probes := []peerProbe{
		{name: "apex SOA", req: query("svc.internal.", dns.TypeSOA, dns.ClassINET)},
		{name: "apex NS", req: query("svc.internal.", dns.TypeNS, dns.ClassINET)},
		{name: "SRV", req: query("_http._tcp.svc.internal.", dns.TypeSRV, dns.ClassINET)},
		{name: "AAAA", req: query("web.svc.internal.", dns.TypeAAAA, dns.ClassINET)},
		{name: "NXDOMAIN", req: query("nope.svc.internal.", dns.TypeA, dns.ClassINET)},
		{name: "NODATA", req: query("web.svc.internal.", dns.TypeMX, dns.ClassINET)},
		{name: "empty non-terminal", req: query("_tcp.svc.internal.", dns.TypeA, dns.ClassINET)},
		{name: "browse domain", req: query("b._dns-sd._udp.svc.internal.", dns.TypePTR, dns.ClassINET)},
		{name: "default browse domain", req: query("db._dns-sd._udp.svc.internal.", dns.TypePTR, dns.ClassINET)},
		{name: "legacy browse domain", req: query("lb._dns-sd._udp.svc.internal.", dns.TypePTR, dns.ClassINET)},
		{name: "registration domain", req: query("r._dns-sd._udp.svc.internal.", dns.TypePTR, dns.ClassINET)},
		{name: "default registration domain", req: query("dr._dns-sd._udp.svc.internal.", dns.TypePTR, dns.ClassINET)},
		{name: "unknown type", req: query("web.svc.internal.", 65280, dns.ClassINET)},
		{name: "ANY", req: query("web.svc.internal.", dns.TypeANY, dns.ClassINET), follow: []string{"nsd", "knot"},
			why: "RFC 8482 section 4.2: one RRset, as NSD and Knot; BIND gives them all"},
		{name: "not our zone", req: query("example.com.", dns.TypeA, dns.ClassINET)},
		{name: "reverse apex SOA", req: query("0.0.127.in-addr.arpa.", dns.TypeSOA, dns.ClassINET)},
		{name: "reverse apex NS", req: query("0.0.127.in-addr.arpa.", dns.TypeNS, dns.ClassINET)},
		{name: "PTR", req: query("2.0.0.127.in-addr.arpa.", dns.TypePTR, dns.ClassINET)},
		{name: "PTR without a name", req: query("9.0.0.127.in-addr.arpa.", dns.TypePTR, dns.ClassINET)},
		{name: "reverse NODATA", req: query("2.0.0.127.in-addr.arpa.", dns.TypeTXT, dns.ClassINET)},
		{name: "below a PTR", req: query("x.2.0.0.127.in-addr.arpa.", dns.TypePTR, dns.ClassINET)},
		{name: "reverse legacy browse domain", req: query("lb._dns-sd._udp.0.0.0.127.in-addr.arpa.", dns.TypePTR, dns.ClassINET)},
		{name: "reverse browse domain", req: query("b._dns-sd._udp.0.0.0.127.in-addr.arpa.", dns.TypePTR, dns.ClassINET)},
		{name: "above the reverse zone", req: query("0.127.in-addr.arpa.", dns.TypeSOA, dns.ClassINET)},
		{name: "IPv6 PTR", req: query(reverseName("2001:db8::2"), dns.TypePTR, dns.ClassINET)},
		{name: "IPv6 PTR without a name", req: query(reverseName("2001:db8::9"), dns.TypePTR, dns.ClassINET)},
		{name: "IPv6 empty non-terminal", req: query(strings.SplitN(reverseName("2001:db8::2"), ".", 2)[1], dns.TypePTR, dns.ClassINET)},
		{name: "QCLASS ANY", req: query("web.svc.internal.", dns.TypeA, dns.ClassANY), follow: []string{"nsd"},
			why: "the class IN data as NSD and Knot give it; no aa and no SOA, as NSD (RFC 1034 section 3.7.1)"},
		{name: "QCLASS ANY NXDOMAIN", req: query("nope.svc.internal.", dns.TypeA, dns.ClassANY), follow: []string{"nsd"}},
		{name: "QCLASS ANY NODATA", req: query("web.svc.internal.", dns.TypeMX, dns.ClassANY), follow: []string{"nsd"}},
		{name: "QCLASS ANY PTR", req: query("2.0.0.127.in-addr.arpa.", dns.TypePTR, dns.ClassANY), follow: []string{"nsd"}},
		{name: "CHAOS", req: query("svc.internal.", dns.TypeSOA, dns.ClassCHAOS)},
		{name: "trailing bytes", req: append(query("web.svc.internal.", dns.TypeA, dns.ClassINET), 0, 0, 0, 0), follow: []string{"knot"},
			why: "issue 13: FORMERR; Knot does the same, NSD and BIND ignore the bytes"},
		{name: "NOTIFY to the primary", req: notify("svc.internal."), follow: []string{"nsd"}, rcode: true,
			why: "RFC 1996 section 3.10: refused; NSD says REFUSED, Knot NOTAUTH, BIND NOERROR"},
		{name: "NOTIFY to the reverse primary", req: notify("0.0.127.in-addr.arpa."), follow: []string{"nsd"}, rcode: true},
	}
	names := []string{"annuaire", "nsd", "knot", "bind"}
	for _, p := range probes {
		got := map[string]string{}
		for _, s := range names {
			got[s] = peerAnswer(t, servers[s], p.req)
			if p.rcode {
				got[s], _, _ = strings.Cut(got[s], " ")
			}
		}
		follow := p.follow
		if follow == nil {
			follow = names[1:]
		}
		var table strings.Builder
		for _, s := range names {
			fmt.Fprintf(&table, "\n\t%-8s %s", s, got[s])
		}
		t.Logf("%s:%s", p.name, table.String())
		for _, peer := range follow {
			if got["annuaire"] != got[peer] {
				t.Errorf("%s: annuaire answers unlike %s (%s):%s", p.name, peer, p.why, table.String())
				break
			}
		}
	}
}

// writePeerZone transfers zone from the annuaire at addr into file.
func writePeerZone(t *testing.T, addr, zone, file string) {
	t.Helper()
	m := new(dns.Msg)
	m.SetAxfr(zone)
	ch, err := (&dns.Transfer{ReadTimeout: 5 * time.Second}).In(m, addr)
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	n := 0
	for env := range ch {
		if env.Error != nil {
			t.Fatalf("AXFR %s: %v", zone, env.Error)
		}
		for _, rr := range env.RR {
			if n > 0 && rr.Header().Rrtype == dns.TypeSOA {
				continue // the closing SOA
			}
			n++
			b.WriteString(rr.String() + "\n")
		}
	}
	if err := os.WriteFile(file, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
}

// startPeer runs a peer's daemon on conf until the test ends.
func startPeer(t *testing.T, name, dir, conf, bin string, args ...string) {
	t.Helper()
	path := testenv.WriteConf(t, filepath.Join(dir, name+".conf"), conf)
	nsdLog := func() string { log, _ := os.ReadFile(filepath.Join(dir, "nsd.log")); return string(log) }
	testenv.Daemon(t, name, []func() string{nsdLog}, bin, append(args, path)...)
}

// waitPeer waits until the server at addr answers for every zone.
func waitPeer(t *testing.T, name, addr string) {
	t.Helper()
	c := &dns.Client{Timeout: 500 * time.Millisecond}
	for _, z := range peerZones {
		m := new(dns.Msg)
		m.SetQuestion(z, dns.TypeSOA)
		for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(100 * time.Millisecond) {
			r, _, err := c.Exchange(m, addr)
			if err == nil && r.Rcode == dns.RcodeSuccess && len(r.Answer) == 1 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s does not serve %s: %v %v", name, z, r, err)
			}
		}
	}
}

// query is a request for name, qtype and qclass, without EDNS: the peers
// differ in the EDNS they answer, not in what this test compares.
func query(name string, qtype, qclass uint16) []byte {
	m := new(dns.Msg)
	m.SetQuestion(name, qtype)
	m.Question[0].Qclass = qclass
	m.RecursionDesired = false
	b, err := m.Pack()
	if err != nil {
		panic(err)
	}
	return b
}

// notify is a NOTIFY for zone (RFC 1996 section 3.7: its SOA in the
// question).
func notify(zone string) []byte {
	m := new(dns.Msg)
	m.SetNotify(zone)
	b, err := m.Pack()
	if err != nil {
		panic(err)
	}
	return b
}

func reverseName(ip string) string {
	name, err := dns.ReverseAddr(ip)
	if err != nil {
		panic(err)
	}
	return name
}

// peerAnswer sends req to addr over UDP and says what the answer holds:
// its rcode, aa, the answer section's records and whether the authority
// section has the SOA that makes a negative answer cacheable (RFC 2308).
// Whether it has the NS set is each server's choice: NSD and BIND add it,
// Knot and annuaire do not.
func peerAnswer(t *testing.T, addr string, req []byte) string {
	t.Helper()
	conn, err := net.Dial("udp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	buf := make([]byte, 65535)
	for try := 0; ; try++ {
		binary.BigEndian.PutUint16(req, uint16(0x5000+try)) // a new id for each try
		if _, err := conn.Write(req); err != nil {
			t.Fatal(err)
		}
		conn.SetReadDeadline(time.Now().Add(time.Second))
		n, err := conn.Read(buf)
		if err != nil {
			if try < 3 {
				continue
			}
			return "no answer: " + err.Error()
		}
		r := new(dns.Msg)
		if err := r.Unpack(buf[:n]); err != nil {
			return "unreadable: " + err.Error()
		}
		var ans []string
		for _, rr := range r.Answer {
			ans = append(ans, strings.ReplaceAll(rr.String(), "\t", " "))
		}
		slices.Sort(ans)
		soa := slices.ContainsFunc(r.Ns, func(rr dns.RR) bool { return rr.Header().Rrtype == dns.TypeSOA })
		return fmt.Sprintf("%s aa=%v soa=%v answer=%v", dns.RcodeToString[r.Rcode], r.Authoritative, soa, ans)
	}
}
