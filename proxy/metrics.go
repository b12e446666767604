package proxy

import (
	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the server's Prometheus metrics; Registry serves them.
type Metrics struct {
	Registry     *prometheus.Registry
	clients      prometheus.Gauge
	refusals     *prometheus.CounterVec
	authFailures *prometheus.CounterVec
}

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
	}
	m.Registry.MustRegister(m.clients, m.refusals, m.authFailures)
	return m
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
