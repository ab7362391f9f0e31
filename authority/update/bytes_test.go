package update_test

import (
	"testing"

	"github.com/miekg/dns"

	"github.com/annuaire/annuaire/authority/internal/authtest"
)

// TestUpdateKeepsBytes: what an UPDATE adds is served back byte for byte
// (RFC 1035 section 3.3.14: a character-string is any octets; RFC 4343:
// names fold A-Z only), in the order given (RFC 6763 section 6.7), a
// boolean key as a boolean (section 6.4), a TTL of 0 as 0 (RFC 2181
// section 8). Each case is an update and the answers after it, in zone
// file text; they run in order on one server.
func TestUpdateKeepsBytes(t *testing.T) {
	const soaNeg = `svc.internal. 10 IN SOA ns.svc.internal. hostmaster.svc.internal. 0 300 60 86400 10`
	steps := []updateStep{
		{name: "TXT with UTF-8, quotes, backslashes and binary, in order, a boolean key",
			update: []string{
				`Imp._ipp._tcp 60 IN SRV 0 0 631 a`,
				`Imp._ipp._tcp 60 IN TXT "txtvers=1" "utf=café" "q=say \"hi\"" "path=C:\\dir" "bin=\000\255" "duplex" "empty="`,
			},
			queries: []authtest.Case{{Name: `Imp._ipp._tcp.svc.internal.`, Type: dns.TypeTXT,
				Answer: `Imp._ipp._tcp.svc.internal. 60 IN TXT "txtvers=1" "utf=caf\195\169" "q=say \"hi\"" "path=C:\\dir" "bin=\000\255" "duplex" "empty="`}}},
		{name: "deleting the value served removes it",
			update: []string{`del Imp._ipp._tcp 0 IN TXT "utf=caf\195\169" "duplex"`},
			queries: []authtest.Case{{Name: `Imp._ipp._tcp.svc.internal.`, Type: dns.TypeTXT,
				Answer: `Imp._ipp._tcp.svc.internal. 60 IN TXT "txtvers=1" "q=say \"hi\"" "path=C:\\dir" "bin=\000\255" "empty="`}}},
		{name: "adding a key again replaces its value where it is",
			update: []string{`Imp._ipp._tcp 60 IN TXT "Q=ok" "new"`},
			queries: []authtest.Case{{Name: `Imp._ipp._tcp.svc.internal.`, Type: dns.TypeTXT,
				Answer: `Imp._ipp._tcp.svc.internal. 60 IN TXT "txtvers=1" "Q=ok" "path=C:\\dir" "bin=\000\255" "empty=" "new"`}}},
		{name: "names differing in a non-ASCII byte are distinct",
			update: []string{
				`café._x._tcp 60 IN SRV 0 0 1 a`,
				`CAFÉ._x._tcp 60 IN SRV 0 0 2 a`,
				`bin\254._x._tcp 60 IN SRV 0 0 3 a`,
			},
			queries: []authtest.Case{
				{Name: `café._x._tcp.svc.internal.`, Type: dns.TypeSRV, Answer: `café._x._tcp.svc.internal. 60 IN SRV 0 0 1 a.svc.internal.`,
					Extra: "a.svc.internal. 30 IN A 127.0.0.1\na.svc.internal. 30 IN AAAA ::1"},
				{Name: `CAFÉ._x._tcp.svc.internal.`, Type: dns.TypeSRV, Answer: `CAFÉ._x._tcp.svc.internal. 60 IN SRV 0 0 2 a.svc.internal.`,
					Extra: "a.svc.internal. 30 IN A 127.0.0.1\na.svc.internal. 30 IN AAAA ::1"},
				{Name: `CAFé._x._tcp.svc.internal.`, Type: dns.TypeSRV, Answer: `CAFé._x._tcp.svc.internal. 60 IN SRV 0 0 1 a.svc.internal.`,
					Extra: "a.svc.internal. 30 IN A 127.0.0.1\na.svc.internal. 30 IN AAAA ::1"},
				{Name: `BIN\254._x._tcp.svc.internal.`, Type: dns.TypeSRV, Answer: `BIN\254._x._tcp.svc.internal. 60 IN SRV 0 0 3 a.svc.internal.`,
					Extra: "a.svc.internal. 30 IN A 127.0.0.1\na.svc.internal. 30 IN AAAA ::1"},
				{Name: `bin\255._x._tcp.svc.internal.`, Type: dns.TypeSRV, Rcode: dns.RcodeNameError, Ns: soaNeg},
				{Name: `bin\192._x._tcp.svc.internal.`, Type: dns.TypeSRV, Rcode: dns.RcodeNameError, Ns: soaNeg},
			}},
		{name: "a prerequisite on the bytes served holds",
			update: []string{`prereq Imp._ipp._tcp 0 IN TXT "txtvers=1" "Q=ok" "path=C:\\dir" "bin=\000\255" "empty=" "new"`, "z 60 IN A 192.0.2.1"}},
		{name: "TTL 0 is a TTL",
			update: []string{`_zero._tcp 0 IN SRV 0 0 9 zero`, `zero 0 IN A 192.0.2.9`},
			queries: []authtest.Case{{Name: `_zero._tcp.svc.internal.`, Type: dns.TypeSRV,
				Answer: `_zero._tcp.svc.internal. 0 IN SRV 0 0 9 zero.svc.internal.`, Extra: `zero.svc.internal. 0 IN A 192.0.2.9`}}},
	}
	runUpdateSteps(t, steps, false)
}

