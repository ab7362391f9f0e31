// Package resolver finds a service by its symbolic name and connects to it:
// name → SRV → host → address → port, the chain the course draws by hand
// (DNS gives the address, the port picks the process).
//
//	conn, err := resolver.Dial(ctx, "tcp", "echo")
//
// Resolver.Lookup returns every step of that chain — the questions asked,
// the records found, what came from the cache — and the ordered
// address:port candidates; Resolver.Dial connects to them in order, with
// failover and happy eyeballs. DialContext plugs into http.Transport:
//
//	r := &resolver.Resolver{Server: "127.0.0.1:1053"}
//	client := &http.Client{Transport: &http.Transport{DialContext: r.DialContext}}
//	resp, err := client.Get("http://web.svc.internal/")
//
// The rules are those of real clients: SRV ordering and weighted selection
// as RFC 2782 describes, MX and the implicit MX for mail (RFC 5321 section
// 5.1), the catalog's well-known port when there is no SRV record, a cache
// that honours TTLs, negative ones included (RFC 2308), and sends
// concurrent identical questions once.
//
// Scope: it asks one server (or the resolv.conf list) for one zone; it
// does not validate DNSSEC, search domains, or follow SRV targets outside
// what the server answers. The authoritative server is in package
// authority.
package resolver
