package faults

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tenantproxy/tenantproxy/internal/pgtest"
	"github.com/tenantproxy/tenantproxy/migrations"
)

// pg is the cluster every test of this package uses.
var pg *cluster

// maxConnections is the cluster's max_connections: room for a session-mode pool of 100 and the
// tests' own connections, small enough that a test can fill every slot.
const maxConnections = 160

// cluster is a private PostgreSQL this package starts, owns, restarts and stops.
type cluster struct {
	dir      string
	port     int
	adminURL string // superuser, database postgres
	template string // migrated and seeded, cloned for each test
	seq      atomic.Int64
	// caFile is the certificate of the CA that signed the server's certificate (for localhost
	// and 127.0.0.1); ca can sign more.
	caFile string
	ca     *certAuthority
}

func script() string { return filepath.Join(pgtest.RepoRoot(), "scripts", "pgenv") }

// startCluster starts the cluster with TLS on and prepares the template database.
func startCluster() (*cluster, error) {
	dir, err := os.MkdirTemp("", "tenantproxy-faults-")
	if err != nil {
		return nil, err
	}
	c := &cluster{dir: dir, template: "faults_template"}
	if err := c.writeTLSFiles(); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	if c.port, err = pgtest.FreePort(); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	cmd := exec.Command(script(), "start", dir, strconv.Itoa(c.port))
	// A throwaway cluster: durability costs time and buys nothing.
	cmd.Env = append(os.Environ(),
		"TENANTPROXY_PGOPTS=-c fsync=off -c synchronous_commit=off -c full_page_writes=off"+
			" -c ssl=on -c ssl_cert_file="+filepath.Join(dir, "tls", "server.crt")+
			" -c ssl_key_file="+filepath.Join(dir, "tls", "server.key"),
		"TENANTPROXY_PGDATABASE=postgres",
		"TENANTPROXY_PGMAXCONN="+strconv.Itoa(maxConnections))
	out, err := cmd.Output()
	if err != nil {
		os.RemoveAll(dir)
		if ee, ok := err.(*exec.ExitError); ok {
			err = fmt.Errorf("%s", strings.TrimSpace(string(ee.Stderr)))
		}
		return nil, fmt.Errorf("starting a private cluster with scripts/pgenv: %w\n"+
			"(install PostgreSQL and pgvector with: scripts/pgenv install, or make db)", err)
	}
	c.adminURL = strings.TrimSpace(string(out))
	if err := c.createTemplate(); err != nil {
		c.stop()
		return nil, fmt.Errorf("preparing the template database: %w", err)
	}
	return c, nil
}

func (c *cluster) writeTLSFiles() error {
	ca, err := newCA("tenantproxy faults CA")
	if err != nil {
		return err
	}
	c.ca = ca
	certPEM, keyPEM, err := ca.issue("localhost", []string{"localhost"}, []net.IP{net.IPv4(127, 0, 0, 1)})
	if err != nil {
		return err
	}
	tlsDir := filepath.Join(c.dir, "tls")
	if err := os.MkdirAll(tlsDir, 0o700); err != nil {
		return err
	}
	c.caFile = filepath.Join(tlsDir, "ca.crt")
	// scripts/pgenv hands the folder to the postgres user; the server insists on a private key.
	for name, data := range map[string][]byte{"server.crt": certPEM, "server.key": keyPEM, "ca.crt": ca.certPEM} {
		if err := os.WriteFile(filepath.Join(tlsDir, name), data, 0o600); err != nil {
			return err
		}
	}
	return nil
}

func (c *cluster) stop() {
	_ = exec.Command(script(), "stop", c.dir).Run()
	os.RemoveAll(c.dir)
}

// restart is pg_ctl restart -m fast: every session is terminated, then the server starts again.
func (c *cluster) restart() error {
	out, err := exec.Command(script(), "restart", c.dir).CombinedOutput()
	if err != nil {
		return fmt.Errorf("pgenv restart: %v: %s", err, out)
	}
	return nil
}

// urlFor is the superuser URL of database.
func (c *cluster) urlFor(database string) string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/%s?sslmode=disable", c.port, database)
}

// seedTenants are the tenants whose rows every test database starts with: acme, globex and
// t00..t49, three rows each, each row naming its tenant.
var seedTenants = append([]string{"acme", "globex"}, manyTenants...)

// seedRows is how many rows each seeded tenant has.
const seedRows = 3

