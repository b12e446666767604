package migrations_test

import (
	"context"
	"errors"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/tenantproxy/tenantproxy/internal/pgtest"
	"github.com/tenantproxy/tenantproxy/migrations"
)

// The set_config wrapper sets what set_config sets, at session or transaction level, but never
// the tenant context, the session's identity, or how the server reads statements; set_config
// itself stays revoked.
func TestSetConfigWrapper(t *testing.T) {
	ctx := context.Background()
	db := pgtest.New(t)
	conn := db.TenantConn(t, "acme")
	show := func(name string) string { return pgtest.QueryStrings(t, conn, "SELECT current_setting($1)", name)[0] }

	for _, sql := range []string{
		"SELECT tenantproxy.set_config('search_path', '', false)",
		"SELECT tenantproxy.set_config('work_mem', '8MB', false)",
		"SELECT tenantproxy.set_config('myapp.Flag', 'on', false)",
	} {
		if _, err := conn.Exec(ctx, sql); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	}
	// A session-level setting outlives the call (the function's own search_path does not
	// hide it), as set_config's does.
	if got := show("search_path"); got != "" {
		t.Errorf("search_path %q after set_config('search_path', '', false)", got)
	}
	if show("work_mem") != "8MB" || show("myapp.flag") != "on" {
		t.Errorf("work_mem %q, myapp.flag %q", show("work_mem"), show("myapp.flag"))
	}
	tx, err := conn.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, "SELECT tenantproxy.set_config('work_mem', '16MB', true)"); err != nil {
		t.Fatal(err)
	}
	tx.Rollback(ctx)
	if got := show("work_mem"); got != "8MB" {
		t.Errorf("work_mem %q after a transaction-level set_config rolled back", got)
	}
	// search_path at transaction level too: it lasts until the transaction ends, not until
	// the function returns.
	tx, err = conn.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, "SELECT tenantproxy.set_config('search_path', 'llmspell', true)"); err != nil {
		t.Fatal(err)
	}
	if got := pgtest.QueryStrings(t, tx.Conn(), "SHOW search_path")[0]; got != "llmspell" {
		t.Errorf("search_path %q inside the transaction, want llmspell", got)
	}
	tx.Commit(ctx)
	if got := show("search_path"); got != "" {
		t.Errorf("search_path %q after the transaction, want the session's (empty)", got)
	}

	for _, name := range []string{"app.current_tenant_id", "APP.Current_Tenant_Id", "app.other", "role", "Session_Authorization",
		"standard_conforming_strings", "client_encoding"} {
		_, err := conn.Exec(ctx, "SELECT tenantproxy.set_config($1, 'globex', false)", name)
		var pgErr *pgconn.PgError
		if !asPgErr(err, &pgErr) || pgErr.Code != "42501" {
			t.Errorf("set_config of %s: %v, want 42501", name, err)
		}
	}
	if got := show("app.current_tenant_id"); got != "acme" {
		t.Errorf("the tenant context is %q", got)
	}
	_, err = conn.Exec(ctx, "SELECT pg_catalog.set_config('work_mem', '1MB', false)")
	var pgErr *pgconn.PgError
	if !asPgErr(err, &pgErr) || pgErr.Code != "42501" {
		t.Errorf("pg_catalog.set_config as the app role: %v", err)
	}
}

// The wrapper runs under the caller's search_path (it has no SET clause, see 008): a schema the
// caller puts first, with its own operator and functions of the wrapper's names, changes
// nothing.
func TestSetConfigWrapperIgnoresTheCallersSchemas(t *testing.T) {
	ctx := context.Background()
	db := pgtest.New(t)
	admin := pgtest.Connect(t, db.AdminURL)
	for _, sql := range []string{
		"CREATE SCHEMA evil",
		"CREATE FUNCTION evil.eq(text, text) RETURNS boolean LANGUAGE sql AS 'SELECT false'",
		"CREATE OPERATOR evil.= (LEFTARG = text, RIGHTARG = text, FUNCTION = evil.eq)",
		"CREATE FUNCTION evil.starts_with(text, text) RETURNS boolean LANGUAGE sql AS 'SELECT false'",
		"CREATE FUNCTION evil.lower(text) RETURNS text LANGUAGE sql AS 'SELECT ''harmless'''",
		"CREATE FUNCTION evil.set_config(text, text, boolean) RETURNS text LANGUAGE sql AS 'SELECT ''evil'''",
		"GRANT USAGE ON SCHEMA evil TO " + migrations.AppRole,
		"GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA evil TO " + migrations.AppRole,
	} {
		if _, err := admin.Exec(ctx, sql); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	}
	conn := db.TenantConn(t, "acme")
	if _, err := conn.Exec(ctx, "SET search_path = evil, pg_catalog"); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"app.current_tenant_id", "role"} {
		_, err := conn.Exec(ctx, "SELECT tenantproxy.set_config($1, 'globex', false)", name)
		var pgErr *pgconn.PgError
		if !asPgErr(err, &pgErr) || pgErr.Code != "42501" {
			t.Errorf("set_config of %s under the caller's schema: %v, want 42501", name, err)
		}
	}
	if got := pgtest.QueryStrings(t, conn, "SELECT tenantproxy.set_config('work_mem', '3MB', false)")[0]; got != "3MB" {
		t.Errorf("set_config of work_mem returned %q, want 3MB (the real set_config's answer)", got)
	}
}

func asPgErr(err error, target **pgconn.PgError) bool { return errors.As(err, target) }
