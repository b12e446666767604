package faults

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/tenantproxy/tenantproxy/config"
)

// Faults the database brings about itself: restarts, terminated sessions, full connection
// slots, statements that time out.

// A session the database ended while it sat idle in the pool (pg_terminate_backend on every
// session of the app role, as a restart, a failover or idle_session_timeout does) must cost a
// client outside a transaction nothing: the next statements all succeed. In transaction mode
// the clients stay connected; in session mode they come back (their sessions went back to the
// pool when they left).
func TestIdlePooledSessionsTerminated(t *testing.T) {
	for _, mode := range modes {
		t.Run(mode, func(t *testing.T) {
			f := newFixture(t, mode)
			users := manyTenants[10:20]
			conns := f.warmPool(t, users)
			ended := f.db.terminateAppSessions(t, "state = 'idle'")
			t.Logf("terminated %d idle sessions of the app role", ended)
			if ended == 0 {
				t.Fatal("no idle session to terminate: the pool kept none")
			}
			f.expectNoErrors(t, users, conns, 20, time.Now())
		})
	}
}

// The same, with the server's idle_session_timeout ending the pooled sessions on its own.
func TestIdleSessionTimeout(t *testing.T) {
	for _, mode := range modes {
		t.Run(mode, func(t *testing.T) {
			f := newFixture(t, mode)
			f.db.exec(t, "ALTER DATABASE "+f.db.name+" SET idle_session_timeout = '1s'")
			users := manyTenants[20:30]
			conns := f.warmPool(t, users)
			waitFor(t, 10*time.Second, "idle_session_timeout to end the pooled sessions", func() error {
				if n := f.db.count(t, "SELECT count(*) "+appSessions); n > 0 {
					return fmt.Errorf("%d sessions of the app role still open", n)
				}
				return nil
			})
			f.expectNoErrors(t, users, conns, 20, time.Now())
		})
	}
}

// warmPool has each user run a statement at once, so that the pool opens a session per user.
// In transaction mode the clients stay connected (returned by user); in session mode they
// leave, and their sessions go back to the pool.
func (f *fixture) warmPool(t *testing.T, users []string) map[string]*pgx.Conn {
	t.Helper()
	conns := map[string]*pgx.Conn{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, user := range users {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			conn, err := f.dial(ctx, user, false)
			if err == nil {
				_, err = conn.Exec(ctx, "SELECT pg_sleep(0.3)")
			}
			if err != nil {
				t.Errorf("warming the pool as %s: %v", user, err)
				return
			}
			if f.cfg.Pool.Mode == "session" {
				conn.Close(ctx)
				return
			}
			mu.Lock()
			conns[user] = conn
			mu.Unlock()
		}()
	}
	wg.Wait()
	t.Cleanup(func() {
		for _, conn := range conns {
			conn.Close(context.Background())
		}
	})
	if f.cfg.Pool.Mode == "session" {
		f.waitQuiet(t, "at the end")
	}
	return conns
}

// expectNoErrors runs n single statements, one at a time, spread over users: on their
// connections in conns, or (session mode) each on a new connection. It fails t for each that
// fails, then checks isolation.
func (f *fixture) expectNoErrors(t *testing.T, users []string, conns map[string]*pgx.Conn, n int, since time.Time) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var failures []string
	for i := range n {
		user := users[i%len(users)]
		var err error
		if conn := conns[user]; conn != nil {
			_, err = conn.Exec(ctx, "SELECT count(*) FROM llmspell.entities")
			if conn.IsClosed() {
				conns[user], _ = f.dial(ctx, user, false)
			}
		} else {
			err = f.once(ctx, user, "SELECT count(*) FROM llmspell.entities")
		}
		if err != nil {
			failures = append(failures, fmt.Sprintf("statement %d (%s): %v", i+1, user, err))
		}
	}
	if len(failures) > 0 {
		t.Errorf("%d of %d single statements failed after the pool's idle sessions died:\n  %s",
			len(failures), n, strings.Join(failures, "\n  "))
	}
	recovery(t, "a statement after idle pooled sessions died", since, 10*time.Second, func(ctx context.Context) error {
		return f.once(ctx, users[0], "SELECT 1")
	})
	for user, conn := range conns {
		if conn != nil {
			conn.Close(ctx)
		}
		delete(conns, user)
	}
	f.checkIsolation(t, users[:4]...)
	f.waitQuiet(t, "at the end")
}

