package proxy_test

// The attack suite: what an authenticated client of one tenant can send to reach another
// tenant's rows, context or sessions, through the real proxy in both pool modes. Every case
// checks four things afterwards: the attack was refused (or provably did nothing), the attacker
// still sees only its own rows, its tenant context is unchanged, and a client of another tenant
// on the same pool is unaffected; that client's checks run after the attack, so in transaction
// mode (a pool of one) they run on the attacker's former backend, and in session mode (a pool of
// two) a new client takes the backend the attacker leaves.

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"
	"github.com/rs/zerolog"

	"github.com/tenantproxy/tenantproxy/config"
	"github.com/tenantproxy/tenantproxy/internal/pgtest"
	"github.com/tenantproxy/tenantproxy/proxy"
)

// opTimeout bounds every single operation, so that a proxy that stops answering fails a case
// instead of hanging the suite.
const opTimeout = 15 * time.Second

// arena is one database and proxy per pool mode, shared by the attack cases of that mode.
type arena struct {
	mode  string
	db    *pgtest.DB
	p     *testProxy
	admin *pgx.Conn
	// acmeIDs and globexIDs are the seeded entities of the attacker's and the victim's tenant.
	acmeIDs, globexIDs []string
	// secrets are strings only globex's rows and globex's queries hold: no answer the attacker
	// gets (rows, errors, details) may contain one.
	secrets []string
	// digest is what the superuser sees of globex's rows and of the seeded acme rows; no case may
	// change it.
	digest string
}

// sharedPool is the pool of an arena: one backend in transaction mode, so that attacker and
// victim take turns on the same session; two in session mode (attacker and victim), so that a
// client arriving after the attacker leaves gets the attacker's former backend.
func sharedPool(mode string) func(*config.Config) {
	return func(c *config.Config) {
		c.Pool.Size = 1
		if mode == "session" {
			c.Pool.Size = 2
		}
	}
}

const seedGraphSQL = `
INSERT INTO llmspell.relationships (tenant_id, source_id, target_id, relationship_type, properties)
SELECT a.tenant_id, a.id, b.id, 'knows', jsonb_build_object('note', a.tenant_id || '-edge')
FROM llmspell.entities a JOIN llmspell.entities b ON a.tenant_id = b.tenant_id AND a.id <> b.id;
INSERT INTO llmspell.vector_embeddings_384 (tenant_id, scope, embedding, metadata)
SELECT t, t || '-vec', array_fill(0.5::real, ARRAY[384])::vector, jsonb_build_object('owner', t || '-vec')
FROM unnest(ARRAY['acme', 'globex']) t;
CREATE TABLE public.attack_copy (tenant_id text, body text);
GRANT SELECT, INSERT ON public.attack_copy TO tenantproxy_app;
ANALYZE;`

const digestSQL = `SELECT concat_ws(' / ',
	(SELECT string_agg(id || ':' || name || ':' || entity_type || ':' || properties::text, ',' ORDER BY id) FROM llmspell.entities WHERE tenant_id = 'globex'),
	(SELECT string_agg(id || ':' || name, ',' ORDER BY id) FROM llmspell.entities WHERE tenant_id = 'acme' AND name LIKE 'acme-%'),
	(SELECT string_agg(id || ':' || source_id || '>' || target_id, ',' ORDER BY id) FROM llmspell.relationships WHERE tenant_id = 'globex'),
	(SELECT string_agg(id || ':' || metadata::text, ',' ORDER BY id) FROM llmspell.vector_embeddings_384 WHERE tenant_id = 'globex'),
	(SELECT 'other tenants: ' || count(*) FROM llmspell.entities WHERE tenant_id NOT IN ('acme', 'globex')),
	(SELECT 'prepared xacts: ' || count(*) FROM pg_prepared_xacts))`

