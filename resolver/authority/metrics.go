package authority

import (
	"net/http"
	"sync"
	"time"

	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/annuaire/annuaire/registry"
)

// Metrics counts what one annuaire does, in Prometheus form, in a
// prometheus.Registry of its own: two servers in one process (as in tests)
// never share counters. A nil *Metrics counts nothing, so every hook may be
// called unconditionally.
type Metrics struct {
	reg       *prometheus.Registry
	queries   *prometheus.CounterVec   // qtype, rcode
	latency   *prometheus.HistogramVec // transport
	truncated prometheus.Counter
	updates   *prometheus.CounterVec // result
	transfers *prometheus.CounterVec // type, result
	notifies  *prometheus.CounterVec // result
	conns     *connCollector
}

// NewMetrics returns the metrics of a server answering from r. The size of
// the registry and the health of its instances are read from a snapshot at
// each scrape, so they cost nothing between scrapes.
func NewMetrics(r *registry.Registry) *Metrics {
	m := &Metrics{
		reg: prometheus.NewRegistry(),
		queries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "annuaire_dns_requests_total",
			Help: "DNS requests answered, by question type and response code (rcode \"none\" when no answer was sent).",
		}, []string{"qtype", "rcode"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "annuaire_dns_response_duration_seconds",
			Help:    "Time from reading a DNS request to having written its answer.",
			Buckets: prometheus.ExponentialBuckets(25e-6, 2, 16), // 25µs to 0.8s
		}, []string{"transport"}),
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
		conns: &connCollector{
			total: prometheus.NewDesc("annuaire_connections_total",
				"Connections accepted by the hosted services, by service.", []string{"service"}, nil),
			open: prometheus.NewDesc("annuaire_connections_open",
				"Connections the hosted services hold open now, by service.", []string{"service"}, nil),
		},
	}
	m.reg.MustRegister(m.queries, m.latency, m.truncated, m.updates, m.transfers, m.notifies, m.conns,
		newRegistryCollector(r),
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// Handler serves the metrics in the Prometheus text format, for GET /metrics.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg})
}

