package resolver

import (
	"math/rand/v2"
	"testing"

	"github.com/miekg/dns"
)

// FuzzOrderSRV checks RFC 2782 ordering on any set of records: the result
// is a permutation of the input, sorted by priority, whatever the weights
// (zeros included: no division by zero).
func FuzzOrderSRV(f *testing.F) {
	f.Add([]byte{0, 0, 0, 0}, uint64(1))
	f.Add([]byte{10, 90, 10, 10, 0, 0}, uint64(2))
	f.Fuzz(func(t *testing.T, spec []byte, seed uint64) {
		var srvs []*dns.SRV
		for i := 0; i+1 < len(spec) && len(srvs) < 64; i += 2 {
			srvs = append(srvs, &dns.SRV{Priority: uint16(spec[i] % 4), Weight: uint16(spec[i+1]) * 257, Port: uint16(i)})
		}
		out := orderSRV(srvs, rand.New(rand.NewPCG(seed, seed)).IntN)
		if len(out) != len(srvs) {
			t.Fatalf("%d records in, %d out", len(srvs), len(out))
		}
		seen := map[*dns.SRV]bool{}
		for i, s := range out {
			if seen[s] {
				t.Fatalf("record %v twice", s)
			}
			seen[s] = true
			if i > 0 && out[i-1].Priority > s.Priority {
				t.Fatalf("priority %d after %d", s.Priority, out[i-1].Priority)
			}
		}
	})
}
