package proxy_test

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// Statements an attacker sends, in both protocols, and what each must get.

// ---- statement attacks ----

// outcome is what a statement must get: success (code "") or an error with this SQLSTATE and a
// message containing msg.
type outcome struct{ code, msg string }

var succeeds = outcome{}

type stmtCase struct {
	name string
	sql  string
	args []string // parameters ($1, ...): bound over the extended protocol, inlined by pgx over the simple one
	// txn and sess are the outcome in each pool mode; inTx, when set, replaces both inside a
	// transaction block.
	txn, sess, inTx *outcome
	// rows, when not nil, are what a successful statement returns.
	rows []string
}

func (sc stmtCase) want(mode string, inTx bool) outcome {
	switch {
	case inTx && sc.inTx != nil:
		return *sc.inTx
	case mode == "transaction":
		return *sc.txn
	}
	return *sc.sess
}

func pair(o outcome) (*outcome, *outcome) { o2 := o; return &o, &o2 }

// guarded: the proxy's guard refuses it, 42501, in both modes.
func guarded(name, sql, msg string) stmtCase {
	sc := stmtCase{name: name, sql: sql}
	sc.txn, sc.sess = pair(outcome{"42501", "tenantproxy"})
	sc.txn.msg, sc.sess.msg = msg, msg
	return sc
}

// denied: the database refuses it (the guard lets it through), in both modes.
func denied(name, sql, code, msg string) stmtCase {
	sc := stmtCase{name: name, sql: sql}
	sc.txn, sc.sess = pair(outcome{code, msg})
	return sc
}

// pooled: session state, refused with 0A000 in transaction mode; in session mode it is the
// client's own session, with outcome sess.
func pooled(name, sql string, sess outcome) stmtCase {
	return stmtCase{name: name, sql: sql, txn: &outcome{"0A000", msgPooled}, sess: &sess}
}

// harmless: allowed in both modes, and it must do nothing to anyone else.
func harmless(name, sql string, rows ...string) stmtCase {
	sc := stmtCase{name: name, sql: sql, rows: rows}
	sc.txn, sc.sess = pair(succeeds)
	return sc
}

func (sc stmtCase) with(args ...string) stmtCase { sc.args = args; return sc }

func (sc stmtCase) inTxOutcome(o outcome) stmtCase { sc.inTx = &o; return sc }

const setConfigGlobex = `set_config('app.current_tenant_id', 'globex', false)`

