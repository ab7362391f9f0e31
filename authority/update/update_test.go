package update_test

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/md5"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"hash"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/annuaire/annuaire/authority"
	"github.com/annuaire/annuaire/authority/internal/authtest"
	"github.com/annuaire/annuaire/authority/tsig"
	"github.com/annuaire/annuaire/authority/update"
	"github.com/annuaire/annuaire/authority/zone"
	"github.com/annuaire/annuaire/internal/testenv"

	"github.com/miekg/dns"

	"github.com/annuaire/annuaire/registry"
)

var updKey = tsig.Key{Algorithm: dns.HmacSHA256, Name: "ddns-key.", Secret: "c2VjcmV0IGZvciB0ZXN0cyBvbmx5IQ=="}

// newUpdateServer serves a test registry, updatable with updKey, and
// returns its address.
func newUpdateServer(tb testing.TB, reg *registry.Registry, keys ...tsig.Key) string {
	tb.Helper()
	return authtest.Start(tb, &authority.Server{Registry: reg, Keys: keys, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
}

// updateMsg builds an UPDATE for zone from zone-file lines: "prereq LINE"
// goes to the prerequisite section, anything else to the update section,
// written as RFC 2136 section 2.5 says (class NONE deletes a record, ANY
// an RRset). Each line is RR text; a leading "del" makes it a delete, and
// "delset NAME TYPE" / "delname NAME" and the prerequisite forms
// "yxdomain NAME", "nxdomain NAME", "yxrrset NAME TYPE", "nxrrset NAME TYPE"
// are shorthands.
func updateMsg(tb testing.TB, zone string, lines ...string) *dns.Msg {
	tb.Helper()
	m := new(dns.Msg)
	m.SetUpdate(zone)
	rr := func(s string) dns.RR {
		r, err := dns.NewRR("$ORIGIN " + authtest.Zone + "\n" + s)
		if err != nil {
			tb.Fatalf("%q: %v", s, err)
		}
		return r
	}
	stub := func(name, typ string) dns.RR {
		return &dns.ANY{Hdr: dns.RR_Header{Name: dns.Fqdn(name), Rrtype: dns.StringToType[typ]}}
	}
	for _, l := range lines {
		f := strings.Fields(l)
		switch f[0] {
		case "yxdomain":
			m.NameUsed([]dns.RR{stub(f[1], "ANY")})
		case "nxdomain":
			m.NameNotUsed([]dns.RR{stub(f[1], "ANY")})
		case "yxrrset":
			m.RRsetUsed([]dns.RR{stub(f[1], f[2])})
		case "nxrrset":
			m.RRsetNotUsed([]dns.RR{stub(f[1], f[2])})
		case "prereq": // value-dependent: the RR itself
			m.Used([]dns.RR{rr(strings.Join(f[1:], " "))})
		case "raw": // as written, class and TTL included
			m.Ns = append(m.Ns, rr(strings.Join(f[1:], " ")))
		case "rawprereq":
			m.Answer = append(m.Answer, rr(strings.Join(f[1:], " ")))
		case "del":
			m.Remove([]dns.RR{rr(strings.Join(f[1:], " "))})
		case "delset":
			m.RemoveRRset([]dns.RR{stub(f[1], f[2])})
		case "delname":
			m.RemoveName([]dns.RR{stub(f[1], "ANY")})
		default:
			m.Insert([]dns.RR{rr(l)})
		}
	}
	return m
}

// exchange signs m with key (if its Name is set) and sends it over net.
func exchange(tb testing.TB, addr, network string, key tsig.Key, m *dns.Msg) (*dns.Msg, error) {
	tb.Helper()
	c := &dns.Client{Net: network, Timeout: 5 * time.Second}
	if key.Name != "" {
		c.TsigProvider = tsig.Keyring{key}
		m.SetTsig(key.Name, key.Algorithm, 300, time.Now().Unix())
	}
	r, _, err := c.Exchange(m, addr)
	if r == nil && err != nil {
		tb.Fatalf("exchange: %v", err)
	}
	return r, err
}

func instances(reg *registry.Registry) []string {
	var out []string
	for inst := range reg.Snapshot().All() {
		s := inst.Label + " _" + inst.Service + "._" + inst.Proto + " " + inst.Host + ":" + strconv.Itoa(int(inst.Port)) +
			" p" + strconv.Itoa(int(inst.Priority)) + " w" + strconv.Itoa(int(inst.Weight)) + " ttl" + strconv.Itoa(int(inst.TTL))
		if len(inst.TXT) > 0 {
			s += " " + strings.Join(inst.TXT, ",")
		}
		out = append(out, s)
	}
	slices.Sort(out)
	return out
}

func hostAddrs(reg *registry.Registry, name string) string {
	h, ok := reg.Snapshot().Host(name)
	if !ok {
		return "<none>"
	}
	var s []string
	for _, a := range h.Addrs {
		s = append(s, a.String())
	}
	return strings.Join(s, " ")
}

func TestUpdate(t *testing.T) {
	// What newTestRegistry holds, as instances() prints it.
	base := []string{
		"Echo One _echo._tcp a:7007 p10 w5 ttl10 path=/,v=1",
		"My Web.v2 _http._tcp b:8080 p0 w0 ttl10",
		"a-23 _telnet._tcp a:23 p0 w0 ttl10",
		"a-7007 _echo._udp a:7007 p0 w0 ttl10",
		"b-25 _smtp._tcp b:25 p10 w0 ttl10",
		"b-7008 _echo._tcp b:7008 p20 w0 ttl20",
	}
	with := func(add []string, drop ...string) []string {
		out := slices.DeleteFunc(slices.Clone(base), func(s string) bool { return slices.Contains(drop, s) })
		out = append(out, add...)
		slices.Sort(out)
		return out
	}
	tests := []struct {
		name      string
		zone      string // "" is authtest.Zone
		lines     []string
		rcode     int
		instances []string          // nil: unchanged
		hosts     map[string]string // host → addresses, "<none>" for absent
	}{
		{name: "add SRV", lines: []string{"_ftp._tcp 60 IN SRV 0 5 2121 files"},
			instances: with([]string{"files-2121 _ftp._tcp files:2121 p0 w5 ttl60"})},
		{name: "add SRV and A", lines: []string{"_ftp._tcp 60 IN SRV 0 5 2121 files", "files 60 IN A 192.0.2.21", "files 60 IN AAAA 2001:db8::21"},
			instances: with([]string{"files-2121 _ftp._tcp files:2121 p0 w5 ttl60"}), hosts: map[string]string{"files": "192.0.2.21 2001:db8::21"}},
		{name: "add A to an existing host", lines: []string{"b 60 IN A 192.0.2.2"}, hosts: map[string]string{"b": "127.0.0.2 192.0.2.2"}},
		{name: "re-adding an SRV replaces its priority and weight", lines: []string{"_echo._tcp 30 IN SRV 1 2 7008 b"},
			instances: with([]string{"b-7008 _echo._tcp b:7008 p1 w2 ttl30"}, "b-7008 _echo._tcp b:7008 p20 w0 ttl20")},
		{name: "DNS-SD instance with TXT", lines: []string{`My\ Files._ftp._tcp 60 IN SRV 0 0 2121 files`, `My\ Files._ftp._tcp 60 IN TXT "path=/pub" "anon"`},
			instances: with([]string{"My Files _ftp._tcp files:2121 p0 w0 ttl60 path=/pub,anon"})},
		{name: "TXT merges keys", lines: []string{`Echo\ One._echo._tcp 10 IN TXT "v=2" "new=yes"`},
			instances: with([]string{"Echo One _echo._tcp a:7007 p10 w5 ttl10 path=/,v=2,new=yes"}, base[0])},
		{name: "an SRV at an endpoint whose default id a moved instance holds", lines: []string{`Echo\ One._echo._tcp 10 IN SRV 10 5 7009 a`, "_echo._tcp 60 IN SRV 0 0 7007 a"},
			rcode: dns.RcodeRefused},
		{name: "TXT without an instance", lines: []string{`Nobody._echo._tcp 10 IN TXT "v=2"`}, rcode: dns.RcodeRefused},
		{name: "all or nothing", lines: []string{"_ftp._tcp 60 IN SRV 0 5 2121 files", "files 60 IN A 192.0.2.21", "files 60 IN CNAME a"},
			rcode: dns.RcodeRefused, hosts: map[string]string{"files": "<none>"}},
		{name: "invalid port is refused, nothing applied", lines: []string{"files 60 IN A 192.0.2.21", "_ftp._tcp 60 IN SRV 0 5 0 files"},
			rcode: dns.RcodeRefused, hosts: map[string]string{"files": "<none>"}},
		{name: "a host holds at most registry.MaxAddresses addresses", lines: manyA("b", 2, registry.MaxAddresses),
			rcode: dns.RcodeRefused, hosts: map[string]string{"b": "127.0.0.2"}},
		{name: "a host holds registry.MaxAddresses addresses", lines: manyA("b", 2, registry.MaxAddresses-1)},
		{name: "target outside the zone", lines: []string{"_ftp._tcp 60 IN SRV 0 5 2121 ftp.example.org."}, rcode: dns.RcodeRefused},
		{name: "delete one SRV", lines: []string{"del _echo._tcp 0 IN SRV 20 0 7008 b"},
			instances: with(nil, "b-7008 _echo._tcp b:7008 p20 w0 ttl20")},
		{name: "delete an SRV that is not there", lines: []string{"del _echo._tcp 0 IN SRV 99 0 7008 b"}},
		{name: "delete the SRV RRset", lines: []string{"delset _echo._tcp.svc.internal. SRV"},
			instances: with(nil, base[0], "b-7008 _echo._tcp b:7008 p20 w0 ttl20")},
		{name: "delete the service name", lines: []string{"delname _echo._tcp." + authtest.Zone},
			instances: with(nil, base[0], "b-7008 _echo._tcp b:7008 p20 w0 ttl20")},
		{name: "delete a DNS-SD instance", lines: []string{`delname My\032Web\.v2._http._tcp.` + authtest.Zone},
			instances: with(nil, base[1])},
		{name: "delete TXT keys", lines: []string{`del Echo\ One._echo._tcp 0 IN TXT "v=1"`},
			instances: with([]string{"Echo One _echo._tcp a:7007 p10 w5 ttl10 path=/"}, base[0])},
		{name: "delete one address", lines: []string{"del a 0 IN A 127.0.0.1"}, hosts: map[string]string{"a": "::1"}},
		{name: "delete the AAAA RRset", lines: []string{"delset a." + authtest.Zone + " AAAA"}, hosts: map[string]string{"a": "127.0.0.1"}},
		{name: "deleting the last address deletes the host", lines: []string{"del b 0 IN A 127.0.0.2"}, hosts: map[string]string{"b": "<none>"}},
		{name: "delete a host", lines: []string{"delname www.lab." + authtest.Zone}, hosts: map[string]string{"www.lab": "<none>"}},
		{name: "the apex SOA and NS cannot be deleted", lines: []string{"delset " + authtest.Zone + " SOA", "delset " + authtest.Zone + " NS", "delname " + authtest.Zone}},
		{name: "derived PTR", lines: []string{"_echo._tcp 60 IN PTR x._echo._tcp"}, rcode: dns.RcodeRefused},
		{name: "derived MX", lines: []string{"@ 60 IN MX 10 b"}, rcode: dns.RcodeRefused},
		{name: "derived service addresses", lines: []string{"delset http.svc.internal. A"}, rcode: dns.RcodeRefused},
		{name: "a host named like a service, added", lines: []string{"http 60 IN A 192.0.2.80"}, hosts: map[string]string{"http": "192.0.2.80"}},
		{name: "a host named like a service", lines: []string{"echo 60 IN A 192.0.2.8"}, hosts: map[string]string{"echo": "192.0.2.7 192.0.2.8"}},
		{name: "CNAME", lines: []string{"alias 60 IN CNAME a"}, rcode: dns.RcodeRefused},
		{name: "wrong zone", zone: "example.org.", lines: []string{"x.example.org. 60 IN A 192.0.2.1"}, rcode: dns.RcodeNotAuth},
		{name: "a reverse zone held", zone: "0.0.127.in-addr.arpa.", lines: []string{"9.0.0.127.in-addr.arpa. 60 IN PTR a.svc.internal."}, rcode: dns.RcodeRefused},
		{name: "record outside the zone", lines: []string{"x.example.org. 60 IN A 192.0.2.1"}, rcode: dns.RcodeNotZone},
		{name: "prescan: RRset delete with data", lines: []string{"raw b 0 CLASS255 A 127.0.0.2"}, rcode: dns.RcodeFormatError},
		{name: "prescan: class CH", lines: []string{"raw files 60 CH A 192.0.2.1"}, rcode: dns.RcodeFormatError},

		// Prerequisites, RFC 2136 section 2.4.
		{name: "yxdomain holds", lines: []string{"yxdomain a." + authtest.Zone, "a 60 IN A 192.0.2.1"}, hosts: map[string]string{"a": "127.0.0.1 ::1 192.0.2.1"}},
		{name: "yxdomain fails", lines: []string{"yxdomain files." + authtest.Zone, "files 60 IN A 192.0.2.1"}, rcode: dns.RcodeNameError, hosts: map[string]string{"files": "<none>"}},
		{name: "an empty non-terminal is not in use", lines: []string{"yxdomain lab." + authtest.Zone}, rcode: dns.RcodeNameError},
		{name: "nxdomain holds", lines: []string{"nxdomain files." + authtest.Zone, "files 60 IN A 192.0.2.1"}, hosts: map[string]string{"files": "192.0.2.1"}},
		{name: "nxdomain fails", lines: []string{"nxdomain a." + authtest.Zone, "a 60 IN A 192.0.2.1"}, rcode: dns.RcodeYXDomain},
		{name: "yxrrset holds", lines: []string{"yxrrset _echo._tcp." + authtest.Zone + " SRV"}},
		{name: "yxrrset fails", lines: []string{"yxrrset b." + authtest.Zone + " AAAA"}, rcode: dns.RcodeNXRrset},
		{name: "nxrrset holds", lines: []string{"nxrrset b." + authtest.Zone + " AAAA"}},
		{name: "nxrrset fails", lines: []string{"nxrrset b." + authtest.Zone + " A"}, rcode: dns.RcodeYXRrset},
		{name: "value-dependent holds", lines: []string{"prereq a 0 IN A 127.0.0.1", "prereq a 0 IN AAAA ::1", "prereq b 0 IN A 127.0.0.2"}},
		{name: "value-dependent needs the whole RRset", lines: []string{"prereq _echo._tcp 0 IN SRV 20 0 7008 b"}, rcode: dns.RcodeNXRrset},
		{name: "value-dependent SRV set", lines: []string{"prereq _echo._tcp 0 IN SRV 20 0 7008 b", "prereq _echo._tcp 0 IN SRV 10 5 7007 a"}},
		{name: "value-dependent TXT", lines: []string{`prereq Echo\ One._echo._tcp 0 IN TXT "path=/" "v=1"`}},
		{name: "value-dependent TXT is its strings in order", lines: []string{`prereq Echo\ One._echo._tcp 0 IN TXT "v=1" "path=/"`}, rcode: dns.RcodeNXRrset},
		{name: "value-dependent fails", lines: []string{"prereq b 0 IN A 192.0.2.99", "b 60 IN A 192.0.2.1"}, rcode: dns.RcodeNXRrset, hosts: map[string]string{"b": "127.0.0.2"}},
		{name: "prerequisite with a TTL", lines: []string{"rawprereq b 60 IN A 127.0.0.2"}, rcode: dns.RcodeFormatError},
		{name: "unhealthy instances are not in the zone", lines: []string{"nxrrset _telnet._tcp." + authtest.Zone + " SRV"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			reg := authtest.Registry(t)
			addr := newUpdateServer(t, reg, updKey)
			serial := reg.Snapshot().Serial()
			r, err := exchange(t, addr, "udp", updKey, updateMsg(t, cmpOr(tt.zone, authtest.Zone), tt.lines...))
			// miekg/dns refuses to verify any NOTAUTH answer.
			if err != nil && r.Rcode != dns.RcodeNotAuth {
				t.Fatalf("response does not verify: %v", err)
			}
			if r.Rcode != tt.rcode {
				t.Fatalf("rcode %s, want %s", dns.RcodeToString[r.Rcode], dns.RcodeToString[tt.rcode])
			}
			if r.IsTsig() == nil {
				t.Errorf("answer to a signed update is not signed")
			}
			want := tt.instances
			if want == nil {
				want = base
			}
			if got := instances(reg); !slices.Equal(got, want) {
				t.Errorf("instances:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
			}
			for h, w := range tt.hosts {
				if got := hostAddrs(reg, h); got != w {
					t.Errorf("host %s: %s, want %s", h, got, w)
				}
			}
			if tt.rcode != dns.RcodeSuccess && reg.Snapshot().Serial() != serial {
				t.Errorf("a failed update changed the serial")
			}
		})
	}
}

// TestUpdateTooManyRecords: an update past update.MaxUpdateRecords is refused
// whole, over TCP where it fits in one message.
func TestUpdateTooManyRecords(t *testing.T) {
	reg := authtest.Registry(t)
	addr := newUpdateServer(t, reg, updKey)
	serial := reg.Snapshot().Serial()
	lines := make([]string, update.MaxUpdateRecords+1)
	for i := range lines {
		lines[i] = fmt.Sprintf("many 60 IN A 10.%d.%d.%d", i>>16&255, i>>8&255, i&255)
	}
	r, err := exchange(t, addr, "tcp", updKey, updateMsg(t, authtest.Zone, lines...))
	if err != nil {
		t.Fatal(err)
	}
	if r.Rcode != dns.RcodeRefused {
		t.Fatalf("rcode %s, want REFUSED", dns.RcodeToString[r.Rcode])
	}
	if got := hostAddrs(reg, "many"); got != "<none>" || reg.Snapshot().Serial() != serial {
		t.Errorf("a refused update wrote: host many = %s", got)
	}
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// TestUpdateAuth checks who may update, and the answers RFC 8945 section
// 5.2 gives to the others.
func TestUpdateAuth(t *testing.T) {
	md5Key := tsig.Key{Algorithm: "hmac-md5.sig-alg.reg.int.", Name: "old-key.", Secret: updKey.Secret}
	tests := []struct {
		name    string
		keys    []tsig.Key // the server's
		sign    tsig.Key   // the client's
		skew    time.Duration
		rcode   int
		tsigErr uint16
		signed  bool // the answer carries a MAC
	}{
		{name: "OK", keys: []tsig.Key{updKey}, sign: updKey, signed: true},
		{name: "OK md5", keys: []tsig.Key{updKey, md5Key}, sign: md5Key, signed: true},
		{name: "no keys configured", sign: updKey, rcode: dns.RcodeNotAuth, tsigErr: dns.RcodeBadKey},
		{name: "no keys configured, unsigned", rcode: dns.RcodeRefused},
		{name: "unsigned", keys: []tsig.Key{updKey}, rcode: dns.RcodeRefused},
		{name: "unknown key", keys: []tsig.Key{updKey}, sign: tsig.Key{Algorithm: dns.HmacSHA256, Name: "other.", Secret: updKey.Secret}, rcode: dns.RcodeNotAuth, tsigErr: dns.RcodeBadKey},
		{name: "wrong algorithm", keys: []tsig.Key{updKey}, sign: tsig.Key{Algorithm: dns.HmacSHA512, Name: updKey.Name, Secret: updKey.Secret}, rcode: dns.RcodeNotAuth, tsigErr: dns.RcodeBadKey},
		{name: "wrong secret", keys: []tsig.Key{updKey}, sign: tsig.Key{Algorithm: dns.HmacSHA256, Name: updKey.Name, Secret: "d3Jvbmcgc2VjcmV0"}, rcode: dns.RcodeNotAuth, tsigErr: dns.RcodeBadSig},
		{name: "clock skew", keys: []tsig.Key{updKey}, sign: updKey, skew: -time.Hour, rcode: dns.RcodeNotAuth, tsigErr: dns.RcodeBadTime, signed: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			reg := authtest.Registry(t)
			addr := newUpdateServer(t, reg, tt.keys...)
			serial := reg.Snapshot().Serial()
			m := updateMsg(t, authtest.Zone, "files 60 IN A 192.0.2.21")
			var mac string
			if tt.sign.Name != "" {
				m.SetTsig(tt.sign.Name, tt.sign.Algorithm, 300, time.Now().Add(tt.skew).Unix())
				buf, m2, err := dns.TsigGenerateWithProvider(m, tsig.Keyring{tt.sign}, "", false)
				if err != nil {
					t.Fatal(err)
				}
				mac = m2
				m = new(dns.Msg)
				if err := m.Unpack(buf); err != nil {
					t.Fatal(err)
				}
			}
			raw, err := rawExchange(addr, m)
			if err != nil {
				t.Fatal(err)
			}
			r := new(dns.Msg)
			if err := r.Unpack(raw); err != nil {
				t.Fatal(err)
			}
			if r.Rcode != tt.rcode {
				t.Errorf("rcode %s, want %s", dns.RcodeToString[r.Rcode], dns.RcodeToString[tt.rcode])
			}
			ts := r.IsTsig()
			switch {
			case tt.sign.Name == "" && ts != nil:
				t.Errorf("answer to an unsigned request carries a TSIG")
			case tt.sign.Name != "" && ts == nil:
				t.Fatalf("answer to a signed request has no TSIG (RFC 8945 section 5.3)")
			case ts != nil:
				if ts.Error != tt.tsigErr {
					t.Errorf("TSIG error %s, want %s", dns.RcodeToString[int(ts.Error)], dns.RcodeToString[int(tt.tsigErr)])
				}
				if got := ts.MACSize > 0; got != tt.signed {
					t.Errorf("answer signed: %v, want %v (RFC 8945 section 5.3.2)", got, tt.signed)
				}
				if tt.signed {
					// The MAC checks with the request's MAC; for BADTIME
					// only the time is then wrong (section 5.2.3).
					if err := checkAnswerMAC(raw, tt.sign, mac); err != nil {
						t.Errorf("answer's MAC: %v", err)
					}
					if tt.tsigErr == dns.RcodeBadTime {
						if ts.OtherLen != 6 || ts.TimeSigned != uint64(time.Now().Add(tt.skew).Unix()) && ts.TimeSigned+1 != uint64(time.Now().Add(tt.skew).Unix()) {
							t.Errorf("BADTIME answer: time signed %d, other data %q; want the request's time and the server's", ts.TimeSigned, ts.OtherData)
						}
					}
				}
			}
			if hostAddrs(reg, "files") != "<none>" && tt.rcode != dns.RcodeSuccess {
				t.Errorf("refused update applied")
			}
			if tt.rcode == dns.RcodeSuccess && hostAddrs(reg, "files") != "192.0.2.21" {
				t.Errorf("update not applied")
			}
			if tt.rcode != dns.RcodeSuccess && reg.Snapshot().Serial() != serial {
				t.Errorf("serial moved")
			}
		})
	}
}

// checkAnswerMAC checks the MAC of a signed answer as RFC 8945 section
// 4.3.1 computes it, whatever its RCODE: miekg/dns verifies no NOTAUTH
// answer, and a BADTIME one is out of its time window by design.
func checkAnswerMAC(raw []byte, key tsig.Key, requestMAC string) error {
	r := new(dns.Msg)
	if err := r.Unpack(raw); err != nil {
		return err
	}
	ts := r.IsTsig()
	tbuf := make([]byte, 1024)
	tlen, err := dns.PackRR(ts, tbuf, 0, nil, false)
	if err != nil {
		return err
	}
	body := bytes.Clone(raw[:len(raw)-tlen])
	binary.BigEndian.PutUint16(body[0:], ts.OrigId)
	binary.BigEndian.PutUint16(body[10:], uint16(len(r.Extra)-1))
	reqMAC, _ := hex.DecodeString(requestMAC)
	var buf []byte
	buf = binary.BigEndian.AppendUint16(buf, uint16(len(reqMAC)))
	buf = append(buf, reqMAC...)
	buf = append(buf, body...)
	name := func(n string) {
		b := make([]byte, 256)
		off, _ := dns.PackDomainName(dns.CanonicalName(n), b, 0, nil, false)
		buf = append(buf, b[:off]...)
	}
	name(ts.Hdr.Name)
	buf = binary.BigEndian.AppendUint16(buf, dns.ClassANY)
	buf = binary.BigEndian.AppendUint32(buf, 0)
	name(ts.Algorithm)
	buf = binary.BigEndian.AppendUint16(buf, uint16(ts.TimeSigned>>32))
	buf = binary.BigEndian.AppendUint32(buf, uint32(ts.TimeSigned))
	buf = binary.BigEndian.AppendUint16(buf, ts.Fudge)
	buf = binary.BigEndian.AppendUint16(buf, ts.Error)
	buf = binary.BigEndian.AppendUint16(buf, ts.OtherLen)
	other, _ := hex.DecodeString(ts.OtherData)
	buf = append(buf, other...)
	secret, _ := base64.StdEncoding.DecodeString(key.Secret)
	// The hash of each algorithm, written here again: the check must
	// not use the code it checks.
	hashes := map[string]func() hash.Hash{"hmac-md5.sig-alg.reg.int.": md5.New, dns.HmacSHA1: sha1.New,
		dns.HmacSHA224: sha256.New224, dns.HmacSHA256: sha256.New, dns.HmacSHA384: sha512.New384, dns.HmacSHA512: sha512.New}
	h := hmac.New(hashes[key.Algorithm], secret)
	h.Write(buf)
	if got := hex.EncodeToString(h.Sum(nil)); got != ts.MAC {
		return fmt.Errorf("MAC %s, computed %s", ts.MAC, got)
	}
	return nil
}

// rawExchange sends m as it is (already signed) over UDP and returns the
// answer's bytes.
func rawExchange(addr string, m *dns.Msg) ([]byte, error) {
	buf, err := m.Pack()
	if err != nil {
		return nil, err
	}
	return rawExchangeBytes(addr, buf)
}

func rawExchangeBytes(addr string, buf []byte) ([]byte, error) {
	c, err := net.Dial("udp", addr)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write(buf); err != nil {
		return nil, err
	}
	out := make([]byte, 65535)
	n, err := c.Read(out)
	return out[:n], err
}

// TestUpdateLog checks the one log line of an update.
func TestUpdateLog(t *testing.T) {
	buf := &logLines{}
	reg := authtest.Registry(t)
	addr := authtest.Start(t, &authority.Server{Registry: reg, Keys: []tsig.Key{updKey}, Logger: slog.New(slog.NewTextHandler(buf, nil))})
	exchange(t, addr, "udp", updKey, updateMsg(t, authtest.Zone, "files 60 IN A 192.0.2.1", "del b 0 IN A 127.0.0.2"))
	exchange(t, addr, "udp", tsig.Key{}, updateMsg(t, authtest.Zone, "files 60 IN A 192.0.2.1"))
	var lines []string
	// The line is written once the answer is sent: wait for it.
	for deadline := time.Now().Add(5 * time.Second); len(lines) < 2 && time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		lines = lines[:0]
		for l := range strings.Lines(buf.String()) {
			if strings.Contains(l, `msg="dns update`) {
				lines = append(lines, l)
			}
		}
	}
	if len(lines) != 2 {
		t.Fatalf("want 2 update lines, got:\n%s", buf.String())
	}
	// Each line is written after its answer is sent, so the second
	// update's can come first.
	if strings.Contains(lines[0], "refused") {
		lines[0], lines[1] = lines[1], lines[0]
	}
	if !strings.Contains(lines[1], `msg="dns update refused"`) {
		t.Errorf("a refused update's line: %s", lines[1])
	}
	for i, want := range [][]string{
		{"key=ddns-key.", "client=127.0.0.1:", "zone=svc.internal.", "added=1", "removed=1", "rcode=NOERROR", "serial="},
		{`key=""`, "rcode=REFUSED", "reason=unsigned"},
	} {
		for _, w := range want {
			if !strings.Contains(lines[i], w) {
				t.Errorf("line %d %q lacks %q", i, lines[i], w)
			}
		}
	}
}

// TestUpdateLogFlood: refused updates, which anyone can send, are logged
// a few at once and then aggregated, one line per source per interval
// with a count (was: one line per packet, 6.45 MB of log for 1.95 MB of
// spoofable packets).
func TestUpdateLogFlood(t *testing.T) {
	buf := &logLines{}
	addr := authtest.Start(t, &authority.Server{Registry: authtest.Registry(t), Keys: []tsig.Key{updKey}, Logger: slog.New(slog.NewTextHandler(buf, nil))})
	req, err := updateMsg(t, authtest.Zone, "files 60 IN A 192.0.2.1").Pack()
	if err != nil {
		t.Fatal(err)
	}
	const n = 300
	for range n {
		if _, err := rawExchangeBytes(addr, req); err != nil {
			t.Fatal(err)
		}
	}
	got := strings.Count(buf.String(), `msg="dns update refused"`)
	t.Logf("%d refused updates, %d lines, %d bytes of log", n, got, len(buf.String()))
	if got == 0 || got > 10 {
		t.Errorf("%d lines for %d refused updates from one source, want a few:\n%s", got, n, buf.String())
	}
}

type logLines struct {
	mu sync.Mutex // guards b
	b  bytes.Buffer
}

func (lb *logLines) Write(p []byte) (int, error) {
	lb.mu.Lock()
	defer lb.mu.Unlock()
	return lb.b.Write(p)
}

func (lb *logLines) String() string {
	lb.mu.Lock()
	defer lb.mu.Unlock()
	return lb.b.String()
}

// TestUpdateRetransmit sends one signed update twice, as nsupdate does when
// an answer is lost: the copy is answered as the first, and not applied
// again.
func TestUpdateRetransmit(t *testing.T) {
	reg := authtest.Registry(t)
	addr := newUpdateServer(t, reg, updKey)
	serial := reg.Snapshot().Serial()
	m := updateMsg(t, authtest.Zone, "nxdomain files."+authtest.Zone, "files 60 IN A 192.0.2.21")
	m.SetTsig(updKey.Name, updKey.Algorithm, 300, time.Now().Unix())
	buf, _, err := dns.TsigGenerateWithProvider(m, tsig.Keyring{updKey}, "", false)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		raw, err := rawExchangeBytes(addr, buf)
		if err != nil {
			t.Fatal(err)
		}
		r := new(dns.Msg)
		if err := r.Unpack(raw); err != nil {
			t.Fatal(err)
		}
		if r.Rcode != dns.RcodeSuccess {
			t.Errorf("copy %d: rcode %s, want NOERROR", i, dns.RcodeToString[r.Rcode])
		}
	}
	if got := reg.Snapshot().Serial(); got != serial+1 {
		t.Errorf("serial %d, want %d: applied more than once", got, serial+1)
	}
	// A new update (new MAC) with the same content is a new update.
	r, err := exchange(t, addr, "udp", updKey, updateMsg(t, authtest.Zone, "nxdomain files."+authtest.Zone, "files 60 IN A 192.0.2.21"))
	if err != nil || r.Rcode != dns.RcodeYXDomain {
		t.Errorf("fresh update: %v, %v; want YXDOMAIN", r.Rcode, err)
	}
}

// TestUpdateTCPMany sends many updates on one TCP connection.
func TestUpdateTCPMany(t *testing.T) {
	reg := authtest.Registry(t)
	addr := newUpdateServer(t, reg, updKey)
	nc, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	const n = 200
	for i := range n {
		// A dns.Conn chains each request's MAC into the next signature,
		// as for the messages of one transfer: a fresh one per update,
		// on the same connection.
		conn := &dns.Conn{Conn: nc, TsigProvider: tsig.Keyring{updKey}}
		m := updateMsg(t, authtest.Zone, "_many._tcp 60 IN SRV 0 0 "+strconv.Itoa(1000+i)+" many", "many 60 IN A 192.0.2."+strconv.Itoa(i%registry.MaxAddresses+1))
		m.SetTsig(updKey.Name, updKey.Algorithm, 300, time.Now().Unix())
		conn.SetDeadline(time.Now().Add(5 * time.Second))
		if err := conn.WriteMsg(m); err != nil {
			t.Fatalf("update %d: %v", i, err)
		}
		r, err := conn.ReadMsg()
		if err != nil {
			t.Fatalf("update %d: %v", i, err)
		}
		if r.Rcode != dns.RcodeSuccess || r.Id != m.Id {
			t.Fatalf("update %d: rcode %s id %d, want NOERROR id %d", i, dns.RcodeToString[r.Rcode], r.Id, m.Id)
		}
	}
	st, ok := reg.Snapshot().Type("tcp", "many")
	if !ok || st.Instances != n {
		t.Errorf("_many._tcp has %d instances, want %d", st.Instances, n)
	}
}

// TestNsupdate drives the real nsupdate (bind9-dnsutils), with -y over UDP
// and a key file over TCP, and checks the registry and dig.
func TestNsupdate(t *testing.T) {
	nsupdate := testenv.NeedTool(t, "nsupdate")
	key := tsig.Key{Algorithm: dns.HmacSHA256, Name: "ddns-key.", Secret: "bnN1cGRhdGUgdGVzdCBrZXkgLSAzMiBieXRlcyE="}
	md5Key, err := tsig.ParseKey("old-key:" + key.Secret)
	if err != nil {
		t.Fatal(err)
	}
	reg := authtest.Registry(t)
	addr := newUpdateServer(t, reg, key, md5Key)
	host, port, _ := net.SplitHostPort(addr)
	run := func(args []string, script string) (string, error) {
		t.Helper()
		cmd := exec.Command(nsupdate, append([]string{"-t", "5", "-u", "1"}, args...)...)
		cmd.Stdin = strings.NewReader("server " + host + " " + port + "\n" + script + "send\n")
		out, err := cmd.CombinedOutput()
		t.Logf("nsupdate %s\n%s", strings.Join(args, " "), out)
		return string(out), err
	}
	serial := reg.Snapshot().Serial()

	// Without a key, and with a wrong secret: refused, nothing changes.
	add := "zone svc.internal.\nupdate add _ftp._tcp.svc.internal. 60 SRV 0 5 2121 files.svc.internal.\nupdate add files.svc.internal. 60 A 192.0.2.21\n"
	if out, err := run(nil, add); err == nil || !strings.Contains(out, "REFUSED") {
		t.Errorf("unsigned: %v, want REFUSED", err)
	}
	if out, err := run([]string{"-y", "hmac-sha256:ddns-key:d3Jvbmcgc2VjcmV0"}, add); err == nil || !strings.Contains(strings.ToLower(out), "tsig") {
		t.Errorf("wrong secret: %v, want a TSIG error", err)
	}
	if got := reg.Snapshot().Serial(); got != serial {
		t.Fatalf("refused updates changed the serial: %d → %d", serial, got)
	}

	// With the key on the command line, over UDP.
	if _, err := run([]string{"-y", "hmac-sha256:ddns-key:" + key.Secret}, add); err != nil {
		t.Fatalf("nsupdate -y: %v", err)
	}
	inst, ok := reg.Snapshot().Instance("ftp-tcp-files-2121")
	if !ok || inst.Port != 2121 || inst.Weight != 5 || inst.TTL != 60 {
		t.Fatalf("instance after nsupdate: %+v, %v", inst, ok)
	}
	if got := hostAddrs(reg, "files"); got != "192.0.2.21" {
		t.Fatalf("host files: %s", got)
	}
	if dig, err := exec.LookPath("dig"); err == nil {
		out, err := exec.Command(dig, "@"+host, "-p", port, "+short", "_ftp._tcp.svc.internal.", "SRV").CombinedOutput()
		if err != nil || strings.TrimSpace(string(out)) != "0 5 2121 files.svc.internal." {
			t.Errorf("dig SRV: %q, %v", out, err)
		}
		out, err = exec.Command(dig, "@"+host, "-p", port, "+short", "files.svc.internal.", "A").CombinedOutput()
		if err != nil || strings.TrimSpace(string(out)) != "192.0.2.21" {
			t.Errorf("dig A: %q, %v", out, err)
		}
	}

	// With a key file, over TCP (-v), letting nsupdate find the zone
	// itself (an SOA query), and a DNS-SD instance with TXT.
	keyFile := filepath.Join(t.TempDir(), "ddns.key")
	conf := "key \"ddns-key\" {\n\talgorithm hmac-sha256;\n\tsecret \"" + key.Secret + "\";\n};\n"
	if err := os.WriteFile(keyFile, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	script := "update add Files\\032Two._ftp._tcp.svc.internal. 60 SRV 0 0 2122 files.svc.internal.\n" +
		"update add Files\\032Two._ftp._tcp.svc.internal. 60 TXT \"path=/pub\" \"anon\"\n"
	if _, err := run([]string{"-v", "-k", keyFile}, script); err != nil {
		t.Fatalf("nsupdate -k -v: %v", err)
	}
	if inst, ok := reg.Snapshot().ByLabel("tcp", "ftp", "Files Two"); !ok || !slices.Equal(inst.TXT, registry.TXT{"path=/pub", "anon"}) {
		t.Fatalf("DNS-SD instance after nsupdate: %+v, %v", inst, ok)
	}

	// nsupdate -y NAME:SECRET means hmac-md5, as ParseTSIGKey reads it.
	if _, err := run([]string{"-y", "old-key:" + key.Secret}, "zone svc.internal.\nupdate add md5.svc.internal. 60 A 192.0.2.5\n"); err != nil {
		t.Errorf("nsupdate -y NAME:SECRET (hmac-md5): %v", err)
	} else if got := hostAddrs(reg, "md5"); got != "192.0.2.5" {
		t.Errorf("host md5: %s", got)
	}

	// update delete removes.
	del := "zone svc.internal.\nupdate delete _ftp._tcp.svc.internal. SRV\nupdate delete files.svc.internal.\n"
	if _, err := run([]string{"-v", "-k", keyFile}, del); err != nil {
		t.Fatalf("nsupdate delete: %v", err)
	}
	if _, ok := reg.Snapshot().Type("tcp", "ftp"); ok {
		t.Errorf("_ftp._tcp still has instances")
	}
	if got := hostAddrs(reg, "files"); got != "<none>" {
		t.Errorf("host files after delete: %s", got)
	}
}

// FuzzUpdate feeds raw messages to the UPDATE path: never a panic, and an
// update that is not NOERROR changes nothing.
func FuzzUpdate(f *testing.F) {
	for _, lines := range fuzzSeeds {
		m := updateMsg(f, authtest.Zone, lines...)
		m.SetTsig(updKey.Name, updKey.Algorithm, 300, time.Now().Unix())
		buf, _, err := dns.TsigGenerateWithProvider(m, tsig.Keyring{updKey}, "", false)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(buf)
	}
	discard := slog.New(slog.NewTextHandler(io.Discard, nil))
	f.Fuzz(func(t *testing.T, raw []byte) {
		m := new(dns.Msg)
		if m.Unpack(raw) != nil {
			return
		}
		z := zone.New(zone.Config{Origin: authtest.Zone})
		reg := authtest.Registry(t)
		h := &update.Handler{Registry: reg, Zone: z, Keys: []tsig.Key{updKey}, Logger: discard}
		w := &fuzzWriter{kr: tsig.Keyring{updKey}}
		if ts := m.IsTsig(); ts != nil {
			w.status = dns.TsigVerifyWithProvider(bytes.Clone(raw), w.kr, "", false)
			w.reqMAC = ts.MAC
		}
		h.ServeDNS(w, m)

		// The same update as if its signature had verified: mutations
		// break MACs, and the registry mapping is what needs fuzzing.
		reg = authtest.Registry(t)
		h = &update.Handler{Registry: reg, Zone: z, Keys: []tsig.Key{updKey}, Logger: discard}
		before := instances(reg)
		serial := reg.Snapshot().Serial()
		if rcode := h.Apply(m); rcode != dns.RcodeSuccess {
			if got := instances(reg); reg.Snapshot().Serial() != serial || !slices.Equal(got, before) {
				t.Fatalf("update answered %s changed the registry", dns.RcodeToString[rcode])
			}
		}
		_, _ = z.Records(reg.Snapshot(), z.Origin()) // the zone still renders
	})
}

var fuzzSeeds = [][]string{
	{"_ftp._tcp 60 IN SRV 0 5 2121 files", "files 60 IN A 192.0.2.21", "files 60 IN AAAA 2001:db8::21"},
	{`My\ Files._ftp._tcp 60 IN SRV 0 0 2121 files`, `My\ Files._ftp._tcp 60 IN TXT "path=/pub" "anon"`},
	{"nxdomain files." + authtest.Zone, "yxrrset _echo._tcp." + authtest.Zone + " SRV", "files 60 IN A 192.0.2.1"},
	{"prereq a 0 IN A 127.0.0.1", "prereq a 0 IN AAAA ::1", "del a 0 IN A 127.0.0.1", "delset b." + authtest.Zone + " A"},
	{"delname _echo._tcp." + authtest.Zone, "delname " + authtest.Zone, "del _http._tcp 0 IN SRV 0 0 8080 b"},
	{`del Echo\ One._echo._tcp 0 IN TXT "v=1"`, "delset Echo\\032One._echo._tcp." + authtest.Zone + " TXT", "nxrrset b." + authtest.Zone + " AAAA"},
	{"@ 60 IN SOA ns hostmaster 1 2 3 4 5", "@ 60 IN NS ns", "alias 60 IN CNAME a"},
}

// fuzzWriter is a dns.ResponseWriter that packs what it is given, signing
// as miekg's would.
type fuzzWriter struct {
	kr     tsig.Keyring
	status error
	reqMAC string
}

func (w *fuzzWriter) LocalAddr() net.Addr { return &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 53} }
func (w *fuzzWriter) RemoteAddr() net.Addr {
	return &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 5353}
}
func (w *fuzzWriter) WriteMsg(m *dns.Msg) error {
	if m.IsTsig() != nil {
		_, _, err := dns.TsigGenerateWithProvider(m, w.kr, w.reqMAC, false)
		return err
	}
	_, err := m.Pack()
	return err
}
func (w *fuzzWriter) Write(b []byte) (int, error) { return len(b), nil }
func (w *fuzzWriter) Close() error                { return nil }
func (w *fuzzWriter) TsigStatus() error           { return w.status }
func (w *fuzzWriter) TsigTimersOnly(bool)         {}
func (w *fuzzWriter) Hijack()                     {}

