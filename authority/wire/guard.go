package wire

import (
	"encoding/binary"
	"encoding/hex"
	"net"
	"net/netip"

	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/annuaire/annuaire/authority/zone"
)

// A guard is what stands between an answer and the client it goes to:
// the server cookie it carries (cookie.go), and response rate limiting
// (rrl.go). Both paths go through it: the cache's answers in Cache.send,
// the full path's through Cache.Writer.
type guard struct {
	cookies *Cookies
	limit   *limiter // nil: no limit

	// Counters, resolved once.
	valid, invalid, clientOnly prometheus.Counter
	dropped, slipped           prometheus.Counter
}

// Guard makes the cache's answers, and those written through Writer,
// carry server cookies made with cookies, and limits them as limit says.
// It must be called before the cache answers anything.
func (c *Cache) Guard(cookies *Cookies, limit RateLimit) {
	g := &guard{cookies: cookies, limit: newLimiter(limit)}
	counter := func(f func(string) prometheus.Counter, label string) prometheus.Counter {
		if f == nil {
			return prometheus.NewCounter(prometheus.CounterOpts{Name: "unregistered"})
		}
		return f(label)
	}
	g.valid = counter(c.counters.Cookies, "valid")
	g.invalid = counter(c.counters.Cookies, "invalid")
	g.clientOnly = counter(c.counters.Cookies, "client")
	g.dropped = counter(c.counters.Limited, "dropped")
	g.slipped = counter(c.counters.Limited, "slipped")
	c.guard = g
}

// A cookieCheck is what a request's COOKIE option proved.
type cookieCheck struct {
	valid, fresh bool
	now          uint32
}

// checkCookie checks the cookie k of a request from ip, and counts it.
func (g *guard) checkCookie(k cookie, ip netip.Addr) cookieCheck {
	ch := cookieCheck{now: cookieNow()}
	ch.valid, ch.fresh = g.cookies.valid(k.client, k.server, ip, ch.now)
	switch {
	case ch.valid:
		g.valid.Inc()
	case len(k.server) > 0:
		g.invalid.Inc()
	default:
		g.clientOnly.Inc()
	}
	return ch
}

// fillCookie writes the server cookie of the answer to k from ip into
// dst: k's own if it is valid and fresh, else a new one.
func (g *guard) fillCookie(dst []byte, k cookie, ip netip.Addr, ch cookieCheck) {
	if ch.fresh {
		copy(dst, k.server)
		return
	}
	g.cookies.put(dst, k.client, ip, ch.now)
}

// slip writes into out the answer that replaces a limited one to q (read
// from req) and returns its length: the question alone with TC set, so
// that a real client asks again over TCP; or, if the client sent a
// cookie, BADCOOKIE with a new server cookie (RFC 7873 section 5.2.3), so
// that it asks again with it and is no longer limited.
func (g *guard) slip(out, req []byte, q *request, from netip.Addr, ch cookieCheck) int {
	n := copy(out, req[:12+len(q.name)+4])
	rcode := 0
	out[2] = 0x80 | 0x04 | req[2]&0x01 // QR, AA, RD as asked; opcode QUERY
	if q.cookie.client == nil {
		out[2] |= 0x02 // TC
	} else {
		rcode = dns.RcodeBadCookie
	}
	out[3] = req[3]&0x10 | byte(rcode&0xF) // CD as asked
	binary.BigEndian.PutUint16(out[4:], 1)
	binary.BigEndian.PutUint32(out[6:], 0)
	binary.BigEndian.PutUint16(out[10:], 0)
	if !q.edns.present {
		return n
	}
	binary.BigEndian.PutUint16(out[10:], 1)
	// The OPT record (RFC 6891 section 6.1.2), as zone.Respond writes it.
	o := out[n:]
	o[0] = 0
	binary.BigEndian.PutUint16(o[1:], dns.TypeOPT)
	binary.BigEndian.PutUint16(o[3:], zone.MaxUDPSize)
	o[5], o[6], o[7], o[8] = byte(rcode>>4), 0, 0, 0
	if q.edns.do {
		o[7] = 0x80
	}
	n += 11
	if q.cookie.client == nil {
		binary.BigEndian.PutUint16(o[9:], 0)
		return n
	}
	binary.BigEndian.PutUint16(o[9:], 4+cookieLen)
	binary.BigEndian.PutUint16(o[11:], dns.EDNS0COOKIE)
	binary.BigEndian.PutUint16(o[13:], cookieLen)
	copy(o[15:], q.cookie.client)
	g.fillCookie(o[15+clientCookieLen:15+cookieLen], q.cookie, from, ch)
	return n + 4 + cookieLen
}

