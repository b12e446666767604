package proxy_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"
	"github.com/tenantproxy/tenantproxy/config"
	"github.com/tenantproxy/tenantproxy/internal/pgtest"
)

// Other sessions: cancels, activity, timing and error oracles, resets, leaks, vanishing clients and storms.

func cancelCases() []customCase {
	return []customCase{
		{"cancel with the victim's pid and wrong secrets", func(t *testing.T, a *arena) {
			p := a.ownProxy(t, 3)
			victim := join(t, p, "bob", "globex")
			attacker := join(t, p, "alice", "acme")
			pid, secret := victim.conn.PgConn().PID(), victim.conn.PgConn().SecretKey()
			done := background(victim.conn, "SELECT pg_sleep(0.5), 'marker-cancel-1'")
			a.waitActive(t, "marker-cancel-1")
			flipped := slices.Clone(secret)
			flipped[0] ^= 1
			for _, s := range [][]byte{{1, 2, 3, 4}, {}, {0, 0, 0, 0, 0, 0, 0, 0}, make([]byte, 256), flipped, append(slices.Clone(secret), 0)} {
				sendCancel(t, p.addr, pid, s)
			}
			sendCancel(t, p.addr, pid^1, secret)
			sendCancel(t, p.addr, attacker.conn.PgConn().PID(), secret)
			await(t, done, "the victim's query")
			a.aftermath(t, p, attacker, victim)
		}},
		{"a finished client's cancel key against the next user of its backend", func(t *testing.T, a *arena) {
			p := startProxy(t, a.db, a.mode, sharedPool(a.mode))
			first := join(t, p, "bob", "globex")
			if _, err := simpleRows(first.conn.PgConn(), "SELECT 1"); err != nil {
				t.Fatal(err)
			}
			pid, secret := first.conn.PgConn().PID(), first.conn.PgConn().SecretKey()
			next := join(t, p, "alice", "acme")
			done := background(next.conn, "SELECT pg_sleep(0.5), 'marker-cancel-2'")
			a.waitActive(t, "marker-cancel-2")
			sendCancel(t, p.addr, pid, secret)
			await(t, done, "the next user's query")
			// Nor is the cancel left pending for the key's owner.
			if _, err := simpleRows(first.conn.PgConn(), "SELECT pg_sleep(0.05)"); err != nil {
				t.Errorf("the key's owner, afterwards: %v", err)
			}
			a.aftermath(t, p, next, first)
		}},
		{"attacker cancels with its own key while the victim runs on its former backend", func(t *testing.T, a *arena) {
			p := startProxy(t, a.db, a.mode, sharedPool(a.mode))
			victim := join(t, p, "bob", "globex")
			attacker := join(t, p, "alice", "acme")
			if _, err := simpleRows(attacker.conn.PgConn(), "SELECT 1"); err != nil {
				t.Fatal(err)
			}
			done := background(victim.conn, "SELECT pg_sleep(0.5), 'marker-cancel-3'")
			a.waitActive(t, "marker-cancel-3")
			if err := attacker.conn.PgConn().CancelRequest(opContext(t)); err != nil {
				t.Fatal(err)
			}
			sendCancel(t, p.addr, attacker.conn.PgConn().PID(), attacker.conn.PgConn().SecretKey())
			await(t, done, "the victim's query")
			a.aftermath(t, p, attacker, victim)
		}},
	}
}

func activityCases() []customCase {
	return []customCase{
		{"another tenant's running query", func(t *testing.T, a *arena) {
			p := a.ownProxy(t, 3)
			victim := join(t, p, "bob", "globex")
			attacker := join(t, p, "alice", "acme")
			if _, err := victim.conn.Prepare(opContext(t), "bob_activity", "SELECT 'globex-marker-prepared'::text"); err != nil {
				t.Fatal(err)
			}
			done := background(victim.conn, "SELECT pg_sleep(1.5), 'globex-marker-activity'")
			a.waitActive(t, "globex-marker-activity")
			refused := []string{
				"SELECT query FROM pg_stat_activity",
				"SELECT query FROM pg_catalog.pg_stat_activity WHERE query LIKE '%marker%'",
				"SELECT * FROM pg_stat_get_activity(NULL)",
				"SELECT pg_stat_get_backend_activity(s) FROM pg_stat_get_backend_idset() s",
				"SELECT pg_stat_get_backend_activity(1)",
				"SELECT pg_stat_get_backend_pid(1)",
				"SELECT * FROM pg_locks",
				"SELECT * FROM pg_stat_ssl",
				"SELECT * FROM pg_stat_gssapi",
				"SELECT * FROM pg_stat_progress_vacuum",
				"SELECT * FROM pg_stat_get_progress_info('VACUUM')",
				"SELECT pg_blocking_pids(1)",
				"SELECT * FROM pg_prepared_statements",
				"SELECT * FROM pg_cursors",
			}
			allowed := []string{
				"SELECT datname, numbackends FROM pg_stat_database",
				"SELECT relname, n_live_tup FROM pg_stat_user_tables",
				"SELECT * FROM pg_stat_statements",
			}
			for _, sql := range append(refused, allowed...) {
				for _, exec := range []func(*pgconn.PgConn, string, ...string) ([]string, error){
					func(pc *pgconn.PgConn, s string, _ ...string) ([]string, error) { return simpleRows(pc, s) }, unnamedRows,
				} {
					rows, err := exec(attacker.conn.PgConn(), sql)
					a.noLeak(t, sql, rows, err)
					if slices.Contains(refused, sql) && codeOf(err) != "42501" {
						t.Errorf("%s: %q, %v", sql, rows, err)
					}
				}
			}
			await(t, done, "the victim's query")
			a.aftermath(t, p, attacker, victim)
		}},
	}
}

