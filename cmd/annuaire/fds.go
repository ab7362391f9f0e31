package main

import (
	"fmt"
	"maps"
	"strings"

	"github.com/annuaire/annuaire/registry"
)

// fdFixed is what serve holds whatever its clients do: stdio, its
// listeners, the journal's files, the poller, NOTIFY's sockets.
const fdFixed = 64

// fdPlan is how serve shares its file-descriptor limit among the servers
// that hold a descriptor per connection, or per health probe: each gets a
// cap of its own, and the caps add up to no more than the limit, so that
// no server's clients can take the descriptors another needs. An attack
// with 20,000 event streams took every descriptor of the process: health
// checks failed with "too many open files", every hosted service went
// critical and left DNS, and DNS over TCP stopped answering.
type fdPlan struct {
	dnsTCP int            // authority.Server.MaxTCPConns
	probes int            // registry.Checker.MaxProbes
	hosted map[string]int // each hosted service's connection cap, by flag
}

// wantFDs is the plan when descriptors are plenty: each server's flag, or
// its default.
func wantFDs(f *serveFlags) fdPlan {
	p := fdPlan{dnsTCP: f.dnsLimits.tcpMax, probes: registry.DefaultMaxProbes, hosted: map[string]int{}}
	for _, h := range hostedServices() {
		p.hosted[h.flag] = h.conns(f)
	}
	return p
}

// conns is the connection cap of the hosted service of flag.
func (p fdPlan) conns(flag string) int { return p.hosted[flag] }

func (p fdPlan) equal(q fdPlan) bool {
	return p.dnsTCP == q.dnsTCP && p.probes == q.probes && maps.Equal(p.hosted, q.hosted)
}

// descriptors is what a plan holds at most, fdFixed included.
func (p fdPlan) descriptors() int {
	n := fdFixed + p.dnsTCP + p.probes
	for _, h := range hostedServices() {
		n += h.descriptors(p.hosted[h.flag])
	}
	return n
}

func (p fdPlan) String() string {
	parts := []string{fmt.Sprintf("dns/tcp %d", p.dnsTCP)}
	for _, h := range hostedServices() {
		parts = append(parts, fmt.Sprintf("%s %d", h.flag, p.hosted[h.flag]))
	}
	parts = append(parts, fmt.Sprintf("health probes %d", p.probes))
	return strings.Join(parts, ", ")
}

// fitFDs scales want down, every cap in proportion, until it fits limit
// descriptors; a limit of 0 (unknown) leaves it as it is. It fails when
// even caps of a few connections each do not fit.
func fitFDs(want fdPlan, limit int) (fdPlan, error) {
	if limit <= 0 || want.descriptors() <= limit {
		return want, nil
	}
	at := func(k float64) fdPlan {
		s := func(want, floor int) int { return max(min(want, floor), int(float64(want)*k)) }
		p := fdPlan{dnsTCP: s(want.dnsTCP, 8), probes: s(want.probes, 8), hosted: map[string]int{}}
		for flag, n := range want.hosted {
			p.hosted[flag] = s(n, 8)
		}
		return p
	}
	if floor := at(0); floor.descriptors() > limit {
		return fdPlan{}, fmt.Errorf("the file-descriptor limit (%d) is too low to serve: annuaire needs at least %d; raise it (ulimit -n)", limit, floor.descriptors())
	}
	// Bisect the scale: descriptors grows with it.
	lo, hi := 0.0, 1.0
	for range 40 {
		if k := (lo + hi) / 2; at(k).descriptors() <= limit {
			lo = k
		} else {
			hi = k
		}
	}
	return at(lo), nil
}
