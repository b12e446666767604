package proxy_test

import (
	"encoding/binary"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"
	"github.com/tenantproxy/tenantproxy/internal/pgtest"
)

// Raw-protocol scenes: pipelines, messages the server throws away, cursors, large messages.

func pipelineCases() []customCase {
	bad := "SELECT " + setConfigGlobex
	show := &pgproto3.Query{String: "SHOW app.current_tenant_id"}
	q := func(s string) *pgproto3.Query { return &pgproto3.Query{String: s} }
	parse := func(s string) *pgproto3.Parse { return &pgproto3.Parse{Query: s} }
	bind, exec, sync := &pgproto3.Bind{}, &pgproto3.Execute{}, &pgproto3.Sync{}
	return []customCase{
		{"bad query between good ones in one write", func(t *testing.T, a *arena) {
			r, victim := a.rawScene(t)
			r.send(q("SELECT 1"), q("SET app.current_tenant_id = 'globex'"), show)
			wantEvents(t, a.events(r, 3), "D 1", "C SELECT 1", "Z I", "E 42501", "Z I", "D acme", "C SHOW", "Z I")
			a.rawAftermath(t, r, victim)
		}},
		{"bad extended group between good ones in one write", func(t *testing.T, a *arena) {
			r, victim := a.rawScene(t)
			r.send(parse("SELECT 1"), bind, exec, sync, parse(bad), bind, exec, sync, parse("SHOW app.current_tenant_id"), bind, exec, sync)
			wantEvents(t, a.events(r, 3), "1", "2", "D 1", "C SELECT 1", "Z I", "E 42501", "Z I", "1", "2", "D acme", "C SHOW", "Z I")
			a.rawAftermath(t, r, victim)
		}},
		{"bad Parse in the middle of a group", func(t *testing.T, a *arena) {
			r, victim := a.rawScene(t)
			r.send(parse("SELECT 1"), bind, exec, parse(bad), bind, exec, parse("SHOW app.current_tenant_id"), bind, exec, sync,
				parse("SHOW app.current_tenant_id"), bind, exec, sync)
			wantEvents(t, a.events(r, 2), "1", "2", "D 1", "C SELECT 1", "E 42501", "Z I", "1", "2", "D acme", "C SHOW", "Z I")
			a.rawAftermath(t, r, victim)
		}},
		{"bad Parse first, before any backend", func(t *testing.T, a *arena) {
			r, victim := a.rawScene(t)
			r.send(parse(bad), bind, exec, sync, show)
			wantEvents(t, a.events(r, 2), "E 42501", "Z I", "D acme", "C SHOW", "Z I")
			a.rawAftermath(t, r, victim)
		}},
		{"bad query pipelined in a transaction block", func(t *testing.T, a *arena) {
			r, victim := a.rawScene(t)
			r.send(q("BEGIN"), q("SET LOCAL app.current_tenant_id = 'globex'"), q("SELECT 1"), q("ROLLBACK"), show)
			wantEvents(t, a.events(r, 5), "C BEGIN", "Z T", "E 42501", "Z E", "E 25P02", "Z E", "C ROLLBACK", "Z I", "D acme", "C SHOW", "Z I")
			a.rawAftermath(t, r, victim)
		}},
		{"bad Parse pipelined in a transaction block", func(t *testing.T, a *arena) {
			r, victim := a.rawScene(t)
			r.send(q("BEGIN"), parse(bad), bind, exec, sync, parse("SELECT 1"), bind, exec, sync, q("ROLLBACK"), show)
			wantEvents(t, a.events(r, 5), "C BEGIN", "Z T", "E 42501", "Z E", "E 25P02", "Z E", "C ROLLBACK", "Z I", "D acme", "C SHOW", "Z I")
			a.rawAftermath(t, r, victim)
		}},
		{"FunctionCall set_config pipelined", func(t *testing.T, a *arena) {
			r, victim := a.rawScene(t)
			r.send(q("SELECT 1"), setConfigCall, show)
			wantEvents(t, a.events(r, 3), "D 1", "C SELECT 1", "Z I", "E 42501", "Z I", "D acme", "C SHOW", "Z I")
			a.rawAftermath(t, r, victim)
		}},
		{"FunctionCall in a transaction block", func(t *testing.T, a *arena) {
			r, victim := a.rawScene(t)
			r.send(q("BEGIN"), setConfigCall, q("SELECT 1"), q("ROLLBACK"), show)
			wantEvents(t, a.events(r, 5), "C BEGIN", "Z T", "E 42501", "Z E", "E 25P02", "Z E", "C ROLLBACK", "Z I", "D acme", "C SHOW", "Z I")
			a.rawAftermath(t, r, victim)
		}},
		{"FunctionCall before any backend", func(t *testing.T, a *arena) {
			r, victim := a.rawScene(t)
			r.send(setConfigCall, show)
			wantEvents(t, a.events(r, 2), "E 42501", "Z I", "D acme", "C SHOW", "Z I")
			a.rawAftermath(t, r, victim)
		}},
		{"SET hidden after a zero byte in a Query", func(t *testing.T, a *arena) {
			r, victim := a.rawScene(t)
			r.write(queryMessage("SELECT 1\x00SET app.current_tenant_id = 'globex'"))
			r.send(show)
			wantEvents(t, a.events(r, 2), "E *", "Z I", "D acme", "C SHOW", "Z I")
			a.rawAftermath(t, r, victim)
		}},
		{"SET hidden after a zero byte in a Parse", func(t *testing.T, a *arena) {
			r, victim := a.rawScene(t)
			msg := append([]byte{'P', 0, 0, 0, 0, 0}, "SELECT 1\x00SET app.current_tenant_id = 'globex'\x00\x00\x00"...)
			binary.BigEndian.PutUint32(msg[1:], uint32(len(msg)-1))
			r.write(msg)
			r.send(sync)
			got := a.events(r, 1)
			if len(got) == 0 || !strings.HasPrefix(got[0], "E ") {
				t.Errorf("a Parse with a zero byte in its text: %q", got)
			}
			if got[len(got)-1] != "FATAL" {
				a.rawVerify(t, r, "acme")
			}
			r.conn.Close()
			a.aftermath(t, a.p, join(t, a.p, "alice", "acme"), victim)
		}},
		{"refused named Parse leaves no statement", func(t *testing.T, a *arena) {
			r, victim := a.rawScene(t)
			r.send(&pgproto3.Parse{Name: "evil", Query: bad}, sync,
				&pgproto3.Bind{PreparedStatement: "evil"}, exec, sync,
				&pgproto3.Describe{ObjectType: 'S', Name: "evil"}, sync)
			wantEvents(t, a.events(r, 3), "E 42501", "Z I", "E 26000", "Z I", "E 26000", "Z I")
			a.rawAftermath(t, r, victim)
		}},
		{"CopyData and CopyDone outside COPY", func(t *testing.T, a *arena) {
			r, victim := a.rawScene(t)
			r.send(&pgproto3.CopyData{Data: []byte("SET app.current_tenant_id = 'globex'")}, &pgproto3.CopyDone{},
				&pgproto3.CopyFail{Message: "x"}, show)
			wantEvents(t, a.events(r, 1), "D acme", "C SHOW", "Z I")
			a.rawAftermath(t, r, victim)
		}},
		{"COPY IN aborted by a pipelined message", func(t *testing.T, a *arena) {
			// The server ignores Sync during COPY IN, so the proxy forgets the Syncs queued
			// behind a COPY; a Parse pipelined behind it then aborts the COPY, and the server
			// answers (or hangs up) where the proxy expects nothing. Whatever it sent must not
			// reach, or break, the next client of that backend.
			p := disposableProxy(t, a.db, a.mode, sharedPool(a.mode))
			victim := join(t, p, "bob", "globex")
			r := rawAs(t, p, "alice")
			r.send(parse("COPY public.attack_copy FROM STDIN"), bind, exec, sync, parse("SELECT 1"), sync, sync, sync)
			until[*pgproto3.CopyInResponse](r)
			r.send(&pgproto3.CopyDone{})
			r.conn.SetDeadline(time.Now().Add(2 * time.Second))
			for {
				if _, err := r.fe.Receive(); err != nil {
					break
				}
			}
			r.conn.Close()
			for round := range 3 {
				for _, pe := range []struct{ user, tenant string }{{"bob", "globex"}, {"alice", "acme"}} {
					conn, err := pgx.Connect(opContext(t), p.url(pe.user))
					if err != nil {
						t.Errorf("round %d: %s could not connect: %v", round, pe.user, err)
						continue
					}
					next := &peer{conn: conn, user: pe.user, tenant: pe.tenant}
					for range 2 {
						rows, err := simpleRows(conn.PgConn(), "SELECT DISTINCT tenant_id FROM llmspell.entities")
						if err != nil || !slices.Equal(rows, []string{pe.tenant}) {
							t.Errorf("round %d: %s got %q, %v", round, pe.user, rows, err)
						}
						a.noLeak(t, pe.user, rows, err)
					}
					next.conn.Close(ctx)
				}
			}
			a.aftermath(t, p, nil, victim)
		}},
		{"extended COPY whose Sync the server ignored", func(t *testing.T, a *arena) {
			// Parse/Bind/Execute/Sync of a COPY: the server ignores that Sync (it came during
			// COPY IN), so after CopyDone the implicit transaction is still open until the
			// client's next Sync. The backend is not idle then, and must not go to anyone else.
			since := queryString(t, a.admin, "SELECT clock_timestamp()::text") // before the proxy opens any backend
			p := disposableProxy(t, a.db, a.mode, sharedPool(a.mode))
			t.Cleanup(func() { mustExec(t, a.admin, "DELETE FROM public.attack_copy") })
			victim := join(t, p, "bob", "globex")
			r := rawAs(t, p, "alice")
			r.send(parse("COPY public.attack_copy FROM STDIN"), bind, exec, sync)
			until[*pgproto3.CopyInResponse](r)
			r.send(&pgproto3.CopyData{Data: []byte("acme\tunsynced copy\n")}, &pgproto3.CopyDone{}, &pgproto3.Flush{})
			until[*pgproto3.CommandComplete](r)
			// By the time the client has CommandComplete, the proxy has settled: a backend it
			// counts as idle must not be inside a transaction.
			st := p.srv.Pool().Stats()
			inTx := pgtest.QueryStrings(t, a.admin, `SELECT state FROM pg_stat_activity WHERE datname = current_database()
				AND usename = 'tenantproxy_app' AND xact_start IS NOT NULL AND backend_start >= $1::timestamptz`, since)
			if st.Idle+len(inTx) > st.Open {
				t.Errorf("the pool counts %d of %d backends idle while %d is inside the attacker's transaction", st.Idle, st.Open, len(inTx))
			}
			// The victim's next statement runs outside the attacker's transaction: on another
			// backend, or, when the attacker holds the only one, not at all until it is done.
			rows, err := simpleRows(victim.conn.PgConn(), "SELECT count(*) FROM public.attack_copy")
			var pgErr *pgconn.PgError
			waited := errors.As(err, &pgErr) && pgErr.Code == "53300"
			if !waited && (err != nil || !slices.Equal(rows, []string{"0"})) {
				t.Errorf("the victim sees the attacker's uncommitted COPY: %q, %v", rows, err)
			}
			r.send(sync)
			until[*pgproto3.ReadyForQuery](r)
			a.rawAftermath(t, r, victim)
		}},
		{"pgx batch with a bad statement in the middle", func(t *testing.T, a *arena) {
			victim := join(t, a.p, "bob", "globex")
			for _, mode := range []pgx.QueryExecMode{pgx.QueryExecModeCacheStatement, pgx.QueryExecModeExec, pgx.QueryExecModeSimpleProtocol} {
				attacker := join(t, a.p, "alice", "acme", "default_query_exec_mode="+queryExecModeName(mode))
				b := &pgx.Batch{}
				b.Queue("SELECT 1")
				b.Queue(bad)
				b.Queue("SELECT current_setting('app.current_tenant_id', true)")
				res := attacker.conn.SendBatch(opContext(t), b)
				_, err1 := res.Exec()
				_, err2 := res.Exec()
				var third string
				err3 := res.QueryRow().Scan(&third)
				res.Close()
				switch {
				case mode != pgx.QueryExecModeExec: // one Query, or pgx prepares the whole batch first: refused whole
					if codeOf(err1) != "42501" {
						t.Errorf("%v batch: %v", mode, err1)
					}
				case err1 != nil:
					t.Errorf("%v: first statement: %v", mode, err1)
				case codeOf(err2) != "42501":
					t.Errorf("%v: second statement: %v", mode, err2)
				case err3 == nil && third != "acme":
					t.Errorf("%v: third statement ran with tenant %q", mode, third)
				}
				attacker.verify(t, a, "the attacker", false)
				attacker.conn.Close(ctx)
			}
			a.aftermath(t, a.p, nil, victim)
		}},
		{"pgconn pipeline with syncs", func(t *testing.T, a *arena) {
			victim := join(t, a.p, "bob", "globex")
			attacker := join(t, a.p, "alice", "acme")
			pl := attacker.conn.PgConn().StartPipeline(opContext(t))
			pl.SendQueryParams("SELECT 1", nil, nil, nil, nil)
			pl.SendPipelineSync()
			pl.SendQueryParams(bad, nil, nil, nil, nil)
			pl.SendPipelineSync()
			pl.SendQueryParams("SELECT current_setting('app.current_tenant_id', true)", nil, nil, nil, nil)
			pl.SendPipelineSync()
			if err := pl.Flush(); err != nil {
				t.Fatal(err)
			}
			var got []string
			for range 6 {
				res, err := pl.GetResults()
				switch res := res.(type) {
				case *pgconn.ResultReader:
					r := res.Read()
					if r.Err != nil {
						got = append(got, "E "+codeOf(r.Err))
					} else {
						got = append(got, textRows(r.Rows)...)
					}
				case *pgconn.PipelineSync:
					got = append(got, "sync")
				default:
					if err != nil {
						got = append(got, "E "+codeOf(err))
					}
				}
			}
			pl.Close()
			wantEvents(t, got, "1", "sync", "E 42501", "sync", "acme", "sync")
			a.aftermath(t, a.p, attacker, victim)
		}},
	}
}

