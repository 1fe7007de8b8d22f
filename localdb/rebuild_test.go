package localdb_test

import (
	"errors"
	"testing"

	"github.com/tethersync/tether/localdb"
	"github.com/tethersync/tether/wire"
)

// A row edited during a rebuild that was cut short, and pushed before the
// rebuild goes on (a sync pushes first), is the server's row at the
// version of that push: the end of the rebuild must not take it for a row
// the snapshot lacks, and delete it. Found by the simulation.
func TestRowPushedDuringRebuildStays(t *testing.T) {
	db := newDB(t)
	row := func(title string, v int64) wire.Row {
		return wire.Row{Table: "notes", ID: "a", Version: v, HLC: "1700000000000.000000.srv",
			Values: map[string]any{"title": title, "at": "2026-01-01T00:00:00Z"}}
	}
	if _, err := db.Syncer().ApplyChanges(ctx, []wire.Row{row("x", 1)}, "c1"); err != nil {
		t.Fatal(err)
	}
	if err := db.Syncer().BeginRebuild(ctx); err != nil { // the cursor was purged
		t.Fatal(err)
	}
	if err := db.Save(ctx, &Note{ID: "a", Title: "mine"}); err != nil {
		t.Fatal(err)
	}
	// A snapshot page that does not hold a (deleted on the server when
	// the page was read), then the next page fails: the retried sync
	// pushes a at version 5.
	if _, err := db.Syncer().ApplySnapshot(ctx, nil, "page1"); err != nil {
		t.Fatal(err)
	}
	if err := db.Syncer().BeginPush(ctx, "s1"); err != nil {
		t.Fatal(err)
	}
	b, err := db.Syncer().NextDirty(ctx, localdb.PushPos{}, 10)
	if err != nil || len(b.Rows) != 1 {
		t.Fatal(err, len(b.Rows))
	}
	if err := db.Syncer().MarkSent(ctx, b, localdb.PushState{Session: "s1", Seq: 1, Pos: b.Next}); err != nil {
		t.Fatal(err)
	}
	if err := db.Syncer().FinishPush(ctx, wire.Commit{Version: 5}, true); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Syncer().FinishRebuild(ctx, "resume4"); err != nil {
		t.Fatal(err)
	}
	// The pull from the snapshot's version brings a as the server holds it.
	if _, err := db.Syncer().ApplyChanges(ctx, []wire.Row{row("mine", 5)}, "c5"); err != nil {
		t.Fatal(err)
	}
	var got Note
	if err := db.Get(ctx, &got, "a"); errors.Is(err, localdb.ErrNotFound) {
		t.Error("a, live on the server at version 5, was deleted on the device by the end of the rebuild")
	} else if err != nil || got.Title != "mine" {
		t.Errorf("a = %+v, %v; want the pushed title", got, err)
	}
}
