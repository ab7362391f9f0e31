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
const DefaultZone = registry.DefaultZone

// Local is the DNS address of an annuaire on this machine with its
// defaults (`annuaire serve` listens there): a Resolver asks it with
//
//	r := &resolver.Resolver{Server: resolver.Local}
const Local = "127.0.0.1:1053"

// A Resolver finds services by name and connects to them. Its zero value
// asks the system's resolvers (the nameservers of /etc/resolv.conf, as
// net's resolver does) for names in DefaultZone: that finds annuaire's
// services when the machine's DNS delegates the zone to it. To ask the
// local annuaire directly, set Server to Local. A Resolver is safe for
// concurrent use; its fields must not change after its first use, nor may
// it be copied then (it holds its cache).
type Resolver struct {
	// Server is the DNS server asked, as host:port, such as Local. ""
	// means the nameservers of /etc/resolv.conf, tried in order
	// (127.0.0.1:53 and [::1]:53 without one, as Go's resolver does).
	Server string

	// Zone is the zone service names live in; "" means DefaultZone.
	Zone string

	// Timeout bounds each DNS exchange with one server (UDP, then TCP
	// when the UDP answer was truncated); zero means 2 seconds.
	Timeout time.Duration

	// DialTimeout bounds each connection attempt, so that a dead
	// candidate costs at most this; zero means 3 seconds.
	DialTimeout time.Duration

	// FallbackDelay is RFC 8305 section 5's Connection Attempt Delay:
	// while an attempt to connect runs, the next address is tried this
	// long after it started, without waiting for it to fail. Zero means
	// 250 ms; values are kept within the RFC's 100 ms to 2 s.
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
	// dialFunc replaces net.Dialer for connection attempts; tests set it
	// to script a race.
	dialFunc func(ctx context.Context, network string, raddr netip.AddrPort) (net.Conn, error)
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
		r.zone = strings.ToLower(dns.CanonicalName(r.Zone))
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
//   - the service's SRV name, "_echo._udp" or "_echo._udp.svc.internal."
//     as dig shows it, which is "echo/udp";
//   - host:port, where host is a service name or a name in the zone: the
//     port replaces the catalog's well-known port when no SRV record gives
//     one (see DialContext);
//   - a mail address, "prof@example.org" or "@example.org": where mail
//     for that domain goes (RFC 5321 section 5.1);
//   - an IP address with a port, or host:port outside the zone: nothing to
//     resolve here, the candidate is the address itself.
//
// The chain for a service name S: SRV _S._proto.zone (RFC 2782), else A
// and AAAA of S.zone with the catalog's port. Mail (smtp, its alias mail,
// or an address in the zone) follows annuaire's convention inside its own
// zone: _smtp._tcp SRV first, because an MX record cannot carry a port
// and annuaire's receiver may listen elsewhere than on 25; then MX, then
// the zone's own address (the implicit MX); nothing else. Mail for
// another domain is RFC 5321 alone: MX, then the domain's own address.
// Addresses from an answer's additional section are used only for hosts
// inside the zone that answered (RFC 2181 section 5.4.1); others are
// asked for. When the lookup fails the error is a *LookupError naming the
// steps tried.
func (r *Resolver) Lookup(ctx context.Context, name string) (*Chain, error) {
	c, p, err := r.plan(ctx, "tcp", name, false)
	if err != nil {
		return c, err
	}
	if p.literal {
		c.Candidates = append(c.Candidates, p.targets[0].candidate(p.addr))
		return c, nil
	}
	var lastErr *stepError
	var seen map[string][2][]string // a host behind several records is asked once
	for _, t := range p.targets {
		key := strings.ToLower(t.host)
		addrs, ok := seen[key]
		if !ok {
			v6, v4, err := r.addresses(ctx, c, "tcp", t)
			if err != nil {
				lastErr = err
				continue
			}
			addrs = [2][]string{v6, v4}
			if len(p.targets) > 1 {
				if seen == nil {
					seen = make(map[string][2][]string, len(p.targets))
				}
				seen[key] = addrs
			}
		}
		c.addCandidates(t, addrs[0], addrs[1])
	}
	if len(c.Candidates) == 0 {
		if lastErr != nil {
			return c, c.fail("address", lastErr.server, lastErr)
		}
		return c, c.fail("address", p.server, p.noHostErr())
	}
	return c, nil
}

// A target is one host a chain leads to and the port to reach it on: an
// SRV or MX target, the implicit MX, or the name itself with a known port.
type target struct {
	host         string // fully qualified, or "" for an IP literal
	port         uint16
	prio, weight uint16
	glue         *hostAddrs // its addresses from the additional section, used only in bailiwick
}

func (t target) candidate(ip string) Candidate {
	return Candidate{Host: t.host, Address: ip, Port: t.port, Priority: t.prio, Weight: t.weight}
}

// A plan is a chain up to its targets: what Lookup resolves to candidates
// and Dial races. When no target turns out to have an address, the error
// is noHost followed by ErrNoHost, as server said.
type plan struct {
	targets []target
	literal bool // nothing to ask: targets[0] at addr, an IP address, or "" for a name the system resolves
	addr    string
	noHost  string // "SRV names its targets, but "
	server  string
}

// noHostErr is built only when needed: the warm path never fails.
func (p *plan) noHostErr() error { return fmt.Errorf("%s%w", p.noHost, ErrNoHost) }

// plan reads name and follows the chain up to the hosts and ports it
// leads to; see Lookup.
func (r *Resolver) plan(ctx context.Context, network, name string, timed bool) (*Chain, plan, error) {
	r.init()
	c := &Chain{Name: name, Proto: "tcp", Zone: r.zone, Steps: make([]Step, 0, 4), Candidates: []Candidate{}}
	if timed {
		c.start = time.Now()
	}
	if strings.HasPrefix(network, "udp") {
		c.Proto = "udp"
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
			return c, plan{}, c.fail("normalize", "", fmt.Errorf("bad port %q: %w", portStr, ErrNoSuchService))
		}
		port = uint16(p)
	}

	if i := strings.LastIndexByte(host, '@'); i >= 0 {
		return r.mailPlan(ctx, c, host, strings.ToLower(dns.Fqdn(host[i+1:])), port)
	}

	// IP literals and names outside the zone: straight to connect.
	ip, err := netip.Addr{}, errors.ErrUnsupported
	if looksLikeIP(host) {
		ip, err = netip.ParseAddr(host)
	}
	if err == nil || !r.inZone(host) {
		if port == 0 {
			return c, plan{}, c.fail("normalize", "", fmt.Errorf("%s is not a service name in %s, and no port was given: %w", host, r.zone, ErrNoSuchService))
		}
		t, addr := target{host: host, port: port}, ""
		why := "a name outside " + r.zone + ": the system resolves it at connect"
		if err == nil {
			t.host, addr = "", ip.Unmap().String()
			why = "an IP address and a port: nothing to resolve"
		}
		if wk, ok := r.catalog.ByPort(port, c.Proto); ok {
			c.Service = wk.Name // what the port conventionally picks
		}
		c.add(Step{Step: "normalize", Question: name, Answers: []string{why}, Skipped: why})
		return c, plan{targets: []target{t}, literal: true, addr: addr}, nil
	}

	rel := r.relative(host)
	if asTyped := r.relativeAsTyped(host); isInstanceName(dns.SplitDomainName(asTyped)) {
		return r.instancePlan(ctx, c, asTyped, dns.SplitDomainName(asTyped))
	}
	if labels := dns.SplitDomainName(rel); isServiceType(labels) {
		// The SRV record's own name, as dig shows it: the same chain as
		// the service name with its protocol ("_echo._udp" is "echo/udp").
		rel, c.Proto = labels[0][1:], labels[1][1:]
	}
	wk, known := r.catalog.Lookup(rel)
	if known && !strings.Contains(rel, ".") {
		c.Service = wk.Name
	} else {
		known = false
		c.Service = rel
	}
	c.add(normalizeStep(name, rel, c, wk, known, port))

	// 1. SRV, when the name can be a service label: the registry's rule,
	// RFC 6335 section 5.1's, which what annuaire registers follows.
	if registry.ValidServiceName(c.Service) == nil {
		a, st := r.query(ctx, "srv", "_"+c.Service+"._"+c.Proto+"."+r.zone, dns.TypeSRV)
		c.add(st)
		if a.err != nil {
			return c, plan{}, c.fail("srv", a.server, a.err)
		}
		if len(a.records) > 0 {
			return r.srvPlan(c, a)
		}
	}

	// 2. Mail without SRV: MX, then the implicit MX, and nothing else.
	if c.Service == "smtp" && c.Proto == "tcp" {
		return r.mxPlan(ctx, c, r.zone, wk.Port, port)
	}

	// 3. A and AAAA of the name, with the catalog's port or the caller's.
	t := target{host: rel + "." + r.zone, port: port}
	if port == 0 && known {
		t.port = wk.Port
		c.add(Step{
			Step: "well-known", Question: wk.Name + "/" + c.Proto + " in the IANA catalog",
			Answers: []string{strconv.Itoa(int(wk.Port)) + "/" + c.Proto}, Skipped: "no query: the catalog is built in",
		})
	}
	p := plan{targets: []target{t}, server: r.servers[0]}
	switch {
	case port == 0 && known:
		p.noHost = "well-known port " + strconv.Itoa(int(t.port)) + "/" + c.Proto + ", but "
	case port != 0:
		p.noHost = "port " + strconv.Itoa(int(t.port)) + " given, but "
	default:
		// No port anywhere: nothing to dial, but whether the name has an
		// address says which mistake the caller made.
		v6, v4, err := r.addresses(ctx, c, "tcp", t)
		switch {
		case err != nil:
			return c, plan{}, c.fail("address", err.server, err)
		case len(v6)+len(v4) == 0:
			return c, plan{}, c.fail("address", r.servers[0], fmt.Errorf("not a well-known service either: %w", ErrNoSuchService))
		}
		return c, plan{}, c.fail("well-known", "", fmt.Errorf("%s has an address but no port: no SRV record and not a well-known service: %w", t.host, ErrNoSuchService))
	}
	return c, p, nil
}

