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
		store, c := capturing(t, db)
		sc := &server.Scopes{
			Tables:    map[string]server.RowKeys{"parents": server.KeyColumn("name:", "name")},
			Principal: server.PrincipalKeys(server.ClaimKeys("names", "name:")),
		}
		if err := store.UseScopes(sc, nil); err != nil {
			t.Fatal(err)
		}
		f := storeFixture{t: t, s: store}
		seesA := server.Principal{Tenant: "acme", User: "ada", Claims: map[string]any{"names": []any{"a"}}}
		f.device(seesA, "da")
		bo := openBackOffice(t, db)
		bo.exec(insertParent("p00", "a"))
		capture(t, c)
		cur := server.Cursor{}
		for range 100 {
			_, next, more, err := store.Changes(ctx, seesA, cur, 5, 1<<30, server.Echo{Device: "da"})
			if err != nil {
				t.Fatal(err)
			}
			cur = next
			if !more {
				break
			}
		}
		for i := 1; i <= 10; i++ {
			bo.exec(insertParent(fmt.Sprintf("p%02d", i), "a"))
			capture(t, c)
		}
		bo.exec(stmt{`UPDATE parents SET note = ? WHERE _tenant = ? AND id = ?`, []any{"T", "acme", "p01"}}) // not captured yet
		got := map[string]bool{}
		rows, next, _, err := store.Changes(ctx, seesA, cur, 5, 1<<30, server.Echo{Device: "da"})
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range rows {
			got[r.ID] = true
		}
		cur = next
		capture(t, c)
		for range 100 {
			rows, next, more, err := store.Changes(ctx, seesA, cur, 5, 1<<30, server.Echo{Device: "da"})
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range rows {
				got[r.ID] = true
			}
			cur = next
			if !more {
				break
			}
		}
		for i := 1; i <= 10; i++ {
			if id := fmt.Sprintf("p%02d", i); !got[id] {
				t.Errorf("device never received %s", id)
			}
		}
	})
}
