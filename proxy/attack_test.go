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
	"sync"
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
	msgContext    = "the tenant context is set by the proxy"
	msgSetConfig  = "set_config is refused unless its first argument is a constant setting name"
	msgPooled     = "is not supported in transaction pooling mode"
	msgRole       = "the session's role is fixed by the proxy"
	msgIdentity   = "the session's identity is fixed by the proxy"
	msgPgSettings = "of pg_settings is refused"
	msgPersistent = "would change the settings of every tenant's sessions"
	msgRoleDDL    = "roles are managed outside the proxy"
	msgDynamic    = "it runs SQL the proxy cannot inspect"
	msgCode       = "code defined here would run SQL the proxy cannot inspect"
	msgNotify     = "notification channels are shared by every tenant"
	msgLargeObj   = "large objects are shared by every tenant"
	msgLexer      = "the proxy must read statements as the server does"
	msgRLS        = "row-level security policy"
	msgNoTemp     = "permission denied to create temporary tables"
)

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
	guarded("set_config concatenated name", `SELECT set_config('app.' || 'current_tenant_id', 'globex', false)`, msgSetConfig),
	guarded("set_config escape-string name", `SELECT set_config(E'\x61pp.current_tenant_id', 'globex', false)`, msgContext),
	guarded("set_config computed name", `SELECT set_config(lower('APP.CURRENT_TENANT_ID'), 'globex', false)`, msgSetConfig),
	guarded("set_config name from a column", `SELECT set_config(n, 'globex', false) FROM (VALUES ('app.current_tenant_id')) v(n)`, msgSetConfig),
	guarded("set_config name from an array", `SELECT set_config(('{app.current_tenant_id}'::text[])[1], 'globex', false)`, msgSetConfig),
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
	pooled("SET of a look-alike name", `SET аpp.current_tenant_id = 'globex'`, succeeds), // Cyrillic а: another setting

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
	pooled("SET session_replication_role", `SET session_replication_role = replica`, outcome{"42501", "permission denied to set parameter"}),
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
	guarded("pg_cancel_backend", `SELECT pg_cancel_backend(pg_backend_pid())`, "it acts on other clients' sessions"),
	guarded("pg_terminate_backend", `SELECT pg_terminate_backend(pid) FROM pg_stat_activity`, "it acts on other clients' sessions"),

	// Session state a pooled backend would carry to the next client, and temporary objects.
	pooled("DECLARE WITH HOLD", `DECLARE atk_hold CURSOR WITH HOLD FOR SELECT name FROM llmspell.entities`, succeeds),
	pooled("CREATE TEMP TABLE shadowing entities", `CREATE TEMP TABLE entities (tenant_id text, name text)`, outcome{"42501", msgNoTemp}),
	pooled("CREATE TEMPORARY VIEW", `CREATE TEMPORARY VIEW entities AS SELECT 'globex'::text AS tenant_id`, outcome{"42501", msgNoTemp}),
	pooled("CREATE TABLE in pg_temp", `CREATE TABLE pg_temp.entities (tenant_id text)`, outcome{"42501", msgNoTemp}),
	pooled("SELECT INTO TEMP", `SELECT * INTO TEMP atk FROM llmspell.entities`, outcome{"42501", msgNoTemp}),
	pooled("SET search_path with pg_temp first", `SET search_path = pg_temp, llmspell`, succeeds),
	pooled("SET LOCAL search_path with pg_temp", `SET LOCAL search_path = pg_temp, llmspell`, succeeds),
	pooled("SET search_path", `SET search_path TO llmspell`, succeeds),
	pooled("set_config search_path", `SELECT set_config('search_path', 'pg_temp', false)`, outcome{"42501", "permission denied for function set_config"}),
	pooled("PREPARE", `PREPARE atk AS SELECT 1`, succeeds),
	pooled("EXECUTE an internal name", `EXECUTE tenantproxy_1`, outcome{"26000", "does not exist"}),
	pooled("EXPLAIN EXECUTE an internal name", `EXPLAIN EXECUTE tenantproxy_2`, outcome{"26000", "does not exist"}),
	pooled("DEALLOCATE an internal name", `DEALLOCATE tenantproxy_1`, outcome{"26000", "does not exist"}),
	pooled("session advisory lock", `SELECT pg_advisory_lock(42)`, succeeds),
	pooled("lastval", `SELECT lastval()`, outcome{"55000", "lastval is not yet defined"}),
	pooled("SET statement_timeout", `SET statement_timeout = '10min'`, succeeds),
	pooled("SET SESSION CHARACTERISTICS", `SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY`, succeeds),
	guarded("LISTEN", `LISTEN tenant_events`, msgNotify),
	guarded("LISTEN quoted", `LISTEN "App"`, msgNotify),
	guarded("NOTIFY", `NOTIFY tenant_events, 'acme says hi'`, msgNotify),
	guarded("pg_notify", `SELECT pg_notify('tenant_events', 'acme says hi')`, msgNotify),
	harmless("UNLISTEN", `UNLISTEN *`),
	guarded("lo_creat", `SELECT lo_creat(-1)`, msgLargeObj),
	guarded("lo_import", `SELECT lo_import('/etc/passwd')`, msgLargeObj),
	guarded("lo_from_bytea", `SELECT lo_from_bytea(0, 'x')`, msgLargeObj),
	guarded("lo_get", `SELECT lo_get(1)`, msgLargeObj),
	guarded("loread", `SELECT loread(lo_open(1, 262144), 10)`, msgLargeObj),
	denied("pg_largeobject", `SELECT * FROM pg_largeobject`, "42501", "permission denied"),

	// Other sessions' work.
	denied("pg_stat_activity", `SELECT query FROM pg_stat_activity`, "42501", "permission denied"),
	denied("pg_stat_get_activity", `SELECT * FROM pg_stat_get_activity(NULL)`, "42501", "permission denied"),
	denied("pg_stat_get_backend_activity", `SELECT pg_stat_get_backend_activity(s) FROM pg_stat_get_backend_idset() s`, "42501", "permission denied"),
	denied("pg_locks", `SELECT * FROM pg_locks`, "42501", "permission denied"),
	denied("pg_lock_status", `SELECT * FROM pg_lock_status()`, "42501", "permission denied"),
	denied("pg_prepared_statements", `SELECT * FROM pg_prepared_statements`, "42501", "permission denied"),
	denied("pg_prepared_statement", `SELECT * FROM pg_prepared_statement()`, "42501", "permission denied"),
	denied("pg_cursors", `SELECT * FROM pg_cursors`, "42501", "permission denied"),
	denied("pg_blocking_pids", `SELECT pg_blocking_pids(pg_backend_pid())`, "42501", "permission denied"),

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

