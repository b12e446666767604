package main

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"time"
)

type keyValue struct {
	Key   string `json:"key"`
	Value string `json:"value"`
}

type timing struct {
	Step    string  `json:"step"`
	Seconds float64 `json:"seconds"`
}

type failure struct {
	Section string `json:"section"`
	Error   string `json:"error"`
}

type scenarioResult struct {
	Key     string                  `json:"key"`
	Title   string                  `json:"title"`
	Command string                  `json:"command"`
	Note    string                  `json:"note,omitempty"`
	Runs    map[string][]pgbenchRun `json:"runs"` // by target, in repetition order
}

type tenantResult struct {
	Runs     map[string][]pgbenchRun `json:"runs"`
	Switches map[string][]float64    `json:"switches_per_second"`
}

type latencyRun struct {
	TPS     float64 `json:"tps"`
	Samples int     `json:"samples"`
	P50     float64 `json:"p50_us"`
	P99     float64 `json:"p99_us"`
	Error   string  `json:"error,omitempty"`
}

type latencyResult struct {
	Runs map[string][]latencyRun `json:"runs"`
}

// report is everything a run measured; write turns it into report.md, results.json and charts.
type report struct {
	Started   time.Time        `json:"started"`
	Finished  time.Time        `json:"finished"`
	Command   string           `json:"command"`
	Options   options          `json:"options"`
	Machine   []keyValue       `json:"machine"`
	Setup     []timing         `json:"setup"`
	Check     string           `json:"check"`
	Notes     []string         `json:"notes"`
	Pgbench   []scenarioResult `json:"pgbench"`
	Tenants   *tenantResult    `json:"tenants,omitempty"`
	Latency   *latencyResult   `json:"latency,omitempty"`
	Idle      []idleResult     `json:"idle"`
	RLS       []rlsResult      `json:"rls"`
	Recall    *recallResult    `json:"recall,omitempty"`
	Isolation *isolationResult `json:"isolation,omitempty"`
	Failures  []failure        `json:"failures"`
}

func newReport(o options) *report {
	return &report{Started: time.Now().UTC(), Command: commandLine(), Options: o}
}

func (r *report) fail(section string, err error) {
	r.Failures = append(r.Failures, failure{section, err.Error()})
}

func (r *report) note(s string) { r.Notes = append(r.Notes, s) }

// commandLine is how this run was started, quoted for a shell.
func commandLine() string {
	parts := []string{os.Args[0]}
	if strings.Contains(os.Args[0], "go-build") {
		parts[0] = "go run ./bench/cmd/bench"
	}
	for _, a := range os.Args[1:] {
		if strings.ContainsAny(a, " '\"$\\*?") {
			a = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
		}
		parts = append(parts, a)
	}
	return strings.Join(parts, " ")
}

// targetOrder and targetLabel name the three pgbench targets in tables and charts.
var targetOrder = []string{"direct", "pgbouncer", "tenantproxy"}

var targetLabel = map[string]string{"direct": "direct", "pgbouncer": "PgBouncer", "tenantproxy": "tenantproxy"}

// shortTitle labels a scenario in a chart.
var shortTitle = map[string]string{
	"select-1": "-S, 1 client", "select-8": "-S, 8 clients", "select-64": "-S, 64 clients",
	"prepared-8": "-S -M prepared, 8 clients", "connect-8": "-C -S, 8 clients",
}

// medianTPS is the median over the runs that succeeded; NaN when none did.
func medianTPS(runs []pgbenchRun) float64 {
	var xs []float64
	for _, r := range runs {
		if r.ok() {
			xs = append(xs, r.TPS)
		}
	}
	if len(xs) == 0 {
		return math.NaN()
	}
	return median(xs)
}

func (r *report) scenario(key string) *scenarioResult {
	for i := range r.Pgbench {
		if r.Pgbench[i].Key == key {
			return &r.Pgbench[i]
		}
	}
	return nil
}

func (r *report) idleOf(server string) *idleResult {
	for i := range r.Idle {
		if r.Idle[i].Server == server {
			return &r.Idle[i]
		}
	}
	return nil
}

// latencyMedians are the medians over repetitions of p50 and p99 for target.
func (r *report) latencyMedians(target string) (p50, p99 float64) {
	var a, b []float64
	for _, run := range r.Latency.Runs[target] {
		if run.Error == "" {
			a, b = append(a, run.P50), append(b, run.P99)
		}
	}
	if len(a) == 0 {
		return math.NaN(), math.NaN()
	}
	return median(a), median(b)
}

