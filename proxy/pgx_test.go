package proxy_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/tenantproxy/tenantproxy/config"
	"github.com/tenantproxy/tenantproxy/internal/pgtest"
	"github.com/tenantproxy/tenantproxy/lockdown"
)

func TestEachUserSeesOnlyItsTenant(t *testing.T) {
	both(t, func(t *testing.T, p *testProxy) {
		seedEntities(t, p.db, "acme", 3)
		seedEntities(t, p.db, "globex", 2)
		for user, want := range map[string]string{"alice": "acme", "bob": "globex", "carol": "acme"} {
			conn := p.connect(t, user)
			if got := visibleTenants(t, conn); !slices.Equal(got, []string{want}) {
				t.Errorf("%s sees tenants %v, want [%s]", user, got, want)
			}
			if got := tenantOf(t, conn); got != want {
				t.Errorf("%s: SHOW app.current_tenant_id = %q, want %q", user, got, want)
			}
		}
	})
}

func TestTenantChoice(t *testing.T) {
	both(t, func(t *testing.T, p *testProxy) {
		cases := []struct {
			user, extra, want string
		}{
			{"carol", "", "acme"},
			{"carol", "tenant=globex", "globex"},
			{"carol", "options=-c%20tenant%3Dglobex", "globex"},
			{"carol", "options=--tenant%3Dglobex", "globex"},
			{"dave", "tenant=acme", "acme"},
			{"alice", "tenant=acme", "acme"},
		}
		for _, c := range cases {
			conn := p.connect(t, c.user, c.extra)
			if got := tenantOf(t, conn); got != c.want {
				t.Errorf("%s with %q: tenant %q, want %q", c.user, c.extra, got, c.want)
			}
		}
	})
}

func TestSimpleAndExtendedProtocol(t *testing.T) {
	both(t, func(t *testing.T, p *testProxy) {
		for _, mode := range []pgx.QueryExecMode{
			pgx.QueryExecModeCacheStatement, pgx.QueryExecModeCacheDescribe, pgx.QueryExecModeDescribeExec,
			pgx.QueryExecModeExec, pgx.QueryExecModeSimpleProtocol,
		} {
			conn := p.connect(t, "alice", "default_query_exec_mode="+queryExecModeName(mode))
			for i := range 5 {
				var n int
				var s string
				if err := conn.QueryRow(ctx, "SELECT $1::int + 1, $2::text", i, "x").Scan(&n, &s); err != nil {
					t.Fatalf("mode %v: %v", mode, err)
				}
				if n != i+1 || s != "x" {
					t.Errorf("mode %v: got %d %q", mode, n, s)
				}
			}
			mustExec(t, conn, "INSERT INTO llmspell.entities (tenant_id, entity_type, name) VALUES ($1, $2, $3)", "acme", "t", "n")
			if got := tenantOf(t, conn); got != "acme" {
				t.Errorf("mode %v: tenant %q", mode, got)
			}
		}
	})
}

func queryExecModeName(m pgx.QueryExecMode) string {
	switch m {
	case pgx.QueryExecModeCacheStatement:
		return "cache_statement"
	case pgx.QueryExecModeCacheDescribe:
		return "cache_describe"
	case pgx.QueryExecModeDescribeExec:
		return "describe_exec"
	case pgx.QueryExecModeExec:
		return "exec"
	default:
		return "simple_protocol"
	}
}

