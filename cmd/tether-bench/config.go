package main

import (
	"flag"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
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
	dir       string // scratch directory; "" for a new temporary one

	rtt           time.Duration // added to each request's round trip in the latency scenario
	fleet         []int         // device counts of the fleet scenario
	fleetDuration time.Duration // how long each fleet runs

	scopedTeams    int // teams of the scoped scenario's tenant
	scopedTeamRows int // projects per team
	scopedChanges  int // changes in other teams before the incremental sync

	isolationRows        int           // rows of each session of tenant A in the isolation scenario
	isolationSessions    int           // sessions tenant A pushes
	isolationSessionRows []int         // server -max-session-rows of each isolation run
	dbsizeRows           int           // rows the dbsize scenario's device holds
	dbsizeRounds         int           // syncs of changes in the dbsize scenario
	dbsizeSweep          time.Duration // the server's sweep interval in the dbsize scenario
	dbsizeRetention      time.Duration // session and audit retention in the dbsize scenario's run with retention

	otherStores bool // the push scenario also pushes into PostgreSQL and MySQL stores

	cpuDevices int // devices registered on the cpu scenario's server
	cpuSyncs   int // measured syncs of the cpu scenario

	out     string // -out: also write the table to this file, and the chart beside it
	history string // -history: append the run's figures to this JSON file

	cpuProfile string // file of the CPU profile of the whole run, or ""
	childServe string // internal: serve the store at this path or DSN and report CPU time (cpu scenario)
	childURL   string // internal: pull from this server and report (memory scenario)
	childDB    string // internal: database of childURL

	drivers    string // "both": run again with the other SQLite driver and report side by side
	childTable bool   // internal: print the table's rows as JSON (the other driver's run)
}

// maxFleet bounds -fleet: each device holds a SQLite file and a connection
// open on both sides.
const maxFleet = 1000

var allScenarios = []string{"baseline", "push", "pull", "snapshot", "syncnow", "incremental", "noop", "wire", "memory", "cpu", "latency", "fleet", "scoped", "isolation", "dbsize"}

// defaultScenarios are the scenarios run without -scenarios: all but
// scoped, which loads two tenants of 100,000 rows (about a minute),
// isolation, which pushes 100,000-row sessions (a minute or two), and
// dbsize, which churns a server for a minute.
var defaultScenarios = slices.DeleteFunc(slices.Clone(allScenarios), func(s string) bool {
	return s == "scoped" || s == "isolation" || s == "dbsize"
})

// listFlags are the flags that config holds parsed from lists.
type listFlags struct {
	rows, fleet, scenarios, isolationSessionRows string
	million                                      bool
}

