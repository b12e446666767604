package proxy_test

import (
	"context"
	"runtime"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/tenantproxy/tenantproxy/internal/pgtest"
)

// parked is how many clients are parked now.
func parked(p *testProxy) int { return int(metricValue(p, "tenantproxy_clients_parked", nil)) }

// Idle clients in transaction mode park (no goroutine of their own) and come back as they
// were: their tenant, their settings, their prepared statements; ended by the operator or a
// shutdown while parked, they are told.
func TestIdleClientsPark(t *testing.T) {
	p := startProxy(t, pgtest.New(t), "transaction", withAdmin)
	const n = 40
	var conns []*pgx.Conn
	for i := range n {
		user := manyTenants[i%len(manyTenants)]
		conn := p.connect(t, user, "application_name=parked")
		mustExec(t, conn, "SET statement_timeout = '7s'")
		if _, err := conn.Prepare(ctx, "mine", "SELECT current_setting('app.current_tenant_id')"); err != nil {
			t.Fatal(err)
		}
		conns = append(conns, conn)
	}
	goroutines := runtime.NumGoroutine()
	pgtest.WaitFor(t, "every idle client to park", func() bool { return parked(p) == n })
	if now := runtime.NumGoroutine(); now > goroutines-n/2 {
		t.Errorf("%d goroutines with %d clients parked, %d before they parked", now, n, goroutines)
	}
	for i, conn := range conns {
		want := manyTenants[i%len(manyTenants)]
		var tenant, timeout string
		if err := conn.QueryRow(ctx, "mine").Scan(&tenant); err != nil || tenant != want {
			t.Fatalf("client %d after parking: tenant %q, %v; want %s", i, tenant, err, want)
		}
		if err := conn.QueryRow(ctx, "SHOW statement_timeout").Scan(&timeout); err != nil || timeout != "7s" {
			t.Errorf("client %d after parking: statement_timeout %q, %v", i, timeout, err)
		}
	}

	// Ended while parked: told at once.
	pgtest.WaitFor(t, "the clients to park again", func() bool { return parked(p) == n })
	if _, err := consoleExec(p, "KILL t03"); err != nil {
		t.Fatal(err)
	}
	_, err := conns[3].Exec(ctx, "SELECT 1")
	wantCode(t, err, "57P01")
	mustExec(t, p.console(t), "RESUME")

	// A shutdown wakes every parked client to tell it, and returns once they are gone.
	pgtest.WaitFor(t, "the clients to park again", func() bool { return parked(p) == n-1 })
	if err := p.srv.Shutdown(context.Background()); err != nil {
		t.Fatalf("Shutdown with parked clients: %v", err)
	}
	if got := parked(p); got != 0 {
		t.Errorf("%d clients still parked after Shutdown", got)
	}
	_, err = conns[0].Exec(ctx, "SELECT 1")
	wantCode(t, err, "57P01")
}