func newArena(t *testing.T, mode string) *arena {
	t.Helper()
	db := pgtest.New(t)
	a := &arena{mode: mode, db: db}
	seedEntities(t, db, "acme", 3)
	seedEntities(t, db, "globex", 2)
	a.admin = pgtest.Connect(t, db.AdminURL)
	mustExec(t, a.admin, seedGraphSQL)
	a.acmeIDs = pgtest.QueryStrings(t, a.admin, "SELECT id::text FROM llmspell.entities WHERE tenant_id = 'acme' ORDER BY name")
	a.globexIDs = pgtest.QueryStrings(t, a.admin, "SELECT id::text FROM llmspell.entities WHERE tenant_id = 'globex' ORDER BY name")
	a.secrets = append([]string{"globex-1", "globex-2", "globex-edge", "globex-vec", "globex-marker"}, a.globexIDs...)
	a.digest = queryString(t, a.admin, digestSQL)
	a.p = startProxy(t, db, mode, sharedPool(mode))
	return a
}

// checkWorld fails if globex's rows (or the seeded acme rows) changed, or a prepared
// transaction or a row of an unknown tenant appeared.
func (a *arena) checkWorld(t testing.TB) {
	t.Helper()
	if got := queryString(t, a.admin, digestSQL); got != a.digest {
		t.Errorf("the data changed under the attack:\nbefore: %s\nafter:  %s", a.digest, got)
	}
}

// leaks reports the secrets s holds.
func (a *arena) leaks(s string) []string {
	var found []string
	for _, secret := range a.secrets {
		if strings.Contains(s, secret) {
			found = append(found, secret)
		}
	}
	return found
}

// noLeak fails if an answer to the attacker holds one of globex's secrets.
func (a *arena) noLeak(t testing.TB, what string, rows []string, err error) {
	t.Helper()
	text := strings.Join(rows, "\n")
	if err != nil {
		text += "\n" + errorText(err)
	}
	if found := a.leaks(text); len(found) > 0 {
		t.Errorf("%s revealed %v of tenant globex:\n%s", what, found, text)
	}
}

// errorText is everything an error tells the client.
func errorText(err error) string {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return strings.Join([]string{pgErr.Code, pgErr.Message, pgErr.Detail, pgErr.Hint, pgErr.Where,
			pgErr.SchemaName, pgErr.TableName, pgErr.ColumnName, pgErr.ConstraintName}, " | ")
	}
	return err.Error()
}

// codeOf is err's SQLSTATE, or its text when it has none.
func codeOf(err error) string {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return pgErr.Code
	}
	if err == nil {
		return "no error"
	}
	return err.Error()
}

// ---- reading answers ----

func opContext(t testing.TB) context.Context {
	c, cancel := context.WithTimeout(ctx, opTimeout)
	t.Cleanup(cancel)
	return c
}

func textRows(rows [][][]byte) []string {
	var out []string
	for _, row := range rows {
		cols := make([]string, len(row))
		for i, v := range row {
			if v == nil {
				cols[i] = "NULL"
			} else {
				cols[i] = string(v)
			}
		}
		out = append(out, strings.Join(cols, "|"))
	}
	return out
}

// simpleRows runs sql as one Query message and returns the rows of every result, as text.
func simpleRows(pc *pgconn.PgConn, sql string) ([]string, error) {
	c, cancel := context.WithTimeout(ctx, opTimeout)
	defer cancel()
	results, err := pc.Exec(c, sql).ReadAll()
	var out []string
	for _, r := range results {
		out = append(out, textRows(r.Rows)...)
	}
	return out, err
}

// unnamedRows runs sql as Parse (unnamed), Bind, Describe, Execute, Sync with text parameters.
func unnamedRows(pc *pgconn.PgConn, sql string, args ...string) ([]string, error) {
	c, cancel := context.WithTimeout(ctx, opTimeout)
	defer cancel()
	params := make([][]byte, len(args))
	for i, arg := range args {
		params[i] = []byte(arg)
	}
	r := pc.ExecParams(c, sql, params, nil, nil, nil).Read()
	return textRows(r.Rows), r.Err
}

// pgxRows runs sql through pgx's Query, in the connection's default mode (a named prepared
// statement, cached) unless args start with a QueryExecMode.
func pgxRows(conn *pgx.Conn, sql string, args ...any) ([]string, error) {
	c, cancel := context.WithTimeout(ctx, opTimeout)
	defer cancel()
	rows, err := conn.Query(c, sql, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		vals, err := rows.Values()
		if err != nil {
			return out, err
		}
		cols := make([]string, len(vals))
		for i, v := range vals {
			cols[i] = formatValue(v)
		}
		out = append(out, strings.Join(cols, "|"))
	}
	rows.Close()
	return out, rows.Err()
}

