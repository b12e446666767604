// Package pgtest gives tests a real PostgreSQL with pgvector and tenantproxy's schema.
//
// A test binary calls Main from TestMain; each test then calls New for a database of its own,
// cloned from a migrated template (cheap, and no test sees another's rows). The server is, in
// order of preference:
//
//  1. the one named by TENANTPROXY_TEST_DATABASE_URL (a superuser URL);
//  2. a private cluster this process starts with scripts/pgenv in a temporary folder and stops
//     at the end, when PostgreSQL and pgvector are installed;
//  3. a pgvector/pgvector container, when a Docker engine answers (testcontainers).
//
// With none of them the tests fail, saying how to get one. They never skip.
package pgtest

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/testcontainers/testcontainers-go"
	tcpostgres "github.com/testcontainers/testcontainers-go/modules/postgres"

	"github.com/tenantproxy/tenantproxy/migrations"
)

// AppPassword is the app role's password on the test server.
const AppPassword = "tenantproxy-test"

// DirectoryPassword is the directory role's password on the test server.
const DirectoryPassword = "tenantproxy-directory-test"

const howTo = `pgtest: no PostgreSQL with pgvector for the tests. Any one of these gives one:
  - install PostgreSQL and pgvector:   scripts/pgenv install   (or: make db)
  - point at a server you run:         TENANTPROXY_TEST_DATABASE_URL=postgres://postgres@host:5432/postgres
  - start a Docker engine (the tests then run pgvector/pgvector in a container)`

// server is the PostgreSQL every test of this process uses.
var server struct {
	adminURL *url.URL // superuser, connected to a maintenance database
	template string   // migrated database to clone
	prefix   string   // names of this process's databases
	seq      atomic.Int64
	mu       sync.Mutex // CREATE DATABASE from one template, one at a time
	stop     func()
}

// Main starts (or finds) the server, migrates a template database, runs the tests and cleans up.
func Main(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	ctx := context.Background()
	admin, stop, err := startServer(ctx)
	if err != nil {
		fmt.Fprintf(os.Stderr, "%v\n\n%s\n", err, howTo)
		return 1
	}
	defer stop()
	server.adminURL = admin
	server.prefix = fmt.Sprintf("tptest_%d_%d", os.Getpid(), time.Now().UnixNano()%1_000_000)
	server.template = server.prefix + "_template"
	if err := createTemplate(ctx); err != nil {
		fmt.Fprintf(os.Stderr, "pgtest: preparing the template database: %v\n", err)
		return 1
	}
	defer dropDatabase(ctx, server.template)
	return m.Run()
}

func startServer(ctx context.Context) (*url.URL, func(), error) {
	if raw := os.Getenv("TENANTPROXY_TEST_DATABASE_URL"); raw != "" {
		u, err := url.Parse(raw)
		if err != nil {
			return nil, nil, fmt.Errorf("pgtest: TENANTPROXY_TEST_DATABASE_URL: %w", err)
		}
		return u, func() {}, nil
	}
	u, stop, clusterErr := startCluster()
	if clusterErr == nil {
		return u, stop, nil
	}
	u, stop, dockerErr := startContainer(ctx)
	if dockerErr == nil {
		return u, stop, nil
	}
	return nil, nil, fmt.Errorf("pgtest: private cluster: %v\npgtest: docker: %v", clusterErr, dockerErr)
}

// RepoRoot is the repository this package is part of.
func RepoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..")
}

func startCluster() (*url.URL, func(), error) {
	script := filepath.Join(RepoRoot(), "scripts", "pgenv")
	dir, err := os.MkdirTemp("", "tenantproxy-pgtest-")
	if err != nil {
		return nil, nil, err
	}
	port, err := FreePort()
	if err != nil {
		return nil, nil, err
	}
	// A throwaway cluster: durability costs time and buys nothing.
	cmd := exec.Command(script, "start", dir, strconv.Itoa(port))
	cmd.Env = append(os.Environ(),
		"TENANTPROXY_PGOPTS=-c fsync=off -c synchronous_commit=off -c full_page_writes=off",
		"TENANTPROXY_PGDATABASE=postgres")
	out, err := cmd.Output()
	if err != nil {
		os.RemoveAll(dir)
		msg := err.Error()
		if ee, ok := err.(*exec.ExitError); ok {
			msg = strings.TrimSpace(string(ee.Stderr))
		}
		return nil, nil, fmt.Errorf("%s", msg)
	}
	u, err := url.Parse(strings.TrimSpace(string(out)))
	if err != nil {
		return nil, nil, err
	}
	stop := func() {
		_ = exec.Command(script, "stop", dir).Run()
		os.RemoveAll(dir)
	}
	return u, stop, nil
}

func startContainer(ctx context.Context) (*url.URL, func(), error) {
	provider, err := testcontainers.ProviderDocker.GetProvider()
	if err != nil {
		return nil, nil, err
	}
	healthCtx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := provider.Health(healthCtx); err != nil {
		return nil, nil, fmt.Errorf("no Docker engine answers: %w", err)
	}
	c, err := tcpostgres.Run(ctx, "pgvector/pgvector:pg17",
		tcpostgres.WithDatabase("postgres"), tcpostgres.WithUsername("postgres"),
		tcpostgres.WithPassword("postgres"), tcpostgres.BasicWaitStrategies())
	if err != nil {
		return nil, nil, err
	}
	raw, err := c.ConnectionString(ctx, "sslmode=disable")
	if err != nil {
		_ = c.Terminate(ctx)
		return nil, nil, err
	}
	u, err := url.Parse(raw)
	return u, func() { _ = c.Terminate(context.Background()) }, err
}

