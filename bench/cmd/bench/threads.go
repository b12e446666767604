package main

import (
	"context"
	"fmt"
)

// threadCounts are the tenantproxy threads settings the threads section compares.
var threadCounts = []int{1, 2}

// threadScenarios are the pgbench scenarios it runs: enough clients for a second thread to
// have work.
var threadScenarios = []string{"select-8", "select-64", "prepared-8"}

func threadsKey(n int) string { return fmt.Sprintf("tenantproxy-threads%d", n) }

// runThreads starts tenantproxy with threads = 1 and with threads = 2 beside the run's
// PgBouncer and runs the scenarios against the three, interleaved: what a second core buys.
func runThreads(ctx context.Context, e *env, rep *report) error {
	targets := []target{e.pgbouncer.target(benchUser)}
	for _, n := range threadCounts {
		p, err := e.startTenantproxy(ctx, threadsKey(n), fmt.Sprintf("tenantproxy, threads = %d", n), n)
		if err != nil {
			return err
		}
		defer p.stop()
		targets = append(targets, p.target(benchUser))
	}
	var scs []scenario
	for _, key := range threadScenarios {
		scs = append(scs, scenarioNamed(key))
	}
	res, err := e.runScenarios(ctx, "threads-", scs, targets)
	rep.Threads = res
	return err
}

func (r *report) writeThreads(m *markdown) {
	if len(r.Threads) == 0 {
		return
	}
	t1, t2 := threadsKey(1), threadsKey(2)
	m.p("## Threads: what a second core buys\n")
	m.p("tenantproxy started twice more, with `threads = 1` and `threads = 2` (GOMAXPROCS), beside the run's PgBouncer,")
	m.p("and the three run the same pgbench scenarios interleaved. Median TPS and proxy CPU per transaction (µs) over")
	m.p("the repetitions; PgBouncer runs one thread.\n")
	var rows [][]string
	c := chart{Title: "tenantproxy threads = 1 and 2 against PgBouncer", Unit: "median TPS", Series: []string{"PgBouncer", "threads = 1", "threads = 2"}, Values: make([][]float64, 3)}
	for _, s := range r.Threads {
		pgb, one, two := medianTPS(s.Runs["pgbouncer"]), medianTPS(s.Runs[t1]), medianTPS(s.Runs[t2])
		pgbCPU, oneCPU, twoCPU := medianCPU(s.Runs["pgbouncer"]), medianCPU(s.Runs[t1]), medianCPU(s.Runs[t2])
		rows = append(rows, []string{s.Title,
			num(pgb, "%.0f") + " / " + num(pgbCPU, "%.1f"),
			num(one, "%.0f") + " / " + num(oneCPU, "%.1f"),
			num(two, "%.0f") + " / " + num(twoCPU, "%.1f"),
			num(one/pgb, "%.2fx") + " / " + num(oneCPU/pgbCPU, "%.2fx"),
			num(two/pgb, "%.2fx") + " / " + num(twoCPU/pgbCPU, "%.2fx"),
			num(two/one, "%.2fx") + " / " + num(twoCPU/oneCPU, "%.2fx")})
		c.Groups = append(c.Groups, shortTitle[s.Key])
		for i, v := range []float64{pgb, one, two} {
			c.Values[i] = append(c.Values[i], v)
		}
	}
	m.table([]string{"scenario", "PgBouncer tps / CPU", "threads = 1 tps / CPU", "threads = 2 tps / CPU",
		"threads = 1 / PgBouncer", "threads = 2 / PgBouncer", "threads = 2 / threads = 1"}, rows)
	m.chart("threads.svg", c)
	keys := []string{"pgbouncer", t1, t2}
	for _, s := range r.Threads {
		m.p("### %s, threads\n", s.Title)
		m.p("`%s` (raw output in raw/threads-%s-*.txt)\n", s.Command, s.Key)
		m.table(append([]string{"run"}, labels(keys)...), runRows(s.Runs, keys))
		writeFailedRuns(m, s.Runs, keys)
	}
}