func num(v float64, format string) string {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return "n/a"
	}
	return fmt.Sprintf(format, v)
}

func verdict(ok bool) string {
	if ok {
		return "**met**"
	}
	return "**not met**"
}

const notMeasured = "not measured"

// targetRow is one line of the design's table of targets, with what this run measured.
type targetRow struct{ what, target, measured, verdict string }

func (r *report) targets() []targetRow {
	return []targetRow{r.throughputTarget(), r.latencyTarget(), r.connectTarget(), r.idleTarget(), r.rlsTarget(), r.recallTarget(), r.isolationTarget()}
}

func (r *report) throughputTarget() targetRow {
	row := targetRow{"pgbench select-only, 8 clients, transaction mode with tenant context", ">= 1.0x PgBouncer and >= 0.8x direct", notMeasured, notMeasured}
	if s := r.scenario("select-8"); s != nil {
		tp, pgb, dir := medianTPS(s.Runs["tenantproxy"]), medianTPS(s.Runs["pgbouncer"]), medianTPS(s.Runs["direct"])
		if !math.IsNaN(tp + pgb + dir) {
			row.measured = fmt.Sprintf("%.2fx PgBouncer, %.2fx direct (PgBouncer: %.2fx direct)", tp/pgb, tp/dir, pgb/dir)
			row.verdict = verdict(tp/pgb >= 1.0 && tp/dir >= 0.8)
		}
	}
	return row
}

func (r *report) latencyTarget() targetRow {
	row := targetRow{"added latency per simple query, 1 client (p50 - direct p50)", "<= 30 us p50", notMeasured, notMeasured}
	if r.Latency != nil {
		dir, _ := r.latencyMedians("direct")
		tp, _ := r.latencyMedians("tenantproxy")
		pgb, _ := r.latencyMedians("pgbouncer")
		if !math.IsNaN(tp + dir) {
			row.measured = fmt.Sprintf("tenantproxy +%s us (PgBouncer +%s us)", num(tp-dir, "%.0f"), num(pgb-dir, "%.0f"))
			row.verdict = verdict(tp-dir <= 30)
		}
	}
	return row
}

func (r *report) connectTarget() targetRow {
	row := targetRow{"new connection per transaction (pgbench -C -S, 8 clients)", ">= PgBouncer", notMeasured, notMeasured}
	if s := r.scenario("connect-8"); s != nil {
		tp, pgb, dir := medianTPS(s.Runs["tenantproxy"]), medianTPS(s.Runs["pgbouncer"]), medianTPS(s.Runs["direct"])
		if !math.IsNaN(tp + pgb) {
			row.measured = fmt.Sprintf("%.2fx PgBouncer, %sx direct (PgBouncer: %sx direct)", tp/pgb, num(tp/dir, "%.2f"), num(pgb/dir, "%.2f"))
			row.verdict = verdict(tp/pgb >= 1.0)
		}
	}
	return row
}

func (r *report) idleTarget() targetRow {
	row := targetRow{"idle clients held by tenantproxy", "10,000 idle clients in < 150 MB RSS", notMeasured, notMeasured}
	if t := r.idleOf("tenantproxy"); t != nil && t.RSSKB > 0 {
		mb := float64(t.RSSKB) / 1024
		row.measured = fmt.Sprintf("%d clients: %.1f MB RSS (%.1f KB per client)", t.Connected, mb, perClientKB(t))
		switch {
		case t.Error != "":
			row.verdict = verdict(false)
		case t.Connected < 10000:
			row.verdict = fmt.Sprintf("%s (run with --idle-clients 10000)", notMeasured)
		default:
			row.verdict = verdict(mb < 150)
		}
	}
	return row
}

func perClientKB(t *idleResult) float64 {
	if t.Connected == 0 {
		return math.NaN()
	}
	return float64(t.RSSKB-t.BaseRSSKB) / float64(t.Connected)
}

