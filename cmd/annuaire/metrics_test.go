package main

import (
	"fmt"
	"io"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"

	"github.com/annuaire/annuaire/registry"
)

func scrapeMetrics(m *processMetrics) string {
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	body, _ := io.ReadAll(rec.Result().Body)
	return string(body)
}

func registerEcho(t *testing.T, reg *registry.Registry, port uint16) string {
	t.Helper()
	id, err := reg.Register(registry.Instance{Service: "echo", Proto: "tcp", Host: "host", Port: port},
		&registry.Host{Name: "host", Addrs: []netip.Addr{netip.MustParseAddr("127.0.0.1")}, Auto: true})
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// TestProcessMetrics checks what the process adds to the DNS server's
// counters: the registry's size and health, the hosted services'
// connections, Go's runtime.
func TestProcessMetrics(t *testing.T) {
	reg := registry.New(1)
	registerEcho(t, reg, 7007)
	if err := reg.SetHealth(registerEcho(t, reg, 7008), registry.Critical); err != nil {
		t.Fatal(err)
	}
	m := newMetrics(reg)
	m.WatchConns("echo", func() (int64, int64) { return 3, 1 })
	body := scrapeMetrics(m)
	for _, want := range []string{
		`annuaire_zone_serial 4`,
		`annuaire_registry_instances{health="passing"} 1`,
		`annuaire_registry_instances{health="critical"} 1`,
		`annuaire_registry_hosts 1`,
		`annuaire_registry_service_types 1`,
		`annuaire_connections_open{service="echo"} 1`,
		`annuaire_connections_total{service="echo"} 3`,
		`go_goroutines`,
		"annuaire_dns_truncated_total 0", // the DNS server's, registered here
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
	if body := scrapeMetrics(newMetrics(registry.New(1))); strings.Contains(body, "annuaire_journal_") {
		t.Errorf("a registry without a journal has journal metrics:\n%s", body)
	}
	reg, err := registry.Open(t.TempDir(), registry.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer reg.Close()
	for i := range 3 {
		registerEcho(t, reg, uint16(7000+i))
	}
	st, _ := reg.JournalStats()
	if st.Records != 3 || st.Syncs < 1 || st.Syncs > 3 || st.Bytes == 0 || st.SyncTime <= 0 {
		t.Errorf("journal stats %+v after 3 registrations one after the other", st)
	}
	body := scrapeMetrics(newMetrics(reg))
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
