package zone

import (
	"testing"

	"github.com/miekg/dns"

	"github.com/annuaire/annuaire/authority/internal/authtest"
	"github.com/annuaire/annuaire/registry"
)

// server is a zone and the registry it answers from.
type server struct {
	*Zone
	reg *registry.Registry
}

func testServer(tb testing.TB) server {
	return server{New(Config{Origin: authtest.Zone}), authtest.Registry(tb)}
}

func (s server) respond(r *dns.Msg, tcp bool) *dns.Msg { return s.Respond(s.reg.Snapshot(), r, tcp) }

func TestQuery(t *testing.T) {
	s := testServer(t)
	for name, tc := range authtest.Queries {
		t.Run(name, func(t *testing.T) {
			// What the client sees: the packed message, unpacked.
			b, err := s.respond(tc.Request(), tc.TCP).Pack()
			if err != nil {
				t.Fatal(err)
			}
			m := new(dns.Msg)
			if err := m.Unpack(b); err != nil {
				t.Fatal(err)
			}
			tc.Check(t, m)
		})
	}
}
