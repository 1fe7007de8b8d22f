package e2e

import (
	"testing"

	"github.com/tethersync/tether/internal/testkit"
	"github.com/tethersync/tether/internal/testkit/stores"
	"github.com/tethersync/tether/server"
)

// After a push, the device's copy of each pushed row carries what the
// server recorded, who wrote it and its version, without downloading it:
// ada creates a customer, bob edits and pushes it, and bob's copy says
// "bob" at once, as ada's does after her next sync.
func TestPushedRowCarriesServerWriter(t *testing.T) {
	reg := testkit.Registry(t)
	stores.Each(t, stores.All, func(t *testing.T, sdb stores.Database) {
		url := testkit.Serve(t, sdb.Open(t, reg.Schema(), stores.Options{}), server.Options{}).URL
		ada := testkit.NewDevice(t, reg, url, testkit.DeviceOptions{Token: "token-ada"})
		bob := testkit.NewDevice(t, reg, url, testkit.DeviceOptions{Token: "token-bob"})
		if err := ada.DB.Save(ctx, &testkit.Customer{ID: "c1", Name: "Acme"}); err != nil {
			t.Fatal(err)
		}
		ada.Sync(t)
		bob.Sync(t)
		var c testkit.Customer
		if err := bob.DB.Get(ctx, &c, "c1"); err != nil || c.ModifiedBy != "ada" {
			t.Fatalf("bob's copy before his edit: %+v, %v; want written by ada", c.Meta, err)
		}

		c.Name = "Acme Inc"
		if err := bob.DB.Save(ctx, &c); err != nil {
			t.Fatal(err)
		}
		rep := bob.Sync(t)
		pulled := 0
		for _, n := range rep.Pulled {
			pulled += n
		}
		if rep.Pushed["customers"] != 1 || pulled != 0 {
			t.Fatalf("bob's sync pushed %v and pulled %v; want the edit up and nothing down", rep.Pushed, rep.Pulled)
		}
		var mine testkit.Customer
		if err := bob.DB.Get(ctx, &mine, "c1"); err != nil || mine.ModifiedBy != "bob" {
			t.Errorf("bob's copy right after his push: %+v, %v; want ModifiedBy bob", mine.Meta, err)
		}

		ada.Sync(t)
		var theirs testkit.Customer
		if err := ada.DB.Get(ctx, &theirs, "c1"); err != nil {
			t.Fatal(err)
		}
		if theirs.ModifiedBy != "bob" || theirs.Version != mine.Version || mine.Version <= c.Version {
			t.Errorf("ada's copy %+v, bob's %+v (before the edit %+v); want both by bob at the same, later version", theirs.Meta, mine.Meta, c.Meta)
		}
	})
}
