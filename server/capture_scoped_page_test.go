package server_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/tethersync/tether/internal/testkit/stores"
	"github.com/tethersync/tether/server"
)

// G1 and G15 with capture: a scoped pull whose page leaves out a row a
// back office changed and capture has not seen yet (version 0) does not
// know it read its tables to their end, and its cursor does not jump past
// the rows after the page: every row still comes, once captured.
func TestScopedPullAfterAnUncapturedWriteMissesNothing(t *testing.T) {
	stores.Each(t, stores.All, func(t *testing.T, db stores.Database) {
		ctx := context.Background()
		store, c := capturingByName(t, db)
		seesA := seesName("ada", "a")
		storeFixture{t: t, s: store}.device(seesA, "da")
		got := map[string]bool{}
		// pull pulls pages of 5 from cur, at most pages of them, and
		// returns the cursor after them.
		pull := func(cur server.Cursor, pages int) server.Cursor {
			for range pages {
				rows, next, more, err := store.Changes(ctx, seesA, cur, 5, 1<<30, server.Echo{Device: "da"})
				if err != nil {
					t.Fatal(err)
				}
				for _, r := range rows {
					got[r.ID] = true
				}
				if cur = next; !more {
					break
				}
			}
			return cur
		}
		bo := openBackOffice(t, db)
		bo.exec(insertParent("p00", "a"))
		capture(t, c)
		cur := pull(server.Cursor{}, 100)
		for i := 1; i <= 10; i++ {
			bo.exec(insertParent(fmt.Sprintf("p%02d", i), "a"))
			capture(t, c)
		}
		bo.exec(stmt{`UPDATE parents SET note = ? WHERE _tenant = ? AND id = ?`, []any{"T", "acme", "p01"}}) // not captured yet
		cur = pull(cur, 1)
		capture(t, c)
		pull(cur, 100)
		for i := 1; i <= 10; i++ {
			if id := fmt.Sprintf("p%02d", i); !got[id] {
				t.Errorf("device never received %s", id)
			}
		}
	})
}