func oracleCases() []customCase {
	execs := map[string]func(*pgconn.PgConn, string, ...string) ([]string, error){
		"simple": func(pc *pgconn.PgConn, s string, _ ...string) ([]string, error) { return simpleRows(pc, s) },
		"extended": func(pc *pgconn.PgConn, s string, _ ...string) ([]string, error) {
			return unnamedRows(pc, s)
		},
	}
	const random = "00000000-0000-4000-8000-00000000abcd"
	return []customCase{
		{"entity with another tenant's id", func(t *testing.T, a *arena) {
			victim := join(t, a.p, "bob", "globex")
			attacker := join(t, a.p, "alice", "acme")
			defer mustExec(t, a.admin, "DELETE FROM llmspell.entities WHERE name LIKE 'acme-dup%'")
			for proto, exec := range execs {
				pc := attacker.conn.PgConn()
				rows, err := exec(pc, fmt.Sprintf(`INSERT INTO llmspell.entities (tenant_id, id, entity_type, name)
					VALUES ('acme', '%s', 'x', 'acme-dup-%s') RETURNING tenant_id`, a.globexIDs[0], proto))
				if err != nil || !slices.Equal(rows, []string{"acme"}) {
					t.Errorf("%s: the same id as another tenant's entity: %q, %v", proto, rows, err)
				}
				rows, err = exec(pc, fmt.Sprintf(`INSERT INTO llmspell.entities (tenant_id, id, entity_type, name)
					VALUES ('acme', '%s', 'x', 'acme-dup-nothing-%s') ON CONFLICT (tenant_id, id) DO NOTHING RETURNING tenant_id`, a.globexIDs[1], proto))
				if err != nil || !slices.Equal(rows, []string{"acme"}) {
					t.Errorf("%s: ON CONFLICT DO NOTHING with another tenant's id: %q, %v", proto, rows, err)
				}
				rows, err = exec(pc, fmt.Sprintf(`SELECT name FROM llmspell.entities WHERE id = '%s'`, a.globexIDs[0]))
				if err != nil || !slices.Equal(rows, []string{"acme-dup-" + proto}) {
					t.Errorf("%s: by that id the attacker reads %q, %v", proto, rows, err)
				}
				exec(pc, "DELETE FROM llmspell.entities WHERE name LIKE 'acme-dup%'")
			}
			a.aftermath(t, a.p, attacker, victim)
		}},
		{"relationship to another tenant's entity", func(t *testing.T, a *arena) {
			victim := join(t, a.p, "bob", "globex")
			attacker := join(t, a.p, "alice", "acme")
			for proto, exec := range execs {
				try := func(target string) string {
					_, err := exec(attacker.conn.PgConn(), fmt.Sprintf(`INSERT INTO llmspell.relationships (tenant_id, source_id, target_id, relationship_type)
						VALUES ('acme', '%s', '%s', 'spy')`, a.acmeIDs[0], target))
					if codeOf(err) != "23503" {
						t.Errorf("%s: a relationship to %s: %v", proto, target, err)
					}
					text := errorText(err)
					if strings.Contains(text, "globex") || strings.Contains(text, "globex-") {
						t.Errorf("%s: the foreign-key error names the other tenant: %s", proto, text)
					}
					return strings.ReplaceAll(text, target, "ID")
				}
				existing, missing := try(a.globexIDs[0]), try(random)
				if existing != missing {
					t.Errorf("%s: the error tells an existing entity of another tenant from a missing one:\n%s\n%s", proto, existing, missing)
				}
			}
			a.aftermath(t, a.p, attacker, victim)
		}},
		{"upsert onto another tenant's row", func(t *testing.T, a *arena) {
			victim := join(t, a.p, "bob", "globex")
			attacker := join(t, a.p, "alice", "acme")
			for proto, exec := range execs {
				try := func(id string) string {
					rows, err := exec(attacker.conn.PgConn(), fmt.Sprintf(`INSERT INTO llmspell.entities (tenant_id, id, entity_type, name)
						VALUES ('globex', '%s', 'x', 'planted') ON CONFLICT (tenant_id, id) DO UPDATE SET name = 'pwned' RETURNING name`, id))
					if codeOf(err) != "42501" {
						t.Errorf("%s: upsert onto %s: %q, %v", proto, id, rows, err)
					}
					return strings.ReplaceAll(errorText(err), id, "ID")
				}
				existing, missing := try(a.globexIDs[0]), try(random)
				if existing != missing {
					t.Errorf("%s: the error tells an existing row of another tenant from a missing one:\n%s\n%s", proto, existing, missing)
				}
			}
			a.aftermath(t, a.p, attacker, victim)
		}},
		{"COPY out and in", func(t *testing.T, a *arena) {
			victim := join(t, a.p, "bob", "globex")
			attacker := join(t, a.p, "alice", "acme")
			pc := attacker.conn.PgConn()
			for _, sql := range []string{"COPY llmspell.entities TO STDOUT", "COPY llmspell.relationships TO STDOUT",
				"COPY (SELECT * FROM llmspell.vector_embeddings_384) TO STDOUT", "COPY llmspell.entities (tenant_id, name) TO STDOUT WITH (FORMAT csv)"} {
				var out strings.Builder
				_, err := pc.CopyTo(opContext(t), &out, sql)
				if err != nil {
					t.Errorf("%s: %v", sql, err)
				}
				a.noLeak(t, sql, []string{out.String()}, err)
				for line := range strings.Lines(out.String()) {
					if !strings.HasPrefix(line, "acme") {
						t.Errorf("%s gave %q", sql, line)
					}
				}
			}
			_, err := pc.CopyFrom(opContext(t), strings.NewReader("globex\tx\tplanted\n"), "COPY llmspell.entities (tenant_id, entity_type, name) FROM STDIN")
			if codeOf(err) != "0A000" {
				t.Errorf("COPY FROM into a tenant table: %v", err)
			}
			a.aftermath(t, a.p, attacker, victim)
		}},
		{"PREPARE TRANSACTION handed to another tenant", func(t *testing.T, a *arena) {
			victim := join(t, a.p, "bob", "globex")
			attacker := join(t, a.p, "alice", "acme")
			defer mustExec(t, a.admin, "DELETE FROM llmspell.entities WHERE name = 'acme-prepared-xact'")
			pc := attacker.conn.PgConn()
			simpleRows(pc, "BEGIN; INSERT INTO llmspell.entities (tenant_id, entity_type, name) VALUES ('acme', 'x', 'acme-prepared-xact')")
			if _, err := simpleRows(pc, "PREPARE TRANSACTION 'atk'"); err == nil {
				t.Errorf("PREPARE TRANSACTION succeeded")
			}
			simpleRows(pc, "ROLLBACK")
			for _, sql := range []string{"COMMIT PREPARED 'atk'", "ROLLBACK PREPARED 'atk'"} {
				if _, err := simpleRows(victim.conn.PgConn(), sql); err == nil {
					t.Errorf("the victim could %s", sql)
				}
			}
			if n := queryInt(t, a.admin, "SELECT count(*) FROM llmspell.entities WHERE name = 'acme-prepared-xact'"); n != 0 {
				t.Errorf("the prepared transaction's row was committed")
			}
			a.aftermath(t, a.p, attacker, victim)
		}},
	}
}

