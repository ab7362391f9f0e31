// Package update answers RFC 2136 dynamic updates as a view of the
// registry: the registry is the source of truth and DNS shows it, so an
// update is translated into registry writes, all in one registry.Update
// (atomic, and on disk before the answer once the registry journals).
// What maps:
//
//	_S._P.Z    SRV prio weight port H.Z   an instance of S over P on H:port
//	L._S._P.Z  SRV prio weight port H.Z   the DNS-SD instance L (RFC 6763)
//	L._S._P.Z  TXT "k=v" "flag"           instance L's TXT keys (RFC 6763 section 6)
//	T._sub._S._P.Z  PTR L._S._P.Z         instance L's subtype T (RFC 6763 section 7.1)
//	H.Z        A / AAAA                   host H's addresses
//
// Everything else the zone shows is derived (SOA, NS, DNS-SD PTRs, S.Z
// addresses, MX, reverse PTRs) or has no place in the registry (CNAME, ...):
// updating it is REFUSED, except where RFC 2136 section 3.4.2 says to ignore
// it (deleting the apex SOA or NS, re-adding an older SOA). Choices the RFC
// leaves open, made for what an nsupdate user expects:
//   - An instance has one SRV: adding an SRV for the same target and port
//     (at _S._P) or at the same instance name replaces priority, weight and
//     TTL, keeping the instance's TXT and health check.
//   - An instance has one TXT record (RFC 6763 section 6), its strings in
//     the order given: adding a TXT record merges its strings in, each in
//     place of the one with the same key (keys fold case) or at the end;
//     deleting one removes the strings equal to its own. A string is kept
//     as the bytes it is on the wire (RFC 1035 section 3.3.14), and one
//     without '=' stays a boolean key (RFC 6763 section 6.4), never
//     "key=". TXT needs the instance's SRV first, earlier in the same
//     update or in an earlier one: REFUSED otherwise.
//   - A subtype's PTR must point at an instance of the same type that
//     exists, earlier in the same update or in an earlier one: REFUSED
//     otherwise. Deleting the PTR RRset of a subtype takes the subtype
//     from every instance that has it.
//   - An SRV target must be a host in Z (the registry keeps hosts relative
//     to the zone): REFUSED otherwise.
//   - Removing a host's last address removes the host; SRV records that
//     target it stay, as RFC 2136 leaves them.
//   - S.Z, for a service S, shows the addresses of S's instances and those
//     of a host named S, if any: an update may add to and delete from that
//     host, not delete the instances' addresses there.
//   - Prerequisites are checked against the zone as queries see it (the
//     same code answers both): unhealthy instances are not in it.
//   - A record's TTL is kept as given, 0 included (RFC 2181 section 8).
package update

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/miekg/dns"

	"github.com/annuaire/annuaire/authority/tsig"
	"github.com/annuaire/annuaire/authority/zone"
	"github.com/annuaire/annuaire/registry"
)

// A Handler answers RFC 2136 UPDATE for one zone. Its fields must not
// change once it has answered.
type Handler struct {
	// Registry is what updates write. Required.
	Registry *registry.Registry
	// Zone is the zone updates are for. Required.
	Zone *zone.Zone
	// Keys may sign updates; with none, every UPDATE is REFUSED.
	Keys []tsig.Key
	// Logger receives one line per update. Required.
	Logger *slog.Logger
	// Refusals, if not nil, receives the lines of refused updates instead
	// of Logger: anyone can cause those, so it should aggregate them (see
	// package lograte).
	Refusals *slog.Logger

	recent recentUpdates // answers to recent updates, for retransmissions
}