// patchSerial puts the current serial into an expected SOA written with 0.
func patchSerial(soa string, serial uint32) string {
	if soa == "" {
		return ""
	}
	rr, err := dns.NewRR(soa)
	if err != nil {
		panic(err)
	}
	rr.(*dns.SOA).Serial = serial
	return rr.String()
}

// TestUpdateSubtypes: a subtype's PTR (RFC 6763 section 7.1) added and
// removed by UPDATE, and browsing it: only the instances that have it,
// with their SRV, TXT and addresses in the additional section as for the
// type (section 12.1). The instance name has spaces, a dot, parentheses
// and UTF-8 (section 4.3).
func TestUpdateSubtypes(t *testing.T) {
	const (
		imp    = `Imprimante\ Salle\ 2\.3\ \(étage\)._ipp._tcp`
		impAbs = imp + ".svc.internal."
		soaNeg = `svc.internal. 10 IN SOA ns.svc.internal. hostmaster.svc.internal. 0 300 60 86400 10`
		extra  = impAbs + ` 60 IN SRV 0 0 631 a.svc.internal.
			` + impAbs + ` 60 IN TXT "txtvers=1" "duplex"
			a.svc.internal. 30 IN A 127.0.0.1
			a.svc.internal. 30 IN AAAA ::1`
	)
	steps := []updateStep{
		{name: "an instance with a subtype, another without",
			update: []string{
				imp + ` 60 IN SRV 0 0 631 a`, imp + ` 60 IN TXT "txtvers=1" "duplex"`,
				`_printer._sub._ipp._tcp 60 IN PTR ` + imp,
				`Plain._ipp._tcp 60 IN SRV 0 0 632 b`,
			},
			queries: []authtest.Case{
				{Name: "_printer._sub._ipp._tcp.svc.internal.", Type: dns.TypePTR,
					Answer: `_printer._sub._ipp._tcp.svc.internal. 60 IN PTR ` + impAbs, Extra: extra},
				{Name: "_PRINTER._sub._ipp._tcp.svc.internal.", Type: dns.TypePTR,
					Answer: `_PRINTER._sub._ipp._tcp.svc.internal. 60 IN PTR ` + impAbs, Extra: extra},
				{Name: "_ipp._tcp.svc.internal.", Type: dns.TypePTR,
					Answer: `_ipp._tcp.svc.internal. 60 IN PTR ` + impAbs + `
						_ipp._tcp.svc.internal. 60 IN PTR Plain._ipp._tcp.svc.internal.`,
					Extra: impAbs + ` 60 IN SRV 0 0 631 a.svc.internal.
						` + impAbs + ` 60 IN TXT "txtvers=1" "duplex"
						Plain._ipp._tcp.svc.internal. 60 IN SRV 0 0 632 b.svc.internal.
						Plain._ipp._tcp.svc.internal. 60 IN TXT ""
						a.svc.internal. 30 IN A 127.0.0.1
						a.svc.internal. 30 IN AAAA ::1
						b.svc.internal. 10 IN A 127.0.0.2`},
				{Name: impAbs, Type: dns.TypeSRV, Answer: impAbs + ` 60 IN SRV 0 0 631 a.svc.internal.`,
					Extra: "a.svc.internal. 30 IN A 127.0.0.1\na.svc.internal. 30 IN AAAA ::1"},
				{Name: "_sub._ipp._tcp.svc.internal.", Type: dns.TypePTR, Ns: soaNeg},
				{Name: "_scan._sub._ipp._tcp.svc.internal.", Type: dns.TypePTR, Rcode: dns.RcodeNameError, Ns: soaNeg},
				{Name: "_printer._sub._ipp._tcp.svc.internal.", Type: dns.TypeSRV, Ns: soaNeg},
			}},
		{name: "a subtype's PTR to no instance", update: []string{`_scan._sub._ipp._tcp 60 IN PTR Nobody._ipp._tcp`}, rcode: dns.RcodeRefused},
		{name: "a subtype's PTR to another type's instance", update: []string{`_scan._sub._ipp._tcp 60 IN PTR Echo\ One._echo._tcp`}, rcode: dns.RcodeRefused},
		{name: "a second subtype, and the same again",
			update: []string{`_scan._sub._ipp._tcp 60 IN PTR Plain._ipp._tcp`, `_Printer._sub._ipp._tcp 60 IN PTR ` + imp},
			queries: []authtest.Case{{Name: "_scan._sub._ipp._tcp.svc.internal.", Type: dns.TypePTR,
				Answer: `_scan._sub._ipp._tcp.svc.internal. 60 IN PTR Plain._ipp._tcp.svc.internal.`,
				Extra: `Plain._ipp._tcp.svc.internal. 60 IN SRV 0 0 632 b.svc.internal.
					Plain._ipp._tcp.svc.internal. 60 IN TXT ""
					b.svc.internal. 10 IN A 127.0.0.2`}}},
		{name: "a prerequisite on a subtype",
			update: []string{"prereq _printer._sub._ipp._tcp 0 IN PTR " + imp, "nxdomain _fax._sub._ipp._tcp.svc.internal.", "z 60 IN A 192.0.2.1"}},
		{name: "deleting the PTR takes the subtype",
			update: []string{`del _printer._sub._ipp._tcp 0 IN PTR ` + imp},
			queries: []authtest.Case{
				{Name: "_printer._sub._ipp._tcp.svc.internal.", Type: dns.TypePTR, Rcode: dns.RcodeNameError, Ns: soaNeg},
				{Name: "_sub._ipp._tcp.svc.internal.", Type: dns.TypePTR, Ns: soaNeg},
			}},
		{name: "deleting the RRset takes it from every instance",
			update: []string{`delset _scan._sub._ipp._tcp.svc.internal. PTR`},
			queries: []authtest.Case{
				{Name: "_sub._ipp._tcp.svc.internal.", Type: dns.TypePTR, Rcode: dns.RcodeNameError, Ns: soaNeg},
				{Name: "Plain._ipp._tcp.svc.internal.", Type: dns.TypeSRV, Answer: `Plain._ipp._tcp.svc.internal. 60 IN SRV 0 0 632 b.svc.internal.`,
					Extra: "b.svc.internal. 10 IN A 127.0.0.2"},
			}},
	}
	runUpdateSteps(t, steps, true)
}

// An updateStep is an update and the answers after it, in zone file text.
type updateStep struct {
	name    string
	update  []string
	rcode   int
	queries []authtest.Case
}

// runUpdateSteps sends each step's update signed over TCP to one server,
// in order, then asks its queries over UDP, every one with EDNS if edns.
func runUpdateSteps(t *testing.T, steps []updateStep, edns bool) {
	t.Helper()
	reg := authtest.Registry(t)
	addr := newUpdateServer(t, reg, updKey)
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			r, err := exchange(t, addr, "tcp", updKey, updateMsg(t, authtest.Zone, st.update...))
			if err != nil {
				t.Fatal(err)
			}
			if r.Rcode != st.rcode {
				t.Fatalf("update: rcode %s, want %s", dns.RcodeToString[r.Rcode], dns.RcodeToString[st.rcode])
			}
			for _, q := range st.queries {
				q.Ns = patchSerial(q.Ns, reg.Snapshot().Serial())
				q.EDNS = q.EDNS || edns
				m, err := dns.Exchange(q.Request(), addr)
				if err != nil {
					t.Fatal(err)
				}
				t.Run(q.Name, func(t *testing.T) { q.Check(t, m) })
			}
		})
	}
}
