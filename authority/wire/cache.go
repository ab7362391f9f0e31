// Package wire is the DNS server's fast path: plain queries answered from
// packed answers, without unpacking the request or packing the response.
// Cache.AnswerFrom is its one entry, from request bytes to answer bytes; the
// UDP loop (recvmmsg/sendmmsg on Linux, one reader elsewhere) and the TCP
// connections call it on what they read, and hand everything else to
// miekg/dns through sockets of their own making.
package wire

import (
	"encoding/binary"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/annuaire/annuaire/authority/zone"
	"github.com/annuaire/annuaire/registry"
)

// The cache holds packed answers. An answer is a pure function of
// (snapshot, question, EDNS shape, transport) — see zone.Zone.Respond —
// so a packed answer can be sent again to any request with the same key
// once its ID, its RD and CD bits, the case of its question name and the
// zone's serial are patched in. Each answer is built from one snapshot and
// carried to the next ones while no registry change touches what it read
// (fresh.go). The cache is derived data: memdb stays the only store,
// and an answer found stale is simply built again from the newest
// snapshot.
//
// Only plain queries take it: one question, opcode QUERY, no TSIG, no
// record but an OPT with version 0 and no unknown option. Everything else
// goes the full miekg/dns way, as does any request whose key is not
// cached yet and whose name is not in lowercase (a 0x20-randomised name).

// Bounds of the cache: past either, it starts again empty, so that a
// flood of random names costs CPU, never memory.
const (
	maxEntries = 1 << 16
	maxBytes   = 32 << 20
)

// A Cache holds packed answers, each valid at some recent snapshot. Its
// methods are safe for concurrent use.
type Cache struct {
	reg      *registry.Registry
	zone     *zone.Zone
	counters Counters

	cur    atomic.Pointer[view] // the snapshot answers are sent from
	viewMu sync.Mutex           // serialises moving cur forward

	guard *guard // set by Guard before serving; nil: cookies left blank, no limit

	tab   atomic.Pointer[table] // read without a lock (table.go)
	mu    sync.Mutex            // serialises writers of tab; guards bytes
	bytes int
}

// Counters are the server's metrics that answers sent from the cache
// feed: those never reach the server's handler. The zero value counts
// nothing.
type Counters struct {
	// Answers returns the counter of answers to questions of type qtype
	// with rcode; it is asked once per answer cached.
	Answers func(qtype uint16, rcode int) prometheus.Counter
	// Truncated counts the answers sent with TC set.
	Truncated prometheus.Counter
	// UDPLatency and TCPLatency observe the time from reading a request
	// to sending its answer; UDPLatency that of answers sent together.
	UDPLatency func(seconds float64, answers int)
	TCPLatency prometheus.Observer
	// TCPClosed counts a TCP connection closed to make room, by reason:
	// idlest, per-client, idle, refused (see TCPConfig).
	TCPClosed func(reason string)
	// Cookies returns the counter of requests whose COOKIE option held
	// result: "valid" (a server cookie of ours, unexpired), "invalid"
	// (another, or expired) or "client" (a client cookie alone).
	Cookies func(result string) prometheus.Counter
	// Limited returns the counter of answers rate limited with action:
	// "dropped" or "slipped" (see RateLimit).
	Limited func(action string) prometheus.Counter
}

// New returns an empty cache of the answers zone gives from reg's
// snapshots.
func New(reg *registry.Registry, z *zone.Zone, counters Counters) *Cache {
	c := &Cache{reg: reg, zone: z, counters: counters}
	c.tab.Store(newTable(minSlots))
	return c
}

// An entry is one packed answer, ready to copy.
type entry struct {
	key string // the cache key (request.key)
	msg []byte

	// What makes it stale (fresh.go): the serial it was last known valid
	// at, and what building it read of the registry.
	serial atomic.Uint32
	keys   []registry.Key
	// serials are the offsets of the SOA serials in msg, patched on send.
	serials []int
	// caseFree says whether the answer's bytes depend on the case of the
	// question name beyond the question itself (caseUnknown, caseFree or
	// caseBound). They do when another name in it is compressed into a
	// suffix of the question name: miekg/dns compresses case-sensitively.
	// If not, a mixed-case request may be answered from the entry by
	// copying its name in. Learnt from the first mixed-case request.
	caseFree atomic.Int32

	// What metrics count, resolved once.
	answers   prometheus.Counter // nil without metrics
	truncated bool

	cookie bool   // msg ends with a COOKIE option's data, to fill (zone.CookieRoom)
	rrl    uint64 // the answer's part of its rate limiting key (rrlKey)
}

