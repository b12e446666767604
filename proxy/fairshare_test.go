package proxy_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tenantproxy/tenantproxy/config"
	"github.com/tenantproxy/tenantproxy/internal/pgtest"
)

// held is what a tenant holds of the pool, as the metrics show it.
func held(p *testProxy, tenant string) float64 {
	return metricValue(p, "tenantproxy_tenant_backends_held", map[string]string{"tenant": tenant})
}

// A tenant that floods the pool waits beyond its share; another tenant's client gets a backend
// at once. Alone, a tenant uses the whole pool.
func TestFairShareOfThePool(t *testing.T) {
	db := pgtest.New(t)
	for _, mode := range modes {
		t.Run(mode, func(t *testing.T) {
			p := startProxy(t, db, mode, func(c *config.Config) {
				c.Pool.Size = 6
				c.Pool.CheckoutTimeout = config.Duration{Duration: 30 * time.Second}
			})
			// Alone, acme may hold the whole pool (but, in session mode, the reserve).
			alone := 6
			if mode == "session" {
				alone = 5
			}
			var conns []*pgx.Conn
			for range alone {
				conn := p.connect(t, "alice")
				mustExec(t, conn, "BEGIN")
				mustExec(t, conn, "SELECT 1")
				conns = append(conns, conn)
			}
			if got := held(p, "acme"); got != float64(alone) {
				t.Fatalf("acme alone holds %v of the pool, want %d", got, alone)
			}
			for _, conn := range conns {
				mustExec(t, conn, "COMMIT")
				conn.Close(ctx)
			}
			pgtest.WaitFor(t, "acme to let go", func() bool { return held(p, "acme") == 0 })

			// globex is active: one client, one query at a time.
			bob := p.connect(t, "bob")
			mustExec(t, bob, "SELECT 1")
			// acme floods: ten clients each holding a transaction open.
			flood, cancel := context.WithCancel(ctx)
			defer cancel()
			done := make(chan struct{})
			for range 10 {
				go func() {
					defer func() { done <- struct{}{} }()
					conn, err := pgx.Connect(flood, p.url("alice"))
					if err != nil {
						return
					}
					defer conn.Close(ctx)
					if _, err := conn.Exec(flood, "BEGIN; SELECT 1"); err != nil {
						return
					}
					<-flood.Done()
				}()
			}
			waiting := func() float64 {
				return metricValue(p, "tenantproxy_tenant_clients_waiting", map[string]string{"tenant": "acme"})
			}
			pgtest.WaitFor(t, "acme's clients to queue", func() bool { return held(p, "acme") >= 3 && waiting() > 0 })
			// Transaction mode keeps globex's reservation (what it used lately, plus one);
			// session mode keeps the reserve, which a new client of globex takes.
			most := 4.0
			if mode == "session" {
				most = 5
			}
			if got := held(p, "acme"); got > most {
				t.Errorf("acme holds %v of 6 while globex is active", got)
			}
			if mode == "session" {
				start := time.Now()
				mustExec(t, p.connect(t, "bob"), "SELECT 1")
				if d := time.Since(start); d > 2*time.Second {
					t.Errorf("a new client of globex waited %v", d)
				}
			}
			// bob's next statements run at once, every time.
			for range 20 {
				start := time.Now()
				mustExec(t, bob, "SELECT 1")
				if d := time.Since(start); d > 2*time.Second {
					t.Fatalf("globex waited %v behind acme's flood", d)
				}
			}
			cancel()
			for range 10 {
				<-done
			}
		})
	}
}

// The limits refuse with PostgreSQL's SQLSTATE and a log line naming the limit, and only the
// tenant or user over its limit feels them.
func TestConnectionLimits(t *testing.T) {
	db := pgtest.New(t)
	p := startProxy(t, db, "transaction", func(c *config.Config) {
		c.Limits.MaxConnectionsPerTenant = 3
		c.Tenants = map[string]config.Tenant{"globex": {MaxConnections: 1}}
		u := c.Users["carol"]
		u.MaxConnections = 1
		c.Users["carol"] = u
	})
	p.connect(t, "alice")
	p.connect(t, "alice")
	p.connect(t, "bob")
	_, err := pgx.Connect(ctx, p.url("bob"))
	wantCode(t, err, "53300", `too many connections for tenant "globex"`)
	p.connect(t, "carol", "tenant=acme") // acme's third
	_, err = pgx.Connect(ctx, p.url("alice"))
	wantCode(t, err, "53300", `too many connections for tenant "acme"`)
	_, err = pgx.Connect(ctx, p.url("carol", "tenant=globex"))
	wantCode(t, err, "53300", `for`) // globex is full, and carol has her one
	if logs := p.logs.String(); !strings.Contains(logs, `"limit":"max_connections_per_tenant"`) {
		t.Errorf("the refusal is not logged with its limit:\n%s", logs)
	}
	if n := metricValue(p, "tenantproxy_limit_refusals_total", map[string]string{"tenant": "globex", "limit": "max_connections_per_tenant"}); n < 1 {
		t.Errorf("refusals counted for globex: %v", n)
	}
	// initech is not affected.
	p.connect(t, "t00")
}

