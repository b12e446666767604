package main

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
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
	Threads   []scenarioResult `json:"threads"`
	Idle      []idleResult     `json:"idle"`
	Fairness  []fairnessRun    `json:"fairness"`
	Memory    []memoryResult   `json:"memory"`
	RLS       []rlsResult      `json:"rls"`
	Recall    []recallResult   `json:"recall"`
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

var targetLabel = map[string]string{"direct": "direct", "pgbouncer": "PgBouncer", "tenantproxy": "tenantproxy",
	threadsKey(1): "tenantproxy, threads = 1", threadsKey(2): "tenantproxy, threads = 2"}

// shortTitle labels a scenario in a chart.
var shortTitle = map[string]string{
	"select-1": "-S, 1 client", "select-8": "-S, 8 clients", "select-64": "-S, 64 clients",
	"prepared-1": "-M prepared, 1 client", "prepared-8": "-M prepared, 8 clients", "prepared-64": "-M prepared, 64 clients",
	"connect-8": "-C -S, 8 clients",
}

// medianTPS is the median over the runs that succeeded; NaN when none did.
func medianTPS(runs []pgbenchRun) float64 {
	return medianOf(runs, func(r pgbenchRun) float64 { return r.TPS })
}

func medianCPU(runs []pgbenchRun) float64 {
	return medianOf(runs, func(r pgbenchRun) float64 { return r.ProxyCPUUS })
}

