// Package e2e tests the whole sync loop: devices with real SQLite files
// syncing through the real client with a real server on loopback.
package e2e

import (
	"context"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/tethersync/tether/coordinator"
	"github.com/tethersync/tether/internal/testkit"
	"github.com/tethersync/tether/localdb"
	"github.com/tethersync/tether/server"
)

var ctx = context.Background()

func ptr[T any](v T) *T { return &v }

// assertConverged checks that every device holds the server's rows of tenant acme.
func assertConverged(t *testing.T, srv *testkit.Server, devs ...*testkit.Device) {
	t.Helper()
	sdb := testkit.OpenServerDB(t, srv.Path)
	for _, tc := range []struct {
		table string
		cols  []string
	}{{"customers", testkit.CustomerCols}, {"orders", testkit.OrderCols}} {
		want := testkit.Dump(t, sdb, tc.table, tc.cols, "acme")
		for i, d := range devs {
			got := testkit.Dump(t, d.DB.SQL(), tc.table, tc.cols, "")
			if !reflect.DeepEqual(got, want) {
				t.Errorf("device %d table %s:\n got %q\nwant %q (server)", i, tc.table, got, want)
			}
		}
	}
}

func TestTwoDevicesConverge(t *testing.T) {
	reg := testkit.Registry(t)
	srv := testkit.NewServer(t, reg, server.Options{})
	a := testkit.NewDevice(t, reg, srv.URL, testkit.DeviceOptions{Token: "token-ada"})
	b := testkit.NewDevice(t, reg, srv.URL, testkit.DeviceOptions{Token: "token-bob"})

	// Offline edits on both.
	c1 := testkit.Customer{Name: "Ada", Email: ptr("ada@example.com"), Tags: []string{"vip"}}
	if err := a.DB.Save(ctx, &c1); err != nil {
		t.Fatal(err)
	}
	o1 := testkit.Order{CustomerID: c1.ID, Total: 12.5, PlacedAt: time.Date(2026, 3, 4, 5, 6, 7, 8, time.UTC)}
	if err := a.DB.Save(ctx, &o1); err != nil {
		t.Fatal(err)
	}
	c2 := testkit.Customer{Name: "Bob"}
	if err := b.DB.Save(ctx, &c2); err != nil {
		t.Fatal(err)
	}
	if n, _ := a.DB.Pending(ctx); n != 2 {
		t.Fatalf("Pending()=%d, want 2", n)
	}

	repA := a.Sync(t)
	if repA.Pushed["customers"] != 1 || repA.Pushed["orders"] != 1 {
		t.Errorf("a pushed %v, want 1 customer and 1 order", repA.Pushed)
	}
	b.Sync(t)
	a.Sync(t)
	if n, _ := a.DB.Pending(ctx); n != 0 {
		t.Errorf("Pending() after sync=%d, want 0", n)
	}

	var got testkit.Customer
	if err := b.DB.Get(ctx, &got, c1.ID); err != nil {
		t.Fatalf("b.Get(c1): %v", err)
	}
	if got.Name != "Ada" || got.Email == nil || *got.Email != "ada@example.com" || got.ModifiedBy != "ada" || got.Dirty || got.Version == 0 {
		t.Errorf("b holds %+v, want Ada synced from ada", got)
	}
	var gotO testkit.Order
	if err := b.DB.Get(ctx, &gotO, o1.ID); err != nil || !gotO.PlacedAt.Equal(o1.PlacedAt) {
		t.Errorf("b.Get(o1)=%+v, %v; want placed at %v", gotO, err, o1.PlacedAt)
	}

	// A delete travels as a tombstone: the customer's order goes with it
	// (a customer still referenced by a live order would come back).
	if err := b.DB.Delete(ctx, &gotO); err != nil {
		t.Fatal(err)
	}
	if err := b.DB.Delete(ctx, &got); err != nil {
		t.Fatal(err)
	}
	b.Sync(t)
	a.Sync(t)
	if err := a.DB.Get(ctx, &testkit.Customer{}, c1.ID); err == nil {
		t.Error("deleted customer still visible on a")
	}
	assertConverged(t, srv, a, b)
	list, err := localdb.Query[testkit.Customer](ctx, a.DB, "")
	if err != nil || len(list) != 1 || list[0].Name != "Bob" {
		t.Errorf("a customers=%+v, %v; want only Bob", list, err)
	}
}

// A parent updated after its child was written comes after the child in
// commit order: a fresh device pulling page by page gets the child first.
// With foreign keys declared, the pull must still succeed, and the
// references hold once it is complete.
func TestPullChildBeforeParent(t *testing.T) {
	reg := testkit.Registry(t)
	srv := testkit.NewServer(t, reg, server.Options{})
	a := testkit.NewDevice(t, reg, srv.URL, testkit.DeviceOptions{})
	c := testkit.Customer{ID: "p", Name: "parent"}
	o := testkit.Order{ID: "o", CustomerID: "p", Total: 1, PlacedAt: time.Now()}
	err := a.DB.Update(ctx, func(tx *localdb.Tx) error {
		return errors.Join(tx.Save(ctx, &c), tx.Save(ctx, &o))
	})
	if err != nil {
		t.Fatal(err)
	}
	a.Sync(t)
	c.Name = "parent, renamed later"
	if err := a.DB.Save(ctx, &c); err != nil {
		t.Fatal(err)
	}
	a.Sync(t)
	b := testkit.NewDevice(t, reg, srv.URL, testkit.DeviceOptions{Co: coordinator.Options{PullBatchSize: 1}})
	rep := b.Sync(t)
	if rep.Pulled["orders"] != 1 || rep.Pulled["customers"] != 1 {
		t.Fatalf("pulled %v", rep.Pulled)
	}
	var n int
	if err := b.DB.SQL().QueryRow(`SELECT count(*) FROM pragma_foreign_key_check`).Scan(&n); err != nil || n != 0 {
		t.Errorf("foreign_key_check: %d violations (%v)", n, err)
	}
	// References are still enforced on the device's own writes.
	bad := testkit.Order{ID: "o2", CustomerID: "no-such-customer", PlacedAt: time.Now()}
	if err := b.DB.Save(ctx, &bad); err == nil || !strings.Contains(err.Error(), "FOREIGN KEY") {
		t.Errorf("saving an order of a missing customer: %v, want a foreign key error", err)
	}
}