// WatchConns publishes a hosted service's connection counts ("echo",
// "web"), read from stats at each scrape: the service keeps its own
// counters and pays nothing per connection for metrics.
func (m *Metrics) WatchConns(service string, stats func() (accepted, open int64)) {
	if m == nil {
		return
	}
	m.conns.add(service, stats)
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

// observe wraps w to count the request r when the returned func is called,
// after ServeDNS has answered. It costs one small allocation per request.
func (m *Metrics) observe(w dns.ResponseWriter, r *dns.Msg) (dns.ResponseWriter, func()) {
	if m == nil {
		return w, func() {}
	}
	o := &observedWriter{ResponseWriter: w, start: time.Now()}
	return o, func() { m.record(o, r) }
}

func (m *Metrics) record(o *observedWriter, r *dns.Msg) {
	transport := "udp"
	if o.tcp() {
		transport = "tcp"
	}
	m.latency.WithLabelValues(transport).Observe(time.Since(o.start).Seconds())
	qtype := "none"
	if len(r.Question) > 0 {
		var ok bool
		// Known names only: a label per arbitrary number would let any
		// client grow the series without bound.
		if qtype, ok = dns.TypeToString[r.Question[0].Qtype]; !ok {
			qtype = "other"
		}
	}
	rcode := "none"
	if o.written {
		if rcode = dns.RcodeToString[o.rcode]; rcode == "" {
			rcode = "other"
		}
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

func (o *observedWriter) tcp() bool { return !isUDP(o.ResponseWriter) }

// registryCollector reports the registry's size and health from a snapshot
// taken at scrape time.
type registryCollector struct {
	r                               *registry.Registry
	serial, instances, hosts, types *prometheus.Desc
	records, syncs, bytes, syncTime *prometheus.Desc // the journal's
}

func newRegistryCollector(r *registry.Registry) registryCollector {
	return registryCollector{
		r:         r,
		serial:    prometheus.NewDesc("annuaire_zone_serial", "The zone's SOA serial.", nil, nil),
		instances: prometheus.NewDesc("annuaire_registry_instances", "Registered service instances, by health state.", []string{"health"}, nil),
		hosts:     prometheus.NewDesc("annuaire_registry_hosts", "Host names in the zone.", nil, nil),
		types:     prometheus.NewDesc("annuaire_registry_service_types", "Service types (_service._proto) with at least one instance.", nil, nil),
		records:   prometheus.NewDesc("annuaire_journal_records_total", "Registry changes made durable in the journal.", nil, nil),
		syncs:     prometheus.NewDesc("annuaire_journal_syncs_total", "fdatasync calls on the journal: fewer than records when group commit carries several changes in one.", nil, nil),
		bytes:     prometheus.NewDesc("annuaire_journal_written_bytes_total", "Bytes of records written to the journal.", nil, nil),
		syncTime:  prometheus.NewDesc("annuaire_journal_sync_seconds_total", "Time spent writing and syncing the journal; divided by the syncs, the disk's latency as writers see it.", nil, nil),
	}
}

func (c registryCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.serial
	ch <- c.instances
	ch <- c.hosts
	ch <- c.types
	ch <- c.records
	ch <- c.syncs
	ch <- c.bytes
	ch <- c.syncTime
}

func (c registryCollector) Collect(ch chan<- prometheus.Metric) {
	snap := c.r.Snapshot()
	// The types table keeps per-type counts, so health costs one row per
	// service type, not per instance.
	types, total, healthy := 0, 0, 0
	for t := range snap.Types() {
		types++
		total += t.Instances
		healthy += t.Healthy
	}
	hosts := 0
	for range snap.Hosts() {
		hosts++
	}
	ch <- prometheus.MustNewConstMetric(c.serial, prometheus.GaugeValue, float64(snap.Serial()))
	ch <- prometheus.MustNewConstMetric(c.instances, prometheus.GaugeValue, float64(healthy), string(registry.Passing))
	ch <- prometheus.MustNewConstMetric(c.instances, prometheus.GaugeValue, float64(total-healthy), string(registry.Critical))
	ch <- prometheus.MustNewConstMetric(c.hosts, prometheus.GaugeValue, float64(hosts))
	ch <- prometheus.MustNewConstMetric(c.types, prometheus.GaugeValue, float64(types))
	if st, ok := c.r.JournalStats(); ok {
		ch <- prometheus.MustNewConstMetric(c.records, prometheus.CounterValue, float64(st.Records))
		ch <- prometheus.MustNewConstMetric(c.syncs, prometheus.CounterValue, float64(st.Syncs))
		ch <- prometheus.MustNewConstMetric(c.bytes, prometheus.CounterValue, float64(st.Bytes))
		ch <- prometheus.MustNewConstMetric(c.syncTime, prometheus.CounterValue, st.SyncTime.Seconds())
	}
}

// connCollector reads the hosted services' own connection counters at
// scrape time.
type connCollector struct {
	total, open *prometheus.Desc

	mu       sync.Mutex // guards services
	services []connStats
}

type connStats struct {
	service string
	stats   func() (accepted, open int64)
}

func (c *connCollector) add(service string, stats func() (accepted, open int64)) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.services = append(c.services, connStats{service, stats})
}

func (c *connCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.total
	ch <- c.open
}

func (c *connCollector) Collect(ch chan<- prometheus.Metric) {
	c.mu.Lock()
	services := append([]connStats(nil), c.services...)
	c.mu.Unlock()
	for _, s := range services {
		accepted, open := s.stats()
		ch <- prometheus.MustNewConstMetric(c.total, prometheus.CounterValue, float64(accepted), s.service)
		ch <- prometheus.MustNewConstMetric(c.open, prometheus.GaugeValue, float64(open), s.service)
	}
}
