package server_test

import (
	"context"
	"testing"

	"github.com/tethersync/tether/internal/testkit/stores"
	"github.com/tethersync/tether/server"
	"github.com/tethersync/tether/wire"
)

// Review: writes recorded while capture was on and not captured yet when
// the server restarts with capture off must not be lost: an updated row
// must not stay at version 0 (no pull ever sends it), nor a deleted row
// live on the devices for good.
func TestCaptureReviewCaptureTurnedOff(t *testing.T) {
	stores.Each(t, stores.All, func(t *testing.T, db stores.Database) {
		ctx := context.Background()
		store, c := capturing(t, db)
		f := storeFixture{t: t, s: store}
		f.device(ada, "da")
		bo := openBackOffice(t, db)
		bo.exec(insertParent("U", "u0"), insertParent("D", "d0"))
		capture(t, c)
		got := map[string]any{}
		rows, cur, _, err := store.Changes(ctx, ada, server.Cursor{}, 100, 1<<30, server.Echo{Device: "da"})
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range rows {
			got[r.ID] = r.Values["name"]
		}
		bo.exec(renameParent("U", "u1"))
		bo.exec(deleteParent("D"))
		if err := c.CaptureExternal(ctx, false); err != nil { // server.New with the option off
			t.Fatal(err)
		}
		f.device(bob, "db")
		f.push(bob, "db", nil, []wire.Row{parent("Z", "z", "0000000000009.000000.db")}) // another commit of the tenant
		rows, _, _, err = store.Changes(ctx, ada, cur, 100, 1<<30, server.Echo{Device: "da"})
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range rows {
			if r.Deleted {
				delete(got, r.ID)
			} else {
				got[r.ID] = r.Values["name"]
			}
		}
		var v int64 = -1
		db2 := bo.db
		if err := db2.QueryRow(`SELECT _version FROM parents WHERE _tenant = 'acme' AND id = 'U'`).Scan(&v); err != nil {
			t.Fatal(err)
		}
		if got["U"] != "u1" || got["D"] != nil {
			t.Errorf("after a restart with capture off, the device holds U=%v, D=%v (server: U=u1 at version %d, D deleted)", got["U"], got["D"], v)
		}
	})
}
