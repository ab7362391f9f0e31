package resolver

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync"
	"time"
)

// Dial resolves name (see Lookup) and connects to its candidates in order,
// failing over on refusal or timeout, each attempt bounded by DialTimeout.
// When a host has both IPv6 and IPv4 addresses they race as RFC 8305
// describes, as net.Dialer does: IPv6 first, IPv4 after FallbackDelay,
// the first connection wins and the other is closed.
//
// network is "tcp", "tcp4", "tcp6", "udp", "udp4" or "udp6"; a udp network
// looks up _name._udp. Errors are *LookupError.
func (r *Resolver) Dial(ctx context.Context, network, name string) (net.Conn, error) {
	if err := checkNetwork(network); err != nil {
		return nil, &LookupError{Name: name, Step: "normalize", Err: err}
	}
	c, err := r.lookup(ctx, network, name)
	if err != nil {
		return nil, err
	}
	return r.dial(ctx, network, c, false)
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
// as Dial does, and appends a connect step per attempt to the chain, so
// that the chain shows which addresses were tried and which local
// address:port the connection got.
func (r *Resolver) DialChain(ctx context.Context, network string, c *Chain) (net.Conn, error) {
	if err := checkNetwork(network); err != nil {
		return nil, &LookupError{Name: c.Name, Step: "normalize", Err: err, Chain: c}
	}
	return r.dial(ctx, network, c, true)
}

func checkNetwork(network string) error {
	switch network {
	case "tcp", "tcp4", "tcp6", "udp", "udp4", "udp6":
		return nil
	}
	return fmt.Errorf("network %q: want tcp, tcp4, tcp6, udp, udp4 or udp6", network)
}

// A dialer makes the attempts of one Dial and, when asked, records them.
type dialer struct {
	r       *Resolver
	network string
	trace   *Chain

	mu   sync.Mutex // guards errs and trace.Steps: happy eyeballs attempts run at once
	errs []error
}

func (r *Resolver) dial(ctx context.Context, network string, c *Chain, trace bool) (net.Conn, error) {
	d := &dialer{r: r, network: network}
	if trace {
		d.trace = c
	}
	cands := c.Candidates
	for i := 0; i < len(cands); {
		// The candidates of one host and port are tried together, so that
		// its IPv6 and IPv4 addresses can race.
		j := i + 1
		for j < len(cands) && cands[j].Host == cands[i].Host && cands[j].Port == cands[i].Port {
			j++
		}
		conn, err := d.dialHost(ctx, cands[i:j])
		if err == nil {
			return conn, nil
		}
		if ctx.Err() != nil {
			break
		}
		i = j
	}
	// One line, "connect A: refused; connect B: timeout", each wrapped.
	args := make([]any, len(d.errs))
	for i, e := range d.errs {
		args[i] = e
	}
	err := fmt.Errorf(strings.TrimSuffix(strings.Repeat("%w; ", len(args)), "; "), args...)
	if len(d.errs) == 0 {
		err = fmt.Errorf("no %s address among the candidates: %w", network, ErrNoHost)
	}
	if ctx.Err() != nil {
		err = errors.Join(err, ctx.Err())
	}
	e := &LookupError{Name: c.Name, Step: "connect", Err: err, Chain: c}
	if trace {
		c.Error = e.Error()
	}
	return nil, e
}

// dialHost connects to one host's addresses: IPv6 ones first, IPv4 ones
// racing them after FallbackDelay (RFC 8305 section 5).
func (d *dialer) dialHost(ctx context.Context, cands []Candidate) (net.Conn, error) {
	if oneFamily(cands, d.network) {
		return d.dialSerial(ctx, cands) // the common case: nothing to race, nothing to sort
	}
	var primary, fallback []Candidate
	for _, cd := range cands {
		if cd.Address == "" { // a host:port outside the zone: the system resolves it
			primary = append(primary, cd)
			continue
		}
		ip, err := netip.ParseAddr(cd.Address)
		if err != nil {
			continue
		}
		switch {
		case ip.Is4() && d.network[len(d.network)-1] != '6':
			fallback = append(fallback, cd)
		case ip.Is6() && d.network[len(d.network)-1] != '4':
			primary = append(primary, cd)
		}
	}
	if len(primary) == 0 {
		return d.dialSerial(ctx, fallback)
	}
	if len(fallback) == 0 {
		return d.dialSerial(ctx, primary)
	}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	type result struct {
		conn    net.Conn
		err     error
		primary bool
	}
	results := make(chan result) // unbuffered: a loser's conn is received and closed below
	race := func(cands []Candidate, primary bool) {
		conn, err := d.dialSerial(ctx, cands)
		select {
		case results <- result{conn, err, primary}:
		case <-ctx.Done():
			if conn != nil {
				conn.Close()
			}
		}
	}
	go race(primary, true)
	timer := time.NewTimer(d.r.fallbackDelay())
	defer timer.Stop()
	fallbackStarted := false
	var firstErr error
	for pending := 1; ; {
		select {
		case <-timer.C:
			fallbackStarted = true
			pending++
			go race(fallback, false)
			continue
		case res := <-results:
			pending--
			if res.err == nil {
				return res.conn, nil // cancel() stops the other; it closes its conn if any
			}
			if firstErr == nil {
				firstErr = res.err
			}
			if res.primary && !fallbackStarted {
				// IPv6 failed early: no reason to wait for the delay.
				timer.Stop()
				fallbackStarted = true
				pending++
				go race(fallback, false)
				continue
			}
			if pending == 0 {
				return nil, firstErr
			}
		}
	}
}

// oneFamily reports whether every candidate is an IP address of the
// same family, one that network allows.
func oneFamily(cands []Candidate, network string) bool {
	var v4, v6 int
	for _, cd := range cands {
		ip, err := netip.ParseAddr(cd.Address)
		if err != nil {
			return false
		}
		if ip.Is4() {
			v4++
		} else {
			v6++
		}
	}
	switch network[len(network)-1] {
	case '4':
		return v6 == 0
	case '6':
		return v4 == 0
	}
	return v4 == 0 || v6 == 0
}

// dialSerial tries addresses one after the other, each for DialTimeout.
func (d *dialer) dialSerial(ctx context.Context, cands []Candidate) (net.Conn, error) {
	var err error
	for _, cd := range cands {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		var conn net.Conn
		conn, err = d.dialOne(ctx, cd)
		if err == nil {
			return conn, nil
		}
	}
	if err == nil {
		err = errors.New("no address")
	}
	return nil, err
}

func (d *dialer) dialOne(ctx context.Context, cd Candidate) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, d.r.dialTimeout())
	defer cancel()
	start := time.Now()
	var nd net.Dialer
	var conn net.Conn
	var err error
	if ip, perr := netip.ParseAddr(cd.Address); perr == nil {
		// Dialling the parsed address skips net's own parsing and lookup.
		raddr := netip.AddrPortFrom(ip, cd.Port)
		switch d.network {
		case "tcp", "tcp4", "tcp6":
			var tc *net.TCPConn
			if tc, err = nd.DialTCP(ctx, d.network, netip.AddrPort{}, raddr); err == nil {
				conn = tc
			}
		default:
			var uc *net.UDPConn
			if uc, err = nd.DialUDP(ctx, d.network, netip.AddrPort{}, raddr); err == nil {
				conn = uc
			}
		}
	} else {
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
		d.mu.Lock()
		d.errs = append(d.errs, err)
		d.mu.Unlock()
	}
	if d.trace != nil {
		s := Step{Step: "connect", Question: cd.HostPort(), Answers: []string{}, DurationUS: time.Since(start).Microseconds()}
		if err != nil {
			s.Error = err.Error()
		} else {
			s.Answers = append(s.Answers, conn.LocalAddr().String()+" → "+conn.RemoteAddr().String())
		}
		d.mu.Lock()
		d.trace.Steps = append(d.trace.Steps, s)
		d.mu.Unlock()
	}
	return conn, err
}

func (r *Resolver) dialTimeout() time.Duration {
	if r.DialTimeout > 0 {
		return r.DialTimeout
	}
	return 3 * time.Second
}

func (r *Resolver) fallbackDelay() time.Duration {
	if r.FallbackDelay > 0 {
		return r.FallbackDelay
	}
	return 250 * time.Millisecond
}
