package main

import (
	"strings"
	"testing"
)

// A small run of the scoped scenario: a member's device pulls only its
// team's rows, nothing of the changes in other teams, and the unscoped
// tenant's device everything (measureScoped checks the row counts; the
// times are not checked).
func TestSmallScopedRun(t *testing.T) {
	var out strings.Builder
	args := []string{"-scenarios", "scoped", "-runs", "2", "-scoped-teams", "5", "-scoped-team-rows", "40",
		"-scoped-changes", "30", "-dir", t.TempDir()}
	if err := run(t.Context(), args, &out); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"scoped tenant (5 teams of 40 rows), a member of one team: first SyncNow of a member's device | 205 |",
		"unscoped tenant (5 teams of 40 rows), a member of one team: first SyncNow of a member's device | 205 |",
		"scoped tenant (5 teams of 40 rows), a member of one team: SyncNow after 30 changes in other teams | 205 |",
	} {
		if !strings.Contains(out.String(), "| "+want) {
			t.Errorf("no %q row in:\n%s", want, out.String())
		}
	}
}