// ---- the startup packet ----

type startupCase struct {
	name  string
	user  string
	extra []string          // URL query parameters, as pgx sends them in the startup packet
	raw   map[string]string // or a raw startup packet
	code  string            // "" means the login must succeed (and change nothing)
	msg   string
	// orLogin: the login may also succeed, as the user's own tenant.
	orLogin bool
}

var startupAttacks = []startupCase{
	{"options -c app.current_tenant_id", "alice", []string{"options=-c%20app.current_tenant_id%3Dglobex"}, nil, "42501", "reserved", false},
	{"options -c odd case", "alice", []string{"options=-c%20App.Current_Tenant_Id%3Dglobex"}, nil, "42501", "reserved", false},
	{"options --dashed-name", "alice", []string{"options=--app.current-tenant-id%3Dglobex"}, nil, "42501", "reserved", false},
	{"options -c glued", "alice", []string{"options=-capp.current_tenant_id%3Dglobex"}, nil, "42501", "reserved", false},
	{"options tenant then setting", "alice", []string{"options=-c%20tenant%3Dacme%20-c%20app.current_tenant_id%3Dglobex"}, nil, "42501", "reserved", false},
	{"options escaped space", "alice", []string{`options=-c%5C%20app.current_tenant_id%3Dglobex`}, nil, "0A000", "unsupported option", false},
	{"options another tenant", "alice", []string{"options=-c%20tenant%3Dglobex"}, nil, "28000", `may not act for tenant "globex"`, false},
	{"options role", "alice", []string{"options=-c%20role%3Dtenantproxy_owner"}, nil, "0A000", "unsupported option", false},
	{"options session_authorization", "alice", []string{"options=-c%20session_authorization%3Dpostgres"}, nil, "0A000", "unsupported option", false},
	{"options search_path", "alice", []string{"options=-c%20search_path%3Dpg_temp"}, nil, "0A000", "unsupported option", false},
	{"options row_security", "alice", []string{"options=-c%20row_security%3Doff"}, nil, "0A000", "unsupported option", false},
	{"options default_transaction_read_only", "alice", []string{"options=-c%20default_transaction_read_only%3Don"}, nil, "0A000", "unsupported option", false},
	{"setting as a startup parameter", "alice", []string{"app.current_tenant_id=globex"}, nil, "42501", "reserved", false},
	{"setting as a startup parameter, odd case", "alice", []string{"APP.Current_Tenant_ID=globex"}, nil, "42501", "reserved", false},
	{"setting with a trailing space", "alice", nil, map[string]string{"user": "alice", "database": "app", "app.current_tenant_id ": "globex"}, "42501", "reserved", false},
	{"another namespace member", "alice", []string{"app.tenant=globex"}, nil, "42501", "reserved", false},
	{"tenant parameter of another tenant", "alice", []string{"tenant=globex"}, nil, "28000", `may not act for tenant "globex"`, false},
	{"tenant parameter in upper case", "alice", []string{"TENANT=globex"}, nil, "28000", `may not act for tenant "globex"`, false},
	{"tenant parameter with a quote", "carol", []string{"tenant=globex%27"}, nil, "28000", "does not exist", false},
	{"tenant chosen twice", "alice", []string{"tenant=acme", "options=-c%20tenant%3Dglobex"}, nil, "28000", "conflicting tenant choices", false},
	{"replication database", "alice", []string{"replication=database"}, nil, "42501", "replication", false},
	{"replication true", "alice", []string{"replication=true"}, nil, "42501", "replication", false},
	{"client_encoding SJIS", "alice", []string{"client_encoding=SJIS"}, nil, "0A000", "client_encoding", false},
	{"client_encoding win932", "alice", []string{"client_encoding=win932"}, nil, "0A000", "client_encoding", false},
	{"client_encoding GBK", "alice", []string{"client_encoding=GBK"}, nil, "0A000", "client_encoding", false},
	{"search_path with pg_temp", "alice", []string{"search_path=pg_temp,llmspell"}, nil, "0A000", "search_path", false},
	{"application_name with a quote", "alice", []string{"application_name=x%27%3B%20SET%20app.current_tenant_id%3D%27globex"}, nil, "08P01", "invalid value", false},
	{"DateStyle with a backslash", "alice", []string{`DateStyle=ISO%5C`}, nil, "08P01", "invalid value", false},
	{"standard_conforming_strings", "alice", []string{"standard_conforming_strings=off"}, nil, "0A000", "unsupported startup parameter", false},
	{"session_authorization parameter", "alice", []string{"session_authorization=postgres"}, nil, "0A000", "unsupported startup parameter", false},
	{"role parameter", "alice", []string{"role=tenantproxy_owner"}, nil, "0A000", "unsupported startup parameter", false},
	{"application_name naming the setting", "alice", []string{"application_name=app.current_tenant_id%3Dglobex"}, nil, "", "", false},
}

