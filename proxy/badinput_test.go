package proxy_test

import (
	"crypto/md5"
	"encoding/binary"
	"encoding/hex"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/tenantproxy/tenantproxy/config"
	"github.com/tenantproxy/tenantproxy/internal/pgtest"
)

// connectErr tries to connect and returns the error.
func (p *testProxy) connectErr(user string, extra ...string) error {
	conn, err := pgx.Connect(ctx, p.url(user, extra...))
	if err == nil {
		conn.Close(ctx)
	}
	return err
}

func TestLoginFailures(t *testing.T) {
	db := pgtest.New(t)
	p := startProxy(t, db, "transaction")
	cases := []struct {
		name, url, code, msg string
	}{
		{"wrong password", strings.Replace(p.url("alice"), ":secret@", ":wrong@", 1), "28P01", `password authentication failed for user "alice"`},
		{"unknown user", p.url("mallory"), "28P01", `password authentication failed for user "mallory"`},
		{"tenant not allowed", p.url("carol", "tenant=initech"), "28000", `may not act for tenant "initech"`},
		{"unknown tenant", p.url("carol", "tenant=nosuch"), "28000", `"nosuch"`},
		{"fixed user asks for another tenant", p.url("alice", "tenant=globex"), "28000", `may not act for tenant "globex"`},
		{"no tenant chosen", p.url("dave"), "28000", "must choose a tenant"},
		{"wrong database", strings.Replace(p.url("alice"), "/app?", "/postgres?", 1), "3D000", `database "postgres" does not exist`},
		{"reserved startup parameter", p.url("alice", "app.current_tenant_id=globex"), "42501", "reserved"},
		{"reserved setting in options", p.url("alice", "options=-c%20app.current_tenant_id%3Dglobex"), "42501", "reserved"},
		{"reserved setting, odd case", p.url("alice", "options=-c%20App.Current_Tenant_Id%3Dglobex"), "42501", "reserved"},
		{"other options", p.url("alice", "options=-B%20100"), "0A000", "unsupported option"},
		{"unknown startup parameter", p.url("alice", "no_such_setting=off"), "42704", `unrecognized configuration parameter "no_such_setting"`},
		{"search_path with a temporary schema", p.url("alice", "search_path=pg_temp"), "42501", "temporary schema"},
		{"identity", p.url("alice", "role=tenantproxy_owner"), "42501", "may not be set"},
		{"replication", p.url("alice", "replication=database"), "42501", "replication"},
		{"client encoding the guard cannot read", p.url("alice", "client_encoding=SJIS"), "0A000", "client_encoding"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			conn, err := pgx.Connect(ctx, c.url)
			if err == nil {
				conn.Close(ctx)
			}
			wantCode(t, err, c.code, c.msg)
		})
	}
	// Every failure is logged.
	if logs := p.logs.String(); !strings.Contains(logs, "authentication failed") || !strings.Contains(logs, "startup-reserved") {
		t.Errorf("failures not logged:\n%s", logs)
	}
	// Wrong password and unknown user get exactly the same message shape.
	err1 := p.connectErr("mallory")
	err2 := pgx.ErrNoRows // placeholder, replaced below
	_, err2 = pgx.Connect(ctx, strings.Replace(p.url("alice"), ":secret@", ":wrong@", 1))
	var e1, e2 *pgconn.PgError
	if !asPgError(err1, &e1) || !asPgError(err2, &e2) || e1.Code != e2.Code || e1.Severity != e2.Severity ||
		strings.Replace(e1.Message, "mallory", "X", 1) != strings.Replace(e2.Message, "alice", "X", 1) {
		t.Errorf("unknown user and wrong password differ: %v / %v", err1, err2)
	}
}

// rawConn is a client connection at the byte level.
type rawConn struct {
	t    testing.TB
	conn net.Conn
	fe   *pgproto3.Frontend
}