var statementAttacks = []stmtCase{
	// The tenant setting, spelled every way the server accepts.
	guarded("SET", `SET app.current_tenant_id = 'globex'`, msgContext),
	guarded("SET own tenant", `SET app.current_tenant_id = 'acme'`, msgContext),
	guarded("SET SESSION", `SET SESSION app.current_tenant_id TO 'globex'`, msgContext),
	guarded("SET LOCAL", `SET LOCAL app.current_tenant_id = 'globex'`, msgContext),
	guarded("SET quoted mixed case", `SET "App"."Current_Tenant_Id" = 'globex'`, msgContext),
	guarded("SET spaced dot", `SET app . current_tenant_id = 'globex'`, msgContext),
	guarded("SET one quoted identifier", `SET "app.current_tenant_id" = 'globex'`, msgContext),
	guarded("SET unicode escapes", `SET U&"\0061pp".U&"\0063urrent_tenant_id" = 'globex'`, msgContext),
	guarded("SET unicode UESCAPE", `SET U&"!0061pp.current_tenant_id" UESCAPE '!' = 'globex'`, msgContext),
	guarded("SET odd case unquoted value", `SeT APP.CURRENT_TENANT_ID tO globex`, msgContext),
	guarded("SET TO DEFAULT", `SET app.current_tenant_id TO DEFAULT`, msgContext),
	guarded("SET FROM CURRENT", `SET app.current_tenant_id FROM CURRENT`, msgContext),
	guarded("RESET", `RESET app.current_tenant_id`, msgContext),
	guarded("RESET quoted upper case", `RESET "APP"."CURRENT_TENANT_ID"`, msgContext),
	guarded("SET elsewhere in the namespace", `SET app.tenant = 'globex'`, msgContext),
	guarded("SET between comments", "/* a */ SET /* b */ app.current_tenant_id /* c */ = 'globex' -- d", msgContext),
	guarded("SET after newlines and tabs", "SELECT 1\n;\n\tSET\tapp.current_tenant_id\n=\n'globex'", msgContext),
	guarded("SET last of several", `SELECT 1; SET app.current_tenant_id = 'globex'`, msgContext),
	guarded("SET between statements without spaces", `SELECT 1;SET app.current_tenant_id='globex';SELECT 2`, msgContext),
	guarded("SET LOCAL in an explicit block", `BEGIN; SET LOCAL app.current_tenant_id = 'globex'; SELECT DISTINCT tenant_id FROM llmspell.entities; COMMIT`, msgContext),
	guarded("SET after COMMIT", `COMMIT; SET app.current_tenant_id = 'globex'`, msgContext),

	// set_config, plain and hidden.
	guarded("set_config", `SELECT `+setConfigGlobex, msgContext),
	guarded("set_config local", `SELECT set_config('app.current_tenant_id', 'globex', true)`, msgContext),
	guarded("set_config schema-qualified", `SELECT pg_catalog.`+setConfigGlobex, msgContext),
	guarded("set_config quoted", `SELECT "pg_catalog"."set_config"('app.current_tenant_id', 'globex', false)`, msgContext),
	guarded("set_config unicode-escaped name", `SELECT U&"\0073et_config"('app.current_tenant_id', 'globex', false)`, msgContext),
	guarded("set_config upper-case setting", `SELECT set_config('APP.CURRENT_TENANT_ID', 'globex', false)`, msgContext),
	guarded("set_config text casts", `SELECT set_config('app.current_tenant_id'::text, 'globex'::varchar, false)`, msgContext),
	denied("set_config concatenated name", `SELECT set_config('app.' || 'current_tenant_id', 'globex', false)`, "42501", msgSetConfigWrapper),
	guarded("set_config escape-string name", `SELECT set_config(E'\x61pp.current_tenant_id', 'globex', false)`, msgContext),
	denied("set_config computed name", `SELECT set_config(lower('APP.CURRENT_TENANT_ID'), 'globex', false)`, "42501", msgSetConfigWrapper),
	denied("set_config name from a column", `SELECT set_config(n, 'globex', false) FROM (VALUES ('app.current_tenant_id')) v(n)`, "42501", msgSetConfigWrapper),
	denied("set_config name from an array", `SELECT set_config(('{app.current_tenant_id}'::text[])[1], 'globex', false)`, "42501", msgSetConfigWrapper),
	guarded("set_config parameters", `SELECT set_config($1, $2, false)`, "set_config").with("app.current_tenant_id", "globex"),
	guarded("set_config in a CTE", `WITH s AS (SELECT `+setConfigGlobex+` AS v) SELECT v FROM s`, msgContext),
	guarded("set_config in a subquery", `SELECT (SELECT `+setConfigGlobex+`)`, msgContext),
	guarded("set_config in VALUES", `VALUES (`+setConfigGlobex+`)`, msgContext),
	guarded("set_config in WHERE", `SELECT count(*) FROM llmspell.entities WHERE `+setConfigGlobex+` IS NOT NULL`, msgContext),
	guarded("set_config in LATERAL", `SELECT e.name FROM llmspell.entities e, LATERAL `+setConfigGlobex+` s`, msgContext),
	guarded("set_config in EXPLAIN ANALYZE", `EXPLAIN ANALYZE SELECT `+setConfigGlobex, msgContext),
	guarded("set_config in COPY TO STDOUT", `COPY (SELECT `+setConfigGlobex+`) TO STDOUT`, msgContext),
	guarded("set_config in PREPARE", `PREPARE atk AS SELECT `+setConfigGlobex, msgContext),
	guarded("set_config in DECLARE CURSOR", `DECLARE atk CURSOR FOR SELECT `+setConfigGlobex, msgContext),
	guarded("set_config last of several", `SELECT 1; /* x */ SELECT `+setConfigGlobex+` -- y`, msgContext),
	guarded("set_config in a function body", `CREATE FUNCTION atk() RETURNS text LANGUAGE sql AS $$ SELECT `+setConfigGlobex+` $$`, msgCode),
	guarded("SET clause of ALTER FUNCTION", `ALTER FUNCTION pg_catalog.now() SET app.current_tenant_id = 'globex'`, msgContext),
	guarded("UPDATE pg_settings", `UPDATE pg_settings SET setting = 'globex' WHERE name = 'app.current_tenant_id'`, msgPgSettings),
	guarded("UPDATE pg_settings qualified and quoted", `UPDATE "pg_catalog"."pg_settings" AS s SET setting = 'globex' WHERE s.name = 'app.current_tenant_id'`, msgPgSettings),
	guarded("UPDATE pg_settings in a CTE", `WITH u AS (UPDATE pg_settings SET setting = 'globex' WHERE name = 'app.current_tenant_id' RETURNING name) SELECT * FROM u`, msgPgSettings),
	guarded("ALTER ROLE SET", `ALTER ROLE CURRENT_USER SET app.current_tenant_id = 'globex'`, msgPersistent),
	guarded("ALTER ROLE ALL SET", `ALTER ROLE ALL SET app.current_tenant_id = 'globex'`, msgPersistent),
	guarded("ALTER DATABASE SET", `ALTER DATABASE app SET app.current_tenant_id = 'globex'`, msgPersistent),
	guarded("ALTER SYSTEM SET", `ALTER SYSTEM SET app.current_tenant_id = 'globex'`, msgPersistent),
	harmless("SET of a look-alike name", `SET аpp.current_tenant_id = 'globex'`), // Cyrillic а: another setting, carried

	// Identity.
	guarded("SET ROLE", `SET ROLE tenantproxy_owner`, msgRole),
	guarded("SET ROLE NONE", `SET ROLE NONE`, msgRole),
	guarded("RESET ROLE", `RESET ROLE`, msgRole),
	guarded("SET LOCAL ROLE", `SET LOCAL ROLE postgres`, msgRole),
	guarded("SET SESSION AUTHORIZATION", `SET SESSION AUTHORIZATION postgres`, msgIdentity),
	guarded("RESET SESSION AUTHORIZATION", `RESET SESSION AUTHORIZATION`, msgIdentity),
	guarded("set_config role", `SELECT set_config('role', 'tenantproxy_owner', false)`, msgIdentity),
	guarded("ALTER ROLE PASSWORD", `ALTER ROLE CURRENT_USER PASSWORD 'pwned'`, msgRoleDDL),
	guarded("ALTER USER PASSWORD", `ALTER USER tenantproxy_app WITH ENCRYPTED PASSWORD 'pwned'`, msgRoleDDL),
	guarded("ALTER ROLE RENAME", `ALTER ROLE tenantproxy_app RENAME TO atk`, msgRoleDDL),
	guarded("ALTER ROLE SET search_path", `ALTER ROLE CURRENT_USER SET search_path = pg_temp`, msgPersistent),
	guarded("CREATE ROLE", `CREATE ROLE atk LOGIN SUPERUSER PASSWORD 'x'`, msgRoleDDL),
	guarded("GRANT role", `GRANT tenantproxy_owner TO CURRENT_USER`, msgRoleDDL),
	denied("SET session_replication_role", `SET session_replication_role = replica`, "42501", "permission denied to set parameter"),
	denied("SET LOCAL session_replication_role", `SET LOCAL session_replication_role = replica`, "42501", "permission denied to set parameter"),

	// Dynamic SQL and code.
	guarded("DO", `DO $$ BEGIN PERFORM `+setConfigGlobex+`; END $$`, "DO is refused"),
	guarded("DO LANGUAGE sql", `DO LANGUAGE sql $$ SELECT 1 $$`, "DO is refused"),
	guarded("query_to_xml", `SELECT query_to_xml('SELECT `+strings.ReplaceAll(setConfigGlobex, "'", "''")+`', true, true, '')`, msgDynamic),
	guarded("query_to_xml reading rows", `SELECT pg_catalog.query_to_xml('SELECT * FROM llmspell.entities', true, true, '')`, msgDynamic),
	guarded("table_to_xml", `SELECT table_to_xml('llmspell.entities', true, true, '')`, msgDynamic),
	guarded("cursor_to_xml", `SELECT cursor_to_xml('atk', 1, true, true, '')`, msgDynamic),
	guarded("database_to_xml", `SELECT database_to_xml(true, true, '')`, msgDynamic),
	guarded("ts_stat", `SELECT * FROM ts_stat('SELECT to_tsvector(`+strings.ReplaceAll(setConfigGlobex, "'", "''")+`)')`, msgDynamic),
	guarded("ts_rewrite with a query", `SELECT ts_rewrite('a'::tsquery, 'SELECT ''a''::tsquery, ''b''::tsquery')`, msgDynamic),
	guarded("dblink", `SELECT dblink('dbname=postgres', 'SELECT 1')`, msgDynamic),
	guarded("CREATE FUNCTION plpgsql", `CREATE FUNCTION atk() RETURNS void LANGUAGE plpgsql AS $$ BEGIN EXECUTE 'SELECT 1'; END $$`, msgCode),
	guarded("CREATE PROCEDURE", `CREATE PROCEDURE atk() LANGUAGE sql AS $$ SELECT 1 $$`, msgCode),
	guarded("CREATE TRIGGER", `CREATE TRIGGER atk BEFORE INSERT ON llmspell.entities FOR EACH ROW EXECUTE FUNCTION suppress_redundant_updates_trigger()`, msgCode),
	guarded("CREATE RULE", `CREATE RULE atk AS ON INSERT TO llmspell.entities DO ALSO NOTIFY atk`, msgCode),
	guarded("CREATE OPERATOR", `CREATE OPERATOR === (LEFTARG = text, RIGHTARG = text, FUNCTION = texteq)`, msgCode),
	guarded("CREATE EXTENSION", `CREATE EXTENSION dblink`, msgCode),
	guarded("LOAD", `LOAD 'plpgsql'`, "LOAD is refused"),
	guarded("COPY TO PROGRAM", `COPY llmspell.entities TO PROGRAM 'id'`, "COPY to or from a server file or program is refused"),
	guarded("COPY FROM a server file", `COPY llmspell.entities FROM '/etc/passwd'`, "COPY to or from a server file or program is refused"),
	guarded("pg_read_file", `SELECT pg_read_file('postgresql.conf')`, "it reads the server's files"),
	guarded("pg_ls_dir", `SELECT pg_ls_dir('.')`, "it reads the server's files"),
	guarded("pg_cancel_backend", `SELECT pg_cancel_backend(pg_backend_pid())`, msgOtherSessions),
	guarded("pg_terminate_backend", `SELECT pg_terminate_backend(pid) FROM pg_stat_activity`, msgOtherSessions),

	// Session state a pooled backend would carry to the next client, and temporary objects.
	// A WITH HOLD cursor keeps its backend with the client (pin.go); the arena's pool of one
	// has none to keep.
	{name: "DECLARE WITH HOLD", sql: `DECLARE atk_hold CURSOR WITH HOLD FOR SELECT name FROM llmspell.entities`,
		txn: &outcome{"53400", "kept for WITH HOLD cursors"}, sess: &outcome{}},
	pooled("CREATE TEMP TABLE shadowing entities", `CREATE TEMP TABLE entities (tenant_id text, name text)`, outcome{"42501", msgNoTemp}),
	pooled("CREATE TEMPORARY VIEW", `CREATE TEMPORARY VIEW entities AS SELECT 'globex'::text AS tenant_id`, outcome{"42501", msgNoTemp}),
	pooled("CREATE TABLE in pg_temp", `CREATE TABLE pg_temp.entities (tenant_id text)`, outcome{"42501", msgNoTemp}),
	pooled("SELECT INTO TEMP", `SELECT * INTO TEMP atk FROM llmspell.entities`, outcome{"42501", msgNoTemp}),
	pooled("SET search_path with pg_temp first", `SET search_path = pg_temp, llmspell`, succeeds),
	pooled("SET LOCAL search_path with pg_temp", `SET LOCAL search_path = pg_temp, llmspell`, succeeds),
	harmless("SET search_path", `SET search_path TO llmspell`),
	pooled("set_config search_path with pg_temp", `SELECT set_config('search_path', 'pg_temp', false)`, succeeds),
	pooled("PREPARE", `PREPARE atk AS SELECT 1`, succeeds),
	pooled("EXECUTE an internal name", `EXECUTE tenantproxy_1`, outcome{"26000", "does not exist"}),
	{name: "EXPLAIN EXECUTE an internal name", sql: `EXPLAIN EXECUTE tenantproxy_2`,
		txn: &outcome{"0A000", msgPooled}, sess: &outcome{"42501", msgExplain}},
	denied("DEALLOCATE an internal name", `DEALLOCATE tenantproxy_1`, "26000", "does not exist"),
	pooled("session advisory lock", `SELECT pg_advisory_lock(42)`, succeeds),
	pooled("lastval", `SELECT lastval()`, outcome{"55000", "lastval is not yet defined"}),
	harmless("SET statement_timeout", `SET statement_timeout = '10min'`),
	harmless("SET SESSION CHARACTERISTICS", `SET SESSION CHARACTERISTICS AS TRANSACTION ISOLATION LEVEL REPEATABLE READ`),
	harmless("set_config of a setting, session-level", `SELECT set_config('work_mem', '8MB', false)`, "8MB"),
	denied("set_config of the tenant through the wrapper", `SELECT tenantproxy.set_config(lower('APP.CURRENT_TENANT_ID'), 'globex', false)`, "42501", msgSetConfigWrapper),
	guarded("set_config of the tenant through the wrapper, constant", `SELECT tenantproxy.set_config('app.current_tenant_id', 'globex', false)`, msgContext),
	denied("set_config of role through the wrapper", `SELECT set_config(lower('ROLE'), 'tenantproxy_owner', false)`, "42501", msgSetConfigWrapper),
	denied("set_config of standard_conforming_strings, computed", `SELECT set_config(lower('STANDARD_CONFORMING_STRINGS'), 'off', false)`, "42501", msgSetConfigWrapper),
	// Notification channels: each tenant's own (TestNotificationChannelsPerTenant shows who hears).
	{name: "LISTEN", sql: `LISTEN tenant_events`, txn: &outcome{"0A000", "LISTEN is not supported in transaction pooling"}, sess: &succeeds},
	{name: "LISTEN quoted", sql: `LISTEN "App"`, txn: &outcome{"0A000", "LISTEN is not supported in transaction pooling"}, sess: &succeeds},
	harmless("NOTIFY", `NOTIFY tenant_events, 'acme says hi'`),
	harmless("pg_notify", `SELECT pg_notify('tenant_events', 'acme says hi')`, ""),
	denied("pg_notify of a name too long", `SELECT pg_notify('`+strings.Repeat("n", 46)+`', 'x')`, "42622", "too long"),
	harmless("pg_catalog.pg_notify, rewritten too", `SELECT pg_catalog.pg_notify('tenant_events', 'x')`, ""),
	harmless("UNLISTEN", `UNLISTEN *`),
	guarded("lo_creat", `SELECT lo_creat(-1)`, msgLargeObj),
	guarded("lo_import", `SELECT lo_import('/etc/passwd')`, msgLargeObj),
	guarded("lo_from_bytea", `SELECT lo_from_bytea(0, 'x')`, msgLargeObj),
	guarded("lo_get", `SELECT lo_get(1)`, msgLargeObj),
	guarded("loread", `SELECT loread(lo_open(1, 262144), 10)`, msgLargeObj),
	denied("pg_largeobject", `SELECT * FROM pg_largeobject`, "42501", "permission denied"),

	// Planner estimates and execution counts over every tenant's rows.
	guarded("EXPLAIN row estimates", `EXPLAIN SELECT * FROM llmspell.entities WHERE entity_type = 'globex-secret-type'`, msgExplain),
	guarded("EXPLAIN range estimates", `EXPLAIN SELECT * FROM llmspell.entities WHERE name >= 'globex-s' AND name < 'globex-s~'`, msgExplain),
	guarded("EXPLAIN ANALYZE counts", `EXPLAIN (ANALYZE, COSTS OFF) SELECT * FROM llmspell.entities`, msgExplain),
	guarded("EXPLAIN behind another statement", `SELECT 1; EXPLAIN (FORMAT JSON) SELECT * FROM llmspell.entities`, msgExplain),
	guarded("EXPLAIN lower case in a comment-led text", `/* plan */ explain select * from llmspell.entities`, msgExplain),

	// Other sessions' work.
	denied("pg_stat_activity", `SELECT query FROM pg_stat_activity`, "42501", "permission denied"),
	guarded("pg_stat_get_activity", `SELECT * FROM pg_stat_get_activity(NULL)`, msgOtherSessions),
	guarded("pg_stat_get_backend_activity", `SELECT pg_stat_get_backend_activity(s) FROM pg_stat_get_backend_idset() s`, msgOtherSessions),
	denied("pg_locks", `SELECT * FROM pg_locks`, "42501", "permission denied"),
	guarded("pg_lock_status", `SELECT * FROM pg_lock_status()`, msgOtherSessions),
	denied("pg_prepared_statements", `SELECT * FROM pg_prepared_statements`, "42501", "permission denied"),
	guarded("pg_prepared_statement", `SELECT * FROM pg_prepared_statement()`, msgOtherSessions),
	denied("pg_cursors", `SELECT * FROM pg_cursors`, "42501", "permission denied"),
	guarded("pg_blocking_pids", `SELECT pg_blocking_pids(pg_backend_pid())`, msgOtherSessions),
	guarded("pg_isolation_test_session_is_blocked", `SELECT pg_isolation_test_session_is_blocked(pg_backend_pid(), ARRAY[1])`, msgOtherSessions),
	guarded("currtid2", `SELECT currtid2('llmspell.entities', '(0,1)'::tid)`, msgOtherSessions),
	guarded("currtid2 quoted and qualified", `SELECT "pg_catalog"."currtid2"('llmspell.entities', '(0,1)')`, msgOtherSessions),
	guarded("pg_stat_get_tuples_inserted", `SELECT pg_stat_get_tuples_inserted('llmspell.entities'::regclass)`, "its counters show when and how much other tenants read and write"),
	guarded("pg_xact_status", `SELECT pg_xact_status(pg_current_xact_id())`, "it reveals other sessions' transactions"),
	denied("pg_stat_user_tables", `SELECT n_tup_ins FROM pg_stat_user_tables`, "42501", "permission denied"),

	// How the server reads text: refused, since the guard could no longer read it the same way.
	guarded("client_encoding SJIS", `SET client_encoding = 'SJIS'`, msgLexer),
	guarded("client_encoding win932 alias", `SET client_encoding TO 'win932'`, msgLexer),
	guarded("client_encoding mskanji alias", `SET client_encoding = 'mskanji'`, msgLexer),
	guarded("SET NAMES GBK", `SET NAMES 'GBK'`, msgLexer),
	guarded("SET LOCAL client_encoding BIG5", `SET LOCAL client_encoding = 'BIG5'`, msgLexer),
	guarded("client_encoding odd GB18030 spelling", `SET client_encoding = 'Gb-18030'`, msgLexer),
	guarded("client_encoding UHC", `SET client_encoding = 'UHC'`, msgLexer),
	guarded("client_encoding JOHAB", `SET client_encoding = 'JOHAB'`, msgLexer),
	guarded("client_encoding SHIFT_JIS_2004", `SET client_encoding = 'SHIFT_JIS_2004'`, msgLexer),
	guarded("set_config client_encoding", `SELECT set_config('client_encoding', 'SJIS', false)`, msgLexer),
	guarded("standard_conforming_strings off", `SET standard_conforming_strings = off`, msgLexer),
	guarded("standard_conforming_strings 'false'", `SET standard_conforming_strings TO 'false'`, msgLexer),
	guarded("standard_conforming_strings 0", `SET standard_conforming_strings = 0`, msgLexer),
	guarded("SET LOCAL standard_conforming_strings off", `SET LOCAL standard_conforming_strings = off`, msgLexer),
	guarded("set_config standard_conforming_strings", `SELECT set_config('standard_conforming_strings', 'off', true)`, msgLexer),
	harmless("standard_conforming_strings on", `SET standard_conforming_strings = on`),

	// The rows themselves: row-level security holds, and refuses rather than leaks.
	denied("INSERT for another tenant", `INSERT INTO llmspell.entities (tenant_id, entity_type, name) VALUES ('globex', 'x', 'planted')`, "42501", msgRLS),
	denied("UPDATE moving rows to another tenant", `UPDATE llmspell.entities SET tenant_id = 'globex'`, "42501", msgRLS),
	harmless("UPDATE another tenant's rows", `UPDATE llmspell.entities SET name = 'pwned' WHERE tenant_id = 'globex'`),
	harmless("DELETE another tenant's rows", `DELETE FROM llmspell.entities WHERE tenant_id = 'globex'`),
	harmless("SELECT FOR UPDATE another tenant's rows", `SELECT name FROM llmspell.entities WHERE tenant_id = 'globex' FOR UPDATE`),
	harmless("count another tenant's rows", `SELECT count(*) FROM llmspell.entities WHERE tenant_id = 'globex'`, "0"),
	harmless("read every table", `SELECT e.name, r.properties::text, v.metadata::text FROM llmspell.entities e
		FULL JOIN llmspell.relationships r ON r.source_id = e.id FULL JOIN llmspell.vector_embeddings_384 v ON v.tenant_id = e.tenant_id`),
	harmless("leaky division in WHERE", `SELECT (count(*) > 0)::text FROM llmspell.entities WHERE 1 / (CASE WHEN tenant_id = 'globex' THEN 0 ELSE 1 END) = 1`, "true"),
	denied("leaky cast error in WHERE", `SELECT count(*) FROM llmspell.entities WHERE name::int > 0`, "22P02", "acme-"),
	harmless("statistics of tenant tables", `SELECT count(*) FROM pg_stats WHERE schemaname = 'llmspell'`, "0"),
	denied("pg_statistic", `SELECT count(*) FROM pg_statistic`, "42501", "permission denied"),
	harmless("own tenant setting", `SELECT current_setting('app.current_tenant_id')`, "acme"),
	harmless("pg_settings showing another tenant", `SELECT count(*) FROM pg_settings WHERE setting = 'globex' OR name LIKE 'app.%'`, "0"),
	denied("INSERT a vector for another tenant", `INSERT INTO llmspell.vector_embeddings_384 (tenant_id, embedding) VALUES ('globex', array_fill(0.1::real, ARRAY[384])::vector)`, "42501", msgRLS),
	denied("INSERT a relationship for another tenant", `INSERT INTO llmspell.relationships (tenant_id, source_id, target_id, relationship_type)
		VALUES ('globex', gen_random_uuid(), gen_random_uuid(), 'x')`, "42501", msgRLS),
	denied("TRUNCATE", `TRUNCATE llmspell.entities`, "42501", "permission denied"),
	denied("TRUNCATE CASCADE", `TRUNCATE llmspell.relationships, llmspell.entities CASCADE`, "42501", "permission denied"),
	denied("DISABLE ROW LEVEL SECURITY", `ALTER TABLE llmspell.entities DISABLE ROW LEVEL SECURITY`, "42501", "must be owner"),
	denied("NO FORCE ROW LEVEL SECURITY", `ALTER TABLE llmspell.entities NO FORCE ROW LEVEL SECURITY`, "42501", "must be owner"),
	denied("DROP POLICY", `DROP POLICY tenant_isolation_select ON llmspell.entities`, "42501", "must be owner"),
	denied("CREATE POLICY", `CREATE POLICY atk ON llmspell.entities FOR SELECT USING (true)`, "42501", "must be owner"),
	denied("DROP TABLE", `DROP TABLE llmspell.entities`, "42501", "must be owner"),
	denied("CREATE TABLE in the schema", `CREATE TABLE llmspell.atk (x int)`, "42501", "permission denied for schema"),
	denied("CREATE INDEX", `CREATE INDEX atk ON llmspell.entities (name)`, "42501", "must be owner"),
	denied("CREATE SCHEMA", `CREATE SCHEMA atk`, "42501", "permission denied for database"),
	denied("CREATE DATABASE", `CREATE DATABASE atk`, "42501", "permission denied to create database").inTxOutcome(outcome{"25001", "cannot run inside a transaction block"}),
	denied("COMMENT ON TABLE", `COMMENT ON TABLE llmspell.entities IS 'pwned'`, "42501", "must be owner"),
	harmless("GRANT on a table it does not own", `GRANT SELECT ON llmspell.entities TO PUBLIC`),
	harmless("REVOKE its own privileges", `REVOKE SELECT ON llmspell.entities FROM tenantproxy_app`),
}

