package faults

import (
	"context"
	"fmt"
	"io"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tenantproxy/tenantproxy/config"
)

// Faults on the wire between the proxy and the database, injected by the relay.

// A slow or narrow link slows clients down and nothing else: no errors, right answers.
func TestLatencyAndBandwidth(t *testing.T) {
	for _, mode := range modes {
		t.Run(mode, func(t *testing.T) {
			f := newFixture(t, mode)
			conn := f.connect(t, "t01")
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()

			f.relay.add(t, "latency", "latency", downstream, map[string]any{"latency": 200})
			start := time.Now()
			var seeds int
			if err := conn.QueryRow(ctx, "SELECT count(*) FROM llmspell.entities").Scan(&seeds); err != nil || seeds != seedRows {
				t.Fatalf("a query under 200 ms of latency: %d rows, %v", seeds, err)
			}
			if took := time.Since(start); took < 200*time.Millisecond {
				t.Fatalf("the query took %v: the relay's latency did not apply", took)
			}
			f.relay.remove(t, "latency")

			// 1 MB through 512 KB/s.
			f.relay.add(t, "bandwidth", "bandwidth", downstream, map[string]any{"rate": 512})
			start = time.Now()
			var big string
			if err := conn.QueryRow(ctx, "SELECT string_agg(repeat('x', 1000), '') FROM generate_series(1, 1000)").Scan(&big); err != nil || len(big) != 1_000_000 {
				t.Fatalf("1 MB through a narrow link: %d bytes, %v", len(big), err)
			}
			if took := time.Since(start); took < time.Second {
				t.Fatalf("1 MB took %v at 512 KB/s: the relay's bandwidth limit did not apply", took)
			}
			t.Logf("1 MB through 512 KB/s took %v", time.Since(start).Round(time.Millisecond))
			f.relay.remove(t, "bandwidth")

			recovery(t, "a query once the link is fast again", time.Now(), 10*time.Second, func(ctx context.Context) error {
				_, err := conn.Exec(ctx, "SELECT 1")
				return err
			})
			f.checkIsolation(t, "t01", "t02", "alice")
			conn.Close(ctx)
			f.waitQuiet(t, "at the end")
		})
	}
}

// A database too slow to open a session within backend.connect_timeout: the client's login
// fails with 08006 within that time, and works again once the database is fast again.
func TestDatabaseTooSlowToOpenSessions(t *testing.T) {
	f := newFixture(t, "transaction")
	f.relay.add(t, "latency", "latency", downstream, map[string]any{"latency": 3000})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	start := time.Now()
	conn, err := f.dial(ctx, "t01", false)
	took := time.Since(start)
	if err == nil {
		conn.Close(ctx)
		t.Fatalf("a login needing a new session over a 3 s link succeeded; connect_timeout is %v", f.cfg.Backend.ConnectTimeout)
	}
	wantSQLState(t, "login while the database is too slow", err, "08006")
	if limit := f.cfg.Backend.ConnectTimeout.Duration + 3*time.Second; took > limit {
		t.Errorf("the login failed after %v, beyond connect_timeout (%v) and some slack", took, f.cfg.Backend.ConnectTimeout)
	}
	f.relay.remove(t, "latency")
	recovery(t, "a login once the database is fast again", time.Now(), 10*time.Second, func(ctx context.Context) error {
		return f.once(ctx, "t01", "SELECT 1")
	})
	f.checkIsolation(t, "t01", "t02")
	f.waitQuiet(t, "at the end")
}

// The connection to the database closes in the middle of a large result: the client gets
// 08006, and the next client is served.
func TestConnectionResetMidResult(t *testing.T) {
	for _, mode := range modes {
		t.Run(mode, func(t *testing.T) {
			f := newFixture(t, mode)
			conn := f.connect(t, "t02")
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()

			rows, err := conn.Query(ctx, "SELECT repeat('x', 1000) FROM generate_series(1, 200000)")
			if err != nil {
				t.Fatal(err)
			}
			if !rows.Next() {
				t.Fatalf("no first row: %v", rows.Err())
			}
			f.relay.add(t, "reset", "reset_peer", downstream, map[string]any{"timeout": 0})
			n := 1
			for rows.Next() {
				n++
			}
			rows.Close()
			faultEnd := time.Now()
			t.Logf("the connection closed after %d of 200000 rows", n)
			wantSQLState(t, "a result cut short", rows.Err(), "08006")
			f.relay.remove(t, "reset")

			recovery(t, "a new client after a reset mid-result", faultEnd, 10*time.Second, func(ctx context.Context) error {
				return f.once(ctx, "t02", "SELECT 1")
			})
			f.checkIsolation(t, "t02", "t03", "alice")
			conn.Close(ctx)
			f.waitQuiet(t, "at the end")
		})
	}
}

