package faults

import (
	"bytes"
	"context"
	"encoding/base64"
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
	"github.com/xdg-go/scram"

	"github.com/tenantproxy/tenantproxy/config"
	"github.com/tenantproxy/tenantproxy/internal/pgtest"
	"github.com/tenantproxy/tenantproxy/migrations"
	"github.com/tenantproxy/tenantproxy/proxy"
)

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

// verifier is every test user's SCRAM verifier, with few iterations: under the race detector
// 4096 iterations cost a client about 25 ms of CPU per login, and the load test logs in
// thousands of times on two cores.
var verifier = sync.OnceValue(func() string {
	const iterations = 64
	salt := "faults-test-salt"
	client, err := scram.SHA256.NewClient("", password, "")
	if err != nil {
		panic(err)
	}
	creds := client.GetStoredCredentials(scram.KeyFactors{Salt: salt, Iters: iterations})
	enc := base64.StdEncoding
	return fmt.Sprintf("SCRAM-SHA-256$%d:%s$%s:%s", iterations, enc.EncodeToString([]byte(salt)),
		enc.EncodeToString(creds.StoredKey), enc.EncodeToString(creds.ServerKey))
})

// modes are the pool modes.
var modes = []string{"transaction", "session"}

// fixture is one test's proxy: its database, the fault relay in front of the database, the
// proxy serving clients, and the leak check that runs when the test ends.
type fixture struct {
	db    *database
	relay *relay
	srv   *proxy.Server
	addr  string
	cfg   *config.Config
	logs  *syncBuffer
}

// newFixture gives t a database, a relay and a proxy in mode; edit may change the proxy's
// configuration. When t ends, the proxy is closed (which must not hang), the relay stopped,
// and goroutines and open files must come back to what they were before.
func newFixture(t *testing.T, mode string, edit ...func(*config.Config)) *fixture {
	t.Helper()
	f := &fixture{db: newDatabase(t)}
	base := takeBaseline()
	t.Cleanup(func() { base.verify(t) })
	f.relay = newRelay(t, "127.0.0.1")
	cfg := f.config(mode)
	for _, e := range edit {
		e(cfg)
	}
	f.start(t, cfg)
	return f
}

// config is the configuration tests start from: users alice (tenant acme), bob (globex) and
// t00..t49 (tenants of the same name), the backend through the relay.
func (f *fixture) config(mode string) *config.Config {
	cfg := config.Defaults()
	cfg.Listen = "127.0.0.1:0"
	cfg.Backend.Host = f.relay.host
	cfg.Backend.Port = f.relay.port
	cfg.Backend.Database = f.db.name
	cfg.Backend.User = migrations.AppRole
	cfg.Backend.Password = pgtest.AppPassword
	cfg.Backend.SSLMode = "disable"
	cfg.Backend.ConnectTimeout = config.Duration{Duration: 2 * time.Second}
	cfg.Pool.Mode = mode
	cfg.Pool.Size = 10
	if mode == "session" {
		cfg.Pool.Size = 40 // a session per client connection
	}
	cfg.Pool.CheckoutTimeout = config.Duration{Duration: 5 * time.Second}
	cfg.Tenancy.Tenants = append([]string{"acme", "globex"}, manyTenants...)
	v := verifier()
	cfg.Users = map[string]config.User{
		"alice": {Password: v, Tenant: "acme"},
		"bob":   {Password: v, Tenant: "globex"},
	}
	for _, tenant := range manyTenants {
		cfg.Users[tenant] = config.User{Password: v, Tenant: tenant}
	}
	return &cfg
}

// start serves cfg through a new proxy.
func (f *fixture) start(t *testing.T, cfg *config.Config) {
	t.Helper()
	f.cfg = cfg
	f.logs = &syncBuffer{}
	srv, err := proxy.New(cfg, zerolog.New(f.logs).Level(zerolog.InfoLevel))
	if err != nil {
		t.Fatalf("proxy.New: %v", err)
	}
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		t.Fatal(err)
	}
	f.srv, f.addr = srv, ln.Addr().String()
	served := make(chan struct{})
	go func() {
		defer close(served)
		if err := srv.Serve(ln); !errors.Is(err, proxy.ErrServerClosed) {
			t.Errorf("Serve: %v", err)
		}
	}()
	t.Cleanup(func() {
		f.close(t)
		<-served
		if t.Failed() {
			t.Logf("proxy log:\n%s", f.logs.tail(60))
		}
	})
}

