package server_test

import (
	"context"
	"testing"

	"github.com/tethersync/tether/internal/testkit/stores"
	"github.com/tethersync/tether/server"
)

// Review: a cursor in the eviction phase naming a table index past the
// schema is bad input (4xx), not an index out of range.
func TestScopesReviewForgedPhaseCursor(t *testing.T) {
	stores.Each(t, []string{stores.SQLite}, func(t *testing.T, db stores.Database) {
		ctx := context.Background()
		store, c := capturingByName(t, db)
		f := storeFixture{t: t, s: store}
		pa := seesName("ada", "a")
		pab := seesName("ada", "b")
		f.device(pa, "d")
		bo := openBackOffice(t, db)
		bo.exec(insertParent("x-a", "a"), insertParent("x-b", "b"))
		capture(t, c)
		_, cur, _, err := store.Changes(ctx, pa, server.Cursor{}, 100, 1<<30, server.Echo{Device: "d"})
		if err != nil {
			t.Fatal(err)
		}
		_, cur, _, err = store.Changes(ctx, pab, cur, 1, 1<<30, server.Echo{Device: "d"})
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("phase %c at %+v", cur.Phase, cur.At)
		cur.Phase, cur.At = server.PhaseEvict, server.PhaseAt{Table: 7}
		defer func() {
			if r := recover(); r != nil {
				t.Errorf("a forged phase cursor panics the store: %v", r)
			}
		}()
		_, _, _, err = store.Changes(ctx, pab, cur, 1, 1<<30, server.Echo{Device: "d"})
		t.Logf("err %v", err)
	})
}
