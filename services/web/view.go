package web

import (
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/annuaire/annuaire/registry"
)

// Service is one instance as GET /api/services and the page show it, and
// as POST /api/services answers: the registry's row, the host's
// addresses, and the chain a client follows.
type Service struct {
	ID        string                `json:"id"`
	Name      string                `json:"name"`     // the service: "echo"
	Proto     string                `json:"proto"`    // tcp or udp
	Instance  registry.Octets       `json:"instance"` // the DNS-SD instance name
	Host      string                `json:"host"`     // the SRV target, relative to the zone
	Port      uint16                `json:"port"`
	Priority  uint16                `json:"priority"`
	Weight    uint16                `json:"weight"`
	TTL       uint32                `json:"ttl"`
	TXT       registry.TXT          `json:"txt"`      // in order; a string that is not UTF-8 as {"base64": "..."}
	Subtypes  []registry.Octets     `json:"subtypes"` // DNS-SD subtypes: "_printer"
	Check     *registry.Check       `json:"check,omitempty"`
	LastCheck *registry.CheckResult `json:"last_check,omitempty"` // what the check found last; absent until it ran
	Health    registry.Health       `json:"health"`
	Addresses []string              `json:"addresses"` // the host's
	Chain     ServiceChain          `json:"chain"`
	// Owner is the student token that registered it; absent for the
	// administrator (the server's token, DNS UPDATE, the hosted services).
	Owner string `json:"owner,omitempty"`
}

// Healthy reports whether DNS hands the instance out.
func (v Service) Healthy() bool { return v.Health != registry.Critical }

// ServiceChain is the path from a symbolic name to the process, computed
// from the registry the way the DNS server answers: no DNS is sent to
// build it. It tells an API client (`annuaire register`) what its
// registration put in DNS; the page draws the real Lookup's chain instead
// (chains.go).
type ServiceChain struct {
	Name      string   `json:"name"`      // what the user types: "echo"
	Question  string   `json:"question"`  // "_echo._tcp.svc.internal. SRV"
	SRV       string   `json:"srv"`       // the record, without TTL and class
	Target    string   `json:"target"`    // "h-127-0-0-1.svc.internal."
	Records   []string `json:"records"`   // the target's A/AAAA records
	Port      uint16   `json:"port"`      // picks the process on the host
	Endpoints []string `json:"endpoints"` // address:port, what connect(2) gets
	Process   string   `json:"process"`   // who answers there
	InDNS     bool     `json:"in_dns"`    // false while the instance is unhealthy
}

func (s *Server) views(snap *registry.Snapshot) []Service {
	out := []Service{}
	for inst := range snap.All() {
		out = append(out, s.view(snap, inst))
	}
	slices.SortStableFunc(out, func(a, b Service) int {
		return strings.Compare(a.Name+"/"+a.Proto+"/"+a.ID, b.Name+"/"+b.Proto+"/"+b.ID)
	})
	return out
}

func (s *Server) view(snap *registry.Snapshot, inst *registry.Instance) Service {
	zone := s.zone()
	target := inst.Host + "." + zone
	v := Service{
		ID: inst.ID, Name: inst.Service, Proto: inst.Proto, Instance: registry.Octets(inst.Label), Host: inst.Host,
		Port: inst.Port, Priority: inst.Priority, Weight: inst.Weight, TTL: inst.TTL,
		TXT: inst.TXT, Subtypes: []registry.Octets{}, Check: inst.Check, Health: inst.Health, Addresses: []string{}, Owner: inst.Owner,
	}
	for _, st := range inst.Subtypes { // [], not null, when none
		v.Subtypes = append(v.Subtypes, registry.Octets(st))
	}
	if v.TXT == nil {
		v.TXT = registry.TXT{} // [], not null
	}
	if s.LastCheck != nil && inst.Check != nil {
		if res, ok := s.LastCheck(inst.ID); ok {
			v.LastCheck = &res
		}
	}
	c := ServiceChain{
		Name:      inst.Service,
		Question:  "_" + inst.Service + "._" + inst.Proto + "." + zone + " SRV",
		SRV:       fmt.Sprintf("_%s._%s.%s SRV %d %d %d %s", inst.Service, inst.Proto, zone, inst.Priority, inst.Weight, inst.Port, target),
		Target:    target,
		Records:   []string{},
		Port:      inst.Port,
		Endpoints: []string{},
		InDNS:     inst.Healthy(),
	}
	if h, ok := snap.Host(inst.Host); ok {
		for _, a := range h.Addrs {
			rr := "A"
			if a.Is6() {
				rr = "AAAA"
			}
			v.Addresses = append(v.Addresses, a.String())
			c.Records = append(c.Records, fmt.Sprintf("%s %s %s", target, rr, a))
			c.Endpoints = append(c.Endpoints, netip.AddrPortFrom(a, inst.Port).String())
		}
	}
	c.Process = process(s.catalog(), inst)
	v.Chain = c
	return v
}

// shown writes a DNS label or TXT string for people: UTF-8 text as it
// is, and each byte that is not printable text (a control, a byte that is
// not UTF-8) and the backslash escaped as a zone file would (\DDD, \\),
// so that the page shows the bytes served, hiding and inventing none.
func shown(raw string) string {
	var b strings.Builder
	for i := 0; i < len(raw); {
		r, n := utf8.DecodeRuneInString(raw[i:])
		switch {
		case raw[i] == '\\':
			b.WriteString(`\\`)
		case r == utf8.RuneError && n <= 1 || r < 0x20 || r == 0x7f || unicode.IsControl(r):
			for _, c := range []byte(raw[i : i+n]) {
				fmt.Fprintf(&b, `\%03d`, c)
			}
		default:
			b.WriteString(raw[i : i+n])
		}
		i += n
	}
	return b.String()
}

// process says who is listening at the end of the chain, in the course's
// terms: the port number designates one process on the host.
func process(cat *registry.Catalog, inst *registry.Instance) string {
	desc := inst.Service + " server"
	if wk, ok := cat.ByPort(inst.Port, inst.Proto); ok && wk.Name == inst.Service {
		desc += " on its well-known port"
	}
	return fmt.Sprintf("%s, listening on port %d/%s", desc, inst.Port, inst.Proto)
}

// remoteAddr is the IP a request came from.
func remoteAddr(hostport string) (netip.Addr, bool) {
	h, _, err := net.SplitHostPort(hostport)
	if err != nil {
		h = hostport
	}
	a, err := netip.ParseAddr(h)
	if err != nil {
		return netip.Addr{}, false
	}
	return a.Unmap().WithZone(""), true
}
