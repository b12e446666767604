// Command bench measures tenantproxy on one machine, in one run, against PostgreSQL itself and
// against PgBouncer, and writes a Markdown report with SVG charts under results/<UTC timestamp>/.
//
//	go run ./bench/cmd/bench                       # the full run (about 45 minutes on 2 cores)
//	go run ./bench/cmd/bench --duration 2s --repeat 1 --idle-clients 1000 --fair-duration 2s \
//		--memory-startup-clients 4 --memory-settle 1s --vector-rows 5000   # a smoke run
//
// It starts everything it measures (a private PostgreSQL cluster unless --database-url names a
// server, tenantproxy built from this checkout, PgBouncer) and stops all of it at the end, also
// on failure or Ctrl-C. Run it on a quiet machine: every figure is whatever this run measures.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// sections are the parts of a run, in the order they run; --only picks some.
var sections = []string{"pgbench", "latency", "threads", "idle", "fairness", "memory", "rls", "recall", "isolation"}

type options struct {
	DatabaseURL       string
	Results           string
	PGPort            int
	Duration          time.Duration
	Repeat            int
	Scale             int
	IdleClients       []int
	FairDuration      time.Duration
	StartupClients    int
	MemorySettle      time.Duration
	VectorRows        int
	GraphEntities     int
	RLSRuns           int
	RecallQueries     int
	IsolationClients  int
	IsolationDuration time.Duration
	Only              []string
	KeepData          bool
}

func (o options) has(section string) bool { return slices.Contains(o.Only, section) }

// needsPgbench says whether a section chosen runs pgbench's query, on pgbench's tables.
func (o options) needsPgbench() bool {
	return o.has("pgbench") || o.has("latency") || o.has("threads") || o.has("fairness")
}

func parseFlags(args []string) (options, error) {
	var o options
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), `bench: measure tenantproxy against PostgreSQL and PgBouncer on this machine.

Usage: go run ./bench/cmd/bench [flags]

Writes report.md, results.json and SVG charts to <results>/<UTC timestamp>/ and prints the path.
Needs: pgbench (postgresql-client), PgBouncer %s (built once from Debian 13's source package
into ~/.cache/tenantproxy-bench when missing, which needs root and apt-get; PgBouncer then runs as
the postgres user), PostgreSQL with pgvector (the run calls scripts/pgenv install, which installs
what is missing), and Go to build tenantproxy.
By default it runs its own PostgreSQL cluster in that folder (max_connections 400) and removes
its data at the end. With --database-url it creates a database of its own on that server, and
drops it at the end; it also sets the password of the cluster-wide role tenantproxy_app and
creates (then drops) the role tenantproxy_bench_bypass, so use a server nothing else needs.

Sections (--only): %s.

Flags:
`, pgbouncerVersion, strings.Join(sections, ", "))
		fs.PrintDefaults()
	}
	fs.StringVar(&o.DatabaseURL, "database-url", "", "superuser URL of a PostgreSQL server with pgvector (default: a private cluster)")
	fs.StringVar(&o.Results, "results", "", "folder for the results (default: results/ in the repository)")
	fs.IntVar(&o.PGPort, "pg-port", 0, "port of the private cluster (default: a free port)")
	fs.DurationVar(&o.Duration, "duration", 10*time.Second, "length of each pgbench run (whole seconds)")
	fs.IntVar(&o.Repeat, "repeat", 3, "repetitions of each pgbench, latency, threads and fairness run, interleaved across targets")
	fs.IntVar(&o.Scale, "scale", 10, "pgbench scale factor (pgbench -i -s)")
	idle := fs.String("idle-clients", "5000,10000", "idle authenticated clients held against a fresh instance of each proxy, comma-separated counts")
	fs.DurationVar(&o.FairDuration, "fair-duration", 10*time.Second, "how long the victim tenant is measured, alone and under each flood (fairness section)")
	fs.IntVar(&o.StartupClients, "memory-startup-clients", 20, "connections that each send a 30 MB startup packet and stall (memory section)")
	fs.DurationVar(&o.MemorySettle, "memory-settle", 5*time.Second, "how long after a memory case's client leaves the proxy's RSS is read again")
	fs.IntVar(&o.VectorRows, "vector-rows", 50000, "rows loaded across 50 tenants into vector_embeddings_384 (uniform random) and, for recall, vector_embeddings_768 (clustered)")
	fs.IntVar(&o.GraphEntities, "graph-entities", 1000, "entities per tenant in the graph (3 relationships each), 50 tenants")
	fs.IntVar(&o.RLSRuns, "rls-runs", 500, "timed runs of each RLS-overhead query, per role")
	fs.IntVar(&o.RecallQueries, "recall-queries", 50, "random query vectors for the small-tenant recall")
	fs.IntVar(&o.IsolationClients, "isolation-clients", 200, "concurrent clients in the isolation run (over 50 tenants)")
	fs.DurationVar(&o.IsolationDuration, "isolation-duration", 5*time.Second, "length of the isolation run")
	only := fs.String("only", strings.Join(sections, ","), "sections to run, comma-separated")
	fs.BoolVar(&o.KeepData, "keep-data", false, "keep the private cluster's data folder")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected argument %q (see -h)", fs.Arg(0))
	}
	for _, s := range strings.Split(*idle, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < 1 {
			return o, fmt.Errorf("--idle-clients: %q is not a positive count", s)
		}
		o.IdleClients = append(o.IdleClients, n)
	}
	for _, s := range strings.Split(*only, ",") {
		s = strings.TrimSpace(s)
		if !slices.Contains(sections, s) {
			return o, fmt.Errorf("--only: unknown section %q (sections: %s)", s, strings.Join(sections, ", "))
		}
		o.Only = append(o.Only, s)
	}
	switch {
	case o.Duration < time.Second || o.Duration%time.Second != 0:
		return o, fmt.Errorf("--duration must be whole seconds, at least 1s")
	case o.Repeat < 1:
		return o, fmt.Errorf("--repeat must be at least 1")
	case o.Scale < 1:
		return o, fmt.Errorf("--scale must be at least 1")
	case o.FairDuration < time.Second || o.FairDuration%time.Second != 0:
		return o, fmt.Errorf("--fair-duration must be whole seconds, at least 1s")
	case o.StartupClients < 1 || o.MemorySettle < 0:
		return o, fmt.Errorf("--memory-startup-clients must be at least 1 and --memory-settle at least 0")
	case o.VectorRows < 1000:
		return o, fmt.Errorf("--vector-rows must be at least 1000 (the small tenant holds 1%% of them)")
	case o.GraphEntities < 10:
		return o, fmt.Errorf("--graph-entities must be at least 10")
	case o.RLSRuns < 10 || o.RecallQueries < 1:
		return o, fmt.Errorf("--rls-runs must be at least 10 and --recall-queries at least 1")
	case o.IsolationClients < 1 || o.IsolationDuration < time.Second:
		return o, fmt.Errorf("--isolation-clients must be at least 1 and --isolation-duration at least 1s")
	}
	return o, nil
}

