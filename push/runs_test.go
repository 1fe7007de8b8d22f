package push_test

import (
	"math/rand/v2"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/tethersync/tether/internal/testkit"
	"github.com/tethersync/tether/localdb"
	"github.com/tethersync/tether/push"
	"github.com/tethersync/tether/server"
)

// rename saves new names for the customers ids on the device.
func rename(t *testing.T, db *localdb.DB, name string, ids ...string) {
	t.Helper()
	ctx := testCtx(t)
	for _, id := range ids {
		var c testkit.Customer
		if err := db.Get(ctx, &c, id); err != nil {
			t.Fatal(err)
		}
		c.Name = name
		if err := db.Save(ctx, &c); err != nil {
			t.Fatal(err)
		}
	}
}

// G2 across runs of sends: a push that failed with batch 3 staged past
// the lost batch 2 is resumed, after a restart, with larger batches (the
// resumed push ends at batch 2). What the failed run staged past the
// acknowledged batches is dropped by the resumed run's first batch: the
// session commits as resumed, and the rows edited since on the device are
// not overwritten on the server by their earlier copies in the stale
// batch 3, committed after batch 2.
func TestPushRestartDropsTheEarlierRunsBatches(t *testing.T) {
	ctx := testCtx(t)
	reg := testkit.Registry(t)
	srv := testkit.NewServer(t, reg, server.Options{})
	path := filepath.Join(t.TempDir(), "device.db")
	wl := &wireLog{}
	broken := &testkit.FaultTransport{Base: wl, Decide: func(r *http.Request, kind string, n int) testkit.Fault {
		if strings.HasSuffix(r.URL.Path, "/batches/2") {
			return testkit.DropRequest
		}
		return testkit.Pass
	}}
	db, api := device(t, reg, srv.URL, broken, path)
	ids := saveCustomers(t, db, 10)
	if _, err := push.New(db.Syncer(), api, push.Options{BatchSize: 2, InFlight: 2}).Push(ctx); err == nil {
		t.Fatal("Push succeeded through a dropped batch")
	}
	staged3 := false
	for _, b := range wl.take() {
		staged3 = staged3 || b.seq == "3"
	}
	if !staged3 {
		t.Fatal("batch 3 was not on the wire with batch 2: nothing to test")
	}
	rename(t, db, "edited after the failure", ids[6], ids[7]) // batch 3's rows
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}

	db2, api2 := device(t, reg, srv.URL, &testkit.FaultTransport{}, path)
	if _, err := push.New(db2.Syncer(), api2, push.Options{BatchSize: 8, InFlight: 2}).Push(ctx); err != nil {
		t.Fatal(err)
	}
	if n := serverInt(t, srv, `SELECT count(*) FROM customers`); n != 10 {
		t.Errorf("server customers=%d, want 10", n)
	}
	if n := serverInt(t, srv, `SELECT count(*) FROM customers WHERE name = 'edited after the failure'`); n != 2 {
		t.Errorf("server holds %d of the 2 edits made after the failure: the failed run's batch 3 was committed over them", n)
	}
	if n := serverInt(t, srv, `SELECT count(*) FROM _tether_sessions`); n != 1 {
		t.Errorf("server sessions=%d, want 1: the resumed push commits the session it resumes", n)
	}
	if n := pending(t, db2); n != 0 {
		t.Errorf("Pending=%d, want 0", n)
	}
}

// G2 and G3 with two batches on the wire: under lost requests, lost
// answers, duplicated and delayed requests and 500s on the batches, the
// pushes that follow put every row on the server once, as the device
// holds it, and leave nothing dirty.
func TestPushTwoInFlightUnderFaults(t *testing.T) {
	for seed := range uint64(4) {
		t.Run("seed "+string(rune('0'+seed)), func(t *testing.T) {
			ctx := testCtx(t)
			reg := testkit.Registry(t)
			srv := testkit.NewServer(t, reg, server.Options{})
			var mu sync.Mutex
			rng := rand.New(rand.NewPCG(seed, 24))
			faults := []testkit.Fault{testkit.Pass, testkit.Pass, testkit.Pass, testkit.DropRequest, testkit.DropResponse,
				testkit.Duplicate, testkit.Delay, testkit.Status500}
			ft := &testkit.FaultTransport{Decide: func(r *http.Request, kind string, n int) testkit.Fault {
				if kind != "batches" && kind != "commit" {
					return testkit.Pass
				}
				mu.Lock()
				defer mu.Unlock()
				return faults[rng.IntN(len(faults))]
			}}
			db, api := device(t, reg, srv.URL, ft, "")
			ids := saveCustomers(t, db, 40)
			eng := push.New(db.Syncer(), api, push.Options{BatchSize: 3, InFlight: 2})
			var err error
			for i := range 200 {
				if i == 10 {
					rename(t, db, "edited between pushes", ids[20:26]...)
				}
				// An edit made while a session is under way stays dirty
				// past its commit (G2): pushes go on until none is left.
				if _, err = eng.Push(ctx); err == nil && i > 10 && pending(t, db) == 0 {
					break
				}
			}
			if err != nil {
				t.Fatalf("the last push: %v", err)
			}
			if n := pending(t, db); n != 0 {
				t.Errorf("Pending=%d, want 0", n)
			}
			if n := serverInt(t, srv, `SELECT count(*) FROM customers`); n != 40 {
				t.Errorf("server customers=%d, want 40", n)
			}
			if n := serverInt(t, srv, `SELECT count(*) FROM customers WHERE name = 'edited between pushes'`); n != 6 {
				t.Errorf("server holds %d of the 6 edits, want 6", n)
			}
			for _, id := range ids {
				var c testkit.Customer
				if err := db.Get(ctx, &c, id); err != nil {
					t.Fatal(err)
				}
				if n := serverInt(t, srv, `SELECT count(*) FROM customers WHERE id = ? AND name = ?`, id, c.Name); n != 1 {
					t.Errorf("customer %s: the server does not hold the device's name %q", id, c.Name)
				}
			}
		})
	}
}
