package guard_test

import (
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/tenantproxy/tenantproxy/guard"
	"github.com/tenantproxy/tenantproxy/internal/guc"
	"github.com/tenantproxy/tenantproxy/lockdown"
)

func newGuard(mode guard.PoolMode) *guard.Guard {
	return guard.New(guard.Config{
		ReservedPrefixes: []string{"app."},
		Mode:             mode,
	})
}

var modes = []struct {
	name string
	mode guard.PoolMode
}{{"session", guard.SessionMode}, {"transaction", guard.TransactionMode}}

// allowedStatements are allowed in both modes unless sessionOnly; resets and drops are the
// effects the proxy must act on.
var allowedStatements = []struct {
	sql         string
	sessionOnly bool
	resets      bool
	drops       bool
}{
	// ordinary OLTP
	{sql: `SELECT abalance FROM pgbench_accounts WHERE aid = 42;`},
	{sql: `UPDATE pgbench_accounts SET abalance = abalance + 5 WHERE aid = 42;`},
	{sql: `INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) VALUES (1, 2, 42, 5, CURRENT_TIMESTAMP);`},
	{sql: `DELETE FROM orders WHERE id = 7`},
	{sql: `MERGE INTO stock t USING delivery s ON t.id = s.id WHEN MATCHED THEN UPDATE SET qty = t.qty + s.qty WHEN NOT MATCHED THEN INSERT VALUES (s.id, s.qty)`},
	{sql: `INSERT INTO stock VALUES (1, 2) ON CONFLICT (id) DO UPDATE SET qty = excluded.qty`},
	{sql: `INSERT INTO stock VALUES (1, 2) ON CONFLICT DO NOTHING`},
	{sql: `INSERT INTO orders (item) VALUES ('x') RETURNING id`},
	{sql: `SELECT * FROM accounts WHERE id = 1 FOR UPDATE`},
	{sql: `WITH recent AS (SELECT * FROM orders WHERE created > now() - interval '1 day') SELECT count(*) FROM recent`},
	{sql: `SELECT offset_col FROM dataset`},
	{sql: `SELECT * FROM sessions WHERE session_id = $1`},
	{sql: `SELECT role FROM users WHERE id = 1`},
	{sql: `SELECT reset_count, copy_count FROM stats_table`},
	{sql: `SELECT * FROM temperature_readings WHERE temp > 20`},
	{sql: `SELECT xmlelement(name item, 'x')`},
	{sql: `SELECT U&"d\0061ta" FROM t`},
	{sql: `SELECT nextval('orders_id_seq')`},
	{sql: `SELECT pg_advisory_xact_lock(42)`},
	{sql: `SELECT pg_try_advisory_xact_lock(42)`},
	{sql: `SELECT * FROM pg_settings WHERE name = 'work_mem'`},
	// the tenant context may be read
	{sql: `SHOW app.current_tenant_id`},
	{sql: `SELECT current_setting('app.current_tenant_id')`},
	{sql: `SELECT current_setting('app.current_tenant_id', true)`},
	// reserved names in strings and comments hide nothing
	{sql: `SELECT 'SET app.current_tenant_id = 1' AS just_text`},
	{sql: `SELECT 1 -- SET app.current_tenant_id = 'x'`},
	{sql: `SELECT 1 /* SET ROLE admin; LISTEN x */`},
	{sql: `/* RESET ALL */ SELECT 1`},
	{sql: `SELECT $$ DO $x$ BEGIN END $x$ $$`},
	// transactions and settings local to one
	{sql: `BEGIN`},
	{sql: `BEGIN ISOLATION LEVEL SERIALIZABLE`},
	{sql: `COMMIT`},
	{sql: `ROLLBACK`},
	{sql: `SAVEPOINT s1`},
	{sql: `RELEASE SAVEPOINT s1`},
	{sql: `SET TRANSACTION ISOLATION LEVEL REPEATABLE READ`},
	{sql: `SET TRANSACTION READ ONLY`},
	{sql: `SET CONSTRAINTS ALL DEFERRED`},
	{sql: `SET LOCAL statement_timeout = '5s'`},
	{sql: `set local Statement_Timeout to 5000`},
	{sql: `SET LOCAL search_path = public`},
	{sql: `SELECT set_config('statement_timeout', '5s', true)`},
	{sql: `SELECT pg_catalog.set_config('work_mem', '64MB'::text, true)`},
	{sql: `SELECT set_config('search_path', 'public', true)`},
	{sql: `BEGIN; SET LOCAL work_mem = '64MB'; SELECT 1; COMMIT`},
	// tracked settings may be set at session level in both modes
	{sql: `SET timezone = 'UTC'`},
	{sql: `SET TIME ZONE 'UTC'`},
	{sql: `SET NAMES 'UTF8'`},
	{sql: `SET client_encoding = 'LATIN1'`},
	{sql: `SET client_encoding TO DEFAULT`},
	{sql: `SET application_name = 'billing'`},
	{sql: `SET standard_conforming_strings = on`},
	{sql: `SET DateStyle = 'ISO, MDY'`},
	{sql: `SET intervalstyle = postgres`},
	{sql: `SET default_transaction_read_only = off`},
	{sql: `SELECT set_config('application_name', 'x', false)`},
	{sql: `RESET search_path`},
	{sql: `RESET statement_timeout`},
	// DDL the role may run, as far as the guard goes
	{sql: `CREATE TABLE notes (id int PRIMARY KEY, body text)`},
	{sql: `CREATE TABLE pg_temp_like (id int)`},
	{sql: `ALTER TABLE notes ADD COLUMN created_at timestamptz DEFAULT now()`},
	{sql: `CREATE INDEX ON notes (body)`},
	{sql: `CREATE VIEW note_ids AS SELECT id FROM notes`},
	{sql: `DROP TABLE notes`},
	{sql: `GRANT SELECT ON notes TO reporting`},
	{sql: `ALTER FUNCTION f() SET search_path = public`},
	{sql: `ALTER FUNCTION f() RESET ALL`},
	{sql: `VACUUM ANALYZE accounts`},
	{sql: `EXPLAIN ANALYZE SELECT * FROM accounts WHERE id = 1`},
	{sql: `EXPLAIN (ANALYZE, BUFFERS) UPDATE accounts SET balance = 0 WHERE id = 1`},
	// cursors without HOLD end with the transaction
	{sql: `DECLARE c CURSOR FOR SELECT * FROM accounts`},
	{sql: `DECLARE c CURSOR WITHOUT HOLD FOR SELECT 1`},
	{sql: `FETCH 10 FROM c`},
	{sql: `CLOSE c`},
	// COPY through the client
	{sql: `COPY accounts TO STDOUT`},
	{sql: `COPY accounts FROM STDIN WITH (FORMAT csv)`},
	{sql: `COPY (SELECT id FROM accounts) TO STDOUT`},
	{sql: `UNLISTEN *`},
	{sql: `UNLISTEN chan`},
	{sql: `LISTEN x`, sessionOnly: true},
	{sql: `SELECT 'a'; SELECT 'b'; LISTEN x`, sessionOnly: true},
	{sql: `NOTIFY x, 'hello'`},
	{sql: `SELECT pg_notify('ch', 'x')`},
	// effects
	{sql: `RESET ALL`, resets: true},
	{sql: `SELECT 1; RESET ALL`, resets: true},
	{sql: `DISCARD ALL`, resets: true, drops: true},
	{sql: `DEALLOCATE ALL`, drops: true},
	{sql: `DEALLOCATE PREPARE ALL`, drops: true},
	{sql: `DISCARD PLANS`},
	{sql: `DISCARD TEMP`},
	// session state, which is the client's own in session mode
	// Session settings: carried by the proxy in transaction pooling.
	{sql: `DEALLOCATE p`},
	{sql: `SET search_path = public`},
	{sql: `SET statement_timeout = 0`},
	{sql: `SET SESSION work_mem = '1GB'`},
	{sql: `SET work_mem TO DEFAULT`},
	{sql: `SET SESSION CHARACTERISTICS AS TRANSACTION ISOLATION LEVEL SERIALIZABLE`},
	{sql: `SET client_min_messages TO 'warning'; SET TIME ZONE INTERVAL '+00:00' HOUR TO MINUTE`},
	{sql: `BEGIN; SELECT 1; SET search_path = x`},
	{sql: `SELECT set_config('work_mem', '64MB', false)`},
	{sql: `SELECT pg_catalog.set_config('search_path', '', false)`},
	{sql: `SELECT set_config(name, 'view, foreign-table', false) FROM pg_settings WHERE name = 'restrict_nonsystem_relation_kind'`},
	{sql: `SELECT set_config($1, 'x', true)`},
	// What leaves no state behind.
	{sql: `SELECT pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *; RESET ALL;`, resets: true},
	{sql: `SELECT pg_advisory_unlock(42)`},
	{sql: `SET LOCAL search_path = pg_temp, public`, sessionOnly: true},
}

