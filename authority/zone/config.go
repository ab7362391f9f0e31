package zone

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/miekg/dns"

	"github.com/annuaire/annuaire/registry"
)

// soaTTL is the TTL of the SOA and NS records, and of the DNS-SD browse
// domains: they change only with the configuration (and the serial).
const soaTTL = 60

// Timers are the SOA's timers (RFC 1035 section 3.3.13), in seconds.
type Timers struct {
	Refresh, Retry, Expire, Minimum uint32
}

// DefaultTimers are the timers of a directory that changes often: its
// instances come, go and fail their checks.
var DefaultTimers = Timers{
	// Refresh: secondaries get a NOTIFY (RFC 1996) at every change; the
	// timer is the fallback when one is lost, so five minutes, not hours.
	Refresh: 300,
	Retry:   60,
	// Expire: a secondary that lost its primary for a day stops answering
	// rather than hand out day-old health; RFC 1912 section 2.2's two to
	// four weeks suit zones that change by hand.
	Expire: 86400,
	// Minimum, the negative-caching TTL (RFC 2308 section 4): as short as
	// registry.DefaultTTL, so that a service registered just after a
	// client asked for it is found within seconds; RFC 1912's hours would
	// hide it for hours.
	Minimum: registry.DefaultTTL,
}

// Config is what a Zone is made of. The zero value is the default zone:
// svc.internal., its name server ns.svc.internal., the default timers and
// the reverse zone of each registered address's network.
type Config struct {
	// Origin is the forward zone's name; "" means registry.DefaultZone.
	Origin string
	// NS are the name servers of every zone held, each fully qualified
	// or relative to Origin; nil means "ns". The first is the SOA's
	// MNAME. The addresses of those inside Origin are registry hosts,
	// which the caller registers.
	NS []string
	// SOA are the timers of every zone held; a zero field means its
	// DefaultTimers value.
	SOA Timers
	// Reverse lists the networks whose reverse zones are held, on octet
	// (IPv4) or nibble (IPv6) boundaries; nil means registry.ReverseNet
	// of every registered address: its /24 or /64.
	Reverse []netip.Prefix
}

// Check reports the first thing wrong with c, if any, naming the field
// as a command line would: an NS name, a timer, a reverse network.
func (c Config) Check() error {
	origin := c.Origin
	if origin == "" {
		origin = registry.DefaultZone
	}
	if _, ok := dns.IsDomainName(origin); !ok || dns.Fqdn(origin) == "." {
		return fmt.Errorf("zone %q is not a domain name", origin)
	}
	for _, ns := range c.NS {
		if _, ok := dns.IsDomainName(ns); !ok || dns.Fqdn(ns) == "." {
			return fmt.Errorf("name server %q is not a domain name", ns)
		}
	}
	if err := c.SOA.withDefaults().check(); err != nil {
		return err
	}
	for i, p := range c.Reverse {
		if err := CheckReverse(p); err != nil {
			return err
		}
		for _, q := range c.Reverse[:i] {
			if p.Overlaps(q) {
				return fmt.Errorf("reverse networks %s and %s overlap", q, p)
			}
		}
	}
	return nil
}

func (t Timers) withDefaults() Timers {
	for _, f := range []struct{ v, def *uint32 }{
		{&t.Refresh, &DefaultTimers.Refresh}, {&t.Retry, &DefaultTimers.Retry},
		{&t.Expire, &DefaultTimers.Expire}, {&t.Minimum, &DefaultTimers.Minimum},
	} {
		if *f.v == 0 {
			*f.v = *f.def
		}
	}
	return t
}

// check holds timers to what secondaries and resolvers read them as: TTL
// like values of at most 2^31-1 (RFC 2181 section 8), and an expire that
// outlasts a refresh and a retry, or a secondary would drop the zone
// before it even tried again (RFC 1912 section 2.2).
func (t Timers) check() error {
	for _, f := range []struct {
		name string
		v    uint32
	}{{"refresh", t.Refresh}, {"retry", t.Retry}, {"expire", t.Expire}, {"minimum", t.Minimum}} {
		if f.v > 1<<31-1 {
			return fmt.Errorf("SOA %s %d is above 2147483647 (RFC 2181 section 8)", f.name, f.v)
		}
	}
	if t.Expire <= t.Refresh || t.Expire <= t.Retry {
		return fmt.Errorf("SOA expire %d must be above refresh %d and retry %d", t.Expire, t.Refresh, t.Retry)
	}
	return nil
}

