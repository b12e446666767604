package migrations_test

import (
	"strings"
	"testing"
	"time"

	"github.com/tenantproxy/tenantproxy/internal/pgtest"
)

// Without the proxy, straight to the database as the app role: the lockdown must close every
// path that changes the tenant context other than a SET statement, and every way to reach what
// other sessions do. Each statement must fail with the SQLSTATE given.
func TestLockdown(t *testing.T) {
	db := pgtest.New(t)
	cases := []struct {
		name, sql, state string
	}{
		{"disable row-level security", "ALTER TABLE llmspell.entities DISABLE ROW LEVEL SECURITY", "42501"},
		{"no force row-level security", "ALTER TABLE llmspell.entities NO FORCE ROW LEVEL SECURITY", "42501"},
		{"drop a policy", "DROP POLICY tenant_isolation_select ON llmspell.entities", "42501"},
		{"create a permissive policy", "CREATE POLICY open ON llmspell.entities USING (true)", "42501"},
		{"truncate, which ignores RLS", "TRUNCATE llmspell.entities", "42501"},
		{"create a function", "CREATE FUNCTION llmspell.f() RETURNS int LANGUAGE sql AS 'SELECT 1'", "42501"},
		{"create a function in public", "CREATE FUNCTION public.f() RETURNS int LANGUAGE sql AS 'SELECT 1'", "42501"},
		{"create a table in public", "CREATE TABLE public.t (x int)", "42501"},
		{"create a schema", "CREATE SCHEMA mine", "42501"},
		{"create a temporary table", "CREATE TEMP TABLE entities (x int)", "42501"},
		{"run a DO block", "DO $$ BEGIN PERFORM 1; END $$", "42501"},
		{"set_config", "SELECT set_config('app.current_tenant_id', 'globex', false)", "42501"},
		{"set_config, schema-qualified", "SELECT pg_catalog.set_config('app.current_tenant_id', 'globex', true)", "42501"},
		{"update pg_settings", "UPDATE pg_settings SET setting = 'globex' WHERE name = 'app.current_tenant_id'", "42501"},
		{"query_to_xml", "SELECT query_to_xml('SELECT 1', true, true, '')", "42501"},
		{"cursor_to_xml", "SELECT cursor_to_xml('c', 1, true, true, '')", "42501"},
		{"table_to_xml", "SELECT table_to_xml('llmspell.entities', true, true, '')", "42501"},
		{"database_to_xml", "SELECT database_to_xml(true, true, '')", "42501"},
		{"ts_stat runs a query string", "SELECT * FROM ts_stat('SELECT to_tsvector(name) FROM llmspell.entities')", "42501"},
		{"read other sessions' queries", "SELECT query FROM pg_stat_activity", "42501"},
		{"read other sessions' queries by function", "SELECT * FROM pg_stat_get_activity(NULL)", "42501"},
		{"read a backend's query by id", "SELECT pg_stat_get_backend_activity(1)", "42501"},
		{"list locks", "SELECT * FROM pg_locks", "42501"},
		{"list the backend's prepared statements", "SELECT * FROM pg_prepared_statements", "42501"},
		{"list the backend's cursors", "SELECT * FROM pg_cursors", "42501"},
		{"cancel another backend", "SELECT pg_cancel_backend(1)", "42501"},
		{"terminate another backend", "SELECT pg_terminate_backend(1)", "42501"},
		{"notify through a function", "SELECT pg_notify('channel', 'payload')", "42501"},
		{"create a large object", "SELECT lo_create(0)", "42501"},
		{"read a large object", "SELECT lo_get(1)", "42501"},
		{"set role to the owner", "SET ROLE tenantproxy_owner", "42501"},
		{"set session authorization", "SET SESSION AUTHORIZATION postgres", "42501"},
		{"alter own role's tenant default", "ALTER ROLE tenantproxy_app SET app.current_tenant_id = 'globex'", "42501"},
		{"alter the database's tenant default", "ALTER DATABASE " + db.Name + " SET app.current_tenant_id = 'globex'", "42501"},
		{"alter system", "ALTER SYSTEM SET log_statement = 'none'", "42501"},
		{"copy to a server file", "COPY (SELECT 1) TO '/tmp/out'", "42501"},
		{"copy from a program", "COPY llmspell.entities FROM PROGRAM 'id'", "42501"},
		{"read a server file", "SELECT pg_read_file('/etc/passwd')", "42501"},
		{"create an extension", "CREATE EXTENSION dblink", "42501"},
		{"load a library", "LOAD 'auto_explain'", "42501"},
		{"change the table's owner", "ALTER TABLE llmspell.entities OWNER TO tenantproxy_app", "42501"},
		{"grant itself the owner role", "GRANT tenantproxy_owner TO tenantproxy_app", "42501"},
		{"create a trigger", "CREATE TRIGGER t BEFORE INSERT ON llmspell.entities FOR EACH ROW EXECUTE FUNCTION suppress_redundant_updates_trigger()", "42501"},
		{"create a rule", "CREATE RULE r AS ON INSERT TO llmspell.entities DO INSTEAD NOTHING", "42501"},
		{"create a view", "CREATE VIEW llmspell.v AS SELECT * FROM llmspell.entities", "42501"},
		{"where an update moved a row version", "SELECT currtid2('llmspell.entities', '(0,1)')", "42501"},
		{"whether a session waits on others", "SELECT pg_isolation_test_session_is_blocked(pg_backend_pid(), '{}')", "42501"},
		{"export a snapshot to other sessions", "SELECT pg_export_snapshot()", "42501"},
		{"running transactions", "SELECT pg_current_snapshot()", "42501"},
		{"running transactions, txid", "SELECT txid_current_snapshot()", "42501"},
		{"another transaction's status", "SELECT pg_xact_status(pg_current_xact_id())", "42501"},
		{"another transaction's status, txid", "SELECT txid_status(txid_current())", "42501"},
		{"when a transaction committed", "SELECT pg_xact_commit_timestamp('100'::xid)", "42501"},
		{"the last commit", "SELECT * FROM pg_last_committed_xact()", "42501"},
		{"who locks a row", "SELECT * FROM pg_get_multixact_members('1'::xid)", "42501"},
		{"the checkpoint's oldest transaction", "SELECT * FROM pg_control_checkpoint()", "42501"},
		{"per-table activity by view", "SELECT n_tup_ins FROM pg_stat_user_tables", "42501"},
		{"per-table activity by function", "SELECT pg_stat_get_tuples_inserted('llmspell.entities'::regclass)", "42501"},
		{"per-table reads", "SELECT heap_blks_read FROM pg_statio_user_tables", "42501"},
		{"database activity", "SELECT xact_commit FROM pg_stat_database", "42501"},
		{"write into the WAL for decoders", "SELECT pg_logical_emit_message(true, 'tenant', 'payload')", "42501"},
		{"replication slots", "SELECT * FROM pg_replication_slots", "42501"},
		{"create a replication slot", "SELECT pg_create_logical_replication_slot('s', 'test_decoding')", "42501"},
		{"listening channels", "SELECT pg_listening_channels()", "42501"},
		{"notification queue", "SELECT pg_notification_queue_usage()", "42501"},
	}
	conn := db.TenantConn(t, "acme")
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := conn.Exec(ctx, c.sql)
			wantSQLState(t, err, c.state, c.sql)
			var tenant string
			if err := conn.QueryRow(ctx, "SHOW app.current_tenant_id").Scan(&tenant); err != nil || tenant != "acme" {
				t.Errorf("tenant context after the attempt: %q, %v", tenant, err)
			}
		})
	}
}