// protocol is one way to send a statement.
type protocol struct {
	name string
	inTx bool // inside BEGIN ... ROLLBACK
	exec func(conn *pgx.Conn, sql string, args []string) ([]string, error)
}

func anyArgs(args []string) []any {
	out := make([]any, len(args))
	for i, a := range args {
		out[i] = a
	}
	return out
}

func execSimple(conn *pgx.Conn, sql string, args []string) ([]string, error) {
	if len(args) > 0 {
		return pgxRows(conn, sql, append([]any{pgx.QueryExecModeSimpleProtocol}, anyArgs(args)...)...)
	}
	return simpleRows(conn.PgConn(), sql)
}

func execExtended(conn *pgx.Conn, sql string, args []string) ([]string, error) {
	return pgxRows(conn, sql, anyArgs(args)...)
}

func execUnnamed(conn *pgx.Conn, sql string, args []string) ([]string, error) {
	return unnamedRows(conn.PgConn(), sql, args...)
}

var protocols = []protocol{
	{"simple", false, execSimple},
	{"extended", false, execExtended}, // pgx's cached named statements
	{"unnamed", false, execUnnamed},   // Parse/Bind/Describe/Execute/Sync of the unnamed statement
	{"simple in transaction", true, execSimple},
	{"extended in transaction", true, execExtended},
}