func dialRaw(t testing.TB, addr string) *rawConn {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	conn.SetDeadline(time.Now().Add(15 * time.Second))
	t.Cleanup(func() { conn.Close() })
	return &rawConn{t: t, conn: conn, fe: pgproto3.NewFrontend(conn, conn)}
}

// loggedIn is a raw connection authenticated as alice, ready for messages.
func (p *testProxy) loggedIn(t testing.TB) *rawConn {
	t.Helper()
	pc, err := pgconn.Connect(ctx, p.url("alice"))
	if err != nil {
		t.Fatal(err)
	}
	if err := pc.SyncConn(ctx); err != nil {
		t.Fatal(err)
	}
	hc, err := pc.Hijack()
	if err != nil {
		t.Fatal(err)
	}
	hc.Conn.SetDeadline(time.Now().Add(15 * time.Second))
	t.Cleanup(func() { hc.Conn.Close() })
	return &rawConn{t: t, conn: hc.Conn, fe: pgproto3.NewFrontend(hc.Conn, hc.Conn)}
}

func (r *rawConn) write(b []byte) {
	r.t.Helper()
	if _, err := r.conn.Write(b); err != nil {
		r.t.Fatal(err)
	}
}

func (r *rawConn) send(msgs ...pgproto3.FrontendMessage) {
	r.t.Helper()
	for _, m := range msgs {
		r.fe.Send(m)
	}
	if err := r.fe.Flush(); err != nil {
		r.t.Fatal(err)
	}
}

// until reads messages until one of type T arrives, and returns it.
func until[T pgproto3.BackendMessage](r *rawConn) T {
	r.t.Helper()
	for {
		m, err := r.fe.Receive()
		if err != nil {
			r.t.Fatalf("waiting for %T: %v", *new(T), err)
		}
		if v, ok := m.(T); ok {
			return v
		}
		if e, ok := m.(*pgproto3.ErrorResponse); ok {
			if _, wantErr := any(*new(T)).(*pgproto3.ErrorResponse); !wantErr {
				r.t.Fatalf("waiting for %T: error %s %s", *new(T), e.Code, e.Message)
			}
		}
	}
}

// fatalThenClosed expects an ErrorResponse with FATAL and code, then the end of the connection.
func (r *rawConn) fatalThenClosed(code string) {
	r.t.Helper()
	e := until[*pgproto3.ErrorResponse](r)
	if e.Severity != "FATAL" || e.Code != code {
		r.t.Fatalf("got %s %s %q, want FATAL %s", e.Severity, e.Code, e.Message, code)
	}
	if _, err := r.fe.Receive(); err == nil {
		r.t.Fatal("the connection stayed open after FATAL")
	}
}

func startupPacket(params map[string]string) []byte {
	b := []byte{0, 0, 0, 0, 0, 3, 0, 0}
	for k, v := range params {
		b = append(b, k...)
		b = append(b, 0)
		b = append(b, v...)
		b = append(b, 0)
	}
	b = append(b, 0)
	binary.BigEndian.PutUint32(b, uint32(len(b)))
	return b
}

