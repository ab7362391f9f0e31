package web

import (
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/annuaire/annuaire/registry"
	"github.com/annuaire/annuaire/resolver"
)

// The page's pictures, as data for page.html: a Lookup's chain becomes
// boxes joined by arrows, name → DNS record → host → address → port →
// process, and the registry's instances of a type become a card around
// their chain. The server draws them; the page's script only swaps in
// what the server drew, so there is one drawing and it needs no script.

// A box is one link of the chain.
type box struct {
	Kind   string   // the CSS class: name, dns, host, addr, port, proc, miss or error
	Label  string   // "SRV query"
	Values []string // one line each; none draws "—"
	Meta   string   // the small print under the values
	// Set on a DNS step: answered from the resolver's cache, why no
	// query was sent, what went wrong.
	Cached  bool
	Skipped string
	Err     string
}

var queryLabels = map[string]string{"srv": "SRV query", "mx": "MX query", "address": "address query"}

// chainBoxes draws a Lookup's chain. procs are the registry's processes
// at its candidates; withProcs false leaves the process box out. A failed
// lookup ends at its failing steps, in red, with their rcodes.
func chainBoxes(t *resolver.Chain, procs []chainProcess, withProcs bool, l lang) []box {
	failed := t.Error != ""
	var boxes []box
	nameMeta := l.t("symbolic name")
	for _, s := range t.Steps {
		if s.Step == "normalize" && len(s.Answers) > 0 {
			nameMeta = s.Answers[0]
			if t.Service != "" && nameMeta == "service "+t.Service+" over "+t.Proto+" in zone "+t.Zone {
				nameMeta = l.f("service %s over %s in zone %s", t.Service, t.Proto, t.Zone)
			}
			break
		}
	}
	boxes = append(boxes, box{Kind: "name", Label: l.t("name"), Values: lines(t.Name), Meta: nameMeta})

	hostShown := false
	portFrom := ""
	via := "" // the record that named the host: SRV or MX
	for _, s := range t.Steps {
		switch s.Step {
		case "normalize", "connect":
			continue
		case "well-known":
			if portFrom == "" {
				portFrom = l.t("well-known port, from the IANA catalog built in")
			}
			if failed {
				boxes = append(boxes, box{Kind: "port", Label: l.t("well-known port"), Values: lines(append(slices.Clip(s.Answers), s.Question)...), Meta: s.Skipped})
			}
			continue
		}
		if s.Step == "address" && !hostShown && len(t.Candidates) > 0 {
			hostShown = true
			meta := l.t("the name itself")
			if via != "" {
				meta = l.f("the %s target", via)
			}
			var hosts []string
			for _, c := range t.Candidates {
				hosts = appendNew(hosts, c.Host)
			}
			boxes = append(boxes, box{Kind: "host", Label: l.t("host"), Values: hosts, Meta: meta})
		}
		miss := missed(s)
		b := box{Kind: "dns", Label: s.Step, Values: lines(s.Question), Meta: stepMeta(s, l),
			Cached: s.Cached, Skipped: l.t(s.Skipped), Err: s.Error}
		if s.Step == "address" {
			b.Kind = "addr"
		}
		if label, ok := queryLabels[s.Step]; ok {
			b.Label = lang.t(l, label)
		}
		if miss != "" {
			b.Kind = "miss"
			if failed {
				b.Kind = "error"
			}
			b.Values = append(b.Values, miss)
		} else {
			for _, a := range s.Answers {
				b.Values = append(b.Values, rrData(a))
			}
			if s.Step == "srv" || s.Step == "mx" {
				via = strings.ToUpper(s.Step)
				if portFrom == "" {
					portFrom = l.t(map[string]string{"srv": "from the SRV record", "mx": "the mail port"}[s.Step])
				}
			}
		}
		boxes = append(boxes, b)
	}

	if failed {
		// The error names every step; its last part is the conclusion.
		msg := t.Error[strings.LastIndex(t.Error, "; ")+1:]
		msg = strings.TrimSpace(msg)
		msg = strings.TrimSpace(strings.TrimPrefix(msg, t.Name+":"))
		return append(boxes, box{Kind: "error", Label: l.t("no process"), Values: lines(l.t("not reachable")), Meta: msg})
	}
	if len(t.Candidates) > 0 {
		var ports []string
		for _, c := range t.Candidates {
			ports = appendNew(ports, strconv.Itoa(int(c.Port)))
		}
		if portFrom == "" {
			portFrom = l.t("given")
		}
		boxes = append(boxes, box{Kind: "port", Label: l.t("port"), Values: ports, Meta: l.f("%s · picks the process", portFrom)})
	}
	if withProcs {
		if len(procs) == 0 {
			return append(boxes, box{Kind: "proc", Label: l.t("process"), Values: lines(l.t("not in the registry")),
				Meta: l.t("the chain points where no registered instance is")})
		}
		b := box{Kind: "proc", Label: l.t("process")}
		var where []string
		for _, p := range procs {
			b.Values = append(b.Values, l.process(p.Process))
			w := p.Endpoint
			if p.Instance != "" {
				w = l.f("%s at %s", shown(string(p.Instance)), w)
			}
			where = append(where, w)
		}
		b.Meta = strings.Join(where, ", ")
		boxes = append(boxes, b)
	}
	return boxes
}

