package e2e

import (
	"fmt"
	"net/http"
	"path/filepath"
	"testing"

	"github.com/tethersync/tether/entity"
	"github.com/tethersync/tether/internal/testkit"
	"github.com/tethersync/tether/internal/testkit/stores"
	"github.com/tethersync/tether/server"
)

// Item has a counter: its stock adds up across devices.
type Item struct {
	entity.Meta `sync:"items,1"`
	ID          string `db:"id"`
	Name        string `db:"name"`
	Stock       int64  `db:"stock,counter"`
}

func itemRegistry(t *testing.T) *entity.Registry {
	t.Helper()
	reg := entity.NewRegistry()
	if err := reg.Register(Item{}); err != nil {
		t.Fatal(err)
	}
	return reg
}

// eachCounterServer runs f with a server over each store.
func eachCounterServer(t *testing.T, opts server.Options, f func(t *testing.T, reg *entity.Registry, url string)) {
	reg := itemRegistry(t)
	stores.Each(t, stores.All, func(t *testing.T, db stores.Database) {
		f(t, reg, testkit.Serve(t, db.Open(t, reg.Schema(), stores.Options{}), opts).URL)
	})
}

func getItem(t *testing.T, d *testkit.Device, id string) Item {
	t.Helper()
	var it Item
	if err := d.DB.Get(ctx, &it, id); err != nil {
		t.Fatal(err)
	}
	return it
}

func saveItem(t *testing.T, d *testkit.Device, it Item) {
	t.Helper()
	if err := d.DB.Save(ctx, &it); err != nil {
		t.Fatal(err)
	}
}

// serverStock is the stock of item id as a new device pulls it.
func serverStock(t *testing.T, reg *entity.Registry, url, id string) int64 {
	t.Helper()
	fresh := testkit.NewDevice(t, reg, url, testkit.DeviceOptions{Token: "token-bob"})
	fresh.Sync(t)
	return getItem(t, fresh, id).Stock
}

// Eight devices each add 1 to one stock 30 times, syncing in between: every
// increment counts, on every device and the server (under
// last-writer-wins a plain integer column keeps a fraction of them).
func TestCountersEightDevices(t *testing.T) {
	eachCounterServer(t, server.Options{}, func(t *testing.T, reg *entity.Registry, url string) {
		devs := make([]*testkit.Device, 8)
		for i := range devs {
			devs[i] = testkit.NewDevice(t, reg, url, testkit.DeviceOptions{})
		}
		saveItem(t, devs[0], Item{ID: "i1", Name: "bolts", Stock: 100})
		for _, d := range devs {
			d.Sync(t)
		}
		for round := range 30 {
			for i, d := range devs {
				if i%2 == 0 { // through the API
					it := getItem(t, d, "i1")
					it.Stock++
					saveItem(t, d, it)
				} else if _, err := d.DB.SQL().Exec(`UPDATE items SET stock = stock + 1 WHERE id = 'i1'`); err != nil {
					t.Fatal(err)
				}
				if (round+i)%3 != 0 { // some devices skip a sync now and then
					d.Sync(t)
				}
			}
		}
		for range 2 {
			for _, d := range devs {
				d.Sync(t)
			}
		}
		for i, d := range devs {
			if got := getItem(t, d, "i1").Stock; got != 340 {
				t.Errorf("device %d: stock=%d, want 340", i, got)
			}
			if n, _ := d.DB.Pending(ctx); n != 0 {
				t.Errorf("device %d: Pending=%d, want 0", i, n)
			}
			if cs, _ := d.DB.Conflicts(ctx); len(cs) != 0 {
				t.Errorf("device %d: %d conflicts, want none (counter changes alone)", i, len(cs))
			}
		}
		if got := serverStock(t, reg, url, "i1"); got != 340 {
			t.Errorf("server stock=%d, want 340", got)
		}
	})
}

// A device shows its increments at once, and the server's total after a
// sync; plain SQL that takes one away counts as -1.
func TestCounterPlainSQLDecrement(t *testing.T) {
	eachCounterServer(t, server.Options{}, func(t *testing.T, reg *entity.Registry, url string) {
		a := testkit.NewDevice(t, reg, url, testkit.DeviceOptions{})
		b := testkit.NewDevice(t, reg, url, testkit.DeviceOptions{})
		saveItem(t, a, Item{ID: "i1", Name: "bolts", Stock: 10})
		a.Sync(t)
		b.Sync(t)
		for range 3 {
			if _, err := a.DB.SQL().Exec(`UPDATE items SET stock = stock - 1 WHERE id = 'i1'`); err != nil {
				t.Fatal(err)
			}
		}
		if got := getItem(t, a, "i1").Stock; got != 7 {
			t.Errorf("a before sync: stock=%d, want 7 (its own increments at once)", got)
		}
		it := getItem(t, b, "i1")
		it.Stock += 5
		saveItem(t, b, it)
		b.Sync(t)
		a.Sync(t)
		if got := getItem(t, a, "i1").Stock; got != 12 {
			t.Errorf("a after sync: stock=%d, want 12 (10 - 3 + 5)", got)
		}
		b.Sync(t)
		if got := getItem(t, b, "i1").Stock; got != 12 {
			t.Errorf("b: stock=%d, want 12", got)
		}
	})
}

