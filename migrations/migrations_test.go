package migrations_test

import (
	"slices"
	"strings"
	"testing"

	"github.com/tenantproxy/tenantproxy/internal/pgtest"
	"github.com/tenantproxy/tenantproxy/migrations"
)

func TestUpTwiceIsANoOpAndStatusIsCurrent(t *testing.T) {
	db := pgtest.New(t)
	conn := pgtest.Connect(t, db.AdminURL)
	first, err := migrations.Up(ctx, conn, migrations.Options{})
	if err != nil {
		t.Fatal(err)
	}
	var policiesBefore int
	if err := conn.QueryRow(ctx, "SELECT count(*) FROM pg_policies").Scan(&policiesBefore); err != nil {
		t.Fatal(err)
	}
	second, err := migrations.Up(ctx, conn, migrations.Options{})
	if err != nil {
		t.Fatalf("second run: %v", err)
	}
	if first.Current != second.Current || second.Current != second.Latest || len(second.Pending) != 0 {
		t.Errorf("status after two runs: %+v then %+v", first, second)
	}
	st, err := migrations.CurrentStatus(ctx, conn, migrations.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if st.Current != 5 || st.Latest != 5 || len(st.Pending) != 0 {
		t.Errorf("status: %+v, want version 5 of 5, nothing pending", st)
	}
	var policiesAfter int
	if err := conn.QueryRow(ctx, "SELECT count(*) FROM pg_policies").Scan(&policiesAfter); err != nil {
		t.Fatal(err)
	}
	if policiesBefore != policiesAfter {
		t.Errorf("policies: %d before the second run, %d after", policiesBefore, policiesAfter)
	}
}

func TestStatusOfAnEmptyDatabaseChangesNothing(t *testing.T) {
	db := pgtest.New(t)
	admin := pgtest.Connect(t, db.AdminURL)
	empty := db.Name + "_empty"
	exec(t, admin, "CREATE DATABASE "+empty)
	t.Cleanup(func() { admin.Exec(ctx, "DROP DATABASE "+empty+" WITH (FORCE)") })
	conn := pgtest.Connect(t, db.AdminURLFor(empty))

	st, err := migrations.CurrentStatus(ctx, conn, migrations.Options{Schema: "other"})
	if err != nil {
		t.Fatal(err)
	}
	if st.Current != 0 || len(st.Pending) != 5 || st.Pending[0] != "001_roles.sql" {
		t.Errorf("status of an empty database: %+v", st)
	}
	var tables int
	if err := conn.QueryRow(ctx, "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'").Scan(&tables); err != nil {
		t.Fatal(err)
	}
	if tables != 0 {
		t.Errorf("status created %d tables", tables)
	}

	// And a second schema in one database migrates on its own.
	st, err = migrations.Up(ctx, conn, migrations.Options{Schema: "other"})
	if err != nil {
		t.Fatal(err)
	}
	if st.Current != 5 {
		t.Errorf("schema other at version %d", st.Current)
	}
	var rls int
	if err := conn.QueryRow(ctx, `SELECT count(*) FROM pg_class WHERE relnamespace = 'other'::regnamespace
		AND relkind = 'r' AND relrowsecurity AND relforcerowsecurity`).Scan(&rls); err != nil {
		t.Fatal(err)
	}
	if rls != len(migrations.TenantTables) {
		t.Errorf("%d tables with forced RLS in schema other, want %d", rls, len(migrations.TenantTables))
	}
}

func TestBadSchemaNameIsRefused(t *testing.T) {
	db := pgtest.New(t)
	conn := pgtest.Connect(t, db.AdminURL)
	for _, name := range []string{"Bad", "a-b", "x; DROP TABLE y", "1abc"} {
		if _, err := migrations.Up(ctx, conn, migrations.Options{Schema: name}); err == nil {
			t.Errorf("schema %q accepted", name)
		}
	}
}

func TestRoles(t *testing.T) {
	db := pgtest.New(t)
	conn := pgtest.Connect(t, db.AdminURL)
	type role struct {
		super, bypass, login, createDB, createRole, inherit bool
	}
	read := func(name string) role {
		var r role
		err := conn.QueryRow(ctx, `SELECT rolsuper, rolbypassrls, rolcanlogin, rolcreatedb, rolcreaterole, rolinherit
			FROM pg_roles WHERE rolname = $1`, name).Scan(&r.super, &r.bypass, &r.login, &r.createDB, &r.createRole, &r.inherit)
		if err != nil {
			t.Fatalf("role %s: %v", name, err)
		}
		return r
	}
	if got := read(migrations.AppRole); got != (role{login: true}) {
		t.Errorf("app role: %+v, want LOGIN and nothing else", got)
	}
	if got := read(migrations.OwnerRole); got.login || got.super || got.bypass {
		t.Errorf("owner role: %+v, want NOLOGIN NOSUPERUSER NOBYPASSRLS", got)
	}
	var member bool
	if err := conn.QueryRow(ctx, "SELECT pg_has_role($1, $2, 'MEMBER')", migrations.AppRole, migrations.OwnerRole).Scan(&member); err != nil {
		t.Fatal(err)
	}
	if member {
		t.Error("the app role is a member of the owner role")
	}
}

func TestCatalogue(t *testing.T) {
	db := pgtest.New(t)
	conn := pgtest.Connect(t, db.AdminURL)
	for _, table := range migrations.TenantTables {
		t.Run(table, func(t *testing.T) {
			qualified := "llmspell." + table
			var owner string
			var rls, force bool
			err := conn.QueryRow(ctx, `SELECT pg_get_userbyid(relowner), relrowsecurity, relforcerowsecurity
				FROM pg_class WHERE oid = $1::regclass`, qualified).Scan(&owner, &rls, &force)
			if err != nil {
				t.Fatal(err)
			}
			if owner != migrations.OwnerRole || !rls || !force {
				t.Errorf("owner %s, RLS %v, forced %v", owner, rls, force)
			}

			commands := pgtest.QueryStrings(t, conn, `SELECT cmd FROM pg_policies WHERE schemaname = 'llmspell' AND tablename = $1 ORDER BY cmd`, table)
			if want := []string{"DELETE", "INSERT", "SELECT", "UPDATE"}; !slices.Equal(commands, want) {
				t.Errorf("policies for %v, want %v", commands, want)
			}

			privileges := pgtest.QueryStrings(t, conn, `SELECT privilege_type FROM information_schema.role_table_grants
				WHERE grantee = $1 AND table_schema = 'llmspell' AND table_name = $2 ORDER BY 1`, migrations.AppRole, table)
			if want := []string{"DELETE", "INSERT", "SELECT", "UPDATE"}; !slices.Equal(privileges, want) {
				t.Errorf("app role privileges %v, want %v (TRUNCATE would ignore RLS)", privileges, want)
			}

			leading := pgtest.QueryStrings(t, conn, `SELECT a.attname FROM pg_index i
				JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]
				WHERE i.indrelid = $1::regclass AND i.indisprimary`, qualified)
			if !slices.Equal(leading, []string{"tenant_id"}) {
				t.Errorf("primary key leads with %v, want tenant_id", leading)
			}
		})
	}

	t.Run("hnsw indexes", func(t *testing.T) {
		defs := pgtest.QueryStrings(t, conn, `SELECT indexdef FROM pg_indexes WHERE schemaname = 'llmspell'
			AND indexdef LIKE '%USING hnsw%' ORDER BY indexname`)
		if len(defs) != 4 {
			t.Fatalf("%d HNSW indexes, want 4: %v", len(defs), defs)
		}
		for _, def := range defs {
			if !(strings.Contains(def, "vector_cosine_ops") || strings.Contains(def, "halfvec(3072)")) {
				t.Errorf("unexpected HNSW index: %s", def)
			}
		}
	})
	t.Run("gist time ranges", func(t *testing.T) {
		defs := pgtest.QueryStrings(t, conn, `SELECT indexname FROM pg_indexes WHERE schemaname = 'llmspell'
			AND indexdef LIKE '%USING gist%' ORDER BY indexname`)
		want := []string{"entities_transaction_range", "entities_valid_range", "relationships_transaction_range", "relationships_valid_range"}
		if !slices.Equal(defs, want) {
			t.Errorf("GiST indexes %v, want %v", defs, want)
		}
	})
	t.Run("iterative hnsw scans for the app role", func(t *testing.T) {
		var setting string
		if err := db.TenantConn(t, "").QueryRow(ctx, "SHOW hnsw.iterative_scan").Scan(&setting); err != nil {
			t.Fatal(err)
		}
		if setting != "strict_order" {
			t.Errorf("hnsw.iterative_scan = %s", setting)
		}
	})
}
