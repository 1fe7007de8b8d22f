package main

import (
	"context"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/tethersync/tether/internal/testkit/stores"
)

// TestMain lets the test binary stand in for tether-bench in the memory
// and cpu scenarios' child processes.
func TestMain(m *testing.M) {
	if slices.Contains(os.Args, "-child-pull") || slices.Contains(os.Args, "-child-server") {
		if err := run(context.Background(), os.Args[1:], os.Stdout); err != nil {
			os.Stderr.WriteString(err.Error() + "\n")
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(stores.Main(m))
}

// A small run of every scenario: the command works end to end and prints
// one table row per figure.
func TestSmallRun(t *testing.T) { smallRun(t, "sqlite") }

// The same on PostgreSQL, which the bench starts itself.
func TestSmallRunPostgres(t *testing.T) {
	stores.PostgresURL(t) // skips, or fails under TETHER_REQUIRE_POSTGRES=1, without binaries
	smallRun(t, "postgres")
}

// The same on MySQL (MariaDB here), which the bench starts itself.
func TestSmallRunMySQL(t *testing.T) {
	stores.MySQLDSN(t) // skips, or fails under TETHER_REQUIRE_MYSQL=1, without binaries
	smallRun(t, "mysql")
}

func smallRun(t *testing.T, store string) {
	var out strings.Builder
	args := []string{"-store", store, "-rows", "300", "-runs", "1", "-sync-rows", "500", "-mem-rows", "2000",
		"-rtt", "10ms", "-fleet", "3", "-fleet-duration", "500ms", "-cpu-devices", "3", "-cpu-syncs", "20",
		"-other-stores=false", "-dir", t.TempDir()}
	if err := run(t.Context(), args, &out); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"baseline", "push into an empty server", "pull into a fresh device",
		"incremental SyncNow", "no-op SyncNow", "wire bytes per row, push", "wire bytes per row, pull",
		"peak resident memory", "pull time", "SyncNow of a device holding local changes", "SyncNow of local changes: rows downloaded back",
		"latency: no-op SyncNow", "latency: requests of a no-op SyncNow", "latency: SyncNow of one new row",
		"latency: requests of a SyncNow of one new row", "fleet of 3 devices, each saving one row then SyncNow: throughput",
		"fleet of 3 devices, each saving one row then SyncNow: SyncNow latency",
		"cpu: CPU per small sync (save one row, SyncNow; server with 3 active devices): device process",
		"cpu: CPU per small sync (save one row, SyncNow; server with 3 active devices): server process",
		"cpu: CPU per small sync (save one row, SyncNow; server with 3 active devices): device + server"} {
		if !strings.Contains(out.String(), "| "+want) {
			t.Errorf("no %q row in:\n%s", want, out.String())
		}
	}
}

func TestBadFlags(t *testing.T) {
	for _, args := range [][]string{
		{"-rows", "0"}, {"-rows", "ten"}, {"-scenarios", "push,warp"}, {"-store", "oracle"}, {"-runs", "0"},
		{"-fleet", "0"}, {"-fleet", "50,many"}, {"-fleet-duration", "0s"}, {"-rtt", "-1ms"},
		{"-scoped-teams", "1"}, {"-scoped-teams", "501"}, {"-scoped-team-rows", "0"},
		{"-scoped-teams", "3", "-scoped-team-rows", "10", "-scoped-changes", "21"},
		{"-cpu-devices", "0"}, {"-cpu-syncs", "0"},
	} {
		if err := run(t.Context(), args, &strings.Builder{}); err == nil {
			t.Errorf("run(%q) succeeded, want an error", args)
		}
	}
}

// -drivers both runs the scenarios with each SQLite driver (the other one
// in a copy built with or without cgo) and prints them side by side.
func TestBothDrivers(t *testing.T) {
	var out strings.Builder
	args := []string{"-drivers", "both", "-scenarios", "baseline,push,pull", "-rows", "300", "-runs", "1", "-other-stores=false",
		"-dir", t.TempDir()}
	if err := run(t.Context(), args, &out); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"| scenario | rows | ", "mattn/go-sqlite3 (cgo)", "ncruces/go-sqlite3 (pure Go)",
		"| push into an empty server | 300 | ", "| pull into a fresh device (first SyncNow) | 300 | "} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("no %q in:\n%s", want, out.String())
		}
	}
	if strings.Contains(out.String(), "(missing)") || strings.Count(out.String(), "rows/s") != 6 {
		t.Errorf("want every figure of both drivers (6 rates), got:\n%s", out.String())
	}
}
