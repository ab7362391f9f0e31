package resolver

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/miekg/dns"
)

// ResolutionDelay is how long a dial that has IPv4 addresses waits for
// the IPv6 ones still being asked for before it starts connecting (RFC
// 8305 section 3 recommends 50 ms).
const ResolutionDelay = 50 * time.Millisecond

// Dial resolves name (see Lookup) and connects, as RFC 8305 (Happy
// Eyeballs v2) describes, one target at a time in the order the chain
// gives (SRV priority and weight, MX preference):
//
//   - a target's AAAA and A are asked at the same time, and connecting
//     starts as soon as AAAA answers, or ResolutionDelay after A answered
//     if AAAA has not (section 3); what arrives later joins the race;
//   - the addresses are tried with the families interleaved, IPv6 first
//     (section 4);
//   - a new attempt starts every FallbackDelay while the earlier ones run,
//     or at once when none is left running (section 5); each is bounded
//     by DialTimeout;
//   - the first connection wins, and every other attempt is cancelled or
//     its connection closed;
//   - the next target is tried when every attempt at this one has failed.
//
// network is "tcp", "tcp4", "tcp6", "udp", "udp4" or "udp6"; a udp network
// looks up _name._udp, and a "connection" is the first address that a UDP
// socket could be connected to. A name that says its protocol ("echo/udp",
// "_echo._udp") is dialled over that protocol, the network keeping only
// its address family: the SRV record found is the one of that protocol,
// and its port may serve nothing over the other. Errors are *LookupError.
func (r *Resolver) Dial(ctx context.Context, network, name string) (net.Conn, error) {
	conn, _, err := r.dialName(ctx, network, name, false)
	return conn, err
}

// DialTrace is Dial, returning as well the chain it followed, with a
// connect step for each attempt (its start and how it ended), so that
// the race shows: `annuaire dial --trace` prints it. The chain's
// Candidates are the addresses in the order they were tried.
func (r *Resolver) DialTrace(ctx context.Context, network, name string) (net.Conn, *Chain, error) {
	return r.dialName(ctx, network, name, true)
}

// DialContext is Dial, with net.Dialer.DialContext's signature so that it
// plugs into http.Transport.DialContext and any other dial hook:
//
//	client := &http.Client{Transport: &http.Transport{DialContext: r.DialContext}}
//	resp, err := client.Get("http://web.svc.internal/")
//
// The address arrives as host:port. A host in the zone, or a single label,
// is a service name: "web.svc.internal:80" dials service web. An SRV
// record's port wins over the address's port, which is usually just the
// URL scheme's default; without SRV the address's port is used instead of
// the catalog's (port 0 means none given: "echo:0"). IP literals and
// names outside the zone are dialled as they are, so one Transport can
// reach both annuaire's services and the rest of the world.
func (r *Resolver) DialContext(ctx context.Context, network, address string) (net.Conn, error) {
	return r.Dial(ctx, network, address)
}

// DialChain connects to the candidates of a chain that Lookup returned,
// as Dial does (the candidates of one host and port race), and appends a
// connect step per attempt to the chain, so that the chain shows which
// addresses were tried and which local address:port the connection got.
func (r *Resolver) DialChain(ctx context.Context, network string, c *Chain) (net.Conn, error) {
	if err := checkNetwork(network); err != nil {
		return nil, &LookupError{Name: c.Name, Step: "normalize", Err: err, Chain: c}
	}
	r.init()
	if c.start.IsZero() {
		c.start = time.Now()
	}
	d := &dialer{r: r, network: network, c: c, trace: true}
	cands := c.Candidates
	for i := 0; i < len(cands); {
		j := i + 1
		for j < len(cands) && cands[j].Host == cands[i].Host && cands[j].Port == cands[i].Port {
			j++
		}
		cd := cands[i]
		t := target{host: cd.Host, port: cd.Port, prio: cd.Priority, weight: cd.Weight}
		given := family{state: known, addrs: make([]string, 0, j-i)}
		for _, cd := range cands[i:j] {
			given.addrs = append(given.addrs, cd.Address)
		}
		if conn := d.race(ctx, t, []family{given}, nil); conn != nil {
			return conn, nil
		}
		if ctx.Err() != nil {
			break
		}
		i = j
	}
	return nil, d.fail(ctx, nil, nil)
}

func checkNetwork(network string) error {
	switch network {
	case "tcp", "tcp4", "tcp6", "udp", "udp4", "udp6":
		return nil
	}
	return fmt.Errorf("network %q: want tcp, tcp4, tcp6, udp, udp4 or udp6", network)
}

