package main

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
)

// idleResult is one proxy holding a number of authenticated, idle clients.
type idleResult struct {
	Server         string  `json:"server"`
	Wanted         int     `json:"wanted"`
	Connected      int     `json:"connected"`
	Answered       int     `json:"answered"`
	BaseRSSKB      int64   `json:"base_rss_kb"`
	RSSKB          int64   `json:"rss_kb"`
	ConnectSeconds float64 `json:"connect_seconds"`
	Error          string  `json:"error,omitempty"`
}

// idleWorkers connect clients in parallel: SCRAM costs each client a few milliseconds of CPU.
const idleWorkers = 16

// runIdle holds each --idle-clients count against a fresh tenantproxy, then a fresh PgBouncer,
// one at a time, and reads each server's resident memory while it holds them. Fresh processes
// start from the same state: memory a previous count left in a process would hide part of the
// next count's cost.
func runIdle(ctx context.Context, e *env, rep *report) error {
	for _, n := range e.o.IdleClients {
		for _, s := range e.freshProxies() {
			p, err := s.start(ctx, fmt.Sprintf("%s-idle-%d", s.key, n), s.label)
			if err != nil {
				return err
			}
			r := holdIdle(ctx, p, n)
			p.stop()
			logf("  %s: %d of %d idle clients, %d answered, RSS %.1f MB (%.1f MB before) %s",
				r.Server, r.Connected, r.Wanted, r.Answered, float64(r.RSSKB)/1024, float64(r.BaseRSSKB)/1024, r.Error)
			rep.Idle = append(rep.Idle, r)
			if ctx.Err() != nil {
				return ctx.Err()
			}
		}
	}
	return nil
}

func holdIdle(ctx context.Context, p *proxy, n int) idleResult {
	r := idleResult{Server: p.Label, Wanted: n}
	fail := func(err error) idleResult { r.Error = err.Error(); return r }
	cfg, err := p.pgconnConfig(benchUser)
	if err != nil {
		return fail(err)
	}
	if r.BaseRSSKB, err = settledRSS(ctx, p.pid()); err != nil {
		return fail(err)
	}

	start := time.Now()
	conns, err := connectMany(ctx, cfg, n)
	defer closeAll(conns)
	r.ConnectSeconds = time.Since(start).Seconds()
	r.Connected = len(conns)
	if err != nil {
		return fail(fmt.Errorf("after %d clients: %w", len(conns), err))
	}
	// The last logins are answered before the server is done with them (a goroutine ending,
	// buffers released): read the memory once it has stopped moving.
	if r.RSSKB, err = settledRSS(ctx, p.pid()); err != nil {
		return fail(err)
	}
	// Each client then runs one query, to show they were real, usable sessions.
	var answered atomic.Int64
	forEach(conns, func(pc *pgconn.PgConn) {
		if _, err := pc.Exec(ctx, "SELECT 1").ReadAll(); err == nil {
			answered.Add(1)
		}
	})
	r.Answered = int(answered.Load())
	return r
}

// pgconnConfig is how a client reaches the proxy as user.
func (p *proxy) pgconnConfig(user string) (*pgconn.Config, error) {
	return pgconn.ParseConfig(fmt.Sprintf("host=127.0.0.1 port=%d user=%s password=%s dbname=app sslmode=disable connect_timeout=30",
		p.port, user, p.password))
}

// connectMany opens n connections, stopping at the first failure.
func connectMany(ctx context.Context, cfg *pgconn.Config, n int) ([]*pgconn.PgConn, error) {
	var (
		mu       sync.Mutex
		conns    = make([]*pgconn.PgConn, 0, n)
		firstErr error
		next     atomic.Int64
		wg       sync.WaitGroup
	)
	for range idleWorkers {
		wg.Go(func() {
			for int(next.Add(1)) <= n {
				pc, err := pgconn.ConnectConfig(ctx, cfg.Copy())
				mu.Lock()
				if err != nil {
					if firstErr == nil {
						firstErr = err
					}
					mu.Unlock()
					return
				}
				conns = append(conns, pc)
				stop := firstErr != nil
				mu.Unlock()
				if stop {
					return
				}
			}
		})
	}
	wg.Wait()
	return conns, firstErr
}

// forEach runs fn on every connection, idleWorkers at a time.
func forEach(conns []*pgconn.PgConn, fn func(*pgconn.PgConn)) {
	ch := make(chan *pgconn.PgConn)
	var wg sync.WaitGroup
	for range idleWorkers {
		wg.Go(func() {
			for pc := range ch {
				fn(pc)
			}
		})
	}
	for _, pc := range conns {
		ch <- pc
	}
	close(ch)
	wg.Wait()
}

func closeAll(conns []*pgconn.PgConn) {
	forEach(conns, func(pc *pgconn.PgConn) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		pc.Close(ctx)
	})
}
