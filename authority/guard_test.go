package authority

import (
	"log/slog"
	"net"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/annuaire/annuaire/authority/internal/authtest"
	"github.com/annuaire/annuaire/authority/wire"
)

var digCookie = regexp.MustCompile(`; COOKIE: ([0-9a-f]{16})([0-9a-f]*)(?: \((good|bad)\))?`)

// TestDigCookie: dig +cookie gets a server cookie (RFC 7873, RFC 9018
// form) for its client cookie; sent back, it is valid and counted so; a
// query without a question asks for one (RFC 7873 section 5.4), and with
// a cookie that is not ours gets BADCOOKIE and a good one.
func TestDigCookie(t *testing.T) {
	m := NewMetrics()
	addr := authtest.Start(t, &Server{Registry: authtest.Registry(t), Zone: authtest.Zone, Metrics: m})
	for _, tcp := range []string{"+notcp", "+tcp"} {
		r := dig(t, addr, tcp, "+cookie=0102030405060708", "a.svc.internal.", "A")
		c := digCookie.FindStringSubmatch(r.out)
		if r.status != "NOERROR" || len(r.answer) != 1 || c == nil || c[1] != "0102030405060708" || len(c[2]) != 32 || c[3] != "good" {
			t.Fatalf("%s: status %s, cookie %q: want the answer and a good 16-byte server cookie", tcp, r.status, c)
		}
		if !strings.HasPrefix(c[2], "01000000") {
			t.Errorf("server cookie %s: want RFC 9018's version 1, reserved 0", c[2])
		}
		// Sent back, it is valid; dig says so and the server counts it.
		r = dig(t, addr, tcp, "+cookie="+c[1]+c[2], "a.svc.internal.", "A")
		if again := digCookie.FindStringSubmatch(r.out); again == nil || again[2] != c[2] || again[3] != "good" {
			t.Errorf("%s: the cookie sent back: %q, want the same server cookie", tcp, again)
		}
	}
	// From the cache, then by the full path (a question with a name in
	// capitals, never cached first).
	r := dig(t, addr, "+cookie=1112131415161718", "A.SVC.INTERNAL.", "A")
	if c := digCookie.FindStringSubmatch(r.out); c == nil || c[3] != "good" || len(c[2]) != 32 {
		t.Errorf("full path: cookie %q", c)
	}
	// No question: a server cookie alone (RFC 7873 section 5.4).
	r = dig(t, addr, "+cookie=2122232425262728", "+header-only")
	if c := digCookie.FindStringSubmatch(r.out); r.status != "NOERROR" || c == nil || len(c[2]) != 32 {
		t.Errorf("no question: status %s cookie %q, want NOERROR and a server cookie", r.status, c)
	}
	r = dig(t, addr, "+cookie=2122232425262728"+strings.Repeat("ab", 16), "+header-only", "+nobadcookie")
	if c := digCookie.FindStringSubmatch(r.out); r.status != "BADCOOKIE" || c == nil || len(c[2]) != 32 {
		t.Errorf("no question, a cookie not ours: status %s cookie %q, want BADCOOKIE and a server cookie", r.status, c)
	}
	// A malformed one is FORMERR (RFC 7873 section 5.2.2).
	if r := dig(t, addr, "+cookie=01020304050607080910", "a.svc.internal."); r.status != "FORMERR" {
		t.Errorf("a 10-byte cookie: %s, want FORMERR", r.status)
	}
	got := counted(t, m, "annuaire_dns_cookies_total")
	if got["valid"] < 2 || got["client"] < 3 || got["invalid"] < 1 {
		t.Errorf("cookies counted %v, want 2 valid, 3 client, 1 invalid at least", got)
	}
}

// TestRateLimit: a flood of one question from one network is answered up
// to the rate, then every second answer is sent truncated and the others
// dropped; dig, truncated, gets its answer over TCP; a client with a
// valid server cookie is never limited. Loopback is not exempt here, as
// it is by default.
func TestRateLimit(t *testing.T) {
	m := NewMetrics()
	addr := authtest.Start(t, &Server{Registry: authtest.Registry(t), Zone: authtest.Zone, Metrics: m,
		RateLimit: &wire.RateLimit{Rate: 10, Slip: 2}})
	c, err := net.Dial("udp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	flood := func(q *dns.Msg, n int) (full, truncated, badcookie int, last *dns.Msg) {
		for i := range n {
			q.Id = uint16(i)
			b, _ := q.Pack()
			c.Write(b)
		}
		buf := make([]byte, 4096)
		for {
			c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
			k, err := c.Read(buf)
			if err != nil {
				return
			}
			r := new(dns.Msg)
			if r.Unpack(buf[:k]) != nil {
				t.Fatal("an answer that does not unpack")
			}
			switch {
			case r.Rcode == dns.RcodeBadCookie:
				badcookie++
			case r.Truncated:
				truncated++
			default:
				full++
			}
			last = r
		}
	}
	q := new(dns.Msg)
	q.SetQuestion("_services._dns-sd._udp.svc.internal.", dns.TypePTR)
	q.SetEdns0(1232, false)
	full, truncated, _, _ := flood(q, 200)
	t.Logf("200 queries in a burst: %d answered, %d truncated, %d dropped", full, truncated, 200-full-truncated)
	if full < 10 || full > 15 || truncated < 85 || truncated > 100 {
		t.Errorf("%d answered, %d truncated: want about 11 and half of the rest", full, truncated)
	}

	// A client cookie alone: limited too, slipped as BADCOOKIE with a
	// server cookie.
	cq := q.Copy()
	opt := cq.IsEdns0()
	opt.Option = []dns.EDNS0{&dns.EDNS0_COOKIE{Code: dns.EDNS0COOKIE, Cookie: "0102030405060708"}}
	_, _, bad, last := flood(cq, 100)
	if bad < 40 {
		t.Fatalf("%d BADCOOKIE answers, want about half of 100", bad)
	}
	var server string
	for _, o := range last.IsEdns0().Option {
		if k, ok := o.(*dns.EDNS0_COOKIE); ok {
			server = k.Cookie[16:]
		}
	}
	// With the server cookie: every answer comes.
	opt.Option = []dns.EDNS0{&dns.EDNS0_COOKIE{Code: dns.EDNS0COOKIE, Cookie: "0102030405060708" + server}}
	if full, truncated, bad, _ := flood(cq, 100); full != 100 {
		t.Errorf("with a valid cookie: %d answered, %d truncated, %d BADCOOKIE, want all 100 answered", full, truncated, bad)
	}
	got := counted(t, m, "annuaire_dns_rate_limited_total")
	if got["dropped"] < 80 || got["slipped"] < 80 {
		t.Errorf("rate limited counted %v", got)
	}
}