// inTenant checks, right after a reset, that the attacker's session holds its tenant again.
func inTenant(t *testing.T, pc *pgconn.PgConn, when string) {
	t.Helper()
	for _, exec := range []func(*pgconn.PgConn, string, ...string) ([]string, error){
		func(pc *pgconn.PgConn, s string, _ ...string) ([]string, error) { return simpleRows(pc, s) }, unnamedRows,
	} {
		rows, err := exec(pc, "SELECT coalesce(current_setting('app.current_tenant_id', true), '<unset>')")
		if err != nil || !slices.Equal(rows, []string{"acme"}) {
			t.Errorf("%s: the tenant context is %q, %v; want acme", when, rows, err)
		}
		rows, err = exec(pc, visibleSQL)
		if err != nil || !slices.Equal(rows, []string{"acme"}) {
			t.Errorf("%s: the attacker sees %q, %v", when, rows, err)
		}
	}
}

func resetCases() []customCase {
	simple := func(pc *pgconn.PgConn, s string) error { _, err := simpleRows(pc, s); return err }
	unnamed := func(pc *pgconn.PgConn, s string) error { _, err := unnamedRows(pc, s); return err }
	type step struct {
		name string
		run  func(t *testing.T, pc *pgconn.PgConn)
	}
	steps := []step{
		{"RESET ALL", func(t *testing.T, pc *pgconn.PgConn) {
			if err := simple(pc, "RESET ALL"); err != nil {
				t.Error(err)
			}
			inTenant(t, pc, "after RESET ALL")
		}},
		{"RESET ALL extended", func(t *testing.T, pc *pgconn.PgConn) {
			if err := unnamed(pc, "RESET ALL"); err != nil {
				t.Error(err)
			}
			inTenant(t, pc, "after RESET ALL")
		}},
		{"RESET ALL as a named statement run twice", func(t *testing.T, pc *pgconn.PgConn) {
			if _, err := pc.Prepare(opContext(t), "reset_it", "RESET ALL", nil); err != nil {
				t.Fatal(err)
			}
			for i := range 2 {
				if r := pc.ExecPrepared(opContext(t), "reset_it", nil, nil, nil).Read(); r.Err != nil {
					t.Error(r.Err)
				}
				inTenant(t, pc, fmt.Sprintf("after RESET ALL #%d", i+1))
			}
		}},
		{"DISCARD ALL", func(t *testing.T, pc *pgconn.PgConn) {
			if err := simple(pc, "DISCARD ALL"); err != nil {
				t.Error(err)
			}
			inTenant(t, pc, "after DISCARD ALL")
		}},
		{"DISCARD ALL extended", func(t *testing.T, pc *pgconn.PgConn) {
			if err := unnamed(pc, "DISCARD ALL"); err != nil {
				t.Error(err)
			}
			inTenant(t, pc, "after DISCARD ALL")
		}},
		{"RESET ALL in a transaction, committed", func(t *testing.T, pc *pgconn.PgConn) {
			simple(pc, "BEGIN")
			if err := simple(pc, "RESET ALL"); err != nil {
				t.Error(err)
			}
			inTenant(t, pc, "inside the transaction after RESET ALL")
			simple(pc, "COMMIT")
			inTenant(t, pc, "after COMMIT")
		}},
		{"RESET ALL in a transaction, rolled back", func(t *testing.T, pc *pgconn.PgConn) {
			simple(pc, "BEGIN")
			if err := unnamed(pc, "RESET ALL"); err != nil {
				t.Error(err)
			}
			inTenant(t, pc, "inside the transaction after RESET ALL")
			simple(pc, "ROLLBACK")
			inTenant(t, pc, "after ROLLBACK")
		}},
		{"RESET ALL and reads in one text", func(t *testing.T, pc *pgconn.PgConn) {
			rows, err := simpleRows(pc, "RESET ALL; SELECT 'tenant=' || coalesce(current_setting('app.current_tenant_id', true), ''); "+visibleSQL)
			if err != nil {
				t.Fatal(err)
			}
			for _, row := range rows {
				if row != "tenant=" && row != "tenant=acme" && row != "acme" {
					t.Errorf("in the same text as RESET ALL the attacker got %q", rows)
				}
			}
			inTenant(t, pc, "after the text")
		}},
		{"DISCARD ALL in a transaction", func(t *testing.T, pc *pgconn.PgConn) {
			simple(pc, "BEGIN")
			if err := simple(pc, "DISCARD ALL"); codeOf(err) != "25001" {
				t.Errorf("DISCARD ALL in a transaction: %v", err)
			}
			if err := simple(pc, "SELECT 1"); codeOf(err) != "25P02" {
				t.Errorf("after it: %v", err)
			}
			simple(pc, "ROLLBACK")
			inTenant(t, pc, "after ROLLBACK")
		}},
		{"RESET ALL in a pipeline before reads", func(t *testing.T, pc *pgconn.PgConn) {
			pl := pc.StartPipeline(opContext(t))
			pl.SendQueryParams("RESET ALL", nil, nil, nil, nil)
			pl.SendQueryParams("SELECT 'tenant=' || coalesce(current_setting('app.current_tenant_id', true), '')", nil, nil, nil, nil)
			pl.SendQueryParams(visibleSQL, nil, nil, nil, nil)
			pl.SendPipelineSync()
			pl.SendQueryParams("SELECT 'tenant=' || coalesce(current_setting('app.current_tenant_id', true), '')", nil, nil, nil, nil)
			pl.SendPipelineSync()
			if err := pl.Flush(); err != nil {
				t.Fatal(err)
			}
			var got []string
			for range 6 {
				res, err := pl.GetResults()
				if rr, ok := res.(*pgconn.ResultReader); ok {
					r := rr.Read()
					got = append(got, textRows(r.Rows)...)
					err = r.Err
				}
				if err != nil {
					got = append(got, "E "+codeOf(err))
				}
			}
			pl.Close()
			if len(got) == 0 || got[len(got)-1] != "tenant=acme" {
				t.Errorf("after a pipeline with RESET ALL: %q", got)
			}
			for _, g := range got[:len(got)-1] {
				if g != "tenant=" && g != "tenant=acme" && g != "acme" {
					t.Errorf("in the pipeline with RESET ALL the attacker got %q", got)
				}
			}
			inTenant(t, pc, "after the pipeline")
		}},
	}
	var cases []customCase
	for _, s := range steps {
		cases = append(cases, customCase{s.name, func(t *testing.T, a *arena) {
			// A proxy of its own: the attacker's startup setting must not linger in the
			// arena's pool when the proxy leaves it behind.
			p := startProxy(t, a.db, a.mode, sharedPool(a.mode))
			victim := join(t, p, "bob", "globex")
			attacker := join(t, p, "alice", "acme")
			s.run(t, attacker.conn.PgConn())
			a.aftermath(t, p, attacker, victim)
		}})
	}
	// What RESET ALL and DISCARD ALL return to: the settings the client asked for at startup
	// (as a server of its own would), not the proxy's backend defaults.
	cases = append(cases, customCase{"RESET ALL and DISCARD ALL return to the client's startup settings", func(t *testing.T, a *arena) {
		p := startProxy(t, a.db, a.mode, sharedPool(a.mode))
		attacker := join(t, p, "alice", "acme", "application_name=atk-app")
		pc := attacker.conn.PgConn()
		for _, sql := range []string{"RESET ALL", "DISCARD ALL"} {
			for _, exec := range []func(*pgconn.PgConn, string, ...string) ([]string, error){
				func(pc *pgconn.PgConn, s string, _ ...string) ([]string, error) { return simpleRows(pc, s) }, unnamedRows,
			} {
				if _, err := exec(pc, sql); err != nil {
					t.Fatal(err)
				}
				rows, err := exec(pc, "SHOW application_name")
				if err != nil || !slices.Equal(rows, []string{"atk-app"}) {
					t.Errorf("after %s application_name is %q, %v; want atk-app, the client's startup value", sql, rows, err)
				}
				inTenant(t, pc, "after "+sql)
			}
		}
		a.aftermath(t, p, attacker, nil)
	}})
	// A savepoint taken after RESET ALL, in the same message batch, and rolled back to: the
	// server's context goes back to what RESET ALL left (nothing), and the proxy must notice.
	savepoint := func(t *testing.T, a *arena, batch func(r *rawConn)) {
		p := startProxy(t, a.db, a.mode, sharedPool(a.mode))
		victim := join(t, p, "bob", "globex")
		r := rawAs(t, p, "alice")
		batch(r)
		r.send(&pgproto3.Query{String: "ROLLBACK TO SAVEPOINT s"}, &pgproto3.Query{String: "SELECT coalesce(current_setting('app.current_tenant_id', true), '<unset>')"},
			&pgproto3.Query{String: "COMMIT"}, &pgproto3.Query{String: "SELECT coalesce(current_setting('app.current_tenant_id', true), '<unset>')"})
		wantEvents(t, a.events(r, 4), "C ROLLBACK", "Z T", "D acme", "C SELECT 1", "Z T", "C COMMIT", "Z I", "D acme", "C SELECT 1", "Z I")
		r.conn.Close()
		// The next client of the same tenant, on the same backend in transaction mode.
		next := join(t, p, "alice", "acme")
		a.aftermath(t, p, next, victim)
	}
	cases = append(cases,
		customCase{"RESET ALL then SAVEPOINT in one Query, rolled back to", func(t *testing.T, a *arena) {
			savepoint(t, a, func(r *rawConn) {
				r.send(&pgproto3.Query{String: "BEGIN; RESET ALL; SAVEPOINT s"})
				wantEvents(t, a.events(r, 1), "C BEGIN", "C RESET", "C SAVEPOINT", "Z T")
			})
		}},
		customCase{"RESET ALL then SAVEPOINT in one pipeline, rolled back to", func(t *testing.T, a *arena) {
			savepoint(t, a, func(r *rawConn) {
				r.send(&pgproto3.Query{String: "BEGIN"}, &pgproto3.Parse{Query: "RESET ALL"}, &pgproto3.Bind{}, &pgproto3.Execute{},
					&pgproto3.Parse{Query: "SAVEPOINT s"}, &pgproto3.Bind{}, &pgproto3.Execute{}, &pgproto3.Sync{})
				wantEvents(t, a.events(r, 2), "C BEGIN", "Z T", "1", "2", "C RESET", "1", "2", "C SAVEPOINT", "Z T")
			})
		}},
	)
	return cases
}

