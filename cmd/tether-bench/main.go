// Command tether-bench measures tether end to end: a real server on
// loopback, real device databases in a temporary directory, and plain
// go-sqlite3 as the baseline, all in one run. It prints one markdown table.
//
//	go run ./cmd/tether-bench                      # the default scenarios
//	go run ./cmd/tether-bench -million             # adds 1,000,000-row push and pull
//	go run ./cmd/tether-bench -rows 1000 -runs 1 -scenarios push,pull
//	go run ./cmd/tether-bench -scenarios latency,fleet -fleet 50 -fleet-duration 30s
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
package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"time"

	_ "github.com/mattn/go-sqlite3"

	"github.com/tethersync/tether/internal/dbserver"
)

// config is the command line.
type config struct {
	rows      []int
	batch     int
	runs      int
	store     string
	scenarios map[string]bool
	memRows   int
	syncRows  int
	dir       string

	rtt           time.Duration // added to each request's round trip in the latency scenario
	fleet         []int         // device counts of the fleet scenario
	fleetDuration time.Duration // how long each fleet runs
}

// maxFleet bounds -fleet: each device holds a SQLite file and a connection
// open on both sides.
const maxFleet = 1000

var allScenarios = []string{"baseline", "push", "pull", "snapshot", "syncnow", "incremental", "noop", "wire", "memory", "latency", "fleet"}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "tether-bench:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, out io.Writer) error {
	fs := flag.NewFlagSet("tether-bench", flag.ContinueOnError)
	rows := fs.String("rows", "1000,10000,100000", "row counts for the push, pull and baseline scenarios")
	million := fs.Bool("million", false, "add 1,000,000 rows to -rows")
	batch := fs.Int("batch", 1000, "rows per push batch and pull page")
	runs := fs.Int("runs", 3, "runs per figure; the median is reported")
	store := fs.String("store", "sqlite", "server store: sqlite, postgres or mysql (postgres and mysql: a throwaway server started from the machine's PostgreSQL or MariaDB/MySQL binaries)")
	scen := fs.String("scenarios", strings.Join(allScenarios, ","), "scenarios to run")
	memRows := fs.Int("mem-rows", 1_000_000, "rows pulled by the child process of the memory scenario")
	syncRows := fs.Int("sync-rows", 100_000, "rows on the device of the incremental and no-op scenarios")
	rtt := fs.Duration("rtt", 300*time.Millisecond, "round-trip time the latency scenario's link adds to every request (its targets: 1 round trip + 50 ms for a no-op sync, 2 + 100 ms for one new row)")
	fleet := fs.String("fleet", "50,200", "device counts of the fleet scenario")
	fleetDuration := fs.Duration("fleet-duration", 10*time.Second, "how long each fleet of the fleet scenario runs")
	dir := fs.String("dir", "", "scratch directory (default a new temporary one, removed at the end)")
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile of the whole run (server and devices) to this file")
	childURL := fs.String("child-pull", "", "internal: pull from this server URL and report (memory scenario)")
	childDB := fs.String("child-db", "", "internal: database of -child-pull")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *childURL != "" {
		return childPull(ctx, *childURL, *childDB, *batch)
	}
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	cfg := config{batch: *batch, runs: *runs, store: *store, memRows: *memRows, syncRows: *syncRows,
		scenarios: map[string]bool{}, rtt: *rtt, fleetDuration: *fleetDuration}
	for f := range strings.SplitSeq(*fleet, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 || n > maxFleet {
			return fmt.Errorf("-fleet: %q is not a device count from 1 to %d", f, maxFleet)
		}
		cfg.fleet = append(cfg.fleet, n)
	}
	if cfg.rtt < 0 || cfg.rtt > 10*time.Second {
		return fmt.Errorf("-rtt %s: want from 0 to 10s", cfg.rtt)
	}
	if cfg.fleetDuration <= 0 || cfg.fleetDuration > time.Hour {
		return fmt.Errorf("-fleet-duration %s: want more than 0 and at most 1h", cfg.fleetDuration)
	}
	for f := range strings.SplitSeq(*rows, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 {
			return fmt.Errorf("-rows: %q is not a positive row count", f)
		}
		cfg.rows = append(cfg.rows, n)
	}
	if *million {
		cfg.rows = append(cfg.rows, 1_000_000)
	}
	for s := range strings.SplitSeq(*scen, ",") {
		s = strings.TrimSpace(s)
		if !slices.Contains(allScenarios, s) {
			return fmt.Errorf("-scenarios: unknown scenario %q (known: %s)", s, strings.Join(allScenarios, ", "))
		}
		cfg.scenarios[s] = true
	}
	if cfg.runs < 1 || cfg.batch < 1 || cfg.memRows < 1 || cfg.syncRows < 100 {
		return fmt.Errorf("-runs and -batch must be at least 1, -mem-rows at least 1, -sync-rows at least 100")
	}
	if cfg.store != "sqlite" && cfg.store != "postgres" && cfg.store != "mysql" {
		return fmt.Errorf("-store %q: want sqlite, postgres or mysql", cfg.store)
	}
	if *dir == "" {
		d, err := os.MkdirTemp("", "tether-bench-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(d)
		*dir = d
	}
	cfg.dir = *dir
	b := &bench{cfg: cfg, dir: cfg.dir, reg: registry(), templates: map[int]string{}, servers: map[int]*benchServer{}}
	defer b.close()
	if kind, ok := map[string]dbserver.Kind{"postgres": dbserver.Postgres, "mysql": dbserver.MariaDB}[cfg.store]; ok {
		db, err := dbserver.Start(kind)
		if err != nil {
			return fmt.Errorf("-store %s: %w", cfg.store, err)
		}
		b.db = db
	}
	t, err := b.run(ctx, func(s string) { fmt.Fprintln(os.Stderr, "tether-bench:", s) })
	if err != nil {
		return err
	}
	t.write(out, cfg)
	return nil
}

