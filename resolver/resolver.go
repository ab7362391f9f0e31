package resolver

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/miekg/dns"
	"golang.org/x/sync/singleflight"

	"github.com/annuaire/annuaire/registry"
)

// DefaultZone is the zone names are looked up in when Resolver.Zone is "".
const DefaultZone = "svc.internal."

// A Resolver finds services by name and connects to them. Its zero value
// asks the system's resolvers for names in DefaultZone. A Resolver is safe
// for concurrent use; its fields must not change after its first use, nor
// may it be copied then (it holds its cache).
type Resolver struct {
	// Server is the DNS server asked, as host:port. "" means the
	// nameservers of /etc/resolv.conf, tried in order: that works when
	// Zone is delegated to annuaire from the DNS the machine uses.
	Server string

	// Zone is the zone service names live in; "" means DefaultZone.
	Zone string

	// Timeout bounds each DNS exchange with one server (UDP, then TCP
	// when the UDP answer was truncated); zero means 2 seconds.
	Timeout time.Duration

	// DialTimeout bounds each connection attempt, so that a dead
	// candidate costs at most this before the next is tried; zero means
	// 3 seconds.
	DialTimeout time.Duration

	// FallbackDelay is how long a connection attempt to a host's IPv6
	// address runs before one to its IPv4 address races it (RFC 8305
	// section 5's Connection Attempt Delay); zero means 250ms.
	FallbackDelay time.Duration

	// NoCache turns the cache off: every lookup asks the server.
	// Concurrent identical questions are still sent once.
	NoCache bool

	// Catalog maps service names and aliases to well-known ports; nil
	// means registry.DefaultCatalog().
	Catalog *registry.Catalog

	once    sync.Once
	zone    string
	servers []string
	catalog *registry.Catalog

	cache  cache
	flight singleflight.Group

	// intN returns a uniform number in [0, n); nil means math/rand/v2.
	// Tests set it for reproducible SRV ordering.
	intN func(n int) int
}

// Lookup resolves name with a zero Resolver: see Resolver.Lookup.
func Lookup(ctx context.Context, name string) (*Chain, error) {
	return new(Resolver).Lookup(ctx, name)
}

// Dial resolves name with a zero Resolver and connects: see Resolver.Dial.
// A program that dials more than once should keep a Resolver, for its cache.
func Dial(ctx context.Context, network, name string) (net.Conn, error) {
	return new(Resolver).Dial(ctx, network, name)
}

func (r *Resolver) init() {
	r.once.Do(func() {
		r.zone = dns.CanonicalName(r.Zone)
		if r.Zone == "" {
			r.zone = DefaultZone
		}
		r.catalog = r.Catalog
		if r.catalog == nil {
			r.catalog = registry.DefaultCatalog()
		}
		if r.Server != "" {
			r.servers = []string{r.Server}
			return
		}
		conf, err := dns.ClientConfigFromFile("/etc/resolv.conf")
		if err != nil || len(conf.Servers) == 0 {
			// As Go's resolver does without a resolv.conf.
			r.servers = []string{"127.0.0.1:53", "[::1]:53"}
			return
		}
		for _, s := range conf.Servers {
			r.servers = append(r.servers, net.JoinHostPort(s, conf.Port))
		}
	})
}

func (r *Resolver) timeout() time.Duration {
	if r.Timeout > 0 {
		return r.Timeout
	}
	return 2 * time.Second
}

func (r *Resolver) rand(n int) int {
	if r.intN != nil {
		return r.intN(n)
	}
	return rand.IntN(n)
}

// Lookup resolves name to the ordered list of address:port candidates and
// returns the chain of steps that found them. name is one of:
//
//   - a service name, "echo", optionally with its protocol, "echo/udp"
//     (tcp otherwise); catalog aliases are normalised: mail → smtp;
//   - a name in the zone, "echo.svc.internal", which is the same;
//   - host:port, where host is a service name or a name in the zone: the
//     port replaces the catalog's well-known port when no SRV record gives
//     one (see DialContext);
//   - an IP address with a port, or host:port outside the zone: nothing to
//     resolve here, the candidate is the address itself.
//
// The chain for a service name S: SRV _S._proto.zone (RFC 2782); for
// smtp without SRV, MX of the zone then its implicit MX (RFC 5321 section
// 5.1); otherwise A and AAAA of S.zone with the catalog's port. When it
// fails the error is a *LookupError naming the steps tried.
func (r *Resolver) Lookup(ctx context.Context, name string) (*Chain, error) {
	return r.lookup(ctx, "tcp", name)
}