// leakCases: settings a client may change for itself (the proxy tracks and replays them in
// transaction mode) must not reach the next client of its backend.
func leakCases() []customCase {
	type leak struct {
		name, set string
		probe     string // run by the victim: its answer must not change
	}
	leaks := []leak{
		{"application_name from the startup packet", "startup:application_name=acme-was-here", "SHOW application_name"},
		{"DateStyle from the startup packet", "startup:DateStyle=SQL,%20DMY", "SELECT '03/04/2024'::date::text"},
		{"TimeZone", "SET TimeZone = 'Asia/Kathmandu'", "SELECT current_setting('TimeZone') || ' ' || timestamptz '2024-01-01 00:00:00+00'"},
		{"DateStyle", "SET DateStyle = 'SQL, DMY'", "SELECT '03/04/2024'::date::text"},
		{"IntervalStyle", "SET IntervalStyle = 'sql_standard'", "SELECT interval '1 day 2 hours'::text"},
		{"default_transaction_read_only", "SET default_transaction_read_only = on", "SHOW transaction_read_only"},
		{"client_encoding", "SET client_encoding = 'LATIN1'", "SELECT length('é') || ' ' || current_setting('client_encoding')"},
		{"application_name", "SET application_name = 'acme-was-here'", "SHOW application_name"},
		{"session characteristics", "SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY", "SHOW default_transaction_read_only"},
		{"SET LOCAL in a committed transaction", "BEGIN; SET LOCAL TimeZone = 'Asia/Kathmandu'; COMMIT", "SHOW TimeZone"},
		{"RESET after SET", "SET TimeZone = 'Asia/Kathmandu'; RESET TimeZone", "SHOW TimeZone"},
	}
	var cases []customCase
	for _, l := range leaks {
		cases = append(cases, customCase{l.name, func(t *testing.T, a *arena) {
			p := startProxy(t, a.db, a.mode, sharedPool(a.mode))
			victim := join(t, p, "bob", "globex")
			probe := func() string {
				rows, err := simpleRows(victim.conn.PgConn(), l.probe)
				return fmt.Sprintf("%q %s", rows, codeOf(err))
			}
			before := probe()
			var attacker *peer
			if param, ok := strings.CutPrefix(l.set, "startup:"); ok {
				attacker = join(t, p, "alice", "acme", param)
				simpleRows(attacker.conn.PgConn(), "SELECT 1")
			} else {
				attacker = join(t, p, "alice", "acme")
				_, err := simpleRows(attacker.conn.PgConn(), l.set)
				t.Logf("the attacker's %q: %v", l.set, err)
			}
			if after := probe(); after != before {
				t.Errorf("the attacker's %q reached the victim's session: %s became %s", l.set, before, after)
			}
			a.aftermath(t, p, attacker, victim)
		}})
	}
	return cases
}