// The connection to the database closes in the middle of COPY, in either direction: the
// client gets 08006, no row of an interrupted COPY FROM is committed.
func TestConnectionResetMidCopy(t *testing.T) {
	for _, mode := range modes {
		t.Run(mode, func(t *testing.T) {
			f := newFixture(t, mode)
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()

			in := f.connect(t, "t03")
			src := &copySource{line: "t03\t" + strings.Repeat("y", 1000) + "\n", limit: 50 << 20,
				after: 256 << 10, fire: func() { f.relay.add(t, "reset", "reset_peer", upstream, map[string]any{"timeout": 0}) }}
			_, err := in.PgConn().CopyFrom(ctx, src, "COPY public.fault_copy FROM STDIN")
			faultEnd := time.Now()
			wantSQLState(t, "COPY FROM cut short", err, "08006")
			f.relay.remove(t, "reset")
			if src.sent.Load() >= src.limit {
				t.Fatalf("the whole COPY went through: the reset never fired")
			}
			waitFor(t, 10*time.Second, "the interrupted COPY to end on the server", func() error {
				if n := f.db.count(t, "SELECT count(*) "+appSessions+" AND query LIKE 'COPY%' AND state <> 'idle'"); n > 0 {
					return fmt.Errorf("%d sessions still in COPY", n)
				}
				return nil
			})
			if n := f.db.count(t, "SELECT count(*) FROM public.fault_copy"); n != 0 {
				t.Errorf("%d rows of an interrupted COPY FROM were committed", n)
			}
			recovery(t, "a new client after a reset mid-COPY FROM", faultEnd, 10*time.Second, func(ctx context.Context) error {
				return f.once(ctx, "t03", "SELECT 1")
			})

			out := f.connect(t, "t04")
			dst := &copySink{after: 64 << 10, fire: func() { f.relay.add(t, "reset", "reset_peer", downstream, map[string]any{"timeout": 0}) }}
			_, err = out.PgConn().CopyTo(ctx, dst, "COPY (SELECT g, repeat('z', 1000) FROM generate_series(1, 200000) g) TO STDOUT")
			faultEnd = time.Now()
			wantSQLState(t, "COPY TO cut short", err, "08006")
			f.relay.remove(t, "reset")
			recovery(t, "a new client after a reset mid-COPY TO", faultEnd, 10*time.Second, func(ctx context.Context) error {
				return f.once(ctx, "t04", "SELECT 1")
			})

			f.checkIsolation(t, "t03", "t04", "bob")
			in.Close(ctx)
			out.Close(ctx)
			f.waitQuiet(t, "at the end")
		})
	}
}

// copySource feeds COPY FROM the same line until limit bytes, calling fire once after.
type copySource struct {
	line         string
	limit, after int64
	sent         atomic.Int64
	fired        bool
	fire         func()
}

func (s *copySource) Read(p []byte) (int, error) {
	sent := s.sent.Load()
	if sent >= s.limit {
		return 0, io.EOF
	}
	if sent >= s.after && !s.fired {
		s.fired = true
		s.fire()
	}
	n := 0
	for n+len(s.line) <= len(p) && sent+int64(n) < s.limit {
		n += copy(p[n:], s.line)
	}
	s.sent.Add(int64(n))
	return n, nil
}

// copySink takes COPY TO's data, calling fire once after some bytes.
type copySink struct {
	got, after int64
	fired      bool
	fire       func()
}

func (s *copySink) Write(p []byte) (int, error) {
	s.got += int64(len(p))
	if s.got >= s.after && !s.fired {
		s.fired = true
		s.fire()
	}
	return len(p), nil
}

// The database stops answering (a partition, a frozen host): nothing the proxy sends arrives
// and nothing comes back. A client that gives up must not leave its backend session and
// goroutine pinned in the proxy; logins meanwhile fail within connect_timeout; once the
// network recovers (its stalled connections reset), new work succeeds.
func TestStalledDatabase(t *testing.T) {
	for _, mode := range modes {
		t.Run(mode, func(t *testing.T) {
			f := newFixture(t, mode, func(c *config.Config) { c.Pool.Size = 3 })
			conn := f.connect(t, "t04")
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			if _, err := conn.Exec(ctx, "SELECT 1"); err != nil {
				t.Fatal(err)
			}

			f.relay.add(t, "stall-up", "timeout", upstream, map[string]any{"timeout": 0})
			f.relay.add(t, "stall-down", "timeout", downstream, map[string]any{"timeout": 0})
			short, stop := context.WithTimeout(ctx, 2*time.Second)
			start := time.Now()
			_, err := conn.Exec(short, "SELECT 1")
			stop()
			if err == nil {
				t.Fatal("a query went through a stalled link")
			}
			if took := time.Since(start); took > 5*time.Second {
				t.Errorf("the client's 2 s deadline ended its query only after %v", took)
			}
			conn.Close(ctx)

			// The client has gone: what it held must be let go, although the server never answers.
			f.waitQuiet(t, "after a client left while the database stalled")

			start = time.Now()
			bounded, stop := context.WithTimeout(ctx, 15*time.Second)
			other, err := f.dial(bounded, "t05", false)
			if err == nil {
				_, err = other.Exec(bounded, "SELECT 1")
				other.Close(ctx)
			}
			stop()
			if err == nil {
				t.Errorf("a client was served while the database stalled")
			}
			wantSQLState(t, "login while the database stalls", err, "08006", "53300")
			if took, limit := time.Since(start), f.cfg.Backend.ConnectTimeout.Duration+f.cfg.Pool.CheckoutTimeout.Duration+3*time.Second; took > limit {
				t.Errorf("the login failed after %v; connect_timeout and checkout_timeout allow %v", took, limit)
			}

			f.relay.clear()
			f.relay.cut(t)
			faultEnd := time.Now()
			recovery(t, "a new client once the stall is over", faultEnd, 15*time.Second, func(ctx context.Context) error {
				return f.once(ctx, "t05", "SELECT 1")
			})
			f.checkIsolation(t, "t04", "t05", "alice")
			f.waitQuiet(t, "at the end")
		})
	}
}
