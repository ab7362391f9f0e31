package wire

import (
	"crypto/rand"
	"encoding/binary"
	"net/netip"
	"time"

	"github.com/dchest/siphash"
)

// DNS cookies (RFC 7873) let a client prove that it receives the answers
// sent to its address: its first query carries a client cookie, the answer
// a server cookie, and later queries both. A query with a valid server
// cookie cannot have a spoofed source, so it is exempt from rate limiting
// (rrl.go). Server cookies are made as RFC 9018 says, interoperable with
// BIND, Knot and NSD given the same secret:
//
//	version 1 | reserved 0 0 0 | timestamp (32 bits, seconds) | hash (64 bits)
//	hash = SipHash-2-4(secret, client cookie | version | reserved | timestamp | client IP)
//
// The secret is drawn at random when the server starts: a restart makes
// clients learn a new cookie (their next answer carries it), and servers
// behind one anycast address would each need the same secret, which is
// not offered.

// Cookie sizes (RFC 7873 section 4).
const (
	clientCookieLen = 8
	serverCookieLen = 16 // RFC 9018's
	cookieLen       = clientCookieLen + serverCookieLen
)

// RFC 9018 section 4.3: a server cookie is valid for an hour, and up to 5
// minutes ahead of the server's clock; one older than half an hour is
// made again, so that a client that keeps asking never sees it expire.
const (
	cookieLifetime = 3600
	cookieSkew     = 300
	cookieRenew    = 1800
)

// Cookies makes and checks server cookies with one secret.
type Cookies struct{ k0, k1 uint64 }

// NewCookies returns cookies with a secret drawn at random.
func NewCookies() *Cookies {
	var secret [16]byte
	rand.Read(secret[:]) // never fails (crypto/rand)
	return cookiesWith(secret)
}

func cookiesWith(secret [16]byte) *Cookies {
	return &Cookies{k0: binary.LittleEndian.Uint64(secret[:8]), k1: binary.LittleEndian.Uint64(secret[8:])}
}

// hash is RFC 9018's hash over the client cookie, the server cookie's
// first 8 bytes (version, reserved, timestamp) and the client's address.
func (c *Cookies) hash(client, head []byte, ip netip.Addr) uint64 {
	var in [clientCookieLen + 8 + 16]byte
	n := copy(in[:], client[:clientCookieLen])
	n += copy(in[n:], head[:8])
	ip = ip.Unmap()
	if ip.Is4() {
		a := ip.As4()
		n += copy(in[n:], a[:])
	} else {
		a := ip.As16()
		n += copy(in[n:], a[:])
	}
	return siphash.Hash(c.k0, c.k1, in[:n])
}

// valid reports whether server is the server cookie this server gave the
// client cookie client at ip, and has not expired at now (Unix seconds);
// fresh, whether it need not be made again.
func (c *Cookies) valid(client, server []byte, ip netip.Addr, now uint32) (valid, fresh bool) {
	if len(server) != serverCookieLen || server[0] != 1 {
		return false, false
	}
	// Serial number arithmetic (RFC 1982): the timestamp wraps in 2106.
	age := int32(now - binary.BigEndian.Uint32(server[4:8]))
	if age > cookieLifetime || age < -cookieSkew {
		return false, false
	}
	if c.hash(client, server, ip) != binary.LittleEndian.Uint64(server[8:]) {
		return false, false
	}
	return true, age < cookieRenew
}

// put writes the server cookie for client at ip, made at now, into dst.
func (c *Cookies) put(dst, client []byte, ip netip.Addr, now uint32) {
	dst[0], dst[1], dst[2], dst[3] = 1, 0, 0, 0
	binary.BigEndian.PutUint32(dst[4:8], now)
	binary.LittleEndian.PutUint64(dst[8:16], c.hash(client, dst, ip))
}

// A cookie is what a request's COOKIE option says, as parse reads it.
type cookie struct {
	client []byte // 8 bytes; nil: no COOKIE option
	server []byte // 0, or 8 to 32 bytes
}

// splitCookie reads a COOKIE option's data; ok is false when its length
// is malformed (RFC 7873 section 5.2.2: FORMERR).
func splitCookie(data []byte) (cookie, bool) {
	n := len(data)
	if n != clientCookieLen && (n < clientCookieLen+8 || n > clientCookieLen+32) {
		return cookie{}, false
	}
	return cookie{client: data[:clientCookieLen], server: data[clientCookieLen:]}, true
}

// cookieNow is the clock of cookies: Unix seconds.
func cookieNow() uint32 { return uint32(time.Now().Unix()) }
