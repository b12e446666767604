package migrations_test

import (
	"fmt"
	"maps"
	"sync"
	"testing"

	"github.com/tenantproxy/tenantproxy/internal/pgtest"
)

// Each case runs against every tenant table: row-level security is only as good as its weakest
// table.
func TestRowLevelSecurity(t *testing.T) {
	for _, table := range tables {
		t.Run(table.name, func(t *testing.T) {
			t.Parallel()
			db := pgtest.New(t)
			seed(t, db, table, 3, "acme", "globex")
			// relationships rows come with two entities each: count only what the table holds.
			qualified := "llmspell." + table.name

			t.Run("each tenant sees only its own rows", func(t *testing.T) {
				for _, tenant := range []string{"acme", "globex"} {
					seen := tenantsSeen(t, db.TenantConn(t, tenant), table.name, "")
					if want := map[string]int{tenant: 3}; !maps.Equal(seen, want) {
						t.Errorf("%s sees %v, want %v", tenant, seen, want)
					}
				}
			})
			t.Run("no tenant context sees nothing", func(t *testing.T) {
				if seen := tenantsSeen(t, db.TenantConn(t, ""), table.name, ""); len(seen) != 0 {
					t.Errorf("unset context sees %v", seen)
				}
			})
			t.Run("empty tenant context sees nothing", func(t *testing.T) {
				conn := db.TenantConn(t, "")
				exec(t, conn, "SET app.current_tenant_id = ''")
				if seen := tenantsSeen(t, conn, table.name, ""); len(seen) != 0 {
					t.Errorf("empty context sees %v", seen)
				}
			})
			t.Run("reset context sees nothing", func(t *testing.T) {
				conn := db.TenantConn(t, "acme")
				exec(t, conn, "RESET app.current_tenant_id")
				if seen := tenantsSeen(t, conn, table.name, ""); len(seen) != 0 {
					t.Errorf("reset context sees %v", seen)
				}
			})
			t.Run("an explicit filter on another tenant returns nothing", func(t *testing.T) {
				conn := db.TenantConn(t, "acme")
				if seen := tenantsSeen(t, conn, table.name, "tenant_id = $1", "globex"); len(seen) != 0 {
					t.Errorf("acme filtering on globex sees %v", seen)
				}
				if seen := tenantsSeen(t, conn, table.name, "tenant_id <> $1 OR true", "acme"); !maps.Equal(seen, map[string]int{"acme": 3}) {
					t.Errorf("acme with a tautology sees %v", seen)
				}
			})
			t.Run("insert with another tenant's id is refused", func(t *testing.T) {
				err := table.insert(t, db.TenantConn(t, "acme"), "globex")
				wantSQLState(t, err, "42501", "acme inserting a globex row")
			})
			t.Run("insert without a context is refused", func(t *testing.T) {
				err := table.insert(t, db.TenantConn(t, ""), "acme")
				wantSQLState(t, err, "42501", "inserting with no context")
			})
			t.Run("update cannot move a row to another tenant", func(t *testing.T) {
				_, err := db.TenantConn(t, "acme").Exec(ctx, "UPDATE "+qualified+" SET tenant_id = 'globex'")
				wantSQLState(t, err, "42501", "moving acme's rows to globex")
				if seen := tenantsSeen(t, db.TenantConn(t, "globex"), table.name, ""); !maps.Equal(seen, map[string]int{"globex": 3}) {
					t.Errorf("globex sees %v after acme's attempt", seen)
				}
			})
			t.Run("update touches only own rows", func(t *testing.T) {
				tag := exec(t, db.TenantConn(t, "acme"), "UPDATE "+qualified+" SET updated_at = now()")
				if tag.RowsAffected() != 3 {
					t.Errorf("acme's update touched %d rows, want 3", tag.RowsAffected())
				}
			})
			t.Run("delete touches only own rows", func(t *testing.T) {
				conn := db.TenantConn(t, "acme")
				seed(t, db, table, 2, "initech")
				tag := exec(t, db.TenantConn(t, "initech"), "DELETE FROM "+qualified)
				if tag.RowsAffected() != 2 {
					t.Errorf("initech deleted %d rows, want its 2", tag.RowsAffected())
				}
				if seen := tenantsSeen(t, conn, table.name, ""); !maps.Equal(seen, map[string]int{"acme": 3}) {
					t.Errorf("acme sees %v after initech's delete", seen)
				}
				tag = exec(t, conn, "DELETE FROM "+qualified+" WHERE tenant_id = 'globex'")
				if tag.RowsAffected() != 0 {
					t.Errorf("acme deleted %d of globex's rows", tag.RowsAffected())
				}
			})
		})
	}
}

// Tenants working at once, each on its own connections, never see each other's rows.
func TestConcurrentTenants(t *testing.T) {
	db := pgtest.New(t)
	const tenants, workers, rounds = 4, 3, 25
	var wg sync.WaitGroup
	errs := make(chan error, tenants*workers)
	for i := range tenants {
		tenant := fmt.Sprintf("tenant-%d", i)
		for range workers {
			conn := db.TenantConn(t, tenant)
			wg.Go(func() {
				for round := range rounds {
					if err := tables[4].insert(t, conn, tenant); err != nil {
						errs <- fmt.Errorf("%s insert: %w", tenant, err)
						return
					}
					rows, err := conn.Query(ctx, "SELECT DISTINCT tenant_id FROM llmspell.entities")
					if err != nil {
						errs <- err
						return
					}
					for rows.Next() {
						var seen string
						if err := rows.Scan(&seen); err != nil {
							errs <- err
						} else if seen != tenant {
							errs <- fmt.Errorf("round %d: %s saw a row of %s", round, tenant, seen)
						}
					}
					if err := rows.Err(); err != nil {
						errs <- err
						return
					}
				}
			})
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	admin := pgtest.Connect(t, db.AdminURL)
	var total int
	if err := admin.QueryRow(ctx, "SELECT count(*) FROM llmspell.entities").Scan(&total); err != nil {
		t.Fatal(err)
	}
	if want := tenants * workers * rounds; total != want {
		t.Errorf("%d rows written, want %d", total, want)
	}
}