func main() {
	o, err := parseFlags(os.Args[1:])
	if errors.Is(err, flag.ErrHelp) {
		os.Exit(2)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "bench: %v\n", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	dir, err := run(ctx, o)
	if dir != "" {
		fmt.Printf("bench: report written to %s\n", filepath.Join(dir, "report.md"))
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "bench: %v\n", err)
		os.Exit(1)
	}
}

// logf tells the person waiting what the run is doing.
func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "%s  %s\n", time.Now().Format("15:04:05"), fmt.Sprintf(format, args...))
}

// cleanups run in reverse order of registration, once, whatever happened before.
type cleanups struct{ fns []func() }

func (c *cleanups) add(fn func()) { c.fns = append(c.fns, fn) }

func (c *cleanups) run() {
	for i := len(c.fns) - 1; i >= 0; i-- {
		c.fns[i]()
	}
	c.fns = nil
}

// run does the whole benchmark and returns the folder it wrote to. Each section that fails is
// reported as failed and the others still run; the error then says which failed.
func run(ctx context.Context, o options) (string, error) {
	repo, err := findRepo()
	if err != nil {
		return "", err
	}
	if o.Results == "" {
		o.Results = filepath.Join(repo, "results")
	}
	out := filepath.Join(o.Results, time.Now().UTC().Format("20060102T150405Z"))
	if err := os.MkdirAll(out, 0o755); err != nil {
		return "", err
	}
	rep := newReport(o)
	var cl cleanups
	defer cl.run()

	e, err := setUp(ctx, o, repo, out, &cl, rep)
	if err != nil {
		rep.fail("setup", err)
		cl.run()
		return out, errors.Join(err, rep.write(out))
	}
	steps := []struct {
		section string
		run     func(context.Context) error
	}{
		{"pgbench", func(ctx context.Context) error { return runPgbench(ctx, e, rep) }},
		{"latency", func(ctx context.Context) error { return runLatency(ctx, e, rep) }},
		{"threads", func(ctx context.Context) error { return runThreads(ctx, e, rep) }},
		{"idle", func(ctx context.Context) error { return runIdle(ctx, e, rep) }},
		{"fairness", func(ctx context.Context) error { return runFairness(ctx, e, rep) }},
		{"memory", func(ctx context.Context) error { return runMemory(ctx, e, rep) }},
		{"rls", func(ctx context.Context) error { return runRLS(ctx, e, rep) }},
		{"recall", func(ctx context.Context) error { return runRecall(ctx, e, rep) }},
		{"isolation", func(ctx context.Context) error { return runIsolation(ctx, e, rep) }},
	}
	for _, s := range steps {
		if !o.has(s.section) {
			continue
		}
		if ctx.Err() != nil {
			rep.fail(s.section, errors.New("not run: interrupted"))
			continue
		}
		logf("section %s", s.section)
		if err := s.run(ctx); err != nil {
			if ctx.Err() != nil {
				err = errors.New("interrupted")
			}
			logf("section %s failed: %v", s.section, err)
			rep.fail(s.section, err)
		}
	}
	cl.run()
	rep.Finished = time.Now().UTC()
	if err := rep.write(out); err != nil {
		return out, err
	}
	if ctx.Err() != nil {
		return out, errors.New("interrupted: the report holds what was measured before")
	}
	if len(rep.Failures) > 0 {
		return out, fmt.Errorf("%d section(s) failed: see the report", len(rep.Failures))
	}
	return out, nil
}