func TestPreparedStatementsAcrossTransactions(t *testing.T) {
	both(t, func(t *testing.T, p *testProxy) {
		// Many connections using the same named statements, so in transaction mode each is
		// served by several backends and the proxy must prepare statements where they run.
		var conns []*pgx.Conn
		for range 15 {
			conns = append(conns, p.connect(t, "alice"))
		}
		for round := range 10 {
			for i, conn := range conns {
				sd, err := conn.Prepare(ctx, "by_name", "SELECT $1::int * 2 + $2::int")
				if err != nil {
					t.Fatalf("prepare: %v", err)
				}
				if len(sd.ParamOIDs) != 2 {
					t.Fatalf("prepared statement has %d parameters", len(sd.ParamOIDs))
				}
				var n int
				if err := conn.QueryRow(ctx, "by_name", round, i).Scan(&n); err != nil {
					t.Fatalf("round %d conn %d: %v", round, i, err)
				}
				if n != round*2+i {
					t.Errorf("got %d, want %d", n, round*2+i)
				}
			}
		}
		// Deallocating one client's statement leaves the others working.
		if err := conns[0].Deallocate(ctx, "by_name"); err != nil {
			t.Fatal(err)
		}
		if _, err := conns[0].Exec(ctx, "by_name", 1, 2); err == nil {
			t.Error("a deallocated statement still ran")
		}
		var n int
		if err := conns[1].QueryRow(ctx, "by_name", 1, 2).Scan(&n); err != nil || n != 4 {
			t.Errorf("another client's statement: %d, %v", n, err)
		}
	})
}

// SQL DEALLOCATE of a statement the client prepared through the protocol, sent through the
// extended protocol (psycopg does so when its statement cache evicts): the client's name goes,
// as it would on the server.
func TestSQLDeallocateInTheExtendedProtocol(t *testing.T) {
	both(t, func(t *testing.T, p *testProxy) {
		pgc := p.connect(t, "alice").PgConn()
		prepare := func() {
			t.Helper()
			if _, err := pgc.Prepare(ctx, "s1", "SELECT 41 + 1", nil); err != nil {
				t.Fatalf("prepare s1: %v", err)
			}
		}
		run := func(sql string) (string, error) {
			r := pgc.ExecParams(ctx, sql, nil, nil, nil, nil).Read()
			return r.CommandTag.String(), r.Err
		}
		runS1 := func() error {
			return pgc.ExecPrepared(ctx, "s1", nil, nil, nil).Read().Err
		}

		prepare()
		if tag, err := run("DEALLOCATE s1"); err != nil || tag != "DEALLOCATE" {
			t.Fatalf("DEALLOCATE s1: %q, %v", tag, err)
		}
		if err := runS1(); codeOf(err) != "26000" {
			t.Errorf("s1 after DEALLOCATE: %v, want 26000", err)
		}
		prepare() // the name is free again

		// Prepared as the unnamed statement and described first, as some drivers do.
		sd, err := pgc.Prepare(ctx, "", "DEALLOCATE PREPARE s1", nil)
		if err != nil || len(sd.ParamOIDs) != 0 || len(sd.Fields) != 0 {
			t.Fatalf("describing DEALLOCATE: %+v, %v", sd, err)
		}
		if r := pgc.ExecPrepared(ctx, "", nil, nil, nil).Read(); r.Err != nil || r.CommandTag.String() != "DEALLOCATE" {
			t.Fatalf("executing the described DEALLOCATE: %q, %v", r.CommandTag, r.Err)
		}
		if _, err := run("DEALLOCATE s1"); codeOf(err) != "26000" {
			t.Errorf("DEALLOCATE of a name no longer prepared: %v, want 26000", err)
		}

		// An error in front of it in the same group: the server would skip it, so s1 stays.
		prepare()
		batch := &pgconn.Batch{}
		batch.ExecParams("SELECT 1/0", nil, nil, nil, nil)
		batch.ExecParams("DEALLOCATE s1", nil, nil, nil, nil)
		if _, err := pgc.ExecBatch(ctx, batch).ReadAll(); codeOf(err) != "22012" {
			t.Errorf("the batch: %v, want 22012", err)
		}
		if err := runS1(); err != nil {
			t.Errorf("s1 after a DEALLOCATE the error skipped: %v", err)
		}

		// Inside a transaction, and in a failed one (25P02, the name stays).
		for _, sql := range []string{"BEGIN", "SELECT 1/0"} {
			run(sql)
		}
		if _, err := run("DEALLOCATE s1"); codeOf(err) != "25P02" {
			t.Errorf("DEALLOCATE in a failed transaction: %v, want 25P02", err)
		}
		for _, sql := range []string{"ROLLBACK", "BEGIN", "DEALLOCATE s1", "COMMIT"} {
			if _, err := run(sql); err != nil {
				t.Fatalf("%s: %v", sql, err)
			}
		}
		if err := runS1(); codeOf(err) != "26000" {
			t.Errorf("s1 after DEALLOCATE in a transaction: %v, want 26000", err)
		}
		if tag, err := run("SELECT 2"); err != nil {
			t.Errorf("the connection afterwards: %q, %v", tag, err)
		}
	})
}