func (r *Resolver) lookup(ctx context.Context, network, name string) (*Chain, error) {
	r.init()
	c := &Chain{Name: name, Proto: "tcp", Zone: r.zone, Steps: make([]Step, 0, 4), Candidates: []Candidate{}}
	if strings.HasPrefix(network, "udp") {
		c.Proto = "udp"
	}
	fail := func(step, server string, err error) (*Chain, error) {
		e := &LookupError{Name: name, Step: step, Server: server, Err: err, Chain: c}
		c.Error = e.Error()
		return c, e
	}

	host, portStr, hasPort := name, "", false
	// Testing for ":" first spares the warm path SplitHostPort's error.
	if strings.Contains(name, ":") {
		if h, p, err := net.SplitHostPort(name); err == nil {
			host, portStr, hasPort = h, p, true
		}
	} else if h, proto, ok := strings.Cut(name, "/"); ok && (proto == "tcp" || proto == "udp") {
		host, c.Proto = h, proto
	}
	var port uint16
	if hasPort {
		p, err := strconv.ParseUint(portStr, 10, 16)
		if err != nil {
			// Named ports ("echo.svc.internal:http") are not worth the confusion.
			return fail("normalize", "", fmt.Errorf("bad port %q: %w", portStr, ErrNoSuchService))
		}
		port = uint16(p)
	}

	// IP literals and names outside the zone: straight to connect.
	ip, err := netip.Addr{}, errors.ErrUnsupported
	if looksLikeIP(host) {
		ip, err = netip.ParseAddr(host)
	}
	if err == nil || !r.inZone(host) {
		if port == 0 {
			return fail("normalize", "", fmt.Errorf("%s is not a service name in %s, and no port was given: %w", host, r.zone, ErrNoSuchService))
		}
		cd := Candidate{Host: host, Port: port}
		why := "a name outside " + r.zone + ": the system resolves it at connect"
		if err == nil {
			cd.Host, cd.Address = "", ip.Unmap().String()
			why = "an IP address and a port: nothing to resolve"
		}
		if wk, ok := r.catalog.ByPort(port, c.Proto); ok {
			c.Service = wk.Name // what the port conventionally picks
		}
		c.Steps = append(c.Steps, Step{Step: "normalize", Question: name, Answers: []string{why}, Skipped: why})
		c.Candidates = append(c.Candidates, cd)
		return c, nil
	}

	rel := r.relative(host)
	wk, known := r.catalog.Lookup(rel)
	if known && !strings.Contains(rel, ".") {
		c.Service = wk.Name
	} else {
		known = false
		c.Service = rel
	}
	c.Steps = append(c.Steps, normalizeStep(name, rel, c, wk, known, port))

	// 1. SRV, when the name can be a service label (RFC 6335 section 5.1).
	if isServiceLabel(c.Service) {
		a, st := r.query(ctx, "srv", "_"+c.Service+"._"+c.Proto+"."+r.zone, dns.TypeSRV)
		c.Steps = append(c.Steps, st)
		if a.err != nil {
			return fail("srv", a.server, a.err)
		}
		if len(a.records) > 0 {
			return r.fromSRV(ctx, c, a, fail)
		}
	}

	// 2. Mail without SRV: MX of the zone (RFC 5321 section 5.1).
	if c.Service == "smtp" && c.Proto == "tcp" {
		mxPort := wk.Port
		if port != 0 {
			mxPort = port
		}
		a, st := r.query(ctx, "mx", r.zone, dns.TypeMX)
		c.Steps = append(c.Steps, st)
		if a.err != nil {
			return fail("mx", a.server, a.err)
		}
		if len(a.records) > 0 {
			return r.fromMX(ctx, c, a, mxPort, fail)
		}
		// No MX: the domain itself is the implicit MX, preference 0.
		addrs, err := r.addresses(ctx, c, r.zone, nil)
		if err != nil {
			return fail("address", err.server, err)
		}
		for _, ip := range addrs {
			c.Candidates = append(c.Candidates, Candidate{Host: r.zone, Address: ip, Port: mxPort})
		}
		if len(c.Candidates) > 0 {
			return c, nil
		}
	}

	// 3. A and AAAA of the name, with the catalog's port or the caller's.
	target := rel + "." + r.zone
	addrs, aerr := r.addresses(ctx, c, target, nil)
	if aerr != nil {
		return fail("address", aerr.server, aerr)
	}
	wkPort := port
	if wkPort == 0 && known {
		wkPort = wk.Port
		c.Steps = append(c.Steps, Step{
			Step: "well-known", Question: wk.Name + "/" + c.Proto + " in the IANA catalog",
			Answers: []string{strconv.Itoa(int(wk.Port)) + "/" + c.Proto}, Skipped: "no query: the catalog is built in",
		})
	}
	switch {
	case len(addrs) == 0 && wkPort != 0 && known && port == 0:
		return fail("address", r.servers[0], fmt.Errorf("well-known port %d/%s, but %w", wkPort, c.Proto, ErrNoHost))
	case len(addrs) == 0 && wkPort != 0:
		return fail("address", r.servers[0], fmt.Errorf("port %d given, but %w", wkPort, ErrNoHost))
	case len(addrs) == 0:
		return fail("address", r.servers[0], fmt.Errorf("not a well-known service either: %w", ErrNoSuchService))
	case wkPort == 0:
		return fail("well-known", "", fmt.Errorf("%s has an address but no port: no SRV record and not a well-known service: %w", target, ErrNoSuchService))
	}
	for _, ip := range addrs {
		c.Candidates = append(c.Candidates, Candidate{Host: target, Address: ip, Port: wkPort})
	}
	return c, nil
}

