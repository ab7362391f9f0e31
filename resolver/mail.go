package resolver

import (
	"context"
	"fmt"
	"strings"

	"github.com/miekg/dns"
)

// ownMailOrder is what the chain says of mail in the Resolver's own zone.
const ownMailOrder = "annuaire's convention in its own zone: _smtp._tcp SRV first (an MX cannot carry a port), then MX, then the zone's own address (RFC 5321 section 5.1)"

// mailPlan finds where mail for an address (user@domain, or @domain)
// goes. In the Resolver's own zone annuaire's convention applies, as for
// the service name mail; any other domain is RFC 5321 section 5.1 alone.
func (r *Resolver) mailPlan(ctx context.Context, c *Chain, addr, domain string, port uint16) (*Chain, plan, error) {
	c.Service, c.Proto = "smtp", "tcp"
	wk, _ := r.catalog.Lookup("smtp")
	if domain == "." || strings.Contains(domain, "@") {
		return c, plan{}, c.fail("normalize", "", fmt.Errorf("%q: want user@domain or @domain: %w", addr, ErrNoSuchService))
	}
	if domain == r.zone {
		c.add(Step{Step: "normalize", Question: c.Name, Answers: []string{"mail for " + domain + "; " + ownMailOrder},
			Skipped: "no query: the name is read as typed"})
		a, st := r.query(ctx, "srv", "_smtp._tcp."+r.zone, dns.TypeSRV)
		c.add(st)
		if a.err != nil {
			return c, plan{}, c.fail("srv", a.server, a.err)
		}
		if len(a.records) > 0 {
			return r.srvPlan(c, a)
		}
		return r.mxPlan(ctx, c, domain, wk.Port, port)
	}
	c.add(Step{Step: "normalize", Question: c.Name, Answers: []string{"mail for " + domain + ", outside " + r.zone +
		": its MX, else the domain's own address (RFC 5321 section 5.1); no SRV"}, Skipped: "no query: the name is read as typed"})
	return r.mxPlan(ctx, c, domain, wk.Port, port)
}

// mxPlan follows RFC 5321 section 5.1 for domain: its MX records by
// preference; with none, the domain itself as the implicit MX, preference
// 0; nothing else. Mail goes to wkPort, the catalog's smtp port, unless
// the caller gave one.
func (r *Resolver) mxPlan(ctx context.Context, c *Chain, domain string, wkPort, port uint16) (*Chain, plan, error) {
	if port == 0 {
		port = wkPort
	}
	if port == 0 {
		port = 25 // a catalog without smtp
	}
	a, st := r.query(ctx, "mx", domain, dns.TypeMX)
	c.add(st)
	if a.err != nil {
		return c, plan{}, c.fail("mx", a.server, a.err)
	}
	if a.rcode == dns.RcodeNameError {
		return c, plan{}, c.fail("mx", a.server, fmt.Errorf("%s does not exist: %w", domain, ErrNoHost))
	}
	if len(a.records) == 0 {
		// "If an empty list of MXs is returned, the address is treated as
		// if it was associated with an implicit MX RR, with a preference
		// of 0, pointing to that host."
		return c, plan{targets: []target{{host: domain, port: port}}, server: a.server,
			noHost: "no MX, and " + domain + " has no address of its own to be the implicit MX (RFC 5321 section 5.1): "}, nil
	}
	mxs := make([]*dns.MX, 0, len(a.records))
	for _, rr := range a.records {
		if m := rr.(*dns.MX); m.Mx != "." {
			mxs = append(mxs, m)
		}
	}
	if len(mxs) == 0 {
		return c, plan{}, c.fail("mx", a.server, fmt.Errorf("null MX (RFC 7505): %w", ErrNotAvailable))
	}
	bw := bailiwick(domain, a)
	p := plan{targets: make([]target, 0, len(mxs)), server: a.server, noHost: "MX names mail hosts, but "}
	for _, m := range orderMX(mxs, r.rand) {
		p.targets = append(p.targets, target{host: m.Mx, port: port, prio: m.Preference, glue: r.glue(c, a, bw, m.Mx)})
	}
	return c, p, nil
}