// refusedStatements: every 42501 is refused in both modes; every 0A000 is refused in
// transaction mode and allowed in session mode.
var refusedStatements = []struct {
	sql  string
	code string
	rule string
}{
	// the tenant context
	{`SET app.current_tenant_id = 'globex'`, "42501", "reserved-setting"},
	{`set app.current_tenant_id to 'globex'`, "42501", "reserved-setting"},
	{`SET "App"."Current_Tenant_Id" = 'globex'`, "42501", "reserved-setting"},
	{`SET "app.current_tenant_id" = 'globex'`, "42501", "reserved-setting"},
	{`SET APP.CURRENT_TENANT_ID = 'globex'`, "42501", "reserved-setting"},
	{`SET LOCAL app.current_tenant_id = 'globex'`, "42501", "reserved-setting"},
	{`SET SESSION app.current_tenant_id = 'globex'`, "42501", "reserved-setting"},
	{`RESET app.current_tenant_id`, "42501", "reserved-setting"},
	{`SET app.current_tenant_id TO DEFAULT`, "42501", "reserved-setting"},
	{`SET U&"\0061pp".current_tenant_id = 'globex'`, "42501", "reserved-setting"},
	{`SET U&"\0061pp.current_tenant_id" = 'globex'`, "42501", "reserved-setting"},
	{`SET app.anything_else = 1`, "42501", "reserved-setting"},
	{`PREPARE TRANSACTION 'mine'`, "42501", "two-phase"},
	{`COMMIT PREPARED 'theirs'`, "42501", "two-phase"},
	{`rollback prepared 'theirs'`, "42501", "two-phase"},
	{`/* hello */ SET app.current_tenant_id = 'x'`, "42501", "reserved-setting"},
	{"SELECT 1; -- a comment\nSET app.current_tenant_id = 'x'", "42501", "reserved-setting"},
	{`SELECT 1; SELECT 2; SET app.current_tenant_id = 'x'`, "42501", "reserved-setting"},
	{`BEGIN; SET LOCAL app.current_tenant_id = 'x'; COMMIT`, "42501", "reserved-setting"},
	{`ALTER FUNCTION f() SET app.current_tenant_id = 'x'`, "42501", "reserved-setting"},
	{`SELECT set_config('app.current_tenant_id', 'globex', false)`, "42501", "set-config"},
	{`SELECT set_config('app.current_tenant_id', 'globex', true)`, "42501", "set-config"},
	{`SELECT pg_catalog.set_config('app.current_tenant_id', 'globex', true)`, "42501", "set-config"},
	{`SELECT "set_config"('app.current_tenant_id', 'x', true)`, "42501", "set-config"},
	{`SELECT SET_CONFIG('APP.CURRENT_TENANT_ID', 'x', true)`, "42501", "set-config"},
	{`SELECT U&"set\005fconfig"('app.current_tenant_id', 'x', true)`, "42501", "set-config"},
	{`SELECT set_config(U&'\0061pp.current_tenant_id', 'x', true)`, "42501", "set-config"},
	{`SELECT set_config(E'\x61pp.current_tenant_id', 'x', true)`, "42501", "set-config"},
	{`SELECT set_config('app.current_tenant_id'::text, 'x', true)`, "42501", "set-config"},
	{`WITH c AS (SELECT set_config('app.current_tenant_id', 'x', true)) SELECT * FROM c`, "42501", "set-config"},
	{`SELECT * FROM accounts WHERE id IN (SELECT set_config('app.current_tenant_id', 'x', true)::int)`, "42501", "set-config"},
	{`SELECT * FROM set_config('app.current_tenant_id', 'x', true)`, "42501", "set-config"},
	{`EXPLAIN ANALYZE SELECT set_config('app.current_tenant_id', 'x', true)`, "42501", "set-config"},
	{`COPY (SELECT set_config('app.current_tenant_id', 'x', true)) TO STDOUT`, "42501", "set-config"},
	{`PREPARE p AS SELECT set_config('app.current_tenant_id', $1, true)`, "42501", "set-config"},
	{`CREATE VIEW v AS SELECT set_config('app.current_tenant_id', 'x', true)`, "42501", "set-config"},
	{`CREATE TABLE t (a text DEFAULT set_config('app.current_tenant_id', 'x', false))`, "42501", "set-config"},
	{`UPDATE pg_settings SET setting = 'x' WHERE name = 'app.current_tenant_id'`, "42501", "pg-settings"},
	{`UPDATE pg_catalog.pg_settings SET setting = 'x' WHERE name = 'work_mem'`, "42501", "pg-settings"},
	{`WITH u AS (UPDATE pg_settings SET setting = 'x' RETURNING 1) SELECT * FROM u`, "42501", "pg-settings"},
	{`CREATE VIEW s AS SELECT * FROM pg_settings`, "42501", "pg-settings"},
	// identity
	{`SET ROLE admin`, "42501", "identity"},
	{`SET LOCAL ROLE admin`, "42501", "identity"},
	{`RESET ROLE`, "42501", "identity"},
	{`SET "ROLE" = 'admin'`, "42501", "identity"},
	{`SET SESSION AUTHORIZATION admin`, "42501", "identity"},
	{`SET SESSION AUTHORIZATION DEFAULT`, "42501", "identity"},
	{`RESET SESSION AUTHORIZATION`, "42501", "identity"},
	{"SELECT 1; -- hidden\r SET ROLE admin", "42501", "identity"},
	{`SELECT set_config('role', 'admin', true)`, "42501", "identity"},
	// settings that would make the server read texts differently from the guard
	{`SET standard_conforming_strings = off`, "42501", "lexer-setting"},
	{`SET LOCAL standard_conforming_strings = 0`, "42501", "lexer-setting"},
	{`SET client_encoding = 'SJIS'`, "42501", "lexer-setting"},
	{`SET NAMES 'big5'`, "42501", "lexer-setting"},
	{`SELECT set_config('client_encoding', 'GBK', true)`, "42501", "lexer-setting"},
	{`SELECT set_config('standard_conforming_strings', $1, true)`, "42501", "lexer-setting"},
	// persistent settings and roles
	{`ALTER ROLE tenantproxy_app SET app.current_tenant_id = 'x'`, "42501", "persistent-setting"},
	{`ALTER USER tenantproxy_app SET search_path = evil`, "42501", "persistent-setting"},
	{`ALTER ROLE tenantproxy_app RESET ALL`, "42501", "persistent-setting"},
	{`ALTER DATABASE app SET work_mem = '1GB'`, "42501", "persistent-setting"},
	{`ALTER SYSTEM SET work_mem = '1GB'`, "42501", "persistent-setting"},
	{`ALTER USER tenantproxy_app PASSWORD 'x'`, "42501", "role-ddl"},
	{`CREATE ROLE evil`, "42501", "role-ddl"},
	{`CREATE USER evil`, "42501", "role-ddl"},
	{`DROP ROLE evil`, "42501", "role-ddl"},
	{`DROP USER evil`, "42501", "role-ddl"},
	{`GRANT admin TO webuser`, "42501", "role-ddl"},
	{`REVOKE admin FROM webuser`, "42501", "role-ddl"},
	{`REASSIGN OWNED BY a TO b`, "42501", "role-ddl"},
	{`DROP OWNED BY a`, "42501", "role-ddl"},
	{`ALTER ROLE a RENAME TO b`, "42501", "role-ddl"},
	// code the guard cannot read
	{`DO $$ BEGIN PERFORM 1; END $$`, "42501", "dynamic-sql"},
	{`do 'begin null; end'`, "42501", "dynamic-sql"},
	{`SELECT query_to_xml('select * from t', true, false, '')`, "42501", "dynamic-sql"},
	{`SELECT table_to_xml('accounts', true, false, '')`, "42501", "dynamic-sql"},
	{`SELECT pg_catalog.database_to_xmlschema(true, false, '')`, "42501", "dynamic-sql"},
	{`SELECT ts_stat('select v from t')`, "42501", "dynamic-sql"},
	{`SELECT ts_rewrite('a'::tsquery, 'select a, b from aliases')`, "42501", "dynamic-sql"},
	{`SELECT * FROM dblink('host=x', 'select 1') AS t(a int)`, "42501", "dynamic-sql"},
	{`SELECT dblink_exec('host=x', 'select 1')`, "42501", "dynamic-sql"},
	{`CREATE FUNCTION f() RETURNS int LANGUAGE sql AS 'SELECT 1'`, "42501", "code-definition"},
	{`CREATE OR REPLACE PROCEDURE p() LANGUAGE sql AS 'SELECT 1'`, "42501", "code-definition"},
	{`CREATE TRIGGER tr BEFORE INSERT ON t FOR EACH ROW EXECUTE FUNCTION f()`, "42501", "code-definition"},
	{`CREATE RULE r AS ON INSERT TO t DO INSTEAD NOTHING`, "42501", "code-definition"},
	{`CREATE EVENT TRIGGER e ON ddl_command_start EXECUTE FUNCTION f()`, "42501", "code-definition"},
	{`CREATE LANGUAGE plperl`, "42501", "code-definition"},
	{`CREATE EXTENSION dblink`, "42501", "code-definition"},
	{`ALTER EXTENSION x UPDATE`, "42501", "code-definition"},
	{`ALTER EXTENSION x ADD FUNCTION f()`, "42501", "code-definition"},
	{`CREATE CAST (int AS text) WITH FUNCTION f(int)`, "42501", "code-definition"},
	{`CREATE AGGREGATE a (int) (sfunc = f, stype = int)`, "42501", "code-definition"},
	{`CREATE OPERATOR === (leftarg = int, rightarg = int, function = f)`, "42501", "code-definition"},
	{`CREATE TRANSFORM FOR int LANGUAGE sql (FROM SQL WITH FUNCTION f(internal), TO SQL WITH FUNCTION g(int))`, "42501", "code-definition"},
	{`CREATE CONVERSION c FOR 'UTF8' TO 'LATIN1' FROM f`, "42501", "code-definition"},
	{`LOAD 'plpgsql'`, "42501", "load"},
	// what tenants share: files, large objects, channels, other sessions
	{`COPY t FROM PROGRAM 'curl evil'`, "42501", "server-file"},
	{`COPY t TO '/tmp/out'`, "42501", "server-file"},
	{`COPY t FROM '/etc/passwd'`, "42501", "server-file"},
	{`SELECT pg_read_file('/etc/passwd')`, "42501", "server-file"},
	{`SELECT pg_read_binary_file('x')`, "42501", "server-file"},
	{`SELECT pg_ls_dir('.')`, "42501", "server-file"},
	{`SELECT pg_stat_file('x')`, "42501", "server-file"},
	{`SELECT lo_import('/etc/passwd')`, "42501", "large-object"},
	{`SELECT loread(0, 10)`, "42501", "large-object"},
	{`SELECT lo_get(1234)`, "42501", "large-object"},
	{`SELECT pg_terminate_backend(123)`, "42501", "other-sessions"},
	{`SELECT pg_cancel_backend(123)`, "42501", "other-sessions"},
	// unparsable
	{`SELECT set_config(`, "42601", "unparsable"},
	{`SET app.current_tenant_id = `, "42601", "unparsable"},
	{"SELECT 1\x00; SET app.current_tenant_id = 'x'", "42601", "unparsable"},
	// session state, refused in transaction mode only
	{`SELECT pg_advisory_lock(1)`, "0A000", "session-state"},
	{`SELECT pg_try_advisory_lock(1)`, "0A000", "session-state"},
	{`SELECT currval('s')`, "0A000", "session-state"},
	{`SELECT setseed(0.1)`, "0A000", "session-state"},
	{`SELECT count(*) FROM (SELECT pg_catalog.SetSeed(0.5)) s`, "0A000", "session-state"},
	{`SELECT lastval()`, "0A000", "session-state"},
	{`PREPARE p AS SELECT 1`, "0A000", "sql-prepare"},
	{`EXECUTE p`, "0A000", "sql-prepare"},
	{`EXPLAIN EXECUTE p`, "0A000", "sql-prepare"},
	{`CREATE TEMP TABLE scratch (id int)`, "0A000", "temp-object"},
	{`CREATE TEMPORARY VIEW v AS SELECT 1`, "0A000", "temp-object"},
	{`CREATE TEMP SEQUENCE s`, "0A000", "temp-object"},
	{`SELECT * INTO TEMP t2 FROM t`, "0A000", "temp-object"},
	{`CREATE TEMP TABLE t2 AS SELECT 1`, "0A000", "temp-object"},
	{`SELECT * INTO pg_temp.t2 FROM t`, "0A000", "temp-object"},
	{`CREATE TABLE pg_temp.x (id int)`, "0A000", "temp-object"},
	{`CREATE TYPE pg_temp.mood AS ENUM ('ok')`, "0A000", "temp-object"},
	{`SET LOCAL search_path = pg_temp, public`, "0A000", "temp-object"},
	{`SELECT set_config('search_path', 'pg_temp', true)`, "0A000", "temp-object"},
}

