// Command tether-bench measures tether end to end: a real server on
// loopback, real device databases in a temporary directory, and plain
// go-sqlite3 as the baseline, all in one run. It prints one markdown table.
//
//	go run ./cmd/tether-bench                      # the default scenarios
//	go run ./cmd/tether-bench -million             # adds 1,000,000-row push and pull
//	go run ./cmd/tether-bench -rows 1000 -runs 1 -scenarios push,pull
//	go run ./cmd/tether-bench -scenarios latency,fleet -fleet 50 -fleet-duration 30s
//	go run ./cmd/tether-bench -scenarios scoped    # scopes: a member of 1 of 100 teams, beside the tenant unscoped
//	go run ./cmd/tether-bench -scenarios isolation -store postgres  # tenant B's syncs while tenant A pushes 100,000-row sessions
//	go run ./cmd/tether-bench -scenarios dbsize    # the SQLite server file after a long run of updates and deletes
//	go run ./cmd/tether-bench -out docs/bench/latest.md  # also the table in that file, a chart beside it, a run in docs/bench/history.json
//
// Each figure is the median of -runs runs. Setup (filling the device
// database, starting servers) is not counted.
//
// Besides throughput, two scenarios look at what a field deployment feels:
// latency syncs a device through a link that adds -rtt to the round trip of
// every request (a cellular or satellite link), and counts the requests a
// sync makes; fleet runs -fleet devices at once against one server, each
// saving a row and syncing over and over for -fleet-duration, and reports
// the syncs per second and the p50 and p99 of SyncNow's latency.
//
// The cpu scenario runs the server in a child process and reports the CPU
// time of one small sync (one saved row, one SyncNow, -cpu-devices active
// devices) on the device and on the server. The push scenario also pushes
// into a PostgreSQL and a MariaDB store when the machine has their
// binaries (-other-stores=false to skip).
//
// The scoped scenario, run only when -scenarios names it, loads a tenant of
// -scoped-teams teams of -scoped-team-rows projects each, once with the
// scopes of the README's field-service example and once without, and times
// a device of a member of one team: its first sync, a no-op sync, and a
// sync after -scoped-changes changes in other teams, with the rows each
// pulled.
//
// The isolation scenario, run only when -scenarios names it, measures what
// one tenant's big pushes do to another's syncs: tenant A pushes
// -isolation-sessions sessions of -isolation-rows rows while a device of
// tenant B saves one row and syncs, over and over; it reports B's p50, p99
// and worst SyncNow, for each server -max-session-rows of
// -isolation-session-rows. The dbsize scenario, also only when named,
// churns a SQLite server through HTTP with its sweep on, without and with
// retention, and reports the database file's size.
package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"
	"time"

	"github.com/tethersync/tether/internal/dbserver"
	"github.com/tethersync/tether/internal/sqlitedriver"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "tether-bench:", err)
		os.Exit(1)
	}
}

// run parses the command line args, runs the scenarios it asks for, and
// writes the table to out.
func run(ctx context.Context, args []string, out io.Writer) error {
	cfg, err := parseConfig(args)
	if err != nil {
		return err
	}
	if cfg.childURL != "" {
		return childPull(ctx, cfg.childURL, cfg.childDB, cfg.batch)
	}
	if cfg.childServe != "" {
		return childServe(ctx, cfg.store, cfg.childServe)
	}
	if cfg.cpuProfile != "" {
		stop, err := startCPUProfile(cfg.cpuProfile)
		if err != nil {
			return err
		}
		defer stop()
	}
	b, err := newBench(cfg)
	if err != nil {
		return err
	}
	defer b.close()
	t, err := b.run(ctx, func(s string) { fmt.Fprintln(os.Stderr, "tether-bench:", s) })
	if err != nil {
		return err
	}
	if cfg.childTable {
		return json.NewEncoder(out).Encode(t.rows)
	}
	if cfg.drivers == "both" {
		other, err := otherDriver(ctx, args, func(s string) { fmt.Fprintln(os.Stderr, "tether-bench:", s) })
		if err != nil {
			return err
		}
		var md bytes.Buffer
		t.writeBoth(&md, b.cfg, other)
		return output(ctx, out, b.cfg, t, md.Bytes())
	}
	var md bytes.Buffer
	t.write(&md, b.cfg)
	return output(ctx, out, b.cfg, t, md.Bytes())
}