func TestBatchesAndPipelines(t *testing.T) {
	both(t, func(t *testing.T, p *testProxy) {
		conn := p.connect(t, "bob")
		batch := &pgx.Batch{}
		for i := range 200 {
			batch.Queue("INSERT INTO llmspell.entities (tenant_id, entity_type, name) VALUES ('globex', 'doc', $1)", fmt.Sprint(i))
		}
		batch.Queue("SELECT count(*) FROM llmspell.entities")
		batch.Queue("SELECT current_setting('app.current_tenant_id')")
		res := conn.SendBatch(ctx, batch)
		for i := range 200 {
			if _, err := res.Exec(); err != nil {
				t.Fatalf("insert %d: %v", i, err)
			}
		}
		var n int
		if err := res.QueryRow().Scan(&n); err != nil || n != 200 {
			t.Errorf("count %d, %v", n, err)
		}
		var tenant string
		if err := res.QueryRow().Scan(&tenant); err != nil || tenant != "globex" {
			t.Errorf("tenant %q, %v", tenant, err)
		}
		if err := res.Close(); err != nil {
			t.Fatal(err)
		}

		// A batch with an error in the middle: the rest is skipped, the connection recovers.
		batch = &pgx.Batch{}
		batch.Queue("SELECT 1")
		batch.Queue("SELECT 1/0")
		batch.Queue("SELECT 3")
		res = conn.SendBatch(ctx, batch)
		if _, err := res.Exec(); err != nil {
			t.Fatal(err)
		}
		_, err := res.Exec()
		wantCode(t, err, "22012")
		res.Close()
		if got := queryInt(t, conn, "SELECT 42"); got != 42 {
			t.Errorf("after a failed batch: %d", got)
		}

		// Low-level pipeline with several Syncs.
		pipeline := conn.PgConn().StartPipeline(ctx)
		for i := range 20 {
			pipeline.SendQueryParams("SELECT $1::int", [][]byte{[]byte(fmt.Sprint(i))}, nil, nil, nil)
			pipeline.SendPipelineSync()
		}
		if err := pipeline.Flush(); err != nil {
			t.Fatal(err)
		}
		for i := range 20 {
			r, err := pipeline.GetResults()
			if err != nil {
				t.Fatal(err)
			}
			rr := r.(*pgconn.ResultReader)
			rows := rr.Read()
			if rows.Err != nil || len(rows.Rows) != 1 || string(rows.Rows[0][0]) != fmt.Sprint(i) {
				t.Fatalf("pipeline result %d: %+v", i, rows)
			}
			if _, err := pipeline.GetResults(); err != nil { // the Sync
				t.Fatal(err)
			}
		}
		if err := pipeline.Close(); err != nil {
			t.Fatal(err)
		}
	})
}

