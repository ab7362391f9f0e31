package transfer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
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

// A Notifier tells secondaries that a zone changed (RFC 1996): the
// forward zone and each reverse zone alike, each when its serial moves.
type Notifier struct {
	// Registry is the source of the zones. Required.
	Registry *registry.Registry
	// Zone holds the zones notified. Required.
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

// Run tells every secondary of every zone held: once at start, so that
// secondaries catch up after a restart, then of each zone whose serial a
// change of the registry moved, bursts coalesced. Each secondary gets its
// own loop, which sends each zone's NOTIFY until it is acknowledged or
// declined, retrying with backoff, a newer serial replacing the one being
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
	pending := make([]chan []zone.Held, len(n.Secondaries))
	for i, addr := range n.Secondaries {
		pending[i] = make(chan []zone.Held, 1)
		wg.Add(1)
		go func() {
			defer wg.Done()
			n.notifyLoop(ctx, addr, pending[i])
		}()
	}
	post := func(held []zone.Held) {
		for _, ch := range pending {
			// Latest wins: serials not yet picked up are replaced. Only
			// this goroutine sends, so the send cannot block.
			select {
			case <-ch:
			default:
			}
			ch <- held
		}
	}

	snap := n.Registry.Snapshot()
	post(n.Zone.Held(snap))
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
		post(n.Zone.Held(snap))
	}
}

// A notifyState is where one zone stands with one secondary.
type notifyState struct {
	serial   uint32 // the serial being sent, or last sent
	done     bool   // acknowledged or declined: nothing more to send
	declined bool   // the last answer was a refusal
	attempt  int
}

// notifyLoop sends each zone's serial posted on pending to addr until it
// is acknowledged, declined, superseded, or ctx ends.
func (n *Notifier) notifyLoop(ctx context.Context, addr string, pending <-chan []zone.Held) {
	log := n.Logger.With("secondary", addr)
	zones := make(map[string]*notifyState)
	var held []zone.Held
	wait := notifyRetryFirst
	var retry <-chan time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case held = <-pending:
			wait = notifyRetryFirst // a newer version: start again
		case <-retry:
		}
		failed := false
		for _, h := range held {
			st := zones[h.Name]
			if st == nil || st.serial != h.Serial {
				st = &notifyState{serial: h.Serial, declined: st != nil && st.declined}
				zones[h.Name] = st
			}
			if st.done {
				continue
			}
			st.attempt++
			start := time.Now()
			err := n.sendNotify(ctx, addr, h)
			if ctx.Err() != nil {
				return
			}
			zlog := log.With("zone", h.Name, "serial", h.Serial)
			switch {
			case err == nil:
				n.count("acked")
				zlog.Info("notify acknowledged", "attempt", st.attempt, "duration", time.Since(start))
				st.done, st.declined = true, false
			case errors.Is(err, errNotifyDeclined):
				n.count("declined")
				// A zone the secondary does not carry is declined at each
				// change: said once, until it is taken again.
				level := slog.LevelWarn
				if st.declined {
					level = slog.LevelDebug
				}
				zlog.Log(ctx, level, "notify declined", "err", err)
				st.done, st.declined = true, true
			default:
				n.count("failed")
				zlog.Warn("notify failed", "attempt", st.attempt, "retry_in", wait, "err", err)
				failed = true
			}
		}
		for name := range zones { // zones no longer held
			if !slices.ContainsFunc(held, func(h zone.Held) bool { return h.Name == name }) {
				delete(zones, name)
			}
		}
		retry = nil
		if failed {
			retry = time.After(wait)
			wait = min(2*wait, notifyRetryMax)
		}
	}
}

func (n *Notifier) count(result string) {
	if n.Count != nil {
		n.Count(result)
	}
}

// sendNotify sends one NOTIFY for zone h to addr over UDP, signed with the
// first of Keys if there is one, and waits for its answer. The zone's SOA
// goes in the answer section (RFC 1996 section 3.7): a secondary that is
// already at that serial need not ask, and BIND logs "no serial" without.
func (n *Notifier) sendNotify(ctx context.Context, addr string, h zone.Held) error {
	m := new(dns.Msg)
	m.SetNotify(h.Name)
	m.Answer = []dns.RR{n.Zone.SOA(h)}
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

// RefuseNotify answers a NOTIFY (RFC 1996) sent to annuaire: it is the
// primary of every zone it holds and the secondary of none, so the NOTIFY
// comes from a host that is not its primary, which RFC 1996 section 3.10
// says to log and not act on. It is REFUSED, as NSD does (Knot answers
// NOTAUTH, BIND NOERROR), and logged through Refusals: anyone can send one.
func (h *Handler) RefuseNotify(w dns.ResponseWriter, r *dns.Msg) {
	name, why := "", "no zone named"
	if len(r.Question) == 1 {
		name = r.Question[0].Name
		why = "not a zone annuaire holds"
		if h.Zone.Holds(h.Registry.Snapshot(), name) {
			why = "annuaire is this zone's primary"
		}
	}
	h.remote().Warn("notify refused", "client", remoteAddr(w).String(), "zone", name, "reason", why)
	m := new(dns.Msg)
	m.SetRcode(r, dns.RcodeRefused)
	w.WriteMsg(m)
}