func normalizeStep(name, rel string, c *Chain, wk registry.WellKnown, known bool, port uint16) Step {
	what := "service " + c.Service + " over " + c.Proto + " in zone " + c.Zone
	if known && rel != wk.Name {
		what = rel + " is an alias of " + wk.Name + "; " + what
	}
	if c.Service == "smtp" && c.Proto == "tcp" {
		what += "; " + ownMailOrder
	}
	if port != 0 {
		what += "; port " + strconv.Itoa(int(port)) + " given, used when no SRV record gives one"
	}
	return Step{Step: "normalize", Question: name, Answers: []string{what}, Skipped: "no query: the name is read as typed"}
}

// srvPlan turns an SRV answer into targets in RFC 2782 order.
func (r *Resolver) srvPlan(c *Chain, a *answer) (*Chain, plan, error) {
	srvs := make([]*dns.SRV, 0, len(a.records))
	for _, rr := range a.records {
		// RFC 2782: a target of "." means "decidedly not available";
		// alone it ends the chain, among others it is skipped.
		if s := rr.(*dns.SRV); s.Target != "." {
			srvs = append(srvs, s)
		}
	}
	if len(srvs) == 0 {
		return c, plan{}, c.fail("srv", a.server, fmt.Errorf("target \".\": %w", ErrNotAvailable))
	}
	bw := bailiwick(r.zone, a)
	p := plan{targets: make([]target, 0, len(srvs)), server: a.server, noHost: "SRV names its targets, but "}
	for _, s := range orderSRV(srvs, r.rand) {
		if s.Port == 0 {
			// Port 0 is reserved (RFC 6335 section 6): no process listens on it.
			c.add(Step{Step: "skip", Question: strings.ReplaceAll(s.String(), "\t", " "), Answers: []string{},
				Skipped: "port 0 cannot be dialled: target skipped"})
			continue
		}
		p.targets = append(p.targets, target{host: s.Target, port: s.Port, prio: s.Priority, weight: s.Weight, glue: r.glue(c, a, bw, s.Target)})
	}
	if len(p.targets) == 0 {
		return c, plan{}, c.fail("srv", a.server, fmt.Errorf("every SRV target has port 0: %w", ErrNoSuchService))
	}
	return c, p, nil
}