// vanishCases: a client disappears in the middle of something; another tenant's client on the
// same single backend must find nothing left over, and nothing the vanished client did without
// committing may be committed.
func vanishCases() []customCase {
	insert := func(name string) string {
		return fmt.Sprintf("INSERT INTO llmspell.entities (tenant_id, entity_type, name) VALUES ('acme', 'x', 'vanished-%s')", name)
	}
	q := func(s string) *pgproto3.Query { return &pgproto3.Query{String: s} }
	type vanish struct {
		name string
		send func(t *testing.T, a *arena, r *rawConn)
	}
	vanishes := []vanish{
		{"inside BEGIN after an INSERT", func(t *testing.T, a *arena, r *rawConn) {
			r.send(q("BEGIN; " + insert("1")))
			wantEvents(t, a.events(r, 1), "C BEGIN", "C INSERT 0 1", "Z T")
		}},
		{"after an unsynced extended INSERT", func(t *testing.T, a *arena, r *rawConn) {
			r.send(&pgproto3.Parse{Query: insert("2")}, &pgproto3.Bind{}, &pgproto3.Execute{}, &pgproto3.Flush{})
			until[*pgproto3.CommandComplete](r)
		}},
		{"after an unsynced extended BEGIN and INSERT", func(t *testing.T, a *arena, r *rawConn) {
			r.send(&pgproto3.Parse{Query: "BEGIN"}, &pgproto3.Bind{}, &pgproto3.Execute{},
				&pgproto3.Parse{Query: insert("3")}, &pgproto3.Bind{}, &pgproto3.Execute{}, &pgproto3.Flush{})
			until[*pgproto3.CommandComplete](r)
			until[*pgproto3.CommandComplete](r)
		}},
		{"after an unsynced extended error", func(t *testing.T, a *arena, r *rawConn) {
			r.send(&pgproto3.Parse{Query: "SELECT 1/0"}, &pgproto3.Bind{}, &pgproto3.Execute{}, &pgproto3.Flush{})
			until[*pgproto3.ErrorResponse](r)
		}},
		{"in the middle of COPY FROM STDIN", func(t *testing.T, a *arena, r *rawConn) {
			r.send(q("COPY public.attack_copy FROM STDIN"))
			until[*pgproto3.CopyInResponse](r)
			r.send(&pgproto3.CopyData{Data: []byte("acme\tvanished-copy\n")})
		}},
		{"in a failed transaction", func(t *testing.T, a *arena, r *rawConn) {
			r.send(q("BEGIN; "+insert("4")), q("SELECT 1/0"))
			wantEvents(t, a.events(r, 2), "C BEGIN", "C INSERT 0 1", "Z T", "E 22012", "Z E")
		}},
		{"after RESET ALL in a transaction", func(t *testing.T, a *arena, r *rawConn) {
			r.send(q("BEGIN"), q("RESET ALL"), q(insert("5")))
			got := a.events(r, 3)
			if len(got) < 4 || got[0] != "C BEGIN" {
				t.Errorf("answers %q", got)
			}
		}},
		{"with a query running", func(t *testing.T, a *arena, r *rawConn) {
			r.send(q("BEGIN; " + insert("6") + "; SELECT pg_sleep(0.3), 'marker-vanish-6'"))
			a.waitActive(t, "marker-vanish-6")
		}},
		{"after a refusal in a transaction", func(t *testing.T, a *arena, r *rawConn) {
			r.send(q("BEGIN"), q(insert("7")), q("SET app.current_tenant_id = 'globex'"))
			wantEvents(t, a.events(r, 3), "C BEGIN", "Z T", "C INSERT 0 1", "Z T", "E 42501", "Z E")
		}},
		{"with pipelined messages unread", func(t *testing.T, a *arena, r *rawConn) {
			r.send(q("BEGIN"), q(insert("8")+"; SELECT pg_sleep(0.2), 'marker-vanish-8'"), setConfigCall,
				&pgproto3.Parse{Query: insert("9")}, &pgproto3.Bind{}, &pgproto3.Execute{})
			a.waitActive(t, "marker-vanish-8")
		}},
	}
	var cases []customCase
	for _, v := range vanishes {
		cases = append(cases, customCase{v.name, func(t *testing.T, a *arena) {
			since := queryString(t, a.admin, "SELECT clock_timestamp()::text") // before the proxy opens any backend
			p := a.ownProxy(t, 1, func(c *config.Config) { c.Pool.CheckoutTimeout = config.Duration{Duration: 2 * time.Second} })
			t.Cleanup(func() {
				mustExec(t, a.admin, "DELETE FROM llmspell.entities WHERE name LIKE 'vanished-%'")
				mustExec(t, a.admin, "DELETE FROM public.attack_copy")
			})
			before := join(t, p, "bob", "globex")
			base := before.base
			before.conn.Close(ctx)
			r := rawAs(t, p, "alice")
			v.send(t, a, r)
			r.conn.Close()

			// Once the proxy is done with the vanished client (its backend back in the pool or
			// closed), no session of the app role may be left inside a transaction.
			deadline := time.Now().Add(opTimeout)
			for st := p.srv.Pool().Stats(); st.Open != st.Idle; st = p.srv.Pool().Stats() {
				if time.Now().After(deadline) {
					t.Fatalf("the proxy never let go of the vanished client's backend: %+v", st)
				}
				time.Sleep(5 * time.Millisecond)
			}
			// A backend the proxy closed ends on the server a moment later (and rolls back then):
			// wait for the server, with a deadline, instead of reading its state once.
			for {
				states := pgtest.QueryStrings(t, a.admin, `SELECT state || ', transaction open since ' || coalesce(xact_start::text, '-') FROM pg_stat_activity
					WHERE datname = current_database() AND usename = 'tenantproxy_app' AND backend_start >= $1::timestamptz
					AND (xact_start IS NOT NULL OR state LIKE 'idle in%')`, since)
				if len(states) == 0 {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("after the client vanished, a backend of the pool is %q", states)
				}
				time.Sleep(5 * time.Millisecond)
			}

			// The next client, another tenant, on the one backend.
			conn, err := pgx.Connect(opContext(t), p.url("bob"))
			if err != nil {
				t.Fatalf("the next client could not connect: %v", err)
			}
			t.Cleanup(func() { conn.Close(ctx) })
			victim := &peer{conn: conn, user: "bob", tenant: "globex", base: base}
			victim.verify(t, a, "the next client", true)
			if n := queryInt(t, a.admin, "SELECT count(*) FROM llmspell.entities WHERE name LIKE 'vanished-%'"); n != 0 {
				t.Errorf("%d rows of the vanished client's unfinished work were committed", n)
			}
			if n := queryInt(t, a.admin, "SELECT count(*) FROM public.attack_copy"); n != 0 {
				t.Errorf("%d rows of the vanished client's COPY were committed", n)
			}
			victim.conn.Close(ctx)
			a.aftermath(t, p, join(t, p, "alice", "acme"), nil)
		}})
	}
	return cases
}