func TestGuardAllowed(t *testing.T) {
	if n := len(allowedStatements); n < 60 {
		t.Fatalf("%d allowed statements, want at least 60", n)
	}
	for _, m := range modes {
		g := newGuard(m.mode)
		for _, c := range allowedStatements {
			if c.sessionOnly && m.mode != guard.SessionMode {
				continue
			}
			v := g.Check([]byte(c.sql))
			if v.Refused {
				t.Errorf("%s mode: %q refused: %s %s %s", m.name, c.sql, v.Code, v.Rule, v.Message)
				continue
			}
			if v.Code != "" || v.Rule != "" || v.Message != "" {
				t.Errorf("%s mode: %q allowed with a refusal's fields: %+v", m.name, c.sql, v)
			}
			if v.ResetsContext != c.resets || v.DropsStatements != c.drops {
				t.Errorf("%s mode: %q: ResetsContext=%v DropsStatements=%v, want %v %v",
					m.name, c.sql, v.ResetsContext, v.DropsStatements, c.resets, c.drops)
			}
		}
	}
}

// EXPLAIN is flagged wherever it appears, so that the proxy refuses it but to trusted users;
// a word "explain" that is no EXPLAIN is not.
func TestGuardFlagsExplain(t *testing.T) {
	g := newGuard(guard.TransactionMode)
	for sql, explains := range map[string]bool{
		`EXPLAIN SELECT * FROM t WHERE name >= 'a'`:                  true,
		`explain (costs off) select 1`:                               true,
		`EXPLAIN ANALYZE SELECT 1`:                                   true,
		`EXPLAIN (ANALYZE, BUFFERS) UPDATE t SET x = 1`:              true,
		`SELECT 1; EXPLAIN SELECT 2`:                                 true,
		`/* c */ EXPLAIN VERBOSE SELECT 1`:                           true,
		`SELECT 'explain' AS explain`:                                false,
		`SELECT explain_output FROM plans`:                           false,
		`WITH x AS (SELECT 1) SELECT * FROM x`:                       false,
		`SELECT set_config('app.current_tenant_id', 'x', true)`:      false,
		`EXPLAIN SELECT set_config('app.current_tenant_id', 'x', 1)`: false, // refused outright
	} {
		v := g.Check([]byte(sql))
		if v.Explains != explains {
			t.Errorf("%q: Explains=%v, want %v (%+v)", sql, v.Explains, explains, v)
		}
	}
}