// A session terminated in the middle of a client's transaction: the client gets an error
// (57P01 from the server, or 08006), its transaction's writes are gone, new work succeeds.
func TestSessionTerminatedMidTransaction(t *testing.T) {
	for _, mode := range modes {
		t.Run(mode, func(t *testing.T) {
			f := newFixture(t, mode)
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			conn := f.connect(t, "t06")
			if _, err := conn.Exec(ctx, "BEGIN"); err != nil {
				t.Fatal(err)
			}
			if _, err := conn.Exec(ctx, "INSERT INTO llmspell.entities (tenant_id, entity_type, name) VALUES ('t06', 'fault', 'doomed')"); err != nil {
				t.Fatal(err)
			}
			var pid int
			if err := conn.QueryRow(ctx, "SELECT pg_backend_pid()").Scan(&pid); err != nil {
				t.Fatal(err)
			}
			f.db.terminateAppSessions(t, fmt.Sprintf("pid = %d", pid))
			faultEnd := time.Now()
			_, err := conn.Exec(ctx, "INSERT INTO llmspell.entities (tenant_id, entity_type, name) VALUES ('t06', 'fault', 'after')")
			wantSQLState(t, "a statement after its session was terminated mid-transaction", err, "57P01", "08006")
			if n := f.db.count(t, "SELECT count(*) FROM llmspell.entities WHERE entity_type = 'fault'"); n != 0 {
				t.Errorf("%d rows of a terminated transaction are there", n)
			}
			recovery(t, "a new client after its session was terminated", faultEnd, 10*time.Second, func(ctx context.Context) error {
				return f.once(ctx, "t06", "SELECT 1")
			})
			conn.Close(ctx)
			f.checkIsolation(t, "t06", "t07", "alice")
			f.waitQuiet(t, "at the end")
		})
	}
}

// Every connection slot of the server taken: clients that need a new session wait for the
// pool's open ones instead of getting the server's 53300, and are all served; once slots free
// up, the pool opens sessions again.
func TestMaxConnectionsReached(t *testing.T) {
	for _, mode := range modes {
		t.Run(mode, func(t *testing.T) {
			f := newFixture(t, mode)
			users := manyTenants[30:36]
			warm := f.warmPool(t, users[:2])
			for _, conn := range warm {
				conn.Close(context.Background()) // their sessions stay idle in the pool
			}
			fillers := fillConnectionSlots(t)
			t.Logf("%d connections fill the server's slots", len(fillers))
			dialErrors := f.metric("tenantproxy_pool_dial_errors_total")

			// Each user holds a session for a moment, all at once: two find idle ones, the
			// others wait for those.
			results := make(chan error, len(users))
			for _, user := range users {
				go func() {
					ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
					defer cancel()
					conn, err := f.dial(ctx, user, false)
					if err == nil {
						_, err = conn.Exec(ctx, "SELECT pg_sleep(0.5)")
						conn.Close(ctx)
					}
					results <- err
				}()
			}
			for range users {
				if err := <-results; err != nil {
					t.Errorf("a client while the server is full: %v", err)
				}
			}
			if n := f.metric("tenantproxy_pool_dial_errors_total"); n <= dialErrors {
				t.Errorf("no dial failed (%v before, %v after): the server was not full", dialErrors, n)
			}

			for _, c := range fillers {
				c.Close(context.Background())
			}
			faultEnd := time.Now()
			recovery(t, "clients once connection slots are free", faultEnd, 10*time.Second, func(ctx context.Context) error {
				var wg sync.WaitGroup
				errs := make([]error, len(users))
				for i, user := range users {
					wg.Add(1)
					go func() { defer wg.Done(); errs[i] = f.once(ctx, user, "SELECT pg_sleep(0.1)") }()
				}
				wg.Wait()
				return errors.Join(errs...)
			})
			f.checkIsolation(t, users[:3]...)
			f.waitQuiet(t, "at the end")
		})
	}
}

// fillConnectionSlots opens superuser connections until the server refuses one, so that no
// other role can connect; they are closed when t ends at the latest.
func fillConnectionSlots(t *testing.T) []*pgconn.PgConn {
	t.Helper()
	var conns []*pgconn.PgConn
	t.Cleanup(func() {
		for _, c := range conns {
			c.Close(context.Background())
		}
	})
	for range maxConnections + 10 {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		c, err := pgconn.Connect(ctx, pg.urlFor("postgres"))
		cancel()
		if err != nil {
			if sqlstate(err) != "53300" {
				t.Fatalf("filling the server's connection slots: %v", err)
			}
			return conns
		}
		conns = append(conns, c)
	}
	t.Fatalf("the server took %d connections without refusing one (max_connections %d)", len(conns), maxConnections)
	return nil
}

