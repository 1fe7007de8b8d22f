package main

import (
	"encoding/xml"
	"fmt"
	"io"
	"math"
	"slices"
	"strconv"
	"strings"
)

// The chart tether-bench writes beside its table (-out): an SVG written by
// hand, as the two panels share one file and one scale each, which the
// chart libraries at hand draw as separate images. Panel (a) has a bar per
// throughput figure of this run, its rows/s as a ratio to the baseline of
// the same run, with the target as a red tick; panel (b) a line per
// figure across the runs of the history, its ratio to each run's baseline.
// Bars are <rect class="bar" data-scenario="...">, lines <polyline
// class="history" data-scenario="...">, which the test reads back.

// Sizes of the chart, in SVG user units.
const (
	chartWidth   = 960
	chartLabelW  = 330 // left column of panel (a), the figures' names
	chartBarH    = 18
	chartRowH    = 26
	chartPlotH   = 220 // height of panel (b)'s plot
	chartMaxRuns = 30  // runs of the history panel (b) shows, the latest
)

// chartColors are the colors of panel (b)'s lines, in turn.
var chartColors = []string{"#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"}

// chartFigures are the figures of e drawn: those of its largest row count.
func chartFigures(e historyEntry) []figure {
	most := 0
	for _, f := range e.Figures {
		most = max(most, f.Rows)
	}
	return slices.DeleteFunc(slices.Clone(e.Figures), func(f figure) bool { return f.Rows != most })
}

// svgWriter writes SVG elements, escaping text and attributes.
type svgWriter struct{ b strings.Builder }

func (w *svgWriter) printf(format string, args ...any) { fmt.Fprintf(&w.b, format, args...) }

// text writes a <text> element at x, y with attrs (already escaped).
func (w *svgWriter) text(x, y float64, attrs, s string) {
	w.printf(`<text x="%.1f" y="%.1f" %s>%s</text>`+"\n", x, y, attrs, esc(s))
}

// esc escapes s for XML text and attribute values.
func esc(s string) string {
	var b strings.Builder
	xml.EscapeText(&b, []byte(s))
	return b.String()
}

// writeChart writes the SVG of the latest run (the history's last entry)
// and the history to w.
func writeChart(w io.Writer, history []historyEntry) error {
	if len(history) == 0 {
		return fmt.Errorf("chart: no runs")
	}
	last := history[len(history)-1]
	figs := chartFigures(last)
	barsH := 60 + chartRowH*len(figs)
	names := make([]string, len(figs))
	for i, f := range figs {
		names[i] = f.Name
	}
	legendH := chartRowH * ((len(names) + 2) / 3)
	height := barsH + 80 + chartPlotH + 60 + legendH
	var s svgWriter
	s.printf(`<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="sans-serif" font-size="12">`+"\n",
		chartWidth, height, chartWidth, height)
	s.printf(`<rect width="100%%" height="100%%" fill="white"/>` + "\n")
	barPanel(&s, last, figs)
	historyPanel(&s, history, names, float64(barsH+40))
	s.printf("</svg>\n")
	_, err := io.WriteString(w, s.b.String())
	return err
}

// barPanel draws panel (a): a bar per figure of run e.
func barPanel(s *svgWriter, e historyEntry, figs []figure) {
	s.text(10, 20, `font-size="15" font-weight="bold"`, fmt.Sprintf("tether-bench %s%s: rows/s as a ratio to the baseline of the same run (go-sqlite3 insert)",
		e.Date, commitNote(e.Commit)))
	top := 45.0
	left, right := float64(chartLabelW), float64(chartWidth-150)
	scale := 1.0
	for _, f := range figs {
		scale = max(scale, f.Ratio, f.TargetRatio)
	}
	scale *= 1.05
	x := func(r float64) float64 { return left + (right-left)*r/scale }
	for i, f := range figs {
		y := top + float64(i*chartRowH)
		s.text(left-8, y+13, `text-anchor="end"`, f.Name)
		s.printf(`<rect class="bar" data-scenario="%s" x="%.1f" y="%.1f" width="%.1f" height="%d" fill="#4c78a8"/>`+"\n",
			esc(f.Name), left, y, x(f.Ratio)-left, chartBarH)
		s.text(x(f.Ratio)+5, y+13, `fill="#333"`, fmt.Sprintf("%s rows/s, %.2f ×", thousands(int(f.RowsPerSec)), f.Ratio))
		if f.TargetRatio > 0 {
			s.printf(`<line class="target" data-scenario="%s" x1="%.1f" x2="%.1f" y1="%.1f" y2="%.1f" stroke="#d62728" stroke-width="3"/>`+"\n",
				esc(f.Name), x(f.TargetRatio), x(f.TargetRatio), y-3, y+chartBarH+3)
		}
	}
	bottom := top + float64(len(figs)*chartRowH)
	s.printf(`<line x1="%.1f" x2="%.1f" y1="%.1f" y2="%.1f" stroke="#333" stroke-dasharray="4 3"/>`+"\n", x(1), x(1), top-5, bottom)
	s.text(x(1), bottom+14, `text-anchor="middle" fill="#333"`, "baseline = 1")
	s.printf(`<line x1="%.1f" x2="%.1f" y1="%.1f" y2="%.1f" stroke="#d62728" stroke-width="3"/>`+"\n", left, left+14, bottom+24, bottom+24)
	s.text(left+20, bottom+28, `fill="#333"`, "target")
}

