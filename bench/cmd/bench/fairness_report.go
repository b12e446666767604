package main

import (
	"fmt"
	"math"
	"strings"
)

const (
	// fairKeep is the share of its solo throughput the victim must keep when the flood only
	// holds backends or logs in, and when its fair share is its solo throughput.
	fairKeep = 0.7
	// fairP99Factor and fairP99FloorMS bound the victim's p99 under floods (a) and (c).
	fairP99Factor  = 5
	fairP99FloorMS = 20
)

// fairness is one proxy's medians over the repetitions of one shape.
type fairness struct {
	runs               int
	victimPS, p50, p99 float64
	victimErrors       int
	floodPS            float64
	floodErrors        int
	total              float64 // victim and flood operations per second together, median
}

func (r *report) fairnessOf(proxy, shape string) (fairness, bool) {
	var f fairness
	var vps, p50, p99, fps, total []float64
	for _, run := range r.Fairness {
		if run.Proxy != proxy || run.Shape != shape || run.Error != "" {
			continue
		}
		f.runs++
		vps, p50, p99 = append(vps, run.Victim.PerSecond), append(p50, run.Victim.P50MS), append(p99, run.Victim.P99MS)
		f.victimErrors += run.Victim.Errors
		if run.Flood != nil {
			fps = append(fps, run.Flood.PerSecond)
			total = append(total, run.Victim.PerSecond+run.Flood.PerSecond)
			f.floodErrors += run.Flood.Errors
		}
	}
	if f.runs == 0 {
		return f, false
	}
	f.victimPS, f.p50, f.p99 = median(vps), median(p50), median(p99)
	f.floodPS, f.total = median(fps), median(total)
	return f, true
}

// fairFloor is the throughput the victim must keep under a flood, and how it is computed.
//
//   - (a) and (c) only hold backends or log in: 0.7x its solo throughput.
//   - (b) saturates the database with short statements. Shared fairly, the pool's backends go
//     to each tenant up to half of them: the victim's 2 clients always get one each, the flood
//     the other poolSize - 2. The database's CPUs then serve each backend at work alike, so
//     the victim's fair share is 2/poolSize of the statements both tenants complete (at most
//     its solo throughput).
//   - (d) holds every backend with statements that use no CPU. Half the pool is more than the
//     victim's 2 clients need, so its fair share is its solo throughput; it must keep 0.7x.
func fairFloor(shape string, solo, under fairness) float64 {
	switch shape {
	case "short":
		return math.Min(solo.victimPS, under.total*victimClients/poolSize)
	default:
		return fairKeep * solo.victimPS
	}
}

// fairP99Limit bounds the victim's p99 under floods (a) and (c); NaN elsewhere.
func fairP99Limit(shape string, solo fairness) float64 {
	if shape != "hold" && shape != "storm" {
		return math.NaN()
	}
	return math.Max(fairP99Factor*solo.p99, fairP99FloorMS)
}

func fairMet(shape string, solo, under fairness) bool {
	ok := under.victimPS >= fairFloor(shape, solo, under)
	if limit := fairP99Limit(shape, solo); !math.IsNaN(limit) {
		ok = ok && under.p99 <= limit && under.victimErrors == 0
	}
	return ok
}

func fairTargetText(shape string) string {
	switch shape {
	case "hold", "storm":
		return fmt.Sprintf(">= %.1fx solo throughput, p99 <= %dx solo p99 (or %d ms), no errors", fairKeep, fairP99Factor, fairP99FloorMS)
	case "short":
		return fmt.Sprintf(">= fair share: %d/%d of both tenants' statements per second (at most solo)", victimClients, poolSize)
	default:
		return fmt.Sprintf(">= fair share = solo throughput, within %.1fx", fairKeep)
	}
}

// fairnessTargets are the summary's rows: tenantproxy's verdict, PgBouncer's figures beside it.
func (r *report) fairnessTargets() []targetRow {
	var rows []targetRow
	for _, s := range floodShapes {
		row := targetRow{"fairness: victim tenant (2 clients) under flood " + s.Title, fairTargetText(s.Key), notMeasured, notMeasured}
		var parts []string
		for _, p := range []string{"tenantproxy", "PgBouncer"} {
			solo, ok1 := r.fairnessOf(p, "solo")
			under, ok2 := r.fairnessOf(p, s.Key)
			if !ok1 || !ok2 {
				continue
			}
			p99 := fmt.Sprintf("%.1f ms", under.p99)
			if under.victimPS == 0 {
				p99 = "none completed"
			}
			parts = append(parts, fmt.Sprintf("%s %s solo (floor %s), p99 %s (solo %.1f ms), %d errors",
				p, ratio(under.victimPS/solo.victimPS), ratio(fairFloor(s.Key, solo, under)/solo.victimPS), p99, solo.p99, under.victimErrors))
			if p == "tenantproxy" {
				row.verdict = verdict(fairMet(s.Key, solo, under))
			}
		}
		if len(parts) > 0 {
			row.measured = strings.Join(parts, "; ")
		}
		rows = append(rows, row)
	}
	return rows
}