func formatValue(v any) string {
	switch x := v.(type) {
	case nil:
		return "NULL"
	case string:
		return x
	case []byte:
		return string(x)
	case [16]byte:
		return fmt.Sprintf("%x-%x-%x-%x-%x", x[0:4], x[4:6], x[6:8], x[8:10], x[10:16])
	}
	return fmt.Sprint(v)
}

// ---- peers: the attacker and the victims ----

// fingerprintSQL describes a session beyond its tenant: settings a client may change, its
// identity, and whether it is inside a transaction. A victim's must never change.
const fingerprintSQL = `SELECT concat_ws(' | ', current_setting('TimeZone'), current_setting('DateStyle'),
	current_setting('IntervalStyle'), current_setting('default_transaction_read_only'), current_setting('transaction_read_only'),
	current_setting('client_encoding'), current_setting('standard_conforming_strings'), current_setting('search_path'),
	current_setting('statement_timeout'), current_setting('row_security'), current_setting('application_name'),
	current_user, session_user, coalesce(pg_current_xact_id_if_assigned()::text, 'no transaction'))`

const visibleSQL = `SELECT DISTINCT tenant_id FROM (
	SELECT tenant_id FROM llmspell.entities UNION ALL SELECT tenant_id FROM llmspell.relationships
	UNION ALL SELECT tenant_id FROM llmspell.vector_embeddings_384) s ORDER BY 1`

// peer is a client of the proxy: its pgx connection, tenant, and its session's fingerprint
// before anything happened.
type peer struct {
	conn         *pgx.Conn
	user, tenant string
	base         string
}

func join(t testing.TB, p *testProxy, user, tenant string, extra ...string) *peer {
	t.Helper()
	pe := &peer{conn: p.connect(t, user, extra...), user: user, tenant: tenant}
	pe.base = pe.fingerprint(t)
	return pe
}

func (pe *peer) fingerprint(t testing.TB) string {
	t.Helper()
	rows, err := simpleRows(pe.conn.PgConn(), fingerprintSQL)
	if err != nil || len(rows) != 1 {
		t.Fatalf("%s: fingerprint: %v %v", pe.user, rows, err)
	}
	return rows[0]
}

// verify checks that pe's session still works and is still its tenant's: over the simple and
// the extended protocol it answers, holds its own tenant context and sees its tenant's rows and
// nothing else. For a victim, its session is also exactly as it was (fingerprint).
func (pe *peer) verify(t testing.TB, a *arena, who string, victim bool) {
	t.Helper()
	pc := pe.conn.PgConn()
	if rows, err := simpleRows(pc, "SELECT 1"); err != nil || !slices.Equal(rows, []string{"1"}) {
		t.Fatalf("%s (%s): the session is not usable: SELECT 1 gave %v, %v", who, pe.user, rows, err)
	}
	if rows, err := unnamedRows(pc, "SELECT 2"); err != nil || !slices.Equal(rows, []string{"2"}) {
		t.Fatalf("%s (%s): the session is not usable over the extended protocol: %v, %v", who, pe.user, rows, err)
	}
	want := []string{pe.tenant}
	if rows, err := simpleRows(pc, "SHOW app.current_tenant_id"); err != nil || !slices.Equal(rows, want) {
		t.Errorf("%s (%s): SHOW app.current_tenant_id = %v, %v; want %v", who, pe.user, rows, err, want)
	}
	if rows, err := unnamedRows(pc, "SELECT current_setting('app.current_tenant_id', true)"); err != nil || !slices.Equal(rows, want) {
		t.Errorf("%s (%s): current_setting over the extended protocol = %v, %v; want %v", who, pe.user, rows, err, want)
	}
	rows, err := simpleRows(pc, visibleSQL)
	if err != nil || !slices.Equal(rows, want) {
		t.Errorf("%s (%s) sees the rows of tenants %v (%v); want %v", who, pe.user, rows, err, want)
	}
	rows, err = unnamedRows(pc, visibleSQL)
	if err != nil || !slices.Equal(rows, want) {
		t.Errorf("%s (%s) sees the rows of tenants %v (%v) over the extended protocol; want %v", who, pe.user, rows, err, want)
	}
	if !victim {
		a.noLeak(t, who, rows, err)
		return
	}
	// pgx's own prepared statements (named, cached), which the proxy renames and shares.
	rows, err = pgxRows(pe.conn, "SELECT DISTINCT tenant_id FROM llmspell.entities ORDER BY 1")
	if err != nil || !slices.Equal(rows, want) {
		t.Errorf("%s (%s) sees the rows of tenants %v (%v) through a prepared statement; want %v", who, pe.user, rows, err, want)
	}
	if got := pe.fingerprint(t); got != pe.base {
		t.Errorf("%s (%s): the session changed under the attack:\nbefore: %s\nafter:  %s", who, pe.user, pe.base, got)
	}
}