// ServeDNS answers an UPDATE. The dns.Server that read r must have
// verified its TSIG with a tsig.Keyring of Keys: w.TsigStatus() is its
// verdict.
func (h *Handler) ServeDNS(w dns.ResponseWriter, r *dns.Msg) {
	origin := h.Zone.Origin()
	u := &updateLog{client: w.RemoteAddr().String(), zone: origin}
	defer func() { h.logUpdate(u) }()

	t := r.IsTsig()
	if t != nil {
		u.key = dns.CanonicalName(t.Hdr.Name)
	}
	if err := tsig.Check(w, r); err != nil {
		u.rcode, u.why = err.Rcode, err.Reason
		return
	}
	reply := func(rcode int) {
		u.rcode = rcode
		m := new(dns.Msg)
		m.SetRcode(r, rcode)
		tsig.SignReply(m, r)
		w.WriteMsg(m)
	}
	switch {
	case len(h.Keys) == 0 && t != nil:
		// No key is known: BADKEY (RFC 8945 section 5.2.1).
		err := tsig.Refuse(w, r, tsig.ErrBadKey)
		u.rcode, u.why = err.Rcode, "no TSIG key configured: updates are disabled"
		return
	case len(h.Keys) == 0:
		u.why = "no TSIG key configured: updates are disabled"
		reply(dns.RcodeRefused)
		return
	case t == nil:
		// RFC 2136 section 3.3: a request the server's policy does not
		// allow is REFUSED.
		u.why = "unsigned"
		reply(dns.RcodeRefused)
		return
	}

	// RFC 2136 section 3.1.1: one zone, of type SOA, that we serve.
	if len(r.Question) != 1 || r.Question[0].Qtype != dns.TypeSOA {
		u.why = "zone section must hold one SOA question"
		reply(dns.RcodeFormatError)
		return
	}
	if z := r.Question[0]; z.Qclass != dns.ClassINET || dns.CanonicalName(z.Name) != origin {
		u.zone = z.Name
		if z.Qclass == dns.ClassINET && h.Zone.Holds(h.Registry.Snapshot(), z.Name) {
			// A reverse zone: annuaire holds it, so RFC 2136 section
			// 3.1.1's NOTAUTH would be wrong; its PTR records follow the
			// hosts' addresses, which are updated in the forward zone.
			u.why = "a reverse zone: its PTR records follow the hosts' addresses in " + origin
			reply(dns.RcodeRefused)
			return
		}
		u.why = "not our zone"
		reply(dns.RcodeNotAuth)
		return
	}

	// A signed update is acted on once. nsupdate resends an unanswered UDP
	// update unchanged; anyone who captured one can send it again, with
	// its MAC truncated or another ID, until its signature expires (Time
	// Signed plus Fudge: BADTIME after). Copies are recognised by what was
	// signed (tsig.Digest), never by the MAC bytes. A copy seen in this
	// run is answered as the first was, so that a retry of "prereq
	// nxdomain X; add X" still says NOERROR; the registry journals the
	// digest with the update (registry.Tx.UseOnce), so that a copy after
	// a restart is REFUSED and changes nothing. RFC 8945 section 5.2.3's
	// SHOULD, BADTIME for a Time Signed earlier than the last one seen
	// from the key, is not done: clients sharing a key sign out of order
	// across a second boundary, and would be refused for nothing.
	digest := tsig.Digest(r)
	if digest == "" {
		u.why = "cannot take the signed message apart"
		reply(dns.RcodeFormatError)
		return
	}
	expires := time.Unix(int64(t.TimeSigned)+int64(t.Fudge)+1, 0)
	e, first := h.recent.claim(digest, expires)
	if !first {
		u.why = "retransmission: answered as the first copy was"
		reply(e.wait())
		return
	}
	rcode := h.apply(r, u, func(tx *registry.Tx) error { return tx.UseOnce(digest, expires) })
	if rcode != dns.RcodeSuccess && rcode != dns.RcodeServerFailure && !u.replay {
		// Refused, and unapplied: marked alone, so that no copy applies
		// it once the zone has changed. A SERVFAIL wrote nothing, nor
		// can this: a copy may try again.
		if _, err := h.Registry.Update(func(tx *registry.Tx) error { return tx.UseOnce(digest, expires) }); err != nil && !errors.Is(err, registry.ErrReplay) {
			u.why += "; cannot record it as used: " + err.Error()
		}
	}
	e.finish(rcode)
	reply(rcode)
}

