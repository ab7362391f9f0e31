// Package resolver finds a service by its symbolic name and connects to it:
// name → SRV → host → address → port, the chain the course draws by hand
// (DNS gives the address, the port picks the process).
//
//	r := &resolver.Resolver{Server: resolver.Local} // the annuaire on this machine
//	conn, err := r.Dial(ctx, "tcp", "echo")
//
// The zero Resolver, and the package-level Lookup and Dial, ask the
// system's resolvers (the nameservers of /etc/resolv.conf), as net's
// resolver does: they find annuaire's services when the machine's DNS
// delegates the zone to it.
//
// Resolver.Lookup returns every step of that chain — the questions asked,
// the records found, what came from the cache, what was set aside — and
// the ordered address:port candidates; Resolver.Dial connects to them as
// RFC 8305 (Happy Eyeballs v2) says, one SRV target at a time, and
// DialTrace shows that race. DialContext plugs into http.Transport:
//
//	client := &http.Client{Transport: &http.Transport{DialContext: r.DialContext}}
//	resp, err := client.Get("http://web.svc.internal/")
//
// The rules are those of real clients: SRV ordering and weighted selection
// as RFC 2782 describes, MX and the implicit MX for mail (RFC 5321 section
// 5.1), the catalog's well-known port when there is no SRV record, a cache
// that honours TTLs, negative ones included (RFC 2308), and sends
// concurrent identical questions once. It trusts only what answers its
// question: a response must carry the ID and question asked (RFC 5452
// section 9.1) and records only of names the question leads to, and
// addresses from an additional section are used only inside the zone
// that answered (RFC 2181 section 5.4.1). Errors are *LookupError, a
// net.Error shaped like net.DNSError.
//
// Scope: it asks one server (or the resolv.conf list) for one zone, and
// for mail the domain of an address; it follows CNAME chains within an
// answer but does not restart a question at their end, does not validate
// DNSSEC, nor apply search domains. The authoritative server is in package
// authority.
package resolver