func TestMalformedInput(t *testing.T) {
	db := pgtest.New(t)
	p := startProxy(t, db, "transaction", func(c *config.Config) { c.MaxMessageSize = 1 << 20 })
	// A bystander whose session must be unaffected by everything below.
	bystander := p.connect(t, "bob")

	t.Run("startup packet too short", func(t *testing.T) {
		r := dialRaw(t, p.addr)
		r.write([]byte{0, 0, 0, 6, 0, 3})
		r.fatalThenClosed("08P01")
	})
	t.Run("startup packet too large", func(t *testing.T) {
		r := dialRaw(t, p.addr)
		r.write([]byte{0, 0x7f, 0, 0, 0, 3, 0, 0})
		r.fatalThenClosed("08P01")
	})
	t.Run("startup packet without terminator", func(t *testing.T) {
		r := dialRaw(t, p.addr)
		b := startupPacket(map[string]string{"user": "alice", "database": "app"})
		b = b[:len(b)-1]
		binary.BigEndian.PutUint32(b, uint32(len(b)))
		r.write(b)
		r.fatalThenClosed("08P01")
	})
	t.Run("unsupported protocol", func(t *testing.T) {
		r := dialRaw(t, p.addr)
		b := startupPacket(map[string]string{"user": "alice"})
		b[4], b[5] = 0, 2
		r.write(b)
		r.fatalThenClosed("0A000")
	})
	t.Run("SSL and GSS requests answered N", func(t *testing.T) {
		r := dialRaw(t, p.addr)
		r.write([]byte{0, 0, 0, 8, 4, 210, 22, 47}) // SSLRequest
		var answer [1]byte
		if _, err := io.ReadFull(r.conn, answer[:]); err != nil || answer[0] != 'N' {
			t.Fatalf("SSLRequest answered %q, %v", answer, err)
		}
		r.write([]byte{0, 0, 0, 8, 4, 210, 22, 48}) // GSSENCRequest
		if _, err := io.ReadFull(r.conn, answer[:]); err != nil || answer[0] != 'N' {
			t.Fatalf("GSSENCRequest answered %q, %v", answer, err)
		}
		r.write(startupPacket(map[string]string{"user": "alice", "database": "app"}))
		if _, ok := any(until[*pgproto3.AuthenticationSASL](r)).(*pgproto3.AuthenticationSASL); !ok {
			t.Fatal("no SASL after the startup packet")
		}
	})
	t.Run("wrong message during authentication", func(t *testing.T) {
		r := dialRaw(t, p.addr)
		r.write(startupPacket(map[string]string{"user": "alice", "database": "app"}))
		until[*pgproto3.AuthenticationSASL](r)
		r.send(&pgproto3.Query{String: "SELECT 1"})
		r.fatalThenClosed("08P01")
	})
	t.Run("unknown message type", func(t *testing.T) {
		r := p.loggedIn(t)
		r.write([]byte{'y', 0, 0, 0, 4})
		r.fatalThenClosed("08P01")
	})
	t.Run("length below four", func(t *testing.T) {
		r := p.loggedIn(t)
		r.write([]byte{'Q', 0, 0, 0, 2})
		r.fatalThenClosed("08P01")
	})
	t.Run("oversized message", func(t *testing.T) {
		r := p.loggedIn(t)
		r.write([]byte{'Q', 0, 0x20, 0, 0})
		r.fatalThenClosed("08P01")
	})
	t.Run("query without terminator", func(t *testing.T) {
		r := p.loggedIn(t)
		r.write([]byte{'Q', 0, 0, 0, 12, 'S', 'E', 'L', 'E', 'C', 'T', ' ', '1'})
		r.fatalThenClosed("08P01")
	})
	t.Run("malformed Parse", func(t *testing.T) {
		r := p.loggedIn(t)
		r.write([]byte{'P', 0, 0, 0, 7, 0, 'x', 0})
		r.fatalThenClosed("08P01")
	})
	t.Run("malformed Bind", func(t *testing.T) {
		r := p.loggedIn(t)
		r.write([]byte{'B', 0, 0, 0, 6, 'a', 'b'})
		r.fatalThenClosed("08P01")
	})
	t.Run("FunctionCall refused", func(t *testing.T) {
		r := p.loggedIn(t)
		r.send(&pgproto3.FunctionCall{Function: 2047 /* any OID */, ResultFormatCode: 0})
		e := until[*pgproto3.ErrorResponse](r)
		if e.Code != "42501" || e.Severity != "ERROR" {
			t.Fatalf("FunctionCall: %s %s %s", e.Severity, e.Code, e.Message)
		}
		if z := until[*pgproto3.ReadyForQuery](r); z.TxStatus != 'I' {
			t.Fatalf("status %q", z.TxStatus)
		}
		r.send(&pgproto3.Query{String: "SELECT 1"})
		until[*pgproto3.DataRow](r)
	})

	if got := tenantOf(t, bystander); got != "globex" {
		t.Errorf("the bystander's tenant is now %q", got)
	}
}