// apply runs once, the prerequisite checks and the update in one registry
// transaction and returns the RCODE to answer. once marks the request as
// used, or fails with registry.ErrReplay.
func (h *Handler) apply(r *dns.Msg, u *updateLog, once func(*registry.Tx) error) int {
	// A 64 KiB TCP message holds a few thousand records; one update
	// rewriting that much of the registry is a mistake or an attack, and
	// it would hold the registry's write lock while it ran.
	if n := len(r.Answer) + len(r.Ns); n > maxUpdateRecords {
		u.why = fmt.Sprintf("%d prerequisite and update records, more than %d", n, maxUpdateRecords)
		return dns.RcodeRefused
	}
	v := &view{z: h.Zone, origin: h.Zone.Origin()}
	serial, err := h.Registry.Update(func(tx *registry.Tx) error {
		v.tx = tx
		if err := once(tx); errors.Is(err, registry.ErrReplay) {
			u.replay = true
			return &rcodeError{dns.RcodeRefused, "replay: this signed update was acted on before a restart"}
		} else if err != nil {
			return err
		}
		if err := v.prerequisites(r.Answer); err != nil {
			return err
		}
		if err := v.prescan(r.Ns); err != nil {
			return err
		}
		for _, rr := range r.Ns {
			if err := v.apply(rr, u); err != nil {
				return err
			}
		}
		return nil
	})
	var rerr *rcodeError
	switch {
	case err == nil:
		u.serial = serial
		return dns.RcodeSuccess
	case errors.As(err, &rerr):
		u.why = rerr.why
		return rerr.rcode
	case errors.Is(err, registry.ErrInvalid), errors.Is(err, registry.ErrNotFound),
		// A full directory: the server's policy (RFC 2136 section 2.2's
		// REFUSED; its list of RCODEs has none for a limit).
		errors.Is(err, registry.ErrTooMany):
		u.why = err.Error()
		return dns.RcodeRefused
	default:
		// The journal could not write: nothing was applied.
		u.why = err.Error()
		return dns.RcodeServerFailure
	}
}

// maxUpdateRecords caps the records of one UPDATE message.
const maxUpdateRecords = 1000

// An updateLog gathers what the one log line of an update says.
type updateLog struct {
	key, client, zone string
	added, removed    int
	ignored           int
	rcode             int
	serial            uint32
	why               string
	replay            bool // acted on before a restart
}

func (h *Handler) logUpdate(u *updateLog) {
	args := []any{"key", u.key, "client", u.client, "zone", u.zone,
		"added", u.added, "removed", u.removed, "rcode", dns.RcodeToString[u.rcode]}
	if u.ignored > 0 {
		args = append(args, "ignored", u.ignored)
	}
	if u.serial != 0 {
		args = append(args, "serial", u.serial)
	}
	if u.why != "" {
		args = append(args, "reason", u.why)
	}
	if u.rcode != dns.RcodeSuccess && h.Refusals != nil {
		h.Refusals.Info("dns update refused", args...)
		return
	}
	h.Logger.Info("dns update", args...)
}

// An rcodeError aborts an update, which is then answered with rcode.
type rcodeError struct {
	rcode int
	why   string
}

func (e *rcodeError) Error() string { return dns.RcodeToString[e.rcode] + ": " + e.why }

func refused(format string, args ...any) error {
	return &rcodeError{dns.RcodeRefused, fmt.Sprintf(format, args...)}
}

// A view reads and writes the zone's records in a registry transaction.
type view struct {
	tx     *registry.Tx
	z      *zone.Zone
	origin string
}

// Kinds of owner names in the zone, by what the registry keeps there.
const (
	nameOther    = iota // nothing the registry can hold
	nameApex            // SOA and NS, derived
	nameType            // _S._P: SRV of instances, DNS-SD PTRs
	nameInstance        // L._S._P: an instance's SRV and TXT
	nameHost            // H: a host's A and AAAA, or S's derived addresses
	nameServices        // _services._dns-sd._udp and below: derived
	nameSubtype         // T._sub._S._P: PTRs to the instances with subtype T
)

// An owner is a name in the zone, taken apart.
type owner struct {
	kind           int
	name           string   // as in the message
	service, proto string   // nameType, nameInstance
	label          string   // nameInstance: the raw label, any bytes
	subtype        string   // nameSubtype: the raw label
	rel            []string // the labels below the origin, raw
	host           string   // nameHost: relative, lowercase
}

