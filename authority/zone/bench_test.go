package zone

import (
	"testing"

	"github.com/miekg/dns"

	"github.com/annuaire/annuaire/authority/internal/authtest"
)

// BenchmarkAnswer measures answer construction alone, from a snapshot of
// 1000 instances, for the questions clients ask most.
func BenchmarkAnswer(b *testing.B) {
	s := server{New(Config{Origin: authtest.Zone}), authtest.Big(b, 1000)}
	for _, q := range []struct {
		name  string
		qtype uint16
	}{
		{"svc.internal.", dns.TypeSOA},
		{"h500.svc.internal.", dns.TypeA},
		{"_big._tcp.svc.internal.", dns.TypeSRV}, // truncated: 1000 records
		{"nope.svc.internal.", dns.TypeA},
	} {
		b.Run(q.name+"/"+dns.TypeToString[q.qtype], func(b *testing.B) {
			r := new(dns.Msg)
			r.SetQuestion(q.name, q.qtype)
			r.SetEdns0(1232, false)
			b.ReportAllocs()
			for b.Loop() {
				m := s.respond(r, false)
				if _, err := m.Pack(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
