package main

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// scenario is one pgbench workload run against every target.
type scenario struct {
	Key     string
	Title   string
	Clients int
	Args    []string
	Note    string
}

var scenarios = []scenario{
	{Key: "select-1", Title: "select-only, 1 client", Clients: 1, Args: []string{"-S"}},
	{Key: "select-8", Title: "select-only, 8 clients", Clients: 8, Args: []string{"-S"}},
	{Key: "select-64", Title: "select-only, 64 clients", Clients: 64, Args: []string{"-S"}},
	{Key: "prepared-1", Title: "select-only, -M prepared, 1 client", Clients: 1, Args: []string{"-S", "-M", "prepared"}},
	{Key: "prepared-8", Title: "select-only, -M prepared, 8 clients", Clients: 8, Args: []string{"-S", "-M", "prepared"}},
	{Key: "prepared-64", Title: "select-only, -M prepared, 64 clients", Clients: 64, Args: []string{"-S", "-M", "prepared"}},
	{Key: "connect-8", Title: "new connection per transaction (-C -S), 8 clients", Clients: 8, Args: []string{"-C", "-S"},
		Note: "Each new connection to a proxy includes a SCRAM-SHA-256 exchange, in which the client derives its key " +
			"with 4096 PBKDF2 iterations; direct connections use trust and skip it. The proxy's CPU per transaction " +
			"is its CPU per new connection: login, one query, logout."},
}

// scenarioNamed is the scenario of that key.
func scenarioNamed(key string) scenario {
	for _, sc := range scenarios {
		if sc.Key == key {
			return sc
		}
	}
	panic("no pgbench scenario " + key)
}

// pgbenchRun is the outcome of one pgbench process, or of several run at once.
type pgbenchRun struct {
	TPS          float64 `json:"tps"`
	LatencyMS    float64 `json:"latency_ms"`
	Transactions int64   `json:"transactions"`
	// ProxyCPUUS is the CPU the proxy used per transaction, in microseconds (not for direct).
	ProxyCPUUS float64 `json:"proxy_cpu_us_per_transaction,omitempty"`
	// Aborted counts the clients pgbench lost to an error.
	Aborted int    `json:"aborted,omitempty"`
	Error   string `json:"error,omitempty"`
}

func (r pgbenchRun) ok() bool { return r.Error == "" }

var (
	tpsLine     = regexp.MustCompile(`(?m)^tps = ([0-9.]+)`)
	latencyLine = regexp.MustCompile(`(?m)^latency average = ([0-9.]+) ms`)
	failedLine  = regexp.MustCompile(`(?m)^number of failed transactions: ([1-9][0-9]*)`)
	abortedLine = regexp.MustCompile(`(?m)client [0-9]+ aborted`)
	txnsLine    = regexp.MustCompile(`(?m)^number of transactions actually processed: ([0-9]+)`)
)

// pgbench runs pgbench against t for --duration with clients, after -n (the tables were
// vacuumed by -i). Its output is kept under raw/ for whoever doubts a figure.
func (e *env) pgbench(ctx context.Context, t target, clients int, rawName string, args ...string) pgbenchRun {
	return e.pgbenchFor(ctx, t, clients, e.o.Duration, rawName, args...)
}

// pgbenchFor is pgbench for d (whole seconds).
func (e *env) pgbenchFor(ctx context.Context, t target, clients int, d time.Duration, rawName string, args ...string) pgbenchRun {
	argv := []string{"-n", "-h", t.Host, "-p", strconv.Itoa(t.Port), "-U", t.User,
		"-T", strconv.Itoa(int(d.Seconds())), "-c", strconv.Itoa(clients), "-j", strconv.Itoa(min(2, clients))}
	argv = append(append(argv, args...), t.Database)
	cmd := exec.CommandContext(ctx, "pgbench", argv...)
	cmd.Dir = e.out
	cmd.Env = cleanEnv("PGPASSWORD="+t.Password, "PGSSLMODE=disable")
	out, err := cmd.CombinedOutput()
	raw := filepath.Join(e.out, "raw")
	if os.MkdirAll(raw, 0o755) == nil {
		_ = os.WriteFile(filepath.Join(raw, rawName+".txt"), []byte("pgbench "+strings.Join(argv, " ")+"\n\n"+string(out)), 0o644)
	}
	return parsePgbench(string(out), err)
}

