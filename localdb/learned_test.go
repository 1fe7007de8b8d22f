package localdb_test

import (
	"testing"

	"github.com/tethersync/tether/wire"
)

// A pulled row the server rewrote for this device is learned once, when
// the page that brought it commits: not again on the next call, not when
// it was set aside first, and not at all when its page is refused.
func TestLearnedOnce(t *testing.T) {
	db := newDB(t)
	s := db.Syncer()
	told := func(id string) wire.Row {
		return wire.Row{Table: "notes", ID: id, Version: 3, HLC: "1700000000000.000000.dev", Notify: db.DeviceID(),
			Reason: "brought back: a row references it", Values: map[string]any{"title": id, "at": "2026-01-01T00:00:00Z"}}
	}
	if _, err := s.ApplyChanges(ctx, []wire.Row{told("n1")}, "c1"); err != nil {
		t.Fatal(err)
	}
	if got := s.Learned(); len(got) != 1 || got[0].ID != "n1" || got[0].Strategy != wire.StrategyReference || got[0].Reason == "" {
		t.Fatalf("Learned()=%+v, want n1 with its reason", got)
	}
	if got := s.Learned(); len(got) != 0 {
		t.Errorf("Learned() again=%+v, want nothing", got)
	}

	// Set aside, then applied with the page that completes its version.
	if err := s.StashChanges(ctx, wire.Changes{Changes: []wire.Row{told("n2")}, Cursor: "c2"}); err != nil {
		t.Fatal(err)
	}
	if got := s.Learned(); len(got) != 0 {
		t.Errorf("Learned() after a page set aside=%+v, want nothing yet", got)
	}
	if _, err := s.ApplyChanges(ctx, nil, "c3"); err != nil {
		t.Fatal(err)
	}
	if got := s.Learned(); len(got) != 1 || got[0].ID != "n2" {
		t.Errorf("Learned() after the version is whole=%+v, want n2 once", got)
	}

	// A page refused as a whole tells nothing.
	bad := wire.Row{Table: "notes", ID: "p9", Version: 5, HLC: "x", Values: map[string]any{"title": 42}}
	if _, err := s.ApplyChanges(ctx, []wire.Row{told("n3"), bad}, "c4"); err == nil {
		t.Fatal("ApplyChanges accepted a number for a text column")
	}
	if got := s.Learned(); len(got) != 0 {
		t.Errorf("Learned() after a refused page=%+v, want nothing", got)
	}
	if cs, err := db.Conflicts(ctx); err != nil || len(cs) != 2 {
		t.Errorf("conflict log: %d entries, %v; want n1 and n2", len(cs), err)
	}
}

// A page set aside that a rebuild supersedes still tells the device what
// the server undid of its own: the snapshot brings the row as it is now,
// but carries no notice, so the conflict would be in no log and no
// report.
func TestLearnedFromPagesARebuildDrops(t *testing.T) {
	db := newDB(t)
	s := db.Syncer()
	told := wire.Row{Table: "notes", ID: "n1", Version: 3, HLC: "1700000000000.000000.dev", Notify: db.DeviceID(),
		Reason: "brought back: a row references it", Values: map[string]any{"title": "n1", "at": "2026-01-01T00:00:00Z"}}
	other := wire.Row{Table: "notes", ID: "n2", Version: 3, HLC: "1700000000000.000001.dev", Values: map[string]any{"title": "n2", "at": "2026-01-01T00:00:00Z"}}
	if err := s.StashChanges(ctx, wire.Changes{Changes: []wire.Row{told, other}, Cursor: "c1"}); err != nil {
		t.Fatal(err)
	}
	if err := s.BeginRebuild(ctx); err != nil {
		t.Fatal(err)
	}
	if got := s.Learned(); len(got) != 1 || got[0].ID != "n1" || got[0].Reason == "" {
		t.Errorf("Learned() after a rebuild dropped the page=%+v, want n1 with its reason", got)
	}
	if cs, err := db.Conflicts(ctx); err != nil || len(cs) != 1 {
		t.Errorf("conflict log: %d entries, %v; want n1", len(cs), err)
	}
	if got := s.Learned(); len(got) != 0 {
		t.Errorf("Learned() again=%+v, want nothing", got)
	}
}