// TestRateLimitDig: dig, limited, is told to ask over TCP, and gets its
// answer there (every limited answer slips here).
func TestRateLimitDig(t *testing.T) {
	addr := authtest.Start(t, &Server{Registry: authtest.Registry(t), Zone: authtest.Zone,
		RateLimit: &wire.RateLimit{Rate: 1, Slip: 1}})
	q := new(dns.Msg)
	q.SetQuestion("_services._dns-sd._udp.svc.internal.", dns.TypePTR)
	c := new(dns.Client)
	for range 5 { // more than the burst of one a second
		c.Exchange(q, addr)
	}
	r := dig(t, addr, "+nocookie", "+noedns", "_services._dns-sd._udp.svc.internal.", "PTR")
	if !strings.Contains(r.out, "Truncated, retrying in TCP mode") || r.status != "NOERROR" || len(r.answer) == 0 {
		t.Errorf("dig while limited: %s, %v; want a truncated answer, then the answer over TCP", r.status, r.answer)
	}
}

// TestRateLimitTrailing: a request with bytes after its question gets
// FORMERR from the cache's path without miekg/dns (TestTrailingBytes),
// limited as every other answer: a burst of 200 from one network gets a
// few FORMERRs, half of the rest truncated (a retry over TCP gets the
// FORMERR), the others dropped. Before, all 200 were answered.
func TestRateLimitTrailing(t *testing.T) {
	addr := authtest.Start(t, &Server{Registry: authtest.Registry(t), Zone: authtest.Zone,
		RateLimit: &wire.RateLimit{Rate: 10, Slip: 2}, Logger: slog.New(slog.DiscardHandler)})
	c, err := net.Dial("udp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	flood := func(q *dns.Msg) (formerr, truncated, other int) {
		for i := range 200 {
			q.Id = uint16(i)
			b, _ := q.Pack()
			c.Write(append(b, 0, 0, 0, 0))
		}
		buf := make([]byte, 4096)
		for {
			c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
			n, err := c.Read(buf)
			if err != nil {
				return
			}
			r := new(dns.Msg)
			if r.Unpack(buf[:n]) != nil {
				t.Fatal("an answer that does not unpack")
			}
			switch {
			case r.Truncated && r.Rcode == dns.RcodeSuccess && len(r.Answer) == 0 && r.Opcode == q.Opcode:
				truncated++
			case r.Rcode == dns.RcodeFormatError && r.Opcode == q.Opcode:
				formerr++
			default:
				other++
			}
		}
	}
	q := new(dns.Msg)
	q.SetQuestion("a.svc.internal.", dns.TypeA)
	formerr, truncated, other := flood(q)
	t.Logf("200 queries with trailing bytes: %d FORMERR, %d truncated, %d other, %d dropped", formerr, truncated, other, 200-formerr-truncated-other)
	if formerr < 10 || formerr > 15 || truncated < 85 || truncated > 100 || other != 0 {
		t.Errorf("%d FORMERR, %d truncated, %d other: want about 11 FORMERR and half of the rest truncated", formerr, truncated, other)
	}
	// A NOTIFY is no query to truncate: a limited one is dropped. Errors
	// share one limit per network, which the queries spent.
	n := new(dns.Msg)
	n.SetNotify("svc.internal.")
	formerr, truncated, other = flood(n)
	t.Logf("200 NOTIFYs with trailing bytes: %d FORMERR, %d truncated, %d other, %d dropped", formerr, truncated, other, 200-formerr-truncated-other)
	if formerr > 5 || truncated != 0 || other != 0 {
		t.Errorf("%d FORMERR, %d truncated, %d other: want a few FORMERR at most, the rest dropped", formerr, truncated, other)
	}
}
