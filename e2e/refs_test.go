package e2e

import (
	"database/sql"
	"fmt"
	"sort"
	"strings"
	"testing"

	"github.com/tethersync/tether/entity"
	"github.com/tethersync/tether/internal/testkit"
	"github.com/tethersync/tether/internal/testkit/stores"
	"github.com/tethersync/tether/localdb"
	"github.com/tethersync/tether/server"
	"github.com/tethersync/tether/wire"
)

// Three levels, the default policy: a deleted row a live one references
// comes back.
type rCustomer struct {
	entity.Meta `sync:"customers,1"`
	ID          string `db:"id"`
	Name        string `db:"name"`
}

type rOrder struct {
	entity.Meta `sync:"orders,2"`
	ID          string `db:"id"`
	CustomerID  string `db:"customer_id,ref=customers"`
}

type rLine struct {
	entity.Meta `sync:"lines,3"`
	ID          string `db:"id"`
	OrderID     string `db:"order_id,ref=orders"`
}

// The same three levels with cascade: rows go with the row they reference.
type cOrder struct {
	entity.Meta `sync:"orders,2"`
	ID          string `db:"id"`
	CustomerID  string `db:"customer_id,ref=customers,cascade"`
}

type cLine struct {
	entity.Meta `sync:"lines,3"`
	ID          string `db:"id"`
	OrderID     string `db:"order_id,ref=orders,cascade"`
}

// eachStore runs f on a server over each store, for the registry reg.
func eachStore(t *testing.T, reg *entity.Registry, f func(t *testing.T, url string)) {
	stores.Each(t, stores.All, func(t *testing.T, db stores.Database) {
		store := db.Open(t, reg.Schema(), stores.Options{})
		f(t, testkit.Serve(t, store, server.Options{}).URL)
	})
}

// pushRaw pushes rows through d's client in one session of its own and
// returns the commit's answer: rows a device's database would not write.
func pushRaw(t *testing.T, d *testkit.Device, rows ...wire.Row) wire.Commit {
	t.Helper()
	dev := d.DB.DeviceID()
	session, err := d.API.OpenSession(ctx, dev, "")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.API.SendBatch(ctx, dev, session, 0, rows, wire.BatchParams{}); err != nil {
		t.Fatal(err)
	}
	c, err := d.API.Commit(ctx, dev, session)
	if err != nil {
		t.Fatalf("commit %s %s: %v", rows[0].Table, rows[0].ID, err)
	}
	return c
}

// noneDangling syncs a new device of bob's and checks that it holds no
// live row referencing a deleted or missing one.
func noneDangling(t *testing.T, reg *entity.Registry, url string) {
	t.Helper()
	other := testkit.NewDevice(t, reg, url, testkit.DeviceOptions{Token: "token-bob"})
	other.Sync(t)
	if n := dangling(t, other.DB.SQL()); n != 0 {
		t.Errorf("another device holds %d dangling rows", n)
	}
}

