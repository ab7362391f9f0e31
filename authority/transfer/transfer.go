// Package transfer carries the zones to secondaries, the forward zone and
// each reverse zone alike: AXFR (RFC 5936), IXFR from the versions they
// hold (RFC 1995), and the NOTIFY that tells them to ask (RFC 1996).
package transfer

import (
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/miekg/dns"

	"github.com/annuaire/annuaire/authority/tsig"
	"github.com/annuaire/annuaire/authority/zone"
	"github.com/annuaire/annuaire/registry"
)

// Transfer limits.
const (
	// xfrChunk bounds the uncompressed size of the records put in one
	// transfer message, far below the 65535-byte ceiling of a DNS message
	// over TCP (RFC 1035 section 4.2.2) so that header, question and TSIG
	// always fit too.
	xfrChunk = 32 << 10

	// xfrKeep is how many zone versions are kept to answer IXFR. Keeping a
	// memdb snapshot costs only the radix-tree nodes changed since, so the
	// bound is on the count, not the zone size.
	xfrKeep = 64
)

// transferState remembers the zone versions recently sent to secondaries,
// so that IXFR can send the difference from the version a secondary holds.
//
// A secondary only ever holds a version it was sent by a transfer, so
// remembering what each transfer sent is enough while the process lives.
// After a restart, rewind rebuilds older versions from the registry's
// durable history; beyond it, secondaries get the whole zone (RFC 1995
// section 4).
type transferState struct {
	mu       sync.Mutex // guards versions
	versions []version
}

// A version is a zone at a serial, and a snapshot that holds it: a
// reverse zone's serial is the registry serial of its last change, and
// every snapshot since holds the same zone.
type version struct {
	zone   string
	serial uint32
	snap   *registry.Snapshot
}

// remember keeps snap as holding a version of zone a secondary may hold.
func (t *transferState) remember(zone string, serial uint32, snap *registry.Snapshot) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, v := range t.versions {
		if v.zone == zone && v.serial == serial {
			return
		}
	}
	t.versions = append(t.versions, version{zone, serial, snap})
	if len(t.versions) > xfrKeep {
		t.versions = append(t.versions[:0:0], t.versions[len(t.versions)-xfrKeep:]...)
	}
}

// version returns the remembered snapshot that holds zone at serial.
func (t *transferState) version(zone string, serial uint32) (*registry.Snapshot, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, v := range t.versions {
		if v.zone == zone && v.serial == serial {
			return v.snap, true
		}
	}
	return nil, false
}

// rewind rebuilds the registry as it was at serial from, by undoing the
// change sets of snap's history on an in-memory copy of snap. Undoing goes
// newest row first, through the same Tx methods, so every intermediate
// state is one the registry went through; host collection may delete a
// host before the undo of its creation does, hence the ErrNotFound that
// undo forgives. The copy costs as much as rendering the zone, which an
// IXFR does anyway.
func rewind(snap *registry.Snapshot, from uint32) (*registry.Snapshot, bool) {
	sets, ok := snap.History(from)
	if !ok || len(sets) == 0 {
		return nil, false
	}
	old := registry.New(from)
	_, err := old.Update(func(tx *registry.Tx) error {
		for h := range snap.Hosts() {
			if err := tx.PutHost(*h); err != nil {
				return err
			}
		}
		for inst := range snap.All() {
			if _, err := tx.PutInstance(*inst); err != nil {
				return err
			}
		}
		for i := len(sets) - 1; i >= 0; i-- {
			for j := len(sets[i].Changes) - 1; j >= 0; j-- {
				if err := sets[i].Changes[j].Undo(tx); err != nil && !errors.Is(err, registry.ErrNotFound) {
					return err
				}
			}
		}
		return nil
	})
	if err != nil {
		return nil, false
	}
	return old.Snapshot(), true
}

// withSerial returns the zone rrs with its SOA (the first record) set to serial.
func withSerial(rrs []dns.RR, serial uint32) []dns.RR {
	soa := dns.Copy(rrs[0]).(*dns.SOA)
	soa.Serial = serial
	return append([]dns.RR{soa}, rrs[1:]...)
}

