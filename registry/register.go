package registry

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Defaults and bounds of a Registration.
const (
	DefaultCheckInterval = 10 * time.Second
	MaxAddresses         = 32 // per host, however written: more is a mistake, not a host
)

// A Registration is what a front-end asks the registry to hold: one
// instance, and the host it runs on. The HTTP API, DNS UPDATE and, through
// the API, the CLI all register through Tx.Register, which owns the
// defaults and the validation: a field left at its zero value gets the
// default it documents, and a field that cannot be held is a *FieldError
// naming it.
type Registration struct {
	// ID is the instance's name in the API. "" means
	// "<service>-<proto>-<host>-<port>", so that registering the same
	// endpoint again replaces it.
	ID string
	// Service is an RFC 6335 service name, such as "echo". Required.
	Service string
	// Proto is "tcp" or "udp"; "" means tcp.
	Proto string
	// Port is where the instance listens; nil means the catalog's
	// well-known port for Service.
	Port *int
	// Host is the SRV target, relative to the zone. "" means a host named
	// after the first address: "h-127-0-0-1".
	Host string
	// Addresses are the host's. The host is then created or replaced
	// with them, and marked automatic (collected with its last instance)
	// unless it existed and was not. With none, an existing host keeps
	// its addresses; a new one gets From, or, without From, is only named
	// by the SRV record, as an UPDATE may add its addresses later.
	Addresses []netip.Addr
	// From is the address the registration came from, if known.
	From netip.Addr
	// Instance is the DNS-SD instance name (RFC 6763 section 4.1); ""
	// means "<host>-<port>".
	Instance string
	// Priority and Weight are the SRV record's (RFC 2782), 0 to 65535.
	Priority, Weight int
	// TTL is the records' TTL in seconds; nil means DefaultTTL.
	TTL *int
	// TXT is the instance's DNS-SD TXT record (RFC 6763 section 6), in
	// the order to serve it; a key may be given once.
	TXT TXT
	// Subtypes are the instance's DNS-SD subtypes (RFC 6763 section
	// 7.1), in the RFC's form "_printer"; "printer" means "_printer".
	Subtypes []string
	// Check is the instance's health check, if any. An Interval of 0
	// means DefaultCheckInterval; a tcp or http check without a Target
	// checks the first address at Port.
	Check *Check
	// Owner is who registers: a token's name, or "" for the
	// administrator. An owner may replace only its own instance and
	// change the addresses of only its own host (owner.go); the instance,
	// and a host it creates, are the owner's.
	Owner string
	// MaxOwned, with an Owner, is how many instances the owner may hold
	// once registered; 0 means no limit.
	MaxOwned int
	// Hosted marks the server's own hosted services, which
	// Registry.MaxInstances does not refuse: they are a handful, and the
	// server registers them again at each start, into a directory that
	// may be full.
	Hosted bool
}

