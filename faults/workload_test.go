package faults

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// workload is a crowd of clients, one goroutine each, running a mix of reads, writes and
// transactions through the proxy and checking every answer: each tenant's rows carry its own
// marker, and it must never see another's. Writes the proxy acknowledged are remembered and
// looked for at the end. Errors are tolerated only when they are clear: a PostgreSQL error
// with one of cleanCodes.
type workload struct {
	f       *fixture
	clients []*loadClient
	done    chan struct{}
	wg      sync.WaitGroup

	mu         sync.Mutex
	acked      map[string]string // marker -> tenant
	errors     []loadError
	violations []string
	ops        atomic.Int64
}

// cleanCodes are the errors a client may see while the database fails: the session was lost
// (08006), the server ended it or is shutting down or starting (57P01, 57P02, 57P03), no
// session could be had (53300).
var cleanCodes = []string{"08006", "57P01", "57P02", "57P03", "53300"}

type loadError struct {
	at     time.Time // when the operation started
	user   string
	op     string
	code   string
	detail string
}

// loadClient is one client of the workload.
type loadClient struct {
	user, tenant string
	index        int
	simple       bool // simple query protocol, else extended
	visit        int  // session mode: operations per connection before reconnecting

	mu        sync.Mutex
	successes []time.Time // start times of successful operations
}

// startLoad starts a client for each user (users may repeat), half of them on the simple
// protocol; in session mode each reconnects after a few operations so that sessions rotate.
// Clients start 10 ms apart: the test is about faults, not about a storm of logins.
func startLoad(f *fixture, users []string) *workload {
	w := &workload{f: f, done: make(chan struct{}), acked: map[string]string{}}
	for i, user := range users {
		if i > 0 {
			time.Sleep(10 * time.Millisecond)
		}
		c := &loadClient{user: user, tenant: tenantOf(user), index: i, simple: i%2 == 0}
		if f.cfg.Pool.Mode == "session" {
			c.visit = 10 + i%10
		}
		w.clients = append(w.clients, c)
		w.wg.Add(1)
		go func() {
			defer w.wg.Done()
			w.run(c)
		}()
	}
	return w
}

func (w *workload) stop() {
	close(w.done)
	w.wg.Wait()
}

func (w *workload) stopped() bool {
	select {
	case <-w.done:
		return true
	default:
		return false
	}
}

func (w *workload) run(c *loadClient) {
	rng := rand.New(rand.NewPCG(uint64(c.index), 42))
	var conn *pgx.Conn
	defer func() {
		if conn != nil {
			conn.Close(context.Background())
		}
	}()
	seq, used := 0, 0
	for !w.stopped() {
		if conn == nil {
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			var err error
			start := time.Now()
			conn, err = w.f.dial(ctx, c.user, c.simple)
			cancel()
			if err != nil {
				conn = nil
				w.fail(c, "login", start, err)
				time.Sleep(50 * time.Millisecond)
				continue
			}
			used = 0
		}
		seq++
		op := []string{"read", "read", "write", "transaction", "context"}[rng.IntN(5)]
		start := time.Now()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		written, err := w.do(ctx, conn, c, op, seq)
		cancel()
		w.ops.Add(1)
		if err != nil {
			w.fail(c, op, start, err)
			if conn.IsClosed() || conn.PgConn().TxStatus() != 'I' {
				conn.Close(context.Background())
				conn = nil
			}
		} else {
			c.mu.Lock()
			c.successes = append(c.successes, start)
			c.mu.Unlock()
			w.mu.Lock()
			for _, m := range written {
				w.acked[m] = c.tenant
			}
			w.mu.Unlock()
		}
		if used++; conn != nil && c.visit > 0 && used >= c.visit {
			conn.Close(context.Background())
			conn = nil
		}
		time.Sleep(time.Duration(5+rng.IntN(20)) * time.Millisecond)
	}
}

// do runs one operation and returns the markers it wrote, once acknowledged.
func (w *workload) do(ctx context.Context, conn *pgx.Conn, c *loadClient, op string, seq int) ([]string, error) {
	marker := func(n int) string { return fmt.Sprintf("%s-%d-%d-%d", c.tenant, c.index, seq, n) }
	insert := "INSERT INTO llmspell.entities (tenant_id, entity_type, name) VALUES ($1, 'load', $2)"
	switch op {
	case "read":
		rows, err := conn.Query(ctx, "SELECT tenant_id, name FROM llmspell.entities ORDER BY created_at DESC LIMIT 20")
		if err != nil {
			return nil, err
		}
		n := 0
		for rows.Next() {
			var tenant, name string
			if err := rows.Scan(&tenant, &name); err != nil {
				rows.Close()
				return nil, err
			}
			n++
			if tenant != c.tenant || !strings.HasPrefix(name, c.tenant+"-") {
				w.violate("%s (tenant %s) read a row of %s: %q", c.user, c.tenant, tenant, name)
			}
		}
		if rows.Err() == nil && n == 0 {
			w.violate("%s (tenant %s) read none of its rows", c.user, c.tenant)
		}
		return nil, rows.Err()
	case "write":
		m := marker(0)
		_, err := conn.Exec(ctx, insert, c.tenant, m)
		if err != nil {
			return nil, err
		}
		return []string{m}, nil
	case "transaction":
		tx, err := conn.Begin(ctx)
		if err != nil {
			return nil, err
		}
		defer tx.Rollback(context.Background())
		ms := []string{marker(1), marker(2)}
		for _, m := range ms {
			if _, err := tx.Exec(ctx, insert, c.tenant, m); err != nil {
				return nil, err
			}
		}
		var setting string
		if err := tx.QueryRow(ctx, "SELECT current_setting('app.current_tenant_id', true)").Scan(&setting); err != nil {
			return nil, err
		}
		if setting != c.tenant {
			w.violate("%s (tenant %s) runs a transaction under the context %q", c.user, c.tenant, setting)
		}
		if err := tx.Commit(ctx); err != nil {
			return nil, err
		}
		return ms, nil
	default:
		var setting string
		if err := conn.QueryRow(ctx, "SHOW app.current_tenant_id").Scan(&setting); err != nil {
			return nil, err
		}
		if setting != c.tenant {
			w.violate("%s (tenant %s) was handed a session whose context is %q", c.user, c.tenant, setting)
		}
		return nil, nil
	}
}

