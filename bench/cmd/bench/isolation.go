package main

import (
	"cmp"
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
)

// isolationResult is many clients of many tenants writing and reading through tenantproxy at
// once: every row a client sees must be its tenant's, and every row it wrote must be there.
type isolationResult struct {
	Clients         int      `json:"clients"`
	Tenants         int      `json:"tenants"`
	Seconds         float64  `json:"seconds"`
	Inserts         int64    `json:"inserts"`
	Reads           int64    `json:"reads"`
	CrossTenantRows int64    `json:"cross_tenant_rows"`
	Errors          int64    `json:"errors"`
	ErrorSamples    []string `json:"error_samples,omitempty"`
	Stored          int64    `json:"stored"`
	Misplaced       int64    `json:"misplaced"`
}

func (r *isolationResult) ok() bool {
	return r.CrossTenantRows == 0 && r.Errors == 0 && r.Misplaced == 0 && r.Stored == r.Inserts
}

const (
	isolationInsert = `INSERT INTO llmspell.entities (tenant_id, entity_type, name) VALUES ($1, 'isolation', $2)`
	// Rows of other tenants it can see, and its own rows so far.
	isolationRead = `SELECT count(*) FILTER (WHERE tenant_id <> $1), count(*) FILTER (WHERE name LIKE $2)
		FROM llmspell.entities WHERE entity_type = 'isolation'`
)

// isolationClient is one client's state; its rows are named tenant/client/n.
type isolationClient struct {
	conn   *pgx.Conn
	tenant string
	id     int
	n      int
}

// runIsolation runs the clients for --isolation-duration, then checks as the superuser that
// every stored row is under the tenant its name says.
func runIsolation(ctx context.Context, e *env, rep *report) error {
	res := &isolationResult{Clients: e.o.IsolationClients, Tenants: min(len(tenants), e.o.IsolationClients)}
	clients := make([]*isolationClient, e.o.IsolationClients)
	defer func() {
		for _, c := range clients {
			if c != nil {
				c.conn.Close(context.Background())
			}
		}
	}()
	var (
		wg         sync.WaitGroup
		mu         sync.Mutex
		connectErr error
	)
	for i := range clients {
		tenant := tenants[i%len(tenants)]
		wg.Go(func() {
			conn, err := pgx.Connect(ctx, e.tenantproxy.target(tenant).url())
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				connectErr = cmp.Or(connectErr, fmt.Errorf("client %d (%s): %w", i, tenant, err))
				return
			}
			clients[i] = &isolationClient{conn: conn, tenant: tenant, id: i}
		})
	}
	wg.Wait()
	if connectErr != nil {
		return connectErr
	}

	record := func(err error) {
		mu.Lock()
		defer mu.Unlock()
		res.Errors++
		if len(res.ErrorSamples) < 5 {
			res.ErrorSamples = append(res.ErrorSamples, err.Error())
		}
	}
	var reads, cross atomic.Int64
	start := time.Now()
	deadline := start.Add(e.o.IsolationDuration)
	for _, c := range clients {
		wg.Go(func() {
			for time.Now().Before(deadline) && ctx.Err() == nil && !c.conn.IsClosed() {
				foreign, read, err := c.step(ctx)
				if read {
					reads.Add(1)
					cross.Add(foreign)
				}
				if err != nil {
					record(err)
				}
			}
		})
	}
	wg.Wait()
	res.Seconds = time.Since(start).Seconds()
	res.Reads, res.CrossTenantRows = reads.Load(), cross.Load()
	for _, c := range clients {
		res.Inserts += int64(c.n)
	}

	admin, err := e.connectAs(ctx, "", "")
	if err != nil {
		return err
	}
	defer admin.Close(ctx)
	if err := admin.QueryRow(ctx, `SELECT count(*), count(*) FILTER (WHERE split_part(name, '/', 1) <> tenant_id)
		FROM llmspell.entities WHERE entity_type = 'isolation'`).Scan(&res.Stored, &res.Misplaced); err != nil {
		return err
	}
	logf("  %d clients, %d inserts, %d reads: %d rows of other tenants seen, %d errors, %d rows stored, %d under the wrong tenant",
		res.Clients, res.Inserts, res.Reads, res.CrossTenantRows, res.Errors, res.Stored, res.Misplaced)
	rep.Isolation = res
	return nil
}

// step inserts a row and reads back, alternating the simple and extended protocols, and every
// third step inside an explicit transaction. It reports the rows of other tenants it saw, and
// whether the read happened.
func (c *isolationClient) step(ctx context.Context) (foreign int64, read bool, err error) {
	name := fmt.Sprintf("%s/%d/%d", c.tenant, c.id, c.n)
	mode := pgx.QueryExecModeCacheStatement
	if c.n%2 == 1 {
		mode = pgx.QueryExecModeSimpleProtocol
	}
	var own int64
	if c.n%3 == 2 {
		err = pgx.BeginFunc(ctx, c.conn, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, isolationInsert, mode, c.tenant, name); err != nil {
				return err
			}
			return tx.QueryRow(ctx, isolationRead, mode, c.tenant, c.prefix()).Scan(&foreign, &own)
		})
		if err != nil {
			return 0, false, err
		}
		c.n++
	} else {
		if _, err := c.conn.Exec(ctx, isolationInsert, mode, c.tenant, name); err != nil {
			return 0, false, err
		}
		c.n++
		if err := c.conn.QueryRow(ctx, isolationRead, mode, c.tenant, c.prefix()).Scan(&foreign, &own); err != nil {
			return 0, false, err
		}
	}
	if own != int64(c.n) {
		return foreign, true, fmt.Errorf("client %d (%s) sees %d of the %d rows it wrote", c.id, c.tenant, own, c.n)
	}
	return foreign, true, nil
}

func (c *isolationClient) prefix() string { return fmt.Sprintf("%s/%d/%%", c.tenant, c.id) }
