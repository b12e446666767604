package lockdown_test

import (
	"context"
	"os"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/tenantproxy/tenantproxy/internal/pgtest"
	"github.com/tenantproxy/tenantproxy/lockdown"
	"github.com/tenantproxy/tenantproxy/migrations"
)

var ctx = context.Background()

// catalogConn is a superuser connection to a migrated database whose signatures print as
// review.txt writes them.
func catalogConn(t *testing.T) *pgx.Conn {
	t.Helper()
	db := pgtest.New(t)
	conn := pgtest.Connect(t, db.AdminURL)
	if _, err := conn.Exec(ctx, "SET search_path = pg_catalog"); err != nil {
		t.Fatal(err)
	}
	return conn
}

// draftGroups runs draft.sql and maps each signature to the group it suggests.
func draftGroups(t *testing.T, conn *pgx.Conn) map[string]string {
	t.Helper()
	query, err := os.ReadFile("draft.sql")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(query), "'"+migrations.AppRole+"'") {
		t.Fatalf("draft.sql does not ask about %s", migrations.AppRole)
	}
	groups := map[string]string{}
	for _, line := range pgtest.QueryStrings(t, conn, string(query)) {
		group, signature, _ := strings.Cut(line, "|")
		groups[signature] = group
	}
	return groups
}

// Every function the app role can execute must be in review.txt, and no revoked function may be
// executable. A new PostgreSQL or pgvector release that adds a function fails here until someone
// has reviewed it.
func TestEveryExecutableFunctionIsReviewed(t *testing.T) {
	conn := catalogConn(t)
	reviewed := reviewedSignatures(t)
	rows, err := conn.Query(ctx, `SELECT p.oid::regprocedure::text, p.proname::text,
			p.pronamespace = 'pg_catalog'::regnamespace
		FROM pg_proc p WHERE has_function_privilege($1, p.oid, 'EXECUTE') ORDER BY 1`, migrations.AppRole)
	if err != nil {
		t.Fatal(err)
	}
	type function struct {
		signature, name string
		inCatalog       bool
	}
	executable, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (function, error) {
		var f function
		return f, r.Scan(&f.signature, &f.name, &f.inCatalog)
	})
	if err != nil {
		t.Fatal(err)
	}
	// A query gone wrong must not pass by finding nothing.
	if len(executable) < 1000 {
		t.Fatalf("the app role can execute only %d functions: the query is wrong", len(executable))
	}

	var stillExecutable, unreviewed []string
	var draft map[string]string
	for _, f := range executable {
		if rule, ok := lockdown.Revoked(f.name); ok && f.inCatalog {
			stillExecutable = append(stillExecutable, f.signature+": "+string(rule))
			continue
		}
		if _, ok := reviewed[f.signature]; ok {
			continue
		}
		if draft == nil {
			draft = draftGroups(t, conn)
		}
		unreviewed = append(unreviewed, f.signature+"   (draft group: "+draft[f.signature]+")")
	}
	if len(stillExecutable) > 0 {
		t.Errorf("%s can execute %d revoked functions (is migrations/lockdown.sql applied?):%s",
			migrations.AppRole, len(stillExecutable), describe(stillExecutable))
	}
	if len(unreviewed) > 0 {
		t.Errorf("%s can execute %d functions lockdown/review.txt does not cover. Review each (see the top of "+
			"review.txt): add it to the group whose reason it fits, or revoke it in lockdown/functions.go:%s",
			migrations.AppRole, len(unreviewed), describe(unreviewed))
	}
}

// A view runs its functions with its reader's privileges: one the app role can read but whose
// functions are revoked fails for it, and belongs in lockdown.Views so that it is revoked (and
// checked) as plainly as its functions.
func TestNoReadableViewCallsARevokedFunction(t *testing.T) {
	conn := catalogConn(t)
	views := pgtest.QueryStrings(t, conn, `
		SELECT v.oid::regclass::text || ' calls ' || string_agg(DISTINCT p.proname, ', ' ORDER BY p.proname)
		FROM pg_class v
		CROSS JOIN LATERAL pg_get_viewdef(v.oid) def
		JOIN pg_proc p ON NOT has_function_privilege($1, p.oid, 'EXECUTE') AND def ~ ('\m' || p.proname || '\(')
		WHERE v.relkind IN ('v', 'm')
		  AND v.relnamespace IN ('pg_catalog'::regnamespace, 'information_schema'::regnamespace)
		  AND has_table_privilege($1, v.oid, 'SELECT')
		GROUP BY v.oid ORDER BY 1`, migrations.AppRole)
	if len(views) > 0 {
		t.Errorf("%s can read views that call functions it may not execute; add them to lockdown.Views:%s",
			migrations.AppRole, describe(views))
	}
	var revoked int
	if err := conn.QueryRow(ctx, `SELECT count(*) FROM unnest($2::text[]) v
		WHERE to_regclass('pg_catalog.' || v) IS NOT NULL
		  AND NOT has_table_privilege($1, ('pg_catalog.' || v)::regclass, 'SELECT')`,
		migrations.AppRole, lockdown.Views).Scan(&revoked); err != nil {
		t.Fatal(err)
	}
	if revoked < 30 {
		t.Errorf("only %d of lockdown.Views are revoked on this server", revoked)
	}
}
