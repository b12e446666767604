package compat

import (
	"context"
	"database/sql"
	"testing"

	_ "github.com/lib/pq"
)

// runLibPQ: lib/pq through database/sql's pool. lib/pq's default sslmode is require, unlike
// libpq's prefer; these servers have no TLS, so it is told so, as anyone connecting here would.
func runLibPQ(t *testing.T, tg *target) {
	ctx := opContext(t)
	db, err := sql.Open("postgres", tg.keywordDSN("sslmode=disable"))
	failed(t, "connect", err)
	defer db.Close()
	s := &summary{Client: "lib/pq " + moduleVersion("github.com/lib/pq") + " with database/sql"}

	failed(t, "tenant", db.QueryRowContext(ctx, "SHOW app.current_tenant_id").Scan(&s.Tenant))
	for range 10 {
		var n int
		failed(t, "reads", db.QueryRowContext(ctx, "SELECT count(*) FROM llmspell.entities WHERE entity_type = $1", "seed").Scan(&n))
		s.Reads = append(s.Reads, n)
	}
	insert := func(tx *sql.Tx, name string) error {
		_, err := tx.ExecContext(ctx, "INSERT INTO llmspell.entities (tenant_id, entity_type, name) VALUES ($1, 'compat', $2)",
			tg.tenant, tg.tenant+"-"+name)
		return err
	}

	failed(t, "commit", inTx(ctx, db, func(tx *sql.Tx) error {
		if err := insert(tx, "committed"); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, "SAVEPOINT before_savepoint"); err != nil {
			return err
		}
		if err := insert(tx, "savepoint"); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx, "ROLLBACK TO SAVEPOINT before_savepoint")
		return err
	}))

	tx, err := db.BeginTx(ctx, &sql.TxOptions{Isolation: sql.LevelSerializable})
	failed(t, "rollback", err)
	failed(t, "rollback", insert(tx, "rolledback"))
	failed(t, "rollback", tx.Rollback())

	err = inTx(ctx, db, func(tx *sql.Tx) error {
		if err := insert(tx, "failed"); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx, "INSERT INTO llmspell.entities (tenant_id, id, entity_type, name) VALUES ($1, $2, 'compat', $3)",
			tg.tenant, tg.seedID, tg.tenant+"-duplicate")
		return err
	})
	if s.ErrorCode = sqlState(err); s.ErrorCode == "" {
		t.Fatalf("step error: want a duplicate key, got %v", err)
	}

	failed(t, "after", db.QueryRowContext(ctx, "SHOW app.current_tenant_id").Scan(&s.TenantAfterError))
	s.Names = queryColumn(t, ctx, db, "SELECT name FROM llmspell.entities WHERE entity_type = $1 ORDER BY name", "compat")
	s.Visible = queryColumn(t, ctx, db, "SELECT DISTINCT tenant_id FROM llmspell.entities ORDER BY 1")
	tg.check(t, s)
}

// inTx runs fn in a transaction, committed when fn succeeds and rolled back when it fails.
func inTx(ctx context.Context, db *sql.DB, fn func(*sql.Tx) error) error {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	if err := fn(tx); err != nil {
		tx.Rollback()
		return err
	}
	return tx.Commit()
}

func queryColumn(t *testing.T, ctx context.Context, db *sql.DB, query string, args ...any) []string {
	t.Helper()
	rows, err := db.QueryContext(ctx, query, args...)
	failed(t, "after", err)
	defer rows.Close()
	var out []string
	for rows.Next() {
		var s string
		failed(t, "after", rows.Scan(&s))
		out = append(out, s)
	}
	failed(t, "after", rows.Err())
	return out
}