func sendCancel(t testing.TB, addr string, pid uint32, secret []byte) {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	b := make([]byte, 12, 16)
	binary.BigEndian.PutUint32(b, uint32(12+len(secret)))
	binary.BigEndian.PutUint32(b[4:], 80877102)
	binary.BigEndian.PutUint32(b[8:], pid)
	b = append(b, secret...)
	conn.Write(b)
	conn.SetReadDeadline(time.Now().Add(2 * time.Second))
	io.Copy(io.Discard, conn)
}

// A client that vanishes inside a transaction leaves nothing behind: its writes are rolled
// back and the backend goes to the next client clean.
func TestClientVanishesMidTransaction(t *testing.T) {
	for _, mode := range modes {
		t.Run(mode, func(t *testing.T) {
			db := pgtest.New(t)
			p := startProxy(t, db, mode, func(c *config.Config) { c.Pool.Size = 1 })

			r := p.loggedIn(t)
			r.send(&pgproto3.Query{String: "BEGIN; INSERT INTO llmspell.entities (tenant_id, entity_type, name) VALUES ('acme', 'x', 'vanished')"})
			if z := until[*pgproto3.ReadyForQuery](r); z.TxStatus != 'T' {
				t.Fatalf("status %q", z.TxStatus)
			}
			r.conn.Close()

			// With a pool of one, the next client gets that same backend once it is clean: in
			// a leftover transaction the insert would have given it a transaction id.
			conn := p.connect(t, "bob")
			if got := queryString(t, conn, "SELECT coalesce(pg_current_xact_id_if_assigned()::text, 'fresh')"); got != "fresh" {
				t.Errorf("the next client's session was inside transaction %s", got)
			}
			admin := pgtest.Connect(t, db.AdminURL)
			if n := queryInt(t, admin, "SELECT count(*) FROM llmspell.entities WHERE name = 'vanished'"); n != 0 {
				t.Errorf("the vanished client's insert was committed")
			}
			if got := tenantOf(t, conn); got != "globex" {
				t.Errorf("tenant %q", got)
			}
			conn.Close(ctx) // give the only backend back

			// Vanishing in the middle of a query: that backend is closed, not reused.
			r = p.loggedIn(t)
			r.send(&pgproto3.Query{String: "SELECT pg_sleep(0.5), 'marker-vanish'"})
			waitRunning(t, admin, "marker-vanish")
			r.conn.Close()
			conn = p.connect(t, "alice")
			if got := queryInt(t, conn, "SELECT 7"); got != 7 {
				t.Errorf("after a vanished query: %d", got)
			}
		})
	}
}

func TestBackendDown(t *testing.T) {
	db := pgtest.New(t)
	port, err := pgtest.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	p := startProxy(t, db, "transaction", func(c *config.Config) { c.Backend.Port = port })
	err = p.connectErr("alice")
	wantCode(t, err, "08006", "could not connect")
}

func TestCheckoutTimeout(t *testing.T) {
	db := pgtest.New(t)
	p := startProxy(t, db, "transaction", func(c *config.Config) {
		c.Pool.Size = 1
		c.Pool.CheckoutTimeout = config.Duration{Duration: 300 * time.Millisecond}
	})
	holder := p.connect(t, "alice")
	waiter := p.connect(t, "bob")
	tx, err := holder.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	_, err = waiter.Exec(ctx, "SELECT 1")
	wantCode(t, err, "53300", "checkout timeout")
	tx.Rollback(ctx)
	if got := queryInt(t, waiter, "SELECT 5"); got != 5 {
		t.Errorf("after the holder finished: %d", got)
	}
}

