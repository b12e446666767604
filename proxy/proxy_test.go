package proxy_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/rs/zerolog"

	"github.com/tenantproxy/tenantproxy/config"
	"github.com/tenantproxy/tenantproxy/internal/pgtest"
	"github.com/tenantproxy/tenantproxy/internal/scramsecret"
	"github.com/tenantproxy/tenantproxy/migrations"
	"github.com/tenantproxy/tenantproxy/proxy"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

var ctx = context.Background()

// password is every test user's password.
const password = "secret"

// manyTenants are tenants t00..t49, each with a user of the same name.
var manyTenants = func() []string {
	var ts []string
	for i := range 50 {
		ts = append(ts, fmt.Sprintf("t%02d", i))
	}
	return ts
}()

var verifier = sync.OnceValue(func() string {
	v, err := scramsecret.New(password)
	if err != nil {
		panic(err)
	}
	return v
})

// modes are the pool modes every end-to-end test runs in.
var modes = []string{"transaction", "session"}

// testProxy is a tenantproxy serving one test's database.
type testProxy struct {
	srv  *proxy.Server
	addr string
	db   *pgtest.DB
	cfg  *config.Config
	logs *syncBuffer
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// testConfig is the configuration tests start from: users alice (acme), bob (globex), carol
// (acme or globex, default acme), dave (acme or globex, no default), and t00..t49.
func testConfig(db *pgtest.DB, mode string) *config.Config {
	cfg := config.Defaults()
	cfg.Listen = "127.0.0.1:0"
	cfg.Backend.Host = db.Host
	cfg.Backend.Port = db.Port
	cfg.Backend.Database = db.Name
	cfg.Backend.User = migrations.AppRole
	cfg.Backend.Password = pgtest.AppPassword
	cfg.Backend.SSLMode = "disable"
	cfg.Pool.Mode = mode
	cfg.Pool.Size = 10
	if mode == "session" {
		cfg.Pool.Size = 40 // a session per client connection
	}
	cfg.Pool.CheckoutTimeout = config.Duration{Duration: 5 * time.Second}
	cfg.Tenancy.Tenants = append([]string{"acme", "globex", "initech"}, manyTenants...)
	v := verifier()
	cfg.Users = map[string]config.User{
		"alice": {Password: v, Tenant: "acme"},
		"bob":   {Password: v, Tenant: "globex"},
		"carol": {Password: v, Tenants: []string{"acme", "globex"}, DefaultTenant: "acme"},
		"dave":  {Password: v, Tenants: []string{"acme", "globex"}},
	}
	for _, tenant := range manyTenants {
		cfg.Users[tenant] = config.User{Password: v, Tenant: tenant}
	}
	return &cfg
}

// startProxy serves db through a new proxy in mode; edit may change the configuration first.
func startProxy(t testing.TB, db *pgtest.DB, mode string, edit ...func(*config.Config)) *testProxy {
	t.Helper()
	cfg := testConfig(db, mode)
	for _, e := range edit {
		e(cfg)
	}
	logs := &syncBuffer{}
	log := zerolog.New(logs).Level(zerolog.InfoLevel)
	srv, err := proxy.New(cfg, log)
	if err != nil {
		t.Fatalf("proxy.New: %v", err)
	}
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	t.Cleanup(func() {
		srv.Close()
		if t.Failed() {
			t.Logf("proxy log:\n%s", logs.String())
		}
	})
	return &testProxy{srv: srv, addr: ln.Addr().String(), db: db, cfg: cfg, logs: logs}
}

// url is a connection URL for user through the proxy; extra is appended to the query string.
func (p *testProxy) url(user string, extra ...string) string {
	q := "sslmode=disable"
	for _, e := range extra {
		q += "&" + e
	}
	return fmt.Sprintf("postgres://%s:%s@%s/app?%s", user, password, p.addr, q)
}

// connect opens a pgx connection for user through the proxy.
func (p *testProxy) connect(t testing.TB, user string, extra ...string) *pgx.Conn {
	t.Helper()
	conn, err := pgx.Connect(ctx, p.url(user, extra...))
	if err != nil {
		t.Fatalf("connecting as %s: %v", user, err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

// both runs fn as a subtest in each pool mode, each with its own database and proxy.
func both(t *testing.T, fn func(t *testing.T, p *testProxy)) {
	for _, mode := range modes {
		t.Run(mode, func(t *testing.T) {
			t.Parallel()
			db := pgtest.New(t)
			fn(t, startProxy(t, db, mode))
		})
	}
}

func mustExec(t testing.TB, conn *pgx.Conn, sql string, args ...any) pgconn.CommandTag {
	t.Helper()
	tag, err := conn.Exec(ctx, sql, args...)
	if err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return tag
}

func queryString(t testing.TB, conn *pgx.Conn, sql string, args ...any) string {
	t.Helper()
	var s string
	if err := conn.QueryRow(ctx, sql, args...).Scan(&s); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return s
}

func queryInt(t testing.TB, conn *pgx.Conn, sql string, args ...any) int {
	t.Helper()
	var n int
	if err := conn.QueryRow(ctx, sql, args...).Scan(&n); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return n
}

// wantCode fails unless err is a server error with SQLSTATE code (and, if given, a message
// containing msg).
func wantCode(t testing.TB, err error, code string, msg ...string) {
	t.Helper()
	var pgErr *pgconn.PgError
	if err == nil || !asPgError(err, &pgErr) {
		t.Fatalf("want SQLSTATE %s, got %v", code, err)
	}
	if pgErr.Code != code {
		t.Fatalf("want SQLSTATE %s, got %s: %s", code, pgErr.Code, pgErr.Message)
	}
	for _, m := range msg {
		if !strings.Contains(pgErr.Message, m) {
			t.Fatalf("message %q does not contain %q", pgErr.Message, m)
		}
	}
}

func asPgError(err error, target **pgconn.PgError) bool { return errors.As(err, target) }

// tenantOf is what the session the proxy hands conn believes its tenant is.
func tenantOf(t testing.TB, conn *pgx.Conn) string {
	t.Helper()
	return queryString(t, conn, "SHOW app.current_tenant_id")
}

// seedEntities writes n entities for tenant straight into the database, as the superuser.
func seedEntities(t testing.TB, db *pgtest.DB, tenant string, n int) {
	t.Helper()
	admin := pgtest.Connect(t, db.AdminURL)
	mustExec(t, admin, `INSERT INTO llmspell.entities (tenant_id, entity_type, name)
		SELECT $1, 'thing', $1 || '-' || g FROM generate_series(1, $2) g`, tenant, n)
}

// visibleTenants lists the distinct tenant_ids conn can read in entities.
func visibleTenants(t testing.TB, conn *pgx.Conn) []string {
	t.Helper()
	return pgtest.QueryStrings(t, conn, "SELECT DISTINCT tenant_id FROM llmspell.entities ORDER BY 1")
}

// metricValue is the value of a counter or gauge (a histogram's count of samples) in the proxy's
// registry with exactly these labels, 0 when there is none.
func metricValue(p *testProxy, name string, labels map[string]string) float64 {
	families, err := p.srv.Metrics().Registry.Gather()
	if err != nil {
		panic(err)
	}
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
	metrics:
		for _, m := range f.GetMetric() {
			if len(m.GetLabel()) != len(labels) {
				continue
			}
			for _, l := range m.GetLabel() {
				if labels[l.GetName()] != l.GetValue() {
					continue metrics
				}
			}
			if c := m.GetCounter(); c != nil {
				return c.GetValue()
			}
			if h := m.GetHistogram(); h != nil {
				return float64(h.GetSampleCount())
			}
			return m.GetGauge().GetValue()
		}
	}
	return 0
}

// running counts the statements containing marker that the server runs right now.
func running(t testing.TB, admin *pgx.Conn, marker string) int {
	t.Helper()
	return queryInt(t, admin, `SELECT count(*) FROM pg_stat_activity
		WHERE state = 'active' AND pid <> pg_backend_pid() AND position($1 in query) > 0`, marker)
}

// waitRunning waits until the server runs a statement containing marker.
func waitRunning(t testing.TB, admin *pgx.Conn, marker string) {
	t.Helper()
	pgtest.WaitFor(t, "the statement with "+marker+" to run", func() bool { return running(t, admin, marker) > 0 })
}
