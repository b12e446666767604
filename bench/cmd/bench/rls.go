package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/pgvector/pgvector-go"

	"github.com/tenantproxy/tenantproxy/migrations"
)

const (
	// timedTenant is a large tenant (about 2% of the rows): the RLS-overhead queries run as it.
	timedTenant = "t00"
	// smallTenant holds 1% of the vector rows; t00..t48 share the rest.
	smallTenant = "t49"
	vectorDims  = 384
	warmUpRuns  = 20
)

var top10 = topTen("vector_embeddings_384")

// graphQuery is docs/schema.md's two-hop query "as of" a valid and a transaction time.
const graphQuery = `SELECT e.name
FROM llmspell.relationships r1
JOIN llmspell.relationships r2 ON r2.tenant_id = r1.tenant_id AND r2.source_id = r1.target_id
JOIN llmspell.entities e ON e.tenant_id = r2.tenant_id AND e.id = r2.target_id
WHERE r1.source_id = $1
  AND tstzrange(r1.valid_time_start, r1.valid_time_end) @> $2::timestamptz
  AND tstzrange(r2.valid_time_start, r2.valid_time_end) @> $2::timestamptz
  AND tstzrange(e.valid_time_start, e.valid_time_end) @> $2::timestamptz
  AND tstzrange(r1.transaction_time_start, r1.transaction_time_end) @> $3::timestamptz
  AND tstzrange(r2.transaction_time_start, r2.transaction_time_end) @> $3::timestamptz
  AND tstzrange(e.transaction_time_start, e.transaction_time_end) @> $3::timestamptz`

// loadData fills the vector and graph tables once, for the sections that need them.
func (e *env) loadData(ctx context.Context, rep *report) error {
	if !e.dataLoaded {
		e.dataLoaded = true
		e.dataErr = e.load(ctx, rep)
	}
	return e.dataErr
}

func (e *env) load(ctx context.Context, rep *report) error {
	conn, err := e.connectAs(ctx, "", "")
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	indexDef, err := dropHNSW(ctx, conn, "vector_embeddings_384")
	if err != nil {
		return err
	}
	rows, small := e.o.VectorRows, e.o.VectorRows/100
	steps := []struct {
		name, sql string
		args      []any
	}{
		{fmt.Sprintf("load %d uniformly random vectors into vector_embeddings_384 (%d dimensions; %s holds %d, t00..t48 the rest)", rows, vectorDims, smallTenant, small),
			`INSERT INTO llmspell.vector_embeddings_384 (tenant_id, embedding)
			SELECT ` + tenantOfRow + `,
			       (SELECT array_agg(random() * 2 - 1) FROM generate_series(1, 384) WHERE g > 0)::vector
			FROM generate_series(1, $1) g`, []any{rows, small}},
		{"build the HNSW index (" + indexDef + ")", indexDef, nil},
		{fmt.Sprintf("load the graph (%d entities and %d relationships per tenant, 50 tenants)", e.o.GraphEntities, 3*e.o.GraphEntities),
			`INSERT INTO llmspell.entities (tenant_id, entity_type, name, valid_time_start)
			SELECT t, (ARRAY['person', 'organization', 'document'])[1 + g % 3], t || '-e' || lpad(g::text, 8, '0'), now() - interval '30 days'
			FROM unnest($1::text[]) t, generate_series(0, $2 - 1) g`, []any{tenants, e.o.GraphEntities}},
		// Three edges from each entity to others of its tenant; a third of the first edges
		// stopped holding yesterday, so the "as of" predicates have rows to reject.
		{"load the graph's relationships",
			`WITH e AS (
				SELECT tenant_id, id, row_number() OVER (PARTITION BY tenant_id ORDER BY name) - 1 AS n
				FROM llmspell.entities)
			INSERT INTO llmspell.relationships (tenant_id, source_id, target_id, relationship_type, valid_time_start, valid_time_end)
			SELECT s.tenant_id, s.id, t.id, 'relates_to', now() - interval '30 days',
			       CASE WHEN k = 0 AND s.n % 3 = 0 THEN now() - interval '1 day' ELSE 'infinity' END
			FROM e s CROSS JOIN generate_series(0, 2) k
			JOIN e t ON t.tenant_id = s.tenant_id AND t.n = (s.n * 7 + k * 131 + 1) % $1`, []any{e.o.GraphEntities}},
		{"ANALYZE", "ANALYZE llmspell.vector_embeddings_384, llmspell.entities, llmspell.relationships", nil},
	}
	for _, s := range steps {
		if err := timedExec(ctx, conn, rep, s.name, s.sql, s.args...); err != nil {
			return err
		}
	}
	return nil
}

