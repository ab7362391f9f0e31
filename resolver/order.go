package resolver

import (
	"slices"

	"github.com/miekg/dns"
)

// orderSRV returns the SRV records in the order a client tries them,
// following the algorithm of RFC 2782 ("Usage rules"): lowest priority
// first; within one priority, repeatedly pick a record at random with a
// probability proportional to its weight. Zero-weight records are put
// first in the list, so the running-sum draw below gives them the very
// small chance the RFC asks for (they are picked only when the uniform
// number is 0), and a priority whose weights are all zero needs no
// division: the number is always 0 and the records come in list order,
// which the initial shuffle made random.
func orderSRV(srvs []*dns.SRV, intN func(int) int) []*dns.SRV {
	if len(srvs) == 1 {
		return srvs
	}
	out := make([]*dns.SRV, 0, len(srvs))
	rest := slices.Clone(srvs)
	// "Arrange all SRV RRs (that have not been ordered yet) in any order":
	// a shuffle, so that equal zero weights share the load.
	for i := len(rest) - 1; i > 0; i-- {
		j := intN(i + 1)
		rest[i], rest[j] = rest[j], rest[i]
	}
	slices.SortStableFunc(rest, func(a, b *dns.SRV) int {
		if a.Priority != b.Priority {
			return int(a.Priority) - int(b.Priority)
		}
		// Zero weights at the beginning of each priority.
		return min(int(a.Weight), 1) - min(int(b.Weight), 1)
	})
	for len(rest) > 0 {
		n := 1
		for n < len(rest) && rest[n].Priority == rest[0].Priority {
			n++
		}
		group := rest[:n]
		for len(group) > 0 {
			sum := 0
			for _, s := range group {
				sum += int(s.Weight)
			}
			// "a uniform random number between 0 and the sum computed
			// (inclusive)"; pick the first whose running sum is >= it.
			x := intN(sum + 1)
			run, pick := 0, 0
			for i, s := range group {
				run += int(s.Weight)
				if run >= x {
					pick = i
					break
				}
			}
			out = append(out, group[pick])
			group = slices.Delete(group, pick, pick+1)
		}
		rest = rest[n:]
	}
	return out
}

// orderMX returns the MX records by preference, lowest first, in random
// order among equal preferences (RFC 5321 section 5.1).
func orderMX(mxs []*dns.MX, intN func(int) int) []*dns.MX {
	out := slices.Clone(mxs)
	for i := len(out) - 1; i > 0; i-- {
		j := intN(i + 1)
		out[i], out[j] = out[j], out[i]
	}
	slices.SortStableFunc(out, func(a, b *dns.MX) int { return int(a.Preference) - int(b.Preference) })
	return out
}