// bailiwick is the zone whose servers may vouch for addresses in an
// answer to a question asked in zone: zone itself, or the zone the
// answer's authority section named when it lies below (RFC 2181 section
// 5.4.1: data from outside the zone asked is not authoritative, and an
// additional section is where a lying server puts it).
func bailiwick(zone string, a *answer) string {
	if a.zone != "" && below(zone, a.zone) {
		return a.zone
	}
	return zone
}

// glue returns the additional section's addresses for host when host is
// inside bw; outside, it says in the chain that they were set aside, and
// the host is asked for like any other.
func (r *Resolver) glue(c *Chain, a *answer, bw, host string) *hostAddrs {
	for i := range a.extra {
		h := &a.extra[i]
		if !strings.EqualFold(h.name, host) {
			continue
		}
		if below(bw, host) {
			return h
		}
		for _, text := range append(h.textAAAA[:len(h.textAAAA):len(h.textAAAA)], h.textA...) {
			c.add(Step{Step: "skip", Question: text, Answers: []string{},
				Skipped: "additional data outside " + bw + " (RFC 2181 section 5.4.1): not used, the host is asked for"})
		}
		return nil
	}
	return nil
}

// A stepError is a failed address step, with the server that failed it.
type stepError struct {
	server string
	err    error
}