// Statements that change settings are flagged, so that the proxy shares no prepared statement
// parsed while the change is in flight; others are not.
func TestGuardFlagsSettingsChanges(t *testing.T) {
	g := newGuard(guard.TransactionMode)
	for sql, want := range map[string]bool{
		`SET TimeZone = 'Asia/Tokyo'`:                  true,
		`SET LOCAL DateStyle = 'ISO, DMY'`:             true,
		`SET TIME ZONE LOCAL`:                          true,
		`RESET IntervalStyle`:                          true,
		`BEGIN; SET LOCAL work_mem = '64MB'; SELECT 1`: true,
		`RESET ALL`:   true,
		`DISCARD ALL`: true,
		`SET TRANSACTION ISOLATION LEVEL SERIALIZABLE`: false,
		`SELECT 1`:           false,
		`UPDATE t SET a = 1`: false,
	} {
		if v := g.Check([]byte(sql)); v.Refused || v.ChangesSettings != want {
			t.Errorf("%q: refused=%v ChangesSettings=%v, want %v", sql, v.Refused, v.ChangesSettings, want)
		}
	}
}

func TestGuardRefused(t *testing.T) {
	if n := len(refusedStatements); n < 80 {
		t.Fatalf("%d refused statements, want at least 80", n)
	}
	for _, m := range modes {
		g := newGuard(m.mode)
		for _, c := range refusedStatements {
			v := g.Check([]byte(c.sql))
			if c.code == "0A000" && m.mode == guard.SessionMode {
				if v.Refused {
					t.Errorf("session mode: %q refused, want allowed: %s %s", c.sql, v.Rule, v.Message)
				}
				continue
			}
			if !v.Refused || v.Code != c.code || v.Rule != c.rule {
				t.Errorf("%s mode: %q: got refused=%v %s %s (%s), want %s %s",
					m.name, c.sql, v.Refused, v.Code, v.Rule, v.Message, c.code, c.rule)
				continue
			}
			if !strings.HasPrefix(v.Message, "tenantproxy") {
				t.Errorf("%q: message %q does not say who refused", c.sql, v.Message)
			}
			if v.ResetsContext || v.DropsStatements {
				t.Errorf("%q: refused with effects %+v", c.sql, v)
			}
			if c.code == "0A000" {
				if !strings.Contains(v.Message, "transaction pooling mode") || v.Hint == "" {
					t.Errorf("%q: 0A000 without the mode in the message or a hint: %+v", c.sql, v)
				}
			}
		}
	}
}

