package session_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/rs/zerolog"

	"github.com/tenantproxy/tenantproxy/internal/pgtest"
	"github.com/tenantproxy/tenantproxy/session"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

var ctx = context.Background()

func newPool(t *testing.T, db *pgtest.DB, edit func(*session.Config)) *session.Pool {
	t.Helper()
	conn, err := pgconn.ParseConfig(db.AppURL)
	if err != nil {
		t.Fatal(err)
	}
	cfg := session.Config{
		Conn: conn, Setting: "app.current_tenant_id", Size: 2, MaxLifetime: time.Hour,
		IdleTimeout: time.Hour, CheckoutTimeout: 2 * time.Second, MaxPreparedStatements: 100,
	}
	if edit != nil {
		edit(&cfg)
	}
	p := session.NewPool(cfg, zerolog.Nop())
	t.Cleanup(p.Close)
	return p
}

// show asks the session itself for a setting's value.
func show(t *testing.T, b *session.Backend, name string) string {
	t.Helper()
	return queryOne(t, b, "SHOW "+name)
}

// queryOne runs sql over the raw protocol and returns the first column of its last row.
func queryOne(t *testing.T, b *session.Backend, sql string) string {
	t.Helper()
	buf := append([]byte{'Q', 0, 0, 0, 0}, sql...)
	buf = append(buf, 0)
	n := len(buf) - 1
	buf[1], buf[2], buf[3], buf[4] = byte(n>>24), byte(n>>16), byte(n>>8), byte(n)
	b.Out.Write(buf)
	if err := b.Flush(); err != nil {
		t.Fatal(err)
	}
	var value string
	for {
		typ, msg, err := b.In.Next()
		if err != nil {
			t.Fatal(err)
		}
		switch typ {
		case 'D':
			l := int(msg[7])<<24 | int(msg[8])<<16 | int(msg[9])<<8 | int(msg[10])
			value = string(msg[11 : 11+l])
		case 'E':
			t.Fatalf("%s: %v", sql, session.DecodeError(msg))
		case 'Z':
			b.NoteReady(msg[5])
			return value
		}
	}
}

func TestAcquireSetsTheTenantOnlyWhenItMustAndPrefersTheSameTenant(t *testing.T) {
	p := newPool(t, pgtest.New(t), nil)
	a, err := p.Acquire(ctx, session.Client{Tenant: "acme"})
	if err != nil {
		t.Fatal(err)
	}
	if got := show(t, a, "app.current_tenant_id"); got != "acme" || a.Tenant() != "acme" {
		t.Fatalf("tenant %q (%q)", got, a.Tenant())
	}
	g, err := p.Acquire(ctx, session.Client{Tenant: "globex"})
	if err != nil {
		t.Fatal(err)
	}
	p.Release(a)
	p.Release(g) // the most recently released is globex's
	switches := p.Stats().Switches

	again, err := p.Acquire(ctx, session.Client{Tenant: "acme"})
	if err != nil {
		t.Fatal(err)
	}
	if again != a {
		t.Error("acme did not get its own idle session back")
	}
	if p.Stats().Switches != switches {
		t.Error("the tenant context was set again although it was in place")
	}
	if got := show(t, again, "app.current_tenant_id"); got != "acme" {
		t.Errorf("tenant %q", got)
	}
	p.Release(again)

	// A third tenant takes an idle session of another and switches it.
	i, err := p.Acquire(ctx, session.Client{Tenant: "initech"})
	if err != nil {
		t.Fatal(err)
	}
	if got := show(t, i, "app.current_tenant_id"); got != "initech" || p.Stats().Switches != switches+1 {
		t.Errorf("tenant %q, switches %d", got, p.Stats().Switches-switches)
	}
	p.Release(i)
}