// parseOwner takes name apart, or reports that it is not in the zone.
func (v *view) parseOwner(name string) (owner, bool) {
	rel, in := v.z.Relative(name)
	if !in {
		return owner{}, false
	}
	o := owner{name: name, rel: rel}
	n := len(rel)
	low := func(i int) string { return registry.FoldName(rel[i]) }
	switch {
	case n == 0:
		o.kind = nameApex
	case n >= 2 && (low(n-1) == "_tcp" || low(n-1) == "_udp") && strings.HasPrefix(rel[n-2], "_"):
		o.service, o.proto = low(n - 2)[1:], low(n - 1)[1:]
		switch {
		case o.service == "dns-sd":
			o.kind = nameServices
		case registry.ValidServiceName(o.service) != nil:
		case n == 2:
			o.kind = nameType
		case n == 3 && low(0) == "_sub":
			// Above the subtypes (RFC 6763 section 7.1): no instance.
		case n == 3:
			o.kind, o.label = nameInstance, rel[0]
		case n == 4 && low(1) == "_sub":
			o.kind, o.subtype = nameSubtype, rel[0]
		}
	default:
		for i := range rel {
			if strings.HasPrefix(rel[i], "_") {
				// RFC 8552 keeps underscored labels for attribute leaves
				// such as _S._P: no host lives there.
				return o, true
			}
		}
		host := registry.FoldName(strings.Join(rel, "."))
		if registry.ValidHostName(host) == nil {
			o.kind, o.host = nameHost, host
		}
	}
	return o, true
}

// records returns the zone's RRset at o of type t (TypeANY: every RRset),
// as a query saw it before the update: what prerequisites compare with.
func (v *view) records(o owner, t uint16) []dns.RR {
	rrs, _ := v.z.Lookup(v.tx.Base(), o.rel, o.name, t)
	return rrs
}

// relHost turns an SRV target into a registry host name.
func (v *view) relHost(target string) (string, error) {
	o, in := v.parseOwner(target)
	if !in || o.kind != nameHost {
		return "", refused("SRV target %s is not a host name in %s: the registry keeps targets in the zone", target, v.origin)
	}
	return o.host, nil
}

// derivedAddrs reports whether host is the name of a service, whose
// addresses the zone derives from the service's instances, and not a host
// of its own.
func (v *view) derivedAddrs(host string) bool {
	if strings.Contains(host, ".") {
		return false
	}
	if _, ok := v.tx.Host(host); ok {
		return false
	}
	_, tcp := v.tx.Type("tcp", host)
	_, udp := v.tx.Type("udp", host)
	return tcp || udp
}

// txtStrings reads the strings of a TXT record as the registry keeps
// them: raw bytes, an empty string (RFC 6763 section 6.1's empty record)
// dropped, and of a key given twice only the first (section 6.4).
func txtStrings(strs []string) registry.TXT {
	var out registry.TXT
	for _, s := range strs {
		raw := zone.UnescapeString(s)
		if raw == "" {
			continue
		}
		if _, dup := out.Lookup(txtKey(raw)); dup {
			continue
		}
		out = append(out, raw)
	}
	return out
}

func txtKey(s string) string {
	k, _, _ := strings.Cut(s, "=")
	return k
}

// prerequisites checks RFC 2136 section 3.2 against the transaction's
// snapshot, in the order of section 3.2.5.
func (v *view) prerequisites(rrs []dns.RR) error {
	type rrsetKey struct {
		name string
		t    uint16
	}
	temp := map[rrsetKey][]dns.RR{}
	var order []rrsetKey
	for _, rr := range rrs {
		h := rr.Header()
		if h.Ttl != 0 {
			return &rcodeError{dns.RcodeFormatError, "prerequisite with a TTL"}
		}
		o, in := v.parseOwner(h.Name)
		if !in {
			return &rcodeError{dns.RcodeNotZone, "prerequisite " + h.Name + " outside the zone"}
		}
		switch h.Class {
		case dns.ClassANY:
			if h.Rdlength != 0 {
				return &rcodeError{dns.RcodeFormatError, "prerequisite of class ANY with data"}
			}
			if h.Rrtype == dns.TypeANY {
				if len(v.records(o, dns.TypeANY)) == 0 {
					return &rcodeError{dns.RcodeNameError, h.Name + " is not in use"}
				}
			} else if len(v.records(o, h.Rrtype)) == 0 {
				return &rcodeError{dns.RcodeNXRrset, h.Name + " " + dns.TypeToString[h.Rrtype] + " does not exist"}
			}
		case dns.ClassNONE:
			if h.Rdlength != 0 {
				return &rcodeError{dns.RcodeFormatError, "prerequisite of class NONE with data"}
			}
			if h.Rrtype == dns.TypeANY {
				if len(v.records(o, dns.TypeANY)) != 0 {
					return &rcodeError{dns.RcodeYXDomain, h.Name + " is in use"}
				}
			} else if len(v.records(o, h.Rrtype)) != 0 {
				return &rcodeError{dns.RcodeYXRrset, h.Name + " " + dns.TypeToString[h.Rrtype] + " exists"}
			}
		case dns.ClassINET:
			k := rrsetKey{dns.CanonicalName(h.Name), h.Rrtype}
			if _, ok := temp[k]; !ok {
				order = append(order, k)
			}
			temp[k] = append(temp[k], rr)
		default:
			return &rcodeError{dns.RcodeFormatError, "prerequisite of class " + dns.ClassToString[h.Class]}
		}
	}
	for _, k := range order {
		want := temp[k]
		o, _ := v.parseOwner(want[0].Header().Name)
		if !sameRRset(want, v.records(o, k.t)) {
			return &rcodeError{dns.RcodeNXRrset, k.name + " " + dns.TypeToString[k.t] + " differs"}
		}
	}
	return nil
}