// Register validates reg, fills in its defaults and writes its host and
// instance, replacing an instance with the same ID. It returns the
// instance's ID. An instance named by the default ID that another
// endpoint now holds (an UPDATE moved it) is not replaced: that is an
// error.
func (tx *Tx) Register(reg Registration) (string, error) {
	service := FoldName(strings.TrimSpace(reg.Service))
	if service == "" {
		return "", &FieldError{"name", "", "required: the service name, such as echo"}
	}
	if err := ValidServiceName(service); err != nil {
		return "", &FieldError{"name", service, err.Error()}
	}
	var port int
	if reg.Port != nil {
		port = *reg.Port
	} else if wk, ok := tx.catalog.Lookup(service); ok {
		port = int(wk.Port)
	} else {
		return "", &FieldError{"port", "", "required: " + service + " is not in the well-known catalog"}
	}
	if port < 1 || port > 65535 {
		return "", &FieldError{"port", strconv.Itoa(port), "must be 1-65535"}
	}
	ttl := DefaultTTL
	if reg.TTL != nil {
		ttl = *reg.TTL
	}
	for _, f := range []struct {
		name   string
		v, max int
	}{{"priority", reg.Priority, 65535}, {"weight", reg.Weight, 65535}, {"ttl", ttl, MaxTTL}} {
		if f.v < 0 || f.v > f.max {
			return "", &FieldError{f.name, strconv.Itoa(f.v), "must be 0-" + strconv.Itoa(f.max)}
		}
	}
	addrs := make([]netip.Addr, 0, len(reg.Addresses))
	for _, a := range reg.Addresses {
		if err := CheckAddress(a); err != nil {
			return "", &FieldError{"addresses", a.String(), err.Error()}
		}
		addrs = append(addrs, a.Unmap().WithZone(""))
	}

	host := FoldName(strings.TrimSuffix(strings.TrimSpace(reg.Host), "."))
	existing, exists := (*Host)(nil), false
	if host != "" {
		existing, exists = tx.Host(host)
	}
	if len(addrs) == 0 && !exists && reg.From.IsValid() {
		addrs = []netip.Addr{reg.From.Unmap().WithZone("")}
	}
	if host == "" {
		if len(addrs) == 0 {
			return "", &FieldError{"addresses", "", "required without a host: the host is named after the first address"}
		}
		host = hostForAddr(addrs[0])
		existing, exists = tx.Host(host)
	}
	if len(addrs) == 0 && exists {
		addrs = existing.Addrs
	}

	owner := FoldName(reg.Owner)
	inst := Instance{
		Owner:    owner,
		ID:       reg.ID,
		Service:  service,
		Proto:    FoldName(strings.TrimSpace(reg.Proto)),
		Label:    reg.Instance,
		Host:     host,
		Port:     uint16(port),
		Priority: uint16(reg.Priority),
		Weight:   uint16(reg.Weight),
		TTL:      uint32(ttl),
		TXT:      reg.TXT,
	}
	for _, st := range reg.Subtypes {
		if !strings.HasPrefix(st, "_") {
			st = "_" + st
		}
		inst.Subtypes = append(inst.Subtypes, st)
	}
	if err := reg.TXT.checkUnique(); err != nil {
		return "", err
	}
	if reg.Check != nil {
		c, err := fillCheck(*reg.Check, inst.Proto, addrs, inst.Port, owner)
		if err != nil {
			return "", err
		}
		inst.Check = c
	}
	// Check the instance before writing its host: a bad field writes
	// nothing, even before the Tx is thrown away.
	if err := fillInstance(&inst); err != nil {
		return "", err
	}
	host = inst.Host // the same name, and maybe within the ID (fillInstance)
	if reg.ID == "" {
		if old, ok := tx.Instance(inst.ID); ok && (old.Service != inst.Service || old.Proto != inst.Proto || old.Host != inst.Host || old.Port != inst.Port) {
			return "", &FieldError{"id", inst.ID, fmt.Sprintf("taken by _%s._%s instance %q, now at %s:%d", old.Service, old.Proto, old.Label, old.Host, old.Port)}
		}
	}
	old, replacing := tx.Instance(inst.ID)
	if replacing {
		if err := checkOwner("instance "+strconv.Quote(old.ID), owner, old.Owner); err != nil {
			return "", err
		}
	}
	if err := tx.checkService(owner, &inst); err != nil {
		return "", err
	}
	if owner != "" && reg.MaxOwned > 0 && !(replacing && old.Owner == owner) && tx.Owned(owner) >= reg.MaxOwned {
		return "", &QuotaError{Owner: owner, Max: reg.MaxOwned}
	}
	if !replacing {
		if err := tx.admit(&reg); err != nil {
			return "", err
		}
	}
	if len(reg.Addresses) > 0 || !exists && len(addrs) > 0 {
		h := Host{Name: host, Addrs: addrs, TTL: uint32(ttl), Auto: !exists || existing.Auto, Owner: owner}
		switch {
		case !exists:
		case mayChange(owner, existing.Owner):
			h.Owner = existing.Owner // the administrator's change keeps it the owner's
		case slices.Equal(existing.Addrs, addrs):
			// Another's host, named with the addresses it has: the
			// instance points at it and leaves it as it is.
			h = *existing
		default:
			return "", checkOwner("host "+strconv.Quote(host), owner, existing.Owner)
		}
		if err := tx.PutHost(h); err != nil {
			return "", err
		}
	}
	return tx.putFilled(inst)
}