// Under last-writer-wins, the later name wins the row's conflict while both
// devices' increments add up.
func TestCounterAddsThroughConflict(t *testing.T) {
	eachCounterServer(t, server.Options{}, func(t *testing.T, reg *entity.Registry, url string) {
		a := testkit.NewDevice(t, reg, url, testkit.DeviceOptions{})
		b := testkit.NewDevice(t, reg, url, testkit.DeviceOptions{})
		saveItem(t, a, Item{ID: "i1", Name: "bolts", Stock: 10})
		a.Sync(t)
		b.Sync(t)
		ia := getItem(t, a, "i1")
		ia.Name, ia.Stock = "a's bolts", ia.Stock+4
		saveItem(t, a, ia)
		later()
		ib := getItem(t, b, "i1")
		ib.Name, ib.Stock = "b's bolts", ib.Stock-1
		saveItem(t, b, ib)
		a.Sync(t)
		b.Sync(t) // a conflict on the name: b's is later
		a.Sync(t)
		for name, d := range map[string]*testkit.Device{"a": a, "b": b} {
			got := getItem(t, d, "i1")
			if got.Name != "b's bolts" || got.Stock != 13 {
				t.Errorf("%s holds %q with stock %d, want b's name and stock 13", name, got.Name, got.Stock)
			}
		}
		cs, _ := b.DB.Conflicts(ctx)
		if len(cs) != 1 {
			t.Fatalf("b logged %d conflicts, want 1 (the name)", len(cs))
		}
		// Keeping b's version again keeps its name, not its old stock.
		if err := b.DB.KeepLocal(ctx, cs[0].ID); err != nil {
			t.Fatal(err)
		}
		b.Sync(t)
		a.Sync(t)
		if got := getItem(t, a, "i1"); got.Name != "b's bolts" || got.Stock != 13 {
			t.Errorf("after KeepLocal, a holds %q with stock %d, want b's name and stock 13", got.Name, got.Stock)
		}

		// A change of the counter alone meets a's rename without a
		// conflict, and keeps it.
		ia = getItem(t, a, "i1")
		ia.Name = "renamed by a"
		saveItem(t, a, ia)
		if _, err := b.DB.SQL().Exec(`UPDATE items SET stock = stock + 7 WHERE id = 'i1'`); err != nil {
			t.Fatal(err)
		}
		a.Sync(t)
		before, _ := b.DB.Conflicts(ctx)
		b.Sync(t)
		a.Sync(t)
		after, _ := b.DB.Conflicts(ctx)
		if len(after) != len(before) {
			t.Errorf("b logged %d new conflicts for a counter change, want 0", len(after)-len(before))
		}
		for name, d := range map[string]*testkit.Device{"a": a, "b": b} {
			got := getItem(t, d, "i1")
			if got.Name != "renamed by a" || got.Stock != 20 {
				t.Errorf("%s holds %q with stock %d, want a's name and stock 20", name, got.Name, got.Stock)
			}
		}
	})
}

// A commit whose answer is lost, or that a proxy delivers twice, adds its
// increments once.
func TestCounterRetriedCommit(t *testing.T) {
	for _, fault := range []testkit.Fault{testkit.DropResponse, testkit.Duplicate} {
		t.Run(fault.String(), func(t *testing.T) {
			eachCounterServer(t, server.Options{}, func(t *testing.T, reg *entity.Registry, url string) {
				armed := false
				ft := &testkit.FaultTransport{Decide: func(r *http.Request, kind string, n int) testkit.Fault {
					if armed && kind == "commit" {
						armed = false
						return fault
					}
					return testkit.Pass
				}}
				a := testkit.NewDevice(t, reg, url, testkit.DeviceOptions{Transport: ft})
				saveItem(t, a, Item{ID: "i1", Name: "bolts", Stock: 1})
				a.Sync(t)
				for range 5 {
					it := getItem(t, a, "i1")
					it.Stock += 2
					saveItem(t, a, it)
					armed = true
					a.Sync(t)
				}
				if got := getItem(t, a, "i1").Stock; got != 11 {
					t.Errorf("device: stock=%d, want 11", got)
				}
				if got := serverStock(t, reg, url, "i1"); got != 11 {
					t.Errorf("server: stock=%d, want 11 (1 + 5 × 2)", got)
				}
			})
		})
	}
}