// historyPanel draws panel (b) at top: a line per name across the last
// runs of history.
func historyPanel(s *svgWriter, history []historyEntry, names []string, top float64) {
	last := history[len(history)-1]
	runs := slices.DeleteFunc(slices.Clone(history), func(e historyEntry) bool { return e.Store != last.Store })
	runs = runs[max(0, len(runs)-chartMaxRuns):]
	s.text(10, top, `font-size="15" font-weight="bold"`, fmt.Sprintf("ratio to the baseline across the last %d runs of the history on %s (× baseline)",
		len(runs), last.Store))
	left, right := 90.0, float64(chartWidth-90)
	ptop, pbot := top+20, top+20+chartPlotH
	peak := 0.0
	for _, e := range runs {
		for _, f := range e.Figures {
			if slices.Contains(names, f.Name) {
				peak = max(peak, f.Ratio)
			}
		}
	}
	step := niceStep(peak / 4)
	ymax := max(step, step*math.Ceil(peak*1.05/step))
	x := func(i int) float64 {
		if len(runs) == 1 {
			return (left + right) / 2
		}
		return left + (right-left)*float64(i)/float64(len(runs)-1)
	}
	y := func(r float64) float64 { return pbot - (pbot-ptop)*r/ymax }
	for k := 0.0; k*step <= ymax+step/2; k++ {
		r := k * step
		s.printf(`<line x1="%.1f" x2="%.1f" y1="%.1f" y2="%.1f" stroke="#ddd"/>`+"\n", left, right, y(r), y(r))
		s.text(left-6, y(r)+4, `text-anchor="end" fill="#333"`, strconv.FormatFloat(math.Round(r*100)/100, 'f', -1, 64))
	}
	every := max(1, len(runs)/8)
	for i, e := range runs {
		if i%every == 0 || i == len(runs)-1 {
			s.text(x(i), pbot+16, `text-anchor="middle" fill="#333"`, e.Date)
			s.text(x(i), pbot+30, `text-anchor="middle" fill="#777"`, e.Commit)
		}
	}
	for k, name := range names {
		color := chartColors[k%len(chartColors)]
		var pts []string
		for i, e := range runs {
			if j := slices.IndexFunc(e.Figures, func(f figure) bool { return f.Name == name }); j >= 0 {
				pts = append(pts, fmt.Sprintf("%.1f,%.1f", x(i), y(e.Figures[j].Ratio)))
				s.printf(`<circle cx="%.1f" cy="%.1f" r="3" fill="%s"/>`+"\n", x(i), y(e.Figures[j].Ratio), color)
			}
		}
		s.printf(`<polyline class="history" data-scenario="%s" points="%s" fill="none" stroke="%s" stroke-width="2"/>`+"\n",
			esc(name), strings.Join(pts, " "), color)
		lx, ly := left+float64(k%3)*270, pbot+50+float64(k/3*chartRowH)
		s.printf(`<rect x="%.1f" y="%.1f" width="14" height="4" fill="%s"/>`+"\n", lx, ly-4, color)
		s.text(lx+20, ly, `fill="#333"`, name)
	}
}

// niceStep is the smallest of 0.05, 0.1, 0.2, 0.25, 0.5, 1, 2, 2.5, 5, 10,
// ... at least d.
func niceStep(d float64) float64 {
	for scale := 0.01; ; scale *= 10 {
		for _, m := range []float64{5, 10, 20, 25, 50} {
			if m*scale >= d {
				return m * scale
			}
		}
	}
}

// commitNote is " (commit)", or "" without one.
func commitNote(commit string) string {
	if commit == "" {
		return ""
	}
	return " (" + commit + ")"
}