func TestCopyInAndOut(t *testing.T) {
	both(t, func(t *testing.T, p *testProxy) {
		// PostgreSQL refuses COPY FROM into a table under row-level security (rows would skip
		// the policies), so COPY in goes to a plain table; COPY out reads the tenant tables.
		admin := pgtest.Connect(t, p.db.AdminURL)
		mustExec(t, admin, "CREATE TABLE public.copy_target (tenant_id text, body text)")
		mustExec(t, admin, "GRANT SELECT, INSERT ON public.copy_target TO tenantproxy_app")
		seedEntities(t, p.db, "acme", 5000)
		seedEntities(t, p.db, "globex", 10)

		conn := p.connect(t, "alice")
		var rows [][]any
		for i := range 5000 {
			rows = append(rows, []any{"acme", fmt.Sprintf("row %d %s", i, strings.Repeat("x", 100))})
		}
		n, err := conn.CopyFrom(ctx, pgx.Identifier{"public", "copy_target"}, []string{"tenant_id", "body"}, pgx.CopyFromRows(rows))
		if err != nil || n != 5000 {
			t.Fatalf("copy from: %d, %v", n, err)
		}
		_, err = conn.CopyFrom(ctx, pgx.Identifier{"llmspell", "entities"}, []string{"tenant_id", "entity_type", "name"},
			pgx.CopyFromRows([][]any{{"globex", "x", "y"}}))
		wantCode(t, err, "0A000") // COPY FROM not supported with row-level security
		if got := queryInt(t, conn, "SELECT count(*) FROM public.copy_target"); got != 5000 {
			t.Errorf("copied rows: %d", got)
		}

		var out strings.Builder
		tag, err := conn.PgConn().CopyTo(ctx, &out, "COPY (SELECT tenant_id, name FROM llmspell.entities ORDER BY name) TO STDOUT")
		if err != nil || tag.RowsAffected() != 5000 {
			t.Fatalf("copy to: %v, %v", tag, err)
		}
		for line := range strings.Lines(out.String()) {
			if !strings.HasPrefix(line, "acme\t") {
				t.Fatalf("copy out produced %q", line)
			}
		}
		out.Reset()
		if _, err := conn.PgConn().CopyTo(ctx, &out, "COPY llmspell.entities TO STDOUT"); err != nil || strings.Contains(out.String(), "globex") {
			t.Errorf("COPY table TO STDOUT: %v, saw globex: %v", err, strings.Contains(out.String(), "globex"))
		}
		if got := tenantOf(t, conn); got != "acme" {
			t.Errorf("tenant after copy: %q", got)
		}
	})
}

func TestLargeResultsAndMessages(t *testing.T) {
	both(t, func(t *testing.T, p *testProxy) {
		conn := p.connect(t, "alice")
		// 100,000 rows, and one row of 20 MB: both stream through the proxy.
		if got := queryInt(t, conn, "SELECT count(*) FROM (SELECT g FROM generate_series(1, 100000) g) s"); got != 100000 {
			t.Errorf("count %d", got)
		}
		rows, err := conn.Query(ctx, "SELECT g, repeat('y', 50) FROM generate_series(1, 100000) g")
		if err != nil {
			t.Fatal(err)
		}
		seen := 0
		for rows.Next() {
			seen++
		}
		if rows.Err() != nil || seen != 100000 {
			t.Errorf("read %d rows: %v", seen, rows.Err())
		}
		var big string
		if err := conn.QueryRow(ctx, "SELECT repeat('z', 20000000)").Scan(&big); err != nil || len(big) != 20000000 {
			t.Errorf("big value: %d bytes, %v", len(big), err)
		}
		// A 5 MB parameter goes the other way.
		var l int
		if err := conn.QueryRow(ctx, "SELECT length($1::text)", strings.Repeat("q", 5<<20)).Scan(&l); err != nil || l != 5<<20 {
			t.Errorf("big parameter: %d, %v", l, err)
		}
	})
}

func TestNoticesAndErrorsInTransactions(t *testing.T) {
	both(t, func(t *testing.T, p *testProxy) {
		var notices []string
		cfg, err := pgx.ParseConfig(p.url("alice"))
		if err != nil {
			t.Fatal(err)
		}
		cfg.OnNotice = func(_ *pgconn.PgConn, n *pgconn.Notice) { notices = append(notices, n.Message) }
		conn, err := pgx.ConnectConfig(ctx, cfg)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close(ctx)

		mustExec(t, conn, "ROLLBACK") // a notice: no transaction in progress
		if len(notices) != 1 || !strings.Contains(notices[0], "no transaction in progress") {
			t.Errorf("notices %v", notices)
		}

		tx, err := conn.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		mustExec(t, conn, "INSERT INTO llmspell.entities (tenant_id, entity_type, name) VALUES ('acme', 'x', 'rolled back')")
		_, err = tx.Exec(ctx, "SELECT 1/0")
		wantCode(t, err, "22012")
		_, err = tx.Exec(ctx, "SELECT 1")
		wantCode(t, err, "25P02") // the transaction is failed until rollback
		if err := tx.Rollback(ctx); err != nil {
			t.Fatal(err)
		}
		if got := queryInt(t, conn, "SELECT count(*) FROM llmspell.entities WHERE name = 'rolled back'"); got != 0 {
			t.Errorf("rolled-back row visible: %d", got)
		}

		// Savepoints work inside a transaction.
		tx, _ = conn.Begin(ctx)
		mustExec(t, conn, "INSERT INTO llmspell.entities (tenant_id, entity_type, name) VALUES ('acme', 'x', 'kept')")
		mustExec(t, conn, "SAVEPOINT s")
		if _, err := conn.Exec(ctx, "INSERT INTO llmspell.entities (tenant_id, entity_type, name) VALUES ('globex', 'x', 'refused')"); err == nil {
			t.Error("insert into another tenant succeeded")
		}
		mustExec(t, conn, "ROLLBACK TO SAVEPOINT s")
		if err := tx.Commit(ctx); err != nil {
			t.Fatal(err)
		}
		if got := queryInt(t, conn, "SELECT count(*) FROM llmspell.entities WHERE name = 'kept'"); got != 1 {
			t.Errorf("kept rows: %d", got)
		}
	})
}

