package transfer_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/annuaire/annuaire/authority"
	"github.com/annuaire/annuaire/authority/tsig"
	"github.com/annuaire/annuaire/registry"
)

// fakeSecondary records the NOTIFY messages it receives over UDP, and
// ignores the first drop of them, as a lossy network would.
type fakeSecondary struct {
	mu     sync.Mutex // guards the fields below
	got    []time.Time
	zones  []string // "ZONE SERIAL" of each NOTIFY, the serial its answer section's SOA holds
	drop   int
	signed bool // every NOTIFY carried a valid TSIG
}

func startSecondary(t *testing.T, drop int) (*fakeSecondary, string) {
	t.Helper()
	f := &fakeSecondary{drop: drop, signed: true}
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &dns.Server{PacketConn: pc, TsigSecret: map[string]string{xfrKey.Name: xfrKey.Secret},
		Handler: dns.HandlerFunc(func(w dns.ResponseWriter, r *dns.Msg) {
			if r.Opcode != dns.OpcodeNotify {
				return
			}
			f.mu.Lock()
			if r.IsTsig() == nil || w.TsigStatus() != nil {
				f.signed = false
			}
			if f.drop > 0 {
				f.drop--
				f.mu.Unlock()
				return
			}
			f.got = append(f.got, time.Now())
			serial := "no-soa"
			if len(r.Answer) == 1 {
				if soa, ok := r.Answer[0].(*dns.SOA); ok && soa.Hdr.Name == r.Question[0].Name {
					serial = fmt.Sprint(soa.Serial)
				}
			}
			f.zones = append(f.zones, r.Question[0].Name+" "+serial)
			f.mu.Unlock()
			m := new(dns.Msg)
			m.SetReply(r)
			if t := r.IsTsig(); t != nil {
				m.SetTsig(t.Hdr.Name, t.Algorithm, 300, time.Now().Unix())
			}
			w.WriteMsg(m)
		})}
	go srv.ActivateAndServe()
	t.Cleanup(func() { srv.Shutdown() })
	return f, pc.LocalAddr().String()
}

func (f *fakeSecondary) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.got)
}

// runNotify runs s's NOTIFY sender until the test ends, and checks that
// it stops with its context. A server without a logger logs nothing.
func runNotify(t *testing.T, s *authority.Server) {
	t.Helper()
	if s.Logger == nil {
		s.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.RunNotify(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("RunNotify: %v", err)
			}
		case <-time.After(5 * time.Second):
			t.Error("RunNotify did not return after its context ended")
		}
	})
}

// waitFor fails the test if cond is not true within 15 s: a secondary
// daemon on a loaded machine may take seconds to load a zone.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestNotifyCoalesced(t *testing.T) {
	reg := registry.New(1)
	sec, addr := startSecondary(t, 0)
	s := &authority.Server{Registry: reg, Keys: []tsig.Key{xfrKey}, Notify: []string{addr}}
	runNotify(t, s)
	waitFor(t, "the NOTIFY sent at start", func() bool { return sec.count() == 1 })

	for i := range 20 {
		xfrRegister(t, reg, "echo", uint16(7000+i), "host", "127.0.0.1")
	}
	waitFor(t, "a NOTIFY after the burst", func() bool { return sec.count() >= 2 })
	time.Sleep(500 * time.Millisecond)
	// 20 changes in a few milliseconds: one or two windows of 200 ms on a
	// loaded machine, never one NOTIFY each.
	if n := sec.count() - 1; n > 3 {
		t.Errorf("20 changes in a burst sent %d NOTIFY messages", n)
	}
	sec.mu.Lock()
	defer sec.mu.Unlock()
	if !sec.signed {
		t.Error("a NOTIFY was not signed with the first key")
	}
}

// TestNotifyPerZone: each zone held is notified when its serial moves,
// and only then, with its SOA in the answer section (RFC 1996 section
// 3.7: BIND logs "no serial" without it): a reverse zone when an address
// changes, not when an instance does.
func TestNotifyPerZone(t *testing.T) {
	reg := registry.New(1)
	sec, addr := startSecondary(t, 0)
	s := &authority.Server{Registry: reg, Notify: []string{addr}}
	runNotify(t, s)
	waitFor(t, "the NOTIFY sent at start", func() bool { return sec.count() == 1 })
	xfrRegister(t, reg, "echo", 7, "host", "127.0.0.1") // serial 2: a host and an instance
	waitFor(t, "two NOTIFYs", func() bool { return sec.count() == 3 })
	xfrRegister(t, reg, "http", 80, "host", "127.0.0.1") // serial 3: an instance only
	waitFor(t, "a NOTIFY", func() bool { return sec.count() == 4 })
	xfrRegister(t, reg, "ftp", 21, "files", "2001:db8::1") // serial 4: a new IPv6 network
	waitFor(t, "two NOTIFYs", func() bool { return sec.count() == 6 })
	time.Sleep(500 * time.Millisecond)
	sec.mu.Lock()
	defer sec.mu.Unlock()
	got := strings.Join(sec.zones, "\n")
	want := strings.Join([]string{
		"svc.internal. 1",
		"svc.internal. 2", "0.0.127.in-addr.arpa. 2",
		"svc.internal. 3",
		"svc.internal. 4", "0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa. 4",
	}, "\n")
	if got != want {
		t.Errorf("NOTIFYs:\n%s\nwant:\n%s", got, want)
	}
}

func TestNotifyRetried(t *testing.T) {
	reg := registry.New(1)
	sec, addr := startSecondary(t, 1)
	s := &authority.Server{Registry: reg, Notify: []string{addr}}
	runNotify(t, s)
	// The first NOTIFY is lost; the retry comes after notifyRetryFirst
	// plus the timeout.
	waitFor(t, "the retried NOTIFY", func() bool { return sec.count() == 1 })
}

func TestNotifyBadAddress(t *testing.T) {
	s := &authority.Server{Registry: registry.New(1), Notify: []string{"no-port"}}
	if err := s.RunNotify(context.Background()); err == nil {
		t.Fatal("RunNotify accepted a secondary without a port")
	}
}