func (a *arena) runStartup(t *testing.T, sc startupCase) {
	p := a.p
	if sc.code == "" || sc.orLogin {
		// A login that may succeed gets a proxy of its own: what it leaves in the pool is
		// the subject of the settings leak cases, not of this one.
		p = startProxy(t, a.db, a.mode, sharedPool(a.mode))
	}
	victim := join(t, p, "bob", "globex")
	if sc.raw != nil {
		r := dialRaw(t, p.addr)
		r.write(startupPacket(sc.raw))
		e := until[*pgproto3.ErrorResponse](r)
		if e.Severity != "FATAL" || e.Code != sc.code || !strings.Contains(e.Message, sc.msg) {
			t.Errorf("got %s %s %q, want FATAL %s with %q", e.Severity, e.Code, e.Message, sc.code, sc.msg)
		}
	} else {
		conn, err := pgx.Connect(opContext(t), p.url(sc.user, sc.extra...))
		var pgErr *pgconn.PgError
		switch {
		case err == nil && (sc.code == "" || sc.orLogin):
			pe := &peer{conn: conn, user: sc.user, tenant: "acme"}
			pe.verify(t, a, "the client", false)
			conn.Close(ctx)
		case err == nil:
			conn.Close(ctx)
			t.Errorf("want FATAL %s with %q, the login succeeded", sc.code, sc.msg)
		case !errors.As(err, &pgErr) || pgErr.Severity != "FATAL" || pgErr.Code != sc.code || !strings.Contains(pgErr.Message, sc.msg):
			t.Errorf("want FATAL %s with %q, got %v", sc.code, sc.msg, err)
		}
	}
	if sc.code == "" || sc.orLogin {
		victim.base = victim.fingerprint(t) // the settings leak cases judge the rest
	}
	a.aftermath(t, p, join(t, p, "alice", "acme"), victim)
}

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