func parsePgbench(out string, err error) pgbenchRun {
	r := pgbenchRun{Aborted: len(abortedLine.FindAllString(out, -1))}
	if m := tpsLine.FindStringSubmatch(out); m != nil {
		r.TPS, _ = strconv.ParseFloat(m[1], 64)
	}
	if m := latencyLine.FindStringSubmatch(out); m != nil {
		r.LatencyMS, _ = strconv.ParseFloat(m[1], 64)
	}
	if m := txnsLine.FindStringSubmatch(out); m != nil {
		r.Transactions, _ = strconv.ParseInt(m[1], 10, 64)
	}
	switch {
	case err != nil:
		r.Error = fmt.Sprintf("%v: %s", err, lastErrorLine(out))
	case r.TPS == 0:
		r.Error = "no tps in the output: " + lastErrorLine(out)
	case failedLine.MatchString(out):
		r.Error = "failed transactions: " + failedLine.FindStringSubmatch(out)[1]
	}
	return r
}

// lastErrorLine picks the line of pgbench's output that says what went wrong: the first
// server error, else the last complaint.
func lastErrorLine(out string) string {
	lines := strings.Split(strings.TrimSpace(out), "\n")
	for _, l := range lines {
		if strings.Contains(l, "ERROR:") || strings.Contains(l, "FATAL:") {
			return strings.TrimSpace(l)
		}
	}
	for i := len(lines) - 1; i >= 0; i-- {
		l := strings.ToLower(lines[i])
		if strings.Contains(l, "error") || strings.Contains(l, "fatal") || strings.Contains(l, "abort") {
			return strings.TrimSpace(lines[i])
		}
	}
	return tail(out, 1)
}

// rotate puts the targets in a different order for each repetition, so no target always runs
// first (on a cold cache) or last.
func rotate[T any](xs []T, by int) []T {
	by %= len(xs)
	return append(slices.Clone(xs[by:]), xs[:by]...)
}

// runPgbench runs each scenario against the three targets, interleaved and repeated.
func runPgbench(ctx context.Context, e *env, rep *report) error {
	res, err := e.runScenarios(ctx, "", scenarios, e.targets())
	rep.Pgbench = res
	if err != nil {
		return err
	}
	return runTenantSwitches(ctx, e, rep)
}

// runScenarios runs each scenario against every target, --repeat times, the targets' order
// rotating on each repetition. Raw outputs are named prefix + scenario-target-repetition.
func (e *env) runScenarios(ctx context.Context, prefix string, scs []scenario, targets []target) ([]scenarioResult, error) {
	var results []scenarioResult
	for _, sc := range scs {
		res := scenarioResult{Key: sc.Key, Title: sc.Title, Note: sc.Note, Runs: map[string][]pgbenchRun{},
			Command: fmt.Sprintf("pgbench -n %s -c %d -j %d -T %d", strings.Join(sc.Args, " "), sc.Clients, min(2, sc.Clients), int(e.o.Duration.Seconds()))}
		for i := range e.o.Repeat {
			for _, t := range rotate(targets, i) {
				if ctx.Err() != nil {
					return append(results, res), ctx.Err()
				}
				r := e.pgbenchWithCPU(ctx, t, sc.Clients, fmt.Sprintf("%s%s-%s-%d", prefix, sc.Key, t.Name, i+1), sc.Args...)
				logf("  %s, %s, run %d: %.0f tps, proxy CPU %.1f us per transaction %s", sc.Title, t.Name, i+1, r.TPS, r.ProxyCPUUS, r.Error)
				res.Runs[t.Name] = append(res.Runs[t.Name], r)
			}
		}
		results = append(results, res)
	}
	return results, nil
}

// pgbenchWithCPU is pgbench that also measures the proxy's CPU per transaction, when t is
// a proxy. On a machine with few cores the proxy, PostgreSQL and pgbench share them, so
// throughput partly measures who wins the CPU; the proxy's own CPU per transaction is
// the figure that says how much work it does.
func (e *env) pgbenchWithCPU(ctx context.Context, t target, clients int, rawName string, args ...string) pgbenchRun {
	if t.PID == 0 {
		return e.pgbench(ctx, t, clients, rawName, args...)
	}
	before, errBefore := cpuTime(t.PID)
	r := e.pgbench(ctx, t, clients, rawName, args...)
	after, errAfter := cpuTime(t.PID)
	if r.ok() && errBefore == nil && errAfter == nil && r.Transactions > 0 {
		r.ProxyCPUUS = float64((after - before).Microseconds()) / float64(r.Transactions)
	}
	return r
}

