package authority

import (
	"math"
	"slices"
	"sync/atomic"
	"time"

	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/annuaire/annuaire/authority/wire"
)

// Metrics counts what a DNS server answers, in Prometheus form: a
// prometheus.Collector that the process registers with its other metrics.
// Each server has its own, so two servers in one process (as in tests)
// never share counters. A nil *Metrics counts nothing, so every hook may
// be called unconditionally.
type Metrics struct {
	queries                *prometheus.CounterVec // qtype, rcode
	latency                *prometheus.Desc       // transport: udpLatency, tcpLatency
	udpLatency, tcpLatency *latencyHistogram
	truncated              prometheus.Counter
	updates                *prometheus.CounterVec // result
	transfers              *prometheus.CounterVec // type, result
	notifies               *prometheus.CounterVec // result
	tcpClosed              *prometheus.CounterVec // reason
	cookies                *prometheus.CounterVec // result
	limited                *prometheus.CounterVec // action
}

// NewMetrics returns a server's metrics, all zero.
func NewMetrics() *Metrics {
	return &Metrics{
		queries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "annuaire_dns_requests_total",
			Help: "DNS requests answered, by question type and response code (rcode \"none\" when no answer was sent).",
		}, []string{"qtype", "rcode"}),
		latency: prometheus.NewDesc("annuaire_dns_response_duration_seconds",
			"Time from reading a DNS request to having written its answer.", []string{"transport"}, nil),
		udpLatency: newLatencyHistogram(latencyBuckets()),
		tcpLatency: newLatencyHistogram(latencyBuckets()),
		truncated: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "annuaire_dns_truncated_total",
			Help: "UDP answers sent with TC=1 because they did not fit.",
		}),
		updates: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "annuaire_dns_updates_total",
			Help: "RFC 2136 UPDATE requests, by result (accepted or refused).",
		}, []string{"result"}),
		transfers: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "annuaire_dns_transfers_total",
			Help: "Zone transfers, by type (AXFR, IXFR) and result (full, incremental, incremental-history, uptodate, tcp-needed, refused, error).",
		}, []string{"type", "result"}),
		notifies: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "annuaire_dns_notifies_total",
			Help: "NOTIFY messages sent to secondaries, by result (acked, declined, failed).",
		}, []string{"result"}),
		tcpClosed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "annuaire_dns_tcp_closed_total",
			Help: "TCP connections closed to make room for new ones, by reason: idlest (of all), per-client (the idlest of a client at its limit), idle (longer than the idle timeout shrunk by the load), refused (the new one, every other busy).",
		}, []string{"reason"}),
		cookies: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "annuaire_dns_cookies_total",
			Help: "Queries with a DNS COOKIE option (RFC 7873), by what it held: valid (a server cookie of ours: never rate limited), invalid (another, or expired), client (a client cookie alone).",
		}, []string{"result"}),
		limited: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "annuaire_dns_rate_limited_total",
			Help: "UDP answers over the rate limit, by action: dropped, or slipped (sent truncated, or BADCOOKIE to a client with a cookie).",
		}, []string{"action"}),
	}
}

func (m *Metrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{m.queries, m.truncated, m.updates, m.transfers, m.notifies, m.tcpClosed, m.cookies, m.limited}
}

// Describe implements prometheus.Collector.
func (m *Metrics) Describe(ch chan<- *prometheus.Desc) {
	for _, c := range m.collectors() {
		c.Describe(ch)
	}
	ch <- m.latency
}

// Collect implements prometheus.Collector.
func (m *Metrics) Collect(ch chan<- prometheus.Metric) {
	for _, c := range m.collectors() {
		c.Collect(ch)
	}
	ch <- m.udpLatency.metric(m.latency, "udp")
	ch <- m.tcpLatency.metric(m.latency, "tcp")
}

// wireCounters are the counters the wire cache feeds with the answers it
// sends itself.
func (m *Metrics) wireCounters() wire.Counters {
	if m == nil {
		return wire.Counters{}
	}
	return wire.Counters{
		Answers: func(qtype uint16, rcode int) prometheus.Counter {
			return m.queries.WithLabelValues(qtypeLabel(qtype), rcodeLabel(rcode))
		},
		Truncated:  m.truncated,
		UDPLatency: m.udpLatency.observeN,
		TCPLatency: m.tcpLatency,
		TCPClosed:  func(reason string) { m.tcpClosed.WithLabelValues(reason).Inc() },
		Cookies:    func(result string) prometheus.Counter { return m.cookies.WithLabelValues(result) },
		Limited:    func(action string) prometheus.Counter { return m.limited.WithLabelValues(action) },
	}
}

// qtypeLabel and rcodeLabel name a question type and a response code for
// the requests counter. Known names only: a label per arbitrary number
// would let any client grow the series without bound.
func qtypeLabel(qtype uint16) string {
	if s, ok := dns.TypeToString[qtype]; ok {
		return s
	}
	return "other"
}