func TestGuardMessagesNameWhatIsRefused(t *testing.T) {
	g := newGuard(guard.SessionMode)
	for sql, want := range map[string]string{
		`SET app.current_tenant_id = 'globex'`:                       `tenantproxy: SET of "app.current_tenant_id" is refused: the tenant context is set by the proxy`,
		`RESET "App"."Current_Tenant_Id"`:                            `tenantproxy: RESET of "app.current_tenant_id" is refused`,
		`SELECT set_config('app.current_tenant_id', 'b', false)`:     `set_config of "app.current_tenant_id" is refused`,
		`ALTER USER tenantproxy_app PASSWORD 'x'`:                    `ALTER ROLE is refused`,
		`SELECT 1 FROM t; SELECT 1 FROM u; SELECT pg_read_file('a')`: `pg_read_file is refused`,
		`CREATE TABLE (`: `tenantproxy could not parse this statement: syntax error at or near "("`,
	} {
		if v := g.Check([]byte(sql)); !strings.Contains(v.Message, want) {
			t.Errorf("%q: message %q, want it to contain %q", sql, v.Message, want)
		}
	}
}

// The first 42501 wins over a 0A000 that comes before it.
func TestGuardDenialWinsOverUnsupported(t *testing.T) {
	g := newGuard(guard.TransactionMode)
	for _, sql := range []string{
		`SET search_path = x; SET app.current_tenant_id = 'b'`,
		`PREPARE p AS SELECT set_config('app.current_tenant_id', $1, true)`,
		`CREATE TEMP TABLE t AS SELECT pg_read_file('a')`,
		`SELECT currval('s'), set_config('app.x', 'b', true)`,
	} {
		if v := g.Check([]byte(sql)); v.Code != "42501" {
			t.Errorf("%q: %s %s, want 42501", sql, v.Code, v.Rule)
		}
	}
}

func TestGuardReservedPrefixesConfigured(t *testing.T) {
	g := guard.New(guard.Config{ReservedPrefixes: []string{"tenancy.", "App."}})
	for sql, refused := range map[string]bool{
		`SET tenancy.id = 'b'`:                       true,
		`SET "Tenancy"."Id" = 'b'`:                   true,
		`SET app.current_tenant_id = 'b'`:            true,
		`SET myapp.x = 'b'`:                          false,
		`SELECT set_config('tenancy.id', 'b', true)`: true,
	} {
		if v := g.Check([]byte(sql)); v.Refused != refused {
			t.Errorf("%q: refused=%v, want %v (%s)", sql, v.Refused, refused, v.Message)
		}
	}
	// No prefix configured still protects the default tenant setting.
	if v := guard.New(guard.Config{}).Check([]byte(`SET app.current_tenant_id = 'b'`)); !v.Refused {
		t.Errorf("a guard without prefixes allowed SET app.current_tenant_id")
	}
}

