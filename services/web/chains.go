package web

import (
	"context"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/annuaire/annuaire/registry"
	"github.com/annuaire/annuaire/resolver"
)

// MaxChains bounds how many service types the page draws a chain for:
// each is a Lookup per registry change, and a directory with more types
// than this is read in the table, not in pictures.
const MaxChains = 64

// chainTimeout bounds one set of lookups; lookupParallel bounds how many
// run at once, so that a large directory does not burst the DNS server.
const (
	chainTimeout   = 5 * time.Second
	lookupParallel = 8
)

// chainSet is the page's pictures for one registry serial: one Lookup per
// service type, run once and shared by every event stream.
type chainSet struct {
	Serial uint32    `json:"serial"` // the registry serial the lookups ran after
	At     time.Time `json:"at"`     // when they ran: the pictures' age
	// Fresh is true when the lookups bypassed the resolver's cache, so the
	// pictures show what DNS answered at At. False means an answer may be
	// up to its TTL older than the registry: the steps say "cached".
	Fresh   bool        `json:"fresh"`
	Omitted int         `json:"omitted"` // service types beyond MaxChains, not looked up
	Chains  []typeChain `json:"chains"`
}

// typeChain is the chain of one service type, exactly as the client's
// Lookup found it, and the registered processes it leads to.
type typeChain struct {
	Type    string `json:"type"`    // "_echo._udp"
	Service string `json:"service"` // "echo"
	Proto   string `json:"proto"`   // "udp"
	Name    string `json:"name"`    // what was looked up: "echo/udp", as `annuaire lookup` takes it
	// Trace is the Lookup's chain, the JSON of `annuaire lookup NAME
	// --json`; null only when the Lookup returned none.
	Trace *resolver.Chain `json:"trace"`
	Error string          `json:"error"` // the Lookup's error, "" when it succeeded
	// Processes are the registry's instances at the chain's candidates,
	// in the candidates' order: who answers a connect(2) there.
	Processes []chainProcess `json:"processes"`
}

type chainProcess struct {
	Endpoint string          `json:"endpoint"` // address:port, a candidate of the trace
	ID       string          `json:"id"`
	Instance registry.Octets `json:"instance"` // the DNS-SD instance label
	Process  string          `json:"process"`  // "annuaire echo (pid 4242)", from TXT when the server said
	Health   string          `json:"health"`
}

// chainCache holds the last chainSet so that every stream, and every
// poller, costs one set of lookups per registry change, not one each.
type chainCache struct {
	mu   sync.Mutex // held while a set runs: concurrent callers wait for it
	last *chainSet  // guarded by mu
}

func (s *Server) chainLookup() (lookup LookupFunc, fresh bool) {
	if s.ChainLookup != nil {
		return s.ChainLookup, true
	}
	return s.Lookup, false
}

// chainsReady reports whether the pictures for snap are looked up
// already, so that chains would not wait.
func (s *Server) chainsReady(snap *registry.Snapshot) bool {
	s.chainCache.mu.Lock()
	defer s.chainCache.mu.Unlock()
	c := s.chainCache.last
	return c != nil && c.Serial == snap.Serial()
}

// chains returns the pictures for snap, running the lookups if no caller
// has for this serial yet. It returns nil when the server has no Lookup.
func (s *Server) chains(snap *registry.Snapshot) *chainSet {
	lookup, fresh := s.chainLookup()
	if lookup == nil {
		return nil
	}
	s.chainCache.mu.Lock()
	defer s.chainCache.mu.Unlock()
	serial := snap.Serial()
	if c := s.chainCache.last; c != nil && c.Serial == serial {
		return c
	}

	// The set is shared, so it must not end with the request that ran it;
	// it ends with its timeout or with the server.
	ctx, cancel := context.WithTimeout(context.Background(), chainTimeout)
	defer cancel()
	go func() {
		select {
		case <-s.closing:
			cancel()
		case <-ctx.Done():
		}
	}()

	set := &chainSet{Serial: serial, At: time.Now().UTC(), Fresh: fresh, Chains: []typeChain{}}
	for t := range snap.Types() {
		if len(set.Chains) == MaxChains {
			set.Omitted++
			continue
		}
		name := t.Service
		if t.Proto != "tcp" {
			name += "/" + t.Proto // Lookup reads a bare name as tcp
		}
		set.Chains = append(set.Chains, typeChain{
			Type: "_" + t.Service + "._" + t.Proto, Service: t.Service, Proto: t.Proto, Name: name,
		})
	}
	var wg sync.WaitGroup
	sem := make(chan struct{}, lookupParallel)
	for i := range set.Chains {
		wg.Add(1)
		sem <- struct{}{}
		go func(tc *typeChain) {
			defer func() { <-sem; wg.Done() }()
			s.runChain(ctx, lookup, snap, tc)
		}(&set.Chains[i])
	}
	wg.Wait()
	s.chainCache.last = set
	return set
}

// runChain looks tc's name up and finds the registered process behind
// each candidate.
func (s *Server) runChain(ctx context.Context, lookup LookupFunc, snap *registry.Snapshot, tc *typeChain) {
	trace, err := lookup(ctx, tc.Name)
	if err != nil {
		tc.Error = err.Error()
	}
	if trace == nil {
		if tc.Error == "" {
			tc.Error = "the lookup returned no trace"
		}
		tc.Processes = []chainProcess{}
		return
	}
	tc.Trace = trace
	tc.Processes = s.processesAt(snap, tc.Service, tc.Proto, trace.Candidates)
}

// processesAt finds the registry's instances of service/proto at the
// candidates a Lookup found, in the candidates' order: who answers a
// connect(2) there.
func (s *Server) processesAt(snap *registry.Snapshot, service, proto string, cands []resolver.Candidate) []chainProcess {
	out := []chainProcess{}
	zone := s.zone()
	for _, cd := range cands {
		for inst := range snap.Instances(proto, service) {
			if inst.Port != cd.Port || !strings.EqualFold(inst.Host+"."+zone, dnsFqdn(cd.Host)) {
				continue
			}
			out = append(out, chainProcess{
				Endpoint: joinHostPort(cd.Address, cd.Port),
				ID:       inst.ID,
				Instance: registry.Octets(inst.Label),
				Process:  processName(s.catalog(), inst),
				Health:   inst.Health.String(),
			})
		}
	}
	return out
}

// processName says who answers at the end of the chain: what the
// instance's TXT says when its server said ("annuaire echo (pid 42)"),
// else the course's words for it.
func processName(cat *registry.Catalog, inst *registry.Instance) string {
	if by, _ := inst.TXT.Lookup("served-by"); by != "" {
		name := by + " " + inst.Service
		if pid, _ := inst.TXT.Lookup("pid"); pid != "" {
			name += " (pid " + pid + ")"
		}
		return name
	}
	return process(cat, inst)
}

func dnsFqdn(h string) string {
	if strings.HasSuffix(h, ".") {
		return h
	}
	return h + "."
}

func joinHostPort(addr string, port uint16) string {
	if strings.Contains(addr, ":") {
		addr = "[" + addr + "]"
	}
	return addr + ":" + strconv.Itoa(int(port))
}

// listChains answers GET /api/chains: the pictures for the registry as it
// is now, for browsers that poll instead of streaming.
func (s *Server) listChains(w http.ResponseWriter, r *http.Request) {
	set := s.chains(s.Registry.Snapshot())
	if set == nil {
		writeError(w, http.StatusServiceUnavailable, "lookups are not available on this server")
		return
	}
	writeJSON(w, http.StatusOK, set)
}