// tenantOfRow spreads rows g = 1..$1 over the tenants: the first $2 to the small tenant, the
// rest round-robin over t00..t48. Both vector loads use it, so both have the same layout.
const tenantOfRow = `CASE WHEN g <= $2 THEN '` + smallTenant + `' ELSE 't' || lpad(((g - $2) % 49)::text, 2, '0') END`

// timedExec runs one setup step as the superuser and records its time in the report.
func timedExec(ctx context.Context, conn *pgx.Conn, rep *report, step, sql string, args ...any) error {
	logf("%s", step)
	start := time.Now()
	_, err := conn.Exec(ctx, sql, args...)
	rep.Setup = append(rep.Setup, timing{Step: step, Seconds: time.Since(start).Seconds()})
	if err != nil {
		return fmt.Errorf("%s: %w", step, err)
	}
	return nil
}

// dropHNSW drops table's HNSW index and returns its definition, the one the migration made. A
// bulk load is faster with the index built once afterwards, in one pass, than row by row.
func dropHNSW(ctx context.Context, conn *pgx.Conn, table string) (string, error) {
	index := "llmspell." + table + "_hnsw"
	var def string
	if err := conn.QueryRow(ctx, "SELECT pg_get_indexdef($1::text::regclass)", index).Scan(&def); err != nil {
		return "", fmt.Errorf("reading the HNSW index definition: %w", err)
	}
	_, err := conn.Exec(ctx, "DROP INDEX "+index+"; SET maintenance_work_mem = '1GB'")
	return def, err
}

func randomVector() pgvector.Vector {
	v := make([]float32, vectorDims)
	for i := range v {
		v[i] = rand.Float32()*2 - 1
	}
	return pgvector.NewVector(v)
}

// rlsQuery is one query timed as the app role under row-level security, and as the BYPASSRLS
// role with the tenant spelled out in the query instead.
type rlsQuery struct {
	name   string
	short  string // for the chart
	rls    string
	bypass string
	steer  bool // steer the planner to the HNSW index, as migrations/vector_test.go does
	args   func(i int) []any
}

// planMode is how PostgreSQL's plan cache treats the (pgx-prepared) query, forced alike for
// both roles: left to itself it may keep a generic plan for one role's query and re-plan the
// other's every run, and the comparison would then be of planning, not of row-level security.
type planMode struct {
	name    string
	short   string
	setting string // plan_cache_mode
}

var planModes = []planMode{
	{"generic plan (planned once, as a prepared statement in steady state)", "generic plan", "force_generic_plan"},
	{"custom plan (planned every run, as the simple protocol does)", "custom plan", "force_custom_plan"},
}

// rlsResult is one query's timings, plans and verdict.
type rlsResult struct {
	Query        string  `json:"query"`
	Short        string  `json:"short"`
	PlanMode     string  `json:"plan_mode"`
	Runs         int     `json:"runs"`
	RLSMedianMS  float64 `json:"rls_median_ms"`
	ByMedianMS   float64 `json:"bypass_median_ms"`
	RLSP90MS     float64 `json:"rls_p90_ms"`
	ByP90MS      float64 `json:"bypass_p90_ms"`
	Ratio        float64 `json:"ratio"`
	MeanRows     float64 `json:"mean_rows"`
	DifferentRow int     `json:"runs_with_different_rows"`
	RLSSQL       string  `json:"rls_sql"`
	BypassSQL    string  `json:"bypass_sql"`
	RLSPlan      string  `json:"rls_plan"`
	BypassPlan   string  `json:"bypass_plan"`
	PlansMatch   bool    `json:"plans_match"`
	Steered      bool    `json:"steered"`
}

