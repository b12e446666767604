package migrations_test

import (
	"slices"
	"strings"
	"testing"

	"github.com/tenantproxy/tenantproxy/config"
	"github.com/tenantproxy/tenantproxy/internal/pgtest"
	"github.com/tenantproxy/tenantproxy/migrations"
)

// A verifier in the right format; these tests never log in with it.
const someVerifier = "SCRAM-SHA-256$4096:i9sg0HmS8QFyG9N5zPvL+Q==$bpDZK46QFJQx4zB8ajtXWQfYcUFEJxsj+C3sV9gijvg=:5HnCv8y4QVmGOoJz/D6hb6g6bwnOjhxz/AN0xd2LHeg="

func TestDirectoryRole(t *testing.T) {
	db := pgtest.New(t)
	conn := pgtest.Connect(t, db.AdminURL)
	var super, bypass, login, createDB, createRole, inherit, ownerMember bool
	err := conn.QueryRow(ctx, `SELECT rolsuper, rolbypassrls, rolcanlogin, rolcreatedb, rolcreaterole, rolinherit,
		pg_has_role(rolname, $2, 'MEMBER') FROM pg_roles WHERE rolname = $1`, migrations.DirectoryRole, migrations.OwnerRole).
		Scan(&super, &bypass, &login, &createDB, &createRole, &inherit, &ownerMember)
	if err != nil {
		t.Fatal(err)
	}
	if super || bypass || !login || createDB || createRole || inherit || ownerMember {
		t.Errorf("directory role: super %v bypassrls %v login %v createdb %v createrole %v inherit %v owner member %v; want LOGIN and nothing else",
			super, bypass, login, createDB, createRole, inherit, ownerMember)
	}
}

// The verifiers are readable by the directory role alone; the directory role reads nothing else.
func TestOnlyTheDirectoryRoleReadsTheDirectory(t *testing.T) {
	db := pgtest.New(t)
	admin := pgtest.Connect(t, db.AdminURL)
	exec(t, admin, "INSERT INTO tenantproxy_directory.users (name, verifier, tenant) VALUES ('alice', $1, 'acme')", someVerifier)

	app := pgtest.Connect(t, db.AppURL)
	for _, table := range []string{"users", "user_changes"} {
		_, err := app.Exec(ctx, "SELECT * FROM tenantproxy_directory."+table)
		wantSQLState(t, err, "42501", "the app role reading "+table)
	}

	reader := pgtest.Connect(t, db.DirectoryURL)
	if got := pgtest.QueryStrings(t, reader, "SELECT name || ' ' || tenant FROM tenantproxy_directory.users"); !slices.Equal(got, []string{"alice acme"}) {
		t.Errorf("the directory role reads %v", got)
	}
	if got := pgtest.QueryStrings(t, reader, "SELECT name FROM tenantproxy_directory.user_changes"); !slices.Equal(got, []string{"alice"}) {
		t.Errorf("the directory role reads the change log as %v", got)
	}
	for _, table := range migrations.TenantTables {
		_, err := reader.Exec(ctx, "SELECT * FROM llmspell."+table)
		wantSQLState(t, err, "42501", "the directory role reading llmspell."+table)
	}
	for _, sql := range []string{
		"INSERT INTO tenantproxy_directory.users (name, verifier, tenant) VALUES ('mallory', 'SCRAM-SHA-256$x', 'acme')",
		"UPDATE tenantproxy_directory.users SET disabled = true",
		"DELETE FROM tenantproxy_directory.user_changes",
		"CREATE TABLE tenantproxy_directory.notes (body text)",
	} {
		_, err := reader.Exec(ctx, sql)
		wantSQLState(t, err, "42501", "the directory role: "+sql)
	}
}