// FreePort returns a TCP port on 127.0.0.1 nobody listens on right now.
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func adminConnect(ctx context.Context) (*pgx.Conn, error) {
	return pgx.Connect(ctx, server.adminURL.String())
}

func createTemplate(ctx context.Context) error {
	conn, err := adminConnect(ctx)
	if err != nil {
		return err
	}
	_, err = conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{server.template}.Sanitize())
	conn.Close(ctx)
	if err != nil {
		return err
	}
	tconn, err := pgx.Connect(ctx, databaseURL(server.adminURL, server.template, "", "").String())
	if err != nil {
		return err
	}
	defer tconn.Close(ctx)
	if _, err := migrations.Up(ctx, tconn, migrations.Options{}); err != nil {
		return err
	}
	if err := migrations.SetAppPassword(ctx, tconn, AppPassword); err != nil {
		return err
	}
	return migrations.SetDirectoryPassword(ctx, tconn, DirectoryPassword)
}

func dropDatabase(ctx context.Context, name string) error {
	conn, err := adminConnect(ctx)
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	_, err = conn.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)")
	return err
}

func databaseURL(base *url.URL, database, user, password string) *url.URL {
	u := *base
	u.Path = "/" + database
	if user != "" {
		u.User = url.UserPassword(user, password)
	}
	return &u
}

// DB is one test's database: migrated, empty, dropped when the test ends.
type DB struct {
	Name         string
	Host         string
	Port         int
	AdminURL     string // superuser
	AppURL       string // the app role, which row-level security binds
	DirectoryURL string // the directory role, which reads only the tenant directory
}

// New clones the template into a database for t alone.
func New(t testing.TB) *DB {
	t.Helper()
	if server.adminURL == nil {
		t.Fatalf("pgtest: no server: call pgtest.Main(m) from TestMain\n%s", howTo)
	}
	ctx := context.Background()
	name := fmt.Sprintf("%s_%d", server.prefix, server.seq.Add(1))

	server.mu.Lock()
	conn, err := adminConnect(ctx)
	if err == nil {
		_, err = conn.Exec(ctx, fmt.Sprintf("CREATE DATABASE %s TEMPLATE %s",
			pgx.Identifier{name}.Sanitize(), pgx.Identifier{server.template}.Sanitize()))
		conn.Close(ctx)
	}
	server.mu.Unlock()
	if err != nil {
		t.Fatalf("pgtest: creating database: %v", err)
	}
	t.Cleanup(func() {
		if err := dropDatabase(context.Background(), name); err != nil {
			t.Errorf("pgtest: dropping %s: %v", name, err)
		}
	})

	admin := databaseURL(server.adminURL, name, "", "")
	// A copy does not inherit database-level privileges: migrate applies them again.
	aconn, err := pgx.Connect(ctx, admin.String())
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	defer aconn.Close(ctx)
	if _, err := migrations.Up(ctx, aconn, migrations.Options{}); err != nil {
		t.Fatalf("pgtest: migrate: %v", err)
	}

	port, _ := strconv.Atoi(admin.Port())
	return &DB{
		Name:         name,
		Host:         admin.Hostname(),
		Port:         port,
		AdminURL:     admin.String(),
		AppURL:       databaseURL(server.adminURL, name, migrations.AppRole, AppPassword).String(),
		DirectoryURL: databaseURL(server.adminURL, name, migrations.DirectoryRole, DirectoryPassword).String(),
	}
}

// AdminURLFor is the superuser URL of another database on the same server.
func (db *DB) AdminURLFor(database string) string {
	return databaseURL(server.adminURL, database, "", "").String()
}

// Connect opens a connection closed when the test ends.
func Connect(t testing.TB, connString string) *pgx.Conn {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, connString)
	if err != nil {
		t.Fatalf("pgtest: connect: %v", err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

// QueryStrings runs a query whose rows are one text column each, and returns them.
func QueryStrings(t testing.TB, conn *pgx.Conn, sql string, args ...any) []string {
	t.Helper()
	rows, err := conn.Query(context.Background(), sql, args...)
	if err != nil {
		t.Fatal(err)
	}
	out, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TenantConn opens an app-role connection whose tenant context is tenant ("" leaves it unset),
// set the way tenantproxy sets it: a session-level SET.
func (db *DB) TenantConn(t testing.TB, tenant string) *pgx.Conn {
	t.Helper()
	conn := Connect(t, db.AppURL)
	if tenant != "" {
		if _, err := conn.Exec(context.Background(), "SET app.current_tenant_id = "+QuoteLiteral(tenant)); err != nil {
			t.Fatalf("pgtest: setting the tenant: %v", err)
		}
	}
	return conn
}

// QuoteLiteral quotes s as an SQL string literal.
func QuoteLiteral(s string) string {
	return "'" + strings.ReplaceAll(s, "'", "''") + "'"
}

// WaitFor polls cond until it holds, failing the test if it does not within 10 seconds: tests
// wait for the condition they need, never for a fixed time.
func WaitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after 10s waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