// Another session's statement text (with its literals) must not be readable by any path.
func TestAnotherSessionsQueryIsInvisible(t *testing.T) {
	db := pgtest.New(t)
	victim := db.TenantConn(t, "globex")
	done := make(chan error, 1)
	go func() {
		_, err := victim.Exec(ctx, "SELECT pg_sleep(2), 'globex-secret-marker'")
		done <- err
	}()
	time.Sleep(300 * time.Millisecond)

	spy := db.TenantConn(t, "acme")
	for _, q := range []string{
		"SELECT string_agg(query, ' ') FROM pg_stat_activity",
		"SELECT string_agg(pg_stat_get_backend_activity(i), ' ') FROM pg_stat_get_backend_idset() i",
		"SELECT string_agg(query, ' ') FROM pg_stat_get_activity(NULL)",
	} {
		var seen *string
		err := spy.QueryRow(ctx, q).Scan(&seen)
		if err == nil && seen != nil && strings.Contains(*seen, "globex-secret-marker") {
			t.Errorf("%s revealed the other session's query", q)
		}
		wantSQLState(t, err, "42501", q)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// Where another tenant's UPDATE moved its row version must stay hidden: currtid2 maps an old
// tuple location to the new one on any page of a table.
func TestLockdownHidesRowVersionsOfOtherTenants(t *testing.T) {
	db := pgtest.New(t)
	victim := db.TenantConn(t, "globex")
	var location string
	if err := victim.QueryRow(ctx, `INSERT INTO llmspell.entities (tenant_id, entity_type, name)
		VALUES ('globex', 'person', 'before') RETURNING ctid::text`).Scan(&location); err != nil {
		t.Fatal(err)
	}
	exec(t, victim, "UPDATE llmspell.entities SET name = 'after'")

	spy := db.TenantConn(t, "acme")
	for _, q := range []string{
		"SELECT currtid2('llmspell.entities', $1::tid)::text",
		"SELECT pg_catalog.currtid2('llmspell.entities'::text, $1::tid)::text",
	} {
		var moved *string
		err := spy.QueryRow(ctx, q, location).Scan(&moved)
		wantSQLState(t, err, "42501", q)
	}
}

// Whether one session waits for another is the lock graph pg_locks and pg_blocking_pids hide.
func TestLockdownHidesLockWaitsOfOtherTenants(t *testing.T) {
	db := pgtest.New(t)
	holder := db.TenantConn(t, "globex")
	waiter := db.TenantConn(t, "globex")
	exec(t, holder, "INSERT INTO llmspell.entities (tenant_id, entity_type, name) VALUES ('globex', 'person', 'locked')")
	var holderPid, waiterPid int
	if err := holder.QueryRow(ctx, "SELECT pg_backend_pid()").Scan(&holderPid); err != nil {
		t.Fatal(err)
	}
	if err := waiter.QueryRow(ctx, "SELECT pg_backend_pid()").Scan(&waiterPid); err != nil {
		t.Fatal(err)
	}
	exec(t, holder, "BEGIN")
	exec(t, holder, "UPDATE llmspell.entities SET name = 'held'")
	done := make(chan error, 1)
	go func() {
		_, err := waiter.Exec(ctx, "UPDATE llmspell.entities SET name = 'waiting'")
		done <- err
	}()
	admin := pgtest.Connect(t, db.AdminURL)
	waitFor(t, "the waiter to block", func() bool {
		var blocked bool
		err := admin.QueryRow(ctx, "SELECT $1::int = ANY (pg_blocking_pids($2))", holderPid, waiterPid).Scan(&blocked)
		return err == nil && blocked
	})

	spy := db.TenantConn(t, "acme")
	var blocked bool
	err := spy.QueryRow(ctx, "SELECT pg_isolation_test_session_is_blocked($1, $2)", waiterPid, []int{holderPid}).Scan(&blocked)
	wantSQLState(t, err, "42501", "pg_isolation_test_session_is_blocked")

	exec(t, holder, "COMMIT")
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// What the review keeps for clients must stay executable for the app role: job queues, size
// displays, read-your-writes checks, the catalog readers drivers use.
func TestFunctionsClientsNeedStayExecutable(t *testing.T) {
	db := pgtest.New(t)
	conn := db.TenantConn(t, "acme")
	for _, q := range []string{
		"SELECT txid_current()::text",
		"SELECT pg_current_xact_id()::text",
		"SELECT pg_current_wal_lsn()::text",
		"SELECT pg_relation_size('llmspell.entities')::text",
		"SELECT pg_total_relation_size('llmspell.entities')::text",
		"SELECT pg_database_size(current_database())::text",
		"SELECT pg_advisory_xact_lock(1)::text",
		"SELECT pg_try_advisory_xact_lock(2)::text",
		"SELECT current_setting('app.current_tenant_id')",
		"SELECT pg_backend_pid()::text",
		"SELECT pg_stat_get_xact_numscans('llmspell.entities'::regclass)::text",
		"SELECT gen_random_uuid()::text",
		"SELECT version()",
		"SELECT pg_is_in_recovery()::text",
		"SELECT format_type('llmspell.entities'::regclass::oid, NULL)",
		"SELECT pg_get_indexdef('llmspell.entities_pkey'::regclass)",
		"SELECT string_agg(pg_get_expr(adbin, adrelid), ',') FROM pg_attrdef WHERE adrelid = 'llmspell.entities'::regclass",
	} {
		var v *string
		if err := conn.QueryRow(ctx, q).Scan(&v); err != nil {
			t.Errorf("%s: %v", q, err)
		}
	}
}

// waitFor polls cond until it holds, failing after a deadline.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
