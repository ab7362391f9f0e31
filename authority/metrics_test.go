package authority

import (
	"io"
	"log/slog"
	"math"
	"net"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	dto "github.com/prometheus/client_model/go"

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
	// The server counts a transfer once its last message is written, and
	// an answer's latency once it is sent (the portable UDP loop), both
	// of which may be after the client has read it.
	var body string
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		body = scrape()
		if strings.Contains(body, `annuaire_dns_transfers_total{result="full",type="AXFR"} 1`) &&
			strings.Contains(body, `annuaire_dns_response_duration_seconds_count{transport="udp"} 4`) || time.Now().After(deadline) {
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

// BenchmarkLatency is what observing the latency of a UDP batch of 32
// answers costs, per answer: a prometheus.Histogram observed once per
// answer, as the loop did, and the server's histogram, once per batch.
func BenchmarkLatency(b *testing.B) {
	const batch = 32
	b.Run("histogram=prometheus", func(b *testing.B) {
		h := prometheus.NewHistogram(prometheus.HistogramOpts{Name: "l", Buckets: latencyBuckets()})
		for b.Loop() {
			for range batch {
				h.Observe(70e-6)
			}
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*batch), "ns/answer")
	})
	b.Run("histogram=batched", func(b *testing.B) {
		h := newLatencyHistogram(latencyBuckets())
		for b.Loop() {
			h.observeN(70e-6, batch)
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*batch), "ns/answer")
	})
}

// TestLatencyHistogram feeds the server's histogram and a
// prometheus.Histogram the same answers, some at once, on and between
// bucket bounds and past the last: both write the same buckets, count and
// sum.
func TestLatencyHistogram(t *testing.T) {
	want := prometheus.NewHistogram(prometheus.HistogramOpts{Name: "l", Buckets: latencyBuckets()})
	got := newLatencyHistogram(latencyBuckets())
	for i, v := range []float64{0, 25e-6, 26e-6, 50e-6, 1e-3, 0.8192, 0.82, 3, 1e-9} {
		n := i%3 + 1
		got.observeN(v, n)
		for range n {
			want.Observe(v)
		}
	}
	got.Observe(2e-4)
	want.Observe(2e-4)
	var w, g dto.Metric
	if err := want.Write(&w); err != nil {
		t.Fatal(err)
	}
	if err := got.metric(prometheus.NewDesc("l", "", []string{"transport"}, nil), "udp").Write(&g); err != nil {
		t.Fatal(err)
	}
	wh, gh := w.GetHistogram(), g.GetHistogram()
	if gh.GetSampleCount() != wh.GetSampleCount() || math.Abs(gh.GetSampleSum()-wh.GetSampleSum()) > 1e-12 {
		t.Errorf("count %d, sum %g; want %d, %g", gh.GetSampleCount(), gh.GetSampleSum(), wh.GetSampleCount(), wh.GetSampleSum())
	}
	if len(gh.Bucket) != len(wh.Bucket) {
		t.Fatalf("%d buckets, want %d", len(gh.Bucket), len(wh.Bucket))
	}
	for i := range wh.Bucket {
		if gh.Bucket[i].GetUpperBound() != wh.Bucket[i].GetUpperBound() || gh.Bucket[i].GetCumulativeCount() != wh.Bucket[i].GetCumulativeCount() {
			t.Errorf("bucket %d: le %g count %d, want le %g count %d", i, gh.Bucket[i].GetUpperBound(), gh.Bucket[i].GetCumulativeCount(),
				wh.Bucket[i].GetUpperBound(), wh.Bucket[i].GetCumulativeCount())
		}
	}
}
