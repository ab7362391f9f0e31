package resolver

import (
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/annuaire/annuaire/registry"
)

// A Chain is what a lookup did and found: every step from the name to the
// addresses and ports, and the candidates a dial tries, in order. It
// marshals to the JSON the web page and the console render. A Chain
// returned by Lookup is the caller's, but its Answers slices are shared
// with the cache and must not be modified.
type Chain struct {
	Name    string `json:"name"`    // as the caller gave it
	Service string `json:"service"` // canonical service name: mail → smtp
	Proto   string `json:"proto"`   // tcp or udp
	Zone    string `json:"zone"`    // fully qualified
	Steps   []Step `json:"steps"`
	// TXT is the TXT record of a DNS-SD instance looked up by its name
	// (RFC 6763 section 6): its strings in order, as the bytes served; a
	// string that is not UTF-8 is {"base64": "..."} in JSON.
	TXT        registry.TXT `json:"txt,omitempty"`
	Candidates []Candidate  `json:"candidates"`
	Error      string       `json:"error"` // "" when the chain succeeded

	start time.Time // when a timed chain (a dial's trace) began; zero otherwise
}

// add appends a step. In a timed chain the step's start is counted from
// the chain's: it began its duration before it is added.
func (c *Chain) add(s Step) {
	if !c.start.IsZero() {
		s.StartUS = max(time.Since(c.start).Microseconds()-s.DurationUS, 0)
	}
	c.Steps = append(c.Steps, s)
}

// fail ends the chain with err, as a *LookupError.
func (c *Chain) fail(step, server string, err error) *LookupError {
	e := &LookupError{Name: c.Name, Step: step, Server: server, Err: err, Chain: c}
	c.Error = e.Error()
	return e
}

// A Step is one step of the chain: a DNS question and its answer, a
// catalog look-up, something set aside, or a connection attempt.
type Step struct {
	// Step is one of normalize, srv, mx, address, well-known, skip
	// (a record or additional data not used, and why), connect.
	Step string `json:"step"`
	// Question is the DNS question ("_echo._tcp.svc.internal. SRV"), the
	// catalog entry looked up, or the address:port connected to.
	Question string `json:"question"`
	Server   string `json:"server"`
	// Answers are the records found, in zone-file form with their TTLs,
	// or what the step concluded.
	Answers    []string `json:"answers"`
	Rcode      string   `json:"rcode"`
	Cached     bool     `json:"cached"`
	DurationUS int64    `json:"duration_us"`
	// StartUS is when the step began, in microseconds from the start of
	// a dial (DialTrace, DialChain), so that the trace shows its attempts
	// racing (RFC 8305); 0 in a Lookup's chain.
	StartUS int64 `json:"start_us"`
	// Skipped says why no query was sent, when none was.
	Skipped string `json:"skipped"`
	Error   string `json:"error"`
}

// A Candidate is one address:port a dial tries, in the order it tries them.
type Candidate struct {
	Host     string `json:"host"`    // the SRV or MX target, or the name looked up
	Address  string `json:"address"` // an IP address; "" when the system resolves Host at connect
	Port     uint16 `json:"port"`
	Priority uint16 `json:"priority"` // SRV priority or MX preference
	Weight   uint16 `json:"weight"`
}

// HostPort is the candidate's address and port, as net.Dial takes them.
func (c Candidate) HostPort() string {
	if c.Address == "" {
		return net.JoinHostPort(strings.TrimSuffix(c.Host, "."), strconv.Itoa(int(c.Port)))
	}
	return net.JoinHostPort(c.Address, strconv.Itoa(int(c.Port)))
}

// outcome summarises a step in a few words: its answers' data, its rcode
// or its error.
func (s Step) outcome() string {
	switch {
	case s.Error != "":
		return s.Error
	case len(s.Answers) == 0 && s.Rcode == "" && s.Skipped != "":
		return s.Skipped
	case s.Rcode != "" && s.Rcode != "NOERROR":
		return s.Rcode
	case len(s.Answers) == 0 && s.Rcode == "NOERROR":
		return "NODATA"
	}
	data := make([]string, len(s.Answers))
	for i, a := range s.Answers {
		data[i] = rdata(a)
	}
	return strings.Join(data, ", ")
}

// rdata strips the owner, TTL, class and type from a record in zone-file
// form: "box.svc.internal. 10 IN A 127.0.0.1" → "127.0.0.1".
func rdata(rr string) string {
	f := rrFields(rr, 5)
	if len(f) < 5 {
		return rr
	}
	return f[4]
}

// rrFields splits a record in zone-file form into at most n fields at
// its spaces, but not at an escaped one: an owner name may hold "\ "
// (a DNS-SD instance name, RFC 6763 section 4.3).
func rrFields(rr string, n int) []string {
	var f []string
	start := 0
	for i := 0; i < len(rr) && len(f) < n-1; i++ {
		switch rr[i] {
		case '\\':
			i++ // the escaped byte, or the first digit of \DDD
		case ' ':
			f = append(f, rr[start:i])
			start = i + 1
		}
	}
	return append(f, rr[start:])
}

// ttl returns the TTL of a record in zone-file form, or "".
func ttl(rr string) string {
	f := rrFields(rr, 3)
	if len(f) < 3 {
		return ""
	}
	return f[1]
}