// CheckReverse reports whether p can be a reverse zone: a network on an
// octet boundary under in-addr.arpa, or a nibble boundary under ip6.arpa
// (RFC 2317's classless delegation is not done).
func CheckReverse(p netip.Prefix) error {
	switch {
	case !p.IsValid():
		return errors.New("reverse network: not a CIDR")
	case p != p.Masked():
		return fmt.Errorf("reverse network %s has host bits set: %s?", p, p.Masked())
	case p.Addr().Is4() && (p.Bits()%8 != 0 || p.Bits() == 0):
		return fmt.Errorf("reverse network %s: IPv4 reverse zones are /8, /16, /24 or /32 (RFC 2317 classless zones are not done)", p)
	case p.Addr().Is6() && (p.Bits()%4 != 0 || p.Bits() == 0):
		return fmt.Errorf("reverse network %s: IPv6 reverse zones end on a nibble, a multiple of 4 bits", p)
	}
	return nil
}

// A Zone is what answers are computed from besides the snapshot: the
// configuration of the forward zone and of the reverse zones that go with
// it, normalised once. It is immutable.
type Zone struct {
	origin  string   // lowercased and fully qualified: "svc.internal."
	labels  []string // origin's labels, unescaped and lowercased
	ns      []string // the name servers, fully qualified and lowercased
	timers  Timers
	reverse []netip.Prefix // nil: each registered address's registry.ReverseNet
	none    bool           // the configuration is invalid: no zone is held
}

// New returns the zones c describes. A c that Check refuses gives zones
// that hold nothing: every query is then REFUSED, which is what a
// misconfigured server should say.
func New(c Config) *Zone {
	origin := c.Origin
	if origin == "" {
		origin = registry.DefaultZone
	}
	origin = dns.CanonicalName(origin)
	z := &Zone{origin: origin, timers: c.SOA.withDefaults()}
	labels, ok := rawLabels(origin)
	if !ok || c.Check() != nil {
		// No question has this label.
		labels = []string{"\x00invalid"}
		z.reverse = []netip.Prefix{}
		z.none = true
	}
	for i := range labels {
		labels[i] = registry.FoldName(labels[i])
	}
	z.labels = labels
	ns := c.NS
	if len(ns) == 0 {
		ns = []string{"ns"}
	}
	for _, n := range ns {
		if !dns.IsFqdn(n) {
			n = z.abs(strings.TrimSuffix(n, "."))
		}
		if n = registry.FoldName(dns.Fqdn(n)); !slices.Contains(z.ns, n) {
			z.ns = append(z.ns, n)
		}
	}
	if c.Reverse != nil && z.reverse == nil {
		z.reverse = make([]netip.Prefix, len(c.Reverse))
		for i, p := range c.Reverse {
			z.reverse[i] = p.Masked()
		}
	}
	return z
}

// Origin is the forward zone's name, lowercased and fully qualified:
// "svc.internal.".
func (z *Zone) Origin() string { return z.origin }

// NS returns the fully qualified names of the name servers, the SOA's
// MNAME first.
func (z *Zone) NS() []string { return slices.Clone(z.ns) }

// IsNS reports whether name is one of the name servers.
func (z *Zone) IsNS(name string) bool {
	return slices.Contains(z.ns, registry.FoldName(dns.Fqdn(name)))
}

// Timers returns the SOA timers of every zone held.
func (z *Zone) Timers() Timers { return z.timers }

// Abs returns the fully qualified name of a name relative to the zone.
func (z *Zone) Abs(rel string) string { return z.abs(rel) }

// abs returns the fully qualified name of a name relative to the zone.
func (z *Zone) abs(rel string) string { return rel + "." + z.origin }

// soa is the SOA record of the zone at owner with the given serial.
func (z *Zone) soa(owner string, serial, ttl uint32) *dns.SOA {
	return &dns.SOA{
		Hdr:     dns.RR_Header{Name: owner, Rrtype: dns.TypeSOA, Class: dns.ClassINET, Ttl: ttl},
		Ns:      z.ns[0],
		Mbox:    z.abs("hostmaster"),
		Serial:  serial,
		Refresh: z.timers.Refresh,
		Retry:   z.timers.Retry,
		Expire:  z.timers.Expire,
		Minttl:  z.timers.Minimum,
	}
}

// negativeTTL is the TTL of the SOA in the authority section of NXDOMAIN
// and NODATA answers: min(SOA TTL, SOA MINIMUM), RFC 2308 section 3.
func (z *Zone) negativeTTL() uint32 { return min(soaTTL, z.timers.Minimum) }

// nsRecords is the NS RRset of a zone apex at owner; the name servers
// inside the forward zone go to add, whose addresses are registry hosts.
func (z *Zone) nsRecords(owner string, add *additions) []dns.RR {
	rrs := make([]dns.RR, 0, len(z.ns))
	for _, n := range z.ns {
		rrs = append(rrs, &dns.NS{Hdr: dns.RR_Header{Name: owner, Rrtype: dns.TypeNS, Class: dns.ClassINET, Ttl: soaTTL}, Ns: n})
		if rel, ok := z.Relative(n); ok {
			if h, ok := hostName(rel); ok {
				add.host(h)
			}
		}
	}
	return rrs
}