// States of entry.caseFree.
const (
	caseUnknown = iota
	caseFree
	caseBound
)

// request is what the hot path reads of a request: header, question and
// OPT record, without allocating.
type request struct {
	name      []byte // the question name in wire form, as asked (a slice of the request)
	upper     bool   // name holds an ASCII capital letter
	qtype     uint16
	qclass    uint16
	edns      edns
	hasRD     bool
	hasCD     bool
	requestID uint16
	cookie    cookie // its COOKIE option, if any
}

// maxKey is the longest cache key: a name, type, class and EDNS shape.
const maxKey = 255 + 2 + 2 + 1 + 2

// edns is the part of a request's OPT record that shapes its answer, as
// zone.Respond reads it (RFC 6891).
type edns struct {
	present bool // the request had an OPT record
	do      bool // its DO bit
	size    int  // the largest response allowed: 512 to zone.MaxUDPSize over UDP, 65535 over TCP
}

// parse reads a request that the cache may answer. ok is false for
// anything else, which then takes the full path: the parse is strict so
// that two requests with one key are the same question to miekg/dns.
func parse(b []byte, tcp bool) (q request, ok bool) {
	const hdr = 12
	if len(b) < hdr+5 {
		return q, false
	}
	flags := binary.BigEndian.Uint16(b[2:])
	if flags&(1<<15) != 0 || (flags>>11)&0xF != dns.OpcodeQuery {
		return q, false
	}
	if binary.BigEndian.Uint16(b[4:]) != 1 || binary.BigEndian.Uint16(b[6:]) != 0 || binary.BigEndian.Uint16(b[8:]) != 0 {
		return q, false
	}
	arcount := binary.BigEndian.Uint16(b[10:])
	if arcount > 1 {
		return q, false
	}
	// The name: plain labels, no compression pointer (legal but never
	// seen in a question), at most 255 bytes (RFC 1035 section 3.1).
	off := hdr
	for {
		if off >= len(b) {
			return q, false
		}
		l := int(b[off])
		if l == 0 {
			off++
			break
		}
		if l > 63 || off+1+l > len(b) {
			return q, false
		}
		for _, c := range b[off+1 : off+1+l] {
			if registry.FoldByte(c) != c {
				q.upper = true
			}
		}
		off += 1 + l
	}
	if off-hdr > 255 || off+4 > len(b) {
		return q, false
	}
	q.name = b[hdr:off]
	q.qtype = binary.BigEndian.Uint16(b[off:])
	q.qclass = binary.BigEndian.Uint16(b[off+2:])
	off += 4
	switch q.qtype {
	case dns.TypeOPT, dns.TypeAXFR, dns.TypeIXFR, dns.TypeMAILA, dns.TypeMAILB, dns.TypeTKEY, dns.TypeTSIG:
		return q, false // transfers, and the errors respond gives: rare
	}
	q.requestID = binary.BigEndian.Uint16(b)
	q.hasRD = flags&(1<<8) != 0
	q.hasCD = flags&(1<<4) != 0
	q.edns = edns{size: dns.MinMsgSize}
	if tcp {
		q.edns.size = dns.MaxMsgSize
	}
	if arcount == 0 {
		return q, off == len(b)
	}
	// The OPT record (RFC 6891 section 6.1.2): owner root, type OPT,
	// class the UDP size, TTL extended rcode, version, DO and Z.
	if off+11 > len(b) || b[off] != 0 || binary.BigEndian.Uint16(b[off+1:]) != dns.TypeOPT {
		return q, false
	}
	size := int(binary.BigEndian.Uint16(b[off+3:]))
	version := b[off+6]
	do := b[off+7]&0x80 != 0
	rdlen := int(binary.BigEndian.Uint16(b[off+9:]))
	off += 11
	if version != 0 || off+rdlen != len(b) {
		return q, false // BADVERS, trailing bytes: the full path says what
	}
	// Options are ignored (RFC 6891 section 6.1.2), but miekg/dns rejects
	// some malformed ones as FORMERR: only let through those it never
	// rejects (NSID, COOKIE, PADDING).
	for o := off; o < len(b); {
		if o+4 > len(b) {
			return q, false
		}
		code := binary.BigEndian.Uint16(b[o:])
		n := int(binary.BigEndian.Uint16(b[o+2:]))
		if o+4+n > len(b) {
			return q, false
		}
		switch code {
		case dns.EDNS0NSID, dns.EDNS0PADDING:
		case dns.EDNS0COOKIE:
			k, ok := splitCookie(b[o+4 : o+4+n])
			if !ok || q.cookie.client != nil {
				return q, false // FORMERR: the full path says it
			}
			q.cookie = k
		default:
			return q, false
		}
		o += 4 + n
	}
	q.edns.present = true
	q.edns.do = do
	if !tcp {
		q.edns.size = min(max(size, dns.MinMsgSize), zone.MaxUDPSize)
	}
	return q, true
}

