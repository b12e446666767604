package main

import (
	"fmt"
	"math"
	"strings"
)

func (r *report) memoryOf(proxy, key string) *memoryResult {
	for i := range r.Memory {
		if r.Memory[i].Proxy == proxy && r.Memory[i].Case == key {
			return &r.Memory[i]
		}
	}
	return nil
}

// memoryTarget states tenantproxy's figures; the section has no target yet.
func (r *report) memoryTarget() targetRow {
	row := targetRow{"memory one tenant can make the proxy hold (tenantproxy; PgBouncer in the section)", "none yet: figures", notMeasured, "figures only"}
	var parts []string
	for _, c := range memoryCases {
		m := r.memoryOf("tenantproxy", c.Key)
		if m == nil {
			continue
		}
		label, _, _ := strings.Cut(c.Title, " ")
		parts = append(parts, fmt.Sprintf("%s peak +%.0f MB, after +%.0f MB", label, mb(m.PeakKB-m.BeforeKB), mb(m.AfterKB-m.BeforeKB)))
	}
	if len(parts) > 0 {
		row.measured = strings.Join(parts, "; ")
	}
	return row
}

func (r *report) writeMemory(m *markdown) {
	if len(r.Memory) == 0 {
		return
	}
	o := r.Options
	m.p("## Memory a tenant can make the proxy hold\n")
	m.p("Each case runs against a freshly started proxy, so its peak resident set size (VmHWM in /proc/<pid>/status)")
	m.p("is the case's. Before: VmRSS once it has stayed within 1%% for a second; holding: while the case's clients are")
	m.p("still connected; after: %s after they left.\n", o.MemorySettle)
	m.p("- %s: %d connections each send a %d MB startup packet (user `%s`, the rest an `options` value) in", memoryCases[0].Title, o.StartupClients, startupPacketBytes>>20, missingUser)
	m.p("  pieces of 256 KB, each allowed 5 s (a proxy that stops reading stalls the client), then read nothing.")
	m.p("  PostgreSQL refuses startup packets over 10,000 bytes.")
	m.p("- %s: `SELECT n AS tag, ARRAY[0,0,...] %s` through the simple protocol; the comment holds a word", memoryCases[1].Title, guardTrigger)
	m.p("  of tenantproxy's guard pre-filter, so the guard parses the statement (\"guard parsed\" counts them).")
	m.p("- %s: Parse/Describe/Sync of %d such statements of %d MB, named, then Close/Sync of each, then the", memoryCases[2].Title, preparedCount, preparedBytes>>20)
	m.p("  client disconnects (transaction mode).\n")
	var rows [][]string
	c := chart{Title: "resident memory a single tenant can make the proxy hold", Unit: "MB above the fresh process", Series: []string{"tenantproxy peak", "tenantproxy after", "PgBouncer peak", "PgBouncer after"}, Values: make([][]float64, 4)}
	for _, mc := range memoryCases {
		label, _, _ := strings.Cut(mc.Title, " ")
		c.Groups = append(c.Groups, label+" "+mc.Key)
		for i, p := range []string{"tenantproxy", "PgBouncer"} {
			res := r.memoryOf(p, mc.Key)
			if res == nil {
				c.Values[2*i], c.Values[2*i+1] = append(c.Values[2*i], math.NaN()), append(c.Values[2*i+1], math.NaN())
				continue
			}
			parsed := ""
			if res.GuardParsed >= 0 {
				parsed = fmt.Sprintf("%.0f", res.GuardParsed)
			}
			rows = append(rows, []string{label + " " + mc.Key, p, fmt.Sprintf("%.1f MB", mb(res.BeforeKB)), fmt.Sprintf("%.1f MB", mb(res.PeakKB)),
				fmt.Sprintf("%.1f MB", mb(res.HoldingKB)), fmt.Sprintf("%.1f MB", mb(res.AfterKB)), parsed, cell(res.Outcome), cell(res.Error)})
			c.Values[2*i] = append(c.Values[2*i], mb(res.PeakKB-res.BeforeKB))
			c.Values[2*i+1] = append(c.Values[2*i+1], mb(res.AfterKB-res.BeforeKB))
		}
	}
	m.table([]string{"case", "proxy", "RSS before", "peak", "holding", "after", "guard parsed", "what the clients saw", "error"}, rows)
	m.chart("memory.svg", c)
}