// table is the report: one row per figure.
type table struct {
	rows [][5]string // scenario, rows, result, target, met
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
	fmt.Fprintf(w, "tether-bench %s: %s, %d CPUs, %s %s/%s; store %s, batch %d, median of %d runs\n\n",
		time.Now().UTC().Format("2006-01-02"), cpuModel(), runtime.NumCPU(), runtime.Version(),
		runtime.GOOS, runtime.GOARCH, cfg.store, cfg.batch, cfg.runs)
	fmt.Fprintln(w, "| scenario | rows | result | target | met |")
	fmt.Fprintln(w, "|---|---:|---|---|---|")
	for _, r := range t.rows {
		fmt.Fprintf(w, "| %s | %s | %s | %s | %s |\n", r[0], r[1], r[2], r[3], r[4])
	}
}

// run runs the chosen scenarios in an order that reuses what earlier ones
// built.
func (b *bench) run(ctx context.Context, log func(string)) (*table, error) {
	t := &table{}
	cfg := b.cfg
	base := map[int]float64{} // rows -> baseline rows/s
	rate := func(n int, d time.Duration) float64 { return float64(n) / d.Seconds() }
	for _, n := range cfg.rows {
		if cfg.scenarios["baseline"] || cfg.scenarios["push"] || cfg.scenarios["pull"] {
			log(fmt.Sprintf("baseline, %d rows", n))
			d, err := b.measureBaseline(ctx, n)
			if err != nil {
				return nil, err
			}
			base[n] = rate(n, d)
			if cfg.scenarios["baseline"] {
				t.add("baseline: go-sqlite3 insert, one prepared statement, one transaction", n, perSec(n, d), "", nil)
			}
		}
		for _, kind := range []string{"push", "pull"} {
			if !cfg.scenarios[kind] {
				continue
			}
			log(fmt.Sprintf("%s, %d rows", kind, n))
			measure := b.measurePush
			if kind == "pull" {
				measure = b.measurePull
			}
			d, err := measure(ctx, n)
			if err != nil {
				return nil, err
			}
			ratio := rate(n, d) / base[n]
			label := map[string]string{"push": "push into an empty server", "pull": "pull into a fresh device (first SyncNow)"}[kind]
			if n != 100_000 {
				t.add(label, n, fmt.Sprintf("%s, %.2f × baseline", perSec(n, d), ratio), "", nil)
				continue
			}
			goal := 50_000.0
			if cfg.store != "sqlite" {
				goal = 40_000
			}
			ok := rate(n, d) >= goal
			t.add(label, n, perSec(n, d), "≥ "+thousands(int(goal))+" rows/s", &ok)
			ok = ratio >= 0.25
			t.add(label+": ratio to baseline", n, fmt.Sprintf("%.2f × baseline", ratio), "≥ 0.25 × baseline", &ok)
		}
	}
	if cfg.scenarios["snapshot"] {
		for _, n := range cfg.rows {
			if n < 10_000 {
				continue
			}
			log(fmt.Sprintf("first sync through a snapshot, %d rows", n))
			d, err := b.measureSnapshot(ctx, n)
			if err != nil {
				return nil, err
			}
			t.add("first sync through the snapshot path (rebuild)", n, perSec(n, d), "", nil)
		}
	}
	if cfg.scenarios["syncnow"] {
		n := slices.Max(cfg.rows)
		log(fmt.Sprintf("SyncNow with %d local changes", n))
		if _, ok := base[n]; !ok {
			d, err := b.measureBaseline(ctx, n)
			if err != nil {
				return nil, err
			}
			base[n] = rate(n, d)
		}
		r, err := b.measureFullSync(ctx, n)
		if err != nil {
			return nil, err
		}
		ratio := rate(n, r.took) / base[n]
		ok := ratio >= 0.2
		t.add("SyncNow of a device holding local changes, timed whole", n, fmt.Sprintf("%s, %.2f × baseline", perSec(n, r.took), ratio),
			"≥ 0.2 × baseline", &ok)
		ok = r.pulled*100 <= n
		t.add("SyncNow of local changes: rows downloaded back", n, fmt.Sprintf("%d rows, %s on the wire (%s reported)", r.pulled,
			bytesText(r.wireRead), bytesText(r.reported)), "≤ 1% of rows pushed", &ok)
	}
	if cfg.scenarios["incremental"] {
		log(fmt.Sprintf("incremental SyncNow on %d rows", cfg.syncRows))
		d, err := b.measureSyncNow(ctx, cfg.syncRows, 100, max(cfg.runs, 5))
		if err != nil {
			return nil, err
		}
		ok := d <= 30*time.Millisecond
		t.add("incremental SyncNow: 100 changed rows", cfg.syncRows, ms(d), "≤ 30 ms", &ok)
	}
	if cfg.scenarios["noop"] {
		log(fmt.Sprintf("no-op SyncNow on %d rows", cfg.syncRows))
		d, err := b.measureSyncNow(ctx, cfg.syncRows, 0, max(cfg.runs, 20))
		if err != nil {
			return nil, err
		}
		ok := d <= 5*time.Millisecond
		t.add("no-op SyncNow", cfg.syncRows, ms(d), "≤ 5 ms", &ok)
	}
	if cfg.scenarios["wire"] {
		n := min(10_000, slices.Max(cfg.rows))
		log(fmt.Sprintf("wire bytes, %d rows", n))
		gz, err := b.measureWire(ctx, n, false)
		if err != nil {
			return nil, err
		}
		plain, err := b.measureWire(ctx, n, true)
		if err != nil {
			return nil, err
		}
		for _, dir := range []struct {
			name      string
			gz, plain float64
		}{{"push", gz.push, plain.push}, {"pull", gz.pull, plain.pull}} {
			ok := dir.plain >= 3*dir.gz
			t.add("wire bytes per row, "+dir.name, n, fmt.Sprintf("%.0f gzip, %.0f plain (%.1f×)", dir.gz, dir.plain, dir.plain/dir.gz),
				"gzip ≥ 3× smaller", &ok)
		}
	}
	if cfg.scenarios["memory"] {
		small := max(1, cfg.memRows/10)
		log(fmt.Sprintf("memory: child processes pulling %d and %d rows", small, cfg.memRows))
		_, tSmall, err := b.measureMemory(ctx, small)
		if err != nil {
			return nil, err
		}
		rss, tBig, err := b.measureMemory(ctx, cfg.memRows)
		if err != nil {
			return nil, err
		}
		ok := rss <= 200<<20
		t.add("peak resident memory of a process pulling", cfg.memRows, fmt.Sprintf("%.0f MB", float64(rss)/(1<<20)), "≤ 200 MB", &ok)
		ratio := tBig.Seconds() / tSmall.Seconds()
		ok = ratio <= 12
		t.add(fmt.Sprintf("pull time, %s rows / %s rows", thousands(cfg.memRows), thousands(small)), cfg.memRows,
			fmt.Sprintf("%.1f× (%s vs %s)", ratio, secs(tBig), secs(tSmall)), "≤ 12×", &ok)
	}
	if cfg.scenarios["latency"] {
		log(fmt.Sprintf("latency: SyncNow over a link adding %s of round trip", cfg.rtt))
		noop, one, err := b.measureLatency(ctx, latencyRows)
		if err != nil {
			return nil, err
		}
		link := fmt.Sprintf("over a link adding %s of round trip", cfg.rtt)
		goal := cfg.rtt + 50*time.Millisecond
		ok := noop.took <= goal
		t.add("latency: no-op SyncNow "+link, latencyRows, secs(noop.took), "≤ "+secs(goal), &ok)
		ok = noop.requests <= 1
		t.add("latency: requests of a no-op SyncNow", latencyRows, requestsText(noop.requests), "1 request", &ok)
		goal = 2*cfg.rtt + 100*time.Millisecond
		ok = one.took <= goal
		t.add("latency: SyncNow of one new row "+link, latencyRows, secs(one.took), "≤ "+secs(goal), &ok)
		ok = one.requests <= 2
		t.add("latency: requests of a SyncNow of one new row", latencyRows, requestsText(one.requests), "≤ 2 requests", &ok)
	}
	if cfg.scenarios["fleet"] {
		for _, n := range cfg.fleet {
			log(fmt.Sprintf("fleet of %d devices for %s", n, cfg.fleetDuration))
			r, err := b.measureFleet(ctx, n)
			if err != nil {
				return nil, err
			}
			rate := float64(r.syncs) / r.elapsed.Seconds()
			result := fmt.Sprintf("%s syncs/s (%s syncs in %s, pulling %.0f rows each on average)", thousands(int(rate)),
				thousands(r.syncs), secs(r.elapsed), float64(r.pulled)/float64(r.syncs))
			label := fmt.Sprintf("fleet of %d devices, each saving one row then SyncNow", n)
			if n == 50 {
				ok := rate >= 612
				t.add(label+": throughput", r.syncs, result, "≥ 612 syncs/s", &ok)
			} else {
				t.add(label+": throughput", r.syncs, result, "", nil)
			}
			result = fmt.Sprintf("p50 %s, p99 %s", secs(r.p50), secs(r.p99))
			if n == 200 {
				ok := r.p99 < time.Second
				t.add(label+": SyncNow latency", r.syncs, result, "p99 < 1 s", &ok)
			} else {
				t.add(label+": SyncNow latency", r.syncs, result, "", nil)
			}
		}
	}
	return t, nil
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
