package server_test

import (
	"context"
	"testing"

	"github.com/tethersync/tether/internal/testkit/stores"
	"github.com/tethersync/tether/server"
	"github.com/tethersync/tether/wire"
)

// TestCommitKeepsOtherSessionsStaged commits sessions while others are
// staged, before and after them in the staging table's order: a commit
// removes its own staged rows only, however it removes them (the SQLite
// store empties the table whole when the session is all it holds).
func TestCommitKeepsOtherSessionsStaged(t *testing.T) {
	stores.Each(t, stores.All, func(t *testing.T, db stores.Database) {
		ctx := context.Background()
		s := db.Open(t, kindsSchema, stores.Options{})
		for _, d := range []string{"d1", "d2", "d3"} {
			if err := s.RegisterDevice(ctx, ada, server.Registration{Device: d}, server.Limits{}); err != nil {
				t.Fatal(err)
			}
		}
		stage := func(dev, session string, seq int, ids ...string) {
			t.Helper()
			var rows []wire.Row
			for _, id := range ids {
				rows = append(rows, parent(id, session, "0000000000001.000000."+dev))
			}
			if _, err := s.Push(ctx, ada, dev, session, seq, rows, server.PushOptions{Open: seq == 0}); err != nil {
				t.Fatal(err)
			}
		}
		commit := func(dev, session string, want int) {
			t.Helper()
			c, err := s.Commit(ctx, ada, dev, session, lww, server.Limits{}, nil)
			if err != nil {
				t.Fatal(err)
			}
			if c.Applied != want {
				t.Fatalf("commit %s: Applied=%d, want %d", session, c.Applied, want)
			}
		}
		stage("d1", "a", 0, "a1", "a2")
		stage("d3", "z", 0, "z1")
		stage("d2", "m", 0, "m1", "m2", "m3") // between a and z in key order
		commit("d2", "m", 3)
		commit("d1", "a", 2)
		stage("d3", "z", 1, "z2") // alone in the stage now
		commit("d3", "z", 2)
		stage("d1", "b", 0, "b1")
		commit("d1", "b", 1) // after a commit that emptied the table
		rows, _, _, err := s.Changes(ctx, ada, server.Cursor{}, 100, 1<<30, server.Echo{})
		if err != nil {
			t.Fatal(err)
		}
		if len(rows) != 8 {
			t.Fatalf("Changes returned %d rows, want 8: %v", len(rows), rows)
		}
	})
}