func (e *stepError) Error() string { return e.err.Error() }
func (e *stepError) Unwrap() error { return e.err }

// A family is one address family of one target, as a lookup or a dial
// consumes it: its addresses and the step that found them.
type family struct {
	qtype uint16   // dns.TypeAAAA or dns.TypeA; 0 for addresses given as they are
	state int      // notAsked, known or asked
	addrs []string // IP addresses, or "" for a name the system resolves; shared with the cache
	step  Step     // the question, or the additional section, that gave them
	err   *stepError
}

const (
	notAsked = iota // the dial's network excludes the family
	known           // from the additional section, the cache, or given
	asked           // a question is out: the family arrives on a channel
)

// shown reports whether a reader wants the family's step: a negative
// AAAA answer is noise beside the A that found the host, or did not.
func (f *family) shown() bool {
	return f.state != notAsked && f.step.Step != "" && (f.qtype != dns.TypeAAAA || f.err != nil || len(f.addrs) > 0)
}

// lookupAddrs starts finding t's addresses, AAAA (fams[0]) and A
// (fams[1]), in the families network allows. Those the additional section
// gave, and answers in the cache, are known at once; the others are asked
// at the same time (RFC 8305 section 3), each in its own goroutine, and
// arrive on later, which is buffered so that a caller may stop listening.
// stop abandons the questions still out (their flights go on, and fill
// the cache).
func (r *Resolver) lookupAddrs(ctx context.Context, network string, t target) (fams [2]family, later chan family, stop context.CancelFunc) {
	stop = func() {}
	for i, qtype := range [2]uint16{dns.TypeAAAA, dns.TypeA} {
		f := &fams[i]
		f.qtype = qtype
		if qtype == dns.TypeAAAA && strings.HasSuffix(network, "4") || qtype == dns.TypeA && strings.HasSuffix(network, "6") {
			continue
		}
		f.state = known
		if t.glue != nil {
			ips, texts := t.glue.v4, t.glue.textA
			if qtype == dns.TypeAAAA {
				ips, texts = t.glue.v6, t.glue.textAAAA
			}
			if len(ips) > 0 {
				f.addrs = ips
				f.step = Step{Step: "address", Question: t.host + " " + dns.TypeToString[qtype], Answers: texts, Rcode: "NOERROR",
					Skipped: "no query: the address came in the answer's additional section"}
				continue
			}
			// RFC 8305 section 3 asks for both families; the additional
			// section had only the other one.
		}
		if a := r.cachedAnswer(t.host, qtype, time.Now()); a != nil {
			*f = newFamily(a, a.step("address", true), qtype)
			continue
		}
		f.state = asked
		if later == nil {
			later = make(chan family, 2)
			ctx, stop = context.WithCancel(ctx)
		}
		ch, ctx := later, ctx
		go func() { ch <- r.family(ctx, t.host, qtype) }()
	}
	return fams, later, stop
}

// famIndex is a family's place in lookupAddrs's result: AAAA first.
func famIndex(qtype uint16) int {
	if qtype == dns.TypeAAAA {
		return 0
	}
	return 1
}

