package proxy

import (
	"sync"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the server's Prometheus metrics; Registry serves them. Per-tenant series are
// bounded: the first maxTenantSeries tenants seen get their own, the rest share tenant="other".
type Metrics struct {
	Registry      *prometheus.Registry
	clients       prometheus.Gauge
	refusals      *prometheus.CounterVec
	authFailures  *prometheus.CounterVec
	tenantClients *prometheus.GaugeVec
	limitRefusals *prometheus.CounterVec
	backendWait   *prometheus.HistogramVec

	labels sync.Map // tenant → its label
	nlabel atomic.Int64
}

// maxTenantSeries bounds the tenants with series of their own.
const maxTenantSeries = 1000

func newMetrics() *Metrics {
	m := &Metrics{
		Registry: prometheus.NewRegistry(),
		clients: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "tenantproxy_clients", Help: "Client connections open now.",
		}),
		refusals: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tenantproxy_refusals_total",
			Help: "Statements and startup packets refused by the guard, by tenant and rule.",
		}, []string{"tenant", "rule"}),
		authFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tenantproxy_auth_failures_total", Help: "Failed logins, by reason (password, tenant).",
		}, []string{"reason"}),
		tenantClients: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "tenantproxy_tenant_clients", Help: "Client connections open now, by tenant.",
		}, []string{"tenant"}),
		limitRefusals: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tenantproxy_limit_refusals_total",
			Help: "Clients refused or ended by a limit (max_connections_per_tenant, max_connections_per_user, idle_in_transaction_timeout, statement_timeout), by tenant.",
		}, []string{"tenant", "limit"}),
		backendWait: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "tenantproxy_tenant_backend_wait_seconds",
			Help:    "Time a client waited for a backend session, by tenant.",
			Buckets: []float64{.0001, .0005, .001, .005, .01, .05, .1, .5, 1, 5},
		}, []string{"tenant"}),
	}
	m.Registry.MustRegister(m.clients, m.refusals, m.authFailures, m.tenantClients, m.limitRefusals, m.backendWait)
	return m
}

// tenantLabel is the label of a tenant's series: its name, or "other" past maxTenantSeries.
func (m *Metrics) tenantLabel(tenant string) string {
	if label, ok := m.labels.Load(tenant); ok {
		return label.(string)
	}
	label := "other"
	if m.nlabel.Add(1) <= maxTenantSeries {
		label = tenant
	}
	actual, _ := m.labels.LoadOrStore(tenant, label)
	return actual.(string)
}

// Metrics returns the server's metrics.
func (s *Server) Metrics() *Metrics { return s.metrics }

// watch exports the pool's state as gauges and counters read at scrape time.
func (m *Metrics) watch(s *Server) {
	pool := func(name, help string, value func() float64) prometheus.Collector {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "tenantproxy_pool_" + name, Help: help}, value)
	}
	counter := func(name, help string, value func() float64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "tenantproxy_pool_" + name, Help: help}, value)
	}
	m.Registry.MustRegister(
		pool("open", "Backend sessions open.", func() float64 { return float64(s.pool.Stats().Open) }),
		pool("idle", "Backend sessions idle in the pool.", func() float64 { return float64(s.pool.Stats().Idle) }),
		pool("waiting", "Clients waiting for a backend session.", func() float64 { return float64(s.pool.Stats().Waiting) }),
		counter("acquires_total", "Backend sessions handed out.", func() float64 { return float64(s.pool.Stats().Acquires) }),
		counter("timeouts_total", "Checkouts that timed out.", func() float64 { return float64(s.pool.Stats().Timeouts) }),
		counter("dials_total", "Backend sessions opened.", func() float64 { return float64(s.pool.Stats().Dials) }),
		counter("dial_errors_total", "Failed attempts to open a backend session.", func() float64 { return float64(s.pool.Stats().DialErrors) }),
		counter("tenant_switches_total", "Handouts that had to set the tenant context.", func() float64 { return float64(s.pool.Stats().Switches) }),
		counter("discards_total", "Backend sessions closed: broken, untrusted, expired, or at shutdown.", func() float64 { return float64(s.pool.Stats().Discards) }),
	)
	m.Registry.MustRegister(tenantPoolCollector{s})
	guard := func(name, help string, value func() float64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "tenantproxy_guard_" + name, Help: help}, value)
	}
	m.Registry.MustRegister(
		guard("prefiltered_total", "Statements the guard passed without parsing.", func() float64 { return float64(s.guard.Stats().Prefiltered) }),
		guard("cache_hits_total", "Statements whose verdict was cached.", func() float64 { return float64(s.guard.Stats().CacheHits) }),
		guard("parsed_total", "Statements the guard parsed.", func() float64 { return float64(s.guard.Stats().Parsed) }),
		guard("unaffordable_total", "Statements refused because parsing them did not fit the guard's memory (limits.guard_memory).", func() float64 { return float64(s.guard.Stats().Unaffordable) }),
	)
}

// tenantPoolCollector exports what each tenant holds of the pool and waits for, read at scrape
// time.
type tenantPoolCollector struct{ s *Server }

var (
	tenantHeldDesc    = prometheus.NewDesc("tenantproxy_tenant_backends_held", "Backend sessions the tenant's clients hold now.", []string{"tenant"}, nil)
	tenantWaitingDesc = prometheus.NewDesc("tenantproxy_tenant_clients_waiting", "The tenant's clients waiting for a backend session now.", []string{"tenant"}, nil)
	tenantShareDesc   = prometheus.NewDesc("tenantproxy_tenant_backend_share", "The tenant's fair share of the pool now.", []string{"tenant"}, nil)
)

func (tenantPoolCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- tenantHeldDesc
	ch <- tenantWaitingDesc
	ch <- tenantShareDesc
}

func (c tenantPoolCollector) Collect(ch chan<- prometheus.Metric) {
	held, waiting, share := map[string]float64{}, map[string]float64{}, map[string]float64{}
	for tenant, st := range c.s.pool.TenantStats() {
		label := c.s.metrics.tenantLabel(tenant)
		held[label] += float64(st.Held)
		waiting[label] += float64(st.Waiting)
		share[label] = max(share[label], float64(st.Share))
	}
	for label := range held {
		ch <- prometheus.MustNewConstMetric(tenantHeldDesc, prometheus.GaugeValue, held[label], label)
		ch <- prometheus.MustNewConstMetric(tenantWaitingDesc, prometheus.GaugeValue, waiting[label], label)
		ch <- prometheus.MustNewConstMetric(tenantShareDesc, prometheus.GaugeValue, share[label], label)
	}
}