// A Handler answers AXFR and IXFR for the zones Zone holds, and the
// NOTIFYs sent to annuaire. Its fields must not change once it has
// answered.
type Handler struct {
	// Registry is the source of the zone. Required.
	Registry *registry.Registry
	// Zone holds the zones transferred. Required.
	Zone *zone.Zone
	// Keys: a request signed with one of them may transfer.
	Keys []tsig.Key
	// AllowTransfer lists the networks that may transfer without a key.
	AllowTransfer []netip.Prefix
	// Logger receives one line per transfer a secondary may make, signed
	// or over TCP: no one can forge those (the key, TCP's handshake), and
	// a secondary of several zones makes several at each change. Required.
	Logger *slog.Logger
	// Refusals, if not nil, receives instead the lines any packet can
	// cause (refused transfers and NOTIFYs, unsigned ones over UDP): it
	// should be rate-limited.
	Refusals *slog.Logger
	// Count, if not nil, counts each transfer by type (AXFR, IXFR) and
	// result (full, incremental, incremental-history, uptodate,
	// tcp-needed, refused, error).
	Count func(kind, result string)

	versions transferState // zone versions sent to secondaries, for IXFR
}

// Transfer answers r, an AXFR (RFC 5936) or IXFR (RFC 1995) request for
// a zone, received over TCP or not. The dns.Server that read r must
// have verified its TSIG with a tsig.Keyring of Keys.
func (h *Handler) Transfer(w dns.ResponseWriter, r *dns.Msg, tcp bool) {
	start := time.Now()
	q := r.Question[0]
	kind := dns.TypeToString[q.Qtype]
	client := remoteAddr(w)
	log := h.remote().With("client", client.String(), "type", kind, "zone", q.Name)
	count := func(result string) {
		if h.Count != nil {
			h.Count(kind, result)
		}
	}

	if err := tsig.Check(w, r); err != nil {
		// A signature that does not verify gets the answer RFC 8945
		// section 5.2 prescribes, which tsig.Check wrote.
		log.Warn("zone transfer refused", "reason", err.Reason)
		count("refused")
		return
	}
	key, ok := h.allowed(w, r, client)
	if key != "" {
		log = log.With("key", key)
	}
	if ok && (key != "" || tcp) {
		log = h.Logger.With("client", client.String(), "type", kind, "zone", q.Name)
		if key != "" {
			log = log.With("key", key)
		}
	}
	if !ok {
		log.Warn("zone transfer refused", "reason", "no valid TSIG key and source not in --allow-transfer")
		count("refused")
		xfrError(w, r, dns.RcodeRefused)
		return
	}
	snap := h.Registry.Snapshot()
	rrs, held := h.Zone.Records(snap, q.Name)
	if !held || (q.Qclass != dns.ClassINET && q.Qclass != dns.ClassANY) {
		// RFC 5936 section 2.2.1: NOTAUTH for a zone the server does not
		// serve.
		log.Warn("zone transfer refused", "reason", "not a zone annuaire holds")
		count("refused")
		xfrError(w, r, dns.RcodeNotAuth)
		return
	}
	if !tcp && q.Qtype == dns.TypeAXFR {
		// RFC 5936 section 4.2 leaves AXFR over UDP undefined; it gets
		// FORMERR, as from BIND.
		count("refused")
		xfrError(w, r, dns.RcodeFormatError)
		return
	}

	soa := rrs[0]
	apex := soa.Header().Name
	cur := soa.(*dns.SOA).Serial
	h.versions.remember(apex, cur, snap)

	var (
		out  []dns.RR
		mode string
	)
	if q.Qtype == dns.TypeIXFR {
		old, ok := ixfrSerial(r)
		if !ok {
			// RFC 1995 section 3: the query carries the client's SOA in
			// the authority section.
			count("error")
			xfrError(w, r, dns.RcodeFormatError)
			return
		}
		log = log.With("from_serial", old)
		if !registry.SerialLess(old, cur) {
			// RFC 1995 section 2: up to date (or ahead, after a serial
			// reset): one SOA tells the client there is nothing to do.
			out, mode = []dns.RR{soa}, "uptodate"
		} else if oldRRs, ok := h.oldVersion(snap, apex, old); ok {
			out, mode = ixfrRecords(oldRRs, rrs), "incremental"
		} else if oldRRs, ok := h.rewound(snap, apex, old); ok {
			// A version this process never sent (it restarted since):
			// rebuilt from the registry's durable history.
			out, mode = ixfrRecords(oldRRs, rrs), "incremental-history"
		} else {
			// The history does not reach back: the whole zone, in AXFR
			// form (RFC 1995 section 4).
			out, mode = axfrRecords(rrs), "full"
		}
		if !tcp && len(out) > 1 && !fitsUDP(r, out) {
			// RFC 1995 section 2: over UDP, a reply that does not fit is
			// one SOA, and the client retries over TCP.
			out, mode = []dns.RR{soa}, "tcp-needed"
		}
	} else {
		out, mode = axfrRecords(rrs), "full"
	}

	msgs, err := writeTransfer(w, r, out)
	if err != nil {
		log.Error("zone transfer failed", "serial", cur, "mode", mode, "records", len(out), "messages", msgs, "duration", time.Since(start), "err", err)
		count("error")
		return
	}
	log.Info("zone transfer", "serial", cur, "mode", mode, "records", len(out), "messages", msgs, "duration", time.Since(start))
	count(mode)
}