func rcodeLabel(rcode int) string {
	if s := dns.RcodeToString[rcode]; s != "" {
		return s
	}
	return "other"
}

func (m *Metrics) transfer(kind, result string) {
	if m == nil {
		return
	}
	m.transfers.WithLabelValues(kind, result).Inc()
}

func (m *Metrics) notify(result string) {
	if m == nil {
		return
	}
	m.notifies.WithLabelValues(result).Inc()
}

// observe wraps w to count the request r, received over TCP or not, when
// the returned func is called, after ServeDNS has answered. It costs one
// small allocation per request.
func (m *Metrics) observe(w dns.ResponseWriter, r *dns.Msg, tcp bool) (dns.ResponseWriter, func()) {
	if m == nil {
		return w, func() {}
	}
	o := &observedWriter{ResponseWriter: w, start: time.Now()}
	return o, func() { m.record(o, r, tcp) }
}

func (m *Metrics) record(o *observedWriter, r *dns.Msg, tcp bool) {
	latency := m.udpLatency
	if tcp {
		latency = m.tcpLatency
	}
	latency.Observe(time.Since(o.start).Seconds())
	qtype, rcode := "none", "none"
	if len(r.Question) > 0 {
		qtype = qtypeLabel(r.Question[0].Qtype)
	}
	if o.written {
		rcode = rcodeLabel(o.rcode)
	}
	m.queries.WithLabelValues(qtype, rcode).Inc()
	if o.truncated {
		m.truncated.Inc()
	}
	if r.Opcode == dns.OpcodeUpdate {
		result := "refused"
		if o.written && o.rcode == dns.RcodeSuccess {
			result = "accepted"
		}
		m.updates.WithLabelValues(result).Inc()
	}
}

// observedWriter remembers the rcode and TC bit of the first message
// written: the answer, or the first message of a transfer.
type observedWriter struct {
	dns.ResponseWriter
	start     time.Time
	written   bool
	rcode     int
	truncated bool
}

func (o *observedWriter) WriteMsg(msg *dns.Msg) error {
	if !o.written {
		o.written, o.rcode, o.truncated = true, msg.Rcode, msg.Truncated
	}
	return o.ResponseWriter.WriteMsg(msg)
}

func (o *observedWriter) Write(b []byte) (int, error) {
	if !o.written && len(b) >= 4 {
		o.written, o.rcode, o.truncated = true, int(b[3]&0xF), b[2]&0x2 != 0
	}
	return o.ResponseWriter.Write(b)
}

// A latencyHistogram is annuaire_dns_response_duration_seconds for one
// transport. The UDP loop answers up to 32 queries between two system
// calls, and they share one latency, the batch's: it observes them at
// once, an addition to one bucket and to the sum per batch, where a
// prometheus.Histogram takes four atomic additions per answer (15% of the
// loop's CPU per query, BenchmarkBatch in authority/wire).
type latencyHistogram struct {
	upper   []float64       // the buckets' upper bounds, ascending
	buckets []atomic.Uint64 // answers per bucket (not cumulative), then above the last bound
	sum     atomic.Uint64   // float64 bits of the seconds observed
}

// latencyBuckets are 25µs to 0.8s.
func latencyBuckets() []float64 { return prometheus.ExponentialBuckets(25e-6, 2, 16) }

func newLatencyHistogram(upper []float64) *latencyHistogram {
	return &latencyHistogram{upper: upper, buckets: make([]atomic.Uint64, len(upper)+1)}
}

// observeN records n answers that took seconds each.
func (h *latencyHistogram) observeN(seconds float64, n int) {
	i, _ := slices.BinarySearch(h.upper, seconds) // the first bound ≥ seconds: buckets are "le"
	h.buckets[i].Add(uint64(n))
	add := seconds * float64(n)
	for add != 0 { // TCP answers read from the buffer observe 0
		old := h.sum.Load()
		if h.sum.CompareAndSwap(old, math.Float64bits(math.Float64frombits(old)+add)) {
			return
		}
	}
}

// Observe records one answer (a prometheus.Observer).
func (h *latencyHistogram) Observe(seconds float64) { h.observeN(seconds, 1) }

// metric is the histogram as it stands. Its count is its buckets' total,
// so that the two always agree; the sum may lag them by an answer being
// recorded.
func (h *latencyHistogram) metric(desc *prometheus.Desc, transport string) prometheus.Metric {
	cumulative := make(map[float64]uint64, len(h.upper))
	var count uint64
	for i, le := range h.upper {
		count += h.buckets[i].Load()
		cumulative[le] = count
	}
	count += h.buckets[len(h.upper)].Load()
	return prometheus.MustNewConstHistogram(desc, count, math.Float64frombits(h.sum.Load()), cumulative, transport)
}
