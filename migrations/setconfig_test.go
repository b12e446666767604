package migrations_test

import (
	"context"
	"errors"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/tenantproxy/tenantproxy/internal/pgtest"
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

func asPgErr(err error, target **pgconn.PgError) bool { return errors.As(err, target) }