func TestSettingsFollowTheClient(t *testing.T) {
	p := newPool(t, pgtest.New(t), func(c *session.Config) { c.Size = 1 })
	b, err := p.Acquire(ctx, session.Client{Tenant: "acme", Settings: session.NewSettings(map[string]string{"TimeZone": "Asia/Tokyo", "extra_float_digits": "2"})})
	if err != nil {
		t.Fatal(err)
	}
	if got := show(t, b, "TimeZone"); got != "Asia/Tokyo" {
		t.Errorf("TimeZone %q", got)
	}
	if got := show(t, b, "extra_float_digits"); got != "2" {
		t.Errorf("extra_float_digits %q", got)
	}
	p.Release(b)
	b, err = p.Acquire(ctx, session.Client{Tenant: "acme", Settings: session.NewSettings(map[string]string{"TimeZone": "UTC"})})
	if err != nil {
		t.Fatal(err)
	}
	if got := show(t, b, "TimeZone"); got != "UTC" {
		t.Errorf("TimeZone %q", got)
	}
	p.Release(b)
}

// A setting the server refuses fails the checkout, never handing out a half-prepared session;
// the session, whose statements rolled back together, serves the next client.
func TestRefusedSettingFailsTheCheckoutOnly(t *testing.T) {
	p := newPool(t, pgtest.New(t), func(c *session.Config) { c.Size = 1 })
	_, err := p.Acquire(ctx, session.Client{Tenant: "acme", Settings: session.NewSettings(map[string]string{"TimeZone": "Nowhere/Bogus"})})
	var se session.ServerError
	if !errors.As(err, &se) || se.SQLState() != "22023" {
		t.Fatalf("want invalid_parameter_value, got %v", err)
	}
	if s := p.Stats(); s.Discards != 0 || s.Open != 1 || s.Idle != 1 {
		t.Errorf("after a refused setting: %+v", s)
	}
	b, err := p.Acquire(ctx, session.Client{Tenant: "acme"})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Release(b)
	if got := show(t, b, "app.current_tenant_id"); got != "acme" || show(t, b, "TimeZone") == "Nowhere/Bogus" {
		t.Errorf("tenant %q, TimeZone %q", got, show(t, b, "TimeZone"))
	}
}

