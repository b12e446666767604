package proxy

import (
	"cmp"
	"slices"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// tenantMetrics are one tenant's series that a client updates as it goes, looked up once at
// login so that counting a statement costs an atomic add.
type tenantMetrics struct {
	label        string
	transactions prometheus.Counter
	statements   prometheus.Counter
	backendWait  prometheus.Observer
	latency      prometheus.Observer
}

// forTenant returns the series of tenant.
func (m *Metrics) forTenant(tenant string) *tenantMetrics {
	label := m.tenantLabel(tenant)
	if t, ok := m.tenants.Load(label); ok {
		return t.(*tenantMetrics)
	}
	t, _ := m.tenants.LoadOrStore(label, &tenantMetrics{
		label:        label,
		transactions: m.transactions.WithLabelValues(label),
		statements:   m.statements.WithLabelValues(label),
		backendWait:  m.backendWait.WithLabelValues(label),
		latency:      m.statementSeconds.WithLabelValues(label),
	})
	return t.(*tenantMetrics)
}

// sqlstateClasses are PostgreSQL's SQLSTATE classes: an error's class is one of them or
// "other", since a function can raise any code and the label set must stay bounded.
var sqlstateClasses = map[string]bool{}

func init() {
	for _, class := range []string{"00", "01", "02", "03", "08", "09", "0A", "0B", "0F", "0L", "0P", "0Z", "20", "21", "22",
		"23", "24", "25", "26", "27", "28", "2B", "2D", "2F", "34", "38", "39", "3B", "3D", "3F", "40", "42", "44", "53", "54",
		"55", "57", "58", "72", "F0", "HV", "P0", "XX"} {
		sqlstateClasses[class] = true
	}
}

// countError counts an error the client is sent.
func (c *clientConn) countError(code string) {
	class := "other"
	if len(code) == 5 && sqlstateClasses[code[:2]] {
		class = code[:2]
	}
	c.srv.metrics.errors.WithLabelValues(c.metrics.label, class).Inc()
}

// statementDone counts a statement the server completed (or failed), and its latency since the
// request went to the server.
func (c *clientConn) statementDone() {
	c.metrics.statements.Inc()
	c.metrics.latency.Observe(time.Since(c.sentAt).Seconds())
	c.sinceIdle++
}

// readyForQuery counts the transaction that a return to idle ends.
func (c *clientConn) readyForQuery(status byte) {
	if status == 'I' && c.sinceIdle > 0 {
		c.metrics.transactions.Inc()
		c.sinceIdle = 0
	}
}

// loginFailed counts a failed login; tenant is the one the user would have acted for ("" when
// there is none, or the user is unknown).
func (m *Metrics) loginFailed(tenant, reason string) {
	label := "unknown"
	if tenant != "" {
		label = m.tenantLabel(tenant)
	}
	m.loginFailures.WithLabelValues(label, reason).Inc()
	m.authFailures.WithLabelValues(reason).Inc()
}

// tenantTotal is one tenant's traffic so far, for SHOW STATS.
type tenantTotal struct {
	tenant                                                  string
	logins, loginFailures, transactions, statements, errors int64
	avgWait, avgStatement                                   time.Duration
}

// tenantTotals reads each tenant's traffic back from the metrics, by tenant label.
func (m *Metrics) tenantTotals() []tenantTotal {
	families, _ := m.Registry.Gather()
	byTenant := map[string]*tenantTotal{}
	get := func(labels []*dto.LabelPair) *tenantTotal {
		for _, l := range labels {
			// A refusal before the tenant is known has the tenant label "".
			if l.GetName() == "tenant" && l.GetValue() != "" {
				t := byTenant[l.GetValue()]
				if t == nil {
					t = &tenantTotal{tenant: l.GetValue()}
					byTenant[l.GetValue()] = t
				}
				return t
			}
		}
		return &tenantTotal{}
	}
	for _, f := range families {
		for _, metric := range f.GetMetric() {
			t := get(metric.GetLabel())
			n := int64(metric.GetCounter().GetValue())
			h := metric.GetHistogram()
			switch f.GetName() {
			case "tenantproxy_tenant_logins_total":
				t.logins += n
			case "tenantproxy_tenant_login_failures_total":
				t.loginFailures += n
			case "tenantproxy_tenant_transactions_total":
				t.transactions += n
			case "tenantproxy_tenant_statements_total":
				t.statements += n
			case "tenantproxy_tenant_errors_total":
				t.errors += n
			case "tenantproxy_tenant_backend_wait_seconds":
				t.avgWait = average(h)
			case "tenantproxy_tenant_statement_seconds":
				t.avgStatement = average(h)
			}
		}
	}
	out := make([]tenantTotal, 0, len(byTenant))
	for _, t := range byTenant {
		out = append(out, *t)
	}
	slices.SortFunc(out, func(a, b tenantTotal) int { return cmp.Compare(a.tenant, b.tenant) })
	return out
}

func average(h *dto.Histogram) time.Duration {
	if h.GetSampleCount() == 0 {
		return 0
	}
	return time.Duration(h.GetSampleSum() / float64(h.GetSampleCount()) * float64(time.Second))
}