// CheckAddress says why a cannot be a host's address, or returns nil: it
// must be an address a client can connect to. The unspecified address is
// what a server binds to listen everywhere, not where it is reached;
// broadcast and multicast reach many hosts or none; a link-local address
// means nothing without the link it is on (RFC 4007 section 6:
// fe80::1%eth0 names one), and IPv4 cannot say which. A check against a
// link-local address would also let a registrant probe what only this
// machine reaches there: 169.254.169.254 is a cloud's metadata service.
func CheckAddress(a netip.Addr) error {
	switch u := a.Unmap(); {
	case !a.IsValid():
		return errors.New("not an IP address")
	case a.IsUnspecified():
		return errors.New("the unspecified address: a server listens on it, no client reaches it; give the host's own address")
	case u == netip.AddrFrom4([4]byte{255, 255, 255, 255}):
		return errors.New("the broadcast address reaches every host on the link, not one")
	case a.IsMulticast():
		return errors.New("a multicast address is a group, not a host")
	case u.Is4() && u.IsLinkLocalUnicast():
		return errors.New("link-local (169.254.0.0/16) means nothing off its link, and IPv4 cannot say which")
	case a.IsLinkLocalUnicast() && a.Zone() == "":
		return errors.New("link-local without a scope: say which link, fe80::1%eth0")
	}
	return nil
}

// checkTarget says why a tcp or http check may not probe its target:
// the checker connects from this machine and shows what it found to
// anyone who reads the directory. An owner's registration checks one of
// its own addresses; the administrator ("") may name any host, but no
// address CheckAddress refuses.
func checkTarget(c Check, addrs []netip.Addr, owner string) error {
	var host string
	switch c.Type {
	case "tcp":
		host, _, _ = net.SplitHostPort(c.Target)
	case "http":
		u, _ := url.Parse(c.Target)
		host = u.Hostname()
	default:
		return nil
	}
	a, err := netip.ParseAddr(host)
	switch {
	case err != nil && owner == "":
		return nil
	case err != nil:
		return errors.New("a name: a registration checks one of its host's addresses")
	}
	if err := CheckAddress(a); err != nil {
		return err
	}
	if owner != "" && !slices.Contains(addrs, a.Unmap().WithZone("")) {
		return errors.New("not one of the host's addresses: a registration checks itself")
	}
	return nil
}

// fillCheck fills in a check's defaults: the interval, and the target of
// a tcp or http check from the instance's first address and port. proto
// is the instance's; owner's registration may only check its own
// addresses (checkTarget).
func fillCheck(c Check, proto string, addrs []netip.Addr, port uint16, owner string) (*Check, error) {
	c.Type = FoldName(strings.TrimSpace(c.Type))
	c.Target = strings.TrimSpace(c.Target)
	if c.Interval == 0 {
		c.Interval = Duration(DefaultCheckInterval)
	}
	var endpoint string
	if len(addrs) > 0 {
		endpoint = netip.AddrPortFrom(addrs[0], port).String()
	}
	switch c.Type {
	case "tcp":
		if proto == "udp" {
			// A TCP connect to a UDP service's port says nothing of the
			// UDP socket: it fails where nothing listens on TCP, and passes
			// for a TCP listener while the UDP one is dead.
			return nil, &FieldError{"check.type", c.Type, "a udp instance is not checked with tcp: use ttl (the service sends heartbeats) or http"}
		}
		if c.Target == "" {
			c.Target = endpoint
		}
		if _, p, err := net.SplitHostPort(c.Target); err != nil || p == "" {
			return nil, &FieldError{"check.target", c.Target, "want HOST:PORT for a tcp check"}
		}
	case "http":
		if c.Target == "" && endpoint != "" {
			c.Target = "http://" + endpoint + "/"
		}
		u, err := url.Parse(c.Target)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return nil, &FieldError{"check.target", c.Target, "want an http:// or https:// URL"}
		}
	case "ttl":
		if c.Target != "" {
			return nil, &FieldError{"check.target", c.Target, "a ttl check has no target: the service sends heartbeats"}
		}
	}
	if err := checkTarget(c, addrs, owner); err != nil {
		return nil, &FieldError{"check.target", c.Target, err.Error()}
	}
	// fillInstance checks the type and the interval's bounds.
	return &c, nil
}

// hostForAddr names a host after its address, "h-127-0-0-1" or
// "h-2001-db8--1", so that a registration with only an address gets a
// stable SRV target that reads as what it is.
func hostForAddr(a netip.Addr) string {
	// strings.Map, not a Replacer: a Replacer built per registration was
	// 2% of what one allocated.
	return "h-" + strings.Map(func(r rune) rune {
		if r == '.' || r == ':' {
			return '-'
		}
		return r
	}, a.Unmap().WithZone("").String())
}