// md5 is accepted only when allow_md5 is on, and only for a user whose verifier is md5.
func TestMD5(t *testing.T) {
	// md5 verifier of password "secret" for user "legacy": "md5" + md5("secret" + "legacy").
	sum := md5.Sum([]byte(password + "legacy"))
	verifier := "md5" + hex.EncodeToString(sum[:])
	db := pgtest.New(t)
	for _, allow := range []bool{true, false} {
		p := startProxy(t, db, "transaction", func(c *config.Config) {
			c.AllowMD5 = allow
			c.Users["legacy"] = config.User{Password: verifier, Tenant: "acme"}
		})
		err := p.connectErr("legacy")
		if allow && err != nil {
			t.Errorf("md5 login with allow_md5: %v", err)
		}
		if !allow {
			wantCode(t, err, "28P01")
		}
		wrong := strings.Replace(p.url("legacy"), ":secret@", ":wrong@", 1)
		conn, err := pgx.Connect(ctx, wrong)
		if err == nil {
			conn.Close(ctx)
		}
		wantCode(t, err, "28P01")
	}
}

// untilReady reads the answers up to ReadyForQuery and returns their message types in order.
func untilReady(r *rawConn) string {
	r.t.Helper()
	var seen []byte
	for {
		m, err := r.fe.Receive()
		if err != nil {
			r.t.Fatalf("waiting for ReadyForQuery after %q: %v", seen, err)
		}
		switch m := m.(type) {
		case *pgproto3.ErrorResponse:
			seen = append(seen, 'E')
		case *pgproto3.ReadyForQuery:
			return string(append(seen, 'Z'))
		case *pgproto3.CopyInResponse:
			seen = append(seen, 'G')
		default:
			enc, err := m.Encode(nil)
			if err != nil {
				r.t.Fatal(err)
			}
			seen = append(seen, enc[0])
		}
	}
}

