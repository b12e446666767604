package migrations_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/pgvector/pgvector-go"

	"github.com/tenantproxy/tenantproxy/internal/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

var ctx = context.Background()

// tenantTable knows how to put one row of a tenant into a table, whatever columns it requires.
type tenantTable struct {
	name   string
	insert func(t *testing.T, conn *pgx.Conn, tenant string) error
}

func vectorTable(dims int) tenantTable {
	name := fmt.Sprintf("vector_embeddings_%d", dims)
	return tenantTable{name: name, insert: func(t *testing.T, conn *pgx.Conn, tenant string) error {
		_, err := conn.Exec(ctx, "INSERT INTO llmspell."+name+" (tenant_id, scope, embedding) VALUES ($1, 'test', $2)",
			tenant, randomVector(dims))
		return err
	}}
}

var tables = []tenantTable{
	vectorTable(384), vectorTable(768), vectorTable(1536), vectorTable(3072),
	{name: "entities", insert: func(t *testing.T, conn *pgx.Conn, tenant string) error {
		_, err := conn.Exec(ctx, "INSERT INTO llmspell.entities (tenant_id, entity_type, name) VALUES ($1, 'person', 'someone')", tenant)
		return err
	}},
	{name: "relationships", insert: func(t *testing.T, conn *pgx.Conn, tenant string) error {
		_, err := conn.Exec(ctx, `
			WITH a AS (INSERT INTO llmspell.entities (tenant_id, entity_type, name) VALUES ($1, 'person', 'a') RETURNING id),
			     b AS (INSERT INTO llmspell.entities (tenant_id, entity_type, name) VALUES ($1, 'person', 'b') RETURNING id)
			INSERT INTO llmspell.relationships (tenant_id, source_id, target_id, relationship_type)
			SELECT $1, a.id, b.id, 'knows' FROM a, b`, tenant)
		return err
	}},
}

func randomVector(dims int) pgvector.Vector {
	v := make([]float32, dims)
	for i := range v {
		v[i] = rand.Float32()*2 - 1
	}
	return pgvector.NewVector(v)
}

// seed puts n rows of each tenant into table through connections set to that tenant.
func seed(t *testing.T, db *pgtest.DB, table tenantTable, n int, tenants ...string) {
	t.Helper()
	for _, tenant := range tenants {
		conn := db.TenantConn(t, tenant)
		for range n {
			if err := table.insert(t, conn, tenant); err != nil {
				t.Fatalf("seeding %s for %s: %v", table.name, tenant, err)
			}
		}
	}
}

// tenantsSeen returns the tenant_id of every row conn can see in table, with counts.
func tenantsSeen(t *testing.T, conn *pgx.Conn, table string, where string, args ...any) map[string]int {
	t.Helper()
	q := "SELECT tenant_id, count(*) FROM llmspell." + table
	if where != "" {
		q += " WHERE " + where
	}
	rows, err := conn.Query(ctx, q+" GROUP BY tenant_id", args...)
	if err != nil {
		t.Fatalf("reading %s: %v", table, err)
	}
	seen := map[string]int{}
	for rows.Next() {
		var tenant string
		var n int
		if err := rows.Scan(&tenant, &n); err != nil {
			t.Fatal(err)
		}
		seen[tenant] = n
	}
	if err := rows.Err(); err != nil {
		t.Fatalf("reading %s: %v", table, err)
	}
	return seen
}

// wantSQLState fails t unless err is a PostgreSQL error with the given SQLSTATE.
func wantSQLState(t *testing.T, err error, code string, what string) {
	t.Helper()
	pgErr, ok := err.(*pgconn.PgError)
	if !ok {
		t.Fatalf("%s: want SQLSTATE %s, got %v", what, code, err)
	}
	if pgErr.Code != code {
		t.Fatalf("%s: want SQLSTATE %s, got %s: %s", what, code, pgErr.Code, pgErr.Message)
	}
}

func exec(t *testing.T, conn *pgx.Conn, sql string, args ...any) pgconn.CommandTag {
	t.Helper()
	tag, err := conn.Exec(ctx, sql, args...)
	if err != nil {
		t.Fatalf("%s: %v", strings.TrimSpace(sql), err)
	}
	return tag
}
