package e2e

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tethersync/tether/coordinator"
	"github.com/tethersync/tether/internal/testkit"
	"github.com/tethersync/tether/internal/testkit/stores"
	"github.com/tethersync/tether/server"
)

// G4: a device rebuilt from a snapshot of many pages (it was away past
// the purge) shows the app its old rows until the snapshot is whole, then
// the server's: an app reading the database during the rebuild sees one
// state or the other, never a mix.
func TestRebuildShowsOldStateUntilWhole(t *testing.T) {
	reg := testkit.Registry(t)
	lim := server.Limits{DeviceActivity: time.Hour}
	stores.Each(t, []string{stores.SQLite}, func(t *testing.T, db stores.Database) {
		clock := testkit.NewClock()
		store := db.Open(t, reg.Schema(), stores.Options{Now: clock.Now})
		url := testkit.Serve(t, store, server.Options{Limits: lim, SweepInterval: -1, Now: clock.Now}).URL
		a := testkit.NewDevice(t, reg, url, testkit.DeviceOptions{})
		away := testkit.NewDevice(t, reg, url, testkit.DeviceOptions{Co: coordinator.Options{PullBatchSize: 100}})
		old := saveCustomers(t, a, 5, "old")
		a.Sync(t)
		away.Sync(t)

		// While away is away: two deletions, purged later, and 600 new rows.
		for _, id := range old[:2] {
			if err := a.DB.Delete(ctx, &testkit.Customer{ID: id}); err != nil {
				t.Fatal(err)
			}
		}
		a.Sync(t)
		saveCustomers(t, a, 600, "new") // a pulls past the deletions
		for range 3 {                   // a pull proves the one before it
			a.Sync(t)
		}
		clock.Advance(2 * lim.DeviceActivity) // away is no longer active
		a.Sync(t)
		if n, err := store.Sweep(ctx, lim, 1000); err != nil || n < 2 {
			t.Fatalf("sweep: %d, %v; want the 2 tombstones purged", n, err)
		}

		// The app reads its database while the device rebuilds.
		type state struct{ live, fresh int }
		var (
			mu   sync.Mutex
			seen = map[state]int{}
			stop atomic.Bool
			wg   sync.WaitGroup
		)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 100000 && !stop.Load(); i++ {
				var s state
				err := away.DB.SQL().QueryRowContext(ctx, `SELECT count(*), count(CASE WHEN name LIKE 'new-%' THEN 1 END) FROM customers WHERE NOT "_deleted"`).Scan(&s.live, &s.fresh)
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				seen[s]++
				mu.Unlock()
				time.Sleep(100 * time.Microsecond)
			}
		}()
		rep := away.Sync(t)
		stop.Store(true)
		wg.Wait()
		if !rep.Rebuilt {
			t.Fatal("the device back after the purge was not rebuilt")
		}
		t.Logf("states seen: %v", seen)
		before, after := state{5, 0}, state{603, 600}
		for s, n := range seen {
			if s != before && s != after {
				t.Errorf("the app saw %d live customers, %d of them new, %d times: want %v (before) or %v (after) only", s.live, s.fresh, n, before, after)
			}
		}
		if got := names(t, away); len(got) != 603 {
			t.Errorf("after the rebuild the device holds %d customers, want 603", len(got))
		}
	})
}