// family asks for host's addresses of one type.
func (r *Resolver) family(ctx context.Context, host string, qtype uint16) family {
	a, st := r.query(ctx, "address", host, qtype)
	return newFamily(a, st, qtype)
}

func newFamily(a *answer, st Step, qtype uint16) family {
	f := family{qtype: qtype, state: known, addrs: a.addrs, step: st}
	if a.err != nil {
		f.err = &stepError{a.server, a.err}
	}
	return f
}

// addresses returns t's addresses, IPv6 then IPv4 (the order a dial
// interleaves), waiting for every answer. It fails only when no address
// was found and a server could not be asked.
func (r *Resolver) addresses(ctx context.Context, c *Chain, network string, t target) (v6, v4 []string, err *stepError) {
	fams, later, stop := r.lookupAddrs(ctx, network, t)
	defer stop()
	n := 0
	for _, f := range fams {
		if f.state == asked {
			n++
		}
	}
	for range n {
		f := <-later
		fams[famIndex(f.qtype)] = f
	}
	// The steps in a stable order: the additional section's first, then
	// the questions, A before AAAA.
	for _, glue := range [2]bool{true, false} {
		for _, f := range [2]*family{&fams[1], &fams[0]} {
			if f.shown() && (f.step.Skipped != "") == glue {
				c.add(f.step)
			}
		}
	}
	v6, v4 = fams[0].addrs, fams[1].addrs
	if len(v6)+len(v4) == 0 {
		for _, f := range [2]*family{&fams[1], &fams[0]} {
			if f.err != nil {
				return nil, nil, f.err
			}
		}
	}
	return v6, v4, nil
}

// addCandidates appends t's candidates to the chain in the order a dial
// tries them: the families interleaved, IPv6 first (RFC 8305 section 4,
// with a First Address Family Count of 1).
func (c *Chain) addCandidates(t target, v6, v4 []string) {
	for i := 0; i < len(v6) || i < len(v4); i++ {
		if i < len(v6) {
			c.Candidates = append(c.Candidates, t.candidate(v6[i]))
		}
		if i < len(v4) {
			c.Candidates = append(c.Candidates, t.candidate(v4[i]))
		}
	}
}

// below reports whether name is zone or a name under it, both fully
// qualified, without case (RFC 4343): dns.IsSubDomain without its
// allocations, for the warm path.
func below(zone, name string) bool {
	if zone == "." {
		return true
	}
	if len(name) < len(zone) || !registry.SameName(name[len(name)-len(zone):], zone) {
		return false
	}
	return len(name) == len(zone) || name[len(name)-len(zone)-1] == '.'
}

// looksLikeIP is a cheap test before netip.ParseAddr, whose error for
// every service name would be an allocation on the warm path.
func looksLikeIP(s string) bool {
	return s != "" && (s[0] >= '0' && s[0] <= '9' || strings.Contains(s, ":"))
}

// inZone reports whether host is read as a service name: a single label
// ("echo"), a service's SRV name or a DNS-SD instance name relative to the
// zone ("_echo._tcp", "Salle\ 101._ipp._tcp"), or a name below the zone
// ("echo.svc.internal.").
func (r *Resolver) inZone(host string) bool {
	h := strings.TrimSuffix(host, ".")
	labels := dns.SplitDomainName(h)
	return !strings.Contains(h, ".") || isInstanceName(labels) || isServiceType(labels) ||
		dns.IsSubDomain(r.zone, dns.Fqdn(h)) && !registry.SameName(dns.Fqdn(h), r.zone)
}

// relative returns host relative to the zone, folded as names compare
// (registry.FoldName): "Echo.svc.internal." → "echo".
func (r *Resolver) relative(host string) string {
	return registry.FoldName(r.relativeAsTyped(host))
}

// relativeAsTyped returns host relative to the zone, as typed.
func (r *Resolver) relativeAsTyped(host string) string {
	h := strings.TrimSuffix(host, ".")
	if z := "." + strings.TrimSuffix(r.zone, "."); len(h) > len(z) && registry.SameName(h[len(h)-len(z):], z) {
		h = h[:len(h)-len(z)]
	}
	return h
}