func (c *cluster) createTemplate() error {
	ctx := context.Background()
	admin, err := pgx.Connect(ctx, c.urlFor("postgres"))
	if err != nil {
		return err
	}
	_, err = admin.Exec(ctx, "CREATE DATABASE "+c.template)
	admin.Close(ctx)
	if err != nil {
		return err
	}
	conn, err := pgx.Connect(ctx, c.urlFor(c.template))
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	if _, err := migrations.Up(ctx, conn, migrations.Options{}); err != nil {
		return err
	}
	if err := migrations.SetAppPassword(ctx, conn, pgtest.AppPassword); err != nil {
		return err
	}
	if _, err := conn.Exec(ctx, `INSERT INTO llmspell.entities (tenant_id, entity_type, name)
		SELECT t, 'seed', t || '-seed-' || n FROM unnest($1::text[]) t, generate_series(1, $2) n`,
		seedTenants, seedRows); err != nil {
		return err
	}
	// A table outside row-level security, which COPY FROM may fill (the server refuses COPY
	// FROM into tables under RLS).
	_, err = conn.Exec(ctx, `CREATE TABLE public.fault_copy (tenant_id text, body text);
		GRANT SELECT, INSERT ON public.fault_copy TO tenantproxy_app;
		ANALYZE`)
	return err
}

// database is one test's database, cloned from the template and dropped when the test ends.
type database struct {
	name     string
	adminURL string
}

func newDatabase(t testing.TB) *database {
	t.Helper()
	ctx := context.Background()
	name := fmt.Sprintf("faults_%d", pg.seq.Add(1))
	admin, err := pgx.Connect(ctx, pg.urlFor("postgres"))
	if err != nil {
		t.Fatalf("connecting to the cluster: %v", err)
	}
	_, err = admin.Exec(ctx, fmt.Sprintf("CREATE DATABASE %s TEMPLATE %s", name, pg.template))
	admin.Close(ctx)
	if err != nil {
		t.Fatalf("creating the test database: %v", err)
	}
	db := &database{name: name, adminURL: pg.urlFor(name)}
	t.Cleanup(func() { db.drop(t) })
	// A copy does not inherit database-level privileges: migrate applies them again.
	conn := db.admin(t)
	defer conn.Close(ctx)
	if _, err := migrations.Up(ctx, conn, migrations.Options{}); err != nil {
		t.Fatalf("migrating the test database: %v", err)
	}
	return db
}

func (db *database) drop(t testing.TB) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var err error
	// Right after a restart the server may still refuse connections for a moment.
	for range 20 {
		var admin *pgx.Conn
		if admin, err = pgx.Connect(ctx, pg.urlFor("postgres")); err == nil {
			_, err = admin.Exec(ctx, "DROP DATABASE IF EXISTS "+db.name+" WITH (FORCE)")
			admin.Close(ctx)
			if err == nil {
				return
			}
		}
		time.Sleep(250 * time.Millisecond)
	}
	t.Errorf("dropping %s: %v", db.name, err)
}

// admin opens a superuser connection to the test database; the caller closes it.
func (db *database) admin(t testing.TB) *pgx.Conn {
	t.Helper()
	conn, err := pgx.Connect(context.Background(), db.adminURL)
	if err != nil {
		t.Fatalf("connecting as the superuser: %v", err)
	}
	return conn
}

// exec runs sql as the superuser on a connection of its own.
func (db *database) exec(t testing.TB, sql string, args ...any) {
	t.Helper()
	conn := db.admin(t)
	defer conn.Close(context.Background())
	if _, err := conn.Exec(context.Background(), sql, args...); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

// count runs a query returning one number, as the superuser.
func (db *database) count(t testing.TB, sql string, args ...any) int {
	t.Helper()
	conn := db.admin(t)
	defer conn.Close(context.Background())
	var n int
	if err := conn.QueryRow(context.Background(), sql, args...).Scan(&n); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return n
}

// appSessions is the query for the app role's sessions on the test database.
const appSessions = `FROM pg_stat_activity WHERE datname = current_database() AND usename = 'tenantproxy_app'`

// terminateAppSessions ends every session of the app role on the database that matches where
// (an SQL condition on pg_stat_activity, "" for all), as a restart, a failover or
// idle_session_timeout would, and waits until they are gone. It returns how many it ended.
func (db *database) terminateAppSessions(t testing.TB, where string) int {
	t.Helper()
	conn := db.admin(t)
	defer conn.Close(context.Background())
	ctx := context.Background()
	if where != "" {
		where = " AND (" + where + ")"
	}
	var pids []int32
	if err := conn.QueryRow(ctx, "SELECT coalesce(array_agg(pid), '{}') "+appSessions+where).Scan(&pids); err != nil {
		t.Fatalf("listing the app role's sessions: %v", err)
	}
	if _, err := conn.Exec(ctx, "SELECT pg_terminate_backend(pid) FROM unnest($1::int[]) pid", pids); err != nil {
		t.Fatalf("terminating the app role's sessions: %v", err)
	}
	waitFor(t, 10*time.Second, "the terminated sessions to end", func() error {
		var left int
		if err := conn.QueryRow(ctx, "SELECT count(*) FROM pg_stat_activity WHERE pid = ANY($1)", pids).Scan(&left); err != nil {
			return err
		}
		if left > 0 {
			return fmt.Errorf("%d of %d still there", left, len(pids))
		}
		return nil
	})
	return len(pids)
}