// TestUpdateReplay captures a signed update made by the real nsupdate and
// sends it again verbatim, with its MAC truncated, and after a restart:
// none of the copies changes anything once the zone has moved on.
func TestUpdateReplay(t *testing.T) {
	nsupdate := testenv.NeedTool(t, "nsupdate")
	dir := t.TempDir()
	open := func() *registry.Registry {
		reg, err := registry.Open(dir, registry.Options{Serial: 100, Logger: slog.New(slog.DiscardHandler)})
		if err != nil {
			t.Fatal(err)
		}
		return reg
	}
	// The server takes whole MACs only; a second key, the same secret
	// with BIND's -128, takes them truncated to 16 bytes.
	whole, err := tsig.ParseKey("hmac-sha256:ddns-key:" + updKey.Secret)
	if err != nil {
		t.Fatal(err)
	}
	reg := open()
	addr, stop := serveUntilStopped(t, &authority.Server{Registry: reg, Keys: []tsig.Key{whole}, Logger: slog.New(slog.DiscardHandler)})

	// nsupdate talks to the server through a relay that keeps a copy of
	// what it sends.
	captured, relay := captureRelay(t, addr)
	host, port, _ := net.SplitHostPort(relay)
	cmd := exec.Command(nsupdate, "-t", "5", "-u", "1", "-y", "hmac-sha256:ddns-key:"+updKey.Secret)
	cmd.Stdin = strings.NewReader("server " + host + " " + port + "\nzone svc.internal.\nupdate add replay.svc.internal. 60 A 192.0.2.77\nsend\n")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("nsupdate: %v\n%s", err, out)
	}
	upd := captured()
	if got := hostAddrs(reg, "replay"); got != "192.0.2.77" {
		t.Fatalf("after nsupdate, host replay: %s", got)
	}
	// The zone moves on: the host goes (by the API, say).
	if _, err := reg.Update(func(tx *registry.Tx) error { return tx.DeleteHost("replay") }); err != nil {
		t.Fatal(err)
	}

	send := func(addr string, buf []byte) *dns.Msg {
		t.Helper()
		raw, err := rawExchangeBytes(addr, buf)
		if err != nil {
			t.Fatal(err)
		}
		r := new(dns.Msg)
		if err := r.Unpack(raw); err != nil {
			t.Fatal(err)
		}
		return r
	}
	tsigError := func(r *dns.Msg) uint16 {
		if t := r.IsTsig(); t != nil {
			return t.Error
		}
		return 0
	}
	unchanged := func(when string) {
		t.Helper()
		if got := hostAddrs(reg, "replay"); got != "<none>" {
			t.Errorf("%s: the replayed update applied again: host replay %s", when, got)
		}
	}
	short := truncateMAC(t, upd, 16)

	// Verbatim, in the same run: answered as the first copy was.
	if r := send(addr, upd); r.Rcode != dns.RcodeSuccess {
		t.Errorf("verbatim copy: %s, want NOERROR (as the first)", dns.RcodeToString[r.Rcode])
	}
	unchanged("verbatim copy")
	// Truncated, to a key that takes whole MACs only: BADTRUNC.
	if r := send(addr, short); r.Rcode != dns.RcodeNotAuth || tsigError(r) != dns.RcodeBadTrunc {
		t.Errorf("truncated copy: %s TSIG %s, want NOTAUTH BADTRUNC", dns.RcodeToString[r.Rcode], dns.RcodeToString[int(tsigError(r))])
	}
	unchanged("truncated copy")
	// nsupdate itself, signing with 16-byte MACs (BIND's -128), is told so.
	short16 := exec.Command(nsupdate, "-t", "5", "-u", "1", "-y", "hmac-sha256-128:ddns-key:"+updKey.Secret)
	host, port, _ = net.SplitHostPort(addr)
	short16.Stdin = strings.NewReader("server " + host + " " + port + "\nzone svc.internal.\nupdate add replay.svc.internal. 60 A 192.0.2.77\nsend\n")
	if out, err := short16.CombinedOutput(); err == nil || !strings.Contains(string(out), "NOTAUTH(BADTRUNC)") {
		t.Errorf("nsupdate with truncated MACs, to a key that takes whole ones: %v\n%s; want NOTAUTH(BADTRUNC)", err, out)
	}
	unchanged("nsupdate with truncated MACs")

	// After a restart, with a key that takes truncated MACs: the copies
	// are recognised by what was signed, and refused.
	stop()
	if err := reg.Close(); err != nil {
		t.Fatal(err)
	}
	reg = open()
	defer reg.Close()
	trunc, err := tsig.ParseKey("hmac-sha256-128:ddns-key:" + updKey.Secret)
	if err != nil {
		t.Fatal(err)
	}
	addr, stop = serveUntilStopped(t, &authority.Server{Registry: reg, Keys: []tsig.Key{trunc}, Logger: slog.New(slog.DiscardHandler)})
	defer stop()
	if r := send(addr, short); r.Rcode != dns.RcodeRefused {
		t.Errorf("truncated copy after a restart: %s, want REFUSED", dns.RcodeToString[r.Rcode])
	}
	unchanged("truncated copy after a restart")
	if r := send(addr, upd); r.Rcode != dns.RcodeRefused {
		t.Errorf("verbatim copy after a restart: %s, want REFUSED", dns.RcodeToString[r.Rcode])
	}
	unchanged("verbatim copy after a restart")

	// A fresh update of the same content, signed again, applies.
	fresh := exec.Command(nsupdate, "-t", "5", "-u", "1", "-y", "hmac-sha256-128:ddns-key:"+updKey.Secret)
	host, port, _ = net.SplitHostPort(addr)
	fresh.Stdin = strings.NewReader("server " + host + " " + port + "\nzone svc.internal.\nupdate add replay.svc.internal. 60 A 192.0.2.77\nsend\n")
	if out, err := fresh.CombinedOutput(); err != nil {
		t.Fatalf("nsupdate with a truncated MAC: %v\n%s", err, out)
	}
	if got := hostAddrs(reg, "replay"); got != "192.0.2.77" {
		t.Errorf("fresh update: host replay %s", got)
	}
}