func (r *Resolver) dialName(ctx context.Context, network, name string, trace bool) (net.Conn, *Chain, error) {
	if err := checkNetwork(network); err != nil {
		return nil, nil, &LookupError{Name: name, Step: "normalize", Err: err}
	}
	c, p, err := r.plan(ctx, network, name, trace)
	if err != nil {
		return nil, c, err
	}
	network = c.Proto + network[len("tcp"):] // "tcp4" and "echo/udp": "udp4"
	d := &dialer{r: r, network: network, c: c, trace: trace, stream: true}
	if p.literal {
		if conn := d.race(ctx, p.targets[0], []family{{state: known, addrs: []string{p.addr}}}, nil); conn != nil {
			return conn, c, nil
		}
		return nil, c, d.fail(ctx, nil, &p)
	}
	var lastErr *stepError
	for _, t := range p.targets {
		// The questions end with the race: one it did not wait for is
		// abandoned (its flight still fills the cache).
		fams, later, stop := r.lookupAddrs(ctx, network, t)
		conn := d.race(ctx, t, fams[:], later)
		stop()
		if conn != nil {
			return conn, c, nil
		}
		if d.addrErr != nil {
			lastErr, d.addrErr = d.addrErr, nil
		}
		if ctx.Err() != nil {
			break
		}
	}
	return nil, c, d.fail(ctx, lastErr, &p)
}

// A dialer makes the attempts of one Dial and records them in its chain.
// Only the goroutine that runs the race touches it.
type dialer struct {
	r       *Resolver
	network string
	c       *Chain
	trace   bool // record a connect step per attempt
	stream  bool // candidates arrive with the addresses: add them to c as they are tried

	errs    []error    // the attempts' failures, in the order they ended
	addrErr *stepError // the last target's failed address question, if it found no address
	found   int        // addresses found for every target so far
}

// fail builds the error of a dial that did not connect: the connection
// attempts' failures if there were any, else why no address was found.
func (d *dialer) fail(ctx context.Context, lastErr *stepError, p *plan) error {
	step, server := "connect", ""
	var err error
	switch {
	case len(d.errs) > 0:
		err = joinErrors(d.errs)
	case lastErr != nil:
		step, server, err = "address", lastErr.server, lastErr
	case p != nil && !p.literal && d.found == 0:
		step, server, err = "address", p.server, p.noHostErr()
	default:
		err = fmt.Errorf("no %s address among the candidates: %w", d.network, ErrNoHost)
	}
	if ctx.Err() != nil {
		err = joinErrors([]error{err, ctx.Err()})
	}
	return d.c.fail(step, server, err)
}

// An attempt is one connection attempt of a race.
type attempt struct {
	cd    Candidate
	step  int // index of its connect step in the chain, or -1
	start time.Time
	conn  net.Conn
	err   error
}

