package wire

import (
	"encoding/hex"
	"net/netip"
	"testing"

	"github.com/miekg/dns"
)

func mustHex(t *testing.T, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestCookieRFC9018 checks a server cookie against RFC 9018's test vector
// (appendix A.1): the same secret makes the cookies BIND, Knot and NSD
// make.
func TestCookieRFC9018(t *testing.T) {
	var secret [16]byte
	copy(secret[:], mustHex(t, "e5e973e5a6b2a43f48e7dc849e37bfcf"))
	c := cookiesWith(secret)
	for _, v := range []struct {
		client, ip string
		now        uint32
		want       string
	}{
		{"2464c4abcf10c957", "198.51.100.100", 1559731985, "010000005cf79f111f8130c3eee29480"},
	} {
		got := make([]byte, serverCookieLen)
		client := mustHex(t, v.client)
		ip := netip.MustParseAddr(v.ip)
		c.put(got, client, ip, v.now)
		if hex.EncodeToString(got) != v.want {
			t.Errorf("%s from %s at %d: %x, want %s", v.client, v.ip, v.now, got, v.want)
		}
		if ok, fresh := c.valid(client, mustHex(t, v.want), ip, v.now+10); !ok || !fresh {
			t.Errorf("%s: valid %v fresh %v, want both", v.want, ok, fresh)
		}
	}
}

// TestCookieValid: a cookie is valid for its client cookie and address,
// for an hour and 5 minutes ahead, fresh for half an hour.
func TestCookieValid(t *testing.T) {
	c := NewCookies()
	client := mustHex(t, "0102030405060708")
	ip := netip.MustParseAddr("192.0.2.1")
	const at = 1_700_000_000
	server := make([]byte, serverCookieLen)
	c.put(server, client, ip, at)
	for _, tt := range []struct {
		name         string
		client       []byte
		ip           string
		now          uint32
		valid, fresh bool
	}{
		{"same", client, "192.0.2.1", at, true, true},
		{"29 minutes", client, "192.0.2.1", at + 29*60, true, true},
		{"31 minutes: renew", client, "192.0.2.1", at + 31*60, true, false},
		{"61 minutes: expired", client, "192.0.2.1", at + 61*60, false, false},
		{"4 minutes ahead", client, "192.0.2.1", at - 4*60, true, true},
		{"6 minutes ahead", client, "192.0.2.1", at - 6*60, false, false},
		{"another address", client, "192.0.2.2", at, false, false},
		{"another client cookie", mustHex(t, "0102030405060709"), "192.0.2.1", at, false, false},
	} {
		valid, fresh := c.valid(tt.client, server, netip.MustParseAddr(tt.ip), tt.now)
		if valid != tt.valid || fresh != tt.fresh {
			t.Errorf("%s: valid %v fresh %v, want %v %v", tt.name, valid, fresh, tt.valid, tt.fresh)
		}
	}
	if ok, _ := NewCookies().valid(client, server, ip, at); ok {
		t.Error("another secret's cookie is valid")
	}
}

// TestCookieMixedCase: a question in mixed case (0x20, as resolvers send)
// with a cookie is answered from the cache once its entry is known not
// to depend on the case, whatever client cookie built the entry.
func TestCookieMixedCase(t *testing.T) {
	s := testServer(t)
	ask := func(name, client string) int {
		r := new(dns.Msg)
		r.SetQuestion(name, dns.TypeA)
		r.SetEdns0(1232, false)
		r.IsEdns0().Option = []dns.EDNS0{&dns.EDNS0_COOKIE{Code: dns.EDNS0COOKIE, Cookie: client}}
		req, _ := r.Pack()
		out := make([]byte, 1232)
		n := s.Answer(req, out, false)
		if n > 0 {
			m := new(dns.Msg)
			if err := m.Unpack(out[:n]); err != nil {
				t.Fatal(err)
			}
			k := m.IsEdns0().Option[0].(*dns.EDNS0_COOKIE)
			if k.Cookie[:16] != client {
				t.Errorf("%s: client cookie %s in the answer, want %s", name, k.Cookie[:16], client)
			}
		}
		return n
	}
	ask("a.svc.internal.", "0102030405060708") // the entry, built from this cookie
	ask("A.Svc.Internal.", "1112131415161718") // learns the entry is case-free
	if ask("A.sVc.Internal.", "2122232425262728") == 0 {
		t.Error("a mixed-case question with a cookie takes the full path every time")
	}
}
