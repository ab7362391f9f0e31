package resolver

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/annuaire/annuaire/registry"
	"github.com/miekg/dns"
)

// An answer is the outcome of one DNS question, as cached.
type answer struct {
	question string // "_echo._tcp.svc.internal. SRV", for steps and errors
	server   string // who answered, or who was asked last
	rcode    int
	records  []dns.RR    // answer-section records of the type asked
	addrs    []string    // their addresses, when the type is A or AAAA
	extra    []hostAddrs // additional-section addresses by host (RFC 2782 "Additional data")
	zone     string      // the zone the authority section named, lowercase; "" if none
	text     []string    // the whole answer section in zone-file form
	rtt      time.Duration
	expires  time.Time
	err      error // wraps ErrServerUnreachable; never cached
}

// maxTTL caps how long anything is cached, whatever the server says.
const maxTTL = 24 * time.Hour

// maxEntries bounds the cache; beyond it expired entries are swept first,
// then arbitrary ones.
const maxEntries = 4096

// hostAddrs are one host's addresses from an additional section.
type hostAddrs struct {
	name            string
	v6, v4          []string
	textA, textAAAA []string // the records in zone-file form
}

type qkey struct {
	name  string // lowercase, fully qualified
	qtype uint16
}

// A cache holds answers until their TTL runs out: positive answers for the
// smallest TTL of the RRset, negative ones (NXDOMAIN, NODATA) for the
// SOA's min(TTL, MINIMUM) as RFC 2308 section 5 says.
type cache struct {
	mu sync.RWMutex // guards m
	m  map[qkey]*answer
}

func (c *cache) get(k qkey, now time.Time) *answer {
	c.mu.RLock()
	a := c.m[k]
	c.mu.RUnlock()
	if a == nil || !now.Before(a.expires) {
		return nil
	}
	return a
}

func (c *cache) put(k qkey, a *answer, now time.Time) {
	if a.err != nil || !now.Before(a.expires) {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil {
		c.m = make(map[qkey]*answer)
	}
	if len(c.m) >= maxEntries {
		for k, old := range c.m {
			if !now.Before(old.expires) {
				delete(c.m, k)
			}
		}
		for k := range c.m {
			if len(c.m) < maxEntries {
				break
			}
			delete(c.m, k)
		}
	}
	c.m[k] = a
}

// query asks one question, from the cache when it can, and returns the
// answer and the step that records it. Concurrent identical questions are
// sent once (singleflight); the flight does not inherit the cancellation
// of whichever caller started it, so one caller giving up fails no other.
func (r *Resolver) query(ctx context.Context, kind, name string, qtype uint16) (*answer, Step) {
	now := time.Now()
	if a := r.cachedAnswer(name, qtype, now); a != nil {
		return a, a.step(kind, true)
	}
	k := qkey{registry.FoldName(name), qtype}
	ch := r.flight.DoChan(k.name+"/"+dns.TypeToString[qtype], func() (any, error) {
		if !r.NoCache {
			if a := r.cache.get(k, time.Now()); a != nil {
				return a, nil // a flight that just ended filled it
			}
		}
		a := r.exchange(context.WithoutCancel(ctx), name, qtype)
		if !r.NoCache {
			r.cache.put(k, a, time.Now())
		}
		return a, nil
	})
	select {
	case res := <-ch:
		a := res.Val.(*answer)
		return a, a.step(kind, false)
	case <-ctx.Done():
		a := &answer{question: name + " " + dns.TypeToString[qtype], err: ctx.Err(), rtt: time.Since(now)}
		return a, a.step(kind, false)
	}
}

// cachedAnswer is the cached answer to a question, or nil.
func (r *Resolver) cachedAnswer(name string, qtype uint16, now time.Time) *answer {
	if r.NoCache {
		return nil
	}
	return r.cache.get(qkey{registry.FoldName(name), qtype}, now)
}

func (a *answer) step(kind string, cached bool) Step {
	s := Step{Step: kind, Question: a.question, Server: a.server, Answers: a.text, Cached: cached}
	if s.Answers == nil {
		s.Answers = []string{}
	}
	if !cached {
		s.DurationUS = a.rtt.Microseconds()
	}
	if a.err != nil {
		s.Error = a.err.Error()
		return s
	}
	s.Rcode = dns.RcodeToString[a.rcode]
	return s
}

// ednsSize is the UDP answer size asked for: DNS Flag Day 2020's safe size.
const ednsSize = 1232

// exchange sends one question to each server in turn until one gives a
// usable answer: NOERROR or NXDOMAIN, to the question asked, with records
// only of names the question leads to. A UDP answer with TC set is asked
// again over TCP (RFC 7766 section 5). A server that fails, or answers
// something else, costs its turn; the error names each.
func (r *Resolver) exchange(ctx context.Context, name string, qtype uint16) *answer {
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(name), qtype)
	m.RecursionDesired = true // needed when Server is a recursive resolver; ignored by authorities
	m.SetEdns0(ednsSize, false)
	var errs []error
	unreachable := false
	a := &answer{}
	for _, srv := range r.servers {
		a = &answer{question: name + " " + dns.TypeToString[qtype], server: srv}
		start := time.Now()
		in, err := r.roundTrip(ctx, "udp", srv, m)
		if err == nil && in.Truncated {
			in, err = r.roundTrip(ctx, "tcp", srv, m)
		}
		a.rtt = time.Since(start)
		if err == nil && in.Rcode != dns.RcodeSuccess && in.Rcode != dns.RcodeNameError {
			err = fmt.Errorf("%s answered %s", srv, dns.RcodeToString[in.Rcode])
		}
		if err == nil {
			if err = a.fill(in, qtype); err != nil {
				err = fmt.Errorf("%w from %s: %w", ErrBadAnswer, srv, err)
			}
		}
		if err != nil {
			unreachable = unreachable || !errors.Is(err, ErrBadAnswer)
			errs = append(errs, err)
			continue
		}
		return a
	}
	a.err = joinErrors(errs)
	if unreachable {
		a.err = fmt.Errorf("%w: %w", ErrServerUnreachable, a.err)
	}
	return a
}