// key writes q's cache key into buf: the folded name, type, class and
// the EDNS shape, which with the transport is all an answer depends on.
func (q *request) key(buf *[maxKey]byte, tcp bool) []byte {
	n := copy(buf[:], q.name)
	if q.upper {
		for i := range n {
			buf[i] = registry.FoldByte(buf[i]) // length bytes are at most 63: never folded
		}
	}
	k := buf[:n]
	k = binary.BigEndian.AppendUint16(k, q.qtype)
	k = binary.BigEndian.AppendUint16(k, q.qclass)
	var shape byte
	if tcp {
		shape |= 1
	}
	if q.edns.present {
		shape |= 2
	}
	if q.edns.do {
		shape |= 4
	}
	if q.cookie.client != nil {
		shape |= 8 // the answer carries a COOKIE option
	}
	k = append(k, shape)
	return binary.BigEndian.AppendUint16(k, uint16(q.edns.size))
}

func (c *Cache) get(key []byte) *entry { return c.tab.Load().get(key) }

// put caches e under key, replacing a stale answer.
func (c *Cache) put(key []byte, e *entry) {
	e.key = string(key)
	c.mu.Lock()
	defer c.mu.Unlock()
	t := c.tab.Load()
	switch {
	case t.used >= maxEntries || c.bytes+e.size() > maxBytes:
		t = newTable(minSlots)
		c.tab.Store(t)
		c.bytes = 0
	case t.full():
		t = t.grown()
		c.tab.Store(t)
	}
	if old := t.put(e); old != nil {
		c.bytes -= old.size()
	}
	c.bytes += e.size()
}

// size is about what e holds in memory: its key, answer and reads.
func (e *entry) size() int { return len(e.key) + len(e.msg) + 8*len(e.keys) }

// Answer is AnswerFrom for a client whose address is unknown: never
// limited, and its cookie made for the invalid address.
func (c *Cache) Answer(req, out []byte, tcp bool) int {
	return c.AnswerFrom(req, out, tcp, netip.Addr{})
}

// AnswerFrom writes the answer to the request req, received from the client
// at from over TCP or not, into out and returns its length, and counts it.
// n is 0 when req must take the full path: it is not a plain query, out
// is too small, or its answer is not cached and cannot be cached from it;
// it is -1 when nothing is to be sent (rate limited). Answers are byte for
// byte those of zone.Respond from the registry's newest snapshot, with the
// server cookie filled in; a rate-limited answer may be a truncated one
// instead (see RateLimit).
//
// A request with bytes after its last record gets FORMERR here, whatever
// it asks: miekg/dns would read it without them and the full path answer
// it as if they were not there. Knot answers FORMERR too; a question
// followed by junk is a client or a middlebox gone wrong, and the junk
// may be an OPT or TSIG record that the counts leave out.
func (c *Cache) AnswerFrom(req, out []byte, tcp bool, from netip.Addr) (n int) {
	q, e := c.lookup(req, tcp)
	if e == nil {
		m := c.formErr(req, len(out), tcp)
		if m == nil {
			return 0
		}
		// Limited as the full path limits its errors (guardedWriter).
		if n, limited := c.limit(out, req, &q, rrlKey(kindError, 0, nil), tcp, from, cookieCheck{}); limited {
			return n
		}
		return copy(out, m)
	}
	if len(e.msg) > len(out) {
		return 0
	}
	return c.send(out, req, &q, e, tcp, from)
}

// send writes e, the answer to q (read from req), into out for the client
// at from: patched, its cookie filled, or limited (see Answer).
func (c *Cache) send(out, req []byte, q *request, e *entry, tcp bool, from netip.Addr) int {
	g := c.guard
	var check cookieCheck
	if g != nil && q.cookie.client != nil {
		check = g.checkCookie(q.cookie, from)
	}
	if n, limited := c.limit(out, req, q, e.rrl, tcp, from, check); limited {
		return n
	}
	n := q.patch(out, e, e.serial.Load())
	if e.cookie {
		copy(out[n-cookieLen:], q.cookie.client) // the cache's entry has another client's
		if g != nil {
			g.fillCookie(out[n-serverCookieLen:n], q.cookie, from, check)
		}
	}
	c.count(e)
	return n
}