func TestCheckoutWaitsThenTimesOut(t *testing.T) {
	p := newPool(t, pgtest.New(t), func(c *session.Config) {
		c.Size = 1
		c.CheckoutTimeout = 200 * time.Millisecond
	})
	held, err := p.Acquire(ctx, session.Client{Tenant: "acme"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.Acquire(ctx, session.Client{Tenant: "acme"}); !errors.Is(err, session.ErrCheckoutTimeout) {
		t.Fatalf("want a checkout timeout, got %v", err)
	}
	got := make(chan *session.Backend)
	go func() {
		b, err := p.Acquire(ctx, session.Client{Tenant: "globex"})
		if err != nil {
			t.Error(err)
		}
		got <- b
	}()
	pgtest.WaitFor(t, "the checkout to wait", func() bool { return p.Stats().Waiting == 1 })
	p.Release(held)
	b := <-got
	if b != held || b.Tenant() != "globex" {
		t.Errorf("the waiter got %p (tenant %q), want the released %p", b, b.Tenant(), held)
	}
	p.Release(b)

	// A discarded session frees its slot for a waiter, which opens a new one.
	b, _ = p.Acquire(ctx, session.Client{Tenant: "acme"})
	go func() {
		nb, err := p.Acquire(ctx, session.Client{Tenant: "acme"})
		if err != nil {
			t.Error(err)
		}
		got <- nb
	}()
	pgtest.WaitFor(t, "the checkout to wait", func() bool { return p.Stats().Waiting == 1 })
	p.Discard(b)
	if nb := <-got; nb == nil || nb == b {
		t.Errorf("after a discard the waiter got %p", nb)
	} else {
		p.Release(nb)
	}
}

// A server with no room for another session (53300) while the pool holds some: the checkout
// waits for one of them rather than failing; with none open, it fails at once.
func TestServerFullWaitsForAnOpenSession(t *testing.T) {
	db := pgtest.New(t)
	admin := pgtest.Connect(t, db.AdminURL)
	role := fmt.Sprintf("pool_full_%d", time.Now().UnixNano())
	for _, sql := range []string{
		"CREATE ROLE " + role + " LOGIN PASSWORD 'full' CONNECTION LIMIT 2",
		"GRANT CONNECT ON DATABASE " + pgx.Identifier{db.Name}.Sanitize() + " TO " + role,
	} {
		if _, err := admin.Exec(ctx, sql); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() {
		admin.Exec(ctx, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = $1", role)
		admin.Exec(ctx, "DROP ROLE "+role)
	})
	p := newPool(t, db, func(c *session.Config) {
		c.Size = 4
		c.Conn.User, c.Conn.Password = role, "full"
	})
	var held []*session.Backend
	for range 2 {
		b, err := p.Acquire(ctx, session.Client{Tenant: "acme"})
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, b)
	}
	got := make(chan error)
	go func() {
		b, err := p.Acquire(ctx, session.Client{Tenant: "globex"})
		if err == nil {
			if b != held[0] {
				err = fmt.Errorf("got a session other than the one released")
			}
			p.Release(b)
		}
		got <- err
	}()
	pgtest.WaitFor(t, "the checkout to wait", func() bool { return p.Stats().Waiting == 1 })
	if s := p.Stats(); s.DialErrors != 1 || s.Open != 2 {
		t.Errorf("after the server refused a session: %+v, want 1 dial error and 2 open", s)
	}
	p.Release(held[0])
	if err := <-got; err != nil {
		t.Errorf("the checkout that waited: %v", err)
	}
	p.Release(held[1])

	// A pool with no session open has nothing to wait for: the server's error, at once.
	q := newPool(t, db, func(c *session.Config) {
		c.Conn.User, c.Conn.Password = role, "full"
	})
	var pgErr *pgconn.PgError
	if _, err := q.Acquire(ctx, session.Client{Tenant: "acme"}); !errors.As(err, &pgErr) || pgErr.Code != "53300" {
		t.Errorf("a checkout from an empty pool of a full server: %v, want 53300", err)
	}
}

// A server that accepts connections and never answers: the pool opens a few sessions at a
// time (a quarter of its size, at least two), and the other checkouts wait their turn.
func TestDialsAreBounded(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var accepted atomic.Int32
	var conns []net.Conn
	var mu sync.Mutex
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			accepted.Add(1)
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
	})
	p := newPool(t, pgtest.New(t), func(c *session.Config) {
		c.Size = 8
		c.CheckoutTimeout = 30 * time.Second
		c.Conn.Host, c.Conn.Port = "127.0.0.1", uint16(ln.Addr().(*net.TCPAddr).Port)
		c.Conn.ConnectTimeout = 30 * time.Second
	})
	errs := make(chan error, 6)
	for range cap(errs) {
		go func() {
			_, err := p.Acquire(ctx, session.Client{Tenant: "acme"})
			errs <- err
		}()
	}
	pgtest.WaitFor(t, "two dials to stall and four checkouts to wait", func() bool {
		return accepted.Load() == 2 && p.Stats().Waiting == 4
	})
	if n := accepted.Load(); n != 2 {
		t.Errorf("%d connections opened at once, want 2", n)
	}
	// The stalled dials fail; the waiting checkouts get their turns.
	ln.Close()
	mu.Lock()
	for _, c := range conns {
		c.Close()
	}
	mu.Unlock()
	for range cap(errs) {
		if err := <-errs; err == nil {
			t.Error("a checkout from a server that never answers succeeded")
		}
	}
}

func TestLifetimeAndIdleLimits(t *testing.T) {
	p := newPool(t, pgtest.New(t), func(c *session.Config) {
		c.MaxLifetime = time.Nanosecond
	})
	b, err := p.Acquire(ctx, session.Client{Tenant: "acme"})
	if err != nil {
		t.Fatal(err)
	}
	p.Release(b) // past its lifetime: closed, not pooled
	if s := p.Stats(); s.Idle != 0 || s.Open != 0 {
		t.Errorf("an expired session went back to the pool: %+v", s)
	}

	q := newPool(t, pgtest.New(t), func(c *session.Config) {
		c.IdleTimeout = 100 * time.Millisecond
		c.MinIdle = 1
		c.Size = 3
	})
	pgtest.WaitFor(t, "min_idle sessions", func() bool { return q.Stats().Idle == 1 })
	b1, _ := q.Acquire(ctx, session.Client{Tenant: "acme"})
	b2, _ := q.Acquire(ctx, session.Client{Tenant: "acme"})
	q.Release(b1)
	q.Release(b2)
	pgtest.WaitFor(t, "idle sessions beyond min_idle to close", func() bool { return q.Stats().Open == 1 })
}