// internalName is the pool-wide name the proxy gives (in transaction mode) to a statement text
// prepared without parameter types.
func (a *arena) internalName(query string) string {
	return a.p.srv.Pool().Statement([]byte(query), []byte{0, 0}, "").Name
}

// internalNamesToTry are the pool-wide names an attacker would guess (the first twenty) and
// those of the statements the victim prepares now.
func (a *arena) internalNamesToTry(t *testing.T, victim *peer) []string {
	t.Helper()
	var names []string
	for i := 1; i <= 20; i++ {
		names = append(names, fmt.Sprintf("tenantproxy_%d", i))
	}
	for _, text := range prepareSecrets(t, victim) {
		names = append(names, a.internalName(text))
	}
	return names
}

// prepareSecrets has the victim prepare and run named statements holding globex markers.
func prepareSecrets(t *testing.T, victim *peer) []string {
	t.Helper()
	var texts []string
	for i := range 3 {
		text := fmt.Sprintf("SELECT 'globex-marker-%d'::text || $1::text", i)
		name := fmt.Sprintf("bob_secret_%d", i)
		if _, err := victim.conn.PgConn().Prepare(opContext(t), name, text, nil); err != nil {
			t.Fatal(err)
		}
		r := victim.conn.PgConn().ExecPrepared(opContext(t), name, [][]byte{[]byte("!")}, nil, nil).Read()
		if r.Err != nil || len(r.Rows) != 1 {
			t.Fatalf("the victim's own statement: %v", r.Err)
		}
		texts = append(texts, text)
	}
	return texts
}

// checkSecretsStillWork: the victim's statements answer the victim, as before.
func checkSecretsStillWork(t *testing.T, victim *peer) {
	t.Helper()
	for i := range 3 {
		r := victim.conn.PgConn().ExecPrepared(opContext(t), fmt.Sprintf("bob_secret_%d", i), [][]byte{[]byte("?")}, nil, nil).Read()
		want := []string{fmt.Sprintf("globex-marker-%d?", i)}
		if r.Err != nil || !slices.Equal(textRows(r.Rows), want) {
			t.Errorf("the victim's statement %d now gives %q, %v", i, textRows(r.Rows), r.Err)
		}
	}
}