func TestCancel(t *testing.T) {
	both(t, func(t *testing.T, p *testProxy) {
		conn := p.connect(t, "alice")
		other := p.connect(t, "bob")
		done := make(chan error, 1)
		go func() {
			_, err := other.Exec(ctx, "SELECT pg_sleep(1.5)")
			done <- err
		}()

		qctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
		defer cancel()
		start := time.Now()
		_, err := conn.Exec(qctx, "SELECT pg_sleep(30)")
		if err == nil {
			t.Fatal("the query was not cancelled")
		}
		if !errors.Is(err, context.DeadlineExceeded) {
			var pgErr *pgconn.PgError
			if !asPgError(err, &pgErr) || pgErr.Code != "57014" {
				t.Fatalf("want a cancellation, got %v", err)
			}
		}
		if time.Since(start) > 10*time.Second {
			t.Errorf("cancel took %v", time.Since(start))
		}
		// The other client's query was not cancelled.
		if err := <-done; err != nil {
			t.Errorf("bob's query: %v", err)
		}
		// A fresh connection for alice works (pgx closes a connection whose context expired).
		conn = p.connect(t, "alice")
		if got := tenantOf(t, conn); got != "acme" {
			t.Errorf("tenant %q", got)
		}

		// Cancel through the protocol on a connection that stays open.
		pc := p.connect(t, "alice").PgConn()
		result := make(chan error, 1)
		go func() {
			_, err := pc.Exec(ctx, "SELECT pg_sleep(30), 'marker-cancel'").ReadAll()
			result <- err
		}()
		waitRunning(t, pgtest.Connect(t, p.db.AdminURL), "marker-cancel")
		if err := pc.CancelRequest(ctx); err != nil {
			t.Fatal(err)
		}
		select {
		case err := <-result:
			wantCode(t, err, "57014")
		case <-time.After(10 * time.Second):
			t.Fatal("CancelRequest did not cancel")
		}
		if _, err := pc.Exec(ctx, "SELECT 1").ReadAll(); err != nil {
			t.Errorf("after cancel: %v", err)
		}
	})
}

func TestCancelWithAWrongKeyDoesNothing(t *testing.T) {
	both(t, func(t *testing.T, p *testProxy) {
		admin := pgtest.Connect(t, p.db.AdminURL)
		victim := p.connect(t, "bob")
		done := make(chan error, 1)
		go func() {
			_, err := victim.Exec(ctx, "SELECT pg_sleep(30), 'marker-wrong-key'")
			done <- err
		}()
		waitRunning(t, admin, "marker-wrong-key")
		// A cancel with a made-up key, and one with the attacker's own key, must not reach bob:
		// once both are handled (the proxy closes their connections), bob's query still runs.
		attacker := p.connect(t, "alice")
		if err := attacker.PgConn().CancelRequest(ctx); err != nil {
			t.Fatal(err)
		}
		sendCancel(t, p.addr, victim.PgConn().PID(), []byte{1, 2, 3, 4})
		if n := running(t, admin, "marker-wrong-key"); n != 1 {
			t.Fatalf("after the wrong-key cancels, %d of bob's queries run, want 1", n)
		}
		// Bob's own key does cancel it.
		if err := victim.PgConn().CancelRequest(ctx); err != nil {
			t.Fatal(err)
		}
		wantCode(t, <-done, "57014")
	})
}

