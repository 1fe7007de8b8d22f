package server_test

import (
	"context"
	"fmt"
	"sync"
	"testing"

	"github.com/tethersync/tether/internal/testkit/stores"
	"github.com/tethersync/tether/server"
	"github.com/tethersync/tether/wire"
)

// Many sessions commit at once while pullers follow with their cursors:
// a tenant's versions become visible in commit order, so no cursor passes
// a session that commits later, and every puller ends with every row (G1).
// The stores of several server processes (PostgreSQL, MySQL) are tested;
// the SQLite store has a single writer.
func TestCommitOrder(t *testing.T) {
	stores.Each(t, stores.Shared, func(t *testing.T, db stores.Database) {
		commitOrder(t, db.Open(t, kindsSchema, stores.Options{}))
	})
}

func commitOrder(t *testing.T, store server.Store) {
	ctx := context.Background()
	f := storeFixture{t: t, s: store}
	const pushers, pullers, sessions, rows = 8, 4, 40, 5
	var wg sync.WaitGroup
	errs := make(chan error, pushers+pullers)
	for p := range pushers {
		dev := fmt.Sprintf("pusher-%d", p)
		f.device(ada, dev)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for s := range sessions {
				id, err := store.OpenSession(ctx, ada, dev, "", server.Limits{})
				if err != nil {
					errs <- err
					return
				}
				var batch []wire.Row
				for i := range rows {
					batch = append(batch, child(fmt.Sprintf("%s-%d-%d", dev, s, i), "p"))
				}
				if err := stage(ctx, store, ada, dev, id, 0, batch, server.Limits{}); err != nil {
					errs <- err
					return
				}
				if _, err := store.Commit(ctx, ada, dev, id, lww, server.Limits{}, nil); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	done := make(chan struct{})
	cursors := make([]server.Cursor, pullers)
	seen := make([]map[string]bool, pullers)
	var pulls sync.WaitGroup
	for q := range pullers {
		seen[q] = map[string]bool{}
		pulls.Add(1)
		go func() {
			defer pulls.Done()
			for range 1_000_000 {
				rows, next, _, err := store.Changes(ctx, ada, cursors[q], 7, 1<<30, server.Echo{})
				if err != nil {
					errs <- err
					return
				}
				for _, r := range rows {
					seen[q][r.ID] = true
				}
				cursors[q] = next
				select {
				case <-done:
					return
				default:
				}
			}
		}()
	}
	wg.Wait()
	close(done)
	pulls.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	for q := range pullers {
		for { // what committed after the puller's last page
			rows, next, more, err := store.Changes(ctx, ada, cursors[q], 1000, 1<<30, server.Echo{})
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range rows {
				seen[q][r.ID] = true
			}
			cursors[q] = next
			if !more {
				break
			}
		}
		if len(seen[q]) != pushers*sessions*rows {
			t.Errorf("puller %d saw %d rows, want %d: its cursor passed a session that committed later", q, len(seen[q]), pushers*sessions*rows)
		}
	}
}
