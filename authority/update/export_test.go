package update

import (
	"github.com/miekg/dns"

	"github.com/annuaire/annuaire/registry"
)

// What the tests of package update_test (which start whole servers, and
// so import authority) need of this package's insides.

const MaxUpdateRecords = maxUpdateRecords

// Apply applies m as if its signature had verified, and returns its rcode.
func (h *Handler) Apply(m *dns.Msg) int {
	return h.apply(m, &updateLog{}, func(*registry.Tx) error { return nil })
}