// parseConfig parses the command line args and checks it.
func parseConfig(args []string) (config, error) {
	var cfg config
	var lists listFlags
	fs := flag.NewFlagSet("tether-bench", flag.ContinueOnError)
	fs.StringVar(&lists.rows, "rows", "1000,10000,100000", "row counts for the push, pull and baseline scenarios")
	fs.BoolVar(&lists.million, "million", false, "add 1,000,000 rows to -rows")
	fs.IntVar(&cfg.batch, "batch", 1000, "rows per push batch and pull page")
	fs.IntVar(&cfg.runs, "runs", 3, "runs per figure; the median is reported")
	fs.StringVar(&cfg.store, "store", "sqlite", "server store: sqlite, postgres or mysql (postgres and mysql: a throwaway server started from the machine's PostgreSQL or MariaDB/MySQL binaries)")
	fs.StringVar(&lists.scenarios, "scenarios", strings.Join(defaultScenarios, ","), "scenarios to run (known: "+strings.Join(allScenarios, ",")+")")
	fs.IntVar(&cfg.memRows, "mem-rows", 1_000_000, "rows pulled by the child process of the memory scenario")
	fs.IntVar(&cfg.syncRows, "sync-rows", 100_000, "rows on the device of the incremental and no-op scenarios")
	fs.DurationVar(&cfg.rtt, "rtt", 300*time.Millisecond, "round-trip time the latency scenario's link adds to every request (its targets: 1 round trip + 50 ms for a no-op sync, 2 + 100 ms for one new row)")
	fs.StringVar(&lists.fleet, "fleet", "50,200", "device counts of the fleet scenario")
	fs.DurationVar(&cfg.fleetDuration, "fleet-duration", 10*time.Second, "how long each fleet of the fleet scenario runs")
	fs.IntVar(&cfg.scopedTeams, "scoped-teams", 100, "teams of the scoped scenario's tenant (at most 500)")
	fs.IntVar(&cfg.scopedTeamRows, "scoped-team-rows", 1000, "rows (projects) per team of the scoped scenario")
	fs.IntVar(&cfg.scopedChanges, "scoped-changes", 10_000, "rows changed in other teams before the scoped scenario's incremental sync")
	fs.IntVar(&cfg.isolationRows, "isolation-rows", 100_000, "rows of each session tenant A pushes in the isolation scenario")
	fs.IntVar(&cfg.isolationSessions, "isolation-sessions", 3, "sessions tenant A pushes, one after another, in the isolation scenario (at most 20)")
	fs.StringVar(&lists.isolationSessionRows, "isolation-session-rows", "100000,10000", "the server's -max-session-rows in each run of the isolation scenario")
	fs.IntVar(&cfg.dbsizeRows, "dbsize-rows", 10_000, "rows the device of the dbsize scenario holds (each round changes 30% of them)")
	fs.IntVar(&cfg.dbsizeRounds, "dbsize-rounds", 100, "syncs of changes in each run of the dbsize scenario")
	fs.DurationVar(&cfg.dbsizeSweep, "dbsize-sweep", time.Second, "the server's sweep interval in the dbsize scenario")
	fs.DurationVar(&cfg.dbsizeRetention, "dbsize-retention", 2*time.Second, "the retention of committed sessions and audit entries in the dbsize scenario's run with retention")
	fs.BoolVar(&cfg.otherStores, "other-stores", true, "the push scenario also pushes its largest row count into a PostgreSQL and a MariaDB store started from the machine's binaries (a row saying skipped without them)")
	fs.IntVar(&cfg.cpuDevices, "cpu-devices", 50, "devices registered and synced on the cpu scenario's server (at most 1000)")
	fs.IntVar(&cfg.cpuSyncs, "cpu-syncs", 300, "syncs of one new row each that the cpu scenario measures")
	fs.StringVar(&cfg.out, "out", "", "also write the table to this markdown file, and a chart of the throughput figures beside it (the same name ending in .svg)")
	fs.StringVar(&cfg.history, "history", "", "append this run's throughput figures to this JSON file, which the chart's history panel draws (default history.json beside -out; none without -out)")
	fs.StringVar(&cfg.dir, "dir", "", "scratch directory (default a new temporary one, removed at the end)")
	fs.StringVar(&cfg.cpuProfile, "cpuprofile", "", "write a CPU profile of the whole run (server and devices) to this file")
	fs.StringVar(&cfg.childURL, "child-pull", "", "internal: pull from this server URL and report (memory scenario)")
	fs.StringVar(&cfg.childDB, "child-db", "", "internal: database of -child-pull")
	fs.StringVar(&cfg.childServe, "child-server", "", "internal: serve the store at this path or DSN (of the kind of -store) and report CPU time (cpu scenario)")
	fs.StringVar(&cfg.drivers, "drivers", "", `"both": run the scenarios again with the other SQLite driver (a copy of tether-bench built with or without cgo; needs the go command and this module) and report the two side by side`)
	fs.BoolVar(&cfg.childTable, "child-table", false, "internal: print the table's rows as JSON")
	if err := fs.Parse(args); err != nil {
		return config{}, err
	}
	if err := cfg.parseLists(lists); err != nil {
		return config{}, err
	}
	return cfg, cfg.check()
}