func normalizeStep(name, rel string, c *Chain, wk registry.WellKnown, known bool, port uint16) Step {
	what := "service " + c.Service + " over " + c.Proto + " in zone " + c.Zone
	if known && rel != wk.Name {
		what = rel + " is an alias of " + wk.Name + "; " + what
	}
	if port != 0 {
		what += "; port " + strconv.Itoa(int(port)) + " given, used when no SRV record gives one"
	}
	return Step{Step: "normalize", Question: name, Answers: []string{what}, Skipped: "no query: the name is read as typed"}
}

// fromSRV turns an SRV answer into candidates: targets in RFC 2782 order,
// each with its addresses, from the answer's additional section when the
// server put them there.
func (r *Resolver) fromSRV(ctx context.Context, c *Chain, a *answer, fail func(string, string, error) (*Chain, error)) (*Chain, error) {
	srvs := make([]*dns.SRV, 0, len(a.records))
	for _, rr := range a.records {
		// RFC 2782: a target of "." means "decidedly not available";
		// alone it ends the chain, among others it is skipped.
		if s := rr.(*dns.SRV); s.Target != "." {
			srvs = append(srvs, s)
		}
	}
	if len(srvs) == 0 {
		return fail("srv", a.server, fmt.Errorf("target \".\": %w", ErrNotAvailable))
	}
	var lastErr *stepError
	seen := make(map[string][]string, len(srvs)) // a host behind several SRV records is asked once
	for _, s := range orderSRV(srvs, r.rand) {
		addrs, ok := seen[strings.ToLower(s.Target)]
		if !ok {
			var err *stepError
			addrs, err = r.addresses(ctx, c, s.Target, a.extra)
			if err != nil {
				lastErr = err
				continue
			}
			seen[strings.ToLower(s.Target)] = addrs
		}
		for _, ip := range addrs {
			c.Candidates = append(c.Candidates, Candidate{Host: s.Target, Address: ip, Port: s.Port, Priority: s.Priority, Weight: s.Weight})
		}
	}
	if len(c.Candidates) == 0 {
		if lastErr != nil {
			return fail("address", lastErr.server, lastErr)
		}
		return fail("address", a.server, fmt.Errorf("SRV names its targets, but %w", ErrNoHost))
	}
	return c, nil
}

func (r *Resolver) fromMX(ctx context.Context, c *Chain, a *answer, port uint16, fail func(string, string, error) (*Chain, error)) (*Chain, error) {
	mxs := make([]*dns.MX, 0, len(a.records))
	for _, rr := range a.records {
		if m := rr.(*dns.MX); m.Mx != "." {
			mxs = append(mxs, m)
		}
	}
	if len(mxs) == 0 {
		return fail("mx", a.server, fmt.Errorf("null MX (RFC 7505): %w", ErrNotAvailable))
	}
	var lastErr *stepError
	for _, m := range orderMX(mxs, r.rand) {
		addrs, err := r.addresses(ctx, c, m.Mx, a.extra)
		if err != nil {
			lastErr = err
			continue
		}
		for _, ip := range addrs {
			c.Candidates = append(c.Candidates, Candidate{Host: m.Mx, Address: ip, Port: port, Priority: m.Preference})
		}
	}
	if len(c.Candidates) == 0 {
		if lastErr != nil {
			return fail("address", lastErr.server, lastErr)
		}
		return fail("address", a.server, fmt.Errorf("MX names mail hosts, but %w", ErrNoHost))
	}
	return c, nil
}