// roundTrip sends m to server over network and returns the response to
// it. Over UDP, datagrams that are not the response — unreadable, another
// ID, another question — are ignored and the wait goes on, so that a
// forger who guesses the port still has to guess the ID before the server
// answers (RFC 5452 section 9.1; Go's resolver does the same); if the
// wait ends without the response, the error says what was ignored. Over
// TCP the first message is the response or the server is wrong.
func (r *Resolver) roundTrip(ctx context.Context, network, server string, m *dns.Msg) (*dns.Msg, error) {
	timeout := r.timeout()
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var d net.Dialer
	conn, err := d.DialContext(ctx, network, server)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", server, brief(err, timeout))
	}
	defer conn.Close()
	deadline, _ := ctx.Deadline()
	conn.SetDeadline(deadline)
	co := &dns.Conn{Conn: conn}
	if err := co.WriteMsg(m); err != nil {
		return nil, fmt.Errorf("%s: %w", server, brief(err, timeout))
	}
	if network == "tcp" {
		in, err := co.ReadMsg()
		if err != nil {
			return nil, fmt.Errorf("%s over TCP: %w", server, brief(err, timeout))
		}
		if why := mismatch(m, in); why != "" {
			return nil, fmt.Errorf("%w from %s over TCP: %s", ErrBadAnswer, server, why)
		}
		return in, nil
	}
	buf := make([]byte, ednsSize) // as much as was asked for, as miekg/dns's Client reads
	var ignored []string
	for {
		n, err := conn.Read(buf)
		if err != nil {
			if len(ignored) > 0 {
				return nil, fmt.Errorf("%w from %s: ignored %s, then %w", ErrBadAnswer, server, strings.Join(ignored, ", "), brief(err, timeout))
			}
			return nil, fmt.Errorf("%s: %w", server, brief(err, timeout))
		}
		in := new(dns.Msg)
		why := ""
		if uerr := in.Unpack(buf[:n]); uerr != nil {
			why = "an unreadable datagram"
		} else {
			why = mismatch(m, in)
		}
		if why == "" {
			return in, nil
		}
		ignored = append(ignored, why)
	}
}

// mismatch says why in is not the response to q, or "" if it is: the
// same ID, the QR bit, and the same question (the name compared without
// case: RFC 4343).
func mismatch(q, in *dns.Msg) string {
	switch {
	case in.Id != q.Id:
		return fmt.Sprintf("an answer with ID %d (asked %d)", in.Id, q.Id)
	case !in.Response:
		return "a message that is not a response"
	case len(in.Question) != 1:
		return fmt.Sprintf("an answer with %d questions", len(in.Question))
	}
	aq, qq := in.Question[0], q.Question[0]
	if aq.Qtype != qq.Qtype || aq.Qclass != qq.Qclass || !strings.EqualFold(aq.Name, qq.Name) {
		return "an answer to another question (" + aq.Name + " " + dns.TypeToString[aq.Qtype] + ")"
	}
	return ""
}

// brief shortens a network error to what a reader needs, keeping it
// for errors.Is: "read udp 127.0.0.1:37928->127.0.0.1:9: read: connection
// refused" becomes "connection refused".
func brief(err error, timeout time.Duration) error {
	var op *net.OpError
	if !errors.As(err, &op) {
		if errors.Is(err, context.DeadlineExceeded) {
			return fmt.Errorf("no answer within %v: %w", timeout, os.ErrDeadlineExceeded)
		}
		return err
	}
	if op.Timeout() {
		return fmt.Errorf("no answer within %v: %w", timeout, os.ErrDeadlineExceeded)
	}
	if sc, ok := op.Err.(*os.SyscallError); ok {
		return sc.Err
	}
	return op.Err
}