// oltpStatements must pass the pre-filter, so that the hot path never parses.
var oltpStatements = []string{
	`SELECT abalance FROM pgbench_accounts WHERE aid = 42;`,
	`UPDATE pgbench_accounts SET abalance = abalance + -3071 WHERE aid = 42;`,
	`UPDATE pgbench_tellers SET tbalance = tbalance + 100 WHERE tid = 3;`,
	`UPDATE pgbench_branches SET bbalance = bbalance + 100 WHERE bid = 1;`,
	`INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) VALUES (3, 1, 42, -3071, CURRENT_TIMESTAMP);`,
	`SELECT id, name, email FROM customers WHERE id = $1`,
	`INSERT INTO orders (customer_id, total) VALUES ($1, $2) RETURNING id`,
	`INSERT INTO orders (customer_id, total, note) VALUES (17, 99.5, 'gift wrap')`,
	`UPDATE "orders" SET status = 'shipped', shipped_at = now() WHERE id = 9`,
	`UPDATE orders o SET total = 0 WHERE o.id = 9`,
	`DELETE FROM cart_items WHERE cart_id = 5`,
	`INSERT INTO stock VALUES (1, 2) ON CONFLICT (id) DO UPDATE SET qty = excluded.qty`,
	`INSERT INTO stock VALUES (1, 2) ON CONFLICT DO NOTHING`,
	`SELECT count(*) FROM line_items WHERE order_id = ANY($1)`,
	`SELECT offset_col FROM dataset`,
	`SELECT c.id, sum(i.price) FROM carts c JOIN items i ON i.cart_id = c.id GROUP BY c.id`,
	`BEGIN`, `COMMIT`, `ROLLBACK`,
}

func TestPrefilterLetsOLTPThrough(t *testing.T) {
	g := newGuard(guard.TransactionMode)
	for _, sql := range oltpStatements {
		if g.Prefilter([]byte(sql)) {
			t.Errorf("pre-filter flags %q: the hot path would parse it", sql)
		}
		if v := g.Check([]byte(sql)); v.Refused {
			t.Errorf("%q refused: %s", sql, v.Message)
		}
	}
	if s := g.Stats(); s.Parsed != 0 || s.Prefiltered != uint64(len(oltpStatements)) {
		t.Errorf("stats %+v, want every statement prefiltered", s)
	}
}

// Every statement the table refuses, or whose effects the proxy needs, must reach the parser.
func TestPrefilterFlagsEveryRefusal(t *testing.T) {
	for _, m := range modes {
		g := newGuard(m.mode)
		for _, c := range refusedStatements {
			if !g.Prefilter([]byte(c.sql)) {
				t.Errorf("%s mode: pre-filter lets %q through unparsed", m.name, c.sql)
			}
		}
		for _, c := range allowedStatements {
			if (c.resets || c.drops) && !g.Prefilter([]byte(c.sql)) {
				t.Errorf("%s mode: pre-filter hides the effects of %q", m.name, c.sql)
			}
		}
	}
}

// Every function the lockdown revokes is refused by the guard too, and flagged by the
// pre-filter, however it is called.
func TestGuardRefusesEveryLockdownFunction(t *testing.T) {
	g := newGuard(guard.TransactionMode)
	for _, f := range lockdown.Functions {
		for _, sql := range []string{
			"SELECT " + f.Name + "()",
			"SELECT pg_catalog." + strings.ToUpper(f.Name) + "(1, 2)",
			`SELECT "` + f.Name + `"(x) FROM t`,
		} {
			if !g.Prefilter([]byte(sql)) {
				t.Errorf("the pre-filter lets %q through", sql)
			}
			if f.Name == "set_config" || f.Name == "pg_notify" {
				continue // sent to the database's wrappers: see their cases
			}
			if v := g.Check([]byte(sql)); !v.Refused || v.Rule != string(f.Rule) || v.Code != "42501" {
				t.Errorf("%q: %+v, want refused under %s", sql, v, f.Rule)
			}
		}
	}
}

func TestPrefilterWordBoundaries(t *testing.T) {
	g := newGuard(guard.SessionMode)
	for sql, want := range map[string]bool{
		`SELECT offset_col FROM dataset`:                  false,
		`SELECT reset_count FROM t`:                       false,
		`SELECT copyright, created_at FROM t`:             false,
		"SELECT \xc3\xa9set FROM t":                       false, // é then "set": one identifier
		`SELECT x$set FROM t`:                             false,
		`UPDATE t SET a = 1`:                              false, // SET of UPDATE, not a statement
		`/**/SET x=1`:                                     true,
		`;set x=1`:                                        true,
		`SET x=1`:                                         true,
		"\t SET x=1":                                      true,
		"SELECT 1\nSET x=1":                               true,
		"SELECT 1 -- c\rSET x=1":                          true,
		`SELECT 1;RESET x`:                                true,
		`SELECT "SET" FROM t`:                             false, // quoted: an identifier, never the keyword
		`SELECT a FROM t WHERE temp > 1`:                  true,
		`SELECT a FROM "my_temp"`:                         true, // "_temp": temporary schemas
		`select 1 from t where x = 'U&'`:                  true,
		`SELECT "Set_Config"('a', 'b', true)`:             true,
		`SELECT myapp_id FROM t`:                          true, // the reserved namespace, anywhere
		`INSERT INTO t VALUES (1) ON CONFLICT DO NOTHING`: false,
		`;DO 'x'`:                                         true,
		"SELECT 1\x00":                                    true,
		";do":                                             true,
		"SELECT 'u&":                                      true,
		"x":                                               false,
		"":                                                false,
	} {
		if got := g.Prefilter([]byte(sql)); got != want {
			t.Errorf("Prefilter(%q) = %v, want %v", sql, got, want)
		}
	}
}