// A stepError is a failed address step, with the server that failed it.
type stepError struct {
	server string
	err    error
}

func (e *stepError) Error() string { return e.err.Error() }
func (e *stepError) Unwrap() error { return e.err }

// addresses returns host's IPv6 then IPv4 addresses, from extra (an
// answer's additional section) when it has any for host, else by asking
// AAAA and A, both at once. It fails only when the server could not be
// asked; a host without addresses gives none.
func (r *Resolver) addresses(ctx context.Context, c *Chain, host string, extra []hostAddrs) ([]string, *stepError) {
	for _, h := range extra {
		if !strings.EqualFold(h.name, host) {
			continue
		}
		const why = "no query: the address came in the answer's additional section"
		if len(h.textAAAA) > 0 {
			c.Steps = append(c.Steps, Step{Step: "address", Question: host + " AAAA", Answers: h.textAAAA, Rcode: "NOERROR", Skipped: why})
		}
		if len(h.textA) > 0 {
			c.Steps = append(c.Steps, Step{Step: "address", Question: host + " A", Answers: h.textA, Rcode: "NOERROR", Skipped: why})
		}
		return h.addrs, nil
	}

	// Ask A and AAAA at once, unless both are cached.
	var a4, a6 *answer
	var s4, s6 Step
	if !r.NoCache && r.cached(host, dns.TypeA) && r.cached(host, dns.TypeAAAA) {
		a4, s4 = r.query(ctx, "address", host, dns.TypeA)
		a6, s6 = r.query(ctx, "address", host, dns.TypeAAAA)
	} else {
		done := make(chan struct{})
		go func() {
			defer close(done)
			a6, s6 = r.query(ctx, "address", host, dns.TypeAAAA)
		}()
		a4, s4 = r.query(ctx, "address", host, dns.TypeA)
		<-done
	}
	c.Steps = append(c.Steps, s4)
	if a6.err == nil && len(a6.records) > 0 || a4.err != nil || a6.err != nil {
		c.Steps = append(c.Steps, s6) // a NODATA AAAA is noise for the reader
	}
	var v6, v4 []string
	for _, rr := range a6.records {
		v6 = append(v6, rr.(*dns.AAAA).AAAA.String())
	}
	for _, rr := range a4.records {
		v4 = append(v4, rr.(*dns.A).A.String())
	}
	if len(v6)+len(v4) == 0 {
		for _, a := range []*answer{a4, a6} {
			if a.err != nil {
				return nil, &stepError{a.server, a.err}
			}
		}
	}
	return append(v6, v4...), nil
}

// looksLikeIP is a cheap test before netip.ParseAddr, whose error for
// every service name would be an allocation on the warm path.
func looksLikeIP(s string) bool {
	return s != "" && (s[0] >= '0' && s[0] <= '9' || strings.Contains(s, ":"))
}

func (r *Resolver) cached(name string, qtype uint16) bool {
	return r.cache.get(qkey{strings.ToLower(name), qtype}, time.Now()) != nil
}

// inZone reports whether host is read as a service name: a single label
// ("echo") or a name below the zone ("echo.svc.internal.").
func (r *Resolver) inZone(host string) bool {
	h := strings.TrimSuffix(host, ".")
	return !strings.Contains(h, ".") || dns.IsSubDomain(r.zone, dns.Fqdn(h)) && !strings.EqualFold(dns.Fqdn(h), r.zone)
}

// relative returns host relative to the zone, lowercased: "Echo.svc.internal." → "echo".
func (r *Resolver) relative(host string) string {
	h := strings.ToLower(strings.TrimSuffix(host, "."))
	return strings.TrimSuffix(h, "."+strings.TrimSuffix(r.zone, "."))
}

// isServiceLabel reports whether s can be the _Service label of an SRV
// name: letters, digits and hyphens, as RFC 6335 section 5.1 asks (we
// allow up to 63 characters where it says 15, as some sites do).
func isServiceLabel(s string) bool {
	if s == "" || len(s) > 63 || s[0] == '-' || s[len(s)-1] == '-' {
		return false
	}
	for _, ch := range s {
		if !(ch >= 'a' && ch <= 'z' || ch >= '0' && ch <= '9' || ch == '-') {
			return false
		}
	}
	return true
}
