package localdb_test

import (
	"slices"
	"testing"

	"github.com/tethersync/tether/wire"
)

// The last page of a pull forgets the own sessions the pull passed, in the
// transaction that stores its cursor (ApplyLastChanges); an earlier page
// does not, and a last page that fails to apply forgets nothing.
func TestLastPageForgetsOwnSessions(t *testing.T) {
	db := newDB(t)
	s := db.Syncer()
	own := func(sessions ...string) int64 { // pushes sessions, returns the mark
		t.Helper()
		for i, session := range sessions {
			if err := s.BeginPush(ctx, session); err != nil {
				t.Fatal(err)
			}
			if err := s.FinishPush(ctx, wire.Commit{Version: int64(10 + i)}, true); err != nil {
				t.Fatal(err)
			}
		}
		_, mark, err := s.OwnSessions(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return mark
	}
	check := func(step, cursor string, want ...string) {
		t.Helper()
		got, _, err := s.OwnSessions(ctx)
		if err != nil {
			t.Fatal(err)
		}
		slices.Sort(got)
		if !slices.Equal(got, want) {
			t.Errorf("%s: own sessions %q, want %q", step, got, want)
		}
		if c, err := s.Cursor(ctx); err != nil || c != cursor {
			t.Errorf("%s: cursor %q (%v), want %q", step, c, err, cursor)
		}
	}
	note := wire.Row{Table: "notes", ID: "n1", Version: 3, HLC: "1700000000000.000003.srv", ModifiedBy: "ada",
		Values: map[string]any{"title": "n1", "at": "2026-01-01T00:00:00Z"}}

	mark := own("s1", "s2")
	if _, err := s.ApplyChanges(ctx, []wire.Row{note}, "c1"); err != nil {
		t.Fatal(err)
	}
	check("a page before the last", "c1", "s1", "s2")

	bad := note
	bad.ID, bad.Values = "n2", map[string]any{"title": "n2", "at": "not a time"}
	if _, err := s.ApplyLastChanges(ctx, []wire.Row{bad}, "c2", mark); err == nil {
		t.Fatal("a last page with a bad row applied")
	}
	check("a last page that failed", "c1", "s1", "s2")

	if _, err := s.ApplyLastChanges(ctx, nil, "c2", mark); err != nil {
		t.Fatal(err)
	}
	check("a last page without rows", "c2")

	mark = own("s3", "s4")
	if _, err := s.ApplyLastChanges(ctx, []wire.Row{note}, "c3", mark-1); err != nil {
		t.Fatal(err)
	}
	check("a last page with rows, the mark before s4", "c3", "s4")
}