// A prepared statement keeps the values the server gave its literals when it parsed them,
// under the settings of that moment (DateStyle, IntervalStyle, TimeZone). In transaction mode
// clients share prepared statements on the pool's backends, so a statement one client prepared
// under its own settings must never be handed to a client with others.
func TestSharedStatementsKeepEachClientsSettings(t *testing.T) {
	db := pgtest.New(t)
	p := startProxy(t, db, "transaction", func(c *config.Config) { c.Pool.Size = 1 })
	const query = "SELECT '01/02/2024'::date::text, '2024-01-01 00:00'::timestamptz::text, interval '1 day'::text"
	run := func(conn *pgx.Conn) string {
		t.Helper()
		var d, ts, iv string
		if err := conn.QueryRow(ctx, query).Scan(&d, &ts, &iv); err != nil { // prepared by pgx
			t.Fatal(err)
		}
		return d + " | " + ts + " | " + iv
	}
	const bobs = "2024-01-02 | 2024-01-01 00:00:00+00 | 1 day"

	// Other settings from the startup packet.
	alice := p.connect(t, "alice", "DateStyle=ISO,%20DMY", "TimeZone=Asia/Tokyo", "IntervalStyle=sql_standard")
	if got := run(alice); got != "2024-02-01 | 2024-01-01 00:00:00+09 | 1 0:00:00" {
		t.Errorf("alice's own answer: %s", got)
	}
	bob := p.connect(t, "bob")
	if got := run(bob); got != bobs {
		t.Errorf("bob ran alice's statement: %s, want %s", got, bobs)
	}

	// Settings changed with SET LOCAL, in force only inside alice's transaction.
	carol := p.connect(t, "carol")
	tx, err := carol.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, "SET LOCAL DateStyle = 'ISO, DMY'"); err != nil {
		t.Fatal(err)
	}
	var d string
	if err := tx.QueryRow(ctx, "SELECT '03/04/2024'::date::text").Scan(&d); err != nil || d != "2024-04-03" {
		t.Fatalf("inside carol's transaction: %q, %v", d, err)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if err := bob.QueryRow(ctx, "SELECT '03/04/2024'::date::text").Scan(&d); err != nil || d != "2024-03-04" {
		t.Errorf("bob ran carol's statement from her SET LOCAL transaction: %q, %v", d, err)
	}
	if got := run(bob); got != bobs {
		t.Errorf("bob, again: %s", got)
	}
	bob.Close(ctx)

	// bobSees has a new client of bob prepare and run query, which must answer want.
	bobSees := func(query, want, what string) {
		t.Helper()
		conn := p.connect(t, "bob")
		defer conn.Close(ctx)
		var got string
		if err := conn.QueryRow(ctx, query).Scan(&got); err != nil || got != want {
			t.Errorf("bob ran %s: %q, %v; want %q", what, got, err, want)
		}
	}

	// A session SET pipelined with a Parse: the server parses under the new setting before the
	// proxy has seen it reported.
	r := p.loggedIn(t)
	const tokyo = "SELECT '2024-06-01 00:00'::timestamptz::text"
	r.send(&pgproto3.Query{String: "SET TimeZone = 'Asia/Tokyo'"}, &pgproto3.Parse{Name: "s1", Query: tokyo},
		&pgproto3.Bind{PreparedStatement: "s1"}, &pgproto3.Execute{}, &pgproto3.Sync{})
	until[*pgproto3.ReadyForQuery](r)
	until[*pgproto3.ReadyForQuery](r)
	r.conn.Close()
	bobSees(tokyo, "2024-06-01 00:00:00+00", "a statement parsed under alice's pipelined SET")

	// A SET prepared earlier and executed (Bind) in the group that parses the statement.
	r = p.loggedIn(t)
	const march = "SELECT '03/04/2021'::date::text"
	r.send(&pgproto3.Parse{Name: "setds", Query: "SET DateStyle = 'SQL, DMY'"}, &pgproto3.Sync{})
	until[*pgproto3.ReadyForQuery](r)
	r.send(&pgproto3.Bind{PreparedStatement: "setds"}, &pgproto3.Execute{}, &pgproto3.Parse{Name: "s2", Query: march},
		&pgproto3.Bind{PreparedStatement: "s2"}, &pgproto3.Execute{}, &pgproto3.Sync{})
	until[*pgproto3.ReadyForQuery](r)
	r.conn.Close()
	bobSees(march, "2021-03-04", "a statement parsed under alice's bound SET")

	// The text itself is read in the client's encoding.
	pc, err := pgconn.Connect(ctx, p.url("alice", "client_encoding=LATIN1"))
	if err != nil {
		t.Fatal(err)
	}
	const accent = "SELECT length('\u00e9')"
	if _, err := pc.Prepare(ctx, "e1", accent, nil); err != nil {
		t.Fatal(err)
	}
	if res := pc.ExecPrepared(ctx, "e1", nil, nil, nil).Read(); res.Err != nil || string(res.Rows[0][0]) != "2" {
		t.Fatalf("alice, in LATIN1: %v %q", res.Err, res.Rows)
	}
	pc.Close(ctx)
	bob = p.connect(t, "bob")
	var n int
	if err := bob.QueryRow(ctx, accent).Scan(&n); err != nil || n != 1 {
		t.Errorf("bob ran a statement read in alice's LATIN1: %d, %v", n, err)
	}
}