// limit applies the rate limit to an answer to q, whose key is key, for
// the client at from over UDP: limited says it is not to be sent, and n
// is then -1 (dropped) or the length of the truncated answer written into
// out instead (slipped, see RateLimit).
func (c *Cache) limit(out, req []byte, q *request, key uint64, tcp bool, from netip.Addr, check cookieCheck) (n int, limited bool) {
	g := c.guard
	if tcp || g == nil || g.limit == nil || check.valid || !from.IsValid() || g.limit.exempt(from) {
		return 0, false
	}
	switch g.limit.take(key, from) {
	case drop:
		g.dropped.Inc()
		return -1, true
	case slip:
		if q.name == nil { // not a plain query (a NOTIFY with trailing bytes): nothing to truncate
			g.dropped.Inc()
			return -1, true
		}
		g.slipped.Inc()
		return g.slip(out, req, q, from, check), true
	}
	return 0, false
}

// formErr returns the FORMERR answer to req if it has bytes after its
// last record and the answer fits in size bytes, else nil.
func (c *Cache) formErr(req []byte, size int, tcp bool) []byte {
	if !trailing(req) {
		return nil
	}
	r := new(dns.Msg)
	if r.Unpack(req) != nil {
		return nil // miekg/dns answers what it cannot read
	}
	b, err := zone.ErrorReply(r, tcp, dns.RcodeFormatError).Pack()
	if err != nil || len(b) > size {
		return nil
	}
	if c.counters.Answers != nil && len(r.Question) == 1 {
		c.counters.Answers(r.Question[0].Qtype, dns.RcodeFormatError).Inc()
	}
	return b
}

// trailing reports whether the DNS message b holds bytes after the
// records its header counts. A message that ends before them is not
// trailing: it is malformed, and miekg/dns says so.
func trailing(b []byte) bool {
	if len(b) < 12 {
		return false
	}
	off := 12
	skipName := func() bool {
		for off < len(b) {
			switch l := int(b[off]); {
			case l == 0:
				off++
				return true
			case l&0xC0 == 0xC0:
				off += 2
				return off <= len(b)
			case l&0xC0 != 0:
				return false
			default:
				off += 1 + l
			}
		}
		return false
	}
	for range binary.BigEndian.Uint16(b[4:]) {
		if !skipName() || off+4 > len(b) {
			return false
		}
		off += 4
	}
	rrs := int(binary.BigEndian.Uint16(b[6:])) + int(binary.BigEndian.Uint16(b[8:])) + int(binary.BigEndian.Uint16(b[10:]))
	for range rrs {
		if !skipName() || off+10 > len(b) {
			return false
		}
		off += 10 + int(binary.BigEndian.Uint16(b[off+8:]))
		if off > len(b) {
			return false
		}
	}
	return off < len(b)
}

// count counts an answer sent from e.
func (c *Cache) count(e *entry) {
	if e.answers == nil {
		return
	}
	e.answers.Inc()
	if e.truncated && c.counters.Truncated != nil {
		c.counters.Truncated.Inc()
	}
}

// lookup returns the cached answer to req, caching it first if need be;
// nil means req must take the full path. The entry returned is valid at
// its serial, which is what its SOA serials are to be patched with.
func (c *Cache) lookup(req []byte, tcp bool) (request, *entry) {
	q, ok := parse(req, tcp)
	if !ok {
		return q, nil
	}
	v := c.view(c.reg.Snapshot())
	var kb [maxKey]byte
	key := q.key(&kb, tcp)
	e := c.get(key)
	if e == nil || !e.fresh(v) {
		if q.upper {
			return q, nil // built from a lowercase request only: see caseFree
		}
		if e = c.build(v.snap, req, tcp); e == nil {
			return q, nil
		}
		c.put(key, e)
	}
	if q.upper && !c.caseFree(v.snap, e, req, tcp) {
		return q, nil
	}
	return q, e
}