func (r *report) rlsTarget() targetRow {
	row := targetRow{"RLS overhead, vector top-10 and graph 2-hop, RLS role vs BYPASSRLS role", "< 5%, same plan", notMeasured, notMeasured}
	if len(r.RLS) == 0 {
		return row
	}
	var parts []string
	ok := true
	for _, q := range r.RLS {
		s := fmt.Sprintf("%s, %s: %+.1f%%", q.Short, shortMode(q.PlanMode), (q.Ratio-1)*100)
		if !q.PlansMatch {
			s += " (plans differ)"
			ok = false
		}
		parts = append(parts, s)
		ok = ok && q.Ratio < 1.05
	}
	row.measured = strings.Join(parts, "; ")
	row.verdict = verdict(ok)
	return row
}

func (r *report) recallTarget() targetRow {
	row := targetRow{"small-tenant vector recall@10 under RLS (tenant holds 1% of rows)", ">= 0.95", notMeasured, notMeasured}
	if r.Recall != nil && len(r.Recall.Runs) > 0 {
		shipped := r.Recall.Runs[0]
		row.measured = fmt.Sprintf("%.3f with hnsw.iterative_scan = %s", shipped.Recall, shipped.Setting)
		if len(r.Recall.Runs) > 1 {
			row.measured += fmt.Sprintf("; %.3f with it off", r.Recall.Runs[1].Recall)
		}
		row.verdict = verdict(shipped.Recall >= 0.95)
	}
	return row
}

func (r *report) isolationTarget() targetRow {
	row := targetRow{"tenant isolation under concurrent clients through tenantproxy", "200 clients of 50 tenants: zero rows seen across tenants, zero errors", notMeasured, notMeasured}
	if i := r.Isolation; i != nil {
		row.measured = fmt.Sprintf("%d clients of %d tenants: %d rows seen across tenants, %d errors, %d of %d rows stored, %d under the wrong tenant",
			i.Clients, i.Tenants, i.CrossTenantRows, i.Errors, i.Stored, i.Inserts, i.Misplaced)
		row.verdict = verdict(i.ok())
		if i.Clients < 200 || i.Tenants < 50 {
			row.verdict += " (fewer clients than the target: --isolation-clients 200)"
		}
	}
	return row
}

// write puts report.md, results.json and the charts in dir.
func (r *report) write(dir string) error {
	if r.Finished.IsZero() {
		r.Finished = time.Now().UTC()
	}
	data, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "results.json"), data, 0o644); err != nil {
		return err
	}
	md := &markdown{dir: dir}
	r.writeMarkdown(md)
	if md.err != nil {
		return md.err
	}
	return os.WriteFile(filepath.Join(dir, "report.md"), []byte(md.b.String()), 0o644)
}

// markdown collects the report's text and writes its charts beside it.
type markdown struct {
	b   strings.Builder
	dir string
	err error
}

func (m *markdown) p(format string, args ...any) { fmt.Fprintf(&m.b, format+"\n", args...) }

func (m *markdown) table(header []string, rows [][]string) {
	m.p("| %s |", strings.Join(header, " | "))
	m.p("|%s", strings.Repeat(" --- |", len(header)))
	for _, row := range rows {
		m.p("| %s |", strings.Join(row, " | "))
	}
	m.p("")
}

func (m *markdown) chart(file string, c chart) {
	if err := os.WriteFile(filepath.Join(m.dir, file), []byte(c.svg()), 0o644); err != nil && m.err == nil {
		m.err = err
	}
	m.p("![%s](%s)\n", c.Title, file)
}

func (m *markdown) code(text string) {
	m.p("```\n%s\n```\n", strings.TrimRight(text, "\n"))
}