// checkOutcome fails unless err (and rows) are what w says.
func checkOutcome(t testing.TB, w outcome, rows []string, err error, wantRows []string) {
	t.Helper()
	if w.code == "" {
		if err != nil {
			t.Errorf("want success, got %s", errorText(err))
		} else if wantRows != nil && !slices.Equal(rows, wantRows) {
			t.Errorf("rows %q, want %q", rows, wantRows)
		}
		return
	}
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) {
		t.Errorf("want SQLSTATE %s (%q), got %v (rows %q)", w.code, w.msg, err, rows)
		return
	}
	if pgErr.Code != w.code || !strings.Contains(pgErr.Message, w.msg) {
		t.Errorf("want SQLSTATE %s with %q, got %s", w.code, w.msg, errorText(err))
	}
}

func (a *arena) runStatement(t *testing.T, sc stmtCase, proto protocol) {
	victim := join(t, a.p, "bob", "globex")
	attacker := join(t, a.p, "alice", "acme")
	conn := attacker.conn
	if proto.inTx {
		if _, err := simpleRows(conn.PgConn(), "BEGIN"); err != nil {
			t.Fatal(err)
		}
	}
	rows, err := proto.exec(conn, sc.sql, sc.args)
	checkOutcome(t, sc.want(a.mode, proto.inTx), rows, err, sc.rows)
	a.noLeak(t, "the attack", rows, err)
	if proto.inTx {
		if err != nil {
			// A refusal fails the transaction, as an error does.
			for range 2 { // until ROLLBACK
				if _, err2 := proto.exec(conn, "SELECT 1", nil); codeOf(err2) != "25P02" {
					t.Errorf("after the failure, inside the transaction: want 25P02, got %v", err2)
				}
			}
		} else {
			// Inside the transaction the context is still the attacker's.
			if got, err := simpleRows(conn.PgConn(), "SELECT current_setting('app.current_tenant_id', true)"); err != nil || !slices.Equal(got, []string{"acme"}) {
				t.Errorf("inside the transaction after the attack the tenant is %q, %v", got, err)
			}
			if got, err := simpleRows(conn.PgConn(), visibleSQL); err != nil || !slices.Equal(got, []string{"acme"}) {
				t.Errorf("inside the transaction after the attack the attacker sees %q, %v", got, err)
			}
		}
		if _, err := simpleRows(conn.PgConn(), "ROLLBACK"); err != nil {
			t.Fatalf("ROLLBACK: %v", err)
		}
	}
	a.aftermath(t, a.p, attacker, victim)
}