// A session the server closed while it sat idle is noticed on its way out of the pool.
// usedOnce takes a session for tenant acme, gives it back idle and returns its server pid.
func usedOnce(t *testing.T, p *session.Pool) uint32 {
	t.Helper()
	b, err := p.Acquire(ctx, session.Client{Tenant: "acme"})
	if err != nil {
		t.Fatal(err)
	}
	p.Release(b)
	return b.PID()
}

func TestDeadIdleSessionIsReplaced(t *testing.T) {
	db := pgtest.New(t)
	p := newPool(t, db, func(c *session.Config) { c.CheckAfter = time.Nanosecond })
	pid := usedOnce(t, p)
	admin := pgtest.Connect(t, db.AdminURL)
	if _, err := admin.Exec(ctx, "SELECT pg_terminate_backend($1)", int(pid)); err != nil {
		t.Fatal(err)
	}
	pgtest.WaitFor(t, "the terminated session to end", func() bool {
		var n int
		admin.QueryRow(ctx, "SELECT count(*) FROM pg_stat_activity WHERE pid = $1", int(pid)).Scan(&n)
		return n == 0
	})
	b, err := p.Acquire(ctx, session.Client{Tenant: "acme"})
	if err != nil {
		t.Fatal(err)
	}
	if b.PID() == pid {
		t.Error("the terminated session was handed out")
	}
	if got := show(t, b, "app.current_tenant_id"); got != "acme" {
		t.Errorf("tenant %q", got)
	}
	p.Release(b)
}

// A live session idle past CheckAfter passes the check and is handed out again, not replaced.
func TestLiveIdleSessionIsKept(t *testing.T) {
	db := pgtest.New(t)
	p := newPool(t, db, func(c *session.Config) { c.CheckAfter = time.Nanosecond })
	pid := usedOnce(t, p)
	b, err := p.Acquire(ctx, session.Client{Tenant: "acme"})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Release(b)
	if b.PID() != pid {
		t.Errorf("the idle, live session %d was replaced by %d", pid, b.PID())
	}
	if got := p.Stats().Discards; got != 0 {
		t.Errorf("%d sessions discarded", got)
	}
}

func TestCancelReachesTheSession(t *testing.T) {
	db := pgtest.New(t)
	p := newPool(t, db, nil)
	b, err := p.Acquire(ctx, session.Client{Tenant: "acme"})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- b.Exec("SELECT pg_sleep(30)") }()
	admin := pgtest.Connect(t, db.AdminURL)
	pgtest.WaitFor(t, "the statement to run", func() bool {
		var n int
		admin.QueryRow(ctx, "SELECT count(*) FROM pg_stat_activity WHERE pid = $1 AND state = 'active'", int(b.PID())).Scan(&n)
		return n == 1
	})
	if err := p.Cancel(ctx, b); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		var se session.ServerError
		if !errors.As(err, &se) || se.SQLState() != "57014" {
			t.Errorf("want query_canceled, got %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the cancel did not arrive")
	}
	p.Release(b)
}

