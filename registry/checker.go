package registry

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"
)

// DefaultMaxProbes is the default of Checker.MaxProbes.
const DefaultMaxProbes = 256

// maxCheckTimeout caps a tcp or http check's timeout, which is otherwise
// its interval: a check that takes longer than this is failing anyway.
const maxCheckTimeout = 10 * time.Second

// A Checker runs the health checks of the registry's instances and records
// their results with SetHealth, only when the health changes. It follows
// the registry through snapshots and their history, so that its cost is
// per change, not per instance: one goroutine per instance with a check,
// started when the instance appears, stopped when it goes or its check
// changes.
//
// tcp checks connect to Target; http checks GET it and pass on 2xx or 3xx;
// ttl checks pass while Heartbeat is called within each Interval. The
// first tcp or http check runs at once; a ttl check allows one Interval
// before the first heartbeat is due.
type Checker struct {
	Registry *Registry

	// Logger gets one line per health change; nil means slog.Default().
	Logger *slog.Logger

	// Dialer makes the connections of tcp checks, and of http checks when
	// HTTPClient is nil; nil means a net.Dialer.
	Dialer func(ctx context.Context, network, address string) (net.Conn, error)

	// HTTPClient makes http checks' requests; nil means a client that
	// follows at most 3 redirects (a 3xx after them still passes), keeps
	// no idle connections and ignores proxy settings.
	HTTPClient *http.Client

	// MaxProbes caps the tcp and http checks that run at once, each with
	// a socket open; the others wait for a turn, and their timeout starts
	// when they get it, so a check is late rather than failed. Zero means
	// DefaultMaxProbes.
	MaxProbes int

	mu     sync.Mutex               // guards the fields below
	probes chan struct{}            // a slot per probe running
	checks map[string]*runningCheck // by lowercased instance ID
	beats  map[string]time.Time     // ttl checks: last heartbeat or start
	client *http.Client
}

type runningCheck struct {
	spec   Check
	cancel context.CancelFunc
	last   CheckResult // zero until the check has run once
}

// A CheckResult is what an instance's check found the last time it ran.
type CheckResult struct {
	Health Health    `json:"health"`
	Output string    `json:"output"` // why: "tcp connect to 127.0.0.1:9 succeeded", "no heartbeat within 10s"
	At     time.Time `json:"at"`     // when it ran
}

// Result returns the last result of instance id's check, and false while
// the check has not run yet (or the instance has none). A result is kept
// in memory only: the registry records the health, not why.
func (c *Checker) Result(id string) (CheckResult, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	rc := c.checks[FoldName(id)]
	if rc == nil || rc.last.At.IsZero() {
		return CheckResult{}, false
	}
	return rc.last, true
}

// Run runs checks until ctx ends, then stops them all and returns nil.
func (c *Checker) Run(ctx context.Context) error {
	if c.Registry == nil {
		return errors.New("registry: Checker.Registry is nil")
	}
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer func() {
		cancel()
		wg.Wait()
		c.mu.Lock()
		clear(c.checks)
		c.mu.Unlock()
	}()
	snap := c.Registry.Snapshot()
	c.reconcileAll(ctx, &wg, snap)
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-snap.Changed():
		}
		next := c.Registry.Snapshot()
		sets, ok := next.History(snap.Serial())
		if !ok {
			c.reconcileAll(ctx, &wg, next)
		}
		for _, cs := range sets {
			for _, ch := range cs.Changes {
				if inst, ok := ch.Row.(*Instance); ok {
					c.reconcile(ctx, &wg, next, inst.ID)
				}
			}
		}
		snap = next
	}
}