func (r *report) writeMarkdown(m *markdown) {
	m.p("# tenantproxy benchmark, %s\n", r.Started.Format("2006-01-02 15:04 UTC"))
	m.p("Command: `%s`  ", r.Command)
	m.p("Started %s, finished %s (%s).\n", r.Started.Format(time.TimeOnly), r.Finished.Format(time.TimeOnly), r.Finished.Sub(r.Started).Round(time.Second))
	m.p("Every figure below is what this run measured on this machine. PgBouncer does no tenant work;")
	m.p("tenantproxy sets the tenant context on every backend it hands out. \"direct\" is pgbench")
	m.p("connected straight to PostgreSQL as `tenantproxy_app` (trust authentication over loopback);")
	m.p("both proxies authenticate their clients with the same SCRAM-SHA-256 verifier and reach")
	m.p("PostgreSQL as `tenantproxy_app` over TCP on %s, in transaction mode with %d backends.\n", hostOf(r), poolSize)

	if len(r.Failures) > 0 {
		m.p("## Failures\n")
		var rows [][]string
		for _, f := range r.Failures {
			rows = append(rows, []string{f.Section, cell(f.Error)})
		}
		m.table([]string{"section", "error"}, rows)
	}

	m.p("## Targets (design section 4)\n")
	var rows [][]string
	for _, t := range r.targets() {
		rows = append(rows, []string{t.what, t.target, t.measured, t.verdict})
	}
	m.table([]string{"what", "target", "measured", "verdict"}, rows)

	m.p("## Machine and software\n")
	rows = nil
	for _, kv := range r.Machine {
		rows = append(rows, []string{kv.Key, cell(kv.Value)})
	}
	m.table([]string{"", ""}, rows)

	r.writeSetup(m)
	r.writePgbench(m)
	r.writeTenants(m)
	r.writeLatency(m)
	r.writeIdle(m)
	r.writeRLS(m)
	r.writeRecall(m)
	r.writeIsolation(m)
}

func hostOf(r *report) string {
	if r.Options.DatabaseURL == "" {
		return "127.0.0.1 (a private cluster this run started)"
	}
	return "the server --database-url names"
}

// cell makes text safe inside a Markdown table cell.
func cell(s string) string {
	return strings.NewReplacer("|", `\|`, "\n", " ").Replace(s)
}

func (r *report) writeSetup(m *markdown) {
	m.p("## Setup\n")
	o := r.Options
	m.p("Settings: pgbench runs of %s, %d repetition(s) interleaved across targets (their order rotates each repetition), scale %d;",
		o.Duration, o.Repeat, o.Scale)
	m.p("%d idle clients; %d vectors; %d graph entities per tenant; %d timed runs per RLS query; %d recall queries; %d isolation clients for %s.\n",
		o.IdleClients, o.VectorRows, o.GraphEntities, o.RLSRuns, o.RecallQueries, o.IsolationClients, o.IsolationDuration)
	var rows [][]string
	for _, t := range r.Setup {
		rows = append(rows, []string{cell(t.Step), fmt.Sprintf("%.1f s", t.Seconds)})
	}
	m.table([]string{"step", "time"}, rows)
	if r.Check != "" {
		m.p("`tenantproxy check` as the app role: `%s` (tenantproxy runs the same check before serving, without `--insecure-skip-check`).\n", r.Check)
	}
	for _, n := range r.Notes {
		m.p("- %s", n)
	}
	m.p("")
}

func (r *report) writePgbench(m *markdown) {
	if len(r.Pgbench) == 0 {
		return
	}
	m.p("## Throughput (pgbench)\n")
	m.p("Median TPS over the repetitions that succeeded, and the ratios of the medians.\n")
	var rows [][]string
	c := chart{Title: "pgbench median TPS", Unit: "transactions per second", Series: []string{"direct", "PgBouncer", "tenantproxy"}, Values: make([][]float64, 3)}
	rel := chart{Title: "pgbench median TPS relative to direct", Unit: "x direct", Series: []string{"PgBouncer", "tenantproxy"}, Values: make([][]float64, 2), Ref: 1, RefLabel: "direct"}
	for _, s := range r.Pgbench {
		med := map[string]float64{}
		for _, t := range targetOrder {
			med[t] = medianTPS(s.Runs[t])
		}
		rows = append(rows, []string{s.Title, num(med["direct"], "%.0f"), num(med["pgbouncer"], "%.0f"), num(med["tenantproxy"], "%.0f"),
			num(med["tenantproxy"]/med["pgbouncer"], "%.2fx"), num(med["tenantproxy"]/med["direct"], "%.2fx"), num(med["pgbouncer"]/med["direct"], "%.2fx")})
		c.Groups = append(c.Groups, shortTitle[s.Key])
		rel.Groups = append(rel.Groups, shortTitle[s.Key])
		for i, t := range targetOrder {
			c.Values[i] = append(c.Values[i], med[t])
		}
		rel.Values[0] = append(rel.Values[0], med["pgbouncer"]/med["direct"])
		rel.Values[1] = append(rel.Values[1], med["tenantproxy"]/med["direct"])
	}
	m.table([]string{"scenario", "direct", "PgBouncer", "tenantproxy", "tenantproxy / PgBouncer", "tenantproxy / direct", "PgBouncer / direct"}, rows)
	m.chart("pgbench-tps.svg", c)
	m.chart("pgbench-relative.svg", rel)

	for _, s := range r.Pgbench {
		m.p("### %s\n", s.Title)
		m.p("`%s` (each target's own -h/-p/-U/database; raw output in raw/%s-*.txt)\n", s.Command, s.Key)
		if s.Note != "" {
			m.p("%s\n", s.Note)
		}
		m.table(append([]string{"run"}, labels(targetOrder)...), runRows(s.Runs, targetOrder))
		for _, t := range targetOrder {
			for i, run := range s.Runs[t] {
				if !run.ok() {
					m.p("- %s, run %d failed: %s", targetLabel[t], i+1, cell(run.Error))
				}
			}
		}
		m.p("")
	}
}