// aftermath runs the checks every case ends with: the attacker is still itself, the victim
// too, and the next client of the victim's tenant, arriving after the attacker left, gets a
// clean session (in session mode: the attacker's former backend).
func (a *arena) aftermath(t *testing.T, p *testProxy, attacker, victim *peer) {
	t.Helper()
	if attacker != nil {
		attacker.verify(t, a, "the attacker", false)
		attacker.conn.Close(ctx)
	}
	if victim != nil {
		victim.verify(t, a, "the victim", true)
		next := join(t, p, victim.user, victim.tenant)
		next.base = victim.base
		next.verify(t, a, "the next client", true)
		next.conn.Close(ctx)
	}
	a.checkWorld(t)
}

// ---- raw protocol ----

// rawAs is a raw connection authenticated through p as user, ready for messages.
func rawAs(t testing.TB, p *testProxy, user string, extra ...string) *rawConn {
	t.Helper()
	c, cancel := context.WithTimeout(ctx, opTimeout)
	defer cancel()
	pc, err := pgconn.Connect(c, p.url(user, extra...))
	if err != nil {
		t.Fatalf("raw login as %s: %v", user, err)
	}
	if err := pc.SyncConn(c); err != nil {
		t.Fatal(err)
	}
	hc, err := pc.Hijack()
	if err != nil {
		t.Fatal(err)
	}
	hc.Conn.SetDeadline(time.Now().Add(opTimeout))
	t.Cleanup(func() { hc.Conn.Close() })
	return &rawConn{t: t, conn: hc.Conn, fe: pgproto3.NewFrontend(hc.Conn, hc.Conn)}
}

// events reads until n ReadyForQuery messages arrived and names what came, one word per
// message ("D value|value", "C tag", "E code", "Z status", "1" ParseComplete, "2" BindComplete,
// "3" CloseComplete, "I" EmptyQueryResponse, "s" PortalSuspended, "G" CopyInResponse);
// descriptions, notices and parameter status are left out. Rows and errors are checked for
// globex's secrets.
func (a *arena) events(r *rawConn, n int) []string {
	r.t.Helper()
	var out []string
	for n > 0 {
		m, err := r.fe.Receive()
		if err != nil {
			r.t.Fatalf("reading the proxy's answers: %v (so far %q)", err, out)
		}
		switch m := m.(type) {
		case *pgproto3.DataRow:
			out = append(out, "D "+strings.Join(textRows([][][]byte{m.Values}), ""))
		case *pgproto3.CommandComplete:
			out = append(out, "C "+string(m.CommandTag))
		case *pgproto3.ErrorResponse:
			out = append(out, "E "+m.Code)
			if found := a.leaks(m.Message + m.Detail + m.Hint + m.Where); len(found) > 0 {
				r.t.Errorf("an error revealed %v: %s %s", found, m.Message, m.Detail)
			}
			if m.Severity == "FATAL" {
				out = append(out, "FATAL")
				return out
			}
		case *pgproto3.ReadyForQuery:
			out = append(out, "Z "+string(m.TxStatus))
			n--
		case *pgproto3.ParseComplete:
			out = append(out, "1")
		case *pgproto3.BindComplete:
			out = append(out, "2")
		case *pgproto3.CloseComplete:
			out = append(out, "3")
		case *pgproto3.EmptyQueryResponse:
			out = append(out, "I")
		case *pgproto3.PortalSuspended:
			out = append(out, "s")
		case *pgproto3.CopyInResponse:
			out = append(out, "G")
		}
	}
	if found := a.leaks(strings.Join(out, "\n")); len(found) > 0 {
		r.t.Errorf("rows revealed %v: %q", found, out)
	}
	return out
}