func cursorCases() []customCase {
	return []customCase{
		{"WITH HOLD cursor left for the next client", func(t *testing.T, a *arena) {
			attacker := join(t, a.p, "alice", "acme")
			pc := attacker.conn.PgConn()
			_, err := simpleRows(pc, "DECLARE atk_hold CURSOR WITH HOLD FOR SELECT tenant_id FROM llmspell.entities")
			switch {
			case a.mode == "transaction":
				// The arena's pool has one backend: none may be kept for a cursor.
				if codeOf(err) != "53400" {
					t.Errorf("DECLARE WITH HOLD with a pool of one: %v, want 53400", err)
				}
			case err != nil:
				t.Fatalf("DECLARE WITH HOLD: %v", err)
			default:
				if rows, err := simpleRows(pc, "FETCH 1 FROM atk_hold"); err != nil || len(rows) != 1 || rows[0] != "acme" {
					t.Errorf("FETCH of its own cursor: %q, %v", rows, err)
				}
			}
			attacker.verify(t, a, "the attacker", false)
			attacker.conn.Close(ctx)
			victim := join(t, a.p, "bob", "globex")
			for _, sql := range []string{"FETCH ALL FROM atk_hold", "MOVE 1 IN atk_hold", "CLOSE atk_hold"} {
				if rows, err := simpleRows(victim.conn.PgConn(), sql); codeOf(err) != "34000" {
					t.Errorf("%s on the attacker's former backend: %q, %v", sql, rows, err)
				}
			}
			a.aftermath(t, a.p, nil, victim)
		}},
		{"cursor of a committed transaction", func(t *testing.T, a *arena) {
			victim := join(t, a.p, "bob", "globex")
			attacker := join(t, a.p, "alice", "acme")
			if _, err := simpleRows(attacker.conn.PgConn(), "BEGIN; DECLARE atk_c CURSOR FOR SELECT name FROM llmspell.entities; FETCH 1 FROM atk_c; COMMIT"); err != nil {
				t.Fatal(err)
			}
			if rows, err := simpleRows(victim.conn.PgConn(), "FETCH ALL FROM atk_c"); codeOf(err) != "34000" {
				t.Errorf("FETCH of the attacker's cursor: %q, %v", rows, err)
			}
			a.aftermath(t, a.p, attacker, victim)
		}},
		{"temporary objects and search_path", func(t *testing.T, a *arena) {
			victim := join(t, a.p, "bob", "globex")
			attacker := join(t, a.p, "alice", "acme")
			pc := attacker.conn.PgConn()
			simpleRows(pc, "SET search_path = pg_temp, llmspell")
			simpleRows(pc, "CREATE TEMP TABLE entities (tenant_id text, name text)")
			simpleRows(pc, "INSERT INTO entities VALUES ('globex', 'planted')")
			rows, err := simpleRows(pc, "SELECT DISTINCT tenant_id FROM entities")
			if err == nil && !slices.Equal(rows, []string{"acme"}) || err != nil && codeOf(err) != "42P01" {
				t.Errorf("the attacker's unqualified entities: %q, %v", rows, err)
			}
			if rows, err := simpleRows(victim.conn.PgConn(), "SELECT DISTINCT tenant_id FROM entities"); codeOf(err) != "42P01" {
				t.Errorf("the victim's unqualified entities: %q, %v", rows, err)
			}
			if rows, err := simpleRows(victim.conn.PgConn(), "SELECT count(*) FROM pg_catalog.pg_class WHERE relpersistence = 't'"); err != nil || !slices.Equal(rows, []string{"0"}) {
				t.Errorf("temporary relations exist: %q, %v", rows, err)
			}
			a.aftermath(t, a.p, attacker, victim)
		}},
		{"row_security off", func(t *testing.T, a *arena) {
			victim := join(t, a.p, "bob", "globex")
			attacker := join(t, a.p, "alice", "acme")
			pc := attacker.conn.PgConn()
			// The client's own setting, carried in both modes: reading RLS tables then fails
			// instead of filtering, for this client only.
			if _, err := simpleRows(pc, "SET row_security = off"); err != nil {
				t.Errorf("SET row_security: %v", err)
			}
			for range 2 { // in transaction mode, across backends too
				rows, err := simpleRows(pc, visibleSQL)
				if codeOf(err) != "42501" {
					t.Errorf("with row_security off the attacker reads %q, %v", rows, err)
				}
				a.noLeak(t, "row_security off", rows, err)
			}
			victim.verify(t, a, "the victim, while the attacker has row_security off", true)
			if _, err := simpleRows(pc, "RESET row_security"); err != nil {
				t.Errorf("RESET row_security: %v", err)
			}
			for _, exec := range []func(*pgconn.PgConn, string, ...string) ([]string, error){
				func(pc *pgconn.PgConn, s string, _ ...string) ([]string, error) { return simpleRows(pc, s) }, unnamedRows,
			} {
				if _, err := simpleRows(pc, "BEGIN"); err != nil {
					t.Fatal(err)
				}
				if _, err := exec(pc, "SET LOCAL row_security = off"); err != nil {
					t.Errorf("SET LOCAL row_security: %v", err)
				}
				rows, err := exec(pc, visibleSQL)
				if codeOf(err) != "42501" {
					t.Errorf("with row_security off in a transaction the attacker reads %q, %v", rows, err)
				}
				a.noLeak(t, "row_security off", rows, err)
				simpleRows(pc, "ROLLBACK")
			}
			a.aftermath(t, a.p, attacker, victim)
		}},
	}
}