// patch copies e's answer into out, which must be large enough, as the
// answer to q at the given serial, and returns its length.
func (q *request) patch(out []byte, e *entry, serial uint32) int {
	n := copy(out, e.msg)
	binary.BigEndian.PutUint16(out, q.requestID)
	// copyHeader's rule: RD and CD come from the request.
	out[2] = out[2]&^1 | b2u(q.hasRD)
	out[3] = out[3]&^0x10 | b2u(q.hasCD)<<4
	copy(out[12:], q.name) // 0x20: the name as asked
	for _, off := range e.serials {
		binary.BigEndian.PutUint32(out[off:], serial)
	}
	return n
}

func b2u(b bool) byte {
	if b {
		return 1
	}
	return 0
}

// build answers req by the full path, from snap, and packs it, recording
// what the answer read (fresh.go). It returns nil if req is not what parse
// took it for.
func (c *Cache) build(snap *registry.Snapshot, req []byte, tcp bool) *entry {
	r := new(dns.Msg)
	if err := r.Unpack(req); err != nil || len(r.Question) != 1 || r.IsTsig() != nil {
		return nil
	}
	var reads registry.Reads
	m := c.zone.Respond(snap.Recording(&reads), r, tcp)
	msg, err := m.Pack()
	if err != nil {
		return nil
	}
	e := &entry{msg: msg, keys: reads.Keys()}
	if q, ok := parse(req, tcp); ok && q.cookie.client != nil {
		// zone.CookieRoom: the option's data ends the message.
		if len(msg) < 4+cookieLen || string(msg[len(msg)-4-cookieLen:len(msg)-cookieLen]) != "\x00\x0a\x00\x18" {
			return nil
		}
		e.cookie = true
	}
	e.rrl = rrlKey(rrlKind(msg), r.Question[0].Qtype, req[12:nameEnd(req)])
	serial := snap.Serial()
	e.serial.Store(serial)
	if _, forward := c.zone.Relative(r.Question[0].Name); forward {
		// The forward zone's serial is the registry's; a reverse zone's
		// is the serial of its last change, which the answer read (its
		// stamps) and which is never patched.
		e.serials = serialOffsets(msg, serial)
	}
	e.truncated = msg[2]&0x2 != 0
	if c.counters.Answers != nil {
		e.answers = c.counters.Answers(r.Question[0].Qtype, int(msg[3]&0xF))
	}
	return e
}

// caseFree reports whether e, built from a lowercase request, is the
// answer to req, the same question in another case, once req's name is
// copied in. miekg/dns compresses names case-sensitively, so a name of the
// zone compressed into a suffix of the lowercase question ("svc.internal."
// in "b.svc.internal.") is written out whole after "b.svC.internAl.", but
// still compressed after "B.svc.internal.": whether the bytes match
// depends on which letters are capitals. So the first time, it answers
// the question in capitals only by the full path and compares: if only
// the question's bytes (and ID, RD, CD) differ, no name of the zone was
// compressed into the question, and none will be, whatever its case.
func (c *Cache) caseFree(snap *registry.Snapshot, e *entry, req []byte, tcp bool) bool {
	switch e.caseFree.Load() {
	case caseFree:
		return true
	case caseBound:
		return false
	}
	req = slices.Clone(req)
	for i, end := 12, nameEnd(req); i < end; i++ { // length bytes are at most 63: never letters
		if c := req[i]; 'a' <= c && c <= 'z' {
			req[i] = c - ('a' - 'A')
		}
	}
	state := int32(caseBound)
	r := new(dns.Msg)
	if r.Unpack(req) == nil && len(r.Question) == 1 {
		if other, err := c.zone.Respond(snap, r, tcp).Pack(); err == nil && len(other) == len(e.msg) {
			mine := slices.Clone(e.msg) // at snap's serial, as other is
			for _, off := range e.serials {
				binary.BigEndian.PutUint32(mine[off:], snap.Serial())
			}
			if e.cookie {
				// The client cookie is each request's own, copied in on send.
				copy(mine[len(mine)-cookieLen:], other[len(other)-cookieLen:])
			}
			qend := nameEnd(mine)
			if string(other[qend:]) == string(mine[qend:]) && string(other[4:12]) == string(mine[4:12]) &&
				other[2]&^1 == mine[2]&^1 && other[3]&^0x10 == mine[3]&^0x10 {
				state = caseFree
			}
		}
	}
	e.caseFree.Store(state)
	return state == caseFree
}

// nameEnd returns the offset just past the question name of a packed
// message, which starts at 12 and is never compressed.
func nameEnd(msg []byte) int {
	for i := 12; i < len(msg); i += int(msg[i]) + 1 {
		if msg[i] == 0 {
			return i + 1
		}
	}
	return len(msg)
}
