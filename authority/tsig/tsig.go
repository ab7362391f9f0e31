// Package tsig signs and checks DNS messages with shared keys (TSIG, RFC
// 8945): the keys of UPDATE, zone transfers and NOTIFY, parsed as nsupdate
// -y writes them, and the answers RFC 8945 section 5.2 gives a request
// whose signature does not verify.
package tsig

import (
	"cmp"
	"crypto/hmac"
	"crypto/md5"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"strconv"
	"strings"
	"time"

	"github.com/miekg/dns"
)

// A Key is a shared secret that may sign UPDATE messages (RFC 8945).
type Key struct {
	// Algorithm is the algorithm's name as sent on the wire, a lowercase
	// fully qualified name: "hmac-sha256." or "hmac-md5.sig-alg.reg.int.".
	Algorithm string
	// Name is the key's name, lowercase and fully qualified: "ddns-key.".
	// A request names the key it was signed with; name and algorithm
	// together must match.
	Name string
	// Secret is the shared secret, base64-encoded.
	Secret string
	// MinMAC is the shortest MAC accepted from this key, in bytes; zero
	// means the whole hash. A request signed with a shorter one, which RFC
	// 8945 section 5.2.2.1 would allow, is answered BADTRUNC (section
	// 5.2.2.3), as BIND does: every shortened copy of a captured request
	// has another MAC, and verifying it is a forger's cheaper target.
	MinMAC int
}

// The algorithms of RFC 8945 section 6, by the names nsupdate -y takes.
var tsigAlgorithms = map[string]string{
	"hmac-md5":    "hmac-md5.sig-alg.reg.int.",
	"hmac-sha1":   dns.HmacSHA1,
	"hmac-sha224": dns.HmacSHA224,
	"hmac-sha256": dns.HmacSHA256,
	"hmac-sha384": dns.HmacSHA384,
	"hmac-sha512": dns.HmacSHA512,
}

// ParseKey reads a key in the syntax of nsupdate -y, [ALG:]NAME:SECRET:
// "hmac-sha256:ddns-key:c2VjcmV0IQ==". As in nsupdate, a key without an
// algorithm is hmac-md5, which RFC 8945 section 6 no longer recommends: say
// hmac-sha256. As in BIND, an algorithm followed by a number of bits,
// "hmac-sha256-128", lets the key sign with MACs truncated to no fewer
// bits (a multiple of 8, at least half the hash and 80); without one,
// only whole MACs are accepted. Errors name the key but never echo the
// secret.
func ParseKey(s string) (Key, error) {
	parts := strings.Split(s, ":")
	alg := "hmac-md5"
	switch len(parts) {
	case 2:
	case 3:
		alg = strings.ToLower(parts[0])
		parts = parts[1:]
	default:
		return Key{}, errors.New("tsig key: want [ALGORITHM:]NAME:BASE64SECRET, as nsupdate -y")
	}
	name, secret := parts[0], parts[1]
	alg = strings.TrimSuffix(alg, ".")
	bits := 0
	if i := strings.LastIndexByte(alg, '-'); i > 0 {
		if n, err := strconv.Atoi(alg[i+1:]); err == nil {
			alg, bits = alg[:i], n
		}
	}
	wire, ok := tsigAlgorithms[alg]
	if !ok {
		return Key{}, fmt.Errorf("tsig key %q: unknown algorithm %q: want hmac-sha256, hmac-sha512, hmac-sha384, hmac-sha224, hmac-sha1 or hmac-md5", name, alg)
	}
	if name == "" {
		return Key{}, errors.New("tsig key: empty name")
	}
	if _, ok := dns.IsDomainName(name); !ok {
		return Key{}, fmt.Errorf("tsig key %q: not a domain name", name)
	}
	raw, err := base64.StdEncoding.DecodeString(secret)
	if err != nil {
		return Key{}, fmt.Errorf("tsig key %q: secret is not base64 (RFC 4648 section 4)", name)
	}
	if len(raw) == 0 {
		return Key{}, fmt.Errorf("tsig key %q: empty secret", name)
	}
	k := Key{Algorithm: wire, Name: dns.CanonicalName(name), Secret: secret}
	if bits != 0 {
		full := newHash(wire)().Size()
		if bits%8 != 0 || bits/8 > full || bits/8 < minMAC(full) {
			return Key{}, fmt.Errorf("tsig key %q: %s-%d: truncate to a multiple of 8 bits from %d to %d (RFC 8945 section 5.2.2.1)",
				name, alg, bits, 8*minMAC(full), 8*full)
		}
		if bits/8 < full {
			k.MinMAC = bits / 8
		}
	}
	return k, nil
}

// minMAC is the shortest MAC RFC 8945 section 5.2.2.1 allows for a hash
// of full bytes: half of it, and 10 bytes.
func minMAC(full int) int { return max(10, (full+1)/2) }

// String returns the key without its secret, for logs.
func (k Key) String() string {
	alg := strings.TrimSuffix(k.Algorithm, ".")
	if k.MinMAC > 0 {
		alg += "-" + strconv.Itoa(8*k.MinMAC)
	}
	return k.Name + " (" + alg + ")"
}

