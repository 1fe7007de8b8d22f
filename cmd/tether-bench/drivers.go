package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"time"

	"github.com/tethersync/tether/internal/sqlitedriver"
)

// otherRun is the table of a run with the other SQLite driver.
type otherRun struct {
	driver string
	rows   [][5]string
}

// otherDriver builds tether-bench with the other SQLite driver (without
// cgo when this binary has the cgo driver, with it otherwise) and runs it
// with args, returning its table.
func otherDriver(ctx context.Context, args []string, log func(string)) (otherRun, error) {
	dir, err := os.MkdirTemp("", "tether-bench-driver-")
	if err != nil {
		return otherRun{}, err
	}
	defer os.RemoveAll(dir)
	exe := filepath.Join(dir, "tether-bench")
	if runtime.GOOS == "windows" {
		exe += ".exe"
	}
	cgo, name := "0", "ncruces/go-sqlite3 (pure Go)"
	if sqlitedriver.PureGo {
		cgo, name = "1", "mattn/go-sqlite3 (cgo)"
	}
	log("building tether-bench with " + name)
	build := exec.CommandContext(ctx, "go", "build", "-o", exe, "github.com/tethersync/tether/cmd/tether-bench")
	build.Env = append(os.Environ(), "CGO_ENABLED="+cgo)
	if out, err := build.CombinedOutput(); err != nil {
		return otherRun{}, fmt.Errorf("-drivers both: build tether-bench with CGO_ENABLED=%s (run it from this module): %w\n%s", cgo, err, out)
	}
	log("running the scenarios again with " + name)
	scratch := filepath.Join(dir, "scratch") // not this run's -dir, whose files it would find
	if err := os.Mkdir(scratch, 0o755); err != nil {
		return otherRun{}, err
	}
	var out bytes.Buffer
	run := exec.CommandContext(ctx, exe, append(append([]string(nil), args...), "-drivers=", "-child-table", "-dir", scratch)...)
	run.Stdout, run.Stderr = &out, os.Stderr
	if err := run.Run(); err != nil {
		return otherRun{}, fmt.Errorf("-drivers both: run with %s: %w", name, err)
	}
	r := otherRun{driver: name}
	if err := json.Unmarshal(out.Bytes(), &r.rows); err != nil {
		return otherRun{}, fmt.Errorf("-drivers both: read the table of %s: %w", name, err)
	}
	return r, nil
}

// writeBoth writes t and other's results side by side, one row per figure
// (both runs ran the same scenarios, so their rows line up).
func (t *table) writeBoth(w io.Writer, cfg config, other otherRun) {
	fmt.Fprintf(w, "tether-bench %s: %s, %d CPUs, %s %s/%s; store %s, batch %d, median of %d runs; both SQLite drivers\n\n",
		time.Now().UTC().Format("2006-01-02"), cpuModel(), runtime.NumCPU(), runtime.Version(),
		runtime.GOOS, runtime.GOARCH, cfg.store, cfg.batch, cfg.runs)
	fmt.Fprintf(w, "| scenario | rows | %s | %s |\n", sqlitedriver.Name, other.driver)
	fmt.Fprintln(w, "|---|---:|---|---|")
	for i, r := range t.rows {
		res := "(missing)"
		if i < len(other.rows) && other.rows[i][0] == r[0] && other.rows[i][1] == r[1] {
			res = other.rows[i][2]
		}
		fmt.Fprintf(w, "| %s | %s | %s | %s |\n", r[0], r[1], r[2], res)
	}
}
