package transfer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/annuaire/annuaire/authority/tsig"
	"github.com/annuaire/annuaire/authority/zone"
	"github.com/annuaire/annuaire/registry"
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

// A Notifier tells secondaries that the zone changed (RFC 1996).
type Notifier struct {
	// Registry is the source of the zone. Required.
	Registry *registry.Registry
	// Zone is the zone notified. Required.
	Zone *zone.Zone
	// Secondaries are the HOST:PORT addresses told of every change.
	Secondaries []string
	// Keys: the first, if any, signs every NOTIFY.
	Keys []tsig.Key
	// Logger receives a line per NOTIFY answered or failed. Required.
	Logger *slog.Logger
	// Count, if not nil, counts each NOTIFY by result (acked, declined,
	// failed).
	Count func(result string)
}

// Run tells every secondary that the zone changed: once at start, so that
// secondaries catch up after a restart, then after each change of the
// registry, bursts coalesced. Each secondary gets its own retry loop, with
// backoff, until it acknowledges or a newer serial replaces the one being
// sent. It returns nil when ctx ends, at once when there is no secondary,
// and an error naming the address if one is not HOST:PORT.
func (n *Notifier) Run(ctx context.Context) error {
	if len(n.Secondaries) == 0 {
		return nil
	}
	for _, addr := range n.Secondaries {
		if _, _, err := net.SplitHostPort(addr); err != nil {
			return fmt.Errorf("transfer: notify %s: %w", addr, err)
		}
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	pending := make([]chan uint32, len(n.Secondaries))
	for i, addr := range n.Secondaries {
		pending[i] = make(chan uint32, 1)
		wg.Add(1)
		go func() {
			defer wg.Done()
			n.notifyLoop(ctx, addr, pending[i])
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

	snap := n.Registry.Snapshot()
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
		snap = n.Registry.Snapshot()
		post(snap.Serial())
	}
}

// notifyLoop sends each serial posted on pending to addr until it is
// acknowledged, superseded, or ctx ends.
func (n *Notifier) notifyLoop(ctx context.Context, addr string, pending <-chan uint32) {
	log := n.Logger.With("secondary", addr, "zone", n.Zone.Origin())
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
			err := n.sendNotify(ctx, addr)
			if ctx.Err() != nil {
				return
			}
			if err == nil {
				n.count("acked")
				log.Info("notify acknowledged", "serial", serial, "attempt", attempt, "duration", time.Since(start))
				break
			}
			if errors.Is(err, errNotifyDeclined) {
				n.count("declined")
				log.Warn("notify declined", "serial", serial, "err", err)
				break
			}
			n.count("failed")
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

func (n *Notifier) count(result string) {
	if n.Count != nil {
		n.Count(result)
	}
}

// sendNotify sends one NOTIFY for the zone to addr over UDP, signed with the
// first of Keys if there is one, and waits for its answer.
func (n *Notifier) sendNotify(ctx context.Context, addr string) error {
	m := new(dns.Msg)
	m.SetNotify(n.Zone.Origin())
	c := &dns.Client{Net: "udp", Timeout: notifyTimeout}
	if len(n.Keys) > 0 {
		k := n.Keys[0]
		name := dns.CanonicalName(k.Name)
		c.TsigSecret = map[string]string{name: k.Secret}
		m.SetTsig(name, notifyAlgorithm(k.Algorithm), 300, time.Now().Unix())
	}
	ctx, cancel := context.WithTimeout(ctx, notifyTimeout)
	defer cancel()
	resp, _, err := c.ExchangeContext(ctx, m, addr)
	if err != nil {
		return fmt.Errorf("transfer: notify %s: %w", addr, err)
	}
	if resp.Rcode != dns.RcodeSuccess {
		return fmt.Errorf("transfer: notify %s: %w: %s", addr, errNotifyDeclined, dns.RcodeToString[resp.Rcode])
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

// RefuseNotify answers a NOTIFY (RFC 1996) sent to us: annuaire is a
// primary and takes none.
func RefuseNotify(w dns.ResponseWriter, r *dns.Msg) {
	m := new(dns.Msg)
	m.SetRcode(r, dns.RcodeRefused)
	w.WriteMsg(m)
}
