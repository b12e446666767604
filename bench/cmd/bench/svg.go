package main

import (
	"fmt"
	"html"
	"math"
	"strconv"
	"strings"
)

// chart is a labelled bar chart: one group of bars per category, one bar per series.
type chart struct {
	Title  string
	Unit   string // of the y axis
	Groups []string
	Series []string
	Values [][]float64 // [series][group]; NaN draws no bar and says "n/a"
	// Ref, when not zero, draws a dashed line at that value, labelled RefLabel.
	Ref      float64
	RefLabel string
}

const (
	chartW, chartH = 760, 380
	padLeft        = 70
	padRight       = 20
	padTop         = 64
	padBottom      = 64
)

// seriesColors keep the same thing the same colour in every chart.
var seriesColors = map[string]string{
	"direct": "#8c8c8c", "PgBouncer": "#4c78a8", "tenantproxy": "#f58518", "BYPASSRLS": "#8c8c8c",
}

var palette = []string{"#4c78a8", "#f58518", "#54a24b", "#b279a2", "#8c8c8c"}

// colorOf is the series' colour: its own, or that of the name it starts with ("tenantproxy,
// 10000 clients"), or the next of the palette.
func colorOf(series string, i int) string {
	name, _, _ := strings.Cut(series, ",")
	if c, ok := seriesColors[name]; ok {
		return c
	}
	return palette[i%len(palette)]
}

// svg draws the chart by hand: axes, ticks, bars with their values, a legend.
func (c chart) svg() string {
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="sans-serif" font-size="12">`+"\n",
		chartW, chartH, chartW, chartH)
	fmt.Fprintf(&b, `<rect width="%d" height="%d" fill="white"/>`+"\n", chartW, chartH)
	fmt.Fprintf(&b, `<text x="%d" y="22" font-size="15" font-weight="bold">%s</text>`+"\n", padLeft, esc(c.Title))

	top := c.Ref
	for _, s := range c.Values {
		for _, v := range s {
			if !math.IsNaN(v) {
				top = max(top, v)
			}
		}
	}
	yMax, step := niceScale(top * 1.12)
	plotW, plotH := float64(chartW-padLeft-padRight), float64(chartH-padTop-padBottom)
	y := func(v float64) float64 { return float64(padTop) + plotH*(1-v/yMax) }

	// Grid and y ticks.
	for v := 0.0; v <= yMax+step/2; v += step {
		fmt.Fprintf(&b, `<line x1="%d" x2="%d" y1="%.1f" y2="%.1f" stroke="#e0e0e0"/>`+"\n", padLeft, chartW-padRight, y(v), y(v))
		fmt.Fprintf(&b, `<text x="%d" y="%.1f" text-anchor="end" fill="#555">%s</text>`+"\n", padLeft-6, y(v)+4, esc(tickLabel(v, step)))
	}
	fmt.Fprintf(&b, `<text transform="translate(16,%.1f) rotate(-90)" text-anchor="middle" fill="#555">%s</text>`+"\n",
		float64(padTop)+plotH/2, esc(c.Unit))

	// Bars, with their values above them.
	groupW := plotW / float64(max(1, len(c.Groups)))
	barW := groupW * 0.8 / float64(max(1, len(c.Series)))
	for g, group := range c.Groups {
		x0 := float64(padLeft) + groupW*float64(g) + groupW*0.1
		for s, name := range c.Series {
			v := math.NaN()
			if g < len(c.Values[s]) {
				v = c.Values[s][g]
			}
			x := x0 + barW*float64(s)
			label := "n/a"
			if !math.IsNaN(v) {
				label = formatValue(v)
				fmt.Fprintf(&b, `<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="%s"><title>%s, %s: %s</title></rect>`+"\n",
					x+1, y(v), barW-2, y(0)-y(v), colorOf(name, s), esc(group), esc(name), esc(label))
			}
			top := y(0) - 4
			if !math.IsNaN(v) {
				top = y(v) - 4
			}
			fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" text-anchor="middle" font-size="11">%s</text>`+"\n", x+barW/2, top, esc(label))
		}
		// Group label under the axis, split at ", " to fit.
		for i, line := range strings.Split(group, ", ") {
			fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" text-anchor="middle">%s</text>`+"\n",
				x0+groupW*0.4, y(0)+18+float64(i)*14, esc(line))
		}
	}
	fmt.Fprintf(&b, `<line x1="%d" x2="%d" y1="%.1f" y2="%.1f" stroke="#333"/>`+"\n", padLeft, chartW-padRight, y(0), y(0))

	if c.Ref != 0 {
		fmt.Fprintf(&b, `<line x1="%d" x2="%d" y1="%.1f" y2="%.1f" stroke="#d62728" stroke-dasharray="6,4"/>`+"\n", padLeft, chartW-padRight, y(c.Ref), y(c.Ref))
		fmt.Fprintf(&b, `<text x="%d" y="%.1f" text-anchor="end" fill="#d62728">%s</text>`+"\n", chartW-padRight, y(c.Ref)-4, esc(c.RefLabel))
	}

	// Legend under the title.
	x := float64(padLeft)
	for s, name := range c.Series {
		fmt.Fprintf(&b, `<rect x="%.1f" y="34" width="12" height="12" fill="%s"/>`+"\n", x, colorOf(name, s))
		fmt.Fprintf(&b, `<text x="%.1f" y="45">%s</text>`+"\n", x+16, esc(name))
		x += 16 + 7.5*float64(len(name)) + 18
	}
	b.WriteString("</svg>\n")
	return b.String()
}

// niceScale rounds top up to 1, 2 or 5 times a power of ten, with five or so ticks.
func niceScale(top float64) (yMax, step float64) {
	if top <= 0 || math.IsNaN(top) {
		return 1, 0.2
	}
	raw := top / 5
	mag := math.Pow(10, math.Floor(math.Log10(raw)))
	for _, m := range []float64{1, 2, 2.5, 5, 10} {
		if step = m * mag; step >= raw {
			break
		}
	}
	return math.Ceil(top/step) * step, step
}

// tickLabel prints an axis value with as many decimals as the step between ticks needs.
func tickLabel(v, step float64) string {
	d := 0
	for d < 4 && math.Abs(step*math.Pow(10, float64(d))-math.Round(step*math.Pow(10, float64(d)))) > 1e-9 {
		d++
	}
	return strconv.FormatFloat(v, 'f', d, 64)
}

// formatValue prints a figure with the precision its size deserves.
func formatValue(v float64) string {
	switch a := math.Abs(v); {
	case a >= 100:
		return fmt.Sprintf("%.0f", v)
	case a >= 10:
		return fmt.Sprintf("%.1f", v)
	case a >= 1:
		return fmt.Sprintf("%.2f", v)
	default:
		return fmt.Sprintf("%.3f", v)
	}
}

func esc(s string) string { return html.EscapeString(s) }