// race connects to one target t: the addresses of fams known at once,
// and of those asked as they arrive on later, as Dial describes. It
// returns the winning connection, or nil when every attempt failed or
// ctx ended. Before returning it has waited for every attempt, closing
// the connections that came after the winner, so that nothing it started
// outlives it and the chain is complete.
func (d *dialer) race(ctx context.Context, t target, fams []family, later <-chan family) net.Conn {
	began := time.Now()
	var waiting []uint16 // the address types still awaited
	one, n := Candidate{}, 0
	for i := range fams {
		switch f := &fams[i]; f.state {
		case known:
			d.arrived(f)
			for _, addr := range f.addrs {
				if cd := t.candidate(addr); d.allowed(cd) {
					one, n = cd, n+1
				}
			}
		case asked:
			waiting = append(waiting, f.qtype)
		}
	}
	// The common case, one address known at once, needs no race.
	if len(waiting) == 0 && n <= 1 {
		if n == 0 {
			return nil
		}
		var a attempt
		d.begin(&a, one)
		a.conn, a.err = d.connect(ctx, one)
		d.end(&a, nil)
		return a.conn
	}

	rc := &racer{d: d, t: t, waiting: waiting}
	for i := range fams {
		if fams[i].state == known {
			rc.queueUp(&fams[i])
		}
	}
	rctx, cancel := context.WithCancel(ctx) // ends the attempts
	defer cancel()
	results := make(chan *attempt) // every attempt sends once; the race receives them all
	inflight := 0
	delay := d.r.fallbackDelay()
	attemptTimer := time.NewTimer(delay)
	attemptTimer.Stop()
	defer attemptTimer.Stop()
	var nextAt time.Time
	// RFC 8305 section 3's Resolution Delay runs from when IPv4 addresses
	// are known while AAAA is still awaited.
	resolution := time.NewTimer(ResolutionDelay)
	resolution.Stop()
	defer resolution.Stop()
	resolutionOver, resolutionArmed := false, false
	started := false
	var winner *attempt

loop:
	for {
		if !resolutionArmed && len(rc.queue[1]) > 0 && rc.awaiting(dns.TypeAAAA) {
			resolutionArmed = true
			resolution.Reset(ResolutionDelay)
		}
		if !started {
			// Section 3: start once an IPv6 address is known; with IPv4 ones
			// only, once AAAA has answered or the Resolution Delay is over.
			started = len(rc.queue[0]) > 0 || len(rc.queue[2]) > 0 || len(rc.waiting) == 0 ||
				len(rc.queue[1]) > 0 && (!rc.awaiting(dns.TypeAAAA) || resolutionOver)
		}
		// Section 5: the next attempt when the delay since the last one
		// started is over, or at once when none is running.
		if started && (inflight == 0 || !time.Now().Before(nextAt)) {
			if cd, ok := rc.pop(); ok {
				a := new(attempt)
				d.begin(a, cd)
				inflight++
				go func() {
					a.conn, a.err = d.connect(rctx, a.cd)
					results <- a
				}()
				nextAt = a.start.Add(delay)
				attemptTimer.Reset(delay)
			}
		}
		if inflight == 0 && len(rc.waiting) == 0 && rc.left() == 0 {
			break // lost: every address tried, every attempt failed
		}
		var laterC <-chan family
		if len(rc.waiting) > 0 {
			laterC = later
		}
		var resolutionC <-chan time.Time
		if resolutionArmed && !resolutionOver {
			resolutionC = resolution.C
		}
		select {
		case f := <-laterC:
			rc.answered(f.qtype)
			d.arrived(&f)
			rc.queueUp(&f)
		case <-resolutionC:
			resolutionOver = true
		case <-attemptTimer.C:
		case a := <-results:
			inflight--
			d.end(a, nil)
			if a.err == nil {
				winner = a
				break loop
			}
		case <-ctx.Done():
			break loop
		}
	}
	cancel()
	for ; inflight > 0; inflight-- {
		d.end(<-results, winner)
	}
	for _, qtype := range rc.waiting {
		d.abandoned(t.host, qtype, began, winner)
	}
	if d.stream {
		for _, q := range rc.queue {
			d.c.Candidates = append(d.c.Candidates, q...) // found, never tried
		}
	}
	if winner == nil {
		return nil
	}
	return winner.conn
}

// A racer holds what one target's race has still to do: the addresses
// not yet tried and the answers still awaited.
type racer struct {
	d       *dialer
	t       target
	queue   [3][]Candidate // by kind: IPv6, IPv4, names the system resolves
	next    int            // the family of the next attempt: IPv6 first, then alternating (RFC 8305 section 4)
	waiting []uint16       // the address types still awaited
}

func (rc *racer) queueUp(f *family) {
	for _, addr := range f.addrs {
		if cd := rc.t.candidate(addr); rc.d.allowed(cd) {
			rc.queue[kind(cd)] = append(rc.queue[kind(cd)], cd)
		}
	}
}

func (rc *racer) pop() (Candidate, bool) {
	for _, k := range [3]int{rc.next, 1 - rc.next, 2} {
		if len(rc.queue[k]) > 0 {
			cd := rc.queue[k][0]
			rc.queue[k] = rc.queue[k][1:]
			if k < 2 {
				rc.next = 1 - k
			}
			return cd, true
		}
	}
	return Candidate{}, false
}

func (rc *racer) left() int { return len(rc.queue[0]) + len(rc.queue[1]) + len(rc.queue[2]) }

func (rc *racer) awaiting(qtype uint16) bool { return slices.Contains(rc.waiting, qtype) }

func (rc *racer) answered(qtype uint16) {
	if i := slices.Index(rc.waiting, qtype); i >= 0 {
		rc.waiting = slices.Delete(rc.waiting, i, i+1)
	}
}

// kind is a candidate's queue in a race: 0 IPv6, 1 IPv4, 2 a name.
func kind(cd Candidate) int {
	switch {
	case cd.Address == "":
		return 2
	case strings.Contains(cd.Address, ":"):
		return 0
	}
	return 1
}

// allowed reports whether the dial's network can reach cd.
func (d *dialer) allowed(cd Candidate) bool {
	switch d.network[len(d.network)-1] {
	case '4':
		return kind(cd) != 0
	case '6':
		return kind(cd) != 1
	}
	return true
}