// isServiceType reports whether labels, folded, are a service's SRV name
// relative to the zone: _<service>._<proto> (RFC 2782, RFC 6763 section 7).
func isServiceType(labels []string) bool {
	if len(labels) != 2 {
		return false
	}
	service, proto := registry.FoldName(labels[0]), registry.FoldName(labels[1])
	return strings.HasPrefix(service, "_") && registry.ValidServiceName(service[1:]) == nil && (proto == "_tcp" || proto == "_udp")
}

// isInstanceName reports whether labels, in presentation form, are a
// DNS-SD instance name relative to the zone: <Instance>._<service>._<proto>
// (RFC 6763 section 4.1), the instance label any text with its dots
// escaped ("Imprimante Salle 2\.3 (étage)._ipp._tcp").
func isInstanceName(labels []string) bool {
	if len(labels) != 3 {
		return false
	}
	service, proto := registry.FoldName(labels[1]), registry.FoldName(labels[2])
	return strings.HasPrefix(service, "_") && registry.ValidServiceName(service[1:]) == nil && (proto == "_tcp" || proto == "_udp")
}

// instancePlan is the chain of a DNS-SD instance (RFC 6763 section 4.3):
// the SRV record at its own name, then its target's addresses; the TXT
// record at that name is what the service says of itself (section 6),
// kept in the chain as the bytes served.
func (r *Resolver) instancePlan(ctx context.Context, c *Chain, rel string, labels []string) (*Chain, plan, error) {
	c.Service, c.Proto = registry.FoldName(labels[1][1:]), registry.FoldName(labels[2][1:])
	// As miekg/dns presents it once read from the wire ("\ ", "\195"), so
	// that the answer's question and owners compare equal to it.
	name := presented(rel + "." + r.zone)
	c.add(Step{Step: "normalize", Question: c.Name,
		Answers: []string{"DNS-SD instance " + strconv.Quote(unescapeLabel(labels[0])) + " of service " + c.Service + " over " + c.Proto + " in zone " + c.Zone},
		Skipped: "no query: the name is read as typed"})
	a, st := r.query(ctx, "srv", name, dns.TypeSRV)
	c.add(st)
	if a.err != nil {
		return c, plan{}, c.fail("srv", a.server, a.err)
	}
	if len(a.records) == 0 {
		return c, plan{}, c.fail("srv", a.server, fmt.Errorf("no SRV record at %s: %w", name, ErrNoSuchService))
	}
	t, tst := r.query(ctx, "txt", name, dns.TypeTXT)
	c.add(tst)
	for _, rr := range t.records {
		if txt, ok := rr.(*dns.TXT); ok {
			c.TXT = append(c.TXT, txtBytes(txt)...)
		}
	}
	return r.srvPlan(c, a)
}

// presented returns a name in the form miekg/dns gives it after
// unpacking, or name itself if it is not a valid name.
func presented(name string) string {
	buf := make([]byte, 256)
	n, err := dns.PackDomainName(dns.Fqdn(name), buf, 0, nil, false)
	if err != nil {
		return name
	}
	s, _, err := dns.UnpackDomainName(buf[:n], 0)
	if err != nil {
		return name
	}
	return s
}

// unescapeLabel returns a presentation-form label's bytes, for people.
func unescapeLabel(l string) string {
	buf := make([]byte, 256)
	n, err := dns.PackDomainName(l+".", buf, 0, nil, false)
	if err != nil || n < 2 {
		return l
	}
	return string(buf[1 : 1+int(buf[0])])
}

// txtBytes returns a TXT record's character-strings as the bytes on the
// wire: miekg/dns keeps them escaped (\DDD, \"), and its packer is what
// knows its escapes.
func txtBytes(rr *dns.TXT) []string {
	buf := make([]byte, dns.Len(rr)+16)
	end, err := dns.PackRR(rr, buf, 0, nil, false)
	if err != nil {
		return nil
	}
	rdata := buf[end-int(rr.Hdr.Rdlength) : end]
	var out []string
	for len(rdata) > 0 && int(rdata[0]) < len(rdata) {
		l := int(rdata[0])
		out = append(out, string(rdata[1:1+l]))
		rdata = rdata[1+l:]
	}
	return out
}
