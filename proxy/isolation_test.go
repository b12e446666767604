package proxy_test

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tenantproxy/tenantproxy/config"
	"github.com/tenantproxy/tenantproxy/internal/pgtest"
)

// 50 tenants x 4 concurrent clients each write and read their own rows through the proxy.
// Nobody ever sees a row of another tenant, and every session always holds its own tenant.
func TestIsolationUnderConcurrency(t *testing.T) {
	for _, mode := range modes {
		t.Run(mode, func(t *testing.T) {
			db := pgtest.New(t)
			p := startProxy(t, db, mode, func(c *config.Config) {
				c.Pool.Size = 20
				c.Pool.CheckoutTimeout = config.Duration{Duration: 60 * time.Second}
			})
			const clientsPerTenant, rounds = 4, 10
			var wg sync.WaitGroup
			errs := make(chan error, 1000)
			for _, tenant := range manyTenants {
				for client := range clientsPerTenant {
					wg.Go(func() {
						if err := isolationClient(p, tenant, client, rounds); err != nil {
							errs <- fmt.Errorf("%s/%d: %w", tenant, client, err)
						}
					})
				}
			}
			wg.Wait()
			close(errs)
			failures := 0
			for err := range errs {
				failures++
				if failures <= 20 {
					t.Error(err)
				}
			}
			if failures > 0 {
				t.Fatalf("%d clients failed", failures)
			}
			admin := pgtest.Connect(t, db.AdminURL)
			rows, err := admin.Query(ctx, "SELECT tenant_id, count(*) FROM llmspell.entities GROUP BY 1")
			if err != nil {
				t.Fatal(err)
			}
			counts, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (int, error) {
				var tenant string
				var n int
				return n, r.Scan(&tenant, &n)
			})
			if err != nil {
				t.Fatal(err)
			}
			if len(counts) != len(manyTenants) {
				t.Errorf("%d tenants have rows, want %d", len(counts), len(manyTenants))
			}
			for _, n := range counts {
				if n != clientsPerTenant*rounds {
					t.Errorf("a tenant has %d rows, want %d", n, clientsPerTenant*rounds)
				}
			}
		})
	}
}

// isolationClient connects as tenant's user and, round after round, writes a row, reads
// everything it can see, and checks its session's tenant, in and out of transactions.
func isolationClient(p *testProxy, tenant string, client, rounds int) error {
	conn, err := pgx.Connect(ctx, p.url(tenant))
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	for round := range rounds {
		name := fmt.Sprintf("%s-%d-%d", tenant, client, round)
		if round%2 == 0 {
			_, err = conn.Exec(ctx, "INSERT INTO llmspell.entities (tenant_id, entity_type, name) VALUES ($1, 'row', $2)", tenant, name)
		} else {
			err = pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
				if _, err := tx.Exec(ctx, "INSERT INTO llmspell.entities (tenant_id, entity_type, name) VALUES ($1, 'row', $2)", tenant, name); err != nil {
					return err
				}
				var inTx string
				if err := tx.QueryRow(ctx, "SHOW app.current_tenant_id").Scan(&inTx); err != nil {
					return err
				}
				if inTx != tenant {
					return fmt.Errorf("inside a transaction the session's tenant is %q", inTx)
				}
				return nil
			})
		}
		if err != nil {
			return fmt.Errorf("round %d write: %w", round, err)
		}
		rows, err := conn.Query(ctx, "SELECT DISTINCT tenant_id FROM llmspell.entities")
		if err != nil {
			return err
		}
		seen, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			return err
		}
		if len(seen) != 1 || seen[0] != tenant {
			return fmt.Errorf("round %d: sees tenants %v", round, seen)
		}
		var current string
		if err := conn.QueryRow(ctx, "SELECT current_setting('app.current_tenant_id')").Scan(&current); err != nil {
			return err
		}
		if current != tenant {
			return fmt.Errorf("round %d: session tenant %q", round, current)
		}
	}
	return nil
}