// EXPLAIN's estimates and counts come from every tenant's rows: refused, with a true hint,
// but to a user the configuration trusts with it.
func TestExplainOnlyForTrustedUsers(t *testing.T) {
	db := pgtest.New(t)
	for _, mode := range modes {
		t.Run(mode, func(t *testing.T) {
			p := startProxy(t, db, mode, func(c *config.Config) {
				c.Users["ops"] = config.User{Password: verifier(), Tenant: "acme", AllowExplain: true}
			})
			_, err := p.connect(t, "alice").Exec(ctx, "EXPLAIN SELECT * FROM llmspell.entities")
			wantCode(t, err, "42501", "EXPLAIN is refused")
			var pgErr *pgconn.PgError
			if asPgError(err, &pgErr) && !strings.Contains(pgErr.Hint, "allow_explain") {
				t.Errorf("hint %q does not say how an operator allows it", pgErr.Hint)
			}
			plan := queryString(t, p.connect(t, "ops"), "EXPLAIN (COSTS OFF) SELECT * FROM llmspell.entities")
			if !strings.Contains(plan, "entities") {
				t.Errorf("the trusted user's plan: %q", plan)
			}
		})
	}
}

// In transaction pooling a client's session settings are carried to whichever backend serves
// it (SET, SET SESSION CHARACTERISTICS, set_config, RESET, startup parameters and options), and
// reach no other client.
func TestSessionSettingsAreCarried(t *testing.T) {
	db := pgtest.New(t)
	p := startProxy(t, db, "transaction", func(c *config.Config) { c.Pool.Size = 2 })
	conn := p.connect(t, "alice", "statement_timeout=7000", "options=-c%20lock_timeout%3D3s%20--work-mem%3D12MB")
	other := p.connect(t, "bob")
	for _, sql := range []string{
		"SET search_path TO llmspell, public",
		"SET SESSION CHARACTERISTICS AS TRANSACTION ISOLATION LEVEL REPEATABLE READ",
		"SET client_min_messages TO 'warning'",
		"SET myapp.flag = 'on'",
		"SELECT set_config('extra_float_digits', '2', false)",
		"BEGIN; SET idle_in_transaction_session_timeout = '9s'; COMMIT",
		"BEGIN; SET maintenance_work_mem = '99MB'; ROLLBACK",
		"SET cursor_tuple_fraction = 0.5; RESET cursor_tuple_fraction",
	} {
		mustExec(t, conn, sql)
	}
	want := map[string]string{
		"statement_timeout": "7s", "lock_timeout": "3s", "work_mem": "12MB", "search_path": "llmspell, public",
		"default_transaction_isolation": "repeatable read", "client_min_messages": "warning", "myapp.flag": "on",
		"extra_float_digits": "2", "idle_in_transaction_session_timeout": "9s", "maintenance_work_mem": "64MB",
		"cursor_tuple_fraction": "0.1",
	}
	check := func(who string) {
		t.Helper()
		for name, value := range want {
			if got := queryString(t, conn, "SELECT current_setting($1)", name); got != value {
				t.Errorf("%s: %s is %q, want %q", who, name, got, value)
			}
		}
	}
	check("on the backend that ran the SETs")
	// Hold that backend in a transaction of another client's, so the next statement of
	// alice's runs on the other one; then the other way round.
	for range 2 {
		tx, err := other.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := tx.Exec(ctx, "SELECT 1"); err != nil {
			t.Fatal(err)
		}
		check("on another backend")
		for name := range want {
			if name == "maintenance_work_mem" || name == "cursor_tuple_fraction" {
				continue // at their defaults for alice too
			}
			var got string
			if err := tx.QueryRow(ctx, "SELECT coalesce(current_setting($1, true), '')", name).Scan(&got); err != nil {
				t.Fatal(err)
			}
			if got == want[name] {
				t.Errorf("bob's transaction sees alice's %s = %q", name, got)
			}
		}
		tx.Commit(ctx)
	}
	// RESET ALL takes alice back to her startup settings, on every backend.
	mustExec(t, conn, "RESET ALL")
	for name, value := range map[string]string{"statement_timeout": "7s", "lock_timeout": "3s", "work_mem": "12MB", "search_path": `"$user", public`, "default_transaction_isolation": "read committed"} {
		if got := queryString(t, conn, "SELECT current_setting($1)", name); got != value {
			t.Errorf("after RESET ALL %s is %q, want %q", name, got, value)
		}
	}
}

