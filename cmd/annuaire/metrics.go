package main

import (
	"net/http"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/annuaire/annuaire/authority"
	"github.com/annuaire/annuaire/registry"
)

// processMetrics is what one annuaire process shows at GET /metrics, in a
// prometheus.Registry of its own: the DNS server's counters, the
// registry's size and journal, the hosted services' connections, and Go's
// runtime and the process.
type processMetrics struct {
	reg   *prometheus.Registry
	dns   *authority.Metrics
	conns *connCollector
}

// newMetrics returns the metrics of a process serving r. The size of the
// registry and the health of its instances are read from a snapshot at
// each scrape, so they cost nothing between scrapes.
func newMetrics(r *registry.Registry) *processMetrics {
	m := &processMetrics{
		reg: prometheus.NewRegistry(),
		dns: authority.NewMetrics(),
		conns: &connCollector{
			total: prometheus.NewDesc("annuaire_connections_total",
				"Connections accepted by the hosted services, by service.", []string{"service"}, nil),
			open: prometheus.NewDesc("annuaire_connections_open",
				"Connections the hosted services hold open now, by service.", []string{"service"}, nil),
		},
	}
	m.reg.MustRegister(m.dns, m.conns, newRegistryCollector(r),
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// Handler serves the metrics in the Prometheus text format.
func (m *processMetrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg})
}

// WatchConns publishes a hosted service's connection counts ("echo",
// "web"), read from stats at each scrape: the service keeps its own
// counters and pays nothing per connection for metrics.
func (m *processMetrics) WatchConns(service string, stats func() (accepted, open int64)) {
	m.conns.add(service, stats)
}

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
	ch <- prometheus.MustNewConstMetric(c.instances, prometheus.GaugeValue, float64(healthy), registry.Passing.String())
	ch <- prometheus.MustNewConstMetric(c.instances, prometheus.GaugeValue, float64(total-healthy), registry.Critical.String())
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