// serveUntilStopped serves s on a loopback port over UDP and TCP, and
// returns its address and a func that stops it and waits.
func serveUntilStopped(t *testing.T, s *authority.Server) (string, func()) {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", pc.LocalAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	errs := make(chan error, 2)
	go func() { errs <- s.ServePacket(ctx, pc) }()
	go func() { errs <- s.Serve(ctx, ln) }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			for range 2 {
				if err := <-errs; err != nil {
					t.Errorf("serve: %v", err)
				}
			}
		})
	}
	t.Cleanup(stop)
	return pc.LocalAddr().String(), stop
}

// captureRelay relays UDP datagrams to addr and returns the relay's
// address and a func that returns the last UPDATE relayed.
func captureRelay(t *testing.T, addr string) (func() []byte, string) {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	var (
		mu   sync.Mutex
		last []byte
	)
	go func() {
		buf := make([]byte, 65535)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			req := slices.Clone(buf[:n])
			if n > 2 && (req[2]>>3)&0xF == dns.OpcodeUpdate {
				mu.Lock()
				last = req
				mu.Unlock()
			}
			if answer, err := rawExchangeBytes(addr, req); err == nil {
				pc.WriteTo(answer, from)
			}
		}
	}()
	return func() []byte {
		mu.Lock()
		defer mu.Unlock()
		if last == nil {
			t.Fatal("no UPDATE relayed")
		}
		return last
	}, pc.LocalAddr().String()
}