// close closes the proxy. Close must return even when a backend connection is stalled: if it
// does not within 10 s, that is a failure, and the relay is stopped to set it free.
func (f *fixture) close(t *testing.T) {
	done := make(chan struct{})
	go func() { f.srv.Close(); close(done) }()
	select {
	case <-done:
		return
	case <-time.After(10 * time.Second):
	}
	t.Errorf("proxy Close did not return within 10 s (a client's goroutine is stuck); stopping the relay to set it free")
	f.relay.stop()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Errorf("proxy Close still has not returned 10 s after the relay closed every backend connection")
	}
}

// url is a connection URL for user through the proxy.
func (f *fixture) url(user string) string {
	return fmt.Sprintf("postgres://%s:%s@%s/app?sslmode=disable", user, password, f.addr)
}

// dial opens a client connection as user; simple chooses the simple query protocol.
func (f *fixture) dial(ctx context.Context, user string, simple bool) (*pgx.Conn, error) {
	cc, err := pgx.ParseConfig(f.url(user))
	if err != nil {
		return nil, err
	}
	if simple {
		cc.DefaultQueryExecMode = pgx.QueryExecModeSimpleProtocol
	}
	return pgx.ConnectConfig(ctx, cc)
}

// connect is dial for a connection that must open; it is closed when t ends.
func (f *fixture) connect(t testing.TB, user string) *pgx.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	conn, err := f.dial(ctx, user, false)
	if err != nil {
		t.Fatalf("connecting as %s: %v", user, err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

// once connects as user, runs sql and disconnects.
func (f *fixture) once(ctx context.Context, user, sql string) error {
	conn, err := f.dial(ctx, user, false)
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	_, err = conn.Exec(ctx, sql)
	return err
}

// metric reads one of the proxy's metrics (docs/operations.md lists them).
func (f *fixture) metric(name string) float64 {
	families, err := f.srv.Metrics().Registry.Gather()
	if err != nil {
		return -1
	}
	for _, mf := range families {
		if mf.GetName() != name || len(mf.GetMetric()) == 0 {
			continue
		}
		m := mf.GetMetric()[0]
		if m.GetGauge() != nil {
			return m.GetGauge().GetValue()
		}
		return m.GetCounter().GetValue()
	}
	return -1
}

// quiet reports whether no client is connected and no backend session is out of the pool.
func (f *fixture) quiet() error {
	clients, open, idle := f.metric("tenantproxy_clients"), f.metric("tenantproxy_pool_open"), f.metric("tenantproxy_pool_idle")
	if clients != 0 || open != idle {
		return fmt.Errorf("%v clients connected, %v of %v backend sessions out of the pool", clients, open-idle, open)
	}
	return nil
}

// waitQuiet waits up to 10 s until every client has left and every backend session is back in
// the pool (or closed): nothing stays pinned by a client that is gone. what says after what.
func (f *fixture) waitQuiet(t testing.TB, what string) {
	t.Helper()
	const within = 10 * time.Second
	deadline := time.Now().Add(within)
	for {
		err := f.quiet()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Errorf("waited %v for the proxy to let go of every client and backend session %s: %v\nthe proxy's goroutines:\n%s",
				within, what, err, proxyGoroutines())
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// proxyGoroutines are the stacks of the goroutines running the proxy's code: where a client
// or backend session is stuck.
func proxyGoroutines() string {
	_, stacks := goroutines()
	var kept []string
	for _, g := range strings.Split(stacks, "\n\n") {
		if strings.Contains(g, "tenantproxy/proxy.") || strings.Contains(g, "tenantproxy/session.") {
			kept = append(kept, g)
		}
	}
	return strings.Join(kept, "\n\n")
}

// waitFor calls check every 50 ms until it returns nil, and fails t with check's last error if
// it does not within the deadline.
func waitFor(t testing.TB, within time.Duration, what string, check func() error) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		err := check()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Errorf("waited %v for %s: %v", within, what, err)
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// recovery tries op every 50 ms until it succeeds, for up to within, and logs the time from
// since (the end of the fault) to the first success: the recovery time docs/reliability.md
// reports. It fails t if op never succeeds.
func recovery(t testing.TB, what string, since time.Time, within time.Duration, op func(ctx context.Context) error) time.Duration {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		err := op(ctx)
		cancel()
		if err == nil {
			d := time.Since(since)
			t.Logf("RECOVERY %s: %s: new work succeeds %v after the fault", t.Name(), what, d.Round(time.Millisecond))
			return d
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: no recovery within %v: %v", what, within, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// sqlstate is the SQLSTATE of a server (or proxy) error, "" for anything else.
func sqlstate(err error) string {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return pgErr.Code
	}
	return ""
}

// wantSQLState fails t unless err is a PostgreSQL error with one of codes.
func wantSQLState(t testing.TB, what string, err error, codes ...string) {
	t.Helper()
	code := sqlstate(err)
	for _, c := range codes {
		if code == c {
			t.Logf("%s: the client sees %v", what, err)
			return
		}
	}
	t.Errorf("%s: want an error with SQLSTATE %s, got %v", what, strings.Join(codes, " or "), err)
}

// isolationSQL is what a client checks about the session it was handed: the tenant context,
// whether a transaction was already open (now() is the transaction's start, which is this
// statement's only in a fresh implicit transaction), and whose rows it sees.
const isolationSQL = `SELECT current_setting('app.current_tenant_id', true),
	now() = statement_timestamp(),
	(SELECT coalesce(string_agg(DISTINCT tenant_id, ','), '') FROM llmspell.entities),
	(SELECT count(*) FROM llmspell.entities WHERE entity_type = 'seed')`

// checkSession runs the isolation check on conn (simple protocol) and reports what is wrong.
func checkSession(ctx context.Context, conn *pgx.Conn, tenant string) error {
	var current, tenants string
	var fresh bool
	var seeds int
	err := conn.QueryRow(ctx, isolationSQL, pgx.QueryExecModeSimpleProtocol).Scan(&current, &fresh, &tenants, &seeds)
	switch {
	case err != nil:
		return err
	case current != tenant:
		return fmt.Errorf("tenant %s was handed a session whose context is %q", tenant, current)
	case !fresh:
		return fmt.Errorf("tenant %s was handed a session with a transaction already open", tenant)
	case tenants != tenant:
		return fmt.Errorf("tenant %s sees the rows of %q", tenant, tenants)
	case seeds != seedRows:
		return fmt.Errorf("tenant %s sees %d of its %d seeded rows", tenant, seeds, seedRows)
	case conn.PgConn().TxStatus() != 'I':
		return fmt.Errorf("tenant %s is left in transaction state %q", tenant, conn.PgConn().TxStatus())
	}
	return nil
}

// tenantOf is the tenant of a test user.
func tenantOf(user string) string {
	switch user {
	case "alice":
		return "acme"
	case "bob":
		return "globex"
	}
	return user
}

// checkIsolation connects as each user at once, several times each, and fails t if any is
// handed a session with another tenant's context, another tenant's rows or an open transaction.
func (f *fixture) checkIsolation(t testing.TB, users ...string) {
	t.Helper()
	var wg sync.WaitGroup
	errs := make(chan error, len(users))
	for _, user := range users {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			conn, err := f.dial(ctx, user, true)
			if err != nil {
				errs <- fmt.Errorf("%s: connecting: %w", user, err)
				return
			}
			defer conn.Close(context.Background())
			for range 3 {
				if err := checkSession(ctx, conn, tenantOf(user)); err != nil {
					errs <- fmt.Errorf("%s: %w", user, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("isolation after the fault: %v", err)
	}
}

// syncBuffer collects the proxy's log.
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

// tail is the last n lines of the log.
func (s *syncBuffer) tail(n int) string {
	lines := strings.Split(strings.TrimRight(s.String(), "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}