// output writes the table md to out, and to -out and -history if set.
func output(ctx context.Context, out io.Writer, cfg config, t *table, md []byte) error {
	if _, err := out.Write(md); err != nil {
		return err
	}
	return writeOutputs(ctx, cfg, t, md)
}

// startCPUProfile starts profiling the CPU into the file at path; stop
// ends it.
func startCPUProfile(path string) (stop func(), err error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, err
	}
	return func() {
		pprof.StopCPUProfile()
		f.Close()
	}, nil
}

// newBench makes the scratch directory, unless cfg names one, and starts
// the database server of -store postgres or mysql. Its close removes them.
func newBench(cfg config) (*bench, error) {
	b := &bench{cfg: cfg, dir: cfg.dir, reg: registry(), templates: map[int]string{}, servers: map[int]*benchServer{},
		base: map[int]float64{}}
	if b.dir == "" {
		d, err := os.MkdirTemp("", "tether-bench-")
		if err != nil {
			return nil, err
		}
		b.dir, b.removeDir = d, true
		b.cfg.dir = d
	}
	if kind, ok := map[string]dbserver.Kind{"postgres": dbserver.Postgres, "mysql": dbserver.MariaDB}[cfg.store]; ok {
		db, err := dbserver.Start(kind)
		if err != nil {
			b.close()
			return nil, fmt.Errorf("-store %s: %w", cfg.store, err)
		}
		b.db = db
	}
	return b, nil
}

// table is the report: one row per figure.
type table struct {
	rows    [][5]string // scenario, rows, result, target, met
	figures []figure    // the throughput figures, for the chart and the history
}

func (t *table) add(scenario string, rows int, result, target string, met *bool) {
	r := ""
	if rows > 0 {
		r = thousands(rows)
	}
	m := ""
	if met != nil {
		m = map[bool]string{true: "yes", false: "**no**"}[*met]
	}
	t.rows = append(t.rows, [5]string{scenario, r, result, target, m})
}

func (t *table) write(w io.Writer, cfg config) {
	fmt.Fprintf(w, "tether-bench %s: %s, %d CPUs, %s %s/%s; SQLite driver %s; store %s, batch %d, median of %d runs\n\n",
		time.Now().UTC().Format("2006-01-02"), cpuModel(), runtime.NumCPU(), runtime.Version(),
		runtime.GOOS, runtime.GOARCH, sqlitedriver.Name, cfg.store, cfg.batch, cfg.runs)
	fmt.Fprintln(w, "| scenario | rows | result | target | met |")
	fmt.Fprintln(w, "|---|---:|---|---|---|")
	for _, r := range t.rows {
		fmt.Fprintf(w, "| %s | %s | %s | %s | %s |\n", r[0], r[1], r[2], r[3], r[4])
	}
}

// requestsText is a request count for the table.
func requestsText(n int64) string {
	if n == 1 {
		return "1 request"
	}
	return fmt.Sprintf("%d requests", n)
}

func perSec(n int, d time.Duration) string {
	return fmt.Sprintf("%s rows/s (%s)", thousands(int(float64(n)/d.Seconds())), secs(d))
}

func ms(d time.Duration) string { return fmt.Sprintf("%.1f ms", float64(d)/float64(time.Millisecond)) }

func secs(d time.Duration) string {
	if d < time.Second {
		return ms(d)
	}
	return fmt.Sprintf("%.2f s", d.Seconds())
}

// thousands formats n with commas: 1,000,000.
func thousands(n int) string {
	s := strconv.Itoa(n)
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}

// cpuModel reads the processor's name on Linux.
func cpuModel() string {
	f, err := os.Open("/proc/cpuinfo")
	if err != nil {
		return runtime.GOARCH
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return runtime.GOARCH
}
