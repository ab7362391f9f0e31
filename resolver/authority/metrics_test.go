package authority

import (
	"fmt"
	"io"
	"net"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/miekg/dns"

	"github.com/annuaire/annuaire/registry"
)

func TestMetrics(t *testing.T) {
	reg := registry.New(1)
	xfrRegister(t, reg, "echo", 7007, "host", "127.0.0.1")
	id := xfrRegister(t, reg, "echo", 7008, "host", "127.0.0.1")
	if err := reg.SetHealth(id, registry.Critical); err != nil {
		t.Fatal(err)
	}
	m := NewMetrics(reg)
	s := &Server{Registry: reg, Keys: []TSIGKey{xfrKey}, Metrics: m}
	addr := startXfr(t, s)

	c := new(dns.Client)
	for range 3 {
		q := new(dns.Msg)
		q.SetQuestion("svc.internal.", dns.TypeSOA)
		if _, _, err := c.Exchange(q, addr); err != nil {
			t.Fatal(err)
		}
	}
	q := new(dns.Msg)
	q.SetQuestion("nowhere.svc.internal.", dns.TypeA)
	if _, _, err := c.Exchange(q, addr); err != nil {
		t.Fatal(err)
	}
	if _, err := xfr(t, addr, dns.TypeAXFR, 0, &xfrKey); err != nil {
		t.Fatal(err)
	}
	xfr(t, addr, dns.TypeAXFR, 0, nil)
	m.WatchConns("echo", func() (int64, int64) { return 3, 1 })

	scrape := func() string {
		rec := httptest.NewRecorder()
		m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
		body, _ := io.ReadAll(rec.Result().Body)
		return string(body)
	}
	// The server counts a transfer once its last message is written,
	// which may be after the client has read it.
	var body string
	waitFor(t, "the transfers to be counted", func() bool {
		body = scrape()
		return strings.Contains(body, `annuaire_dns_transfers_total{result="full",type="AXFR"} 1`)
	})
	for _, want := range []string{
		`annuaire_dns_requests_total{qtype="SOA",rcode="NOERROR"} 3`,
		`annuaire_dns_requests_total{qtype="A",rcode="NXDOMAIN"} 1`,
		`annuaire_dns_transfers_total{result="full",type="AXFR"} 1`,
		`annuaire_dns_transfers_total{result="refused",type="AXFR"} 1`,
		`annuaire_dns_response_duration_seconds_count{transport="udp"} 4`,
		`annuaire_registry_instances{health="passing"} 1`,
		`annuaire_registry_instances{health="critical"} 1`,
		`annuaire_registry_hosts 1`,
		`annuaire_registry_service_types 1`,
		`annuaire_connections_open{service="echo"} 1`,
		`annuaire_connections_total{service="echo"} 3`,
		`go_goroutines`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	if t.Failed() {
		t.Log(body)
	}
}

// TestJournalMetrics checks the journal's counters on a registry that has
// one, and that one without shows none.
func TestJournalMetrics(t *testing.T) {
	scrape := func(m *Metrics) string {
		rec := httptest.NewRecorder()
		m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
		body, _ := io.ReadAll(rec.Result().Body)
		return string(body)
	}
	if body := scrape(NewMetrics(registry.New(1))); strings.Contains(body, "annuaire_journal_") {
		t.Errorf("a registry without a journal has journal metrics:\n%s", body)
	}
	reg, err := registry.Open(t.TempDir(), registry.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer reg.Close()
	for i := range 3 {
		xfrRegister(t, reg, "echo", uint16(7000+i), "host", "127.0.0.1")
	}
	st, _ := reg.JournalStats()
	if st.Records != 3 || st.Syncs < 1 || st.Syncs > 3 || st.Bytes == 0 || st.SyncTime <= 0 {
		t.Errorf("journal stats %+v after 3 registrations one after the other", st)
	}
	body := scrape(NewMetrics(reg))
	for _, want := range []string{
		"annuaire_journal_records_total 3\n",
		fmt.Sprintf("annuaire_journal_syncs_total %d\n", st.Syncs),
		fmt.Sprintf("annuaire_journal_written_bytes_total %d\n", st.Bytes),
		"annuaire_journal_sync_seconds_total ",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
}

// BenchmarkObserve is the cost the metrics add to each request.
func BenchmarkObserve(b *testing.B) {
	m := NewMetrics(registry.New(1))
	r := new(dns.Msg)
	r.SetQuestion("svc.internal.", dns.TypeSOA)
	w := nopWriter{}
	for b.Loop() {
		ow, done := m.observe(w, r)
		ow.WriteMsg(r)
		done()
	}
}

type nopWriter struct{ dns.ResponseWriter }

func (nopWriter) WriteMsg(*dns.Msg) error { return nil }
func (nopWriter) RemoteAddr() net.Addr    { return &net.UDPAddr{} }