// medianOf is the median of a figure over the runs that succeeded and measured it.
func medianOf(runs []pgbenchRun, figure func(pgbenchRun) float64) float64 {
	var xs []float64
	for _, r := range runs {
		if v := figure(r); r.ok() && v > 0 {
			xs = append(xs, v)
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

func (r *report) idleOf(server string, clients int) *idleResult {
	for i := range r.Idle {
		if r.Idle[i].Server == server && r.Idle[i].Wanted == clients {
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

	m.p("## Targets\n")
	m.p("Ratios compare figures of this one run, interleaved: the machine may be shared and noisy, so only")
	m.p("ratios within a run mean much. Each section below gives the spread across repetitions.\n")
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
	r.writeThreads(m)
	r.writeIdle(m)
	r.writeFairness(m)
	r.writeMemory(m)
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
	m.p("idle clients %v; fairness: the victim measured for %s per shape; memory: %d stalled startup packets, RSS read again %s after each case;",
		o.IdleClients, o.FairDuration, o.StartupClients, o.MemorySettle)
	m.p("%d vectors per vector table; %d graph entities per tenant; %d timed runs per RLS query; %d recall queries; %d isolation clients for %s.\n",
		o.VectorRows, o.GraphEntities, o.RLSRuns, o.RecallQueries, o.IsolationClients, o.IsolationDuration)
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
	r.writeProxyCPU(m)

	for _, s := range r.Pgbench {
		m.p("### %s\n", s.Title)
		m.p("`%s` (each target's own -h/-p/-U/database; raw output in raw/%s-*.txt)\n", s.Command, s.Key)
		if s.Note != "" {
			m.p("%s\n", s.Note)
		}
		m.table(append([]string{"run"}, labels(targetOrder)...), runRows(s.Runs, targetOrder))
		writeFailedRuns(m, s.Runs, targetOrder)
	}
}

// writeFailedRuns lists the runs that failed, with pgbench's complaint.
func writeFailedRuns(m *markdown, runs map[string][]pgbenchRun, keys []string) {
	for _, t := range keys {
		for i, run := range runs[t] {
			if !run.ok() {
				m.p("- %s, run %d failed: %s", labels([]string{t})[0], i+1, cell(run.Error))
			}
		}
	}
	m.p("")
}

// writeProxyCPU compares the work each proxy does per transaction, which the shared CPUs of a
// small machine hide in the throughput figures.
func (r *report) writeProxyCPU(m *markdown) {
	m.p("### Proxy CPU per transaction\n")
	m.p("User and system CPU of the proxy process (from /proc/<pid>/stat, before and after each run) divided by")
	m.p("the transactions pgbench completed; median over the repetitions, in microseconds, and the spread of the")
	m.p("repetitions ((max - min) / median). PostgreSQL, pgbench and the proxy share this machine's CPUs, so less")
	m.p("CPU in the proxy leaves more for the rest.\n")
	var rows [][]string
	for _, s := range r.Pgbench {
		pgb, tp := medianCPU(s.Runs["pgbouncer"]), medianCPU(s.Runs["tenantproxy"])
		rows = append(rows, []string{s.Title, num(pgb, "%.1f") + spreadOf(s.Runs["pgbouncer"], cpuOf), num(tp, "%.1f") + spreadOf(s.Runs["tenantproxy"], cpuOf), num(tp/pgb, "%.2fx")})
	}
	m.table([]string{"scenario", "PgBouncer (µs)", "tenantproxy (µs)", "tenantproxy / PgBouncer"}, rows)
}

func tpsOf(r pgbenchRun) float64 { return r.TPS }

func cpuOf(r pgbenchRun) float64 { return r.ProxyCPUUS }

// spreadOf is " (±x%)": the range of a figure over the repetitions that measured it, relative
// to their median; "" with fewer than two.
func spreadOf(runs []pgbenchRun, figure func(pgbenchRun) float64) string {
	var xs []float64
	for _, r := range runs {
		if v := figure(r); r.ok() && v > 0 {
			xs = append(xs, v)
		}
	}
	if len(xs) < 2 {
		return ""
	}
	return fmt.Sprintf(" (spread %.0f%%)", spread(xs)*100)
}

// spread is (max - min) / median.
func spread(xs []float64) float64 {
	return (slices.Max(xs) - slices.Min(xs)) / median(xs)
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
	med, spr := []string{"**median**"}, []string{"spread"}
	for _, c := range columns {
		med = append(med, "**"+num(medianTPS(runs[c]), "%.0f tps")+"**")
		spr = append(spr, strings.TrimSuffix(strings.TrimPrefix(spreadOf(runs[c], tpsOf), " (spread "), ")"))
	}
	if n < 2 {
		return append(rows, med)
	}
	return append(rows, med, spr)
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
	med := len(rows) - 1 // the median row, above the spread row when there is one
	if rows[med][0] == "spread" {
		med--
	}
	rows[med] = append(rows[med][:0], "**median**")
	for _, v := range variants {
		rows[med] = append(rows[med], fmt.Sprintf("**%s tps, %s switches/s**", num(medianTPS(t.Runs[v]), "%.0f"), num(median(t.Switches[v]), "%.0f")))
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
	m.p("Authenticated clients (SCRAM, pgconn) connected and left idle, against a freshly started proxy for each count, one")
	m.p("proxy at a time; the proxy's VmRSS from /proc/<pid>/status before they connect and while it holds them (once it")
	m.p("has stayed within 1%% for a second). Each client then runs `SELECT 1` to show it was a usable session.")
	m.p("Per client = (holding - before) / clients; the target is 4 KB.\n")
	var rows [][]string
	c := chart{Title: "resident memory per idle authenticated client", Unit: "KB per client", Ref: 4, RefLabel: "target: 4 KB"}
	servers := map[string]int{}
	for _, i := range r.Idle {
		rows = append(rows, []string{i.Server, fmt.Sprintf("%d of %d", i.Connected, i.Wanted), fmt.Sprint(i.Answered),
			fmt.Sprintf("%.1f MB", float64(i.BaseRSSKB)/1024), fmt.Sprintf("%.1f MB", float64(i.RSSKB)/1024),
			num(perClientKB(&i), "%.1f KB"), fmt.Sprintf("%.1f s", i.ConnectSeconds), cell(i.Error)})
		group := fmt.Sprintf("%d clients", i.Wanted)
		if len(c.Groups) == 0 || c.Groups[len(c.Groups)-1] != group {
			c.Groups = append(c.Groups, group)
		}
		s, ok := servers[i.Server]
		if !ok {
			s = len(c.Series)
			servers[i.Server] = s
			c.Series = append(c.Series, i.Server)
			c.Values = append(c.Values, nil)
		}
		c.Values[s] = append(c.Values[s], perClientKB(&i))
	}
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

// recallPath names a recall run's query path, in the table and (short) in the charts.
func recallPath(rc recallResult, run recallRun) (long, short string) {
	if run.Steered {
		return "HNSW, hnsw.iterative_scan = " + run.Setting, "HNSW, " + run.Setting
	}
	return "planner's choice: " + rc.PlannerPath, "planner's choice"
}

func (r *report) writeRecall(m *markdown) {
	if len(r.Recall) == 0 {
		return
	}
	first := r.Recall[0]
	m.p("## Small-tenant recall\n")
	m.p("Two datasets with the same tenant layout: %s holds 1%% of the rows, t00..t48 share the rest.\n", first.Tenant)
	for _, rc := range r.Recall {
		m.p("- **%s**: `%s`, %d dimensions, %s holds %d of %d rows.", rc.Dataset, rc.Table, rc.Dims, rc.Tenant, rc.TenantRows, rc.TotalRows)
		switch rc.Key {
		case "uniform":
			m.p("  Every component uniform in [-1, 1], queries drawn the same way: no neighbourhood structure, the hardest")
			m.p("  case for HNSW. This is the table the RLS-overhead section times.")
		case "clustered":
			m.p("  Each tenant has a random centroid (components in [-1, 1]); its vectors are the centroid plus uniform noise")
			m.p("  in [-%g, %g] per dimension, generated in SQL; queries are drawn the same way around %s's centroid. The", clusterSpread, clusterSpread, rc.Tenant)
			m.p("  HNSW index is built after the load, with the migration's definition.")
		}
	}
	m.p("")
	m.p("For each of %d query vectors per dataset, the top 10 as the app role under row-level security (with the settings", first.Queries)
	m.p("the migrations give it: hnsw.ef_search = %s) is compared with an exact scan (`SET enable_indexscan = off`);", first.EfSearch)
	m.p("recall@10 = the share of the exact top 10 found, averaged. \"HNSW\" steers the planner to the index with")
	m.p("enable_seqscan and enable_sort off, with the shipped hnsw.iterative_scan and with it off. \"Planner's choice\"")
	m.p("steers nothing and keeps the shipped setting, each query planned afresh (plan_cache_mode = force_custom_plan),")
	m.p("so the plan shown below is the one every query ran with; an exact scan is correct by construction. Latency is")
	m.p("the client's wall time per query.\n")

	var rows [][]string
	rec := chart{Title: fmt.Sprintf("recall@10 for a tenant holding %d of %d rows", first.TenantRows, first.TotalRows), Unit: "recall@10",
		Ref: 0.95, RefLabel: "target 0.95"}
	lat := chart{Title: "median latency of the small tenant's top 10", Unit: "milliseconds"}
	// One bar per query path; every dataset runs the same paths in the same order.
	for _, run := range first.Runs {
		_, short := recallPath(first, run)
		rec.Series, lat.Series = append(rec.Series, short), append(lat.Series, short)
	}
	rec.Values, lat.Values = make([][]float64, len(rec.Series)), make([][]float64, len(lat.Series))
	for _, rc := range r.Recall {
		rec.Groups, lat.Groups = append(rec.Groups, rc.Short), append(lat.Groups, rc.Short)
		for i, run := range rc.Runs {
			long, _ := recallPath(rc, run)
			rows = append(rows, []string{rc.Dataset, long, fmt.Sprintf("%.3f", run.Recall), fmt.Sprintf("%.2f", run.MinRecall),
				fmt.Sprintf("%.1f", run.MeanReturned), fmt.Sprintf("%.3f ms", run.MedianMS)})
			rec.Values[i] = append(rec.Values[i], run.Recall)
			lat.Values[i] = append(lat.Values[i], run.MedianMS)
		}
	}
	m.table([]string{"dataset", "query path", "recall@10", "worst query", "rows returned (of 10)", "median latency"}, rows)
	m.chart("recall.svg", rec)
	m.chart("recall-latency.svg", lat)
	for _, rc := range r.Recall {
		m.p("### %s: plans\n", rc.Dataset)
		m.p("HNSW (steered, as run):\n")
		m.code(rc.HNSWPlan)
		m.p("Exact:\n")
		m.code(rc.ExactPlan)
		m.p("Planner's choice (%s):\n", rc.PlannerPath)
		m.code(rc.PlannerPlan)
	}
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