// wantEvents compares answers; "E *" matches any error.
func wantEvents(t testing.TB, got []string, want ...string) {
	t.Helper()
	match := len(got) == len(want)
	for i := 0; match && i < len(want); i++ {
		match = got[i] == want[i] || want[i] == "E *" && strings.HasPrefix(got[i], "E ")
	}
	if !match {
		t.Errorf("answers:\n got  %q\n want %q", got, want)
	}
}

// rawVerify checks a raw attacker's session: usable, its tenant, its rows.
func (a *arena) rawVerify(t testing.TB, r *rawConn, tenant string) {
	t.Helper()
	r.send(&pgproto3.Query{String: "SELECT 1"}, &pgproto3.Query{String: "SHOW app.current_tenant_id"}, &pgproto3.Query{String: visibleSQL},
		&pgproto3.Parse{Query: "SELECT current_setting('app.current_tenant_id', true)"}, &pgproto3.Bind{}, &pgproto3.Execute{}, &pgproto3.Sync{})
	wantEvents(t, a.events(r, 4), "D 1", "C SELECT 1", "Z I", "D "+tenant, "C SHOW", "Z I", "D "+tenant, "C SELECT 1", "Z I",
		"1", "2", "D "+tenant, "C SELECT 1", "Z I")
}

const (
	msgContext          = "the tenant context is set by the proxy"
	msgSetConfigWrapper = "is refused: the tenant context, the session's identity and how the server reads statements are set by the proxy"
	msgPooled           = "is not supported in transaction pooling mode"
	msgRole             = "the session's role is fixed by the proxy"
	msgIdentity         = "the session's identity is fixed by the proxy"
	msgPgSettings       = "of pg_settings is refused"
	msgPersistent       = "would change the settings of every tenant's sessions"
	msgRoleDDL          = "roles are managed outside the proxy"
	msgDynamic          = "it runs SQL the proxy cannot inspect"
	msgCode             = "code defined here would run SQL the proxy cannot inspect"
	msgLargeObj         = "large objects are shared by every tenant"
	msgLexer            = "the proxy must read statements as the server does"
	msgRLS              = "row-level security policy"
	msgNoTemp           = "permission denied to create temporary tables"
	msgOtherSessions    = "it reads or acts on other sessions"
	msgExplain          = "EXPLAIN is refused"
)

// ---- custom cases ----

type customCase struct {
	name string
	run  func(t *testing.T, a *arena)
}

// rawScene: a victim (bob, globex) connected first, then a raw attacker (alice, acme).
func (a *arena) rawScene(t *testing.T) (*rawConn, *peer) {
	victim := join(t, a.p, "bob", "globex")
	return rawAs(t, a.p, "alice"), victim
}

func (a *arena) rawAftermath(t *testing.T, r *rawConn, victim *peer) {
	t.Helper()
	a.rawVerify(t, r, "acme")
	r.conn.Close()
	a.aftermath(t, a.p, nil, victim)
}

func (a *arena) pooledCode() string {
	if a.mode == "transaction" {
		return "0A000"
	}
	return "26000"
}

// queryMessage builds a Query message holding exactly text, zero bytes included.
func queryMessage(text string) []byte {
	msg := append([]byte{'Q', 0, 0, 0, 0}, text...)
	msg = append(msg, 0)
	binary.BigEndian.PutUint32(msg[1:], uint32(len(msg)-1))
	return msg
}