// The table refuses what the commands refuse, with the config's rules, whoever writes it.
func TestDirectoryConstraintsFollowTheConfigRules(t *testing.T) {
	db := pgtest.New(t)
	admin := pgtest.Connect(t, db.AdminURL)
	names := []string{"alice", "svc_1", "a.b@c-d", "_x", "Acme:EU-1", strings.Repeat("n", 63),
		"", "-x", ".x", "o'brien", "a b", "a,b", "é", strings.Repeat("n", 64)}
	insertOK := func(sql string, args ...any) bool {
		_, err := admin.Exec(ctx, "SAVEPOINT s")
		if err != nil {
			t.Fatal(err)
		}
		_, err = admin.Exec(ctx, sql, args...)
		if err != nil {
			wantSQLState(t, err, "23514", sql)
			exec(t, admin, "ROLLBACK TO SAVEPOINT s")
			return false
		}
		exec(t, admin, "RELEASE SAVEPOINT s")
		return true
	}
	exec(t, admin, "BEGIN")
	defer admin.Exec(ctx, "ROLLBACK")
	for i, name := range names {
		if got := insertOK("INSERT INTO tenantproxy_directory.users (name, verifier, tenant) VALUES ($1, $2, 'acme')", name, someVerifier); got != config.ValidUser(name) {
			t.Errorf("user name %q: accepted %v, config.ValidUser %v", name, got, !got)
		}
		user := "tenant_" + string(rune('a'+i))
		if got := insertOK("INSERT INTO tenantproxy_directory.users (name, verifier, tenant) VALUES ($1, $2, $3)", user, someVerifier, name); got != config.ValidTenant(name) {
			t.Errorf("tenant %q: accepted %v, config.ValidTenant %v", name, got, !got)
		}
		user = "tenants_" + string(rune('a'+i))
		if got := insertOK("INSERT INTO tenantproxy_directory.users (name, verifier, tenants) VALUES ($1, $2, ARRAY['acme', $3])", user, someVerifier, name); got != config.ValidTenant(name) {
			t.Errorf("tenant %q in a list: accepted %v, config.ValidTenant %v", name, got, !got)
		}
	}
	for _, bad := range []string{
		"INSERT INTO tenantproxy_directory.users (name, verifier, tenant) VALUES ('p', 'hunter2', 'acme')",
		"INSERT INTO tenantproxy_directory.users (name, verifier) VALUES ('p', '" + someVerifier + "')",
		"INSERT INTO tenantproxy_directory.users (name, verifier, tenant, tenants) VALUES ('p', '" + someVerifier + "', 'acme', '{acme}')",
		"INSERT INTO tenantproxy_directory.users (name, verifier, tenants) VALUES ('p', '" + someVerifier + "', '{}')",
		"INSERT INTO tenantproxy_directory.users (name, verifier, tenants) VALUES ('p', '" + someVerifier + "', '{acme,NULL}')",
		"INSERT INTO tenantproxy_directory.users (name, verifier, tenants, default_tenant) VALUES ('p', '" + someVerifier + "', '{acme}', 'globex')",
		"INSERT INTO tenantproxy_directory.users (name, verifier, tenant, default_tenant) VALUES ('p', '" + someVerifier + "', 'acme', 'acme')",
		"INSERT INTO tenantproxy_directory.users (name, verifier, tenant, max_connections) VALUES ('p', '" + someVerifier + "', 'acme', 0)",
	} {
		if insertOK(bad) {
			t.Errorf("accepted: %s", bad)
		}
	}
}

// Every change to a user is logged; TRUNCATE, which no trigger would log row by row, is refused;
// old rows are pruned, except the newest.
func TestDirectoryChangeLog(t *testing.T) {
	db := pgtest.New(t)
	admin := pgtest.Connect(t, db.AdminURL)
	exec(t, admin, "INSERT INTO tenantproxy_directory.users (name, verifier, tenant) VALUES ('alice', $1, 'acme'), ('bob', $1, 'acme')", someVerifier)
	exec(t, admin, "UPDATE tenantproxy_directory.users SET disabled = true WHERE name = 'alice'")
	exec(t, admin, "UPDATE tenantproxy_directory.users SET name = 'robert' WHERE name = 'bob'")
	exec(t, admin, "DELETE FROM tenantproxy_directory.users WHERE name = 'alice'")
	log := pgtest.QueryStrings(t, admin, "SELECT name FROM tenantproxy_directory.user_changes ORDER BY version")
	if want := []string{"alice", "bob", "alice", "bob", "robert", "alice"}; !slices.Equal(log, want) {
		t.Errorf("change log %v, want %v", log, want)
	}

	_, err := admin.Exec(ctx, "TRUNCATE tenantproxy_directory.users")
	wantSQLState(t, err, "0A000", "TRUNCATE of the directory")

	exec(t, admin, "UPDATE tenantproxy_directory.user_changes SET changed_at = now() - interval '2 days'")
	exec(t, admin, "UPDATE tenantproxy_directory.users SET disabled = true WHERE name = 'robert'")
	log = pgtest.QueryStrings(t, admin, "SELECT name || ' ' || (changed_at > now() - interval '1 hour') FROM tenantproxy_directory.user_changes ORDER BY version")
	if want := []string{"alice false", "robert true"}; !slices.Equal(log, want) {
		t.Errorf("change log after pruning %v, want %v (the newest old row stays)", log, want)
	}
}

// A role granted writes on the users table alone (not the log) is logged all the same.
func TestDirectoryWriterRoleIsLogged(t *testing.T) {
	db := pgtest.New(t)
	admin := pgtest.Connect(t, db.AdminURL)
	writer := db.Name + "_writer"
	exec(t, admin, "CREATE ROLE "+writer)
	t.Cleanup(func() {
		admin.Exec(ctx, "DROP OWNED BY "+writer)
		admin.Exec(ctx, "DROP ROLE "+writer)
	})
	exec(t, admin, "GRANT USAGE ON SCHEMA tenantproxy_directory TO "+writer)
	exec(t, admin, "GRANT SELECT, INSERT, UPDATE, DELETE ON tenantproxy_directory.users TO "+writer)
	exec(t, admin, "SET ROLE "+writer)
	exec(t, admin, "INSERT INTO tenantproxy_directory.users (name, verifier, tenant) VALUES ('wendy', $1, 'acme')", someVerifier)
	exec(t, admin, "DELETE FROM tenantproxy_directory.users WHERE name = 'wendy'")
	_, err := admin.Exec(ctx, "SELECT * FROM tenantproxy_directory.user_changes")
	wantSQLState(t, err, "42501", "the writer reading the log")
	exec(t, admin, "RESET ROLE")
	if log := pgtest.QueryStrings(t, admin, "SELECT name FROM tenantproxy_directory.user_changes ORDER BY version"); !slices.Equal(log, []string{"wendy", "wendy"}) {
		t.Errorf("change log %v, want wendy added and removed", log)
	}
}
