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

var targetLabel = map[string]string{"direct": "direct", "pgbouncer": "PgBouncer", "tenantproxy": "tenantproxy"}

// shortTitle labels a scenario in a chart.
var shortTitle = map[string]string{
	"select-1": "-S, 1 client", "select-8": "-S, 8 clients", "select-64": "-S, 64 clients",
	"prepared-8": "-S -M prepared, 8 clients", "connect-8": "-C -S, 8 clients",
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

// recallTarget holds the clustered dataset to the target; the uniform one, HNSW's worst case,
// is stated beside it so the hard figure is never hidden.
func (r *report) recallTarget() targetRow {
	row := targetRow{"small-tenant vector recall@10 under RLS through the HNSW index (tenant holds 1% of rows)", ">= 0.95", notMeasured, notMeasured}
	var parts []string
	setting := ""
	for _, key := range []string{"clustered", "uniform"} {
		rc := r.recallOf(key)
		if rc == nil || len(rc.Runs) == 0 {
			continue
		}
		shipped := rc.Runs[0]
		setting = shipped.Setting
		ok := shipped.Recall >= 0.95
		switch {
		case key == "clustered" && ok:
			parts = append(parts, fmt.Sprintf("clustered %.3f (met)", shipped.Recall))
			row.verdict = verdict(true)
		case key == "clustered":
			parts = append(parts, fmt.Sprintf("clustered %.3f (below target)", shipped.Recall))
			row.verdict = verdict(false)
		case ok:
			parts = append(parts, fmt.Sprintf("uniform random %.3f (worst case, also meets the target)", shipped.Recall))
		default:
			parts = append(parts, fmt.Sprintf("uniform random %.3f (worst case, below target)", shipped.Recall))
			if row.verdict == verdict(true) {
				row.verdict = "**met on clustered data, not on uniform random**"
			}
		}
	}
	if len(parts) > 0 {
		row.measured = fmt.Sprintf("with hnsw.iterative_scan = %s: %s", setting, strings.Join(parts, "; "))
	}
	return row
}

func (r *report) recallOf(key string) *recallResult {
	for i := range r.Recall {
		if r.Recall[i].Key == key {
			return &r.Recall[i]
		}
	}
	return nil
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
	m.p("%d idle clients; %d vectors per vector table; %d graph entities per tenant; %d timed runs per RLS query; %d recall queries; %d isolation clients for %s.\n",
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
	r.writeProxyCPU(m)

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

// writeProxyCPU compares the work each proxy does per transaction, which the shared CPUs of a
// small machine hide in the throughput figures.
func (r *report) writeProxyCPU(m *markdown) {
	m.p("### Proxy CPU per transaction\n")
	m.p("User and system CPU of the proxy process (from /proc/<pid>/stat, before and after each run) divided by")
	m.p("the transactions pgbench completed; median over the repetitions, in microseconds. PostgreSQL, pgbench")
	m.p("and the proxy share this machine's CPUs, so less CPU in the proxy leaves more for the rest.\n")
	var rows [][]string
	for _, s := range r.Pgbench {
		pgb, tp := medianCPU(s.Runs["pgbouncer"]), medianCPU(s.Runs["tenantproxy"])
		rows = append(rows, []string{s.Title, num(pgb, "%.1f"), num(tp, "%.1f"), num(tp/pgb, "%.2fx")})
	}
	m.table([]string{"scenario", "PgBouncer (us)", "tenantproxy (us)", "tenantproxy / PgBouncer"}, rows)
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