// sameRRset compares two RRsets as sets, TTLs ignored (RFC 2136 section
// 3.2.3).
func sameRRset(a, b []dns.RR) bool {
	in := func(rr dns.RR, set []dns.RR) bool {
		for _, x := range set {
			if dns.IsDuplicate(rr, x) {
				return true
			}
		}
		return false
	}
	for _, rr := range a {
		if !in(rr, b) {
			return false
		}
	}
	for _, rr := range b {
		if !in(rr, a) {
			return false
		}
	}
	return true
}

// prescan checks the update section before anything is applied (RFC 2136
// section 3.4.1.3).
func (v *view) prescan(rrs []dns.RR) error {
	for _, rr := range rrs {
		h := rr.Header()
		if _, in := v.parseOwner(h.Name); !in {
			return &rcodeError{dns.RcodeNotZone, h.Name + " is outside the zone"}
		}
		meta := h.Rrtype == dns.TypeAXFR || h.Rrtype == dns.TypeIXFR || h.Rrtype == dns.TypeMAILA ||
			h.Rrtype == dns.TypeMAILB || h.Rrtype == dns.TypeOPT || h.Rrtype == dns.TypeTSIG
		switch h.Class {
		case dns.ClassINET:
			if meta || h.Rrtype == dns.TypeANY {
				return &rcodeError{dns.RcodeFormatError, "cannot add a record of type " + dns.TypeToString[h.Rrtype]}
			}
		case dns.ClassANY:
			if h.Ttl != 0 || h.Rdlength != 0 || meta {
				return &rcodeError{dns.RcodeFormatError, "an RRset delete (class ANY) has no TTL and no data"}
			}
		case dns.ClassNONE:
			if h.Ttl != 0 || meta || h.Rrtype == dns.TypeANY {
				return &rcodeError{dns.RcodeFormatError, "a record delete (class NONE) has no TTL and a type"}
			}
		default:
			return &rcodeError{dns.RcodeFormatError, "update of class " + dns.ClassToString[h.Class]}
		}
	}
	return nil
}

// apply makes one update record's change in the registry (RFC 2136
// section 3.4.2).
func (v *view) apply(rr dns.RR, u *updateLog) error {
	h := rr.Header()
	o, _ := v.parseOwner(h.Name)
	t := h.Rrtype
	what := h.Name + " " + dns.TypeToString[t]
	if t == dns.TypeMX || (o.kind == nameType || o.kind == nameServices) && t == dns.TypePTR {
		return refused("%s is derived from the registry's instances", what)
	}
	if o.kind == nameServices {
		return refused("%s: DNS-SD enumeration is derived from the registry's instances", what)
	}
	if o.kind == nameHost && h.Class != dns.ClassINET && (t == dns.TypeA || t == dns.TypeAAAA || t == dns.TypeANY) && v.derivedAddrs(o.host) {
		// Adding creates a host of that name, whose addresses the zone
		// shows with the service's; but the service's own cannot go.
		return refused("%s: the addresses of service %s are those of its instances; delete from _%s._tcp instead", what, o.host, o.host)
	}
	switch h.Class {
	case dns.ClassINET:
		return v.add(o, rr, u)
	case dns.ClassNONE:
		return v.deleteRR(o, rr, u)
	default:
		return v.deleteRRset(o, t, u)
	}
}