func (w *workload) violate(format string, args ...any) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.violations = append(w.violations, fmt.Sprintf(format, args...))
}

func (w *workload) fail(c *loadClient, op string, start time.Time, err error) {
	code := sqlstate(err)
	w.mu.Lock()
	defer w.mu.Unlock()
	w.errors = append(w.errors, loadError{at: start, user: c.user, op: op, code: code, detail: err.Error()})
	// A row-level security refusal of a client's own write means its context was not its own.
	if code == "42501" && strings.Contains(err.Error(), "row-level security") {
		w.violations = append(w.violations, fmt.Sprintf("%s (tenant %s) wrote under a foreign context: %v", c.user, c.tenant, err))
	}
}

// waitEach waits until every client has succeeded n times with operations started at since
// or later.
func (w *workload) waitEach(t *testing.T, n int, since time.Time) {
	t.Helper()
	waitFor(t, 60*time.Second, fmt.Sprintf("every client to succeed %d times", n), func() error {
		for _, c := range w.clients {
			if got := c.successesSince(since); got < n {
				return fmt.Errorf("%s has %d", c.user, got)
			}
		}
		return nil
	})
}

func (c *loadClient) successesSince(since time.Time) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, s := range c.successes {
		if !s.Before(since) {
			n++
		}
	}
	return n
}

// lastFirstSuccess is when the last client to recover first succeeded after since.
func (w *workload) lastFirstSuccess(since time.Time) time.Time {
	var last time.Time
	for _, c := range w.clients {
		c.mu.Lock()
		for _, s := range c.successes {
			if !s.Before(since) {
				if s.After(last) {
					last = s
				}
				break
			}
		}
		c.mu.Unlock()
	}
	return last
}

// firstSuccessAfter is the first success of any client with an operation started after since.
func (w *workload) firstSuccessAfter(since time.Time) (time.Time, bool) {
	var first time.Time
	for _, c := range w.clients {
		c.mu.Lock()
		for _, s := range c.successes {
			if !s.Before(since) {
				if first.IsZero() || s.Before(first) {
					first = s
				}
				break
			}
		}
		c.mu.Unlock()
	}
	return first, !first.IsZero()
}

// verify fails t for any isolation violation, any unclear error, and any acknowledged write
// missing from the database. With strictAfter, errors of operations started after since fail
// t as well.
func (w *workload) verify(t *testing.T, since time.Time, strictAfter bool) {
	t.Helper()
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, v := range w.violations {
		t.Errorf("isolation: %s", v)
	}
	var unclear, late []string
	for _, e := range w.errors {
		line := fmt.Sprintf("%s %s at %s: %s", e.user, e.op, e.at.Format("15:04:05.000"), e.detail)
		if !slices.Contains(cleanCodes, e.code) {
			unclear = append(unclear, line)
		} else if strictAfter && !e.at.Before(since) {
			late = append(late, line)
		}
	}
	if len(unclear) > 0 {
		t.Errorf("%d errors were not clear (no SQLSTATE, or not one of %v):\n  %s", len(unclear), cleanCodes, strings.Join(firstN(unclear, 20), "\n  "))
	}
	if len(late) > 0 {
		t.Errorf("%d operations started after the database was back failed:\n  %s", len(late), strings.Join(firstN(late, 20), "\n  "))
	}

	admin := w.f.db.admin(t)
	defer admin.Close(context.Background())
	rows, err := admin.Query(context.Background(), "SELECT name, tenant_id FROM llmspell.entities WHERE entity_type = 'load'")
	if err != nil {
		t.Fatalf("reading the written rows: %v", err)
	}
	stored := map[string]string{}
	for rows.Next() {
		var name, tenant string
		if err := rows.Scan(&name, &tenant); err != nil {
			t.Fatal(err)
		}
		stored[name] = tenant
		if !strings.HasPrefix(name, tenant+"-") {
			t.Errorf("row %q is stored under tenant %s", name, tenant)
		}
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	var missing []string
	for m, tenant := range w.acked {
		if got, ok := stored[m]; !ok || got != tenant {
			missing = append(missing, m)
		}
	}
	sort.Strings(missing)
	if len(missing) > 0 {
		t.Errorf("%d of %d acknowledged writes are missing: %s", len(missing), len(w.acked), strings.Join(firstN(missing, 20), ", "))
	}
}

// errorCounts is how many errors each SQLSTATE (or "none" for errors without one) had.
func (w *workload) errorCounts() map[string]int {
	w.mu.Lock()
	defer w.mu.Unlock()
	counts := map[string]int{}
	for _, e := range w.errors {
		code := e.code
		if code == "" {
			code = "none"
		}
		counts[code]++
	}
	return counts
}

func firstN(s []string, n int) []string {
	if len(s) > n {
		return append(s[:n:n], fmt.Sprintf("... and %d more", len(s)-n))
	}
	return s
}
