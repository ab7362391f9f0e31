package authority

import (
	"log/slog"
	"testing"

	"github.com/miekg/dns"
)

// FuzzServeDNS feeds any message miekg/dns can unpack to the handler, over
// UDP and TCP: it must never panic, and a UDP answer to a query must fit
// the size the transport allows. Seeds are in testdata/fuzz/FuzzServeDNS.
func FuzzServeDNS(f *testing.F) {
	for _, tc := range queryTests {
		b, err := tc.request().Pack()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	s := &Server{Registry: newTestRegistry(f), Zone: testZone, Logger: slog.New(slog.DiscardHandler)}
	f.Fuzz(func(t *testing.T, data []byte) {
		r := new(dns.Msg)
		if err := r.Unpack(data); err != nil || r.Response {
			return // miekg's server answers FORMERR or ignores these before us
		}
		for _, tcp := range []bool{false, true} {
			w := &recorder{tcp: tcp}
			s.ServeDNS(w, r.Copy())
			if tcp || r.Opcode != dns.OpcodeQuery {
				continue
			}
			for _, b := range w.raw {
				if len(b) > maxUDPSize {
					t.Errorf("%d-byte UDP answer to %v", len(b), r.Question)
				}
				if r.IsEdns0() == nil && len(b) > dns.MinMsgSize {
					t.Errorf("%d-byte UDP answer without EDNS to %v", len(b), r.Question)
				}
			}
		}
	})
}