var setConfigCall = &pgproto3.FunctionCall{Function: 2078, // set_config(text, text, boolean)
	Arguments: [][]byte{[]byte("app.current_tenant_id"), []byte("globex"), []byte("false")}}

// waitActive waits until the server runs the statement with marker.
func (a *arena) waitActive(t *testing.T, marker string) { waitRunning(t, a.admin, marker) }

// background runs sql on conn in a goroutine; the channel gets its error.
func background(conn *pgx.Conn, sql string) <-chan error {
	done := make(chan error, 1)
	go func() {
		_, err := simpleRows(conn.PgConn(), sql)
		done <- err
	}()
	return done
}

func await(t *testing.T, done <-chan error, what string) {
	t.Helper()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("%s: %v", what, err)
		}
	case <-time.After(opTimeout):
		t.Fatalf("%s never finished", what)
	}
}

// ownProxy is a proxy of the arena's database with a pool of size.
func (a *arena) ownProxy(t *testing.T, size int, edit ...func(*config.Config)) *testProxy {
	return startProxy(t, a.db, a.mode, append([]func(*config.Config){func(c *config.Config) { c.Pool.Size = size }}, edit...)...)
}

// disposableProxy is like startProxy, for cases that may leave a client goroutine of the proxy
// stuck: its cleanup gives Close a few seconds and then abandons it instead of hanging the suite.
func disposableProxy(t *testing.T, db *pgtest.DB, mode string, edit ...func(*config.Config)) *testProxy {
	t.Helper()
	cfg := testConfig(db, mode)
	for _, e := range edit {
		e(cfg)
	}
	logs := &syncBuffer{}
	srv, err := proxy.New(cfg, zerolog.New(logs).Level(zerolog.InfoLevel))
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	t.Cleanup(func() {
		closed := make(chan struct{})
		go func() { srv.Close(); close(closed) }()
		select {
		case <-closed:
		case <-time.After(3 * time.Second):
			t.Errorf("the proxy did not close within 3s: a client goroutine is stuck")
		}
		if t.Failed() {
			t.Logf("proxy log:\n%s", logs.String())
		}
	})
	return &testProxy{srv: srv, addr: ln.Addr().String(), db: db, cfg: cfg, logs: logs}
}

// customGroups are the attacks that are not one statement.
func customGroups() []struct {
	name  string
	cases []customCase
} {
	return []struct {
		name  string
		cases []customCase
	}{
		{"pipeline", pipelineCases()},
		{"prepared", preparedCases()},
		{"cursor and temp", cursorCases()},
		{"cancel", cancelCases()},
		{"activity", activityCases()},
		{"oracle", oracleCases()},
		{"reset", resetCases()},
		{"settings leak", leakCases()},
		{"vanish", vanishCases()},
		{"storm", []customCase{stormCase()}},
		{"large message", largeMessageCases()},
		{"memory", memoryCases()},
	}
}

// TestAttack runs every attack case through the real proxy in both pool modes.
func TestAttack(t *testing.T) {
	cases := len(statementAttacks) + len(startupAttacks)
	for _, g := range customGroups() {
		cases += len(g.cases)
	}
	t.Logf("%d attack cases: %d statements (each over %d protocols), %d startup packets, %d others",
		cases, len(statementAttacks), len(protocols), len(startupAttacks), cases-len(statementAttacks)-len(startupAttacks))
	for _, mode := range modes {
		t.Run(mode, func(t *testing.T) {
			t.Parallel()
			a := newArena(t, mode)
			t.Run("statement", func(t *testing.T) {
				for _, sc := range statementAttacks {
					t.Run(sc.name, func(t *testing.T) {
						for _, proto := range protocols {
							t.Run(proto.name, func(t *testing.T) { a.runStatement(t, sc, proto) })
						}
					})
				}
			})
			t.Run("startup", func(t *testing.T) {
				for _, sc := range startupAttacks {
					t.Run(sc.name, func(t *testing.T) { a.runStartup(t, sc) })
				}
			})
			for _, g := range customGroups() {
				t.Run(g.name, func(t *testing.T) {
					for _, c := range g.cases {
						t.Run(c.name, func(t *testing.T) { c.run(t, a) })
					}
				})
			}
		})
	}
}
