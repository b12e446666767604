package main

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tenantproxy/tenantproxy/internal/pgtest"
)

func TestMigrateUpOnAnEmptyDatabase(t *testing.T) {
	db := pgtest.New(t)
	empty := db.Name + "_cli"
	psql(t, db.AdminURL, "CREATE DATABASE "+empty)
	t.Cleanup(func() { psql(t, db.AdminURL, "DROP DATABASE "+empty+" WITH (FORCE)") })
	url := db.AdminURLFor(empty)
	files, err := filepath.Glob(filepath.Join(pgtest.RepoRoot(), "migrations", "sql", "*.sql"))
	if err != nil || len(files) == 0 {
		t.Fatalf("the migrations: %v, %v", files, err)
	}
	latest := len(files)

	out, code := run(t, nil, "migrate", "status", "--database-url", url)
	if code != 3 || !strings.Contains(out, fmt.Sprintf("version: 0 of %d", latest)) {
		t.Errorf("status before: exit %d\n%s", code, out)
	}
	out, code = run(t, nil, "migrate", "up", "--database-url", url)
	if code != 0 || !strings.Contains(out, fmt.Sprintf("migrated from version 0 to %d", latest)) || !strings.Contains(out, "password unchanged") {
		t.Fatalf("up: exit %d\n%s", code, out)
	}
	out, code = run(t, []string{"DATABASE_URL=" + url, "TENANTPROXY_APP_PASSWORD=s3cret"}, "migrate", "up", "--directory-password", "d1r")
	if code != 0 || !strings.Contains(out, fmt.Sprintf("up to date at version %d", latest)) || !strings.Contains(out, "role tenantproxy_app: password set") ||
		!strings.Contains(out, "role tenantproxy_directory: password set") {
		t.Fatalf("second up: exit %d\n%s", code, out)
	}
	out, code = run(t, nil, "migrate", "status", "--database-url", url)
	if code != 0 || !strings.Contains(out, fmt.Sprintf("version: %d of %d", latest, latest)) || !strings.Contains(out, "pending: none") {
		t.Errorf("status after: exit %d\n%s", code, out)
	}

	checks := []struct{ query, want string }{
		{`SELECT count(*) FROM pg_tables WHERE schemaname = 'llmspell' AND tableowner = 'tenantproxy_owner'`, "6"},
		{`SELECT count(*) FROM pg_class WHERE relnamespace = 'llmspell'::regnamespace AND relkind = 'r'
			AND relrowsecurity AND relforcerowsecurity`, "6"},
		{`SELECT count(*) FROM pg_policies WHERE schemaname = 'llmspell'`, "24"},
		{`SELECT extversion >= '0.8.0' FROM pg_extension WHERE extname = 'vector'`, "t"},
		{`SELECT rolsuper OR rolbypassrls OR rolcreatedb OR rolcreaterole FROM pg_roles WHERE rolname = 'tenantproxy_app'`, "f"},
		{`SELECT rolpassword LIKE 'SCRAM-SHA-256$%' FROM pg_authid WHERE rolname = 'tenantproxy_app'`, "t"},
		{`SELECT rolpassword LIKE 'SCRAM-SHA-256$%' FROM pg_authid WHERE rolname = 'tenantproxy_directory'`, "t"},
		{`SELECT count(*) FROM pg_tables WHERE schemaname = 'tenantproxy_directory'`, "2"},
		{`SELECT has_schema_privilege('tenantproxy_app', 'tenantproxy_directory', 'USAGE')`, "f"},
		{`SELECT has_function_privilege('tenantproxy_app', 'set_config(text,text,boolean)', 'EXECUTE')`, "f"},
		{`SELECT has_database_privilege('tenantproxy_app', current_database(), 'TEMPORARY')`, "f"},
		{`SELECT has_table_privilege('tenantproxy_app', 'pg_stat_activity', 'SELECT')`, "f"},
		{`SELECT has_language_privilege('tenantproxy_app', 'plpgsql', 'USAGE')`, "f"},
	}
	for _, c := range checks {
		if got := psql(t, url, c.query); got != c.want {
			t.Errorf("%s\n  = %s, want %s", c.query, got, c.want)
		}
	}
	// The app role can log in. (The private test cluster trusts loopback, so this checks the
	// role; the verifier's correctness is scramsecret's test.)
	app := strings.Replace(url, "postgres://postgres@", "postgres://tenantproxy_app:s3cret@", 1)
	if got := psql(t, app, "SELECT current_user"); got != "tenantproxy_app" {
		t.Errorf("app role login: %s", got)
	}
	reader := strings.Replace(url, "postgres://postgres@", "postgres://tenantproxy_directory:d1r@", 1)
	if got := psql(t, reader, "SELECT count(*) FROM tenantproxy_directory.users"); got != "0" {
		t.Errorf("directory role login: %s", got)
	}
}

func TestMigrateNeedsADatabase(t *testing.T) {
	out, code := run(t, []string{"DATABASE_URL="}, "migrate", "up")
	if code != 1 || !strings.Contains(out, "--database-url") {
		t.Errorf("exit %d\n%s", code, out)
	}
}