func preparedCases() []customCase {
	sync := &pgproto3.Sync{}
	return []customCase{
		{"another client's statement by its name", func(t *testing.T, a *arena) {
			victim := join(t, a.p, "bob", "globex")
			prepareSecrets(t, victim)
			r := rawAs(t, a.p, "alice")
			for i := range 3 {
				name := fmt.Sprintf("bob_secret_%d", i)
				r.send(&pgproto3.Bind{PreparedStatement: name, Parameters: [][]byte{[]byte("x")}}, &pgproto3.Execute{}, sync,
					&pgproto3.Describe{ObjectType: 'S', Name: name}, sync,
					&pgproto3.Query{String: "EXECUTE " + name + "('x')"})
				wantEvents(t, a.events(r, 3), "E 26000", "Z I", "E 26000", "Z I", "E "+a.pooledCode(), "Z I")
			}
			checkSecretsStillWork(t, victim)
			a.rawAftermath(t, r, victim)
		}},
		{"internal names over the protocol", func(t *testing.T, a *arena) {
			victim := join(t, a.p, "bob", "globex")
			names := a.internalNamesToTry(t, victim)
			r := rawAs(t, a.p, "alice")
			for _, name := range names {
				r.send(&pgproto3.Bind{PreparedStatement: name, Parameters: [][]byte{[]byte("x")}}, &pgproto3.Execute{}, sync,
					&pgproto3.Describe{ObjectType: 'S', Name: name}, sync)
				wantEvents(t, a.events(r, 2), "E 26000", "Z I", "E 26000", "Z I")
			}
			checkSecretsStillWork(t, victim)
			a.rawAftermath(t, r, victim)
		}},
		{"internal names through SQL EXECUTE", func(t *testing.T, a *arena) {
			victim := join(t, a.p, "bob", "globex")
			names := a.internalNamesToTry(t, victim)
			r := rawAs(t, a.p, "alice")
			code := "E " + a.pooledCode()
			extended := []string{code, "Z I"}
			if a.mode == "session" { // the server finds out at Execute
				extended = []string{"1", "2", code, "Z I"}
			}
			for _, name := range names {
				r.send(&pgproto3.Query{String: "EXECUTE " + name + "('x')"}, &pgproto3.Query{String: "EXPLAIN EXECUTE " + name + "('x')"},
					&pgproto3.Parse{Query: "EXECUTE " + name + "('x')"}, &pgproto3.Bind{}, &pgproto3.Execute{}, sync)
				wantEvents(t, a.events(r, 3), append([]string{code, "Z I", code, "Z I"}, extended...)...)
			}
			checkSecretsStillWork(t, victim)
			a.rawAftermath(t, r, victim)
		}},
		{"DEALLOCATE ALL", func(t *testing.T, a *arena) {
			victim := join(t, a.p, "bob", "globex")
			prepareSecrets(t, victim)
			attacker := join(t, a.p, "alice", "acme")
			pc := attacker.conn.PgConn()
			if _, err := pc.Prepare(opContext(t), "mine", "SELECT 'acme-own'::text", nil); err != nil {
				t.Fatal(err)
			}
			for _, run := range []func() ([]string, error){
				func() ([]string, error) { return simpleRows(pc, "DEALLOCATE ALL") },
				func() ([]string, error) { return unnamedRows(pc, "DEALLOCATE ALL") },
				func() ([]string, error) { return simpleRows(pc, "DEALLOCATE PREPARE ALL") },
			} {
				if _, err := run(); err != nil {
					t.Errorf("DEALLOCATE ALL: %v", err)
				}
				checkSecretsStillWork(t, victim)
			}
			// Its own statements are gone, as on a server of its own.
			r := pc.ExecPrepared(opContext(t), "mine", nil, nil, nil).Read()
			if codeOf(r.Err) != "26000" {
				t.Errorf("the attacker's own statement after DEALLOCATE ALL: %q, %v", textRows(r.Rows), r.Err)
			}
			a.aftermath(t, a.p, attacker, victim)
		}},
		{"Close by internal and other clients' names", func(t *testing.T, a *arena) {
			victim := join(t, a.p, "bob", "globex")
			texts := prepareSecrets(t, victim)
			r := rawAs(t, a.p, "alice")
			r.send(&pgproto3.Close{ObjectType: 'S', Name: "tenantproxy_1"}, &pgproto3.Close{ObjectType: 'S', Name: a.internalName(texts[0])},
				&pgproto3.Close{ObjectType: 'S', Name: "bob_secret_1"}, &pgproto3.Close{ObjectType: 'S', Name: ""},
				&pgproto3.Close{ObjectType: 'P', Name: ""}, sync)
			wantEvents(t, a.events(r, 1), "3", "3", "3", "3", "3", "Z I")
			checkSecretsStillWork(t, victim)
			a.rawAftermath(t, r, victim)
		}},
		{"unnamed statement left on the backend", func(t *testing.T, a *arena) {
			victim := join(t, a.p, "bob", "globex")
			if rows, err := unnamedRows(victim.conn.PgConn(), "SELECT 'globex-marker-unnamed'::text"); err != nil || len(rows) != 1 {
				t.Fatalf("victim: %v %v", rows, err)
			}
			r := rawAs(t, a.p, "alice")
			r.send(&pgproto3.Bind{}, &pgproto3.Execute{}, sync, &pgproto3.Describe{ObjectType: 'S'}, sync,
				&pgproto3.Describe{ObjectType: 'P'}, sync, &pgproto3.Execute{}, sync)
			wantEvents(t, a.events(r, 4), "E 26000", "Z I", "E 26000", "Z I", "E 34000", "Z I", "E 34000", "Z I")
			a.rawAftermath(t, r, victim)
		}},
		{"portal left by another client", func(t *testing.T, a *arena) {
			victim := join(t, a.p, "bob", "globex")
			victim.conn.Close(ctx)
			rb := rawAs(t, a.p, "bob")
			rb.send(&pgproto3.Query{String: "BEGIN"}, &pgproto3.Parse{Query: "SELECT name FROM llmspell.entities"},
				&pgproto3.Bind{DestinationPortal: "bobportal"}, sync, &pgproto3.Query{String: "COMMIT"})
			wantEvents(t, a.events(rb, 3), "C BEGIN", "Z T", "1", "2", "Z T", "C COMMIT", "Z I")
			rb.conn.Close()
			victim = join(t, a.p, "bob", "globex")
			r := rawAs(t, a.p, "alice")
			r.send(&pgproto3.Execute{Portal: "bobportal"}, sync, &pgproto3.Describe{ObjectType: 'P', Name: "bobportal"}, sync,
				&pgproto3.Query{String: "FETCH ALL FROM bobportal"})
			wantEvents(t, a.events(r, 3), "E 34000", "Z I", "E 34000", "Z I", "E 34000", "Z I")
			a.rawAftermath(t, r, victim)
		}},
		{"SQL PREPARE left for the next client", func(t *testing.T, a *arena) {
			victim := join(t, a.p, "bob", "globex")
			_, err := simpleRows(victim.conn.PgConn(), "PREPARE bob_sql AS SELECT 'globex-marker-sql'::text")
			if a.mode == "transaction" && codeOf(err) != "0A000" || a.mode == "session" && err != nil {
				t.Errorf("PREPARE: %v", err)
			}
			victim.conn.Close(ctx) // in session mode its backend goes to the next client
			attacker := join(t, a.p, "alice", "acme")
			for _, exec := range []func(*pgconn.PgConn, string, ...string) ([]string, error){
				func(pc *pgconn.PgConn, s string, _ ...string) ([]string, error) { return simpleRows(pc, s) }, unnamedRows,
			} {
				rows, err := exec(attacker.conn.PgConn(), "EXECUTE bob_sql")
				a.noLeak(t, "EXECUTE", rows, err)
				if codeOf(err) != a.pooledCode() {
					t.Errorf("EXECUTE of the previous client's statement: %q, %v", rows, err)
				}
			}
			a.aftermath(t, a.p, attacker, join(t, a.p, "bob", "globex"))
		}},
		{"search_path at Parse time carried to another client by a shared statement", func(t *testing.T, a *arena) {
			// Alice prepares an unqualified name under her own (transaction-local) search_path;
			// Bob then prepares the same text under his. As on a server of his own, Bob's name
			// must resolve with Bob's search_path (here: not at all).
			victim := join(t, a.p, "bob", "globex")
			attacker := join(t, a.p, "alice", "acme")
			const text = "SELECT DISTINCT tenant_id FROM entities ORDER BY 1"
			pc := attacker.conn.PgConn()
			if _, err := simpleRows(pc, "BEGIN; SET LOCAL search_path = llmspell"); err != nil {
				t.Fatal(err)
			}
			if _, err := pc.Prepare(opContext(t), "alice_unqualified", text, nil); err != nil {
				t.Fatal(err)
			}
			simpleRows(pc, "COMMIT")
			_, err := victim.conn.PgConn().Prepare(opContext(t), "bob_unqualified", text, nil)
			if codeOf(err) != "42P01" {
				r := victim.conn.PgConn().ExecPrepared(opContext(t), "bob_unqualified", nil, nil, nil).Read()
				t.Errorf("the victim's Parse of an unqualified name resolved with the attacker's search_path: %v (it ran: %q, %v)", err, textRows(r.Rows), r.Err)
			}
			a.aftermath(t, a.p, attacker, victim)
		}},
		{"same statement text for two tenants", func(t *testing.T, a *arena) {
			victim := join(t, a.p, "bob", "globex")
			attacker := join(t, a.p, "alice", "acme")
			const text = "SELECT DISTINCT tenant_id FROM llmspell.entities WHERE tenant_id = ANY($1::text[]) ORDER BY 1"
			tenants := []string{"acme", "globex"}
			for round := range 3 {
				for _, pe := range []*peer{attacker, victim, attacker} {
					rows, err := pgxRows(pe.conn, text, tenants)
					if err != nil || !slices.Equal(rows, []string{pe.tenant}) {
						t.Errorf("round %d: %s sees %q, %v through the shared statement", round, pe.user, rows, err)
					}
					tx, err := pe.conn.Begin(opContext(t))
					if err != nil {
						t.Fatal(err)
					}
					rows, err = pgxRows(pe.conn, text, tenants)
					if err != nil || !slices.Equal(rows, []string{pe.tenant}) {
						t.Errorf("round %d: %s sees %q, %v in a transaction", round, pe.user, rows, err)
					}
					tx.Rollback(opContext(t))
				}
			}
			a.aftermath(t, a.p, attacker, victim)
		}},
	}
}

