package migrations_test

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/tenantproxy/tenantproxy/internal/pgtest"
)

// fillVectors writes n random rows of tenant into vector_embeddings_<dims> as the superuser:
// fast, and each row's vector differs (the subquery is correlated with g).
func fillVectors(t *testing.T, admin *pgx.Conn, dims, n int, tenant string) {
	t.Helper()
	exec(t, admin, fmt.Sprintf(`INSERT INTO llmspell.vector_embeddings_%d (tenant_id, embedding)
		SELECT $1, (SELECT array_agg(random() * 2 - 1) FROM generate_series(1, %d) WHERE g > 0)::vector
		FROM generate_series(1, $2) g`, dims, dims), tenant, n)
}

type hit struct {
	tenant string
	id     string
}

func topK(t *testing.T, conn *pgx.Conn, query string, args ...any) []hit {
	t.Helper()
	rows, err := conn.Query(ctx, query, args...)
	if err != nil {
		t.Fatal(err)
	}
	var hits []hit
	for rows.Next() {
		var h hit
		if err := rows.Scan(&h.tenant, &h.id); err != nil {
			t.Fatal(err)
		}
		hits = append(hits, h)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return hits
}

// planNodes returns the plan of query, one line per node, without the (long) constants.
func planNodes(t *testing.T, conn *pgx.Conn, query string, args ...any) string {
	t.Helper()
	var nodes []string
	for _, line := range pgtest.QueryStrings(t, conn, "EXPLAIN (COSTS OFF) "+query, args...) {
		if !strings.Contains(line, "Key:") {
			nodes = append(nodes, line)
		}
	}
	return strings.Join(nodes, "\n")
}

// preferHNSW steers the planner to the HNSW index. On small tables it would rightly pick the
// tenant_id index and an exact sort; the tests want to show the HNSW path is full and correct.
func preferHNSW(t *testing.T, conn *pgx.Conn) {
	t.Helper()
	exec(t, conn, "SET enable_seqscan = off")
	exec(t, conn, "SET enable_sort = off")
}

const top10 = `SELECT tenant_id, id::text FROM llmspell.vector_embeddings_384 ORDER BY embedding <=> $1 LIMIT 10`

func TestVectorTopKReturnsOnlyOwnRows(t *testing.T) {
	db := pgtest.New(t)
	admin := pgtest.Connect(t, db.AdminURL)
	fillVectors(t, admin, 384, 500, "acme")
	fillVectors(t, admin, 384, 500, "globex")
	exec(t, admin, "ANALYZE llmspell.vector_embeddings_384")

	for _, tenant := range []string{"acme", "globex"} {
		conn := db.TenantConn(t, tenant)
		preferHNSW(t, conn)
		if plan := planNodes(t, conn, top10, randomVector(384)); !strings.Contains(plan, "vector_embeddings_384_hnsw") {
			t.Fatalf("the query does not use the HNSW index:\n%s", plan)
		}
		hits := topK(t, conn, top10, randomVector(384))
		if len(hits) != 10 {
			t.Errorf("%s got %d hits, want 10", tenant, len(hits))
		}
		for _, h := range hits {
			if h.tenant != tenant {
				t.Errorf("%s got a row of %s", tenant, h.tenant)
			}
		}
	}
}

// A tenant with 1% of the rows still gets a full top 10 of its own rows through the HNSW index,
// nearly all of them the true nearest: iterative scans keep going until enough rows pass the RLS
// filter. HNSW is approximate and its graph is built at random, so recall is checked on average
// over several queries rather than exactly on one.
func TestVectorTopKIsFullForASmallTenant(t *testing.T) {
	db := pgtest.New(t)
	admin := pgtest.Connect(t, db.AdminURL)
	fillVectors(t, admin, 384, 3000, "big")
	fillVectors(t, admin, 384, 30, "small")
	exec(t, admin, "ANALYZE llmspell.vector_embeddings_384")

	conn := db.TenantConn(t, "small")
	preferHNSW(t, conn)
	exact := db.TenantConn(t, "small")
	exec(t, exact, "SET enable_indexscan = off")
	q := randomVector(384)
	if plan := planNodes(t, conn, top10, q); !strings.Contains(plan, "vector_embeddings_384_hnsw") {
		t.Fatalf("the query does not use the HNSW index:\n%s", plan)
	}
	const queries = 10
	found := 0
	for i := range queries {
		if i > 0 {
			q = randomVector(384)
		}
		got := topK(t, conn, top10, q)
		want := topK(t, exact, top10, q)
		if len(want) != 10 {
			t.Fatalf("exact search found %d rows", len(want))
		}
		if len(got) != 10 {
			t.Fatalf("the small tenant got %d of 10 hits", len(got))
		}
		for _, h := range got {
			if h.tenant != "small" {
				t.Errorf("small tenant got a row of %s", h.tenant)
			}
			if slices.Contains(want, h) {
				found++
			}
		}
	}
	t.Logf("recall@10 over %d queries: %.2f", queries, float64(found)/float64(10*queries))
	if found < 8*queries {
		t.Errorf("recall@10 = %d/%d against an exact scan, want at least 0.8", found, 10*queries)
	}
	q = randomVector(384)

	// Without iterative scans the same index starves the small tenant: the setting matters.
	starved := db.TenantConn(t, "small")
	preferHNSW(t, starved)
	exec(t, starved, "SET hnsw.iterative_scan = off")
	if n := len(topK(t, starved, top10, q)); n >= 10 {
		t.Errorf("without iterative scans the small tenant still got %d hits: this test no longer shows they matter", n)
	}
}

func TestHalfPrecisionIndexFor3072(t *testing.T) {
	db := pgtest.New(t)
	admin := pgtest.Connect(t, db.AdminURL)
	fillVectors(t, admin, 3072, 100, "acme")
	fillVectors(t, admin, 3072, 100, "globex")
	exec(t, admin, "ANALYZE llmspell.vector_embeddings_3072")

	conn := db.TenantConn(t, "globex")
	preferHNSW(t, conn)
	const q = `SELECT tenant_id, id::text FROM llmspell.vector_embeddings_3072
		ORDER BY embedding::halfvec(3072) <=> $1::halfvec(3072) LIMIT 10`
	v := randomVector(3072)
	if plan := planNodes(t, conn, q, v); !strings.Contains(plan, "vector_embeddings_3072_hnsw") {
		t.Fatalf("the query does not use the halfvec HNSW index:\n%s", plan)
	}
	hits := topK(t, conn, q, v)
	if len(hits) != 10 {
		t.Errorf("got %d hits, want 10", len(hits))
	}
	for _, h := range hits {
		if h.tenant != "globex" {
			t.Errorf("globex got a row of %s", h.tenant)
		}
	}
}
