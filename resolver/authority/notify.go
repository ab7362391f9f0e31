package authority

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/miekg/dns"
)

// NOTIFY timing.
const (
	// notifyCoalesce is how long RunNotify waits after a change before
	// telling secondaries, so that a burst of registrations costs one
	// NOTIFY and one IXFR instead of one each.
	notifyCoalesce = 200 * time.Millisecond

	// notifyTimeout bounds the wait for one acknowledgement. RFC 1996
	// section 3.6 leaves the retry interval to the operator; BIND and Knot
	// wait seconds, not the 60 s the RFC suggests.
	notifyTimeout    = 2 * time.Second
	notifyRetryFirst = time.Second
	notifyRetryMax   = time.Minute
)

// errNotifyDeclined is returned when a secondary answered a NOTIFY with an
// error: it heard us, so sending again will not help.
var errNotifyDeclined = errors.New("notify declined")

// RunNotify tells every secondary in Server.Notify that the zone changed
// (RFC 1996): once at start, so that secondaries catch up after a restart,
// then after each change of the registry, bursts coalesced. Each secondary
// gets its own retry loop, with backoff, until it acknowledges or a newer
// serial replaces the one being sent. It returns nil when ctx ends, at once
// when Notify is empty, and an error naming the address if one is not
// HOST:PORT.
//
// It is separate from Serve because Serve runs once per transport; the
// caller starts it once, next to them.
func (s *Server) RunNotify(ctx context.Context) error {
	if len(s.Notify) == 0 {
		return nil
	}
	for _, addr := range s.Notify {
		if _, _, err := net.SplitHostPort(addr); err != nil {
			return fmt.Errorf("authority: notify %s: %w", addr, err)
		}
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	pending := make([]chan uint32, len(s.Notify))
	for i, addr := range s.Notify {
		pending[i] = make(chan uint32, 1)
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.notifyLoop(ctx, addr, pending[i])
		}()
	}
	post := func(serial uint32) {
		for _, ch := range pending {
			// Latest wins: a serial not yet picked up is replaced. Only
			// this goroutine sends, so the send cannot block.
			select {
			case <-ch:
			default:
			}
			ch <- serial
		}
	}

	snap := s.Registry.Snapshot()
	post(snap.Serial())
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-snap.Changed():
		}
		// A fixed window, not one that restarts at each change: a steady
		// stream of changes still notifies every notifyCoalesce.
		t := time.NewTimer(notifyCoalesce)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
		snap = s.Registry.Snapshot()
		post(snap.Serial())
	}
}

// notifyLoop sends each serial posted on pending to addr until it is
// acknowledged, superseded, or ctx ends.
func (s *Server) notifyLoop(ctx context.Context, addr string, pending <-chan uint32) {
	log := s.logger().With("secondary", addr, "zone", s.zone().origin)
	for {
		var serial uint32
		select {
		case <-ctx.Done():
			return
		case serial = <-pending:
		}
		wait := notifyRetryFirst
		for attempt := 1; ; attempt++ {
			start := time.Now()
			err := s.sendNotify(ctx, addr)
			if ctx.Err() != nil {
				return
			}
			if err == nil {
				s.Metrics.notify("acked")
				log.Info("notify acknowledged", "serial", serial, "attempt", attempt, "duration", time.Since(start))
				break
			}
			if errors.Is(err, errNotifyDeclined) {
				s.Metrics.notify("declined")
				log.Warn("notify declined", "serial", serial, "err", err)
				break
			}
			s.Metrics.notify("failed")
			log.Warn("notify failed", "serial", serial, "attempt", attempt, "retry_in", wait, "err", err)
			t := time.NewTimer(wait)
			select {
			case <-ctx.Done():
				t.Stop()
				return
			case serial = <-pending:
				// A newer version replaces the one not yet acknowledged.
				t.Stop()
				wait = notifyRetryFirst
				continue
			case <-t.C:
			}
			wait = min(2*wait, notifyRetryMax)
		}
	}
}

// sendNotify sends one NOTIFY for the zone to addr over UDP, signed with the
// first of Server.Keys if there is one, and waits for its answer.
func (s *Server) sendNotify(ctx context.Context, addr string) error {
	m := new(dns.Msg)
	m.SetNotify(s.zone().origin)
	c := &dns.Client{Net: "udp", Timeout: notifyTimeout}
	if len(s.Keys) > 0 {
		k := s.Keys[0]
		name := dns.CanonicalName(k.Name)
		c.TsigSecret = map[string]string{name: k.Secret}
		m.SetTsig(name, notifyAlgorithm(k.Algorithm), 300, time.Now().Unix())
	}
	ctx, cancel := context.WithTimeout(ctx, notifyTimeout)
	defer cancel()
	resp, _, err := c.ExchangeContext(ctx, m, addr)
	if err != nil {
		return fmt.Errorf("authority: notify %s: %w", addr, err)
	}
	if resp.Rcode != dns.RcodeSuccess {
		return fmt.Errorf("authority: notify %s: %w: %s", addr, errNotifyDeclined, dns.RcodeToString[resp.Rcode])
	}
	return nil
}

// notifyAlgorithm turns "hmac-sha256" or "HMAC-SHA256." into miekg's form.
func notifyAlgorithm(alg string) string {
	if alg == "" {
		return dns.HmacSHA256
	}
	return dns.Fqdn(strings.ToLower(alg))
}
