package lint_test

import (
	"context"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/tenantproxy/tenantproxy/internal/pgtest"
	"github.com/tenantproxy/tenantproxy/lint"
	"github.com/tenantproxy/tenantproxy/migrations"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

var ctx = context.Background()

func check(t *testing.T, conn *pgx.Conn, role string) []lint.Finding {
	t.Helper()
	findings, err := lint.Check(ctx, conn, lint.Options{Role: role, Schemas: []string{"llmspell"}, ReservedPrefixes: []string{"app."}})
	if err != nil {
		t.Fatal(err)
	}
	return findings
}

func TestShippedSchemaPasses(t *testing.T) {
	db := pgtest.New(t)
	// As the app role itself, the way `tenantproxy serve` checks...
	if f := check(t, pgtest.Connect(t, db.AppURL), ""); len(f) != 0 {
		t.Errorf("findings as the app role: %v", f)
	}
	// ...and as a superuser naming the role.
	if f := check(t, pgtest.Connect(t, db.AdminURL), migrations.AppRole); len(f) != 0 {
		t.Errorf("findings for the app role: %v", f)
	}
}

// Each change breaks one thing the isolation needs; the check must name it.
func TestFindings(t *testing.T) {
	cases := []struct {
		name, breakIt, role, rule, object string
	}{
		{"superuser backend role", "", "postgres", "superuser", "role postgres"},
		{"bypassrls", "ALTER ROLE {role} BYPASSRLS", "{role}", "bypassrls", "role {role}"},
		{"member of the owner", "GRANT tenantproxy_owner TO {role}", "{role}", "owns-table", "llmspell.entities"},
		{"table without FORCE", "ALTER TABLE llmspell.entities NO FORCE ROW LEVEL SECURITY", "", "rls-not-forced", "llmspell.entities"},
		{"table without RLS", "ALTER TABLE llmspell.relationships DISABLE ROW LEVEL SECURITY", "", "rls-disabled", "llmspell.relationships"},
		{"new table without RLS", "CREATE TABLE llmspell.notes (tenant_id text, body text)", "", "rls-disabled", "llmspell.notes"},
		{"missing policy", "DROP POLICY tenant_isolation_delete ON llmspell.entities", "", "policy-missing", "llmspell.entities"},
		{"policy that opens the table", "CREATE POLICY open ON llmspell.entities FOR SELECT USING (true)", "", "policy-without-tenant", "llmspell.entities"},
		{"truncate granted", "GRANT TRUNCATE ON llmspell.entities TO tenantproxy_app", "", "table-privilege", "llmspell.entities"},
		{"set_config granted back", "GRANT EXECUTE ON FUNCTION set_config(text, text, boolean) TO PUBLIC", "", "lockdown-function", "set_config"},
		{"currtid2 granted back", "GRANT EXECUTE ON FUNCTION currtid2(text, tid) TO PUBLIC", "", "lockdown-function", "currtid2"},
		{"activity counter granted to the role", "GRANT EXECUTE ON FUNCTION pg_stat_get_numscans(oid) TO tenantproxy_app", "", "lockdown-function", "pg_stat_get_numscans"},
		{"pg_stat_activity readable", "GRANT SELECT ON pg_stat_activity TO tenantproxy_app", "", "lockdown-view", "pg_stat_activity"},
		{"activity counters readable", "GRANT SELECT ON pg_stat_user_tables TO PUBLIC", "", "lockdown-view", "pg_stat_user_tables"},
		{"pg_settings updatable", "GRANT UPDATE ON pg_settings TO PUBLIC", "", "lockdown-pg-settings", "pg_settings"},
		{"plpgsql usable", "GRANT USAGE ON LANGUAGE plpgsql TO PUBLIC", "", "lockdown-language", "plpgsql"},
		{"temporary tables allowed", "GRANT TEMPORARY ON DATABASE {db} TO tenantproxy_app", "", "database-privilege", "database"},
		{"create in public", "GRANT CREATE ON SCHEMA public TO PUBLIC", "", "create-in-schema", "schema public"},
		{"reserved role default", "ALTER ROLE {role} SET app.current_tenant_id = 'acme'", "{role}", "reserved-default", "setting"},
		{"reserved database default", "ALTER DATABASE {db} SET app.current_tenant_id = 'acme'", "", "reserved-default", "setting"},
		{"signal other backends", "GRANT pg_signal_backend TO {role}", "{role}", "predefined-role", "role {role}"},
		{"missing schema", "DROP SCHEMA llmspell CASCADE", "", "schema-missing", "schema llmspell"},
		{"migrations not applied", "DROP FUNCTION tenantproxy.holdable_cursors()", "", "proxy-function", "tenantproxy.holdable_cursors()"},
		{"wrapper not granted", "REVOKE EXECUTE ON FUNCTION tenantproxy.set_config(text, text, boolean) FROM tenantproxy_app", "", "proxy-function", "tenantproxy.set_config"},
		{"directory schema usable", "GRANT USAGE ON SCHEMA tenantproxy_directory TO tenantproxy_app", "", "directory-readable", "schema tenantproxy_directory"},
		{"directory verifiers readable", "GRANT SELECT (name, verifier) ON tenantproxy_directory.users TO {role}", "{role}", "directory-readable", "tenantproxy_directory.users"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			db := pgtest.New(t)
			admin := pgtest.Connect(t, db.AdminURL)
			role := c.role
			switch role {
			case "":
				role = migrations.AppRole
			case "{role}":
				// Roles belong to the whole cluster: break a role of this test's own, made
				// like the app role, never the one other tests use.
				role = throwawayRole(t, admin, db.Name)
			}
			if c.breakIt != "" {
				sql := strings.NewReplacer("{db}", db.Name, "{role}", role).Replace(c.breakIt)
				if _, err := admin.Exec(ctx, sql); err != nil {
					t.Fatal(err)
				}
			}
			findings := check(t, admin, role)
			found := false
			object := strings.ReplaceAll(c.object, "{role}", role)
			for _, f := range findings {
				if f.Rule == c.rule && strings.Contains(f.Object, object) {
					found = true
				}
			}
			if !found {
				t.Errorf("no %s finding for %s; got %v", c.rule, c.object, findings)
			}
		})
	}
}

// throwawayRole creates a role with the app role's grants, dropped when the test ends.
func throwawayRole(t *testing.T, admin *pgx.Conn, database string) string {
	t.Helper()
	role := "lint_" + strings.ReplaceAll(strings.ToLower(t.Name()), "/", "_")
	role = strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '_' {
			return r
		}
		return '_'
	}, role)
	if len(role) > 60 {
		role = role[:60]
	}
	for _, sql := range []string{
		"CREATE ROLE " + role + " LOGIN NOINHERIT",
		"GRANT USAGE ON SCHEMA llmspell TO " + role,
		"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA llmspell TO " + role,
	} {
		if _, err := admin.Exec(ctx, sql); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() {
		admin.Exec(ctx, "DROP OWNED BY "+role)
		admin.Exec(ctx, "ALTER ROLE "+role+" RESET ALL")
		admin.Exec(ctx, "DROP ROLE "+role)
	})
	return role
}