// reconcileAll brings the running checks in line with every instance.
func (c *Checker) reconcileAll(ctx context.Context, wg *sync.WaitGroup, snap *Snapshot) {
	want := map[string]bool{}
	for inst := range snap.All() {
		if inst.Check != nil {
			want[FoldName(inst.ID)] = true
			c.reconcile(ctx, wg, snap, inst.ID)
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for key, rc := range c.checks {
		if !want[key] {
			rc.cancel()
			delete(c.checks, key)
		}
	}
}

// reconcile starts, restarts or stops the check of instance id.
func (c *Checker) reconcile(ctx context.Context, wg *sync.WaitGroup, snap *Snapshot, id string) {
	key := FoldName(id)
	inst, ok := snap.Instance(id)
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.checks == nil {
		c.checks = map[string]*runningCheck{}
		c.beats = map[string]time.Time{}
	}
	rc := c.checks[key]
	if ok && inst.Check != nil && rc != nil && rc.spec == *inst.Check {
		return
	}
	if rc != nil {
		rc.cancel()
		delete(c.checks, key)
		delete(c.beats, key)
	}
	if !ok || inst.Check == nil {
		return
	}
	cctx, cancel := context.WithCancel(ctx)
	spec := *inst.Check
	c.checks[key] = &runningCheck{spec: spec, cancel: cancel}
	if spec.Type == "ttl" {
		if _, ok := c.beats[key]; !ok {
			c.beats[key] = time.Now()
		}
	}
	wg.Go(func() { c.run(cctx, inst.ID, spec) })
}

// run is one instance's check loop.
func (c *Checker) run(ctx context.Context, id string, spec Check) {
	interval := time.Duration(spec.Interval)
	if spec.Type == "ttl" {
		c.runTTL(ctx, id, spec)
		return
	}
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		h, why := c.probe(ctx, spec, min(interval, maxCheckTimeout))
		if ctx.Err() != nil {
			return // the check was stopped, not failed
		}
		c.transition(id, spec, h, why, nil)
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// runTTL turns an instance critical when its heartbeat is overdue.
// Heartbeat turns it passing again.
func (c *Checker) runTTL(ctx context.Context, id string, spec Check) {
	interval := time.Duration(spec.Interval)
	key := FoldName(id)
	overdue := func() (time.Duration, bool) {
		c.mu.Lock()
		last := c.beats[key]
		c.mu.Unlock()
		left := time.Until(last.Add(interval))
		return left, left <= 0
	}
	timer := time.NewTimer(interval)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		}
		left, late := overdue()
		if !late {
			timer.Reset(left)
			continue
		}
		// Decided inside the update: a heartbeat that lands meanwhile wins.
		c.transition(id, spec, Critical, fmt.Sprintf("no heartbeat within %s", interval), func() bool {
			_, late := overdue()
			return late
		})
		timer.Reset(interval)
	}
}

// probe runs one tcp or http check, when MaxProbes lets it.
func (c *Checker) probe(ctx context.Context, spec Check, timeout time.Duration) (Health, string) {
	c.mu.Lock()
	if c.probes == nil {
		n := c.MaxProbes
		if n <= 0 {
			n = DefaultMaxProbes
		}
		c.probes = make(chan struct{}, n)
	}
	slots := c.probes
	c.mu.Unlock()
	select {
	case slots <- struct{}{}:
		defer func() { <-slots }()
	case <-ctx.Done():
		return Critical, ctx.Err().Error()
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	switch spec.Type {
	case "tcp":
		conn, err := c.dial(ctx, "tcp", spec.Target)
		if err != nil {
			return Critical, err.Error()
		}
		conn.Close()
		return Passing, "tcp connect to " + spec.Target + " succeeded"
	case "http":
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, spec.Target, nil)
		if err != nil {
			return Critical, err.Error()
		}
		req.Header.Set("User-Agent", "annuaire-health-check")
		resp, err := c.httpClient().Do(req)
		if err != nil {
			return Critical, err.Error()
		}
		io.Copy(io.Discard, io.LimitReader(resp.Body, 4096))
		resp.Body.Close()
		why := fmt.Sprintf("GET %s: %s", spec.Target, resp.Status)
		if resp.StatusCode >= 200 && resp.StatusCode < 400 {
			return Passing, why
		}
		return Critical, why
	}
	return Critical, fmt.Sprintf("unknown check type %q", spec.Type)
}

func (c *Checker) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	if c.Dialer != nil {
		return c.Dialer(ctx, network, addr)
	}
	var d net.Dialer
	return d.DialContext(ctx, network, addr)
}

func (c *Checker) httpClient() *http.Client {
	if c.HTTPClient != nil {
		return c.HTTPClient
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.client == nil {
		c.client = &http.Client{
			Transport: &http.Transport{DialContext: c.dial, DisableKeepAlives: true},
			// A redirect is not followed: the check is of its target, where
			// a 3xx passes, and the Location is the target's to choose. A
			// student's server answering 302 to 169.254.169.254, or to
			// another host's ports, would otherwise have this machine probe
			// what checkTarget refuses, and show everyone what it found.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		}
	}
	return c.client
}

// transition sets instance id's health to h if it differs, the instance
// still has the check spec and still() (if given) holds, all inside one
// update so that racing writers cannot undo each other; it logs the change.
func (c *Checker) transition(id string, spec Check, h Health, why string, still func() bool) error {
	c.mu.Lock()
	if rc := c.checks[FoldName(id)]; rc != nil && rc.spec == spec {
		rc.last = CheckResult{Health: h, Output: why, At: time.Now()}
	}
	c.mu.Unlock()
	var from Health
	_, err := c.Registry.Update(func(tx *Tx) error {
		inst, ok := tx.Instance(id)
		if !ok || inst.Check == nil || *inst.Check != spec || inst.Health == h {
			return nil
		}
		if still != nil && !still() {
			return nil
		}
		from = inst.Health
		return tx.SetHealth(id, h)
	})
	if err != nil {
		c.logger().Error("cannot record health", "id", id, "to", h, "err", err)
		return err
	}
	if from != 0 {
		c.logger().Info("health changed", "id", id, "from", from, "to", h, "why", why)
	}
	return nil
}

func (c *Checker) logger() *slog.Logger {
	if c.Logger != nil {
		return c.Logger
	}
	return slog.Default()
}

// Heartbeat records that the instance with a ttl check is alive, turning
// it passing at once if it was critical. It returns an error wrapping
// ErrNotFound for an unknown instance and a *FieldError for one without a
// ttl check.
func (c *Checker) Heartbeat(id string) error {
	inst, ok := c.Registry.Snapshot().Instance(id)
	if !ok {
		return fmt.Errorf("registry: instance %q: %w", id, ErrNotFound)
	}
	if inst.Check == nil || inst.Check.Type != "ttl" {
		typ := "none"
		if inst.Check != nil {
			typ = inst.Check.Type
		}
		return &FieldError{Field: "check.type", Value: typ, Reason: "heartbeats are for instances with a ttl check"}
	}
	c.mu.Lock()
	if c.beats == nil {
		c.checks = map[string]*runningCheck{}
		c.beats = map[string]time.Time{}
	}
	c.beats[FoldName(inst.ID)] = time.Now()
	c.mu.Unlock()
	return c.transition(inst.ID, *inst.Check, Passing, "heartbeat", nil)
}