// arrived records the answer of one family in the chain.
func (d *dialer) arrived(f *family) {
	d.found += len(f.addrs)
	if f.err != nil && len(f.addrs) == 0 {
		d.addrErr = f.err
	}
	if f.shown() {
		d.c.add(f.step)
	}
}

// abandoned records a question still unanswered when the race ended.
func (d *dialer) abandoned(host string, qtype uint16, asked time.Time, winner *attempt) {
	why := "no answer yet when the dial ended"
	if winner != nil {
		why = "no answer yet when " + winner.cd.HostPort() + " connected: not waited for (RFC 8305 section 3)"
	}
	d.c.add(Step{Step: "address", Question: host + " " + dns.TypeToString[qtype], Answers: []string{}, Skipped: why,
		DurationUS: time.Since(asked).Microseconds()})
}

// begin records the start of an attempt at cd.
func (d *dialer) begin(a *attempt, cd Candidate) {
	*a = attempt{cd: cd, step: -1, start: time.Now()}
	if d.stream {
		d.c.Candidates = append(d.c.Candidates, cd)
	}
	if d.trace {
		a.step = len(d.c.Steps)
		d.c.add(Step{Step: "connect", Question: cd.HostPort(), Answers: []string{}})
	}
}

// end records how an attempt ended; winner is the attempt that won the
// race before this one ended, if any.
func (d *dialer) end(a *attempt, winner *attempt) {
	if winner != nil && a.conn != nil {
		a.conn.Close() // RFC 8305 section 5: one connection is kept
		a.conn = nil
		a.err = fmt.Errorf("connected after %s: closed", winner.cd.HostPort())
	} else if winner != nil {
		a.err = fmt.Errorf("cancelled: %s connected first", winner.cd.HostPort())
	} else if a.err != nil {
		d.errs = append(d.errs, a.err)
	}
	if a.step < 0 {
		return
	}
	s := &d.c.Steps[a.step]
	s.DurationUS = time.Since(a.start).Microseconds()
	if a.err != nil {
		s.Error = a.err.Error()
	} else {
		s.Answers = append(s.Answers, a.conn.LocalAddr().String()+" → "+a.conn.RemoteAddr().String())
	}
}

// connect makes one attempt, bounded by DialTimeout.
func (d *dialer) connect(ctx context.Context, cd Candidate) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, d.r.dialTimeout())
	defer cancel()
	var conn net.Conn
	var err error
	if ip, perr := netip.ParseAddr(cd.Address); perr == nil {
		// Dialling the parsed address skips net's own parsing and lookup.
		raddr := netip.AddrPortFrom(ip, cd.Port)
		switch {
		case d.r.dialFunc != nil:
			conn, err = d.r.dialFunc(ctx, d.network, raddr)
		case strings.HasPrefix(d.network, "tcp"):
			var nd net.Dialer
			var tc *net.TCPConn
			if tc, err = nd.DialTCP(ctx, d.network, netip.AddrPort{}, raddr); err == nil {
				conn = tc
			}
		default:
			var nd net.Dialer
			var uc *net.UDPConn
			if uc, err = nd.DialUDP(ctx, d.network, netip.AddrPort{}, raddr); err == nil {
				conn = uc
			}
		}
	} else {
		var nd net.Dialer
		conn, err = nd.DialContext(ctx, d.network, cd.HostPort())
	}
	if err != nil {
		// "connect 127.0.0.1:7007: connection refused", keeping the errno
		// for errors.Is, rather than net's "dial tcp :0->127.0.0.1:7007: ...".
		var op *net.OpError
		if errors.As(err, &op) {
			inner := op.Err
			if sc, ok := inner.(*os.SyscallError); ok {
				inner = sc.Err
			}
			err = fmt.Errorf("connect %s: %w", cd.HostPort(), inner)
		}
		return nil, err
	}
	return conn, nil
}

func (r *Resolver) dialTimeout() time.Duration {
	if r.DialTimeout > 0 {
		return r.DialTimeout
	}
	return 3 * time.Second
}

// fallbackDelay is the Connection Attempt Delay, within RFC 8305 section
// 5's recommended 100 ms minimum and 2 s maximum.
func (r *Resolver) fallbackDelay() time.Duration {
	if r.FallbackDelay <= 0 {
		return 250 * time.Millisecond
	}
	return min(max(r.FallbackDelay, 100*time.Millisecond), 2*time.Second)
}