// runTenantSwitches runs 8 clients through tenantproxy as four pgbench processes of two
// clients, all of one tenant or each of its own, interleaved and repeated; the difference is
// the cost of switching a backend's tenant context.
func runTenantSwitches(ctx context.Context, e *env, rep *report) error {
	variants := []struct {
		name  string
		users []string
	}{
		{"1 tenant", []string{benchUser, benchUser, benchUser, benchUser}},
		{"4 tenants", tenants[:4]},
	}
	res := tenantResult{Runs: map[string][]pgbenchRun{}, Switches: map[string][]float64{}}
	for i := range e.o.Repeat {
		for _, v := range rotate(variants, i) {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			before, err := e.tenantproxy.metric(ctx, "tenantproxy_pool_tenant_switches_total")
			if err != nil {
				return err
			}
			r := e.pgbenchTogether(ctx, v.users, 2, fmt.Sprintf("tenants-%s-%d", strings.ReplaceAll(v.name, " ", ""), i+1), "-S")
			after, err := e.tenantproxy.metric(ctx, "tenantproxy_pool_tenant_switches_total")
			if err != nil {
				return err
			}
			rate := (after - before) / e.o.Duration.Seconds()
			logf("  8 clients through tenantproxy, %s, run %d: %.0f tps, %.0f switches/s %s", v.name, i+1, r.TPS, rate, r.Error)
			res.Runs[v.name] = append(res.Runs[v.name], r)
			res.Switches[v.name] = append(res.Switches[v.name], rate)
		}
	}
	rep.Tenants = &res
	return nil
}

// pgbenchTogether runs one pgbench process per user through tenantproxy at once and adds up
// their throughput.
func (e *env) pgbenchTogether(ctx context.Context, users []string, clients int, rawName string, args ...string) pgbenchRun {
	runs := make([]pgbenchRun, len(users))
	var wg sync.WaitGroup
	for i, u := range users {
		wg.Go(func() {
			runs[i] = e.pgbench(ctx, e.tenantproxy.target(u), clients, fmt.Sprintf("%s-%s-%d", rawName, u, i), args...)
		})
	}
	wg.Wait()
	var sum pgbenchRun
	for _, r := range runs {
		if !r.ok() {
			return r
		}
		sum.TPS += r.TPS
		sum.LatencyMS += r.LatencyMS / float64(len(runs))
	}
	return sum
}

// runLatency times every transaction of pgbench -S with one client (pgbench -l) against each
// target, interleaved and repeated.
func runLatency(ctx context.Context, e *env, rep *report) error {
	res := latencyResult{Runs: map[string][]latencyRun{}}
	for i := range e.o.Repeat {
		for _, t := range rotate(e.targets(), i) {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			r, us := e.pgbenchLogged(ctx, t, 1, e.o.Duration, fmt.Sprintf("latency-%s-%d", t.Name, i+1), "-S")
			lr := latencyRun{TPS: r.TPS, Error: r.Error}
			if r.ok() {
				lr.Samples = len(us)
				lr.P50, lr.P99 = percentile(us, 50), percentile(us, 99)
			}
			logf("  latency, %s, run %d: p50 %.0f us, p99 %.0f us %s", t.Name, i+1, lr.P50, lr.P99, lr.Error)
			res.Runs[t.Name] = append(res.Runs[t.Name], lr)
		}
	}
	rep.Latency = &res
	return nil
}

// pgbenchLogged is pgbench for d that logs every transaction (pgbench -l) and returns their
// latencies in microseconds. The logs are large and removed; the figures keep what they say.
func (e *env) pgbenchLogged(ctx context.Context, t target, clients int, d time.Duration, rawName string, args ...string) (pgbenchRun, []float64) {
	logs, err := os.MkdirTemp(e.out, "pgbench-log-")
	if err != nil {
		return pgbenchRun{Error: err.Error()}, nil
	}
	defer os.RemoveAll(logs)
	prefix := filepath.Join(logs, "txn")
	r := e.pgbenchFor(ctx, t, clients, d, rawName, slices.Concat(args, []string{"-l", "--log-prefix=" + prefix})...)
	if !r.ok() {
		return r, nil
	}
	us, err := readLatencies(prefix)
	if err != nil {
		r.Error = err.Error()
	}
	return r, us
}

// readLatencies reads the third field (latency in microseconds) of every line of the
// per-transaction logs pgbench -l wrote under prefix.
func readLatencies(prefix string) ([]float64, error) {
	files, err := filepath.Glob(prefix + ".*")
	if err != nil || len(files) == 0 {
		return nil, fmt.Errorf("no pgbench log at %s.*", prefix)
	}
	var us []float64
	for _, name := range files {
		f, err := os.Open(name)
		if err != nil {
			return nil, err
		}
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			fields := strings.Fields(sc.Text())
			if len(fields) < 3 {
				continue
			}
			v, err := strconv.ParseFloat(fields[2], 64)
			if err != nil {
				f.Close()
				return nil, fmt.Errorf("%s: %q: %w", name, sc.Text(), err)
			}
			us = append(us, v)
		}
		f.Close()
		if err := sc.Err(); err != nil {
			return nil, err
		}
	}
	if len(us) == 0 {
		return nil, fmt.Errorf("pgbench logged no transactions at %s.*", prefix)
	}
	return us, nil
}

// percentile is the nearest-rank p-th percentile of xs.
func percentile(xs []float64, p float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	rank := int(float64(len(s))*p/100+0.999999) - 1
	return s[min(max(rank, 0), len(s)-1)]
}

func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}