// Messages the server throws away without an answer (a Query after an error in an extended
// group, anything but copy data during COPY FROM STDIN, Sync inside a COPY) must not leave the
// proxy waiting for an answer that never comes: the client would hang, and its backend with it,
// even after it left. Each case ends with the client leaving; with a pool of one, the next
// client's query shows that the backend came back.
func TestMessagesTheServerThrowsAway(t *testing.T) {
	db := pgtest.New(t)
	admin := pgtest.Connect(t, db.AdminURL)
	mustExec(t, admin, "CREATE TABLE public.copy_sink (body text)")
	mustExec(t, admin, "GRANT INSERT ON public.copy_sink TO tenantproxy_app")
	copyIn := "COPY public.copy_sink FROM STDIN"
	// run reports whether the connection is still open, as the server would leave it.
	cases := []struct {
		name string
		run  func(t *testing.T, r *rawConn) bool
	}{
		{"Query after an error in an extended group", func(t *testing.T, r *rawConn) bool {
			r.send(&pgproto3.Parse{Query: "SELEC bad"}, &pgproto3.Query{String: "SELECT 1"}, &pgproto3.Sync{})
			if got := untilReady(r); got != "EZ" {
				t.Errorf("answers %q, want an error and one ReadyForQuery (the Query is skipped, as the server does)", got)
			}
			return true
		}},
		{"Query after an error in an extended group, Sync later", func(t *testing.T, r *rawConn) bool {
			// Until the Sync the server ignores everything: the backend is not idle, whatever
			// the last ReadyForQuery said, and must not serve anyone else meanwhile.
			r.send(&pgproto3.Parse{Query: "SELEC bad"}, &pgproto3.Flush{}, &pgproto3.Query{String: "SELECT 1"})
			until[*pgproto3.ErrorResponse](r)
			r.send(&pgproto3.Sync{})
			if got := untilReady(r); got != "Z" {
				t.Errorf("answers %q after the error, want one ReadyForQuery", got)
			}
			return true
		}},
		{"Query during COPY FROM STDIN", func(t *testing.T, r *rawConn) bool {
			r.send(&pgproto3.Query{String: copyIn})
			until[*pgproto3.CopyInResponse](r)
			r.send(&pgproto3.Query{String: "SELECT 1"})
			if got := untilReady(r); got != "EZ" {
				t.Errorf("answers %q, want the COPY's error and one ReadyForQuery", got)
			}
			return true
		}},
		{"Query pipelined behind COPY FROM STDIN", func(t *testing.T, r *rawConn) bool {
			// The server reads the Query as the COPY's first message and ends the connection
			// (protocol synchronization lost); the client sees that, promptly.
			r.send(&pgproto3.Query{String: copyIn}, &pgproto3.Query{String: "SELECT 1"})
			until[*pgproto3.CopyInResponse](r)
			for {
				m, err := r.fe.Receive()
				if err != nil {
					t.Fatalf("the connection ended without a FATAL: %v", err)
				}
				if e, ok := m.(*pgproto3.ErrorResponse); ok && e.Severity == "FATAL" {
					if e.Code != "08P01" {
						t.Errorf("FATAL %s %s", e.Code, e.Message)
					}
					break
				}
			}
			if _, err := r.fe.Receive(); err == nil {
				t.Error("the connection stayed open after FATAL")
			}
			return false
		}},
		{"Sync and Flush inside an extended COPY", func(t *testing.T, r *rawConn) bool {
			r.send(&pgproto3.Parse{Query: copyIn}, &pgproto3.Bind{}, &pgproto3.Execute{}, &pgproto3.Flush{})
			until[*pgproto3.CopyInResponse](r)
			r.send(&pgproto3.Sync{}, &pgproto3.Flush{}, &pgproto3.CopyData{Data: []byte("row\n")}, &pgproto3.CopyDone{}, &pgproto3.Sync{})
			if got := untilReady(r); got != "CZ" {
				t.Errorf("answers %q, want CommandComplete and one ReadyForQuery", got)
			}
			return true
		}},
	}
	for _, mode := range modes {
		p := startProxy(t, db, mode, func(c *config.Config) {
			c.Pool.Size = 1
			c.Pool.CheckoutTimeout = config.Duration{Duration: 2 * time.Second}
		})
		for _, tc := range cases {
			t.Run(mode+"/"+tc.name, func(t *testing.T) {
				r := p.loggedIn(t)
				if tc.run(t, r) {
					r.send(&pgproto3.Query{String: "SELECT 2"})
					if got := untilReady(r); got != "TDCZ" {
						t.Errorf("the next Query got %q", got)
					}
				}
				r.conn.Close()
				conn := p.connect(t, "bob")
				if got := queryInt(t, conn, "SELECT 3"); got != 3 {
					t.Errorf("the next client: %d", got)
				}
				conn.Close(ctx)
			})
		}
	}
}

// A COPY run by a simple Query ends with its own ReadyForQuery, even with a Sync sent behind it
// (which the server ignores during the COPY): the client is then idle and holds no backend.
func TestSimpleCopyWithSyncBehindReleasesTheBackend(t *testing.T) {
	db := pgtest.New(t)
	admin := pgtest.Connect(t, db.AdminURL)
	mustExec(t, admin, "CREATE TABLE public.copy_sink (body text)")
	mustExec(t, admin, "GRANT INSERT ON public.copy_sink TO tenantproxy_app")
	p := startProxy(t, db, "transaction", func(c *config.Config) {
		c.Pool.Size = 1
		c.Pool.CheckoutTimeout = config.Duration{Duration: 2 * time.Second}
	})
	r := p.loggedIn(t)
	r.send(&pgproto3.Query{String: "COPY public.copy_sink FROM STDIN"}, &pgproto3.Sync{})
	until[*pgproto3.CopyInResponse](r)
	r.send(&pgproto3.CopyData{Data: []byte("row\n")}, &pgproto3.CopyDone{})
	if got := untilReady(r); got != "CZ" {
		t.Fatalf("answers %q, want CommandComplete and ReadyForQuery", got)
	}
	// alice stays connected and idle; with a pool of one, bob needs her former backend.
	conn := p.connect(t, "bob")
	if got := queryString(t, conn, "SHOW app.current_tenant_id"); got != "globex" {
		t.Errorf("bob's tenant %q", got)
	}
}