func labels(keys []string) []string {
	var out []string
	for _, k := range keys {
		if l, ok := targetLabel[k]; ok {
			out = append(out, l)
		} else {
			out = append(out, k)
		}
	}
	return out
}

// runRows is one row per repetition and a median row: TPS (and mean latency) per column.
func runRows(runs map[string][]pgbenchRun, columns []string) [][]string {
	n := 0
	for _, c := range columns {
		n = max(n, len(runs[c]))
	}
	var rows [][]string
	for i := range n {
		row := []string{fmt.Sprint(i + 1)}
		for _, c := range columns {
			switch {
			case i >= len(runs[c]):
				row = append(row, "")
			case !runs[c][i].ok():
				row = append(row, "failed")
			default:
				row = append(row, fmt.Sprintf("%.0f tps (%.3f ms)", runs[c][i].TPS, runs[c][i].LatencyMS))
			}
		}
		rows = append(rows, row)
	}
	med := []string{"**median**"}
	for _, c := range columns {
		med = append(med, "**"+num(medianTPS(runs[c]), "%.0f tps")+"**")
	}
	return append(rows, med)
}

func (r *report) writeTenants(m *markdown) {
	t := r.Tenants
	if t == nil {
		return
	}
	variants := []string{"1 tenant", "4 tenants"}
	m.p("## Tenant switches\n")
	m.p("8 clients through tenantproxy only, as four pgbench processes of 2 clients (`pgbench -n -S -c 2 -j 1`) at once:")
	m.p("all four as one tenant, or each as its own tenant (users t00..t03). A switch is a handout of a backend")
	m.p("whose tenant context had to be set first (tenantproxy's `tenantproxy_pool_tenant_switches_total`).\n")
	rows := runRows(t.Runs, variants)
	rows[len(rows)-1] = append(rows[len(rows)-1][:0], "**median**")
	for _, v := range variants {
		rows[len(rows)-1] = append(rows[len(rows)-1], fmt.Sprintf("**%s tps, %s switches/s**", num(medianTPS(t.Runs[v]), "%.0f"), num(median(t.Switches[v]), "%.0f")))
	}
	m.table(append([]string{"run"}, variants...), rows)
	one, four := medianTPS(t.Runs["1 tenant"]), medianTPS(t.Runs["4 tenants"])
	m.p("4 tenants / 1 tenant: %s.\n", num(four/one, "%.3fx"))
	m.chart("tenants.svg", chart{Title: "tenantproxy, 8 clients: one tenant or four", Unit: "median TPS",
		Groups: variants, Series: []string{"tenantproxy"}, Values: [][]float64{{one, four}}})
}

