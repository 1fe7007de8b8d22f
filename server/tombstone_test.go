package server_test

import (
	"context"
	"testing"

	"github.com/tethersync/tether/internal/testkit/stores"
	"github.com/tethersync/tether/server"
	"github.com/tethersync/tether/wire"
)

// A delete pushed without values (as a client in another language may
// send it) keeps its own clock stamp: it is not a change of counters
// alone, which keeps the server row's. On the three stores.
func TestDeleteWithoutValuesKeepsItsStamp(t *testing.T) {
	stores.Each(t, stores.All, func(t *testing.T, db stores.Database) {
		ctx := context.Background()
		store := db.Open(t, kindsSchema, stores.Options{})
		f := storeFixture{t: t, s: store}
		f.device(ada, "d")
		row := child("c1", "p")
		if _, err := store.Push(ctx, ada, "d", "s1", 0, []wire.Row{row}, server.PushOptions{Open: true, Commit: &server.LastBatch{Digest: "a"}, Resolve: lww}); err != nil {
			t.Fatal(err)
		}
		del := wire.Row{Table: "children", ID: "c1", Base: 1, Deleted: true, HLC: "0000000000002.000000.d", Values: map[string]any{}}
		if _, err := store.Push(ctx, ada, "d", "s2", 0, []wire.Row{del}, server.PushOptions{Open: true, Commit: &server.LastBatch{Digest: "b"}, Resolve: lww}); err != nil {
			t.Fatal(err)
		}
		rows, _, _, err := store.Changes(ctx, ada, server.Cursor{Version: 1}, 10, 1<<20, server.Echo{})
		if err != nil {
			t.Fatal(err)
		}
		if len(rows) != 1 || !rows[0].Deleted || rows[0].HLC != del.HLC {
			t.Fatalf("pulled %+v, want the tombstone with stamp %s", rows, del.HLC)
		}
	})
}
