package server_test

import (
	"context"
	"testing"

	"github.com/tethersync/tether/internal/testkit/stores"
	"github.com/tethersync/tether/server"
	"github.com/tethersync/tether/wire"
)

// Review: a scoped pull must not show an external write before it is
// captured (its row's version is 0): neither values under keys the row no
// longer has, nor half of a back office's transaction.
func TestScopesReviewScopedPullSeesUncaptured(t *testing.T) {
	stores.Each(t, stores.All, func(t *testing.T, db stores.Database) {
		ctx := context.Background()
		store, c := capturingByName(t, db)
		f := storeFixture{t: t, s: store}
		seesA := seesName("ada", "a")
		f.device(seesA, "da")
		f.device(seesA, "da2")
		pull := func(dev string, cur server.Cursor) ([]wire.Row, server.Cursor) {
			var all []wire.Row
			for range 100 {
				rows, next, more, err := store.Changes(ctx, seesA, cur, 100, 1<<30, server.Echo{Device: dev})
				if err != nil {
					t.Fatal(err)
				}
				all = append(all, rows...)
				if cur = next; !more {
					break
				}
			}
			return all, cur
		}
		bo := openBackOffice(t, db)
		// 1: a row moved by plain SQL out of the device's key.
		bo.exec(insertParent("x", "a"))
		capture(t, c)
		bo.exec(renameParent("x", "b")) // not captured yet
		rows, _ := pull("da", server.Cursor{})
		for _, r := range rows {
			if r.ID == "x" && !r.Evict && r.Values["name"] == "b" {
				t.Errorf("a device that sees only name:a received x with name b (an uncaptured external write, of a key it may not see): %+v", r)
			}
		}
		capture(t, c)
		// 2: a back office's transaction of two rows, device between their versions.
		bo.exec(insertParent("p2", "a"))
		capture(t, c)
		_, cur := pull("da2", server.Cursor{})
		bo.exec(insertParent("p1", "a"))
		capture(t, c)
		bo.exec(stmt{`UPDATE parents SET note = ? WHERE _tenant = ? AND id IN (?, ?)`, []any{"T", "acme", "p1", "p2"}}) // not captured yet
		rows, _ = pull("da2", cur)
		for _, r := range rows {
			if r.Values["note"] == "T" {
				t.Errorf("the pull shows part of an uncaptured back office transaction: %s at version %d with note T", r.ID, r.Version)
			}
		}
	})
}