func cursorCases() []customCase {
	return []customCase{
		{"WITH HOLD cursor left for the next client", func(t *testing.T, a *arena) {
			attacker := join(t, a.p, "alice", "acme")
			_, err := simpleRows(attacker.conn.PgConn(), "DECLARE atk_hold CURSOR WITH HOLD FOR SELECT name FROM llmspell.entities")
			if a.mode == "transaction" && codeOf(err) != "0A000" || a.mode == "session" && err != nil {
				t.Errorf("DECLARE WITH HOLD: %v", err)
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
			_, err := simpleRows(pc, "SET row_security = off")
			if a.mode == "transaction" && codeOf(err) != "0A000" || a.mode == "session" && err != nil {
				t.Errorf("SET row_security: %v", err)
			}
			if a.mode == "session" {
				rows, err := simpleRows(pc, visibleSQL)
				if codeOf(err) != "42501" {
					t.Errorf("with row_security off the attacker reads %q, %v", rows, err)
				}
				a.noLeak(t, "row_security off", rows, err)
				simpleRows(pc, "RESET row_security")
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

// waitActive waits until a query holding marker runs on the server (the superuser sees it).
func (a *arena) waitActive(t *testing.T, marker string) {
	t.Helper()
	deadline := time.Now().Add(opTimeout)
	for time.Now().Before(deadline) {
		n := queryInt(t, a.admin, `SELECT count(*) FROM pg_stat_activity
			WHERE state = 'active' AND pid <> pg_backend_pid() AND position($1 in query) > 0`, marker)
		if n > 0 {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("the query with %s never ran", marker)
}

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
			if states := pgtest.QueryStrings(t, a.admin, `SELECT state || ', transaction open since ' || coalesce(xact_start::text, '-') FROM pg_stat_activity
				WHERE datname = current_database() AND usename = 'tenantproxy_app' AND backend_start >= $1::timestamptz
				AND (xact_start IS NOT NULL OR state LIKE 'idle in%')`, since); len(states) > 0 {
				t.Errorf("after the client vanished, a backend of the pool is %q", states)
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