// A statement waiting for a lock until statement_timeout (or lock_timeout): the client gets
// 57014 (55P03), its connection and session stay usable, the context stays its own.
func TestLockWaitUntilTimeout(t *testing.T) {
	for _, mode := range modes {
		t.Run(mode, func(t *testing.T) {
			f := newFixture(t, mode)
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			locker := f.db.admin(t)
			defer locker.Close(ctx)
			if _, err := locker.Exec(ctx, "BEGIN; SELECT * FROM llmspell.entities WHERE tenant_id = 't07' FOR UPDATE"); err != nil {
				t.Fatal(err)
			}

			conn := f.connect(t, "t07")
			for _, c := range []struct{ set, code string }{
				{"SET LOCAL statement_timeout = '300ms'", "57014"},
				{"SET LOCAL lock_timeout = '300ms'", "55P03"},
			} {
				if _, err := conn.Exec(ctx, "BEGIN"); err != nil {
					t.Fatal(err)
				}
				if _, err := conn.Exec(ctx, c.set); err != nil {
					t.Fatalf("%s: %v", c.set, err)
				}
				_, err := conn.Exec(ctx, "UPDATE llmspell.entities SET properties = '{\"x\": 1}' WHERE tenant_id = 't07'")
				wantSQLState(t, "an UPDATE waiting for a lock ("+c.set+")", err, c.code)
				if _, err := conn.Exec(ctx, "ROLLBACK"); err != nil {
					t.Fatalf("ROLLBACK after the timeout: %v", err)
				}
				if err := checkSession(ctx, conn, "t07"); err != nil {
					t.Errorf("the same client after the timeout: %v", err)
				}
			}
			if mode == "session" {
				// Session mode lets a client set statement_timeout for its session.
				if _, err := conn.Exec(ctx, "SET statement_timeout = '300ms'"); err != nil {
					t.Fatal(err)
				}
				_, err := conn.Exec(ctx, "UPDATE llmspell.entities SET properties = '{\"x\": 1}' WHERE tenant_id = 't07'")
				wantSQLState(t, "a single UPDATE waiting for a lock under statement_timeout", err, "57014")
				if err := checkSession(ctx, conn, "t07"); err != nil {
					t.Errorf("the same client after the timeout: %v", err)
				}
			}
			if _, err := locker.Exec(ctx, "ROLLBACK"); err != nil {
				t.Fatal(err)
			}
			faultEnd := time.Now()
			recovery(t, "the UPDATE once the lock is released", faultEnd, 10*time.Second, func(ctx context.Context) error {
				_, err := conn.Exec(ctx, "UPDATE llmspell.entities SET properties = '{\"x\": 2}' WHERE tenant_id = 't07'")
				return err
			})
			conn.Close(ctx)
			f.checkIsolation(t, "t07", "t08")
			f.waitQuiet(t, "at the end")
		})
	}
}

// The database restarted (pg_ctl restart -m fast) under load: clients in the middle of
// something get a clean error (57P01, 08006, or 57P03 while it starts) and carry on after
// reconnecting; every acknowledged write survives. In transaction mode, a statement sent once
// the server is back must not fail: the pool's sessions died while idle, which is no business
// of the client's.
func TestDatabaseRestartUnderLoad(t *testing.T) {
	for _, mode := range modes {
		t.Run(mode, func(t *testing.T) {
			f := newFixture(t, mode, func(c *config.Config) { c.Pool.Size = 20 })
			busy := manyTenants[10:18]
			idle := manyTenants[20:26]
			idleConns := map[string]*pgx.Conn{}
			for _, user := range idle {
				idleConns[user] = f.connect(t, user)
				if err := checkSession(context.Background(), idleConns[user], user); err != nil {
					t.Fatal(err)
				}
			}
			load := startLoad(f, busy)
			load.waitEach(t, 3, time.Time{})

			restartStart := time.Now()
			if err := pg.restart(); err != nil {
				t.Fatal(err)
			}
			restarted := time.Now()
			t.Logf("pg_ctl restart -m fast took %v", restarted.Sub(restartStart).Round(time.Millisecond))
			load.waitEach(t, 3, restarted)
			t.Logf("RECOVERY %s: every busy client succeeding again: %v after the server was back",
				t.Name(), load.lastFirstSuccess(restarted).Sub(restarted).Round(time.Millisecond))
			load.stop()

			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			for _, user := range idle {
				conn := idleConns[user]
				_, err := conn.Exec(ctx, "SELECT count(*) FROM llmspell.entities")
				switch {
				case mode == "transaction" && err != nil:
					t.Errorf("%s, idle outside a transaction during the restart, gets an error for a pooled session that died: %v", user, err)
				case mode == "session":
					// Its session was its own: losing it is an error, and a clean one.
					wantSQLState(t, user+"'s first statement after its session died with the server", err, "57P01", "08006")
				}
			}
			load.verify(t, restarted, mode == "transaction")
			for _, conn := range idleConns {
				conn.Close(ctx)
			}
			f.checkIsolation(t, append(busy[:2], idle[:2]...)...)
			f.waitQuiet(t, "at the end")
		})
	}
}