// missed says how a DNS step found nothing: its rcode, NODATA for an
// empty NOERROR answer (RFC 2308 section 2.2), or "error"; "" when it
// found records.
func missed(s resolver.Step) string {
	switch {
	case s.Error != "" && s.Rcode != "":
		return s.Rcode
	case s.Error != "":
		return "error"
	case s.Rcode != "" && s.Rcode != "NOERROR":
		return s.Rcode
	case s.Rcode == "NOERROR" && len(s.Answers) == 0:
		return "NODATA"
	}
	return ""
}

func stepMeta(s resolver.Step, l lang) string {
	var meta []string
	if s.Server != "" {
		meta = append(meta, l.f("asked %s", s.Server))
	}
	if s.Rcode != "" {
		meta = append(meta, s.Rcode)
	}
	if len(s.Answers) > 0 {
		if f := strings.SplitN(s.Answers[0], " ", 3); len(f) == 3 {
			meta = append(meta, l.f("ttl %s", f[1]))
		}
	}
	switch us := s.DurationUS; {
	case us >= 1000:
		meta = append(meta, strconv.FormatFloat(float64(us)/1000, 'f', 1, 64)+" ms")
	case us > 0:
		meta = append(meta, strconv.FormatInt(us, 10)+" µs")
	}
	return strings.Join(meta, " · ")
}

// rrData strips the owner, TTL, class and type from a record in
// zone-file form: "box.svc.internal. 10 IN A 127.0.0.1" → "127.0.0.1".
func rrData(rr string) string {
	f := strings.SplitN(rr, " ", 5)
	if len(f) < 5 {
		return rr
	}
	return f[4]
}

// lines drops empty values: an empty box draws "—".
func lines(vs ...string) []string {
	return slices.DeleteFunc(vs, func(v string) bool { return v == "" })
}

func appendNew(list []string, v string) []string {
	if slices.Contains(list, v) {
		return list
	}
	return append(list, v)
}

// A card is one service type: its chain and its instances.
type card struct {
	Type       string // "_echo._tcp"
	Name       string // "echo"
	LookupName string // "echo/udp", as `annuaire lookup` takes it
	Passing    int
	Instances  []Service

	Chain    []box  // nil when there is no picture
	ChainErr string // the Lookup failed without a trace
	Pending  string // no picture yet, and why
	Age      *chainAge
	TryIt    string // "nc 127.0.0.1 7007"
}

// chainAge says when and how a card's chain was looked up.
type chainAge struct {
	At     time.Time
	Serial uint32
	Fresh  bool
}

// Critical reports whether no instance of the type is in DNS.
func (c card) Critical() bool { return c.Passing == 0 }

// directory is the page's directory section.
type directory struct {
	Serial    uint32
	Instances int
	Cards     []card
	Omitted   int // service types without a chain (MaxChains)
	Looked    int // service types with one
	Class     []student
}

