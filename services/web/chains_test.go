package web

import (
	"context"
	"encoding/json"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/annuaire/annuaire/registry"
	"github.com/annuaire/annuaire/resolver"
)

// TestChainsLookupOncePerType: the page's chains cost one Lookup per
// service type per registry change, however many callers ask, and come
// from a real resolver against a real authority with the registry's
// process at the end.
func TestChainsLookupOncePerType(t *testing.T) {
	reg := registry.New(1)
	lo := netip.MustParseAddr("127.0.0.1")
	for _, inst := range []registry.Instance{
		{Service: "echo", Proto: "tcp", Host: "box", Port: 7007, TXT: registry.TXT{"served-by=annuaire", "pid=77"}},
		{Service: "echo", Proto: "udp", Host: "box", Port: 7007},
		{Service: "echo", Proto: "tcp", Host: "box", Port: 7008}, // same type: no second lookup
	} {
		if _, err := reg.Register(inst, &registry.Host{Name: "box", Addrs: []netip.Addr{lo}, Auto: true}); err != nil {
			t.Fatal(err)
		}
	}
	fresh := &resolver.Resolver{Server: startAuthority(t, reg), NoCache: true}
	var mu sync.Mutex
	asked := map[string]int{}
	s := &Server{Registry: reg, ChainLookup: func(ctx context.Context, name string) (*resolver.Chain, error) {
		mu.Lock()
		asked[name]++
		mu.Unlock()
		return fresh.Lookup(ctx, name)
	}}
	s.init()

	var wg sync.WaitGroup
	var sets [8]*chainSet
	for i := range sets {
		wg.Go(func() { sets[i] = s.chains(reg.Snapshot()) })
	}
	wg.Wait()
	if asked["echo"] != 1 || asked["echo/udp"] != 1 || len(asked) != 2 {
		t.Errorf("lookups %v, want echo and echo/udp once each", asked)
	}
	set := sets[0]
	if !set.Fresh || len(set.Chains) != 2 || set.Chains[0].Type != "_echo._tcp" || set.Chains[1].Name != "echo/udp" {
		t.Fatalf("chains %+v", set)
	}
	trace := set.Chains[0].Trace
	if len(trace.Steps) < 2 || trace.Steps[1].Question != "_echo._tcp.svc.internal. SRV" || len(trace.Candidates) != 2 {
		t.Errorf("trace:\n%s", trace.Text())
	}
	procs := set.Chains[0].Processes
	if len(procs) != 2 {
		t.Fatalf("processes %+v", procs)
	}
	for _, p := range procs {
		if p.Endpoint == "127.0.0.1:7007" && p.Process != "annuaire echo (pid 77)" {
			t.Errorf("process at 7007: %+v", p)
		}
	}

	// A change re-runs them. With its only instance critical, echo/udp's
	// SRV question finds nothing; the client goes on to echo's address and
	// the well-known port 7, where no registered process is: the picture
	// must say so rather than show the process that was there before.
	if err := reg.SetHealth("echo-udp-box-7007", registry.Critical); err != nil {
		t.Fatal(err)
	}
	set = s.chains(reg.Snapshot())
	if asked["echo"] != 2 || asked["echo/udp"] != 2 {
		t.Errorf("after a change, lookups %v, want two each", asked)
	}
	udp := set.Chains[1]
	trace = udp.Trace
	if len(trace.Steps) < 2 || trace.Steps[1].Step != "srv" || len(trace.Steps[1].Answers) != 0 || len(udp.Processes) != 0 {
		t.Errorf("critical echo/udp: %+v\n%s", udp.Processes, trace.Text())
	}
}

// TestChainsWithoutLookup: no Lookup, no pictures; Lookup alone is used
// (maybe cached) when ChainLookup is nil, and the set says so.
func TestChainsWithoutLookup(t *testing.T) {
	base := startServer(t, &Server{})
	if r := call(t, "GET", base+"/api/chains", "", ""); r.status != 503 {
		t.Errorf("GET /api/chains without Lookup: %d %s", r.status, r.body)
	}
	if r := call(t, "POST", base+"/api/chains", "", ""); r.status != 405 {
		t.Errorf("POST /api/chains: %d", r.status)
	}

	var n atomic.Int32
	reg := registry.New(1)
	if _, err := reg.Register(registry.Instance{Service: "http", Proto: "tcp", Host: "box", Port: 80},
		&registry.Host{Name: "box", Addrs: []netip.Addr{netip.MustParseAddr("127.0.0.1")}, Auto: true}); err != nil {
		t.Fatal(err)
	}
	base = startServer(t, &Server{Registry: reg, Lookup: func(ctx context.Context, name string) (*resolver.Chain, error) {
		n.Add(1)
		return (*resolver.Chain)(nil), &resolver.LookupError{Name: name, Step: "srv", Err: resolver.ErrNoSuchService}
	}})
	r := call(t, "GET", base+"/api/chains", "", "")
	var set chainSet
	if err := json.Unmarshal(r.body, &set); err != nil || r.status != 200 {
		t.Fatalf("%d %s", r.status, r.body)
	}
	if set.Fresh || len(set.Chains) != 1 || set.Chains[0].Error == "" || set.Chains[0].Trace != nil || n.Load() != 1 {
		t.Errorf("%s", r.body)
	}
}