// remote is the logger of lines any packet can cause.
func (h *Handler) remote() *slog.Logger {
	if h.Refusals != nil {
		return h.Refusals
	}
	return h.Logger
}

// oldVersion returns zone apex at serial old as a transfer sent it.
func (h *Handler) oldVersion(snap *registry.Snapshot, apex string, old uint32) ([]dns.RR, bool) {
	oldSnap, ok := h.versions.version(apex, old)
	if !ok {
		return nil, false
	}
	return h.Zone.Records(oldSnap, apex)
}

// rewound returns zone apex at serial old, rebuilt from the registry's
// history: the registry as it was at serial old holds the zone as it was
// (a reverse zone's serial is that of a registry change). The rebuilt
// registry has serials of its own: the SOA says old.
func (h *Handler) rewound(snap *registry.Snapshot, apex string, old uint32) ([]dns.RR, bool) {
	oldSnap, ok := rewind(snap, old)
	if !ok {
		return nil, false
	}
	rrs, ok := h.Zone.Records(oldSnap, apex)
	if !ok {
		return nil, false
	}
	return withSerial(rrs, old), true
}

// allowed reports whether the client may transfer the zone, and the TSIG
// key it signed with, if any. miekg's dns.Server has already checked the
// signature against Keys: w.TsigStatus() is its verdict.
func (h *Handler) allowed(w dns.ResponseWriter, r *dns.Msg, client netip.AddrPort) (key string, ok bool) {
	if t := r.IsTsig(); t != nil {
		if w.TsigStatus() != nil {
			return t.Hdr.Name, false
		}
		for _, k := range h.Keys {
			if strings.EqualFold(dns.Fqdn(k.Name), t.Hdr.Name) {
				return t.Hdr.Name, true
			}
		}
		return t.Hdr.Name, false
	}
	addr := client.Addr().Unmap()
	for _, p := range h.AllowTransfer {
		if p.Contains(addr) {
			return "", true
		}
	}
	return "", false
}

