package main

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

const (
	// victimUser and floodUser are two tenants (t01 and t02) through tenantproxy; through
	// PgBouncer they are two users of one database, so of one pool.
	victimUser = "t01"
	floodUser  = "t02"
	// victimClients run pgbench's select-only transaction, as fast as answers come.
	victimClients = 2
	// floodStopGrace is how long a stopped flood may take to finish what it started (a
	// 2-second statement behind a queue of others) before it is cancelled.
	floodStopGrace = 30 * time.Second
)

// floodShape is one way a tenant can flood a proxy.
type floodShape struct {
	Key     string
	Title   string
	Workers int
	Unit    string // what one of its operations is
	worker  func(t target) worker
}

// floodShapes are the floods of the fairness section; "solo" is the victim alone.
var floodShapes = []floodShape{
	{Key: "hold", Title: "(a) 40 clients each holding a transaction open 0.3 s", Workers: 40, Unit: "transactions",
		worker: func(t target) worker {
			return connectionWorker(t, func(ctx context.Context, conn *pgx.Conn) error {
				return pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
					_, err := tx.Exec(ctx, "SELECT pg_sleep(0.3)")
					return err
				})
			})
		}},
	{Key: "short", Title: "(b) 32 clients of SELECT 1, as fast as answers come", Workers: 32, Unit: "statements",
		worker: func(t target) worker {
			return connectionWorker(t, func(ctx context.Context, conn *pgx.Conn) error {
				_, err := conn.Exec(ctx, "SELECT 1")
				return err
			})
		}},
	{Key: "storm", Title: "(c) 16 goroutines connecting, running SELECT 1 and disconnecting, in a loop", Workers: 16, Unit: "connections",
		worker: loginWorker},
	{Key: "long", Title: "(d) 30 clients of SELECT pg_sleep(2)", Workers: 30, Unit: "statements",
		worker: func(t target) worker {
			return connectionWorker(t, func(ctx context.Context, conn *pgx.Conn) error {
				_, err := conn.Exec(ctx, "SELECT pg_sleep(2)")
				return err
			})
		}},
}

// fairnessRun is the victim, alone or under one flood, through one proxy.
type fairnessRun struct {
	Proxy      string       `json:"proxy"`
	Shape      string       `json:"shape"` // "solo" or a floodShape's key
	Repetition int          `json:"repetition"`
	Victim     loadFigures  `json:"victim"`
	Flood      *loadFigures `json:"flood,omitempty"`
	Error      string       `json:"error,omitempty"`
}

// runFairness measures the victim alone and under each flood, through tenantproxy and through
// PgBouncer, --repeat times; the proxies' order rotates on each repetition.
func runFairness(ctx context.Context, e *env, rep *report) error {
	shapes := append([]string{"solo"}, floodKeys()...)
	for i := range e.o.Repeat {
		for _, shape := range shapes {
			for _, p := range rotate([]*proxy{e.tenantproxy, e.pgbouncer}, i) {
				if ctx.Err() != nil {
					return ctx.Err()
				}
				r := e.fairnessRun(ctx, p, shape, i+1)
				logFairness(r)
				rep.Fairness = append(rep.Fairness, r)
			}
		}
	}
	return nil
}

func floodKeys() []string {
	var keys []string
	for _, s := range floodShapes {
		keys = append(keys, s.Key)
	}
	return keys
}

func floodNamed(key string) *floodShape {
	for i := range floodShapes {
		if floodShapes[i].Key == key {
			return &floodShapes[i]
		}
	}
	return nil
}

// fairnessRun starts the flood, waits until each of its clients has started, then runs the
// victim for --fair-duration, and stops the flood. The victim is a pgbench process, not
// goroutines of this one: the flood's goroutines would otherwise queue the victim's behind
// them in this process's own scheduler, which no proxy could help.
func (e *env) fairnessRun(ctx context.Context, p *proxy, shape string, repetition int) fairnessRun {
	r := fairnessRun{Proxy: p.Label, Shape: shape, Repetition: repetition}
	var flood *load
	if s := floodNamed(shape); s != nil {
		flood = startLoad(ctx, s.Workers, s.worker(p.target(floodUser)))
		if !flood.waitReady(ctx) {
			flood.stop(floodStopGrace)
			r.Error = "the flood's clients did not all start within a minute"
			return r
		}
	}
	from := time.Now()
	run, us := e.pgbenchLogged(ctx, p.target(victimUser), victimClients, e.o.FairDuration,
		fmt.Sprintf("fairness-%s-%s-%d", p.Key, shape, repetition), "-S")
	to := time.Now()
	r.Victim = loadFigures{Seconds: e.o.FairDuration.Seconds(), Ops: int(run.Transactions), PerSecond: run.TPS,
		P50MS: percentile(us, 50) / 1000, P99MS: percentile(us, 99) / 1000}
	if !run.ok() {
		r.Victim.Errors, r.Victim.ErrorSamples = max(1, run.Aborted), []string{run.Error}
	}
	if flood != nil {
		flood.stop(floodStopGrace)
		f := flood.figures(from, to)
		r.Flood = &f
	}
	return r
}

func logFairness(r fairnessRun) {
	s := fmt.Sprintf("  fairness, %s, %s, run %d: victim %.0f/s, p50 %.2f ms, p99 %.2f ms, %d errors",
		r.Proxy, r.Shape, r.Repetition, r.Victim.PerSecond, r.Victim.P50MS, r.Victim.P99MS, r.Victim.Errors)
	if r.Flood != nil {
		s += fmt.Sprintf("; flood %.0f/s, %d errors", r.Flood.PerSecond, r.Flood.Errors)
	}
	if r.Error != "" {
		s += "; " + r.Error
	}
	logf("%s", s)
}
