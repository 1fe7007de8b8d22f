package e2e

import (
	"database/sql"
	"reflect"
	"testing"
	"time"

	"github.com/tethersync/tether/entity"
	"github.com/tethersync/tether/internal/testkit"
	"github.com/tethersync/tether/server"
)

// Verify tells a device whether its tables hold what the server holds,
// on both stores: equal after a sync, and the tables that differ named
// when a row differs on either side.
func TestVerify(t *testing.T) {
	reg := testkit.Registry(t)
	t.Run("sqlite", func(t *testing.T) {
		srv := testkit.NewServer(t, reg, server.Options{})
		db, err := sql.Open("sqlite3", srv.Path)
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		verify(t, reg, srv.URL, func(q string) {
			if _, err := db.Exec(q); err != nil {
				t.Fatal(err)
			}
		})
	})
	eachSharedStore(t, func(t *testing.T, kind string) {
		store := sharedStore(t, kind, reg)
		db := store.(interface{ DB() *sql.DB }).DB()
		verify(t, reg, testkit.Serve(t, store, server.Options{}).URL, func(q string) {
			if _, err := db.ExecContext(t.Context(), q); err != nil {
				t.Fatal(err)
			}
		})
	})
}

func verify(t *testing.T, reg *entity.Registry, url string, serverSQL func(string)) {
	a := testkit.NewDevice(t, reg, url, testkit.DeviceOptions{})
	b := testkit.NewDevice(t, reg, url, testkit.DeviceOptions{})
	// Ids whose byte order differs from a case-insensitive or accented
	// collation, every kind of value, and a tombstone.
	email := "ada@example.com"
	for _, c := range []testkit.Customer{
		{ID: "Zed", Name: "Zed"}, {ID: "alpha", Name: "alpha", Email: &email, Tags: []string{"x"}},
		{ID: "Émile", Name: "Émile"}, {ID: "bravo", Name: "gone"},
	} {
		if err := a.DB.Save(ctx, &c); err != nil {
			t.Fatal(err)
		}
	}
	o := testkit.Order{ID: "o1", CustomerID: "alpha", Total: 12.25, PlacedAt: time.Date(2026, 11, 23, 8, 0, 0, 123456789, time.UTC)}
	if err := a.DB.Save(ctx, &o); err != nil {
		t.Fatal(err)
	}
	if err := a.DB.Delete(ctx, &testkit.Customer{ID: "bravo"}); err != nil {
		t.Fatal(err)
	}
	a.Sync(t)
	b.Sync(t)
	check := func(d *testkit.Device, differs []string, pending int) {
		t.Helper()
		rep, err := d.Co.Verify(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if got := rep.Differs(); !reflect.DeepEqual(got, differs) {
			t.Errorf("tables that differ: %v, want %v (%+v)", got, differs, rep.Tables)
		}
		if rep.Tables[0].Table != "customers" || rep.Tables[0].DeviceRows != 3 || rep.Tables[0].Pending != pending {
			t.Errorf("customers check %+v, want 3 live rows on the device and %d pending", rep.Tables[0], pending)
		}
	}
	check(a, nil, 0)
	check(b, nil, 0)

	// A row changed behind the server's back: the customers table differs.
	serverSQL(`UPDATE customers SET name = 'tampered' WHERE id = 'Zed'`)
	check(b, []string{"customers"}, 0)
	serverSQL(`UPDATE customers SET name = 'Zed' WHERE id = 'Zed'`)
	check(b, nil, 0)

	// An edit not yet pushed makes the device differ, and says so.
	c := testkit.Customer{ID: "alpha", Name: "renamed", Email: &email, Tags: []string{"x"}}
	if err := b.DB.Save(ctx, &c); err != nil {
		t.Fatal(err)
	}
	check(b, []string{"customers"}, 1)
	b.Sync(t)
	check(b, nil, 0)
	check(a, []string{"customers"}, 0) // a has not pulled the rename yet
	a.Sync(t)
	check(a, nil, 0)
}