// Errors of TSIG verification, each answered as RFC 8945 section 5.2 says.
var (
	ErrBadKey    = errors.New("tsig: unknown key or algorithm")                                 // BADKEY, section 5.2.1
	errBadSig    = errors.New("tsig: MAC does not verify")                                      // BADSIG, section 5.2.2
	errBadFormat = errors.New("tsig: malformed MAC size")                                       // FORMERR, section 5.2.2.1
	errBadTrunc  = errors.New("tsig: MAC truncated shorter than the key allows (see ParseKey)") // BADTRUNC, section 5.2.2.3
)

// A Keyring is a dns.TsigProvider over the configured keys: a dns.Server
// given one verifies requests' signatures and signs answers with it.
// miekg's own provider is not used: it has no hmac-md5 (nsupdate's default
// for -y NAME:SECRET), does not tell an unknown key from a bad MAC, and
// rejects the truncated MACs RFC 8945 section 5.2.2.1 allows.
type Keyring []Key

func (kr Keyring) lookup(t *dns.TSIG) (Key, func() hash.Hash, error) {
	name, alg := dns.CanonicalName(t.Hdr.Name), dns.CanonicalName(t.Algorithm)
	for _, k := range kr {
		// A key is its name and its algorithm: the same name with another
		// algorithm is an unknown key (RFC 8945 section 5.2.1).
		if k.Name == name && k.Algorithm == alg {
			if h := newHash(alg); h != nil {
				return k, h, nil
			}
		}
	}
	return Key{}, nil, ErrBadKey
}

func newHash(alg string) func() hash.Hash {
	switch alg {
	case "hmac-md5.sig-alg.reg.int.":
		return md5.New
	case dns.HmacSHA1:
		return sha1.New
	case dns.HmacSHA224:
		return sha256.New224
	case dns.HmacSHA256:
		return sha256.New
	case dns.HmacSHA384:
		return sha512.New384
	case dns.HmacSHA512:
		return sha512.New
	}
	return nil
}

func (kr Keyring) mac(msg []byte, t *dns.TSIG) ([]byte, error) {
	k, h, err := kr.lookup(t)
	if err != nil {
		return nil, err
	}
	secret, err := base64.StdEncoding.DecodeString(k.Secret)
	if err != nil {
		return nil, fmt.Errorf("tsig key %s: %w", k, err)
	}
	m := hmac.New(h, secret)
	m.Write(msg)
	return m.Sum(nil), nil
}

// Generate implements dns.TsigProvider: it signs responses.
func (kr Keyring) Generate(msg []byte, t *dns.TSIG) ([]byte, error) {
	return kr.mac(msg, t)
}

// Verify implements dns.TsigProvider: it checks a request's MAC, which may
// be truncated to no less than half the hash and 10 octets (RFC 8945
// section 5.2.2.1), and to no less than the key's MinMAC: a MAC that
// verifies but is shorter is BADTRUNC (section 5.2.2.3; checked after
// the MAC, as BIND does).
func (kr Keyring) Verify(msg []byte, t *dns.TSIG) error {
	k, _, err := kr.lookup(t)
	if err != nil {
		return err
	}
	sum, err := kr.mac(msg, t)
	if err != nil {
		return err
	}
	got, err := hex.DecodeString(t.MAC)
	if err != nil || len(got) > len(sum) || len(got) < minMAC(len(sum)) {
		return errBadFormat
	}
	if !hmac.Equal(sum[:len(got)], got) {
		return errBadSig
	}
	if want := cmp.Or(k.MinMAC, len(sum)); len(got) < want {
		return errBadTrunc
	}
	return nil
}

// An Error is what Check answered, for the caller's log line.
type Error struct {
	Rcode  int
	Reason string
}

func (e *Error) Error() string { return dns.RcodeToString[e.Rcode] + ": " + e.Reason }

// Check answers a request whose TSIG does not verify, as RFC 8945 section
// 5.2 says, and returns what it answered; it returns nil, writing nothing,
// when r is signed by a known key, and when r is unsigned (the caller
// decides what unsigned requests may do). The verdict is w.TsigStatus(),
// the dns.Server's, which verified with a Keyring. Its answer to a
// verified but late request (BADTIME) is signed; answers about the key or
// the MAC are not (section 5.3.2).
func Check(w dns.ResponseWriter, r *dns.Msg) *Error {
	t := r.IsTsig()
	n := 0
	for _, rr := range r.Extra {
		if rr.Header().Rrtype == dns.TypeTSIG {
			n++
		}
	}
	if n > 1 || n == 1 && t == nil {
		// RFC 8945 section 5.2: one TSIG, the last record, or FORMERR.
		m := new(dns.Msg)
		m.SetRcode(r, dns.RcodeFormatError)
		w.WriteMsg(m)
		return &Error{dns.RcodeFormatError, "TSIG is not the last record of the message"}
	}
	if t == nil {
		return nil
	}
	if err := w.TsigStatus(); err != nil {
		return Refuse(w, r, err)
	}
	return nil
}

