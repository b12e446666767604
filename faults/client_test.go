package faults

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"runtime"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"
	"github.com/xdg-go/scram"

	"github.com/tenantproxy/tenantproxy/config"
)

// Faults on the clients' side: clients that leave at every stage, stop reading, or send half
// a message and nothing more.

// startupPacket is a protocol 3.0 startup message for user.
func startupPacket(user string) []byte {
	b, _ := (&pgproto3.StartupMessage{ProtocolVersion: pgproto3.ProtocolVersionNumber,
		Parameters: map[string]string{"user": user, "database": "app"}}).Encode(nil)
	return b
}

// rawDial opens a plain TCP connection to the proxy.
func (f *fixture) rawDial(t *testing.T) net.Conn {
	t.Helper()
	conn, err := net.Dial("tcp", f.addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// scramLogin runs a client's SCRAM exchange on conn up to the stage named by stop:
// "startup" (startup packet sent and AuthenticationSASL read), "first" (client-first sent and
// the server's challenge read), "final" (the proof sent, nothing read) or "" (logged in,
// ReadyForQuery read).
func scramLogin(t *testing.T, conn net.Conn, user, stop string) {
	t.Helper()
	conn.SetDeadline(time.Now().Add(15 * time.Second))
	defer conn.SetDeadline(time.Time{})
	fe := pgproto3.NewFrontend(conn, conn)
	receive := func(want string) pgproto3.BackendMessage {
		m, err := fe.Receive()
		if err != nil {
			t.Fatalf("waiting for %s: %v", want, err)
		}
		if e, ok := m.(*pgproto3.ErrorResponse); ok {
			t.Fatalf("waiting for %s: %s (%s)", want, e.Message, e.Code)
		}
		return m
	}
	if _, err := conn.Write(startupPacket(user)); err != nil {
		t.Fatal(err)
	}
	if _, ok := receive("AuthenticationSASL").(*pgproto3.AuthenticationSASL); !ok {
		t.Fatal("no AuthenticationSASL")
	}
	if stop == "startup" {
		return
	}
	client, err := scram.SHA256.NewClient(user, password, "")
	if err != nil {
		t.Fatal(err)
	}
	conv := client.WithMinIterations(1).NewConversation() // the test users' verifiers are cheap
	first, _ := conv.Step("")
	fe.Send(&pgproto3.SASLInitialResponse{AuthMechanism: "SCRAM-SHA-256", Data: []byte(first)})
	if err := fe.Flush(); err != nil {
		t.Fatal(err)
	}
	challenge, ok := receive("AuthenticationSASLContinue").(*pgproto3.AuthenticationSASLContinue)
	if !ok {
		t.Fatal("no AuthenticationSASLContinue")
	}
	if stop == "first" {
		return
	}
	final, err := conv.Step(string(challenge.Data))
	if err != nil {
		t.Fatal(err)
	}
	fe.Send(&pgproto3.SASLResponse{Data: []byte(final)})
	if err := fe.Flush(); err != nil {
		t.Fatal(err)
	}
	if stop == "final" {
		return
	}
	for {
		if _, ok := receive("ReadyForQuery").(*pgproto3.ReadyForQuery); ok {
			return
		}
	}
}

// Clients that leave during startup and authentication: the proxy lets go of each at once.
func TestClientLeavesDuringLogin(t *testing.T) {
	for _, mode := range modes {
		t.Run(mode, func(t *testing.T) {
			f := newFixture(t, mode)
			stages := map[string]func(net.Conn){
				"half a startup packet":         func(c net.Conn) { c.Write(startupPacket("t01")[:6]) },
				"an SSLRequest":                 func(c net.Conn) { c.Write([]byte{0, 0, 0, 8, 4, 210, 22, 47}) },
				"the startup packet":            func(c net.Conn) { scramLogin(t, c, "t01", "startup") },
				"SCRAM's first message":         func(c net.Conn) { scramLogin(t, c, "t01", "first") },
				"the proof, before the answer":  func(c net.Conn) { scramLogin(t, c, "t01", "final") },
				"the login, before any message": func(c net.Conn) { scramLogin(t, c, "t01", "") },
			}
			for stage, do := range stages {
				conn := f.rawDial(t)
				do(conn)
				conn.Close()
				f.waitQuiet(t, "after a client left after "+stage)
			}
			f.checkIsolation(t, "t01", "t02")
			f.waitQuiet(t, "at the end")
		})
	}
}

// Startup and authentication that never finish are cut off after auth_timeout.
func TestLoginThatNeverFinishes(t *testing.T) {
	f := newFixture(t, "transaction", func(c *config.Config) { c.AuthTimeout = config.Duration{Duration: time.Second} })
	stages := map[string]func(net.Conn){
		"nothing at all":        func(net.Conn) {},
		"half a startup packet": func(c net.Conn) { c.Write(startupPacket("t01")[:6]) },
		"the startup packet":    func(c net.Conn) { scramLogin(t, c, "t01", "startup") },
		"SCRAM's first message": func(c net.Conn) { scramLogin(t, c, "t01", "first") },
	}
	for stage, do := range stages {
		conn := f.rawDial(t)
		start := time.Now()
		do(conn)
		conn.SetReadDeadline(time.Now().Add(10 * time.Second))
		rest, err := io.ReadAll(conn)
		took := time.Since(start)
		switch {
		case err != nil:
			t.Errorf("after %s, the proxy kept the connection open beyond auth_timeout (1 s): %v", stage, err)
		case took > 3*time.Second:
			t.Errorf("after %s, the proxy closed the connection after %v; auth_timeout is 1 s", stage, took)
		default:
			t.Logf("after %s: closed after %v, with %q", stage, took.Round(time.Millisecond), rest)
		}
		conn.Close()
	}
	f.waitQuiet(t, "at the end")
}

// Messages whose header promises more than ever arrives must not make the proxy reserve what
// they promise: 20 connections that each send a header claiming 60 MB (a startup packet before
// logging in, a Query after) must not cost the proxy 1.2 GB.
func TestHalfSentLargeMessagesHoldLittleMemory(t *testing.T) {
	f := newFixture(t, "transaction")
	length := binary.BigEndian.AppendUint32(nil, 60<<20)
	for _, stage := range []string{"startup packet", "Query after login"} {
		var conns []net.Conn
		for range 20 {
			conn := f.rawDial(t)
			if stage == "Query after login" {
				scramLogin(t, conn, "t01", "")
			}
			conns = append(conns, conn)
		}
		header := length
		if stage == "Query after login" {
			header = append([]byte{'Q'}, length...)
		}
		runtime.GC()
		var before runtime.MemStats
		runtime.ReadMemStats(&before)
		for _, conn := range conns {
			if _, err := conn.Write(header); err != nil {
				t.Fatal(err)
			}
		}
		var grown uint64
		// Give the proxy a moment to read the headers; stop as soon as the damage shows.
		for deadline := time.Now().Add(2 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
			var now runtime.MemStats
			runtime.ReadMemStats(&now)
			grown = now.HeapAlloc - min(now.HeapAlloc, before.HeapAlloc)
			if grown > 256<<20 {
				break
			}
		}
		if grown > 32<<20 {
			t.Errorf("20 half-sent messages (%s) claiming 60 MB each grew the heap by %d MB: the proxy reserves a message's declared length before its bytes arrive", stage, grown>>20)
		} else {
			t.Logf("20 half-sent messages (%s) claiming 60 MB each: the heap grew by %d MB", stage, grown>>20)
		}
		for _, conn := range conns {
			conn.Close()
		}
		f.waitQuiet(t, "after the clients left")
	}
}

// Clients that vanish (their socket closed, no Terminate) in the middle of a transaction, a
// result, or COPY FROM: the proxy rolls back or closes their session at once, nothing they did
// is committed, and the server is left running nothing for them.
func TestClientVanishes(t *testing.T) {
	for _, mode := range modes {
		t.Run(mode, func(t *testing.T) {
			f := newFixture(t, mode)
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			nothingLeft := func(what string) {
				waitFor(t, 10*time.Second, "the server to be left with nothing after a client vanished "+what, func() error {
					if n := f.db.count(t, "SELECT count(*) "+appSessions+" AND state <> 'idle'"); n > 0 {
						return fmt.Errorf("%d sessions of the app role still busy or in a transaction", n)
					}
					return f.quiet()
				})
			}

			conn := f.connect(t, "t01")
			if _, err := conn.Exec(ctx, "BEGIN"); err != nil {
				t.Fatal(err)
			}
			if _, err := conn.Exec(ctx, "INSERT INTO llmspell.entities (tenant_id, entity_type, name) VALUES ('t01', 'fault', 'vanished')"); err != nil {
				t.Fatal(err)
			}
			conn.PgConn().Conn().Close()
			nothingLeft("inside a transaction")

			// A result the server takes a minute to produce: the proxy must not wait for its end.
			conn = f.connect(t, "t02")
			rows, err := conn.Query(ctx, "SELECT g, pg_sleep(0.001) FROM generate_series(1, 60000) g")
			if err != nil || !rows.Next() {
				t.Fatalf("a long result: %v", err)
			}
			conn.PgConn().Conn().Close()
			rows.Close()
			nothingLeft("in the middle of a result")

			conn = f.connect(t, "t03")
			src := &copySource{line: "t03\tvanished\n", limit: 50 << 20, after: 256 << 10,
				fire: func() { conn.PgConn().Conn().Close() }}
			conn.PgConn().CopyFrom(ctx, src, "COPY public.fault_copy FROM STDIN")
			nothingLeft("in the middle of COPY FROM")

			if n := f.db.count(t, "SELECT (SELECT count(*) FROM llmspell.entities WHERE entity_type = 'fault') + (SELECT count(*) FROM public.fault_copy)"); n != 0 {
				t.Errorf("%d rows written by clients that vanished mid-transaction or mid-COPY were committed", n)
			}
			f.checkIsolation(t, "t01", "t02", "t03")
			f.waitQuiet(t, "at the end")
		})
	}
}

// A client that sends a query and stops reading its result must not hold a backend session
// for ever: after client_write_timeout without progress writing to it, the proxy gives up on
// the client and closes (or cleans and releases) its session, and the server stops working
// for it.
func TestClientStopsReading(t *testing.T) {
	for _, mode := range modes {
		t.Run(mode, func(t *testing.T) {
			f := newFixture(t, mode, func(c *config.Config) { c.ClientWriteTimeout = config.Duration{Duration: time.Second} })
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			pc, err := pgconn.Connect(ctx, f.url("t01"))
			if err != nil {
				t.Fatal(err)
			}
			defer pc.Close(ctx)
			query, _ := (&pgproto3.Query{String: "SELECT repeat('x', 1000) FROM generate_series(1, 100000)"}).Encode(nil)
			if _, err := pc.Conn().Write(query); err != nil {
				t.Fatal(err)
			}
			waitFor(t, 10*time.Second, "the proxy to give up on a client that stopped reading", func() error {
				if n := f.db.count(t, "SELECT count(*) "+appSessions+" AND state = 'active' AND query LIKE 'SELECT repeat%'"); n > 0 {
					return fmt.Errorf("the server still works for it")
				}
				return f.quiet()
			})
			pc.Conn().Close()
			f.checkIsolation(t, "t01", "t02")
			f.waitQuiet(t, "at the end")
		})
	}
}

// Half a message, and then nothing: in transaction mode the client holds no backend session
// while the rest does not come (a pool of one still serves others); once it leaves, nothing
// of it is left, inside a transaction or not.
func TestHalfWrittenMessage(t *testing.T) {
	for _, mode := range modes {
		t.Run(mode, func(t *testing.T) {
			f := newFixture(t, mode, func(c *config.Config) {
				if mode == "transaction" {
					c.Pool.Size = 1
				}
			})
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			half := []byte{'Q', 0, 0, 0, 100, 'S', 'E', 'L', 'E', 'C', 'T'}

			for _, inTx := range []bool{false, true} {
				pc, err := pgconn.Connect(ctx, f.url("t01"))
				if err != nil {
					t.Fatal(err)
				}
				if inTx {
					if err := pc.Exec(ctx, "BEGIN; INSERT INTO llmspell.entities (tenant_id, entity_type, name) VALUES ('t01', 'fault', 'half')").Close(); err != nil {
						t.Fatal(err)
					}
				}
				if _, err := pc.Conn().Write(half); err != nil {
					t.Fatal(err)
				}
				if mode == "transaction" && !inTx {
					other := f.connect(t, "t02")
					for range 3 {
						short, stop := context.WithTimeout(ctx, 5*time.Second)
						err := checkSession(short, other, "t02")
						stop()
						if err != nil {
							t.Fatalf("another client, while one has sent half a message: %v", err)
						}
					}
					other.Close(ctx)
				}
				pc.Conn().Close()
				waitFor(t, 10*time.Second, "the proxy to let go of a client that left after half a message", func() error {
					if n := f.db.count(t, "SELECT count(*) "+appSessions+" AND state <> 'idle'"); n > 0 {
						return fmt.Errorf("%d sessions of the app role still busy or in a transaction", n)
					}
					return f.quiet()
				})
			}
			if n := f.db.count(t, "SELECT count(*) FROM llmspell.entities WHERE entity_type = 'fault'"); n != 0 {
				t.Errorf("the transaction of a client that left after half a message was committed")
			}
			f.checkIsolation(t, "t01", "t02")
			f.waitQuiet(t, "at the end")
		})
	}
}