// parseLists fills the list fields of cfg from their flags.
func (cfg *config) parseLists(lists listFlags) error {
	var err error
	if cfg.fleet, err = counts(lists.fleet, func(n int) bool { return n >= 1 && n <= maxFleet }); err != nil {
		return fmt.Errorf("-fleet: %v is not a device count from 1 to %d", err, maxFleet)
	}
	if cfg.isolationSessionRows, err = counts(lists.isolationSessionRows, func(n int) bool { return n >= 1 }); err != nil {
		return fmt.Errorf("-isolation-session-rows: %v is not a positive row count", err)
	}
	if cfg.rows, err = counts(lists.rows, func(n int) bool { return n >= 1 }); err != nil {
		return fmt.Errorf("-rows: %v is not a positive row count", err)
	}
	if lists.million {
		cfg.rows = append(cfg.rows, 1_000_000)
	}
	cfg.scenarios = map[string]bool{}
	for s := range strings.SplitSeq(lists.scenarios, ",") {
		s = strings.TrimSpace(s)
		if !slices.Contains(allScenarios, s) {
			return fmt.Errorf("-scenarios: unknown scenario %q (known: %s)", s, strings.Join(allScenarios, ", "))
		}
		cfg.scenarios[s] = true
	}
	return nil
}

// counts parses a comma-separated list of integers that valid accepts; its
// error is the first field that is not one, quoted.
func counts(list string, valid func(int) bool) ([]int, error) {
	var out []int
	for f := range strings.SplitSeq(list, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || !valid(n) {
			return nil, fmt.Errorf("%q", f)
		}
		out = append(out, n)
	}
	return out, nil
}

// check checks the single values of cfg.
func (cfg *config) check() error {
	if cfg.rtt < 0 || cfg.rtt > 10*time.Second {
		return fmt.Errorf("-rtt %s: want from 0 to 10s", cfg.rtt)
	}
	if cfg.fleetDuration <= 0 || cfg.fleetDuration > time.Hour {
		return fmt.Errorf("-fleet-duration %s: want more than 0 and at most 1h", cfg.fleetDuration)
	}
	if cfg.drivers != "" && cfg.drivers != "both" {
		return fmt.Errorf("-drivers %q: want both or nothing", cfg.drivers)
	}
	if cfg.runs < 1 || cfg.batch < 1 || cfg.memRows < 1 || cfg.syncRows < 100 {
		return fmt.Errorf("-runs and -batch must be at least 1, -mem-rows at least 1, -sync-rows at least 100")
	}
	if cfg.scopedTeams < 2 || cfg.scopedTeams > 500 || cfg.scopedTeamRows < 1 || cfg.scopedChanges < 1 ||
		cfg.scopedChanges > (cfg.scopedTeams-1)*cfg.scopedTeamRows {
		return fmt.Errorf("-scoped-teams must be from 2 to 500, -scoped-team-rows at least 1, -scoped-changes from 1 to the rows of the other teams")
	}
	if cfg.isolationRows < 1 || cfg.isolationSessions < 1 || cfg.isolationSessions > 20 {
		return fmt.Errorf("-isolation-rows must be at least 1, -isolation-sessions from 1 to 20")
	}
	if cfg.dbsizeRows < 20 || cfg.dbsizeRounds < 1 || cfg.dbsizeRounds > 100_000 || cfg.dbsizeSweep <= 0 || cfg.dbsizeRetention <= 0 {
		return fmt.Errorf("-dbsize-rows must be at least 20, -dbsize-rounds from 1 to 100000, -dbsize-sweep and -dbsize-retention positive")
	}
	if cfg.cpuDevices < 1 || cfg.cpuDevices > maxFleet || cfg.cpuSyncs < 1 || cfg.cpuSyncs > 100_000 {
		return fmt.Errorf("-cpu-devices must be from 1 to %d, -cpu-syncs from 1 to 100000", maxFleet)
	}
	if cfg.store != "sqlite" && cfg.store != "postgres" && cfg.store != "mysql" {
		return fmt.Errorf("-store %q: want sqlite, postgres or mysql", cfg.store)
	}
	return nil
}
