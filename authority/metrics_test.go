package authority

import (
	"io"
	"log/slog"
	"net"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/annuaire/annuaire/authority/internal/authtest"
	"github.com/annuaire/annuaire/authority/tsig"
	"github.com/annuaire/annuaire/registry"
)

// TestMetrics checks the DNS server's counters, scraped as the process
// serves them: queries answered from the wire cache and by the full path,
// and transfers, signed and refused.
func TestMetrics(t *testing.T) {
	reg := registry.New(1)
	if _, err := reg.Register(registry.Instance{Service: "echo", Host: "host", Port: 7007},
		&registry.Host{Name: "host", Addrs: authtest.Addrs("127.0.0.1"), Auto: true}); err != nil {
		t.Fatal(err)
	}
	key := tsig.Key{Algorithm: dns.HmacSHA256, Name: "xfr.", Secret: "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LXNlY3JldA=="}
	m := NewMetrics()
	s := &Server{Registry: reg, Keys: []tsig.Key{key}, Metrics: m, Logger: slog.New(slog.DiscardHandler)}
	addr := authtest.Start(t, s)

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
	axfr := func(key *tsig.Key) error {
		m := new(dns.Msg)
		m.SetAxfr("svc.internal.")
		tr := &dns.Transfer{}
		if key != nil {
			tr.TsigProvider = tsig.Keyring{*key}
			m.SetTsig(key.Name, key.Algorithm, 300, time.Now().Unix())
		}
		ch, err := tr.In(m, addr)
		if err != nil {
			return err
		}
		for env := range ch {
			if env.Error != nil {
				return env.Error
			}
		}
		return nil
	}
	if err := axfr(&key); err != nil {
		t.Fatal(err)
	}
	if err := axfr(nil); err == nil {
		t.Fatal("an unsigned AXFR went through")
	}

	pr := prometheus.NewRegistry()
	pr.MustRegister(m)
	scrape := func() string {
		rec := httptest.NewRecorder()
		promhttp.HandlerFor(pr, promhttp.HandlerOpts{}).ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
		body, _ := io.ReadAll(rec.Result().Body)
		return string(body)
	}
	// The server counts a transfer once its last message is written,
	// which may be after the client has read it.
	var body string
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		body = scrape()
		if strings.Contains(body, `annuaire_dns_transfers_total{result="full",type="AXFR"} 1`) || time.Now().After(deadline) {
			break
		}
	}
	for _, want := range []string{
		`annuaire_dns_requests_total{qtype="SOA",rcode="NOERROR"} 3`,
		`annuaire_dns_requests_total{qtype="A",rcode="NXDOMAIN"} 1`,
		`annuaire_dns_transfers_total{result="full",type="AXFR"} 1`,
		`annuaire_dns_transfers_total{result="refused",type="AXFR"} 1`,
		`annuaire_dns_response_duration_seconds_count{transport="udp"} 4`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	if t.Failed() {
		t.Log(body)
	}
}

// BenchmarkObserve is the cost the metrics add to each request.
func BenchmarkObserve(b *testing.B) {
	m := NewMetrics()
	r := new(dns.Msg)
	r.SetQuestion("svc.internal.", dns.TypeSOA)
	w := nopWriter{}
	for b.Loop() {
		ow, done := m.observe(w, r, false)
		ow.WriteMsg(r)
		done()
	}
}

type nopWriter struct{ dns.ResponseWriter }

func (nopWriter) WriteMsg(*dns.Msg) error { return nil }
func (nopWriter) RemoteAddr() net.Addr    { return &net.UDPAddr{} }
