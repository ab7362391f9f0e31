package main

import (
	"errors"
	"flag"
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"github.com/miekg/dns"

	"github.com/annuaire/annuaire/authority/zone"
	"github.com/annuaire/annuaire/registry"
)

// zoneFlags are the flags that shape the zones beyond --zone: their name
// servers, SOA timers and reverse networks. serve and export read the
// same ones, so that an export from a data directory is the zone served.
type zoneFlags struct {
	ns                              listFlag
	refresh, retry, expire, minimum secondsFlag
	reverse                         listFlag
}

func addZoneFlags(fs *flag.FlagSet) *zoneFlags {
	f := &zoneFlags{}
	fs.Var(&f.ns, "ns", "name server `NAME=IP` of every zone, NAME relative to --zone or fully qualified; IP only inside the zone (repeatable; default: ns, at the DNS address)")
	for _, t := range []struct {
		v    *secondsFlag
		name string
		def  uint32
	}{
		{&f.refresh, "refresh", zone.DefaultTimers.Refresh}, {&f.retry, "retry", zone.DefaultTimers.Retry},
		{&f.expire, "expire", zone.DefaultTimers.Expire}, {&f.minimum, "minimum", zone.DefaultTimers.Minimum},
	} {
		fs.Var(t.v, "soa-"+t.name, fmt.Sprintf("SOA %s `time`: seconds, or 5m, 1h30m, 1d, 2w (default %d)", t.name, t.def))
	}
	fs.Var(&f.reverse, "reverse", "`CIDR` whose reverse zone is served, on an octet or nibble boundary (repeatable; default: the /24 or /64 of every registered address)")
	return f
}

// An nsHost is a name server inside the zone and its addresses, which
// serve registers as a host.
type nsHost struct {
	name  string // relative to the zone
	addrs []netip.Addr
}

// config returns the zone configuration of origin the flags describe, and
// the name servers inside it that serve registers.
func (f *zoneFlags) config(origin string) (zone.Config, []nsHost, error) {
	c := zone.Config{
		Origin: origin,
		SOA:    zone.Timers{Refresh: uint32(f.refresh), Retry: uint32(f.retry), Expire: uint32(f.expire), Minimum: uint32(f.minimum)},
	}
	origin = registry.FoldName(dns.Fqdn(origin))
	var hosts []nsHost
	for _, s := range f.ns {
		name, ip, hasIP := strings.Cut(s, "=")
		if name == "" {
			return c, nil, fmt.Errorf("--ns %q: want NAME=IP", s)
		}
		abs := registry.FoldName(dns.Fqdn(name))
		if !dns.IsFqdn(name) {
			abs = registry.FoldName(name + "." + origin)
		}
		if _, ok := dns.IsDomainName(abs); !ok {
			return c, nil, fmt.Errorf("--ns %q: %q is not a domain name", s, name)
		}
		rel, inZone := strings.CutSuffix(abs, "."+origin)
		switch {
		case inZone && !hasIP:
			return c, nil, fmt.Errorf("--ns %q: %s is inside %s and needs its address: --ns %s=IP", s, abs, origin, name)
		case !inZone && hasIP:
			return c, nil, fmt.Errorf("--ns %q: %s is outside %s, whose records cannot give it an address: --ns %s", s, abs, origin, name)
		}
		if !containsFold(c.NS, abs) {
			c.NS = append(c.NS, abs)
		}
		if !inZone {
			continue
		}
		a, err := netip.ParseAddr(ip)
		if err != nil {
			return c, nil, fmt.Errorf("--ns %q: %q is not an IP address", s, ip)
		}
		i := 0
		for i < len(hosts) && hosts[i].name != rel {
			i++
		}
		if i == len(hosts) {
			hosts = append(hosts, nsHost{name: rel})
		}
		hosts[i].addrs = append(hosts[i].addrs, a.Unmap())
	}
	for _, s := range f.reverse {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return c, nil, fmt.Errorf("--reverse %q: %v", s, err)
		}
		c.Reverse = append(c.Reverse, p)
	}
	if err := c.Check(); err != nil {
		return c, nil, err
	}
	return c, hosts, nil
}

func containsFold(names []string, name string) bool {
	for _, n := range names {
		if registry.SameName(n, name) {
			return true
		}
	}
	return false
}

// secondsFlag is a duration in whole seconds, written as a number of
// seconds or with the units of zone files (RFC 1035 master files as BIND
// and Knot read them): 300, 5m, 1h30m, 1d, 2w.
type secondsFlag uint32

func (s *secondsFlag) String() string {
	if s == nil || *s == 0 {
		return ""
	}
	return strconv.FormatUint(uint64(*s), 10)
}

func (s *secondsFlag) Set(v string) error {
	n, err := parseSeconds(v)
	if err != nil {
		return err
	}
	*s = secondsFlag(n)
	return nil
}

func parseSeconds(v string) (uint32, error) {
	if n, err := strconv.ParseUint(v, 10, 32); err == nil {
		if n == 0 {
			return 0, errors.New("must be above 0")
		}
		return uint32(n), nil
	}
	units := map[byte]uint64{'s': 1, 'm': 60, 'h': 3600, 'd': 86400, 'w': 604800}
	var total uint64
	rest := strings.ToLower(v)
	for rest != "" {
		i := 0
		for i < len(rest) && '0' <= rest[i] && rest[i] <= '9' {
			i++
		}
		if i == 0 || i == len(rest) || units[rest[i]] == 0 {
			return 0, fmt.Errorf("%q: want seconds, or numbers with units s, m, h, d, w (1h30m)", v)
		}
		n, err := strconv.ParseUint(rest[:i], 10, 32)
		if err != nil {
			return 0, fmt.Errorf("%q: %v", v, err)
		}
		total += n * units[rest[i]]
		if total > 1<<31-1 {
			return 0, fmt.Errorf("%q is above 2147483647 seconds (RFC 2181 section 8)", v)
		}
		rest = rest[i+1:]
	}
	if total == 0 {
		return 0, fmt.Errorf("%q: must be above 0", v)
	}
	return uint32(total), nil
}