// Text renders the chain for a reader of the course: what the name was
// read as, one line per step with the question asked and what was found,
// then the whole chain on one line ending with the ADDRESS:PORT a dial
// connects to (or tries first):
//
//	echo: service echo over tcp in zone svc.internal.
//	  srv        _echo._tcp.svc.internal. SRV → 0 0 39401 vm.svc.internal.   (ttl 10, 127.0.0.1:1053, 3.978ms)
//	  address    vm.svc.internal. A → 127.0.0.1   (ttl 10, no query: the address came in the answer's additional section)
//	echo → _echo._tcp.svc.internal. SRV 0 0 39401 vm.svc.internal. → vm.svc.internal. A 127.0.0.1 → 127.0.0.1:39401
//
// DNS gives the address, the port picks the process.
func (c *Chain) Text() string {
	var b strings.Builder
	// A dial's trace says when each step began, so that the race shows.
	dialed := slices.ContainsFunc(c.Steps, func(s Step) bool { return s.Step == "connect" })
	for _, s := range c.Steps {
		if s.Step == "normalize" {
			fmt.Fprintf(&b, "%s: %s\n", c.Name, strings.Join(s.Answers, "; "))
			continue
		}
		outcome := s.outcome()
		fmt.Fprintf(&b, "  %-10s %s → %s", s.Step, s.Question, outcome)
		var notes []string
		if dialed {
			notes = append(notes, "at +"+fmtOffset(s.StartUS))
		}
		if len(s.Answers) > 0 && s.Error == "" && (s.Step == "srv" || s.Step == "mx" || s.Step == "address") {
			notes = append(notes, "ttl "+ttl(s.Answers[0]))
		}
		switch {
		case s.Skipped == outcome:
			if s.DurationUS > 0 {
				notes = append(notes, "waited "+fmtDuration(s.DurationUS))
			}
		case s.Skipped != "":
			notes = append(notes, s.Skipped)
		case s.Cached:
			notes = append(notes, "cached")
		case s.Server != "":
			notes = append(notes, s.Server, fmtDuration(s.DurationUS))
		case s.Step == "connect":
			notes = append(notes, fmtDuration(s.DurationUS))
		}
		if len(notes) > 0 {
			b.WriteString("   (" + strings.Join(notes, ", ") + ")")
		}
		b.WriteByte('\n')
	}
	if len(c.Candidates) > 1 {
		b.WriteString("  candidates, in the order a dial tries them:")
		for _, cd := range c.Candidates {
			b.WriteString(" " + cd.HostPort())
		}
		b.WriteByte('\n')
	}
	if c.Error != "" {
		// The steps are listed above: only the conclusion, the last part
		// of the error, is left to say.
		msg := c.Error[strings.LastIndex(c.Error, "; ")+1:]
		fmt.Fprintf(&b, "%s → failed: %s\n", c.Name, strings.TrimSpace(strings.TrimPrefix(msg, c.Name+":")))
		return b.String()
	}
	b.WriteString(c.Summary())
	b.WriteByte('\n')
	return b.String()
}

// Summary is the chain on one line, from the name to the candidate a dial
// connected to, or else the first one: name → SRV → host → address →
// ADDRESS:PORT.
func (c *Chain) Summary() string {
	if len(c.Candidates) == 0 {
		return c.Name + " → ?"
	}
	first := c.Candidates[0]
	for _, s := range c.Steps {
		if s.Step == "connect" && s.Error == "" {
			for _, cd := range c.Candidates {
				if cd.HostPort() == s.Question {
					first = cd
				}
			}
		}
	}
	// The steps come in the order they ran; the line reads in the chain's.
	var target, address, port string
	for _, s := range c.Steps {
		if s.Error != "" {
			continue
		}
		for _, a := range s.Answers {
			switch {
			case target == "" && (s.Step == "srv" || s.Step == "mx") && pointsAt(a, first):
				target = owner(a) + " " + typeOf(a) + " " + rdata(a)
			case address == "" && s.Step == "address" && strings.EqualFold(owner(a), first.Host) && rdata(a) == first.Address:
				address = owner(a) + " " + typeOf(a) + " " + first.Address
			case port == "" && s.Step == "well-known":
				port = "port " + a
			}
		}
	}
	parts := []string{c.Name}
	for _, p := range []string{target, address, port} {
		if p != "" {
			parts = append(parts, p)
		}
	}
	return strings.Join(append(parts, first.HostPort()), " → ")
}

// pointsAt reports whether an SRV or MX record in zone-file form names
// the candidate's host (and, for SRV, its port).
func pointsAt(rr string, cd Candidate) bool {
	f := strings.Fields(rdata(rr))
	if len(f) == 0 || !strings.EqualFold(f[len(f)-1], cd.Host) {
		return false
	}
	return typeOf(rr) != "SRV" || len(f) == 4 && f[2] == strconv.Itoa(int(cd.Port))
}

func owner(rr string) string { return rrFields(rr, 2)[0] }

func typeOf(rr string) string {
	f := rrFields(rr, 5)
	if len(f) < 5 {
		return ""
	}
	return f[3]
}

// fmtOffset is a step's start to a tenth of a millisecond, enough to
// see 50 ms and 250 ms delays without the noise of microseconds.
func fmtOffset(us int64) string {
	d := time.Duration(us) * time.Microsecond
	if d >= time.Millisecond {
		d = d.Round(100 * time.Microsecond)
	}
	return d.String()
}

func fmtDuration(us int64) string {
	return time.Duration(us * int64(time.Microsecond)).String()
}