func (r *report) writeLatency(m *markdown) {
	if r.Latency == nil {
		return
	}
	m.p("## Latency per simple query, 1 client\n")
	m.p("`pgbench -n -S -c 1 -j 1 -l`: every transaction's latency from pgbench's log, in microseconds.")
	m.p("p50 and p99 per repetition; the median of each over the repetitions; added = p50 minus direct's p50.\n")
	dir, _ := r.latencyMedians("direct")
	var rows [][]string
	c := chart{Title: "latency of one select-only transaction, 1 client", Unit: "microseconds", Series: []string{"p50", "p99"}, Values: make([][]float64, 2)}
	for _, t := range targetOrder {
		var p50s, p99s []string
		for _, run := range r.Latency.Runs[t] {
			if run.Error != "" {
				p50s, p99s = append(p50s, "failed"), append(p99s, "failed")
				continue
			}
			p50s, p99s = append(p50s, fmt.Sprintf("%.0f", run.P50)), append(p99s, fmt.Sprintf("%.0f", run.P99))
		}
		p50, p99 := r.latencyMedians(t)
		rows = append(rows, []string{targetLabel[t], strings.Join(p50s, ", "), strings.Join(p99s, ", "),
			num(p50, "%.0f"), num(p99, "%.0f"), num(p50-dir, "%+.0f")})
		c.Groups = append(c.Groups, targetLabel[t])
		c.Values[0], c.Values[1] = append(c.Values[0], p50), append(c.Values[1], p99)
	}
	m.table([]string{"target", "p50 per run (us)", "p99 per run (us)", "median p50", "median p99", "added p50 (us)"}, rows)
	for _, t := range targetOrder {
		for i, run := range r.Latency.Runs[t] {
			if run.Error != "" {
				m.p("- %s, run %d failed: %s", targetLabel[t], i+1, cell(run.Error))
			}
		}
	}
	m.chart("latency.svg", c)
}

func (r *report) writeIdle(m *markdown) {
	if len(r.Idle) == 0 {
		return
	}
	m.p("## Idle clients\n")
	m.p("Authenticated clients (SCRAM, pgconn) connected and left idle, against one proxy at a time; the proxy's")
	m.p("VmRSS from /proc/<pid>/status before they connect and while it holds them (after 2 s of quiet). Each")
	m.p("client then runs `SELECT 1` to show it was a usable session. Per client = (holding - before) / clients.\n")
	var rows [][]string
	c := chart{Title: "resident memory holding the idle clients", Unit: "MB (VmRSS)", Ref: 150, RefLabel: "target: 150 MB for 10,000 clients"}
	for _, i := range r.Idle {
		rows = append(rows, []string{i.Server, fmt.Sprintf("%d of %d", i.Connected, i.Wanted), fmt.Sprint(i.Answered),
			fmt.Sprintf("%.1f MB", float64(i.BaseRSSKB)/1024), fmt.Sprintf("%.1f MB", float64(i.RSSKB)/1024),
			num(perClientKB(&i), "%.1f KB"), fmt.Sprintf("%.1f s", i.ConnectSeconds), cell(i.Error)})
		c.Series = append(c.Series, fmt.Sprintf("%s, %d clients", i.Server, i.Connected))
		c.Values = append(c.Values, []float64{float64(i.RSSKB) / 1024})
	}
	c.Groups = []string{"while holding the idle clients"}
	m.table([]string{"server", "clients held", "answered", "RSS before", "RSS holding", "per client", "connect time", "error"}, rows)
	m.chart("idle.svg", c)
}

func (r *report) writeRLS(m *markdown) {
	if len(r.RLS) == 0 {
		return
	}
	m.p("## Row-level security overhead\n")
	m.p("Straight to PostgreSQL with pgx, as tenant %s (about 2%% of the rows): the app role under row-level security", timedTenant)
	m.p("with the tenant context set, against the BYPASSRLS role `%s` running the same query with the tenant", bypassRole)
	m.p("spelled out (`tenant_id = '%s'` on every table). Each pair of runs alternates which role goes first, after %d", timedTenant, warmUpRuns)
	m.p("warm-up runs; times are the client's wall time per query. \"HNSW index\" steers the planner with")
	m.p("`enable_seqscan = off` and `enable_sort = off` for both roles, as migrations/vector_test.go does.")
	m.p("pgx prepares each query; `plan_cache_mode` is forced alike for both roles, once to a generic plan and")
	m.p("once to a custom plan, and each plan shown is the one the prepared statement gets in that mode.\n")
	var rows [][]string
	c := chart{Title: "median latency with and without row-level security", Unit: "milliseconds", Series: []string{"RLS (app role)", "BYPASSRLS"}, Values: make([][]float64, 2)}
	for _, q := range r.RLS {
		match := "yes"
		if !q.PlansMatch {
			match = "**no**"
		}
		rows = append(rows, []string{q.Query, shortMode(q.PlanMode), fmt.Sprint(q.Runs), fmt.Sprintf("%.3f ms", q.RLSMedianMS), fmt.Sprintf("%.3f ms", q.ByMedianMS),
			fmt.Sprintf("%.3f / %.3f ms", q.RLSP90MS, q.ByP90MS), fmt.Sprintf("%+.1f%%", (q.Ratio-1)*100), match,
			fmt.Sprintf("%.1f", q.MeanRows), fmt.Sprint(q.DifferentRow)})
		c.Groups = append(c.Groups, q.Short+", "+shortMode(q.PlanMode))
		c.Values[0], c.Values[1] = append(c.Values[0], q.RLSMedianMS), append(c.Values[1], q.ByMedianMS)
	}
	m.table([]string{"query", "plan", "runs", "RLS median", "BYPASSRLS median", "p90 RLS / BYPASSRLS", "overhead (median ratio - 1)", "same plan", "rows per query", "runs with different rows"}, rows)
	m.chart("rls.svg", c)
	for _, q := range r.RLS {
		m.p("### %s, %s\n", q.Query, q.PlanMode)
		m.p("As the app role under RLS:\n")
		m.code(q.RLSSQL + "\n\n" + q.RLSPlan)
		m.p("As %s:\n", bypassRole)
		m.code(q.BypassSQL + "\n\n" + q.BypassPlan)
	}
}