// Each tenant has its own notification channels: a NOTIFY (or pg_notify) of one tenant reaches
// the listeners of that tenant only, under the channel name they used, in session pooling (LISTEN
// needs a session of its own) from either pool mode.
func TestNotificationChannelsPerTenant(t *testing.T) {
	db := pgtest.New(t)
	session := startProxy(t, db, "session")
	transaction := startProxy(t, db, "transaction")
	alice := session.connect(t, "alice")   // acme
	bob := session.connect(t, "bob")       // globex
	mallory := session.connect(t, "carol") // acme or globex: acme by default, listens as globex's guess
	mustExec(t, alice, "LISTEN jobs")
	mustExec(t, bob, `LISTEN "jobs"`)
	mustExec(t, mallory, `LISTEN "`+lockdown.ChannelPrefix("globex")+`jobs"`) // another tenant's mapped name

	_, err := transaction.connect(t, "alice").Exec(ctx, "LISTEN jobs")
	wantCode(t, err, "0A000", "LISTEN")

	notifier := transaction.connect(t, "alice") // acme, in transaction pooling
	mustExec(t, notifier, "NOTIFY jobs, 'for acme'")
	mustExec(t, session.connect(t, "bob"), "SELECT pg_notify('jobs', 'for globex')")

	expect := func(who string, conn *pgx.Conn, payload string) {
		t.Helper()
		wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		n, err := conn.WaitForNotification(wctx)
		if err != nil {
			t.Fatalf("%s: no notification: %v", who, err)
		}
		if n.Channel != "jobs" || n.Payload != payload {
			t.Errorf("%s got %q on %q, want %q on \"jobs\"", who, n.Payload, n.Channel, payload)
		}
	}
	expect("alice", alice, "for acme")
	expect("bob", bob, "for globex")
	// Nothing else arrives: not for mallory, and nothing more for the others (each was sent
	// one notification; a second would be another tenant's).
	for who, conn := range map[string]*pgx.Conn{"mallory": mallory, "alice": alice, "bob": bob} {
		mustExec(t, conn, "SELECT 1") // any notification pending arrives with this answer
		wctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
		n, err := conn.WaitForNotification(wctx)
		cancel()
		if err == nil {
			t.Errorf("%s heard %q on %q", who, n.Payload, n.Channel)
		}
	}
	_, err = alice.Exec(ctx, "LISTEN "+strings.Repeat("x", 46))
	wantCode(t, err, "42622", "too long")
}
