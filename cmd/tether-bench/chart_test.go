package main

import (
	"encoding/xml"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// svgShapes reads the SVG at path and returns, by data-scenario, the bars
// (rect class="bar") and the points of each history line (polyline
// class="history").
func svgShapes(t *testing.T, path string) (bars map[string]int, lines map[string]int) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	bars, lines = map[string]int{}, map[string]int{}
	dec := xml.NewDecoder(f)
	for {
		tok, err := dec.Token()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("%s is not well-formed XML: %v", path, err)
		}
		el, ok := tok.(xml.StartElement)
		if !ok {
			continue
		}
		attr := map[string]string{}
		for _, a := range el.Attr {
			attr[a.Name.Local] = a.Value
		}
		switch {
		case el.Name.Local == "rect" && attr["class"] == "bar":
			bars[attr["data-scenario"]]++
		case el.Name.Local == "polyline" && attr["class"] == "history":
			lines[attr["data-scenario"]] = len(strings.Fields(attr["points"]))
		}
	}
	return bars, lines
}

// Two runs with -out: the table lands in the file, the SVG beside it holds
// a bar per throughput scenario of the last run and a line per scenario
// through both runs of the history.
func TestChartAndHistory(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "bench", "latest.md")
	if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		args := []string{"-scenarios", "baseline,push,pull,syncnow", "-rows", "300,1000", "-runs", "1",
			"-other-stores=false", "-dir", t.TempDir(), "-out", out}
		var stdout strings.Builder
		if err := run(t.Context(), args, &stdout); err != nil {
			t.Fatal(err)
		}
		md, err := os.ReadFile(out)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(string(md), stdout.String()) || !strings.Contains(string(md), "(latest.svg)") {
			t.Fatalf("%s holds:\n%s\nwant the table printed:\n%s\nand a link to latest.svg", out, md, stdout.String())
		}
	}
	hist, err := os.ReadFile(filepath.Join(dir, "bench", "history.json"))
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Count(string(hist), `"date"`); got != 2 {
		t.Errorf("history.json holds %d runs, want 2:\n%s", got, hist)
	}
	bars, lines := svgShapes(t, filepath.Join(dir, "bench", "latest.svg"))
	want := []string{"push 1,000", "pull 1,000", "syncnow 1,000"} // the largest row count's
	if len(bars) != len(want) || len(lines) != len(want) {
		t.Errorf("bars %v and lines %v, want one of each for %q", bars, lines, want)
	}
	for _, s := range want {
		if bars[s] != 1 {
			t.Errorf("%d bars for %q, want 1", bars[s], s)
		}
		if lines[s] != 2 {
			t.Errorf("the history line of %q has %d points, want 2 (one per run)", s, lines[s])
		}
	}
}

// writeChart escapes what it writes and draws one point per run holding
// the figure.
func TestChartEscapes(t *testing.T) {
	f := func(name string, ratio float64) figure {
		return figure{Name: name, Rows: 10, RowsPerSec: 100 * ratio, BaselineRate: 100, Ratio: ratio, TargetRatio: 0.25}
	}
	runs := []historyEntry{
		{Date: "2026-01-01", Store: "sqlite", Figures: []figure{f("a<b & c", 0.1)}},
		{Date: "2026-01-02", Store: "postgres", Figures: []figure{f("a<b & c", 0.9)}}, // another store: not drawn
		{Date: "2026-01-03", Commit: `"x"`, Store: "sqlite", Figures: []figure{f("a<b & c", 0.2), f("d", 1.5)}},
	}
	path := filepath.Join(t.TempDir(), "c.svg")
	w, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := writeChart(w, runs); err != nil {
		t.Fatal(err)
	}
	w.Close()
	bars, lines := svgShapes(t, path)
	if bars["a<b & c"] != 1 || bars["d"] != 1 || lines["a<b & c"] != 2 || lines["d"] != 1 {
		t.Errorf("bars %v, lines %v; want a bar each, 2 points of \"a<b & c\" (the sqlite runs), 1 of \"d\"", bars, lines)
	}
}