func (v *view) add(o owner, rr dns.RR, u *updateLog) error {
	what := o.name + " " + dns.TypeToString[rr.Header().Rrtype]
	switch rr := rr.(type) {
	case *dns.SOA:
		if o.kind == nameApex && !registry.SerialLess(v.tx.Serial(), rr.Serial) {
			u.ignored++ // RFC 2136 section 3.4.2.2: an older SOA is ignored
			return nil
		}
		return refused("%s: the SOA is derived from the registry", what)
	case *dns.NS:
		if o.kind == nameApex && v.z.IsNS(rr.Ns) {
			u.ignored++ // the record exists: a duplicate is not added twice
			return nil
		}
		return refused("%s: the zone's name servers are set by configuration (--ns): %s", what, strings.Join(v.z.NS(), " "))
	case *dns.SRV:
		host, err := v.relHost(rr.Target)
		if err != nil {
			return err
		}
		switch o.kind {
		case nameType:
			u.added++
			return v.addSRV(o, rr, host)
		case nameInstance:
			u.added++
			return v.addInstanceSRV(o, rr, host)
		}
	case *dns.TXT:
		if o.kind == nameInstance {
			inst, ok := v.tx.ByLabel(o.proto, o.service, o.label)
			if !ok {
				return refused("%s: no instance there; add its SRV first", what)
			}
			c := *inst
			for _, t := range txtStrings(rr.Txt) {
				c.TXT = c.TXT.Set(t)
			}
			u.added++
			_, err := v.tx.PutInstance(c)
			return err
		}
	case *dns.PTR:
		if o.kind == nameSubtype {
			inst, err := v.subtypeTarget(o, rr)
			if err != nil {
				return err
			}
			if slices.ContainsFunc(inst.Subtypes, func(s string) bool { return registry.SameName(s, o.subtype) }) {
				u.ignored++ // RFC 2136 section 3.4.2.2: a duplicate is not added
				return nil
			}
			c := *inst
			c.Subtypes = append(slices.Clip(inst.Subtypes), o.subtype)
			u.added++
			_, err = v.tx.PutInstance(c)
			return err
		}
	case *dns.A, *dns.AAAA:
		if o.kind == nameHost {
			addr, _ := netip.AddrFromSlice(ipOf(rr))
			if err := registry.CheckAddress(addr); err != nil {
				return refused("%s: %s: %v", what, addr, err)
			}
			hst := registry.Host{Name: o.host, TTL: rr.Header().Ttl}
			if old, ok := v.tx.Host(o.host); ok {
				hst.Addrs = slices.Clone(old.Addrs)
			}
			hst.Addrs = append(hst.Addrs, addr.Unmap())
			u.added++
			return v.tx.PutHost(hst)
		}
	}
	return refused("%s: no place for it in the registry", what)
}

// addSRV adds or updates the instance of _S._P at host:port.
func (v *view) addSRV(o owner, rr *dns.SRV, host string) error {
	for inst := range v.tx.Instances(o.proto, o.service) {
		if inst.Host == host && inst.Port == rr.Port {
			c := *inst
			c.Priority, c.Weight, c.TTL = rr.Priority, rr.Weight, rr.Hdr.Ttl
			_, err := v.tx.PutInstance(c)
			return err
		}
	}
	_, err := v.tx.Register(registry.Registration{Service: o.service, Proto: o.proto, Host: host,
		Port: new(int(rr.Port)), Priority: int(rr.Priority), Weight: int(rr.Weight), TTL: new(int(rr.Hdr.Ttl))})
	return err
}

// addInstanceSRV sets the one SRV of the DNS-SD instance at o.
func (v *view) addInstanceSRV(o owner, rr *dns.SRV, host string) error {
	if inst, ok := v.tx.ByLabel(o.proto, o.service, o.label); ok {
		c := *inst
		c.Host, c.Port, c.Priority, c.Weight, c.TTL = host, rr.Port, rr.Priority, rr.Weight, rr.Hdr.Ttl
		_, err := v.tx.PutInstance(c)
		return err
	}
	for inst := range v.tx.Instances(o.proto, o.service) {
		if inst.Host == host && inst.Port == rr.Port {
			return refused("%s SRV: %s:%d is already instance %q", o.name, host, rr.Port, inst.Label)
		}
	}
	_, err := v.tx.Register(registry.Registration{Service: o.service, Proto: o.proto, Instance: o.label, Host: host,
		Port: new(int(rr.Port)), Priority: int(rr.Priority), Weight: int(rr.Weight), TTL: new(int(rr.Hdr.Ttl))})
	return err
}