// Writer returns w as the full path must write the answer to r through
// it: the server cookie goes into the COOKIE option the zone left room
// for (zone.CookieRoom), and over UDP the answer is limited as the cache's
// answers are. Without Guard, w itself.
func (c *Cache) Writer(w dns.ResponseWriter, r *dns.Msg, tcp bool) dns.ResponseWriter {
	if c.guard == nil {
		return w
	}
	return &guardedWriter{ResponseWriter: w, g: c.guard, r: r, tcp: tcp}
}

type guardedWriter struct {
	dns.ResponseWriter
	g   *guard
	r   *dns.Msg
	tcp bool
}

func (w *guardedWriter) WriteMsg(m *dns.Msg) error {
	g := w.g
	from := remoteIP(w.RemoteAddr())
	k, hasCookie := requestCookie(w.r)
	var ch cookieCheck
	if hasCookie {
		ch = g.checkCookie(k, from)
		if opt := m.IsEdns0(); opt != nil {
			for _, o := range opt.Option {
				if c, ok := o.(*dns.EDNS0_COOKIE); ok && len(c.Cookie) == 2*cookieLen {
					server := make([]byte, serverCookieLen)
					g.fillCookie(server, k, from, ch)
					c.Cookie = hex.EncodeToString(k.client) + hex.EncodeToString(server)
				}
			}
			if len(w.r.Question) == 0 && len(k.server) > 0 && !ch.valid && m.Rcode == dns.RcodeSuccess {
				// RFC 7873 section 5.4: asked for a server cookie with
				// one that is not valid.
				m.Rcode = dns.RcodeBadCookie
			}
		}
	}
	if !w.tcp && g.limit != nil && !ch.valid && from.IsValid() && !g.limit.exempt(from) {
		var qname []byte
		var qtype uint16
		if len(m.Question) == 1 {
			var buf [256]byte
			if n, err := dns.PackDomainName(dns.CanonicalName(m.Question[0].Name), buf[:], 0, nil, false); err == nil {
				qname, qtype = buf[:n], m.Question[0].Qtype
			}
		}
		kind := kindError
		switch {
		case m.Rcode == dns.RcodeSuccess && len(m.Answer) > 0:
			kind = kindAnswer
		case m.Rcode == dns.RcodeSuccess:
			kind = kindNoData
		case m.Rcode == dns.RcodeNameError:
			kind = kindNXDomain
		}
		switch g.limit.take(rrlKey(kind, qtype, qname), from) {
		case drop:
			g.dropped.Inc()
			return nil
		case slip:
			g.slipped.Inc()
			if len(w.r.Question) != 1 {
				return nil
			}
			req, err := w.r.Pack()
			if err != nil {
				return nil
			}
			q, _ := parse(req, false)
			if q.name == nil {
				return nil // not a plain query: dropped
			}
			out := make([]byte, 12+len(q.name)+4+11+4+cookieLen)
			return w.writeRaw(out[:g.slip(out, req, &q, from, ch)])
		}
	}
	return w.ResponseWriter.WriteMsg(m)
}

func (w *guardedWriter) writeRaw(b []byte) error {
	_, err := w.ResponseWriter.Write(b)
	return err
}

// requestCookie returns the COOKIE option of r, if it has a well-formed
// one.
func requestCookie(r *dns.Msg) (cookie, bool) {
	opt := r.IsEdns0()
	if opt == nil {
		return cookie{}, false
	}
	for _, o := range opt.Option {
		if c, ok := o.(*dns.EDNS0_COOKIE); ok {
			data, err := hex.DecodeString(c.Cookie)
			if err != nil {
				return cookie{}, false
			}
			return splitCookie(data)
		}
	}
	return cookie{}, false
}

// remoteIP is the address of a client, invalid if it has none.
func remoteIP(a net.Addr) netip.Addr {
	switch a := a.(type) {
	case *net.UDPAddr:
		return a.AddrPort().Addr().Unmap()
	case *net.TCPAddr:
		return a.AddrPort().Addr().Unmap()
	}
	return netip.Addr{}
}