// stormCase: attackers cycle through refusals and resets while victims of another tenant keep
// checking, on a pool smaller than the number of clients.
func stormCase() customCase {
	return customCase{"reset and refusal storm on a small pool", func(t *testing.T, a *arena) {
		size := 2
		if a.mode == "session" {
			size = 4
		}
		p := a.ownProxy(t, size, func(c *config.Config) { c.Pool.CheckoutTimeout = config.Duration{Duration: 10 * time.Second} })
		type client struct {
			user, tenant string
			extra        []string
			attacker     bool
		}
		clients := []client{{"alice", "acme", nil, true}, {"carol", "acme", nil, true},
			{"bob", "globex", nil, false}, {"dave", "globex", []string{"tenant=globex"}, false}}
		attacks := []string{
			"SET app.current_tenant_id = 'globex'", "RESET ALL", "DISCARD ALL", "DEALLOCATE ALL",
			"SELECT set_config('app.current_tenant_id', 'globex', false)", "BEGIN; RESET ALL; SELECT 1", "COMMIT",
			"RESET ALL; SELECT 1", "SET LOCAL app.current_tenant_id = 'globex'",
		}
		errs := make(chan error, 100)
		var wg sync.WaitGroup
		for _, cl := range clients {
			wg.Go(func() {
				c, cancel := context.WithTimeout(ctx, 60*time.Second)
				defer cancel()
				conn, err := pgx.Connect(c, p.url(cl.user, cl.extra...))
				if err != nil {
					errs <- err
					return
				}
				defer conn.Close(ctx)
				pc := conn.PgConn()
				for i := range 40 {
					if cl.attacker {
						sql := attacks[i%len(attacks)]
						if i%2 == 0 {
							simpleRows(pc, sql)
						} else {
							unnamedRows(pc, strings.TrimSuffix(sql, "; SELECT 1"))
						}
						if sql == "BEGIN; RESET ALL; SELECT 1" {
							if rows, err := simpleRows(pc, "SELECT coalesce(current_setting('app.current_tenant_id', true), '<unset>')"); err != nil || !slices.Equal(rows, []string{cl.tenant}) {
								errs <- fmt.Errorf("%s, round %d, in a transaction after RESET ALL: tenant %q, %v", cl.user, i, rows, err)
							}
							simpleRows(pc, "COMMIT")
						}
					}
					for _, exec := range []func(*pgconn.PgConn, string, ...string) ([]string, error){
						func(pc *pgconn.PgConn, s string, _ ...string) ([]string, error) { return simpleRows(pc, s) }, unnamedRows,
					} {
						rows, err := exec(pc, "SELECT coalesce(current_setting('app.current_tenant_id', true), '<unset>')")
						if err != nil || !slices.Equal(rows, []string{cl.tenant}) {
							errs <- fmt.Errorf("%s, round %d: tenant %q, %v", cl.user, i, rows, err)
						}
						rows, err = exec(pc, visibleSQL)
						if err != nil || !slices.Equal(rows, []string{cl.tenant}) {
							errs <- fmt.Errorf("%s, round %d: sees %q, %v", cl.user, i, rows, err)
						}
					}
				}
			})
		}
		wg.Wait()
		close(errs)
		n := 0
		for err := range errs {
			if n++; n <= 10 {
				t.Error(err)
			}
		}
		a.aftermath(t, p, join(t, p, "alice", "acme"), join(t, p, "bob", "globex"))
	}}
}