// shortMode is the first words of a plan mode's name ("generic plan").
func shortMode(name string) string {
	short, _, _ := strings.Cut(name, " (")
	return short
}

func (r *report) writeRecall(m *markdown) {
	rc := r.Recall
	if rc == nil {
		return
	}
	m.p("## Small-tenant recall\n")
	m.p("Tenant %s holds %d of the %d vectors (random, %d dimensions). For each of %d random query vectors, the top 10", rc.Tenant, rc.TenantRows, rc.TotalRows, vectorDims, rc.Queries)
	m.p("through the HNSW index under row-level security (as the app role, with the settings the migrations give it:")
	m.p("hnsw.ef_search = %s; the planner steered to the index with enable_seqscan and enable_sort off) is compared with", rc.EfSearch)
	m.p("an exact scan (`SET enable_indexscan = off`). Recall@10 = the share of the exact top 10 found, averaged.\n")
	var rows [][]string
	c := chart{Title: fmt.Sprintf("recall@10 for a tenant holding %d of %d rows", rc.TenantRows, rc.TotalRows), Unit: "recall@10",
		Series: []string{"recall@10"}, Values: make([][]float64, 1), Ref: 0.95, RefLabel: "target 0.95"}
	for _, run := range rc.Runs {
		rows = append(rows, []string{"hnsw.iterative_scan = " + run.Setting, fmt.Sprintf("%.3f", run.Recall), fmt.Sprintf("%.2f", run.MinRecall), fmt.Sprintf("%.1f", run.MeanReturned)})
		c.Groups = append(c.Groups, "iterative_scan = "+run.Setting)
		c.Values[0] = append(c.Values[0], run.Recall)
	}
	m.table([]string{"setting", "recall@10", "worst query", "rows returned (of 10)"}, rows)
	m.chart("recall.svg", c)
	m.p("HNSW plan (as run):\n")
	m.code(rc.HNSWPlan)
	m.p("Exact plan:\n")
	m.code(rc.ExactPlan)
}

func (r *report) writeIsolation(m *markdown) {
	i := r.Isolation
	if i == nil {
		return
	}
	m.p("## Isolation under load\n")
	m.p("%d clients through tenantproxy (transaction mode, %d backends), spread over %d tenants, for %.1f s. Each", i.Clients, poolSize, i.Tenants, i.Seconds)
	m.p("inserts an entity named tenant/client/n and counts the rows it can see of other tenants and of its own,")
	m.p("alternating the simple and extended protocols, every third step in an explicit transaction. Afterwards")
	m.p("the superuser counts the rows stored and those whose tenant_id differs from the tenant in their name.\n")
	m.table([]string{"inserts", "reads", "rows seen across tenants", "errors", "rows stored", "rows under the wrong tenant"},
		[][]string{{fmt.Sprint(i.Inserts), fmt.Sprint(i.Reads), fmt.Sprint(i.CrossTenantRows), fmt.Sprint(i.Errors), fmt.Sprint(i.Stored), fmt.Sprint(i.Misplaced)}})
	for _, e := range i.ErrorSamples {
		m.p("- error: %s", cell(e))
	}
	m.p("")
}