// subtypeTarget returns the instance a subtype's PTR points at: one of the
// subtype's type, which must exist.
func (v *view) subtypeTarget(o owner, rr *dns.PTR) (*registry.Instance, error) {
	t, in := v.parseOwner(rr.Ptr)
	if !in || t.kind != nameInstance || t.service != o.service || t.proto != o.proto {
		return nil, refused("%s PTR %s: a subtype's PTR points at an instance of _%s._%s", o.name, rr.Ptr, o.service, o.proto)
	}
	inst, ok := v.tx.ByLabel(t.proto, t.service, t.label)
	if !ok {
		return nil, refused("%s PTR %s: no instance there; add its SRV first", o.name, rr.Ptr)
	}
	return inst, nil
}

// withoutSubtype writes inst without the subtype sub, if it has it.
func (v *view) withoutSubtype(inst *registry.Instance, sub string, u *updateLog) error {
	subs := slices.DeleteFunc(slices.Clone(inst.Subtypes), func(s string) bool { return registry.SameName(s, sub) })
	if len(subs) == len(inst.Subtypes) {
		return nil
	}
	c := *inst
	c.Subtypes = subs
	u.removed++
	_, err := v.tx.PutInstance(c)
	return err
}

// deleteRR removes one record (class NONE, RFC 2136 section 3.4.2.4).
// Deleting a record that does not exist is not an error.
func (v *view) deleteRR(o owner, rr dns.RR, u *updateLog) error {
	switch rr := rr.(type) {
	case *dns.SOA, *dns.NS:
		if o.kind == nameApex {
			u.ignored++ // section 3.4.2.4: the SOA and the last NS stay
			return nil
		}
	case *dns.SRV:
		host, err := v.relHost(rr.Target)
		if err != nil {
			return nil // no instance targets a name outside the zone
		}
		var victims []string
		for _, inst := range v.instancesAt(o) {
			if inst.Host == host && inst.Port == rr.Port && inst.Priority == rr.Priority && inst.Weight == rr.Weight {
				victims = append(victims, inst.ID)
			}
		}
		return v.deleteInstances(victims, u)
	case *dns.TXT:
		if o.kind != nameInstance {
			return nil
		}
		inst, ok := v.tx.ByLabel(o.proto, o.service, o.label)
		if !ok {
			return nil
		}
		c := *inst
		for _, t := range txtStrings(rr.Txt) {
			c.TXT = c.TXT.Without(t)
		}
		if len(c.TXT) == len(inst.TXT) {
			return nil
		}
		u.removed++
		_, err := v.tx.PutInstance(c)
		return err
	case *dns.PTR:
		if o.kind != nameSubtype {
			return nil
		}
		inst, err := v.subtypeTarget(o, rr)
		if err != nil {
			return nil // no such instance: no such record to delete
		}
		return v.withoutSubtype(inst, o.subtype, u)
	case *dns.A, *dns.AAAA:
		if o.kind != nameHost {
			return nil
		}
		addr, _ := netip.AddrFromSlice(ipOf(rr))
		return v.removeAddrs(o.host, func(a netip.Addr) bool { return a == addr.Unmap() }, u)
	}
	return nil
}

// deleteRRset removes an RRset, or with TypeANY every RRset at the name
// (class ANY, RFC 2136 section 3.4.2.3).
func (v *view) deleteRRset(o owner, t uint16, u *updateLog) error {
	switch o.kind {
	case nameApex:
		// Only the SOA and NS live here, and they stay.
		if t == dns.TypeANY || t == dns.TypeSOA || t == dns.TypeNS {
			u.ignored++
		}
		return nil
	case nameType, nameInstance:
		var ids []string
		switch t {
		case dns.TypeSRV, dns.TypeANY:
			for _, inst := range v.instancesAt(o) {
				ids = append(ids, inst.ID)
			}
		case dns.TypeTXT:
			if inst, ok := v.tx.ByLabel(o.proto, o.service, o.label); ok && o.kind == nameInstance && len(inst.TXT) > 0 {
				c := *inst
				c.TXT = nil
				u.removed++
				_, err := v.tx.PutInstance(c)
				return err
			}
		}
		return v.deleteInstances(ids, u)
	case nameSubtype:
		if t != dns.TypePTR && t != dns.TypeANY {
			return nil
		}
		insts := slices.Collect(v.tx.Subtype(o.proto, o.service, o.subtype)) // before writing
		for _, inst := range insts {
			if err := v.withoutSubtype(inst, o.subtype, u); err != nil {
				return err
			}
		}
		return nil
	case nameHost:
		switch t {
		case dns.TypeA:
			return v.removeAddrs(o.host, netip.Addr.Is4, u)
		case dns.TypeAAAA:
			return v.removeAddrs(o.host, netip.Addr.Is6, u)
		case dns.TypeANY:
			return v.removeAddrs(o.host, func(netip.Addr) bool { return true }, u)
		}
	}
	return nil
}

