package e2e

import (
	"errors"
	"fmt"
	"path/filepath"
	"reflect"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tethersync/tether/coordinator"
	"github.com/tethersync/tether/entity"
	"github.com/tethersync/tether/internal/testkit"
	"github.com/tethersync/tether/internal/testkit/stores"
	"github.com/tethersync/tether/server"
)

// eachStoreWith runs f on a server over each store with opts, server and
// store on one fake clock. f gets the store too, to sweep it, and the clock.
func eachStoreWith(t *testing.T, reg *entity.Registry, opts server.Options, f func(t *testing.T, url string, store server.Store, clock *testkit.Clock)) {
	stores.Each(t, stores.All, func(t *testing.T, db stores.Database) {
		clock := testkit.NewClock()
		opts := opts
		opts.Now = clock.Now
		store := db.Open(t, reg.Schema(), stores.Options{Now: clock.Now})
		f(t, testkit.Serve(t, store, opts).URL, store, clock)
	})
}

// Devices away longer than the server keeps deletions: tombstones are
// purged once every active device has pulled past them; a device that
// comes back after that (with pending edits, inserts and deletes), and one
// restored from a backup older than the purge, are told so and rebuild
// from a snapshot, keeping everything typed offline; the devices that
// stayed are never rebuilt.
func TestLongAbsence(t *testing.T) {
	reg := testkit.Registry(t)
	lim := server.Limits{DeviceActivity: time.Hour}
	eachStoreWith(t, reg, server.Options{Limits: lim, SweepInterval: -1}, func(t *testing.T, url string, store server.Store, clock *testkit.Clock) {
		dir := t.TempDir()
		a := testkit.NewDevice(t, reg, url, testkit.DeviceOptions{})
		b := testkit.NewDevice(t, reg, url, testkit.DeviceOptions{Token: "token-bob"})
		away := testkit.NewDevice(t, reg, url, testkit.DeviceOptions{Path: filepath.Join(dir, "away.db")})
		ids := saveCustomers(t, a, 6, "shared")
		a.Sync(t)
		b.Sync(t)
		away.Sync(t)
		// A backup of another device, taken now.
		drawer := testkit.NewDevice(t, reg, url, testkit.DeviceOptions{Path: filepath.Join(dir, "drawer.db")})
		drawer.Sync(t)
		drawer.Co.Close()
		drawer.DB.Close()
		copyDB(t, filepath.Join(dir, "drawer.db"), filepath.Join(dir, "backup.db"))

		// The away device goes offline with edits of its own.
		var c testkit.Customer
		if err := away.DB.Get(ctx, &c, ids[0]); err != nil {
			t.Fatal(err)
		}
		c.Name = "edited while away"
		if err := away.DB.Save(ctx, &c); err != nil {
			t.Fatal(err)
		}
		mine := saveCustomers(t, away, 2, "typed while away")
		if err := away.DB.Delete(ctx, &testkit.Customer{ID: ids[1]}); err != nil {
			t.Fatal(err)
		}

		// Meanwhile a deletes two customers; everyone still around pulls.
		for _, id := range ids[4:6] {
			if err := a.DB.Delete(ctx, &testkit.Customer{ID: id}); err != nil {
				t.Fatal(err)
			}
		}
		a.Sync(t)
		saveCustomers(t, a, 1, "later") // the devices around pull past the deletions
		a.Sync(t)
		for _, d := range []*testkit.Device{a, b, a, b} { // a pull proves the one before it
			d.Sync(t)
		}
		clock.Advance(2 * lim.DeviceActivity) // the away devices are no longer active
		for _, d := range []*testkit.Device{a, b} {
			if rep := d.Sync(t); rep.Rebuilt {
				t.Error("an active device was rebuilt")
			}
		}
		sw := store
		if n, err := sw.Sweep(ctx, lim, 1000); err != nil || n < 2 {
			t.Fatalf("sweep: %d, %v; want the 2 tombstones purged", n, err)
		}
		if rep := a.Sync(t); rep.Rebuilt {
			t.Error("an active device was rebuilt after the purge")
		}

		// The away device comes back: its cursor is older than the purge.
		rep := away.Sync(t)
		if !rep.Rebuilt {
			t.Error("the device back after the purge was not rebuilt")
		}
		for _, id := range ids[4:6] {
			if err := away.DB.Get(ctx, &testkit.Customer{}, id); err == nil {
				t.Errorf("customer %s, deleted and purged on the server, still live on the device back", id)
			}
		}
		restored := testkit.NewDevice(t, reg, url, testkit.DeviceOptions{Path: filepath.Join(dir, "backup.db")})
		if rep := restored.Sync(t); !rep.Rebuilt {
			t.Error("the device restored from a backup older than the purge was not rebuilt")
		}
		for _, d := range []*testkit.Device{a, b, away, restored} {
			d.Sync(t)
		}
		for _, d := range []*testkit.Device{a, b, restored} {
			got := names(t, d)
			if got[ids[0]] != "edited while away" || got[mine[0]] != "typed while away-0" || len(got) != 6-2-1+2+1 {
				t.Errorf("a device holds %v; want the edit, the inserts and the delete made while away, and a's deletes", got)
			}
		}
		for _, d := range []*testkit.Device{a, b, away, restored} {
			rep, err := d.Co.Verify(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if diff := rep.Differs(); len(diff) > 0 {
				t.Errorf("a device differs from the server in %v", diff)
			}
		}
	})
}

// A device keeps closed conflict log entries for ConflictRetention (30
// days), then drops them at a push; open ones stay.
func TestConflictLogRetention(t *testing.T) {
	reg := testkit.Registry(t)
	srv := testkit.NewServer(t, reg, server.Options{})
	var offset atomic.Int64
	now := func() time.Time { return time.Now().Add(time.Duration(offset.Load())) }
	a := testkit.NewDevice(t, reg, srv.URL, testkit.DeviceOptions{Now: now})
	b := testkit.NewDevice(t, reg, srv.URL, testkit.DeviceOptions{Token: "token-bob"})
	ids := saveCustomers(t, a, 2, "x")
	a.Sync(t)
	b.Sync(t)
	for _, id := range ids { // two conflicts, b's later edits win
		for _, d := range []*testkit.Device{a, b} {
			var c testkit.Customer
			if err := d.DB.Get(ctx, &c, id); err != nil {
				t.Fatal(err)
			}
			c.Name += " edited"
			if err := d.DB.Save(ctx, &c); err != nil {
				t.Fatal(err)
			}
		}
	}
	offset.Store(int64(-time.Minute)) // a's edits are older
	b.Sync(t)
	a.Sync(t)
	log, err := a.DB.Conflicts(ctx)
	if err != nil || len(log) != 2 {
		t.Fatalf("conflict log: %d entries, %v; want 2", len(log), err)
	}
	if err := a.DB.DismissConflict(ctx, log[0].ID); err != nil {
		t.Fatal(err)
	}
	count := func() int {
		var n int
		if err := a.DB.SQL().QueryRow(`SELECT count(*) FROM _tether_conflicts`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	saveCustomers(t, a, 1, "a day later")
	a.Sync(t)
	if n := count(); n != 2 {
		t.Errorf("%d entries a day later, want both kept", n)
	}
	offset.Store(int64(31 * 24 * time.Hour))
	saveCustomers(t, a, 1, "a month later")
	a.Sync(t)
	if n := count(); n != 1 {
		t.Errorf("%d entries a month later, want the open one only", n)
	}
}

// Purges run while devices pull: no device misses a delete, and none that
// stays active is rebuilt.
func TestPurgeWhilePulling(t *testing.T) {
	reg := testkit.Registry(t)
	lim := server.Limits{DeviceActivity: time.Hour}
	eachStoreWith(t, reg, server.Options{Limits: lim, SweepInterval: -1}, func(t *testing.T, url string, store server.Store, clock *testkit.Clock) {
		writer := testkit.NewDevice(t, reg, url, testkit.DeviceOptions{})
		var readers []*testkit.Device
		for range 2 {
			readers = append(readers, testkit.NewDevice(t, reg, url, testkit.DeviceOptions{Token: "token-bob", Co: coordinator.Options{PullBatchSize: 3}}))
		}
		for _, d := range append(readers, writer) {
			d.Sync(t)
		}
		stop := make(chan struct{})
		errs := make(chan error, 8)
		var wg sync.WaitGroup
		for _, r := range readers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for range 1000 {
					select {
					case <-stop:
						return
					default:
					}
					rep, err := r.Co.SyncNow(ctx)
					if err == nil && rep.Rebuilt {
						err = errors.New("an active device was rebuilt")
					}
					if err != nil {
						errs <- err
						return
					}
				}
			}()
		}
		wg.Add(1)
		go func() { // the sweeper
			defer wg.Done()
			for range 1000 {
				select {
				case <-stop:
					return
				default:
				}
				if _, err := store.Sweep(ctx, lim, 50); err != nil {
					errs <- err
					return
				}
				time.Sleep(time.Millisecond)
			}
		}()
		for round := range 10 {
			ids := saveCustomers(t, writer, 6, fmt.Sprintf("round %d", round))
			writer.Sync(t)
			for _, id := range ids[:3] {
				if err := writer.DB.Delete(ctx, &testkit.Customer{ID: id}); err != nil {
					t.Fatal(err)
				}
			}
			writer.Sync(t)
		}
		close(stop)
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
		want := names(t, writer)
		for i, r := range readers {
			r.Sync(t)
			if got := names(t, r); !reflect.DeepEqual(got, want) {
				t.Errorf("reader %d holds %d customers, the writer %d: a delete was missed", i, len(got), len(want))
			}
		}
	})
}