// writeTransfer sends rrs in as many messages as needed, the question in
// each (RFC 5936 section 2.2.1 allows it), and returns how many it sent.
// When the request was signed, every message is (RFC 8945 section 5.3.1):
// miekg's ResponseWriter chains each MAC to the previous one once
// TsigTimersOnly is set, as dns.Transfer.Out does.
func writeTransfer(w dns.ResponseWriter, r *dns.Msg, rrs []dns.RR) (int, error) {
	tsig := r.IsTsig()
	n := 0
	for len(rrs) > 0 {
		size, i := 0, 0
		for i < len(rrs) && (i == 0 || size+dns.Len(rrs[i]) <= xfrChunk) {
			size += dns.Len(rrs[i])
			i++
		}
		m := new(dns.Msg)
		m.SetReply(r)
		m.Authoritative = true
		m.Compress = true
		m.Answer = rrs[:i]
		rrs = rrs[i:]
		if tsig != nil {
			m.SetTsig(tsig.Hdr.Name, tsig.Algorithm, tsig.Fudge, time.Now().Unix())
		}
		if err := w.WriteMsg(m); err != nil {
			return n, err
		}
		n++
		w.TsigTimersOnly(true)
	}
	return n, nil
}

// xfrError answers a transfer request with rcode alone, signed when the
// request was validly signed.
func xfrError(w dns.ResponseWriter, r *dns.Msg, rcode int) {
	m := new(dns.Msg)
	m.SetRcode(r, rcode)
	if t := r.IsTsig(); t != nil && w.TsigStatus() == nil {
		m.SetTsig(t.Hdr.Name, t.Algorithm, t.Fudge, time.Now().Unix())
	}
	w.WriteMsg(m)
}

// axfrRecords is the zone as AXFR sends it: SOA first and last (RFC 5936
// section 2.2).
func axfrRecords(rrs []dns.RR) []dns.RR {
	out := make([]dns.RR, 0, len(rrs)+1)
	out = append(out, rrs...)
	return append(out, rrs[0])
}

// ixfrRecords is one difference sequence from old to cur, the condensed
// form RFC 1995 section 5 allows: current SOA, old SOA, deleted records,
// current SOA, added records, current SOA. Both zones start with their SOA.
func ixfrRecords(old, cur []dns.RR) []dns.RR {
	del, add := diffRecords(old[1:], cur[1:])
	out := make([]dns.RR, 0, len(del)+len(add)+4)
	out = append(out, cur[0], old[0])
	out = append(out, del...)
	out = append(out, cur[0])
	out = append(out, add...)
	return append(out, cur[0])
}

// diffRecords returns the records of old missing from cur, and those of cur
// missing from old. Records compare by presentation form, so a changed TTL
// is a deletion and an addition, as a secondary must see it.
func diffRecords(old, cur []dns.RR) (del, add []dns.RR) {
	count := make(map[string]int, len(old))
	for _, rr := range old {
		count[rr.String()]++
	}
	for _, rr := range cur {
		k := rr.String()
		if count[k] > 0 {
			count[k]--
			continue
		}
		add = append(add, rr)
	}
	for _, rr := range old {
		k := rr.String()
		if count[k] > 0 {
			count[k]--
			del = append(del, rr)
		}
	}
	return del, add
}

// ixfrSerial is the serial of the SOA an IXFR query carries in its
// authority section.
func ixfrSerial(r *dns.Msg) (uint32, bool) {
	for _, rr := range r.Ns {
		if soa, ok := rr.(*dns.SOA); ok {
			return soa.Serial, true
		}
	}
	return 0, false
}

// fitsUDP reports whether rrs fit the UDP payload size the client offered.
func fitsUDP(r *dns.Msg, rrs []dns.RR) bool {
	size := dns.MinMsgSize
	if o := r.IsEdns0(); o != nil && int(o.UDPSize()) > size {
		size = int(o.UDPSize())
	}
	m := new(dns.Msg)
	m.SetReply(r)
	m.Compress = true
	m.Answer = rrs
	room := 0
	if r.IsTsig() != nil {
		room = 100 // a TSIG record with a SHA-512 MAC and a long key name
	}
	if r.IsEdns0() != nil {
		room += 11
	}
	return m.Len()+room <= size
}

func remoteAddr(w dns.ResponseWriter) netip.AddrPort {
	switch a := w.RemoteAddr().(type) {
	case *net.TCPAddr:
		return a.AddrPort()
	case *net.UDPAddr:
		return a.AddrPort()
	}
	ap, _ := netip.ParseAddrPort(w.RemoteAddr().String())
	return ap
}