// largeMessageCases: messages larger than the proxy's per-client read buffer (2 KB) must be
// read, checked and answered like small ones; a client must not be able to wedge its
// connection (and the backend it holds) with one.
func largeMessageCases() []customCase {
	pad := func(n int) string { return "/* " + strings.Repeat("x", n) + " */" }
	type large struct {
		name string
		msgs []pgproto3.FrontendMessage
		want []string
	}
	larges := []large{
		{"1 KB harmless query", []pgproto3.FrontendMessage{&pgproto3.Query{String: "SELECT 1 " + pad(1000)}}, []string{"D 1", "C SELECT 1", "Z I"}},
		{"3 KB harmless query", []pgproto3.FrontendMessage{&pgproto3.Query{String: "SELECT 1 " + pad(3000)}}, []string{"D 1", "C SELECT 1", "Z I"}},
		{"3 KB SET of the tenant", []pgproto3.FrontendMessage{&pgproto3.Query{String: "SELECT 1 " + pad(3000) + "; SET app.current_tenant_id = 'globex'"}}, []string{"E 42501", "Z I"}},
		{"10 KB SET of the tenant, over the extended protocol", []pgproto3.FrontendMessage{&pgproto3.Parse{Query: "SELECT " + setConfigGlobex + pad(10000)},
			&pgproto3.Bind{}, &pgproto3.Execute{}, &pgproto3.Sync{}}, []string{"E 42501", "Z I"}},
		{"30 KB parameter", []pgproto3.FrontendMessage{&pgproto3.Parse{Query: "SELECT length($1::text)"},
			&pgproto3.Bind{Parameters: [][]byte{[]byte(strings.Repeat("y", 30000))}}, &pgproto3.Execute{}, &pgproto3.Sync{}}, []string{"1", "2", "D 30000", "C SELECT 1", "Z I"}},
		{"70 KB SET of the tenant", []pgproto3.FrontendMessage{&pgproto3.Query{String: "SELECT 1 " + pad(70000) + "; SET app.current_tenant_id = 'globex'"}}, []string{"E 42501", "Z I"}},
	}
	var cases []customCase
	for _, l := range larges {
		cases = append(cases, customCase{l.name, func(t *testing.T, a *arena) {
			p := disposableProxy(t, a.db, a.mode, sharedPool(a.mode))
			victim := join(t, p, "bob", "globex")
			r := rawAs(t, p, "alice")
			r.conn.SetDeadline(time.Now().Add(5 * time.Second))
			r.send(&pgproto3.Query{String: "SELECT 1"})
			wantEvents(t, a.events(r, 1), "D 1", "C SELECT 1", "Z I")
			for range 3 {
				r.send(l.msgs...)
				wantEvents(t, a.events(r, 1), l.want...)
			}
			r.conn.SetDeadline(time.Now().Add(opTimeout))
			a.rawVerify(t, r, "acme")
			r.conn.Close()
			a.aftermath(t, p, nil, victim)
		}})
	}
	return cases
}
