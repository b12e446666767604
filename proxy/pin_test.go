package proxy_test

import (
	"testing"

	"github.com/tenantproxy/tenantproxy/config"
	"github.com/tenantproxy/tenantproxy/internal/pgtest"
)

// In transaction pooling a WITH HOLD cursor keeps its backend with the client until it is
// closed; a tenant may keep a quarter of the pool so, all tenants half; a client that leaves
// with a cursor open has its backend closed, not passed on.
func TestWithHoldCursorsKeepTheirBackend(t *testing.T) {
	db := pgtest.New(t)
	seedEntities(t, db, "acme", 3)
	seedEntities(t, db, "globex", 2)
	p := startProxy(t, db, "transaction", func(c *config.Config) { c.Pool.Size = 4 })
	alice := p.connect(t, "alice").PgConn()
	if _, err := simpleRows(alice, "DECLARE c1 CURSOR WITH HOLD FOR SELECT tenant_id FROM llmspell.entities"); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if rows, err := simpleRows(alice, "FETCH 1 FROM c1"); err != nil || len(rows) != 1 || rows[0] != "acme" {
			t.Fatalf("FETCH in a later transaction: %q, %v", rows, err)
		}
	}
	if n := held(p, "acme"); n != 1 {
		t.Errorf("acme holds %v backends while its client is idle with a cursor open, want 1", n)
	}

	// A quarter of four: acme may keep one backend for cursors; with bob's, all tenants keep two.
	carol := p.connect(t, "carol", "tenant=acme").PgConn()
	_, err := simpleRows(carol, "DECLARE c2 CURSOR WITH HOLD FOR SELECT 1")
	wantCode(t, err, "53400", `tenant "acme": 1 of 1`)
	bob := p.connect(t, "bob")
	if _, err := bob.Exec(ctx, "DECLARE b1 CURSOR WITH HOLD FOR SELECT tenant_id FROM llmspell.entities"); err != nil {
		t.Fatalf("DECLARE through the extended protocol: %v", err)
	}
	var tenant string
	if err := bob.QueryRow(ctx, "FETCH 1 FROM b1").Scan(&tenant); err != nil || tenant != "globex" {
		t.Errorf("bob's FETCH: %q, %v", tenant, err)
	}
	_, err = simpleRows(p.connect(t, "t00").PgConn(), "DECLARE t1 CURSOR WITH HOLD FOR SELECT 1")
	wantCode(t, err, "53400", "all tenants: 2 of 2")

	// Closed, the cursor lets the backend go, and carol may keep one.
	if _, err := simpleRows(alice, "CLOSE c1"); err != nil {
		t.Fatal(err)
	}
	pgtest.WaitFor(t, "acme to hold no backend", func() bool { return held(p, "acme") == 0 })
	if _, err := simpleRows(carol, "BEGIN; DECLARE c2 CURSOR WITH HOLD FOR SELECT 1; ROLLBACK"); err != nil {
		t.Fatal(err)
	}
	pgtest.WaitFor(t, "a cursor rolled back to keep no backend", func() bool { return held(p, "acme") == 0 })
	if _, err := simpleRows(carol, "BEGIN; DECLARE c2 CURSOR WITH HOLD FOR SELECT 1; COMMIT"); err != nil {
		t.Fatal(err)
	}
	if rows, err := simpleRows(carol, "FETCH ALL FROM c2"); err != nil || len(rows) != 1 {
		t.Errorf("FETCH of a cursor committed WITH HOLD: %q, %v", rows, err)
	}

	// bob leaves with his cursor open: his backend is closed, not given to anyone.
	discards := metricValue(p, "tenantproxy_pool_discards_total", nil)
	bob.Close(ctx)
	pgtest.WaitFor(t, "bob's backend to be closed", func() bool {
		return metricValue(p, "tenantproxy_pool_discards_total", nil) == discards+1 && held(p, "globex") == 0
	})
}
