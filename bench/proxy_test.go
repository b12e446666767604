package bench

import (
	"context"
	"fmt"
	"net"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/rs/zerolog"

	"github.com/tenantproxy/tenantproxy/config"
	"github.com/tenantproxy/tenantproxy/internal/pgtest"
	"github.com/tenantproxy/tenantproxy/internal/scramsecret"
	"github.com/tenantproxy/tenantproxy/migrations"
	"github.com/tenantproxy/tenantproxy/proxy"
)

// The proxy benchmarks run one client against PostgreSQL itself ("direct") and against an
// in-process tenantproxy in each pool mode, over TCP on 127.0.0.1 both ways. The proxy runs in
// this process, so allocs/op counts its allocations along with the client's: the difference
// from "direct" is what the proxy allocates per query.

var ctx = context.Background()

const password = "bench"

var verifier = sync.OnceValue(func() string {
	v, err := scramsecret.New(password)
	if err != nil {
		panic(err)
	}
	return v
})

// targets are where a benchmark's client connects: PostgreSQL, or tenantproxy in a pool mode.
var targets = []string{"direct", "transaction", "session"}

// startProxy serves db through an in-process tenantproxy with a pool of size backends. Users
// alice and carol are tenant acme, bob is tenant globex.
func startProxy(b *testing.B, db *pgtest.DB, mode string, size int) (*proxy.Server, string) {
	b.Helper()
	cfg := config.Defaults()
	cfg.Listen = "127.0.0.1:0"
	cfg.Backend.Host = db.Host
	cfg.Backend.Port = db.Port
	cfg.Backend.Database = db.Name
	cfg.Backend.User = migrations.AppRole
	cfg.Backend.Password = pgtest.AppPassword
	cfg.Backend.SSLMode = "disable"
	cfg.Pool.Mode = mode
	cfg.Pool.Size = size
	cfg.Limits.LoginRate = 0 // BenchmarkLogin logs in as fast as it can
	cfg.Tenancy.Tenants = []string{"acme", "globex"}
	cfg.Users = map[string]config.User{
		"alice": {Password: verifier(), Tenant: "acme"},
		"carol": {Password: verifier(), Tenant: "acme"},
		"bob":   {Password: verifier(), Tenant: "globex"},
	}
	srv, err := proxy.New(&cfg, zerolog.Nop())
	if err != nil {
		b.Fatalf("proxy.New: %v", err)
	}
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		b.Fatal(err)
	}
	go srv.Serve(ln)
	b.Cleanup(srv.Close)
	return srv, ln.Addr().String()
}

func proxyURL(addr, user string) string {
	return fmt.Sprintf("postgres://%s:%s@%s/app?sslmode=disable", user, password, addr)
}

// connect opens a raw pgconn connection (the lightest client pgx has), closed when b ends.
func connect(b *testing.B, url string) *pgconn.PgConn {
	b.Helper()
	pc, err := pgconn.Connect(ctx, url)
	if err != nil {
		b.Fatalf("connect: %v", err)
	}
	b.Cleanup(func() { pc.Close(context.Background()) })
	return pc
}

// open connects to target as alice: straight to PostgreSQL as the app role, or through a new
// proxy in that pool mode.
func open(b *testing.B, db *pgtest.DB, target string) *pgconn.PgConn {
	b.Helper()
	if target == "direct" {
		return connect(b, db.AppURL)
	}
	_, addr := startProxy(b, db, target, 10)
	return connect(b, proxyURL(addr, "alice"))
}

// simple runs sql with the simple protocol and reads every row, keeping none. It returns the
// bytes of row data read.
func simple(pc *pgconn.PgConn, sql string) (int, error) {
	n := 0
	mrr := pc.Exec(ctx, sql)
	for mrr.NextResult() {
		rr := mrr.ResultReader()
		for rr.NextRow() {
			for _, v := range rr.Values() {
				n += len(v)
			}
		}
		if _, err := rr.Close(); err != nil {
			mrr.Close()
			return n, err
		}
	}
	return n, mrr.Close()
}

func BenchmarkSimpleQuery(b *testing.B) {
	db := pgtest.New(b)
	for _, target := range targets {
		b.Run(target, func(b *testing.B) {
			pc := open(b, db, target)
			b.ReportAllocs()
			for b.Loop() {
				if _, err := simple(pc, "SELECT 1"); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// A named statement prepared once and executed (Bind, Execute, Sync) each iteration; in
// transaction mode tenantproxy prepares it on whichever backend serves the transaction.
func BenchmarkPreparedQuery(b *testing.B) {
	db := pgtest.New(b)
	for _, target := range targets {
		b.Run(target, func(b *testing.B) {
			pc := open(b, db, target)
			if _, err := pc.Prepare(ctx, "bench_select", "SELECT $1::int4", nil); err != nil {
				b.Fatal(err)
			}
			args := [][]byte{[]byte("42")}
			b.ReportAllocs()
			for b.Loop() {
				rr := pc.ExecPrepared(ctx, "bench_select", args, nil, nil)
				for rr.NextRow() {
				}
				if _, err := rr.Close(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// Two clients take turns on a pool of one backend. With "switch" they are of two tenants, so
// every handout sets the tenant context first; with "same-tenant" they share one tenant and the
// pool hands the backend over as it is. The difference is the cost of a switch.
func BenchmarkTenantSwitch(b *testing.B) {
	db := pgtest.New(b)
	for _, c := range []struct{ name, second string }{{"same-tenant", "carol"}, {"switch", "bob"}} {
		b.Run(c.name, func(b *testing.B) {
			srv, addr := startProxy(b, db, "transaction", 1)
			conns := [2]*pgconn.PgConn{connect(b, proxyURL(addr, "alice")), connect(b, proxyURL(addr, c.second))}
			before := srv.Pool().Stats().Switches
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				if _, err := simple(conns[i&1], "SELECT 1"); err != nil {
					b.Fatal(err)
				}
				i++
			}
			b.ReportMetric(float64(srv.Pool().Stats().Switches-before)/float64(i), "switches/op")
		})
	}
}

// 10,000 rows of about 40 bytes relayed to one client: the relay's cost per byte.
func BenchmarkLargeResult(b *testing.B) {
	const sql = "SELECT g, md5(g::text) FROM generate_series(1, 10000) g"
	db := pgtest.New(b)
	for _, target := range targets {
		b.Run(target, func(b *testing.B) {
			pc := open(b, db, target)
			n, err := simple(pc, sql)
			if err != nil {
				b.Fatal(err)
			}
			b.SetBytes(int64(n))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := simple(pc, sql); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