// truncateMAC returns the signed message buf with its MAC cut to n bytes,
// every other byte as it was (repacking could change the compression,
// and so what the MAC covers).
func truncateMAC(t *testing.T, buf []byte, n int) []byte {
	t.Helper()
	m := new(dns.Msg)
	if err := m.Unpack(buf); err != nil {
		t.Fatal(err)
	}
	ts := m.IsTsig()
	mac, _ := hex.DecodeString(ts.MAC)
	at := bytes.Index(buf, mac)
	alg := make([]byte, 256)
	algLen, err := dns.PackDomainName(dns.CanonicalName(ts.Algorithm), alg, 0, nil, false)
	if at < 0 || err != nil {
		t.Fatalf("MAC not found in the message")
	}
	size := at - 2
	rdlen := size - 8 - algLen - 2 // time signed (6) and fudge (2) before the MAC size
	out := slices.Clone(buf[:size])
	binary.BigEndian.PutUint16(out[rdlen:], binary.BigEndian.Uint16(buf[rdlen:])-uint16(len(mac)-n))
	out = binary.BigEndian.AppendUint16(out, uint16(n))
	out = append(out, mac[:n]...)
	return append(out, buf[at+len(mac):]...)
}

// manyA returns n A records for host, 192.0.2.first and on.
func manyA(host string, first, n int) []string {
	var lines []string
	for i := range n {
		lines = append(lines, fmt.Sprintf("%s 60 IN A 192.0.2.%d", host, first+i))
	}
	return lines
}
