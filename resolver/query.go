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

	"github.com/miekg/dns"
)

// An answer is the outcome of one DNS question, as cached.
type answer struct {
	question string // "_echo._tcp.svc.internal. SRV", for steps and errors
	server   string // who answered, or who was asked last
	rcode    int
	records  []dns.RR    // answer-section records of the type asked
	extra    []hostAddrs // additional-section addresses by host (RFC 2782 "Additional data")
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
	v6, v4, addrs   []string // addrs: IPv6 first, as RFC 8305 section 4 sorts them
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
	k := qkey{strings.ToLower(name), qtype}
	if !r.NoCache {
		if a := r.cache.get(k, time.Now()); a != nil {
			return a, a.step(kind, true)
		}
	}
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
		a := &answer{question: name + " " + dns.TypeToString[qtype], err: ctx.Err()}
		return a, a.step(kind, false)
	}
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

// exchange sends one question to each server in turn until one gives an
// authoritative-enough answer (NOERROR or NXDOMAIN). A UDP answer with TC
// set is asked again over TCP (RFC 7766 section 5).
func (r *Resolver) exchange(ctx context.Context, name string, qtype uint16) *answer {
	a := &answer{question: name + " " + dns.TypeToString[qtype]}
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(name), qtype)
	m.RecursionDesired = true // needed when Server is a recursive resolver; ignored by authorities
	m.SetEdns0(1232, false)   // DNS Flag Day 2020's safe UDP size
	var errs []error
	for _, srv := range r.servers {
		a.server = srv
		c := dns.Client{Net: "udp", Timeout: r.timeout()}
		start := time.Now()
		in, _, err := c.ExchangeContext(ctx, m, srv)
		if err == nil && in.Truncated {
			c.Net = "tcp"
			in, _, err = c.ExchangeContext(ctx, m, srv)
		}
		a.rtt = time.Since(start)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", srv, brief(err, c.Timeout)))
			continue
		}
		if in.Rcode != dns.RcodeSuccess && in.Rcode != dns.RcodeNameError {
			errs = append(errs, fmt.Errorf("%s answered %s", srv, dns.RcodeToString[in.Rcode]))
			continue
		}
		a.fill(in, qtype)
		return a
	}
	a.err = fmt.Errorf("%w: %w", ErrServerUnreachable, errors.Join(errs...))
	return a
}

// brief shortens a network error to what a reader needs, keeping it
// for errors.Is: "read udp 127.0.0.1:37928->127.0.0.1:9: read: connection
// refused" becomes "connection refused".
func brief(err error, timeout time.Duration) error {
	var op *net.OpError
	if !errors.As(err, &op) {
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

// fill keeps what the chain needs from a response and computes how long
// it may be cached.
func (a *answer) fill(in *dns.Msg, qtype uint16) {
	a.rcode = in.Rcode
	now := time.Now()
	var ttl uint32
	first := true
	for _, rr := range in.Answer {
		a.text = append(a.text, strings.ReplaceAll(rr.String(), "\t", " "))
		if rr.Header().Rrtype != qtype {
			continue // a CNAME on the way, from a recursive resolver
		}
		a.records = append(a.records, rr)
		if first || rr.Header().Ttl < ttl {
			ttl, first = rr.Header().Ttl, false
		}
	}
	// The additional section is read once here, so that a cached answer
	// gives its targets' addresses without parsing or formatting.
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
	for i := range a.extra {
		h := &a.extra[i]
		h.addrs = append(slices.Clip(h.v6), h.v4...)
	}
	if len(a.records) == 0 {
		// Negative answer: cacheable only with the SOA (RFC 2308 section 5),
		// for min(SOA TTL, SOA MINIMUM) (section 3).
		first = true
		for _, rr := range in.Ns {
			if soa, ok := rr.(*dns.SOA); ok {
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
}