// runRLS times the vector top-10 and the graph two-hop query with and without row-level
// security, straight to PostgreSQL with pgx.
func runRLS(ctx context.Context, e *env, rep *report) error {
	if err := e.loadData(ctx, rep); err != nil {
		return err
	}
	app, err := e.tenantConn(ctx, timedTenant)
	if err != nil {
		return err
	}
	defer app.Close(ctx)
	bypass, err := e.connectAs(ctx, bypassRole, e.bypassPassword)
	if err != nil {
		return err
	}
	defer bypass.Close(ctx)

	sources, err := graphSources(ctx, e, 100)
	if err != nil {
		return err
	}
	vectors := make([]pgvector.Vector, 100)
	for i := range vectors {
		vectors[i] = randomVector()
	}
	tenantLit := quoteLiteral(timedTenant)
	vectorBypass := strings.Replace(top10, " ORDER BY", " WHERE tenant_id = "+tenantLit+" ORDER BY", 1)
	graphBypass := graphQuery + fmt.Sprintf("\n  AND r1.tenant_id = %s AND r2.tenant_id = %s AND e.tenant_id = %s", tenantLit, tenantLit, tenantLit)
	now := time.Now()
	vectorArgs := func(i int) []any { return []any{vectors[i%len(vectors)]} }
	queries := []rlsQuery{
		{"vector top-10, the planner's choice", "vector, planner's choice", top10, vectorBypass, false, vectorArgs},
		{"vector top-10, HNSW index", "vector, HNSW", top10, vectorBypass, true, vectorArgs},
		{"graph two-hop, bi-temporal", "graph 2-hop", graphQuery, graphBypass, false,
			func(i int) []any { return []any{sources[i%len(sources)], now, now} }},
	}
	for _, q := range queries {
		for _, mode := range planModes {
			r, err := timeQuery(ctx, app, bypass, q, mode, e.o.RLSRuns)
			if err != nil {
				return fmt.Errorf("%s, %s: %w", q.name, mode.short, err)
			}
			logf("  %s, %s: RLS %.3f ms, BYPASSRLS %.3f ms, ratio %.3f, plans match: %v",
				q.name, mode.short, r.RLSMedianMS, r.ByMedianMS, r.Ratio, r.PlansMatch)
			rep.RLS = append(rep.RLS, r)
		}
	}
	return nil
}