// A tenant logging in faster than its login rate waits its turn, and is refused (53300, logged,
// counted) when the turn would come after auth_timeout; other tenants log in without waiting.
func TestLoginRate(t *testing.T) {
	p := startProxy(t, pgtest.New(t), "transaction", func(c *config.Config) {
		c.AuthTimeout = config.Duration{Duration: 2 * time.Second}
		c.Tenants = map[string]config.Tenant{"acme": {LoginRate: 1}}
	})
	// One login at once (a second's worth), then one a second: of eight at once, one goes now,
	// one or two in turn before auth_timeout, and the rest are refused.
	errs := make(chan error, 8)
	for range cap(errs) {
		go func() {
			conn, err := pgx.Connect(ctx, p.url("alice"))
			if err == nil {
				conn.Close(ctx)
			}
			errs <- err
		}()
	}
	var refused, in int
	for range cap(errs) {
		switch err := <-errs; {
		case err == nil:
			in++
		default:
			wantCode(t, err, "53300", `too many logins for tenant "acme": more than 1 per second`)
			refused++
		}
	}
	if in < 2 || refused < 4 {
		t.Errorf("%d logins went in and %d were refused; want at least 2 and 4", in, refused)
	}
	if n := metricValue(p, "tenantproxy_limit_refusals_total", map[string]string{"tenant": "acme", "limit": "login_rate"}); n != float64(refused) {
		t.Errorf("refusals counted for acme: %v, want %d", n, refused)
	}
	if logs := p.logs.String(); !strings.Contains(logs, `"limit":"login_rate"`) {
		t.Errorf("the refusal is not logged with its limit:\n%s", logs)
	}
	if n := metricValue(p, "tenantproxy_tenant_login_wait_seconds", map[string]string{"tenant": "acme"}); n < 1 {
		t.Errorf("logins that waited their turn, counted for acme: %v", n)
	}
	// globex (the default rate, 100 a second) is not held up by acme's pace.
	for range 10 {
		p.connect(t, "bob")
	}
	if n := metricValue(p, "tenantproxy_tenant_login_wait_seconds", map[string]string{"tenant": "globex"}); n != 0 {
		t.Errorf("globex's logins waited %v times", n)
	}
	// acme's turn comes again.
	pgtest.WaitFor(t, "acme to log in again", func() bool {
		conn, err := pgx.Connect(ctx, p.url("alice"))
		if err == nil {
			conn.Close(ctx)
		}
		return err == nil
	})
}

// A transaction left open and idle past the limit is rolled back and its backend freed; the
// client sees 25P03, as from PostgreSQL.
func TestIdleInTransactionTimeout(t *testing.T) {
	db := pgtest.New(t)
	for _, mode := range modes {
		t.Run(mode, func(t *testing.T) {
			p := startProxy(t, db, mode, func(c *config.Config) {
				c.Limits.IdleInTransactionTimeout = config.Duration{Duration: time.Second}
			})
			conn := p.connect(t, "alice")
			mustExec(t, conn, "BEGIN")
			mustExec(t, conn, "INSERT INTO llmspell.entities (tenant_id, entity_type, name) VALUES ('acme', 'x', 'left idle')")
			pgtest.WaitFor(t, "the limit to end the client", func() bool {
				return metricValue(p, "tenantproxy_limit_refusals_total", map[string]string{"tenant": "acme", "limit": "idle_in_transaction_timeout"}) == 1
			})
			_, err := conn.Exec(ctx, "SELECT 1")
			wantCode(t, err, "25P03", "idle-in-transaction timeout")
			pgtest.WaitFor(t, "the backend to be freed", func() bool { return held(p, "acme") == 0 })
			admin := pgtest.Connect(t, db.AdminURL)
			if n := queryInt(t, admin, "SELECT count(*) FROM llmspell.entities WHERE name = 'left idle'"); n != 0 {
				t.Errorf("the idle transaction was committed")
			}
			// A transaction that keeps working is not ended (the limit is wide: a loaded machine may
			// pause the test between statements).
			busy := p.connect(t, "alice")
			mustExec(t, busy, "BEGIN")
			for range 5 {
				mustExec(t, busy, "SELECT pg_sleep(0.1)")
			}
			mustExec(t, busy, "COMMIT")
		})
	}
}

// The tenant's statement_timeout is the session's unless the client chooses one; a client that
// raises or disables its own is still cancelled at the tenant's limit.
func TestTenantStatementTimeout(t *testing.T) {
	db := pgtest.New(t)
	p := startProxy(t, db, "transaction", func(c *config.Config) {
		c.Tenants = map[string]config.Tenant{"acme": {StatementTimeout: config.Duration{Duration: 200 * time.Millisecond}}}
	})
	conn := p.connect(t, "alice")
	if got := queryString(t, conn, "SHOW statement_timeout"); got != "200ms" {
		t.Errorf("acme's statement_timeout is %q", got)
	}
	_, err := conn.Exec(ctx, "SELECT pg_sleep(5)")
	wantCode(t, err, "57014", "statement timeout")
	mustExec(t, conn, "SET statement_timeout = 0")
	start := time.Now()
	_, err = conn.Exec(ctx, "SELECT pg_sleep(30)")
	wantCode(t, err, "57014")
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("the proxy let a statement run %v past the tenant's limit", d)
	}
	// globex has no limit.
	if got := queryString(t, p.connect(t, "bob"), "SHOW statement_timeout"); got != "0" {
		t.Errorf("globex's statement_timeout is %q", got)
	}
}
