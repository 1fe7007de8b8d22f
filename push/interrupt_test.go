package push_test

import (
	"fmt"
	"net/http"
	"path/filepath"
	"slices"
	"sync/atomic"
	"testing"

	"github.com/tethersync/tether/entity"
	"github.com/tethersync/tether/internal/testkit"
	"github.com/tethersync/tether/localdb"
	"github.com/tethersync/tether/push"
	"github.com/tethersync/tether/server"
)

// Stock is a row with a counter: a row applied twice on the server would
// count its increment twice.
type Stock struct {
	entity.Meta `sync:"stock,1"`
	ID          string `db:"id"`
	Name        string `db:"name"`
	Qty         int    `db:"qty,counter"`
}

// A push interrupted at any of its requests (the request lost, or its
// answer), after which the process restarts (the database is opened
// again) and rows are edited, ends, after two more pushes, with every row
// on the server once, as the device holds it, its increments counted once,
// and nothing dirty on the device.
func TestPushInterruptedAtEachRequest(t *testing.T) {
	const rows, batch = 7, 2 // batches 0-2, and batch 3 with the commit
	for at := range rows/batch + 1 {
		for _, fault := range []testkit.Fault{testkit.DropRequest, testkit.DropResponse} {
			t.Run(fmt.Sprintf("request %d %s", at, fault), func(t *testing.T) {
				ctx := testCtx(t)
				reg := entity.NewRegistry()
				if err := reg.Register(Stock{}); err != nil {
					t.Fatal(err)
				}
				srv := testkit.NewServer(t, reg, server.Options{})
				path := filepath.Join(t.TempDir(), "device.db")
				var sent atomic.Int32
				broken := &testkit.FaultTransport{Decide: func(r *http.Request, kind string, n int) testkit.Fault {
					if kind != "batches" && kind != "commit" {
						return testkit.Pass
					}
					if int(sent.Add(1))-1 == at {
						return fault
					}
					return testkit.Pass
				}}
				db, api := device(t, reg, srv.URL, broken, path)
				ids := make([]string, rows)
				err := db.Update(ctx, func(tx *localdb.Tx) error {
					for i := range ids {
						s := Stock{Name: fmt.Sprint("s", i), Qty: 1}
						if err := tx.Save(ctx, &s); err != nil {
							return err
						}
						ids[i] = s.ID
					}
					return nil
				})
				if err != nil {
					t.Fatal(err)
				}
				slices.Sort(ids)
				if _, err := push.New(db.Syncer(), api, push.Options{BatchSize: batch}).Push(ctx); err == nil {
					t.Fatal("Push succeeded through the fault")
				}
				if err := db.Close(); err != nil {
					t.Fatal(err)
				}

				db, api = device(t, reg, srv.URL, &testkit.FaultTransport{}, path)
				// The first row, in a batch acknowledged unless the first
				// was interrupted, gets a new name; a row of the batch
				// interrupted a new name and an increment.
				first, edited := ids[0], ids[at*batch]
				for _, id := range slices.Compact([]string{first, edited}) {
					var s Stock
					if err := db.Get(ctx, &s, id); err != nil {
						t.Fatal(err)
					}
					s.Name = "edited after the restart " + s.Name
					if id == edited {
						s.Qty++
					}
					if err := db.Save(ctx, &s); err != nil {
						t.Fatal(err)
					}
				}
				eng := push.New(db.Syncer(), api, push.Options{BatchSize: batch})
				for range 2 {
					if _, err := eng.Push(ctx); err != nil {
						t.Fatal(err)
					}
				}

				if n := pending(t, db); n != 0 {
					t.Errorf("Pending=%d after the pushes, want 0", n)
				}
				if n := serverInt(t, srv, `SELECT count(*) FROM stock`); n != rows {
					t.Errorf("server rows=%d, want %d", n, rows)
				}
				for i, id := range ids {
					name, qty := fmt.Sprint("s", i), 1
					if id == first || id == edited {
						name = "edited after the restart " + name
					}
					if id == edited {
						qty = 2
					}
					var local Stock
					if err := db.Get(ctx, &local, id); err != nil {
						t.Fatal(err)
					}
					if local.Name != name || local.Qty != qty || local.Dirty {
						t.Errorf("device row %d: %q qty %d dirty %v, want %q qty %d clean", i, local.Name, local.Qty, local.Dirty, name, qty)
					}
					if n := serverInt(t, srv, `SELECT count(*) FROM stock WHERE id = ? AND name = ? AND qty = ?`, id, name, qty); n != 1 {
						t.Errorf("server row %d is not %q qty %d", i, name, qty)
					}
				}
			})
		}
	}
}
