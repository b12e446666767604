package proxy_test

import (
	"testing"

	"github.com/jackc/pgx/v5"
)

// Each tenant's traffic is counted under its own name: logins and their failures,
// transactions, statements, errors by SQLSTATE class, waits and latencies.
func TestTenantMetrics(t *testing.T) {
	both(t, func(t *testing.T, p *testProxy) {
		acme := func(name string) float64 { return metricValue(p, name, map[string]string{"tenant": "acme"}) }
		alice := p.connect(t, "alice")
		mustExec(t, alice, "BEGIN")
		mustExec(t, alice, "SELECT 1")
		mustExec(t, alice, "SELECT 2")
		mustExec(t, alice, "COMMIT")
		if _, err := alice.Exec(ctx, "SELECT 1/0"); err == nil {
			t.Fatal("SELECT 1/0 succeeded")
		}
		if _, err := alice.Exec(ctx, "SELECT * FROM no_such_table"); err == nil {
			t.Fatal("a query of a missing table succeeded")
		}
		_, err := pgx.Connect(ctx, p.url("bob", "password=wrong"))
		wantCode(t, err, "28P01")
		_, err = pgx.Connect(ctx, p.url("nobody"))
		wantCode(t, err, "28P01")

		for name, want := range map[string]float64{
			"tenantproxy_tenant_logins_total":       1,
			"tenantproxy_tenant_transactions_total": 3, // the explicit one and the two failed statements
			"tenantproxy_tenant_statements_total":   6, // BEGIN, two SELECTs, COMMIT, two failures
			"tenantproxy_tenant_statement_seconds":  6,
		} {
			if got := acme(name); got != want {
				t.Errorf("%s{tenant=acme} = %v, want %v", name, got, want)
			}
		}
		if got := acme("tenantproxy_tenant_backend_wait_seconds"); got < 1 {
			t.Errorf("tenant_backend_wait_seconds{tenant=acme} has %v samples", got)
		}
		for class, want := range map[string]float64{"22": 1, "42": 1, "23": 0} {
			if got := metricValue(p, "tenantproxy_tenant_errors_total", map[string]string{"tenant": "acme", "class": class}); got != want {
				t.Errorf("tenant_errors_total{tenant=acme,class=%s} = %v, want %v", class, got, want)
			}
		}
		for labels, want := range map[[2]string]float64{{"globex", "password"}: 1, {"unknown", "password"}: 1, {"acme", "password"}: 0} {
			if got := metricValue(p, "tenantproxy_tenant_login_failures_total", map[string]string{"tenant": labels[0], "reason": labels[1]}); got != want {
				t.Errorf("tenant_login_failures_total{tenant=%s,reason=%s} = %v, want %v", labels[0], labels[1], got, want)
			}
		}
		// bob never logged in: globex has no traffic.
		for _, name := range []string{"tenantproxy_tenant_logins_total", "tenantproxy_tenant_statements_total"} {
			if got := metricValue(p, name, map[string]string{"tenant": "globex"}); got != 0 {
				t.Errorf("%s{tenant=globex} = %v, want 0", name, got)
			}
		}
	})
}
