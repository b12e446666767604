package proxy

import (
	"sync"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the server's Prometheus metrics; Registry serves them. Per-tenant series
// (metrics_tenant.go) are bounded: the first maxTenantSeries tenants seen get their own, the rest
// share tenant="other"; only tenants a client logged in to are seen, so no one can fill the
// series with names of its choosing.
type Metrics struct {
	Registry      *prometheus.Registry
	clients       prometheus.Gauge
	refusals      *prometheus.CounterVec
	authFailures  *prometheus.CounterVec
	tenantClients *prometheus.GaugeVec
	limitRefusals *prometheus.CounterVec
	// The per-tenant traffic: logins, login failures, transactions, statements, errors by
	// SQLSTATE class, and how long clients wait for a backend and for each statement.
	logins           *prometheus.CounterVec
	loginFailures    *prometheus.CounterVec
	transactions     *prometheus.CounterVec
	statements       *prometheus.CounterVec
	errors           *prometheus.CounterVec
	backendWait      *prometheus.HistogramVec
	loginWait        *prometheus.HistogramVec
	statementSeconds *prometheus.HistogramVec

	labels  sync.Map // tenant → its label
	nlabel  atomic.Int64
	tenants sync.Map // label → *tenantMetrics
}

// maxTenantSeries bounds the tenants with series of their own.
const maxTenantSeries = 1000

func newMetrics() *Metrics {
	counter := func(name, help string, labels ...string) *prometheus.CounterVec {
		return prometheus.NewCounterVec(prometheus.CounterOpts{Name: "tenantproxy_" + name, Help: help}, labels)
	}
	seconds := func(name, help string) *prometheus.HistogramVec {
		return prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "tenantproxy_" + name, Help: help,
			Buckets: []float64{.0001, .0005, .001, .005, .01, .05, .1, .5, 1, 5, 30},
		}, []string{"tenant"})
	}
	m := &Metrics{
		Registry: prometheus.NewRegistry(),
		clients: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "tenantproxy_clients", Help: "Client connections open now.",
		}),
		refusals: counter("refusals_total",
			"Statements and startup packets refused by the guard, by tenant and rule.", "tenant", "rule"),
		authFailures: counter("auth_failures_total",
			"Failed logins, by reason (password, tenant, directory, console).", "reason"),
		tenantClients: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "tenantproxy_tenant_clients", Help: "Client connections open now, by tenant.",
		}, []string{"tenant"}),
		limitRefusals: counter("limit_refusals_total",
			"Clients refused or ended by a limit (max_connections_per_tenant, max_connections_per_user, login_rate, message_memory, idle_in_transaction_timeout, statement_timeout), by tenant.",
			"tenant", "limit"),
		logins: counter("tenant_logins_total", "Clients logged in, by tenant.", "tenant"),
		loginFailures: counter("tenant_login_failures_total",
			"Failed logins, by the tenant the user would have acted for (unknown when there is none) and reason.", "tenant", "reason"),
		transactions: counter("tenant_transactions_total", "Transactions ended (committed or rolled back, explicit or implicit), by tenant.", "tenant"),
		statements:   counter("tenant_statements_total", "Statements completed (successfully or with an error), by tenant.", "tenant"),
		errors:       counter("tenant_errors_total", "Errors returned to clients, by tenant and SQLSTATE class (the first two characters).", "tenant", "class"),
		backendWait:  seconds("tenant_backend_wait_seconds", "Time a client waited for a backend session, by tenant."),
		loginWait:    seconds("tenant_login_wait_seconds", "Time a login waited for its tenant's turn (limits.login_rate), by tenant; only logins that waited."),
		statementSeconds: seconds("tenant_statement_seconds",
			"Time from sending a client's request to the server until each statement of it completed, by tenant."),
	}
	m.Registry.MustRegister(m.clients, m.refusals, m.authFailures, m.tenantClients, m.limitRefusals,
		m.logins, m.loginFailures, m.transactions, m.statements, m.errors, m.backendWait, m.loginWait, m.statementSeconds)
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
	m.Registry.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "tenantproxy_clients_parked",
		Help: "Idle clients parked: no goroutine or read buffer of their own until they send again."},
		func() float64 { return float64(s.parker.count()) }))
	m.Registry.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "tenantproxy_message_memory_bytes",
		Help: "Memory clients' messages larger than 64 KiB take now (limits.message_memory bounds it)."},
		func() float64 { return float64(s.messages.Used()) }))
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