// A device restored from a backup pushes again increments the server has
// applied; a copy of a device's file pushes the same ones as its original:
// each counts once, and what the copies add afterwards counts.
func TestCounterBackupAndCopy(t *testing.T) {
	eachCounterServer(t, server.Options{}, func(t *testing.T, reg *entity.Registry, url string) {
		dir := t.TempDir()
		a := testkit.NewDevice(t, reg, url, testkit.DeviceOptions{Path: filepath.Join(dir, "a.db")})
		saveItem(t, a, Item{ID: "i1", Name: "bolts", Stock: 10})
		a.Sync(t)
		if _, err := a.DB.SQL().Exec(`UPDATE items SET stock = stock + 5 WHERE id = 'i1'`); err != nil {
			t.Fatal(err)
		}
		backup := func(name string) string {
			path := filepath.Join(dir, name)
			if _, err := a.DB.SQL().Exec(fmt.Sprintf(`VACUUM INTO '%s'`, path)); err != nil {
				t.Fatal(err)
			}
			return path
		}
		saved, copied := backup("backup.db"), backup("copy.db")
		a.Sync(t) // +5 applied
		if got := serverStock(t, reg, url, "i1"); got != 15 {
			t.Fatalf("server: stock=%d, want 15", got)
		}

		// The backup, restored, pushes +5 again.
		restored := testkit.NewDevice(t, reg, url, testkit.DeviceOptions{Path: saved})
		restored.Sync(t)
		if got := getItem(t, restored, "i1").Stock; got != 15 {
			t.Errorf("restored: stock=%d, want 15 (its +5 counted once)", got)
		}

		// The copy, alive next to the original: the same +5 once, then
		// each one's own increment.
		cp := testkit.NewDevice(t, reg, url, testkit.DeviceOptions{Path: copied})
		cp.Sync(t)
		if _, err := cp.DB.SQL().Exec(`UPDATE items SET stock = stock + 1 WHERE id = 'i1'`); err != nil {
			t.Fatal(err)
		}
		if _, err := a.DB.SQL().Exec(`UPDATE items SET stock = stock + 100 WHERE id = 'i1'`); err != nil {
			t.Fatal(err)
		}
		cp.Sync(t)
		a.Sync(t)
		cp.Sync(t)
		restored.Sync(t)
		for name, d := range map[string]*testkit.Device{"a": a, "copy": cp, "restored": restored} {
			if got := getItem(t, d, "i1").Stock; got != 116 {
				t.Errorf("%s: stock=%d, want 116 (10 + 5 + 1 + 100)", name, got)
			}
		}
		if got := serverStock(t, reg, url, "i1"); got != 116 {
			t.Errorf("server: stock=%d, want 116", got)
		}
	})
}

// A counter must be a non-null integer.
func TestCounterTagNeedsInteger(t *testing.T) {
	type bad struct {
		entity.Meta `sync:"bad,1"`
		ID          string `db:"id"`
		Level       string `db:"level,counter"`
	}
	if err := entity.NewRegistry().Register(bad{}); err == nil {
		t.Error("a text counter registered")
	}
	schema := entity.Schema{Tables: []entity.Table{{Name: "bad", Columns: []entity.Column{
		{Name: "id", Kind: entity.KindText}, {Name: "level", Kind: entity.KindReal, Counter: true}}}}}
	if err := schema.Validate(); err == nil {
		t.Error("a schema with a real counter validated")
	}
}

// The same with the eight devices pushing at the same time: commits that
// run alongside each other on the server still add every increment.
func TestCountersConcurrentDevices(t *testing.T) {
	eachCounterServer(t, server.Options{}, func(t *testing.T, reg *entity.Registry, url string) {
		devs := make([]*testkit.Device, 8)
		for i := range devs {
			devs[i] = testkit.NewDevice(t, reg, url, testkit.DeviceOptions{})
		}
		saveItem(t, devs[0], Item{ID: "i1", Name: "bolts"})
		for _, d := range devs {
			d.Sync(t)
		}
		errs := make(chan error, len(devs))
		for _, d := range devs {
			go func() {
				for range 30 {
					if _, err := d.DB.SQL().Exec(`UPDATE items SET stock = stock + 1 WHERE id = 'i1'`); err != nil {
						errs <- err
						return
					}
					if _, err := d.Co.SyncNow(ctx); err != nil {
						errs <- err
						return
					}
				}
				errs <- nil
			}()
		}
		for range devs {
			if err := <-errs; err != nil {
				t.Fatal(err)
			}
		}
		for range 2 {
			for _, d := range devs {
				d.Sync(t)
			}
		}
		for i, d := range devs {
			if got := getItem(t, d, "i1").Stock; got != 240 {
				t.Errorf("device %d: stock=%d, want 240", i, got)
			}
		}
	})
}