func TestPreparedSetEvictsLeastRecentlyUsed(t *testing.T) {
	p := newPool(t, pgtest.New(t), func(c *session.Config) {
		c.MaxPreparedStatements = 2
		c.MaxPreparedStatementMemory = 1 << 20
		c.StatementMemory = 1 << 30
	})
	b, err := p.Acquire(ctx, session.Client{Tenant: "acme"})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Release(b)
	statement := func(text, scope string) *session.Statement {
		t.Helper()
		s, err := p.Statement([]byte(text), []byte{0, 0}, scope)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	s1, s2, s3 := statement("SELECT 1", "acme"), statement("SELECT 2", "acme"), statement("SELECT 3", "acme")
	if statement("SELECT 1", "acme") != s1 || s1.Name == s2.Name {
		t.Fatal("statements are not named by their text")
	}
	if statement("SELECT 1", "acme\x00DateStyle=ISO, DMY\x00") == s1 || statement("SELECT 1", "globex") == s1 {
		t.Fatal("a statement of another scope (settings, tenant) is shared")
	}
	if got := s1.Types(); !bytes.Equal(got, []byte{0, 0}) || string(s1.Query()) != "SELECT 1" {
		t.Fatalf("Types() = %v, Query() = %q", got, s1.Query())
	}
	if b.Prepared.Add(s1) != nil || b.Prepared.Add(s2) != nil {
		t.Fatal("evicted below the limit")
	}
	b.Prepared.Has(s1) // s2 is now the least recently used
	if evicted := b.Prepared.Add(s3); len(evicted) != 1 || evicted[0] != s2 {
		t.Errorf("evicted %v, want %s", evicted, s2.Name)
	}
	if !b.Prepared.Has(s1) || !b.Prepared.Has(s3) || b.Prepared.Has(s2) || b.Prepared.Len() != 2 {
		t.Error("wrong set after eviction")
	}
	// s1 is held twice (two statement() calls): released once, it stays; twice, it is gone,
	// and the backend's set gives it up to be closed.
	p.ReleaseStatement(s1)
	if got := b.Prepared.Released(p); len(got) != 0 {
		t.Errorf("released while still held: %v", got)
	}
	p.ReleaseStatement(s1)
	if got := b.Prepared.Released(p); len(got) != 1 || got[0] != s1 || b.Prepared.Has(s1) {
		t.Errorf("released statements to close: %v", got)
	}
	b.Prepared.Clear()
	if b.Prepared.Len() != 0 {
		t.Error("Clear left statements")
	}
}

// A backend's statements are bounded by size: a large one evicts as many as it must.
func TestPreparedSetBoundedBySize(t *testing.T) {
	p := newPool(t, pgtest.New(t), func(c *session.Config) {
		c.MaxPreparedStatements = 100
		c.MaxPreparedStatementMemory = 1 << 20
		c.StatementMemory = 1 << 30
	})
	b, err := p.Acquire(ctx, session.Client{Tenant: "acme"})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Release(b)
	var small []*session.Statement
	for i := range 3 {
		s, _ := p.Statement([]byte("SELECT '"+strings.Repeat("x", 300<<10)+"'"+strconv.Itoa(i)), []byte{0, 0}, "acme")
		small = append(small, s)
		if ev := b.Prepared.Add(s); ev != nil {
			t.Fatalf("evicted %d below the size", len(ev))
		}
	}
	big, _ := p.Statement([]byte("SELECT '"+strings.Repeat("y", 600<<10)+"'"), []byte{0, 0}, "acme")
	if ev := b.Prepared.Add(big); len(ev) != 2 || ev[0] != small[0] || ev[1] != small[1] {
		t.Errorf("a 600 KiB statement in a 1 MiB set of three 300 KiB ones evicted %d", len(ev))
	}
}

// The registry refuses statements past its memory budget.
func TestStatementMemoryBudget(t *testing.T) {
	p := newPool(t, pgtest.New(t), func(c *session.Config) { c.StatementMemory = 1 << 20 })
	if _, err := p.Statement([]byte(strings.Repeat("x", 600<<10)), []byte{0, 0}, "a"); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Statement([]byte(strings.Repeat("y", 600<<10)), []byte{0, 0}, "a"); !errors.Is(err, session.ErrStatementMemory) {
		t.Errorf("over the budget: %v", err)
	}
	if got := p.StatementMemory(); got < 600<<10 || got > 1<<20 {
		t.Errorf("StatementMemory() = %d", got)
	}
}