// Refuse answers r, whose TSIG failed verification with err, and returns
// what it answered.
func Refuse(w dns.ResponseWriter, r *dns.Msg, err error) *Error {
	t := r.IsTsig()
	m := new(dns.Msg)
	if t == nil {
		err = errors.New("tsig: no TSIG record")
	}
	var code uint16
	switch {
	case t == nil:
	case errors.Is(err, ErrBadKey):
		code = dns.RcodeBadKey
	case errors.Is(err, errBadSig):
		code = dns.RcodeBadSig
	case errors.Is(err, errBadTrunc):
		code = dns.RcodeBadTrunc
	case errors.Is(err, dns.ErrTime):
		code = dns.RcodeBadTime
	}
	if code == 0 {
		// The TSIG could not be read, or its MAC size is impossible:
		// section 5.2.2.1 drops the message with FORMERR.
		m.SetRcode(r, dns.RcodeFormatError)
		w.WriteMsg(m)
		return &Error{dns.RcodeFormatError, err.Error()}
	}
	m.SetRcode(r, dns.RcodeNotAuth)
	now := uint64(time.Now().Unix()) & (1<<48 - 1)
	why := &Error{dns.RcodeNotAuth, "TSIG " + dns.RcodeToString[int(code)] + " for key " + t.Hdr.Name}
	if code == dns.RcodeBadTime {
		// Section 5.2.3: signed by the writer with the request's MAC,
		// with the client's Time Signed and the server's clock in Other
		// Data so that the client can verify it anyway.
		m.SetTsig(t.Hdr.Name, t.Algorithm, t.Fudge, int64(t.TimeSigned))
		rt := m.Extra[len(m.Extra)-1].(*dns.TSIG)
		rt.Error, rt.OtherLen, rt.OtherData = code, 6, fmt.Sprintf("%012x", now)
		w.WriteMsg(m)
		return why
	}
	if code == dns.RcodeBadTrunc {
		// The MAC verified, only too short for the key: signed, as BIND
		// does, so that the client can believe the error (nsupdate
		// reports an unsigned one as "tsig verify failure").
		m.SetTsig(t.Hdr.Name, t.Algorithm, t.Fudge, time.Now().Unix())
		m.Extra[len(m.Extra)-1].(*dns.TSIG).Error = code
		w.WriteMsg(m)
		return why
	}
	// Section 5.3.2: unsigned, MAC empty. Written here rather than by
	// miekg's writer, which would zero Time Signed: BIND's nsupdate reads
	// that as clock skew instead of reporting the error.
	m.Extra = append(m.Extra, &dns.TSIG{
		Hdr:       dns.RR_Header{Name: t.Hdr.Name, Rrtype: dns.TypeTSIG, Class: dns.ClassANY},
		Algorithm: t.Algorithm, TimeSigned: now, Fudge: t.Fudge, OrigId: r.Id, Error: code,
	})
	if buf, err := m.Pack(); err == nil {
		w.Write(buf)
	}
	return why
}

// SignReply makes the writer sign m with the key that signed the request
// r, if any (RFC 8945 section 5.3): every answer to a signed request is
// signed.
func SignReply(m, r *dns.Msg) {
	if t := r.IsTsig(); t != nil {
		m.SetTsig(t.Hdr.Name, t.Algorithm, 300, time.Now().Unix())
	}
}

// SigningWriter returns a writer that signs every answer it writes with
// the key of the request r, unless the answer already carries a TSIG.
func SigningWriter(w dns.ResponseWriter, r *dns.Msg) dns.ResponseWriter {
	return &signingWriter{w, r}
}

type signingWriter struct {
	dns.ResponseWriter
	req *dns.Msg
}

func (w *signingWriter) WriteMsg(m *dns.Msg) error {
	if m.IsTsig() == nil {
		SignReply(m, w.req)
	}
	return w.ResponseWriter.WriteMsg(m)
}

// Digest names what the TSIG of r signed, whatever its MAC: the key and
// algorithm, the time signed and fudge, the original ID and the message
// itself (RFC 8945 section 4.3). Copies of one signed message, with their
// MACs truncated to other lengths or another ID in their header, share
// it: a replay is recognised by its digest, never by its MAC bytes. It
// returns "" for an unsigned message.
func Digest(r *dns.Msg) string {
	t := r.IsTsig()
	if t == nil {
		return ""
	}
	m := r.Copy()
	m.Extra = m.Extra[:len(m.Extra)-1]
	m.Id = t.OrigId
	m.Compress = false
	body, err := m.Pack()
	if err != nil {
		return ""
	}
	h := sha256.New()
	fmt.Fprintf(h, "%s %s %d %d %d %s\n", dns.CanonicalName(t.Hdr.Name), dns.CanonicalName(t.Algorithm),
		t.TimeSigned, t.Fudge, t.Error, t.OtherData)
	h.Write(body)
	return base64.RawStdEncoding.EncodeToString(h.Sum(nil))
}
