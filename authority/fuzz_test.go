package authority

import (
	"log/slog"
	"testing"

	"github.com/annuaire/annuaire/authority/internal/authtest"
	"github.com/annuaire/annuaire/authority/zone"
	"github.com/miekg/dns"
)

// FuzzServeDNS feeds any message miekg/dns can unpack to the handler, over
// UDP and TCP: it must never panic, and a UDP answer to a query must fit
// the size the transport allows. Seeds are in testdata/fuzz/FuzzServeDNS,
// and the requests of authtest.Requests.
func FuzzServeDNS(f *testing.F) {
	for i, r := range authtest.Requests() {
		if i%17 != 0 {
			continue
		}
		b, err := r.Pack()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	s := &Server{Registry: authtest.Registry(f), Zone: authtest.Zone, Logger: slog.New(slog.DiscardHandler)}
	f.Fuzz(func(t *testing.T, data []byte) {
		r := new(dns.Msg)
		if err := r.Unpack(data); err != nil || r.Response {
			return // miekg's server answers FORMERR or ignores these before us
		}
		for _, tcp := range []bool{false, true} {
			w := &authtest.Recorder{TCP: tcp}
			s.ServeDNS(w, r.Copy())
			if tcp || r.Opcode != dns.OpcodeQuery {
				continue
			}
			for _, b := range w.Raw {
				if len(b) > zone.MaxUDPSize {
					t.Errorf("%d-byte UDP answer to %v", len(b), r.Question)
				}
				if r.IsEdns0() == nil && len(b) > dns.MinMsgSize {
					t.Errorf("%d-byte UDP answer without EDNS to %v", len(b), r.Question)
				}
			}
		}
	})
}
