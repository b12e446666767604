package proxy_test

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"
)

// Prepared statements: other clients' statements and the proxy's internal names.

// internalName is the name the proxy gives (in transaction mode) to a statement text the victim
// (tenant globex, default settings) prepared without parameter types: the worst case, an
// attacker who knows it.
func (a *arena) internalName(t *testing.T, query string) string {
	stmt, err := a.p.srv.Pool().Statement([]byte(query), []byte{0, 0}, "globex\x00")
	if err != nil {
		t.Fatal(err)
	}
	a.p.srv.Pool().ReleaseStatement(stmt)
	return stmt.Name
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
		names = append(names, a.internalName(t, text))
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

// bindError prepares text under name, binds it with no parameters (it needs one), and returns
// the error the client gets.
func bindError(t *testing.T, r *rawConn, name, text string) string {
	t.Helper()
	r.send(&pgproto3.Parse{Name: name, Query: text}, &pgproto3.Bind{PreparedStatement: name}, &pgproto3.Execute{},
		&pgproto3.Close{ObjectType: 'S', Name: name}, &pgproto3.Sync{})
	message := ""
	for {
		m, err := r.fe.Receive()
		if err != nil {
			t.Fatal(err)
		}
		switch m := m.(type) {
		case *pgproto3.ErrorResponse:
			message = m.Code + " " + m.Message + " " + m.Detail + " " + m.Hint
		case *pgproto3.ReadyForQuery:
			return message
		}
	}
}

func preparedCases() []customCase {
	sync := &pgproto3.Sync{}
	return []customCase{
		{"a text another tenant prepared is no oracle", func(t *testing.T, a *arena) {
			// Parse a guess, then Bind it wrongly: the error must be the same whether another
			// tenant prepared that exact text or nobody did, and name the client's statement.
			victim := join(t, a.p, "bob", "globex")
			texts := prepareSecrets(t, victim)
			r := rawAs(t, a.p, "alice")
			known := bindError(t, r, "guess_a", texts[0])
			fresh := bindError(t, r, "guess_b", strings.Replace(texts[0], "marker-0", "marker-unknown", 1))
			if !strings.Contains(known, `"guess_a"`) || strings.Contains(known, "tenantproxy_") {
				t.Errorf("the error does not name the client's own statement: %s", known)
			}
			if strings.ReplaceAll(known, "guess_a", "guess_b") != fresh {
				t.Errorf("the error differs for a text globex prepared:\n  %s\n  %s", known, fresh)
			}
			checkSecretsStillWork(t, victim)
			a.rawAftermath(t, r, victim)
		}},
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
			explain := code
			if a.mode == "session" { // the server finds out at Execute; EXPLAIN is refused
				extended = []string{"1", "2", code, "Z I"}
				explain = "E 42501"
			}
			for _, name := range names {
				r.send(&pgproto3.Query{String: "EXECUTE " + name + "('x')"}, &pgproto3.Query{String: "EXPLAIN EXECUTE " + name + "('x')"},
					&pgproto3.Parse{Query: "EXECUTE " + name + "('x')"}, &pgproto3.Bind{}, &pgproto3.Execute{}, sync)
				wantEvents(t, a.events(r, 3), append([]string{code, "Z I", explain, "Z I"}, extended...)...)
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
			r.send(&pgproto3.Close{ObjectType: 'S', Name: "tenantproxy_1"}, &pgproto3.Close{ObjectType: 'S', Name: a.internalName(t, texts[0])},
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