// graphSources picks n entities of the timed tenant to start the two hops from.
func graphSources(ctx context.Context, e *env, n int) ([]string, error) {
	conn, err := e.connectAs(ctx, "", "")
	if err != nil {
		return nil, err
	}
	defer conn.Close(ctx)
	rows, err := conn.Query(ctx, "SELECT id::text FROM llmspell.entities WHERE tenant_id = $1 ORDER BY random() LIMIT $2", timedTenant, n)
	if err != nil {
		return nil, err
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err == nil && len(ids) == 0 {
		err = fmt.Errorf("no entities of %s", timedTenant)
	}
	return ids, err
}

func timeQuery(ctx context.Context, app, bypass *pgx.Conn, q rlsQuery, mode planMode, runs int) (rlsResult, error) {
	r := rlsResult{Query: q.name, Short: q.short, PlanMode: mode.name, Runs: runs, RLSSQL: q.rls, BypassSQL: q.bypass, Steered: q.steer}
	for _, c := range []*pgx.Conn{app, bypass} {
		if _, err := c.Exec(ctx, "SET plan_cache_mode = "+mode.setting); err != nil {
			return r, err
		}
		defer c.Exec(context.Background(), "RESET plan_cache_mode")
		if q.steer {
			if err := steerToHNSW(ctx, c, true); err != nil {
				return r, err
			}
			defer steerToHNSW(context.Background(), c, false)
		}
		// Statements prepared in another mode keep the plan they have: start afresh.
		if err := c.DeallocateAll(ctx); err != nil {
			return r, err
		}
	}
	var err error
	if r.RLSPlan, err = explainAsRun(ctx, app, q.rls, q.args(0)); err != nil {
		return r, err
	}
	if r.BypassPlan, err = explainAsRun(ctx, bypass, q.bypass, q.args(0)); err != nil {
		return r, err
	}
	r.PlansMatch = normalizePlan(r.RLSPlan) == normalizePlan(r.BypassPlan)

	var rlsMS, byMS []float64
	rowsSeen := 0
	for i := range warmUpRuns + runs {
		// Alternate which role goes first, so neither always finds the cache the other warmed.
		first, second := app, bypass
		if i%2 == 1 {
			first, second = bypass, app
		}
		t1, rows1, err := timeOnce(ctx, first, sqlFor(q, first == app), q.args(i)...)
		if err != nil {
			return r, err
		}
		t2, rows2, err := timeOnce(ctx, second, sqlFor(q, second == app), q.args(i)...)
		if err != nil {
			return r, err
		}
		if i < warmUpRuns {
			continue
		}
		if first != app {
			t1, t2 = t2, t1
		}
		rlsMS, byMS = append(rlsMS, t1), append(byMS, t2)
		rowsSeen += len(rows1)
		if !slices.Equal(rows1, rows2) {
			r.DifferentRow++
		}
	}
	r.RLSMedianMS, r.ByMedianMS = median(rlsMS), median(byMS)
	r.RLSP90MS, r.ByP90MS = percentile(rlsMS, 90), percentile(byMS, 90)
	r.Ratio = r.RLSMedianMS / r.ByMedianMS
	r.MeanRows = float64(rowsSeen) / float64(runs)
	return r, nil
}

func sqlFor(q rlsQuery, underRLS bool) string {
	if underRLS {
		return q.rls
	}
	return q.bypass
}

// timeOnce runs sql and reads its rows (first column as text, sorted so equal sets compare
// equal), returning the wall time in milliseconds.
func timeOnce(ctx context.Context, conn *pgx.Conn, sql string, args ...any) (float64, []string, error) {
	start := time.Now()
	rows, err := conn.Query(ctx, sql, args...)
	if err != nil {
		return 0, nil, err
	}
	got, err := pgx.CollectRows(rows, pgx.RowTo[string])
	ms := float64(time.Since(start).Microseconds()) / 1000
	slices.Sort(got)
	return ms, got, err
}

func steerToHNSW(ctx context.Context, conn *pgx.Conn, on bool) error {
	sql := "SET enable_seqscan = off; SET enable_sort = off"
	if !on {
		sql = "RESET enable_seqscan; RESET enable_sort"
	}
	_, err := conn.Exec(ctx, sql)
	return err
}

// explain is the plan of sql with args, without costs.
func explain(ctx context.Context, conn *pgx.Conn, sql string, args ...any) (string, error) {
	rows, err := conn.Query(ctx, "EXPLAIN (COSTS OFF) "+sql, args...)
	if err != nil {
		return "", fmt.Errorf("EXPLAIN: %w", err)
	}
	lines, err := pgx.CollectRows(rows, pgx.RowTo[string])
	return vectorLiteral.ReplaceAllString(strings.Join(lines, "\n"), "'[...]'::vector"), err
}

// vectorLiteral is a query vector spelled out in a plan: 384 numbers nobody needs to read.
var vectorLiteral = regexp.MustCompile(`'\[[-0-9.e,]+\]'::vector`)

// explainAsRun shows the plan a prepared statement gets under the session's plan_cache_mode:
// PREPARE, then EXPLAIN EXECUTE with the arguments as literals (PostgreSQL 15 has no EXPLAIN
// (GENERIC_PLAN)).
func explainAsRun(ctx context.Context, conn *pgx.Conn, sql string, args []any) (string, error) {
	if _, err := conn.Exec(ctx, "PREPARE bench_explain AS "+sql); err != nil {
		return "", fmt.Errorf("PREPARE: %w", err)
	}
	defer conn.Exec(context.Background(), "DEALLOCATE bench_explain")
	lits := make([]string, len(args))
	for i, a := range args {
		if t, ok := a.(time.Time); ok {
			a = t.UTC().Format("2006-01-02 15:04:05.999999Z07:00")
		}
		lits[i] = quoteLiteral(fmt.Sprint(a))
	}
	return explain(ctx, conn, "EXECUTE bench_explain("+strings.Join(lits, ", ")+")")
}

// normalizePlan puts the two ways of naming the tenant on the same footing: the policy's
// current_setting(...) and the BYPASSRLS query's literal.
func normalizePlan(plan string) string {
	plan = strings.ReplaceAll(plan, "current_setting('app.current_tenant_id'::text, true)", "<tenant>")
	return strings.ReplaceAll(plan, quoteLiteral(timedTenant)+"::text", "<tenant>")
}

// Clustered vectors go in the 768-dimension table, so the 384 table the RLS-overhead section
// times stays as it was.
const (
	clusteredTable = "vector_embeddings_768"
	clusteredDims  = 768
	// clusterSpread is how far a clustered vector strays from its tenant's centroid, at most,
	// in each dimension (the centroid's components are in [-1, 1]).
	clusterSpread = 0.8
)

// loadClustered fills vector_embeddings_768 with the tenant layout of the 384 table, but with
// each tenant's vectors drawn around a centroid of its own, as a tenant's real embeddings are
// not scattered uniformly among everyone else's. It returns the small tenant's centroid.
func (e *env) loadClustered(ctx context.Context, rep *report) ([]float32, error) {
	conn, err := e.connectAs(ctx, "", "")
	if err != nil {
		return nil, err
	}
	defer conn.Close(ctx)
	indexDef, err := dropHNSW(ctx, conn, clusteredTable)
	if err != nil {
		return nil, err
	}
	centroids := make([]string, len(tenants))
	var small []float32
	for i, t := range tenants {
		c := make([]float32, clusteredDims)
		for d := range c {
			c[d] = rand.Float32()*2 - 1
		}
		centroids[i] = pgvector.NewVector(c).String()
		if t == smallTenant {
			small = c
		}
	}
	rows, n := e.o.VectorRows, e.o.VectorRows/100
	steps := []struct {
		name, sql string
		args      []any
	}{
		{fmt.Sprintf("load %d clustered vectors into %s (%d dimensions, each tenant around its own centroid; %s holds %d, t00..t48 the rest)",
			rows, clusteredTable, clusteredDims, smallTenant, n),
			`INSERT INTO llmspell.` + clusteredTable + ` (tenant_id, embedding)
			SELECT t, ($4::text[])[array_position($3::text[], t)]::vector
			          + (SELECT array_agg((random() * 2 - 1) * $5) FROM generate_series(1, $6) WHERE g > 0)::vector
			FROM generate_series(1, $1) g, LATERAL (SELECT ` + tenantOfRow + `) AS x(t)`,
			[]any{rows, n, tenants, centroids, clusterSpread, clusteredDims}},
		{"build the HNSW index (" + indexDef + ")", indexDef, nil},
		{"ANALYZE " + clusteredTable, "ANALYZE llmspell." + clusteredTable, nil},
	}
	for _, s := range steps {
		if err := timedExec(ctx, conn, rep, s.name, s.sql, s.args...); err != nil {
			return nil, err
		}
	}
	return small, nil
}

// aroundCentroid is a query vector drawn the way loadClustered draws a tenant's rows.
func aroundCentroid(c []float32) pgvector.Vector {
	v := make([]float32, len(c))
	for i := range v {
		v[i] = c[i] + (rand.Float32()*2-1)*clusterSpread
	}
	return pgvector.NewVector(v)
}

// topTen is the tenant's 10 rows of table nearest to $1; row-level security picks the tenant.
func topTen(table string) string {
	return "SELECT id::text FROM llmspell." + table + " ORDER BY embedding <=> $1 LIMIT 10"
}

// recallDataset is one set of vectors the small tenant's recall is measured on.
type recallDataset struct {
	key, name, short string
	table            string
	dims             int
	query            func() pgvector.Vector // a query vector, drawn like the dataset's rows
}

// recallRun is recall@10 and latency of one query path for the small tenant.
type recallRun struct {
	Setting      string  `json:"setting"` // hnsw.iterative_scan
	Steered      bool    `json:"steered"` // to the HNSW index; otherwise the planner's choice
	Recall       float64 `json:"recall"`
	MinRecall    float64 `json:"min_recall"`
	MeanReturned float64 `json:"mean_returned"`
	MedianMS     float64 `json:"median_ms"`
}

type recallResult struct {
	Key         string `json:"key"`
	Dataset     string `json:"dataset"`
	Short       string `json:"short"`
	Table       string `json:"table"`
	Dims        int    `json:"dims"`
	Tenant      string `json:"tenant"`
	TenantRows  int    `json:"tenant_rows"`
	TotalRows   int    `json:"total_rows"`
	Queries     int    `json:"queries"`
	EfSearch    string `json:"ef_search"`
	HNSWPlan    string `json:"hnsw_plan"`
	ExactPlan   string `json:"exact_plan"`
	PlannerPlan string `json:"planner_plan"`
	PlannerPath string `json:"planner_path"` // "HNSW" or which exact scan
	// Runs are the HNSW path with the shipped iterative-scan setting, then with it off, then
	// the planner's choice (with the shipped setting).
	Runs []recallRun `json:"runs"`
}

// runRecall measures the small tenant's recall on uniformly random vectors, the worst case for
// HNSW, then on clustered vectors, closer to what a tenant's real embeddings look like.
func runRecall(ctx context.Context, e *env, rep *report) error {
	if err := e.loadData(ctx, rep); err != nil {
		return err
	}
	uniform := recallDataset{"uniform", "uniform random vectors (worst case for HNSW)", "uniform random, worst case",
		"vector_embeddings_384", vectorDims, randomVector}
	if err := measureRecall(ctx, e, rep, uniform); err != nil {
		return fmt.Errorf("%s: %w", uniform.name, err)
	}
	centroid, err := e.loadClustered(ctx, rep)
	if err != nil {
		return err
	}
	clustered := recallDataset{"clustered", "clustered vectors (each tenant around its own centroid)", "clustered, own centroid",
		clusteredTable, clusteredDims, func() pgvector.Vector { return aroundCentroid(centroid) }}
	if err := measureRecall(ctx, e, rep, clustered); err != nil {
		return fmt.Errorf("%s: %w", clustered.name, err)
	}
	return nil
}

// measureRecall compares the small tenant's top 10 under row-level security with an exact scan:
// through the HNSW index with the iterative-scan setting the migrations ship for the app role,
// then without it, and as the planner chooses.
func measureRecall(ctx context.Context, e *env, rep *report, ds recallDataset) error {
	conns := make([]*pgx.Conn, 3)
	for i := range conns {
		c, err := e.tenantConn(ctx, smallTenant)
		if err != nil {
			return err
		}
		defer c.Close(ctx)
		conns[i] = c
	}
	hnsw, exact, planner := conns[0], conns[1], conns[2]
	if err := steerToHNSW(ctx, hnsw, true); err != nil {
		return err
	}
	if _, err := exact.Exec(ctx, "SET enable_indexscan = off"); err != nil {
		return err
	}
	// Planned afresh for each query, so the plan EXPLAIN shows is the one every query ran with.
	if _, err := planner.Exec(ctx, "SET plan_cache_mode = force_custom_plan"); err != nil {
		return err
	}

	res := recallResult{Key: ds.key, Dataset: ds.name, Short: ds.short, Table: ds.table, Dims: ds.dims,
		Tenant: smallTenant, TotalRows: e.o.VectorRows, Queries: e.o.RecallQueries}
	if err := hnsw.QueryRow(ctx, "SELECT count(*) FROM llmspell."+ds.table).Scan(&res.TenantRows); err != nil {
		return err
	}
	if err := hnsw.QueryRow(ctx, "SHOW hnsw.ef_search").Scan(&res.EfSearch); err != nil {
		return err
	}
	sql, index := topTen(ds.table), ds.table+"_hnsw"
	probe := ds.query()
	var err error
	if res.HNSWPlan, err = explain(ctx, hnsw, sql, probe); err != nil {
		return err
	}
	if !strings.Contains(res.HNSWPlan, index) {
		return fmt.Errorf("the steered query does not use the HNSW index:\n%s", res.HNSWPlan)
	}
	if res.ExactPlan, err = explain(ctx, exact, sql, probe); err != nil {
		return err
	}
	if strings.Contains(res.ExactPlan, "hnsw") {
		return fmt.Errorf("the exact query uses the HNSW index:\n%s", res.ExactPlan)
	}
	if res.PlannerPlan, err = explain(ctx, planner, sql, probe); err != nil {
		return err
	}
	res.PlannerPath = planPath(res.PlannerPlan, index)

	queries := make([]pgvector.Vector, e.o.RecallQueries)
	for i := range queries {
		queries[i] = ds.query()
	}
	var shipped string
	if err := hnsw.QueryRow(ctx, "SHOW hnsw.iterative_scan").Scan(&shipped); err != nil {
		return err
	}
	for _, setting := range []string{shipped, "off"} {
		if _, err := hnsw.Exec(ctx, "SET hnsw.iterative_scan = "+quoteLiteral(setting)); err != nil {
			return err
		}
		// A plan cached under the other setting must not carry over.
		if err := hnsw.DeallocateAll(ctx); err != nil {
			return err
		}
		run, err := recall(ctx, hnsw, exact, sql, queries)
		if err != nil {
			return err
		}
		run.Setting, run.Steered = setting, true
		logf("  %s: recall@10 through HNSW with hnsw.iterative_scan = %s: %.3f (%.1f rows returned on average)",
			ds.short, setting, run.Recall, run.MeanReturned)
		res.Runs = append(res.Runs, run)
	}
	run, err := recall(ctx, planner, exact, sql, queries)
	if err != nil {
		return err
	}
	run.Setting = shipped
	logf("  %s: recall@10 as the planner chooses (%s): %.3f, median %.3f ms", ds.short, res.PlannerPath, run.Recall, run.MedianMS)
	res.Runs = append(res.Runs, run)
	rep.Recall = append(rep.Recall, res)
	return nil
}

// indexScan finds the index a plan scans, in "Index Scan using x" and "Bitmap Index Scan on x".
var indexScan = regexp.MustCompile(`Index (?:Only )?Scan (?:Backward )?(?:using|on) (\w+)`)

// planPath says which way a plan finds the tenant's top 10: through the HNSW index, or exactly,
// by reading all the tenant's rows (through an index on tenant_id, or the whole table).
func planPath(plan, hnswIndex string) string {
	if strings.Contains(plan, hnswIndex) {
		return "HNSW"
	}
	if m := indexScan.FindStringSubmatch(plan); m != nil {
		return "exact scan over the tenant_id index " + m[1]
	}
	return "exact scan of the whole table"
}

// recall runs each query on conn and on exact, and compares the ids conn returns with exact's.
func recall(ctx context.Context, conn, exact *pgx.Conn, sql string, queries []pgvector.Vector) (recallRun, error) {
	run := recallRun{MinRecall: 1}
	var ms []float64
	for _, q := range queries {
		_, want, err := timeOnce(ctx, exact, sql, q)
		if err != nil {
			return run, err
		}
		t, got, err := timeOnce(ctx, conn, sql, q)
		if err != nil {
			return run, err
		}
		ms = append(ms, t)
		found := 0
		for _, id := range got {
			if slices.Contains(want, id) {
				found++
			}
		}
		r := float64(found) / float64(len(want))
		run.Recall += r
		run.MinRecall = min(run.MinRecall, r)
		run.MeanReturned += float64(len(got))
	}
	// Summed, then divided once: no rounding drift above 1.
	run.Recall /= float64(len(queries))
	run.MeanReturned /= float64(len(queries))
	run.MedianMS = median(ms)
	return run, nil
}

// tenantConn is an app-role connection straight to PostgreSQL with the tenant context set the
// way tenantproxy sets it.
func (e *env) tenantConn(ctx context.Context, tenant string) (*pgx.Conn, error) {
	conn, err := e.connectAs(ctx, migrations.AppRole, e.appPassword)
	if err != nil {
		return nil, err
	}
	if _, err := conn.Exec(ctx, "SET app.current_tenant_id = "+quoteLiteral(tenant)); err != nil {
		conn.Close(ctx)
		return nil, err
	}
	return conn, nil
}