func (r *report) writeFairness(m *markdown) {
	if len(r.Fairness) == 0 {
		return
	}
	o := r.Options
	m.p("## Fair share between tenants\n")
	m.p("A victim tenant (user %s: `pgbench -n -S -c %d -j 2 -T %d -l`, pgbench's select-only transaction as fast as", victimUser, victimClients, int(o.FairDuration.Seconds()))
	m.p("answers come) is measured alone, then while another tenant (user %s, Go clients in this program) floods the", floodUser)
	m.p("same proxy. Through tenantproxy the two users are two tenants; through PgBouncer they are two users of one")
	m.p("database, so of one pool of %d backends. The flood starts first; the victim starts once each flood client has", poolSize)
	m.p("started its first operation. The victim's figures are pgbench's (p50 and p99 from its log of every transaction;")
	m.p("errors are clients pgbench lost); the flood's count the operations that ended while pgbench ran. The victim runs")
	m.p("as a process of its own so that the flood's goroutines do not queue it in this program's scheduler. The flood")
	m.p("user's SCRAM verifier has 1 PBKDF2 iteration (in both proxies): a proxy stores the derived keys and does the")
	m.p("same work whatever the count, while 4096 iterations in each login of (c) would spend the shared CPUs in the")
	m.p("flood's own clients. Medians over %d repetition(s), the proxies' order rotating.\n", o.Repeat)
	for _, s := range floodShapes {
		m.p("- %s: one %s per operation.", s.Title, strings.TrimSuffix(s.Unit, "s"))
	}
	m.p("")
	m.p("The floor is the throughput the victim must keep: %.1fx its solo figure under (a), (c) and (d) (in (d) the", fairKeep)
	m.p("2-second statements use no CPU and half the pool is more than its %d clients need, so its fair share is its", victimClients)
	m.p("solo throughput). Under (b) the database is busy: shared fairly, the pool gives each of the victim's %d clients", victimClients)
	m.p("a backend and the flood the other %d, and the database's CPUs serve backends at work alike, so the victim's fair", poolSize-victimClients)
	m.p("share is %d/%d of the statements both tenants complete (at most its solo throughput). Under (a) and (c) its p99", victimClients, poolSize)
	m.p("must also stay within %dx its solo p99 (or %d ms, whichever is larger), with no errors.\n", fairP99Factor, fairP99FloorMS)

	c := chart{Title: "victim throughput under each flood, relative to alone", Unit: "x solo", Ref: fairKeep, RefLabel: "0.7x solo"}
	for _, p := range []string{"tenantproxy", "PgBouncer"} {
		solo, ok := r.fairnessOf(p, "solo")
		if !ok {
			continue
		}
		m.p("### %s\n", p)
		rows := [][]string{{"alone", num(solo.victimPS, "%.0f"), "1.00x", num(solo.p50, "%.2f"), num(solo.p99, "%.2f"), fmt.Sprint(solo.victimErrors), "", "", "", "", ""}}
		var values []float64
		for _, s := range floodShapes {
			under, ok := r.fairnessOf(p, s.Key)
			if !ok {
				rows = append(rows, []string{s.Title, "failed", "", "", "", "", "", "", "", "", ""})
				values = append(values, math.NaN())
				continue
			}
			p50, p99 := num(under.p50, "%.2f"), num(under.p99, "%.2f")
			if under.victimPS == 0 {
				p50, p99 = "none completed", "none completed"
			}
			rows = append(rows, []string{s.Title, num(under.victimPS, "%.0f"), ratio(under.victimPS / solo.victimPS),
				p50, p99, fmt.Sprint(under.victimErrors),
				num(under.floodPS, "%.0f") + " " + s.Unit + "/s", fmt.Sprint(under.floodErrors),
				num(fairFloor(s.Key, solo, under), "%.0f"), num(fairP99Limit(s.Key, solo), "%.1f ms"), verdict(fairMet(s.Key, solo, under))})
			values = append(values, under.victimPS/solo.victimPS)
		}
		m.table([]string{"flood", "victim /s", "x solo", "victim p50 (ms)", "victim p99 (ms)", "victim errors", "flood", "flood errors", "floor (/s)", "p99 limit", "verdict"}, rows)
		c.Series = append(c.Series, p)
		c.Values = append(c.Values, values)
	}
	for _, s := range floodShapes {
		c.Groups = append(c.Groups, strings.SplitN(s.Title, " ", 2)[0])
	}
	m.chart("fairness.svg", c)

	m.p("### Every run\n")
	var rows [][]string
	for _, run := range r.Fairness {
		flood, floodErrs, samples := "", "", append([]string(nil), run.Victim.ErrorSamples...)
		if run.Flood != nil {
			flood = fmt.Sprintf("%.0f/s, p50 %.1f ms, p99 %.1f ms", run.Flood.PerSecond, run.Flood.P50MS, run.Flood.P99MS)
			floodErrs = fmt.Sprint(run.Flood.Errors)
			for _, e := range run.Flood.ErrorSamples {
				samples = append(samples, "flood: "+e)
			}
		}
		if run.Error != "" {
			samples = append(samples, run.Error)
		}
		rows = append(rows, []string{run.Proxy, run.Shape, fmt.Sprint(run.Repetition), fmt.Sprintf("%.0f", run.Victim.PerSecond),
			fmt.Sprintf("%.2f", run.Victim.P50MS), fmt.Sprintf("%.2f", run.Victim.P99MS), fmt.Sprint(run.Victim.Errors), flood, floodErrs,
			cell(strings.Join(samples, "; "))})
	}
	m.table([]string{"proxy", "flood", "run", "victim /s", "p50 (ms)", "p99 (ms)", "victim errors", "flood", "flood errors", "errors seen"}, rows)
}

// ratio prints a ratio with two decimals, three below 0.1 so that a starved victim's is not 0.
func ratio(v float64) string {
	if v < 0.1 {
		return num(v, "%.3fx")
	}
	return num(v, "%.2fx")
}
