package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/tethersync/tether/internal/sqlitedriver"
)

// figure is one throughput figure of a run: what the chart and the
// history hold.
type figure struct {
	Name         string  `json:"name"` // the scenario and row count, e.g. "push 100,000"
	Rows         int     `json:"rows"`
	RowsPerSec   float64 `json:"rows_per_sec"`
	BaselineRate float64 `json:"baseline_rows_per_sec"` // the baseline of the same run and row count
	Ratio        float64 `json:"ratio"`                 // RowsPerSec / BaselineRate
	TargetRatio  float64 `json:"target_ratio,omitempty"`
}

// historyEntry is one run in the history file.
type historyEntry struct {
	Date    string   `json:"date"` // YYYY-MM-DD, UTC
	Time    string   `json:"time"` // RFC 3339
	Commit  string   `json:"commit,omitempty"`
	Store   string   `json:"store"`
	Driver  string   `json:"driver"`
	Figures []figure `json:"figures"`
}

// addFigure records a throughput figure of scenario on n rows that took d,
// with its target as a ratio to the baseline (0 for none; the targets are
// on 100,000 rows, other row counts have none). Without a
// baseline rate for n it records nothing.
func (b *bench) addFigure(t *table, scenario string, n int, d time.Duration, targetRatio float64) {
	base, ok := b.base[n]
	if !ok || base <= 0 {
		return
	}
	if n != 100_000 {
		targetRatio = 0 // issue 24's targets are on 100,000 rows
	}
	r := rate(n, d)
	t.figures = append(t.figures, figure{Name: scenario + " " + thousands(n), Rows: n, RowsPerSec: r,
		BaselineRate: base, Ratio: r / base, TargetRatio: targetRatio})
}

// writeOutputs writes the table (md, as written to stdout) to -out with a
// link to the chart, appends this run to -history, and writes the chart
// beside -out.
func writeOutputs(ctx context.Context, cfg config, t *table, md []byte) error {
	history := cfg.history
	if history == "" && cfg.out != "" {
		history = filepath.Join(filepath.Dir(cfg.out), "history.json")
	}
	var runs []historyEntry
	if history != "" {
		var err error
		if runs, err = appendHistory(ctx, history, cfg, t.figures); err != nil {
			return err
		}
	}
	if cfg.out == "" {
		return nil
	}
	svg := strings.TrimSuffix(cfg.out, filepath.Ext(cfg.out)) + ".svg"
	if runs == nil {
		runs = []historyEntry{newEntry(ctx, cfg, t.figures)}
	}
	var chart bytes.Buffer
	if err := writeChart(&chart, runs); err != nil {
		return err
	}
	if err := os.WriteFile(svg, chart.Bytes(), 0o644); err != nil {
		return fmt.Errorf("-out: write the chart: %w", err)
	}
	md = append(md, fmt.Sprintf("\n![rows/s as a ratio to the baseline, this run and the history](%s)\n", filepath.Base(svg))...)
	if err := os.WriteFile(cfg.out, md, 0o644); err != nil {
		return fmt.Errorf("-out: %w", err)
	}
	return nil
}

// newEntry is the history entry of this run.
func newEntry(ctx context.Context, cfg config, figs []figure) historyEntry {
	now := time.Now().UTC()
	return historyEntry{Date: now.Format("2006-01-02"), Time: now.Format(time.RFC3339), Commit: gitCommit(ctx),
		Store: cfg.store, Driver: sqlitedriver.Name, Figures: figs}
}

// appendHistory appends this run to the history file at path (a JSON
// array, created if missing) and returns the runs it holds.
func appendHistory(ctx context.Context, path string, cfg config, figs []figure) ([]historyEntry, error) {
	var runs []historyEntry
	data, err := os.ReadFile(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return nil, fmt.Errorf("-history: %w", err)
	default:
		if err := json.Unmarshal(data, &runs); err != nil {
			return nil, fmt.Errorf("-history %s: not a tether-bench history: %w", path, err)
		}
	}
	runs = append(runs, newEntry(ctx, cfg, figs))
	data, err = json.MarshalIndent(runs, "", "  ")
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(path, append(data, '\n'), 0o644); err != nil {
		return nil, fmt.Errorf("-history: %w", err)
	}
	return runs, nil
}

// gitCommit is the short commit of the working directory's checkout, or
// "" when git cannot say.
func gitCommit(ctx context.Context) string {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "git", "rev-parse", "--short", "HEAD").Output()
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(out))
}
