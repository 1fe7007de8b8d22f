package server_test

import (
	"context"
	"testing"
	"time"

	"github.com/tethersync/tether/internal/testkit/stores"
	"github.com/tethersync/tether/server"
)

// Review: a back office's committed two-row transaction T1 must reach
// devices as one version, also while a later transaction T2 (not
// committed yet) holds one of its rows: the capture passes over the
// locked row (SKIP LOCKED) and commits the other alone, so devices see
// T1's row B with the old value of its row A.
func TestCaptureReviewCaptureSplitsTransaction(t *testing.T) {
	stores.Each(t, []string{stores.Postgres, stores.MySQL}, func(t *testing.T, db stores.Database) {
		ctx := context.Background()
		store, c := capturing(t, db)
		f := storeFixture{t: t, s: store}
		f.device(ada, "da")
		bo := openBackOffice(t, db)
		bo.exec(insertParent("A", "a0"), insertParent("B", "b0"))
		capture(t, c)
		bo.exec(renameParent("A", "a1"), renameParent("B", "b1")) // T1, committed
		t2, err := bo.db.Begin()
		if err != nil {
			t.Fatal(err)
		}
		defer t2.Rollback()
		if _, err := t2.Exec(bo.rebind(`UPDATE parents SET note = ? WHERE _tenant = ? AND id = ?`), "t2", "acme", "A"); err != nil {
			t.Fatal(err)
		}
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		if _, err := c.Capture(cctx); err != nil {
			t.Fatal(err)
		}
		rows, _, _, err := store.Changes(ctx, ada, server.Cursor{}, 100, 1<<30, server.Echo{})
		if err != nil {
			t.Fatal(err)
		}
		got := map[string]any{}
		for _, r := range rows {
			got[r.ID] = r.Values["name"]
		}
		if got["B"] == "b1" && got["A"] != "a1" {
			t.Errorf("a pull sees T1 in part: B=%v, A=%v (A is waiting for its capture)", got["B"], got["A"])
		}
	})
}
