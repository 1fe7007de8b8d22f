package main

import (
	"strings"
	"testing"
)

// A small run of the isolation and dbsize scenarios: each prints its rows.
func TestSmallIsolationAndDBSize(t *testing.T) {
	var out strings.Builder
	args := []string{"-scenarios", "isolation,dbsize", "-isolation-rows", "300", "-isolation-sessions", "2",
		"-isolation-session-rows", "300,100", "-dbsize-rows", "100", "-dbsize-rounds", "5", "-dbsize-sweep", "100ms",
		"-dbsize-retention", "200ms", "-dir", t.TempDir()}
	if err := run(t.Context(), args, &out); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"isolation, -max-session-rows 300: tenant B's SyncNow of one new row, tenant A idle",
		"isolation, -max-session-rows 100: tenant B's SyncNow of one new row, while tenant A pushes 2 sessions of 300 rows",
		"isolation, -max-session-rows 100: tenant A's pushes meanwhile",
		"dbsize: SQLite server file after 150 row changes in 5 syncs",
		"sessions and audit entries kept 200ms",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("no %q in:\n%s", want, out.String())
		}
	}
}

func TestBadIsolationFlags(t *testing.T) {
	for _, args := range [][]string{
		{"-isolation-rows", "0"}, {"-isolation-sessions", "21"}, {"-isolation-session-rows", "0"},
		{"-dbsize-rows", "10"}, {"-dbsize-rounds", "0"}, {"-dbsize-sweep", "0s"}, {"-dbsize-retention", "-1s"},
	} {
		if err := run(t.Context(), args, &strings.Builder{}); err == nil {
			t.Errorf("run(%q) succeeded, want an error", args)
		}
	}
}