func TestGuardClientEncodings(t *testing.T) {
	g := newGuard(guard.TransactionMode)
	for enc, safe := range map[string]bool{
		"UTF8": true, "utf-8": true, "Unicode": true, "LATIN1": true, "iso_8859_15": true,
		"EUC_JP": true, "WIN1252": true, "SQL_ASCII": true, "KOI8-R": true,
		"SJIS": false, "Shift_JIS": false, "ms-kanji": false, "SHIFT_JIS_2004": false,
		"BIG5": false, "GBK": false, "win936": false, "UHC": false, "GB18030": false,
		"JOHAB": false, "windows-950": false, "no such encoding": false, "utf8\u00e9": false,
	} {
		if got := guc.SafeClientEncoding(enc); got != safe {
			t.Errorf("SafeClientEncoding(%q) = %v, want %v", enc, got, safe)
		}
		v := g.Check([]byte(fmt.Sprintf("SET client_encoding = '%s'", enc)))
		if v.Refused == safe || v.Refused && v.Rule != "lexer-setting" {
			t.Errorf("SET client_encoding = %q: %+v", enc, v)
		}
	}
}

func TestGuardCacheStats(t *testing.T) {
	g := newGuard(guard.SessionMode)
	check := func(sql string) guard.Verdict { return g.Check([]byte(sql)) }

	check(`SELECT abalance FROM pgbench_accounts WHERE aid = 42`)
	first := check(`SET app.current_tenant_id = 'b'`)
	second := check(`SET app.current_tenant_id = 'b'`)
	check(`SELECT current_setting('app.current_tenant_id')`)
	check(`SELECT current_setting('app.current_tenant_id')`)
	check(`SELECT current_setting('app.current_tenant_id')`)

	if first != second || !first.Refused {
		t.Errorf("cached verdict %+v differs from the parsed one %+v", second, first)
	}
	if got, want := g.Stats(), (guard.Stats{Prefiltered: 1, CacheHits: 3, Parsed: 2}); got != want {
		t.Errorf("stats %+v, want %+v", got, want)
	}
}

// A full cache makes room: with one entry, two texts in turn are parsed every time.
func TestGuardCacheIsBounded(t *testing.T) {
	g := guard.New(guard.Config{CacheSize: 1})
	for range 3 {
		g.Check([]byte(`SET a.b = 1`))
		g.Check([]byte(`SET a.c = 1`))
	}
	if s := g.Stats(); s.Parsed != 6 || s.CacheHits != 0 {
		t.Errorf("stats %+v, want 6 parsed and no hits with a one-entry cache", s)
	}
}

func TestGuardAllocatesNothingOnTheHotPaths(t *testing.T) {
	g := newGuard(guard.TransactionMode)
	plain := []byte(`SELECT abalance FROM pgbench_accounts WHERE aid = 42;`)
	cached := []byte(`SELECT current_setting('app.current_tenant_id')`)
	g.Check(cached)
	if n := testing.AllocsPerRun(100, func() { g.Check(plain) }); n != 0 {
		t.Errorf("pre-filtered Check allocates %v times", n)
	}
	if n := testing.AllocsPerRun(100, func() { g.Check(cached) }); n != 0 {
		t.Errorf("cached Check allocates %v times", n)
	}
}

