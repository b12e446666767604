package compat

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/rs/zerolog"

	"github.com/tenantproxy/tenantproxy/config"
	"github.com/tenantproxy/tenantproxy/internal/pgtest"
	"github.com/tenantproxy/tenantproxy/internal/scramsecret"
	"github.com/tenantproxy/tenantproxy/migrations"
	"github.com/tenantproxy/tenantproxy/proxy"
)

// password is every proxy user's password.
const password = "secret"

// seedsPerTenant is how many entities (entity_type 'seed') each tenant starts with.
const seedsPerTenant = 3

// otherTenant holds rows no client may see.
const otherTenant = "globex"

// target is where one client connects for one subtest, and what it must find there.
type target struct {
	mode     string // "direct", "transaction" or "session"
	host     string
	port     int
	user     string
	password string
	database string
	tenant   string // the client's tenant
	seedID   string // one of the tenant's seeded entities, for a duplicate key
	adminURL string // superuser URL of the database, to check what the client wrote

	recorder *recorder // direct only: what the client sent
	logs     *proxyLog // proxied only: the proxy's log
}

// env gives an external program its connection settings.
func (tg *target) env() []string {
	return []string{
		"COMPAT_HOST=" + tg.host,
		"COMPAT_PORT=" + strconv.Itoa(tg.port),
		"COMPAT_USER=" + tg.user,
		"COMPAT_PASSWORD=" + tg.password,
		"COMPAT_DATABASE=" + tg.database,
		"COMPAT_TENANT=" + tg.tenant,
		"COMPAT_SEED_ID=" + tg.seedID,
	}
}

// keywordDSN is the target as libpq keyword=value settings, plus extra ones.
func (tg *target) keywordDSN(extra ...string) string {
	return strings.Join(append([]string{
		"host=" + tg.host, "port=" + strconv.Itoa(tg.port), "user=" + tg.user,
		"password=" + tg.password, "dbname=" + tg.database,
	}, extra...), " ")
}

// seed gives each tenant seedsPerTenant entities and returns the id of each tenant's first.
func seed(t testing.TB, adminURL string, tenants ...string) map[string]string {
	t.Helper()
	admin := pgtest.Connect(t, adminURL)
	ids := map[string]string{}
	for _, tenant := range tenants {
		var id string
		err := admin.QueryRow(context.Background(), `
			WITH rows AS (
				INSERT INTO llmspell.entities (tenant_id, entity_type, name)
				SELECT $1, 'seed', $1 || '-seed-' || g FROM generate_series(1, $2) g
				RETURNING id, name)
			SELECT id::text FROM rows ORDER BY name LIMIT 1`, tenant, seedsPerTenant).Scan(&id)
		if err != nil {
			t.Fatalf("seeding %s: %v", tenant, err)
		}
		ids[tenant] = id
	}
	return ids
}

// directTarget is a database of the client's own, whose sessions start in the client's tenant
// (a database-level setting), reached through a recorder; setup, if any, runs in it first.
func directTarget(t *testing.T, tenant, setup string) *target {
	db := pgtest.New(t)
	ids := seed(t, db.AdminURL, tenant, otherTenant)
	admin := pgtest.Connect(t, db.AdminURL)
	for _, sql := range []string{
		fmt.Sprintf("ALTER DATABASE %s SET app.current_tenant_id = %s", pgx.Identifier{db.Name}.Sanitize(), pgtest.QuoteLiteral(tenant)),
		setup,
	} {
		if _, err := admin.Exec(context.Background(), sql); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	}
	rec := startRecorder(t, net.JoinHostPort(db.Host, strconv.Itoa(db.Port)))
	host, port := splitAddr(t, rec.ln.Addr().String())
	return &target{
		mode: "direct", host: host, port: port,
		user: migrations.AppRole, password: pgtest.AppPassword, database: db.Name,
		tenant: tenant, seedID: ids[tenant], adminURL: db.AdminURL, recorder: rec,
	}
}

// proxied is one tenantproxy, in one pool mode, serving every client: each client is a user
// of the same name mapped to a tenant of the same name.
type proxied struct {
	mode    string
	host    string
	port    int
	db      *pgtest.DB
	seedIDs map[string]string
	logs    *proxyLog
}

func startProxy(t *testing.T, mode string, clients []string) *proxied {
	t.Helper()
	db := pgtest.New(t)
	tenants := append(slices.Clone(clients), otherTenant)
	ids := seed(t, db.AdminURL, tenants...)

	verifier, err := scramsecret.New(password)
	if err != nil {
		t.Fatal(err)
	}
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
		cfg.Pool.Size = 40 // a session per client connection: pools of 10 and a few spare
	}
	cfg.Tenancy.Tenants = tenants
	cfg.Users = map[string]config.User{}
	for _, c := range clients {
		cfg.Users[c] = config.User{Password: verifier, Tenant: c}
	}

	logs := &proxyLog{}
	srv, err := proxy.New(&cfg, zerolog.New(logs).Level(zerolog.InfoLevel))
	if err != nil {
		t.Fatalf("proxy.New: %v", err)
	}
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	host, port := splitAddr(t, ln.Addr().String())
	return &proxied{mode: mode, host: host, port: port, db: db, seedIDs: ids, logs: logs}
}

func (p *proxied) target(tenant string) *target {
	return &target{
		mode: p.mode, host: p.host, port: p.port,
		user: tenant, password: password, database: "app",
		tenant: tenant, seedID: p.seedIDs[tenant], adminURL: p.db.AdminURL, logs: p.logs,
	}
}

func splitAddr(t testing.TB, addr string) (string, int) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	n, _ := strconv.Atoi(port)
	return host, n
}

// proxyLog is a proxy's log, shared by the subtests that use it.
type proxyLog struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *proxyLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *proxyLog) size() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Len()
}

// since is what was logged after the first offset bytes.
func (l *proxyLog) since(offset int) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()[offset:]
}

// opContext bounds one client's whole scenario.
func opContext(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// cleanEnv is this process's environment without PG* variables, which libpq-based clients
// would otherwise read.
func cleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "PG") {
			env = append(env, kv)
		}
	}
	return env
}
