package migrations_test

import (
	"context"
	"strings"
	"testing"

	"github.com/tenantproxy/tenantproxy/internal/pgtest"
	"github.com/tenantproxy/tenantproxy/migrations"
)

func TestRLSPolicySQLQuotesAndCoversEveryCommand(t *testing.T) {
	sql, err := migrations.RLSPolicySQL(migrations.RLSTable{Schema: "My Schema", Table: `we"ird`})
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		`ALTER TABLE "My Schema"."we""ird" ENABLE ROW LEVEL SECURITY;`,
		`ALTER TABLE "My Schema"."we""ird" FORCE ROW LEVEL SECURITY;`,
		`DROP POLICY IF EXISTS "tenant_isolation_select" ON "My Schema"."we""ird";`,
		`FOR SELECT USING ("tenant_id" = current_setting('app.current_tenant_id', true))`,
		`FOR INSERT WITH CHECK ("tenant_id" = current_setting('app.current_tenant_id', true))`,
		`FOR UPDATE USING ("tenant_id" = current_setting('app.current_tenant_id', true)) WITH CHECK (`,
		`FOR DELETE USING (`,
	} {
		if !strings.Contains(sql, want) {
			t.Errorf("missing %q in:\n%s", want, sql)
		}
	}
	if n := strings.Count(sql, "CREATE POLICY"); n != 4 {
		t.Errorf("%d policies, want 4", n)
	}
}

func TestRLSPolicySQLRefusesBadInput(t *testing.T) {
	for _, table := range []migrations.RLSTable{
		{Schema: "", Table: "t"},
		{Schema: "s", Table: ""},
		{Schema: "s", Table: "t", Setting: "no_dot"},
		{Schema: "s", Table: "t", Setting: "app.x'); DROP TABLE t; --"},
		{Schema: "s", Table: "t", Setting: "App.Upper"},
	} {
		if _, err := migrations.RLSPolicySQL(table); err == nil {
			t.Errorf("accepted %+v", table)
		}
	}
}

// The helper works on any table, run twice in a row, and confines it.
func TestRLSPolicySQLOnAnyTable(t *testing.T) {
	ctx := context.Background()
	db := pgtest.New(t)
	admin := pgtest.Connect(t, db.AdminURL)
	mustExec := func(sql string) {
		t.Helper()
		if _, err := admin.Exec(ctx, sql); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	}
	mustExec(`CREATE TABLE llmspell."Notes" (org text NOT NULL, body text)`)
	mustExec(`GRANT SELECT, INSERT ON llmspell."Notes" TO tenantproxy_app`)
	sql, err := migrations.RLSPolicySQL(migrations.RLSTable{Schema: "llmspell", Table: "Notes", Column: "org"})
	if err != nil {
		t.Fatal(err)
	}
	for range 2 {
		mustExec("BEGIN; " + sql + " COMMIT;")
	}
	mustExec(`INSERT INTO llmspell."Notes" VALUES ('acme', 'a'), ('globex', 'g')`)

	var bodies string
	conn := db.TenantConn(t, "globex")
	if err := conn.QueryRow(ctx, `SELECT string_agg(body, ',') FROM llmspell."Notes"`).Scan(&bodies); err != nil {
		t.Fatal(err)
	}
	if bodies != "g" {
		t.Errorf("globex sees %q, want g", bodies)
	}
	var policies int
	if err := admin.QueryRow(ctx, `SELECT count(*) FROM pg_policies WHERE tablename = 'Notes'`).Scan(&policies); err != nil {
		t.Fatal(err)
	}
	if policies != 4 {
		t.Errorf("%d policies after two runs, want 4", policies)
	}
}