func TestGuardConcurrentChecksAgree(t *testing.T) {
	g := newGuard(guard.TransactionMode)
	var texts []string
	for _, c := range refusedStatements {
		texts = append(texts, c.sql)
	}
	for _, c := range allowedStatements {
		texts = append(texts, c.sql)
	}
	texts = append(texts, oltpStatements...)
	want := make([]guard.Verdict, len(texts))
	for i, sql := range texts {
		want[i] = g.Inspect([]byte(sql))
	}

	var wg sync.WaitGroup
	errs := make(chan string, 16)
	for w := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for round := range 20 {
				for k := range texts {
					i := (k + w*7 + round) % len(texts)
					if got := g.Check([]byte(texts[i])); got != want[i] {
						select {
						case errs <- fmt.Sprintf("%q: got %+v, want %+v", texts[i], got, want[i]):
						default:
						}
						return
					}
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
	s := g.Stats()
	if total := s.Prefiltered + s.CacheHits + s.Parsed; total != uint64(16*20*len(texts)) {
		t.Errorf("stats %+v add up to %d checks, want %d", s, total, 16*20*len(texts))
	}
	if s.Parsed >= uint64(16*20*len(texts))/2 {
		t.Errorf("stats %+v: the cache saved little", s)
	}
}

func TestFingerprintStripsLiterals(t *testing.T) {
	for _, sql := range []string{
		`SET app.current_tenant_id = 'globex'`,
		`SELECT set_config('app.current_tenant_id', 'globex', false)`,
		`SELECT * FROM accounts WHERE owner = 'globex' AND id = 42`,
	} {
		fp := guard.Fingerprint(sql)
		if strings.Contains(fp, "globex") || !strings.Contains(fp, "$1") {
			t.Errorf("Fingerprint(%q) = %q: the literal is still there", sql, fp)
		}
	}
	long := `SELECT ` + strings.Repeat(`a_rather_long_column_name, `, 40) + `1 FROM t`
	if fp := guard.Fingerprint(long); len(fp) > 200 || !strings.HasPrefix(fp, "SELECT a_rather_long") {
		t.Errorf("Fingerprint of a long text: %d bytes %q", len(fp), fp)
	}
	fp := guard.Fingerprint(`SELEC 'globex'`)
	if strings.Contains(fp, "globex") || fp == "" || len(fp) > 40 {
		t.Errorf("Fingerprint of an unparsable text = %q, want a short hash", fp)
	}
	if guard.Fingerprint(`SELEC 'a'`) == guard.Fingerprint(`SELEC 'b'`) {
		t.Errorf("unparsable texts share a fingerprint")
	}
}

// For any text the pre-filter lets through unparsed, the full check must agree: no refusal
// (but "unparsable", which the server refuses too) and no effect, the whole verdict compared.
func FuzzPrefilterSound(f *testing.F) {
	for _, c := range refusedStatements {
		f.Add(c.sql)
	}
	for _, c := range allowedStatements {
		f.Add(c.sql)
	}
	guards := []*guard.Guard{newGuard(guard.SessionMode), newGuard(guard.TransactionMode)}
	f.Fuzz(func(t *testing.T, sql string) {
		for _, g := range guards {
			if g.Prefilter([]byte(sql)) {
				continue
			}
			if v := g.Inspect([]byte(sql)); v != (guard.Verdict{}) && v.Rule != "unparsable" {
				t.Errorf("pre-filter lets %q through, but the parser finds %+v", sql, v)
			}
		}
	})
}

// A text the guard cannot afford to parse is refused (54000), never passed unchecked; one it
// can afford is checked whatever its size.
func TestGuardMemoryBound(t *testing.T) {
	g := guard.New(guard.Config{ReservedPrefixes: []string{"app."}, Memory: 16 << 20})
	huge := "SELECT ARRAY[" + strings.Repeat("0,", 100<<10) + "0] /* session */"
	v := g.Check([]byte(huge))
	if !v.Refused || v.Code != "54000" || v.Rule != "guard-memory" || !strings.Contains(v.Hint, "parameters") {
		t.Errorf("a text too large to parse: %+v", v)
	}
	if g.Stats().Unaffordable != 1 || g.Stats().Parsed != 0 {
		t.Errorf("stats %+v", g.Stats())
	}
	large := "SELECT ARRAY[" + strings.Repeat("0,", 20<<10) + "0]; SET app.current_tenant_id = 'x'"
	if v := g.Check([]byte(large)); !v.Refused || v.Rule != "reserved-setting" {
		t.Errorf("a large text within the budget: %+v", v)
	}
}

// Every set_config call goes to the database's wrapper, however it is written; the rest of the
// text is untouched.
func TestGuardRewritesSetConfigToTheWrapper(t *testing.T) {
	g := newGuard(guard.TransactionMode)
	for sql, want := range map[string]string{
		`SELECT pg_catalog.set_config('search_path', '', false)`:                                                `SELECT tenantproxy.set_config('search_path', '', false)`,
		`select SET_CONFIG('work_mem', '1MB', true), 'set_config(' AS s`:                                        `select tenantproxy.set_config('work_mem', '1MB', true), 'set_config(' AS s`,
		`SELECT "pg_catalog" . "set_config" /* c */ ('a.b', 'x', false)`:                                        `SELECT tenantproxy.set_config('a.b', 'x', false)`,
		`SELECT U&"\0073et_config"('a.b', 'x', false)`:                                                          `SELECT tenantproxy.set_config('a.b', 'x', false)`,
		`SELECT set_config(n, 'v', false) FROM t; SELECT set_config('a.b', set_config('c.d', 'y', true), true)`: `SELECT tenantproxy.set_config(n, 'v', false) FROM t; SELECT tenantproxy.set_config('a.b', tenantproxy.set_config('c.d', 'y', true), true)`,
	} {
		v := g.Check([]byte(sql))
		if v.Refused || v.Rewrite != want || !v.ChangesSettings {
			t.Errorf("%s:\n  got  %q (%+v)\n  want %q", sql, v.Rewrite, v, want)
		}
	}
	if v := g.Check([]byte(`SELECT current_setting('search_path')`)); v.Rewrite != "" {
		t.Errorf("rewrote a text without set_config: %q", v.Rewrite)
	}
}

// A lone DEALLOCATE name is the proxy's to answer in transaction pooling; among other
// statements it is refused there.
func TestGuardDeallocate(t *testing.T) {
	g := newGuard(guard.TransactionMode)
	if v := g.Check([]byte(`DEALLOCATE a3`)); v.Refused || v.Deallocate != "a3" {
		t.Errorf("DEALLOCATE a3: %+v", v)
	}
	if v := g.Check([]byte(`DEALLOCATE PREPARE "Odd"`)); v.Refused || v.Deallocate != "Odd" {
		t.Errorf("DEALLOCATE PREPARE \"Odd\": %+v", v)
	}
	if v := g.Check([]byte(`SELECT 1; DEALLOCATE a3`)); !v.Refused || v.Code != "0A000" {
		t.Errorf("DEALLOCATE among others: %+v", v)
	}
	if v := newGuard(guard.SessionMode).Check([]byte(`SELECT 1; DEALLOCATE a3`)); v.Refused {
		t.Errorf("session mode: %+v", v)
	}
}

// A WITH HOLD cursor is allowed in both modes; the verdict says so, for transaction pooling to
// keep the backend with the client.
func TestGuardHoldsCursor(t *testing.T) {
	for _, mode := range []guard.PoolMode{guard.TransactionMode, guard.SessionMode} {
		g := newGuard(mode)
		for _, sql := range []string{
			`DECLARE c CURSOR WITH HOLD FOR SELECT 1`,
			`DECLARE "_django_curs_1" NO SCROLL CURSOR WITH HOLD FOR SELECT 1`,
			`SELECT 1; declare c binary cursor with hold for select 2`,
		} {
			if v := g.Check([]byte(sql)); v.Refused || !v.HoldsCursor {
				t.Errorf("%s: %+v", sql, v)
			}
		}
		for _, sql := range []string{`DECLARE c CURSOR FOR SELECT 1`, `DECLARE c CURSOR WITHOUT HOLD FOR SELECT 1`, `SELECT 'WITH HOLD'`} {
			if v := g.Check([]byte(sql)); v.Refused || v.HoldsCursor {
				t.Errorf("%s: %+v", sql, v)
			}
		}
	}
}
