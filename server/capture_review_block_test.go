package server_test

import (
	"context"
	"testing"
	"time"

	"github.com/tethersync/tether/internal/testkit/stores"
	"github.com/tethersync/tether/server"
	"github.com/tethersync/tether/wire"
)

// Review: a device's push (whose commit captures first) must not wait for
// a back office's open transaction that touches a row recorded for
// capture: it stalls every commit of the tenant. On MySQL, staging the
// push's batch waited for it while the triggers deleted from the staging
// table (gap locks of the back office's repeatable read). SQLite has one
// writer: the back office's open transaction holds every write there.
func TestCaptureReviewCaptureBlocksPush(t *testing.T) {
	stores.Each(t, []string{stores.Postgres, stores.MySQL}, func(t *testing.T, db stores.Database) {
		ctx := context.Background()
		store, c := capturing(t, db)
		f := storeFixture{t: t, s: store}
		f.device(ada, "da")
		bo := openBackOffice(t, db)
		bo.exec(insertParent("A", "a0"), insertParent("B", "b0"))
		capture(t, c)
		bo.exec(renameParent("A", "a1"), renameParent("B", "b1")) // committed, not captured yet
		t2, err := bo.db.Begin()
		if err != nil {
			t.Fatal(err)
		}
		defer t2.Rollback()
		if _, err := t2.Exec(bo.rebind(`UPDATE parents SET note = ? WHERE _tenant = ? AND id = ?`), "t2", "acme", "A"); err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		start := time.Now()
		go func() {
			cctx, cancel := context.WithTimeout(ctx, 8*time.Second)
			defer cancel()
			sess, err := store.OpenSession(cctx, ada, "da", "", server.Limits{})
			if err == nil {
				err = stage(cctx, store, ada, "da", sess, 0, []wire.Row{parent("C", "c", "0000000000009.000000.da")}, server.Limits{})
			}
			if err == nil {
				_, err = store.Commit(cctx, ada, "da", sess, nil, server.Limits{}, nil)
			}
			done <- err
		}()
		err = <-done
		if d := time.Since(start); err != nil || d > 3*time.Second {
			t.Errorf("a device's push while a back office's transaction is open: %v after %v", err, d.Round(time.Millisecond))
		}
	})
}
