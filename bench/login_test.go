package bench

import (
	"testing"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/tenantproxy/tenantproxy/internal/pgtest"
)

// A new connection each iteration: startup, SCRAM-SHA-256 (the client's PBKDF2 of 4096
// iterations included), ReadyForQuery, Terminate. In transaction mode no backend session is
// involved until the first statement.
func BenchmarkLogin(b *testing.B) {
	db := pgtest.New(b)
	_, addr := startProxy(b, db, "transaction", 2)
	url := proxyURL(addr, "alice")
	b.ReportAllocs()
	for b.Loop() {
		pc, err := pgconn.Connect(ctx, url)
		if err != nil {
			b.Fatal(err)
		}
		pc.Close(ctx)
	}
}
