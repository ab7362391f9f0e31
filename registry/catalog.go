package registry

import (
	"bufio"
	_ "embed"
	"fmt"
	"strconv"
	"strings"
)

//go:embed catalog.txt
var catalogText string

// A WellKnown is one entry of the catalog: a service name, its port and the
// transport protocols IANA assigned it, and the aliases users type instead.
type WellKnown struct {
	Name    string   `json:"name"`
	Port    uint16   `json:"port"`
	Protos  []string `json:"protos"`
	Aliases []string `json:"aliases,omitempty"`
}

// A Catalog maps well-known service names and their aliases to ports, the
// way /etc/services does for getservbyname(3). Its zero value is empty; use
// [DefaultCatalog] for IANA's registry.
type Catalog struct {
	byName map[string]*WellKnown // canonical names and aliases, lowercase
	byPort map[string]*WellKnown // "25/tcp"
	all    []*WellKnown          // in file order
}

// DefaultCatalog parses the catalog embedded in the binary: IANA's service
// names and port numbers as Debian's netbase ships them.
func DefaultCatalog() *Catalog {
	c, err := ParseCatalog(catalogText)
	if err != nil {
		// The embedded file is tested; failing here is a build defect.
		panic(err)
	}
	return c
}

// ParseCatalog reads text in /etc/services format: "name port/proto
// [aliases...] [# comment]", one entry per line.
func ParseCatalog(text string) (*Catalog, error) {
	c := &Catalog{byName: map[string]*WellKnown{}, byPort: map[string]*WellKnown{}}
	sc := bufio.NewScanner(strings.NewReader(text))
	for n := 1; sc.Scan(); n++ {
		line, _, _ := strings.Cut(sc.Text(), "#")
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		if len(f) < 2 {
			return nil, fmt.Errorf("catalog line %d: want \"name port/proto\", got %q", n, sc.Text())
		}
		portStr, proto, ok := strings.Cut(f[1], "/")
		port, err := strconv.ParseUint(portStr, 10, 16)
		if !ok || err != nil || port == 0 || (proto != "tcp" && proto != "udp" && proto != "sctp") {
			return nil, fmt.Errorf("catalog line %d: bad port/proto %q", n, f[1])
		}
		name := FoldName(f[0])
		wk := c.byName[name]
		if wk == nil || wk.Name != name || wk.Port != uint16(port) {
			wk = &WellKnown{Name: name, Port: uint16(port)}
			c.all = append(c.all, wk)
			if _, taken := c.byName[name]; !taken {
				c.byName[name] = wk
			}
		}
		if !contains(wk.Protos, proto) {
			wk.Protos = append(wk.Protos, proto)
		}
		for _, a := range f[2:] {
			a = FoldName(a)
			if !contains(wk.Aliases, a) {
				wk.Aliases = append(wk.Aliases, a)
			}
			if _, taken := c.byName[a]; !taken {
				c.byName[a] = wk
			}
		}
		key := portKey(uint16(port), proto)
		if _, taken := c.byPort[key]; !taken {
			c.byPort[key] = wk
		}
	}
	return c, sc.Err()
}

// Lookup finds a service by its canonical name or an alias, ignoring case:
// Lookup("mail") is smtp, port 25.
func (c *Catalog) Lookup(name string) (WellKnown, bool) {
	if c == nil {
		return WellKnown{}, false
	}
	wk, ok := c.byName[FoldName(name)]
	if !ok {
		return WellKnown{}, false
	}
	return *wk, true
}

// Canonical returns the canonical name for name, or name itself lowercased
// when the catalog does not know it.
func (c *Catalog) Canonical(name string) string {
	if wk, ok := c.Lookup(name); ok {
		return wk.Name
	}
	return FoldName(name)
}

// ByPort finds the service IANA assigned to port over proto.
func (c *Catalog) ByPort(port uint16, proto string) (WellKnown, bool) {
	if c == nil {
		return WellKnown{}, false
	}
	wk, ok := c.byPort[portKey(port, FoldName(proto))]
	if !ok {
		return WellKnown{}, false
	}
	return *wk, true
}

// All returns every entry in catalog order.
func (c *Catalog) All() []WellKnown {
	if c == nil {
		return nil
	}
	out := make([]WellKnown, len(c.all))
	for i, wk := range c.all {
		out[i] = *wk
	}
	return out
}

func portKey(port uint16, proto string) string { return strconv.Itoa(int(port)) + "/" + proto }

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