// dangling counts, on a device, the live rows that reference a deleted
// or missing one.
func dangling(t *testing.T, db *sql.DB) int {
	t.Helper()
	var n int
	err := db.QueryRow(`SELECT
		(SELECT count(*) FROM orders o LEFT JOIN customers c ON c.id = o.customer_id WHERE o._deleted = 0 AND coalesce(c._deleted, 1) = 1) +
		(SELECT count(*) FROM lines l LEFT JOIN orders o ON o.id = l.order_id WHERE l._deleted = 0 AND coalesce(o._deleted, 1) = 1)`).Scan(&n)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// referenceConflicts returns the open conflict log entries of strategy
// "reference", as "table id: reason".
func referenceConflicts(t *testing.T, d *testkit.Device) []string {
	t.Helper()
	log, err := d.DB.Conflicts(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, c := range log {
		if c.Strategy == "reference" {
			out = append(out, fmt.Sprintf("%s %s: %s", c.Table, c.RowID, c.Reason))
		}
	}
	sort.Strings(out)
	return out
}

func save(t *testing.T, d *testkit.Device, rows ...any) {
	t.Helper()
	if err := d.DB.Update(ctx, func(tx *localdb.Tx) error {
		for _, r := range rows {
			if err := tx.Save(ctx, r); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
}

func del(t *testing.T, d *testkit.Device, rows ...any) {
	t.Helper()
	for _, r := range rows {
		if err := d.DB.Delete(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
}

// settle syncs every device twice and checks that they converged, that no
// live row references a deleted one anywhere (G12), and that Verify agrees.
func settle(t *testing.T, devs ...*testkit.Device) {
	t.Helper()
	for range 2 {
		for _, d := range devs {
			d.Sync(t)
		}
	}
	for i, d := range devs {
		if n := dangling(t, d.DB.SQL()); n != 0 {
			t.Errorf("device %d holds %d live rows referencing deleted ones", i, n)
		}
		rep, err := d.Co.Verify(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if diff := rep.Differs(); len(diff) > 0 {
			t.Errorf("device %d differs from the server in %v", i, diff)
		}
	}
}

// Restore, the default: a customer deleted on one device while another,
// offline, adds an order for it comes back, in either order, and over
// three levels; the device whose delete was undone is told why.
func TestReferencesRestore(t *testing.T) {
	reg := registry(t, rCustomer{}, rOrder{}, rLine{})
	eachStore(t, reg, func(t *testing.T, url string) {
		a := testkit.NewDevice(t, reg, url, testkit.DeviceOptions{})
		b := testkit.NewDevice(t, reg, url, testkit.DeviceOptions{Token: "token-bob"})
		c1, c2 := &rCustomer{ID: "c1", Name: "Ada"}, &rCustomer{ID: "c2", Name: "Bob"}
		save(t, a, c1, c2)
		a.Sync(t)
		b.Sync(t)

		// Delete first: a deletes c1; b, which has not heard, orders for it.
		del(t, a, c1)
		a.Sync(t)
		save(t, b, &rOrder{ID: "o1", CustomerID: "c1"})
		b.Sync(t)
		// Child first: b's order for c2 is on the server before a deletes c2.
		save(t, b, &rOrder{ID: "o2", CustomerID: "c2"})
		b.Sync(t)
		del(t, a, c2)
		a.Sync(t)
		if got := referenceConflicts(t, a); len(got) != 2 || !strings.Contains(got[0], "customers c1: brought back: orders \"o1\" references it") ||
			!strings.Contains(got[1], "customers c2: brought back: orders \"o2\" references it") {
			t.Errorf("a's conflict log: %q; want c1 and c2 brought back, with why", got)
		}
		var c rCustomer
		if err := a.DB.Get(ctx, &c, "c1"); err != nil || c.Name != "Ada" {
			t.Errorf("c1 on a: %+v, %v; want it back, with its name", c, err)
		}

		// Three levels: a deletes an order and its customer; b, offline,
		// adds a line to the order. Both come back.
		save(t, a, &rCustomer{ID: "c3", Name: "Cy"}, &rOrder{ID: "o3", CustomerID: "c3"})
		a.Sync(t)
		b.Sync(t)
		del(t, a, &rOrder{ID: "o3"}, &rCustomer{ID: "c3"})
		a.Sync(t)
		save(t, b, &rLine{ID: "l3", OrderID: "o3"})
		b.Sync(t)
		settle(t, a, b)
		for _, id := range []string{"o3", "c3"} {
			var err error
			if id == "o3" {
				err = a.DB.Get(ctx, &rOrder{}, id)
			} else {
				err = a.DB.Get(ctx, &rCustomer{}, id)
			}
			if err != nil {
				t.Errorf("%s on a: %v; want it back", id, err)
			}
		}
		if got := referenceConflicts(t, a); len(got) != 4 {
			t.Errorf("a's conflict log: %q; want o3 and c3 too", got)
		}
	})
}

// Cascade: rows go with the row they reference, in either order and over
// three levels, and the devices whose rows were deleted are told why.
func TestReferencesCascade(t *testing.T) {
	reg := registry(t, rCustomer{}, cOrder{}, cLine{})
	eachStore(t, reg, func(t *testing.T, url string) {
		a := testkit.NewDevice(t, reg, url, testkit.DeviceOptions{})
		b := testkit.NewDevice(t, reg, url, testkit.DeviceOptions{Token: "token-bob"})
		save(t, a, &rCustomer{ID: "c1", Name: "Ada"}, &rCustomer{ID: "c2", Name: "Bob"})
		a.Sync(t)
		b.Sync(t)

		// Child first: b's order and line for c1 are on the server when a
		// deletes c1: they go with it, and b is told.
		save(t, b, &cOrder{ID: "o1", CustomerID: "c1"}, &cLine{ID: "l1", OrderID: "o1"})
		b.Sync(t)
		del(t, a, &rCustomer{ID: "c1"})
		a.Sync(t)
		b.Sync(t)
		if got := referenceConflicts(t, b); len(got) != 2 || !strings.Contains(got[1], "orders o1: deleted with customers \"c1\"") ||
			!strings.Contains(got[0], "lines l1: deleted with orders \"o1\"") {
			t.Errorf("b's conflict log: %q; want o1 and l1 deleted, with why", got)
		}
		if err := b.DB.Get(ctx, &cLine{}, "l1"); err == nil {
			t.Error("l1 still live on b")
		}

		// Delete first: a deletes c2; b, which has not heard, adds an order
		// and a line for it: its own push deletes them, and says why.
		del(t, a, &rCustomer{ID: "c2"})
		a.Sync(t)
		save(t, b, &cOrder{ID: "o2", CustomerID: "c2"}, &cLine{ID: "l2", OrderID: "o2"})
		b.Sync(t)
		if got := referenceConflicts(t, b); len(got) != 4 {
			t.Errorf("b's conflict log: %q; want o2 and l2 too", got)
		}
		settle(t, a, b)
		if err := b.DB.Get(ctx, &cOrder{}, "o2"); err == nil {
			t.Error("o2 still live on b")
		}
	})
}

// A row that references a row the server does not have (never pushed, or
// its tombstone purged) cannot bring it back: it is deleted, and its
// device is told why.
func TestReferenceToMissingRow(t *testing.T) {
	reg := registry(t, rCustomer{}, rOrder{}, rLine{})
	eachStore(t, reg, func(t *testing.T, url string) {
		d := testkit.NewDevice(t, reg, url, testkit.DeviceOptions{})
		d.Sync(t)
		dev := d.DB.DeviceID()
		c := pushRaw(t, d, wire.Row{Table: "orders", ID: "o9", HLC: "1700000000000.000000." + dev, Values: map[string]any{"customer_id": "nope"}})
		if len(c.Conflicts) != 1 || c.Conflicts[0].ID != "o9" || c.Conflicts[0].Strategy != "reference" || !c.Conflicts[0].Row.Deleted ||
			!strings.Contains(c.Conflicts[0].Reason, `customers "nope"`) {
			t.Errorf("commit answer %+v; want o9 deleted, saying it references a missing customer", c.Conflicts)
		}
		noneDangling(t, reg, url)
	})
}

// A live row that references a deleted row which itself references a row
// that does not exist: bringing the middle row back would make it
// reference nothing, and deleting it again would leave the live row
// dangling. The rules settle (they went round until they gave up, and
// the device's every push failed): the middle row stays deleted and the
// live row goes with it, and the device is told why.
func TestReferenceChainToMissingRowSettles(t *testing.T) {
	reg := registry(t, rCustomer{}, rOrder{}, rLine{})
	eachStore(t, reg, func(t *testing.T, url string) {
		d := testkit.NewDevice(t, reg, url, testkit.DeviceOptions{})
		d.Sync(t)
		dev := d.DB.DeviceID()
		pushRaw(t, d, wire.Row{Table: "orders", ID: "o1", Deleted: true, HLC: "1700000000000.000000." + dev, Values: map[string]any{"customer_id": "ghost"}})
		c := pushRaw(t, d, wire.Row{Table: "lines", ID: "l1", HLC: "1700000000001.000000." + dev, Values: map[string]any{"order_id": "o1"}})
		var lines []string
		for _, cf := range c.Conflicts {
			if cf.Table == "lines" && cf.Row.Deleted && strings.Contains(cf.Reason, "references a row that does not exist") {
				lines = append(lines, cf.ID)
			}
		}
		if len(lines) != 1 || lines[0] != "l1" {
			t.Errorf("commit answer %+v; want l1 deleted, saying its order references a row that does not exist", c.Conflicts)
		}
		noneDangling(t, reg, url)
	})
}

// A row brought back for several rows of one push is brought back once,
// and the device whose delete was undone is told (the rules rewrote it
// once per child, and the second rewrite lost whom to tell).
func TestReferencesRestoreForSeveralChildren(t *testing.T) {
	reg := registry(t, rCustomer{}, rOrder{}, rLine{})
	eachStore(t, reg, func(t *testing.T, url string) {
		a := testkit.NewDevice(t, reg, url, testkit.DeviceOptions{})
		b := testkit.NewDevice(t, reg, url, testkit.DeviceOptions{Token: "token-bob"})
		save(t, a, &rCustomer{ID: "c1", Name: "Ada"})
		a.Sync(t)
		b.Sync(t)
		del(t, a, &rCustomer{ID: "c1"})
		a.Sync(t)
		save(t, b, &rOrder{ID: "o1", CustomerID: "c1"}, &rOrder{ID: "o2", CustomerID: "c1"})
		b.Sync(t)
		a.Sync(t)
		if got := referenceConflicts(t, a); len(got) != 1 || !strings.Contains(got[0], "customers c1: brought back") {
			t.Errorf("a's conflict log: %q; want c1 brought back, with why", got)
		}
		settle(t, a, b)
	})
}