// A student is one student token's row of the class view: what it
// registered.
type student struct {
	Name      string
	Instances []Service
	Passing   int
}

// drawDirectory groups the registry's instances by type and puts each
// type's chain in its card. set is nil while the lookups run, or when
// the server has none (lookups is false).
func (s *Server) drawDirectory(snap *registry.Snapshot, set *chainSet, lookups bool, l lang) *directory {
	views := s.views(snap)
	d := &directory{Serial: snap.Serial(), Instances: len(views)}
	var byType map[string]*typeChain
	if set != nil {
		byType = make(map[string]*typeChain, len(set.Chains))
		for i := range set.Chains {
			byType[set.Chains[i].Type] = &set.Chains[i]
		}
		d.Omitted, d.Looked = set.Omitted, len(set.Chains)
	}
	// views is sorted by service, proto and id: a type's instances are
	// neighbours, and types come in the order of their "_name._proto".
	for i := 0; i < len(views); {
		first := views[i]
		j := i
		for j < len(views) && views[j].Name == first.Name && views[j].Proto == first.Proto {
			j++
		}
		c := card{Type: "_" + first.Name + "._" + first.Proto, Name: first.Name, LookupName: first.Name, Instances: views[i:j]}
		if first.Proto != "tcp" {
			c.LookupName += "/" + first.Proto
		}
		for _, v := range c.Instances {
			if v.Healthy() {
				c.Passing++
			}
		}
		tc := byType[c.Type]
		switch {
		case tc != nil && tc.Trace != nil:
			c.Chain = chainBoxes(tc.Trace, tc.Processes, true, l)
		case tc != nil:
			c.ChainErr = l.f("lookup %s: %s", c.LookupName, tc.Error)
		case set != nil:
			c.Pending = l.f("not looked up: the page draws at most %d chains", MaxChains)
		case lookups:
			c.Pending = l.t("waiting for the lookups…")
		}
		if tc != nil {
			c.Age = &chainAge{At: set.At, Serial: set.Serial, Fresh: set.Fresh}
			if len(tc.Processes) > 0 {
				c.TryIt = tryIt(first.Proto, tc.Processes[0].Endpoint)
			}
		}
		d.Cards = append(d.Cards, c)
		i = j
	}
	d.Class = s.class(views)
	return d
}

// class is the class view: every student token, with the instances it
// holds, and the owners of instances whose token was revoked; nil when
// there are neither.
func (s *Server) class(views []Service) []student {
	byName := map[string]*student{}
	var names []string
	add := func(name string) *student {
		if st := byName[name]; st != nil {
			return st
		}
		byName[name] = &student{Name: name}
		names = append(names, name)
		return byName[name]
	}
	if s.Tokens != nil {
		list, err := s.Tokens.List()
		if err != nil {
			s.logger().Warn("web: class view without the tokens", "err", err)
		}
		for _, t := range list {
			add(t.Name)
		}
	}
	for _, v := range views {
		if v.Owner == "" {
			continue
		}
		st := add(v.Owner)
		st.Instances = append(st.Instances, v)
		if v.Healthy() {
			st.Passing++
		}
	}
	slices.Sort(names)
	out := make([]student, 0, len(names))
	for _, n := range names {
		out = append(out, *byName[n])
	}
	if len(out) == 0 {
		return nil
	}
	return out
}

// tryIt is the nc command line that reaches endpoint.
func tryIt(proto, endpoint string) string {
	i := strings.LastIndexByte(endpoint, ':')
	if i < 0 {
		return ""
	}
	host := strings.TrimSuffix(strings.TrimPrefix(endpoint[:i], "["), "]")
	cmd := "nc "
	if proto == "udp" {
		cmd = "nc -u "
	}
	return cmd + host + " " + endpoint[i+1:]
}

// checkText says how an instance's health is checked, "" when it is not.
func checkText(l lang, c *registry.Check) string {
	if c == nil {
		return ""
	}
	t := c.Type
	if c.Target != "" {
		t += " " + c.Target
	}
	return l.f("%s every %v", t, time.Duration(c.Interval))
}