// instancesAt returns the instances whose SRV lives at o.
func (v *view) instancesAt(o owner) []*registry.Instance {
	switch o.kind {
	case nameType:
		return slices.Collect(v.tx.Instances(o.proto, o.service))
	case nameInstance:
		if inst, ok := v.tx.ByLabel(o.proto, o.service, o.label); ok {
			return []*registry.Instance{inst}
		}
	}
	return nil
}

func (v *view) deleteInstances(ids []string, u *updateLog) error {
	for _, id := range ids {
		if err := v.tx.DeleteInstance(id); err != nil {
			return err
		}
		u.removed++
	}
	return nil
}

// removeAddrs removes host's addresses that match drop, and the host
// with its last address.
func (v *view) removeAddrs(host string, drop func(netip.Addr) bool, u *updateLog) error {
	old, ok := v.tx.Host(host)
	if !ok {
		return nil
	}
	keep := slices.DeleteFunc(slices.Clone(old.Addrs), drop)
	if len(keep) == len(old.Addrs) {
		return nil
	}
	u.removed += len(old.Addrs) - len(keep)
	if len(keep) == 0 {
		return v.tx.DeleteHost(host)
	}
	c := *old
	c.Addrs = keep
	return v.tx.PutHost(c)
}

func ipOf(rr dns.RR) net.IP {
	switch rr := rr.(type) {
	case *dns.A:
		return rr.A
	case *dns.AAAA:
		return rr.AAAA
	}
	return nil
}

// recentUpdates remembers the answers to recent signed updates by their
// digest (tsig.Digest), for as long as their signature is valid.
type recentUpdates struct {
	mu       sync.Mutex // guards the fields below
	byDigest map[string]*recentUpdate
	order    []string // oldest first, for expiry
}

type recentUpdate struct {
	done    chan struct{} // closed when rcode is set
	rcode   int
	expires time.Time
}

// maxRecent bounds the memory recentUpdates takes. Forgetting an answer
// early only costs a retransmission its NOERROR: the registry's mark
// still refuses it.
const maxRecent = 4096

// claim registers an update about to be applied, and returns its entry.
// first is false for a copy of an update seen before it expires: wait
// for the entry's answer instead of applying it again.
func (ru *recentUpdates) claim(digest string, expires time.Time) (e *recentUpdate, first bool) {
	now := time.Now()
	ru.mu.Lock()
	defer ru.mu.Unlock()
	if ru.byDigest == nil {
		ru.byDigest = map[string]*recentUpdate{}
	}
	for len(ru.order) > 0 {
		old := ru.byDigest[ru.order[0]]
		if len(ru.order) < maxRecent && now.Before(old.expires) {
			break
		}
		delete(ru.byDigest, ru.order[0])
		ru.order = ru.order[1:]
	}
	if e, ok := ru.byDigest[digest]; ok {
		return e, false
	}
	e = &recentUpdate{done: make(chan struct{}), expires: expires}
	ru.byDigest[digest] = e
	ru.order = append(ru.order, digest)
	return e, true
}

// finish records the answer to a claimed update.
func (e *recentUpdate) finish(rcode int) {
	e.rcode = rcode
	close(e.done)
}

// wait returns the answer to a claimed update, or SERVFAIL if it takes
// longer than a client waits.
func (e *recentUpdate) wait() int {
	select {
	case <-e.done:
		return e.rcode
	case <-time.After(5 * time.Second):
		return dns.RcodeServerFailure
	}
}