// fill keeps what the chain may use from a response and computes how
// long it may be cached. Only records owned by the question's name, or by
// a name its CNAME chain in the answer section reaches, answer the
// question (RFC 1034 section 5.3.3, RFC 2181 section 5.4.1); an answer
// section with records of any other name is a lie or a broken server, and
// fill says so rather than pick through it.
func (a *answer) fill(in *dns.Msg, qtype uint16) error {
	qname := in.Question[0].Name
	chain := []string{qname}
	for range in.Answer { // each pass follows one CNAME; a loop ends when no new name comes
		last := chain[len(chain)-1]
		next := ""
		for _, rr := range in.Answer {
			if c, ok := rr.(*dns.CNAME); ok && strings.EqualFold(c.Hdr.Name, last) && !slices.ContainsFunc(chain, equalFold(c.Target)) {
				next = c.Target
				break
			}
		}
		if next == "" {
			break
		}
		chain = append(chain, next)
	}
	a.rcode = in.Rcode
	now := time.Now()
	var ttl uint32
	first := true
	for _, rr := range in.Answer {
		h := rr.Header()
		switch {
		case slices.ContainsFunc(chain, equalFold(h.Name)):
		case h.Rrtype == dns.TypeDNAME && slices.ContainsFunc(chain, func(n string) bool { return dns.IsSubDomain(h.Name, n) }):
			// A DNAME above a name of the chain, with the CNAME it
			// synthesised (RFC 6672 section 3.4).
		default:
			return fmt.Errorf("records of another name (%s %s)", h.Name, dns.TypeToString[h.Rrtype])
		}
		a.text = append(a.text, strings.ReplaceAll(rr.String(), "\t", " "))
		if h.Rrtype != qtype {
			continue // a CNAME on the way, from a recursive resolver
		}
		a.records = append(a.records, rr)
		switch rr := rr.(type) {
		case *dns.A:
			a.addrs = append(a.addrs, rr.A.String())
		case *dns.AAAA:
			a.addrs = append(a.addrs, rr.AAAA.String())
		}
		if first || h.Ttl < ttl {
			ttl, first = h.Ttl, false
		}
	}
	// The zone the answer came from, when the authority section names it
	// (the SOA of a negative answer, the NS of a positive one): additional
	// data is trusted only below it, and only if it is at or below the zone
	// asked, so the server can narrow its bailiwick but never widen it.
	end := chain[len(chain)-1]
	for _, rr := range in.Ns {
		if t := rr.Header().Rrtype; (t == dns.TypeSOA || t == dns.TypeNS) && dns.IsSubDomain(rr.Header().Name, end) {
			a.zone = strings.ToLower(rr.Header().Name)
		}
	}
	// The additional section is read once here, so that a cached answer
	// gives its targets' addresses without parsing or formatting. Whether
	// a host's addresses may be used is decided where they are (inBailiwick).
	for _, rr := range in.Extra {
		var ip, typ string
		switch rr := rr.(type) {
		case *dns.A:
			ip, typ = rr.A.String(), "A"
		case *dns.AAAA:
			ip, typ = rr.AAAA.String(), "AAAA"
		default:
			continue
		}
		i := slices.IndexFunc(a.extra, func(h hostAddrs) bool { return strings.EqualFold(h.name, rr.Header().Name) })
		if i < 0 {
			a.extra = append(a.extra, hostAddrs{name: rr.Header().Name})
			i = len(a.extra) - 1
		}
		h := &a.extra[i]
		if slices.Contains(h.v6, ip) || slices.Contains(h.v4, ip) {
			continue
		}
		text := strings.ReplaceAll(rr.String(), "\t", " ")
		if typ == "A" {
			h.v4, h.textA = append(h.v4, ip), append(h.textA, text)
		} else {
			h.v6, h.textAAAA = append(h.v6, ip), append(h.textAAAA, text)
		}
	}
	if len(a.records) == 0 {
		// Negative answer: cacheable only with the SOA of a zone above the
		// name (RFC 2308 section 5), for min(SOA TTL, SOA MINIMUM)
		// (section 3).
		first = true
		for _, rr := range in.Ns {
			if soa, ok := rr.(*dns.SOA); ok && dns.IsSubDomain(soa.Hdr.Name, end) {
				ttl, first = min(soa.Hdr.Ttl, soa.Minttl), false
			}
		}
		if first {
			ttl = 0
		}
	}
	// RFC 2181 section 8: a TTL with the top bit set means zero.
	if ttl > 1<<31-1 {
		ttl = 0
	}
	a.expires = now.Add(min(time.Duration(ttl)*time.Second, maxTTL))
	return nil
}

func equalFold(s string) func(string) bool {
	return func(t string) bool { return strings.EqualFold(s, t) }
}
