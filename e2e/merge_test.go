package e2e

import (
	"testing"

	"github.com/tethersync/tether/entity"
	"github.com/tethersync/tether/internal/testkit"
	"github.com/tethersync/tether/server"
)

// MergeColumns keeps both devices' edits when they changed different
// columns, and settles a column both changed by the later stamp; on both
// stores.
func TestMergeColumns(t *testing.T) {
	reg := testkit.Registry(t)
	opts := server.Options{Strategies: map[string]server.Strategy{"customers": server.MergeColumns}}
	t.Run("sqlite", func(t *testing.T) { mergeColumns(t, reg, testkit.NewServer(t, reg, opts).URL) })
	eachSharedStore(t, func(t *testing.T, kind string) {
		mergeColumns(t, reg, testkit.Serve(t, sharedStore(t, kind, reg), opts).URL)
	})
}

func mergeColumns(t *testing.T, reg *entity.Registry, url string) {
	a := testkit.NewDevice(t, reg, url, testkit.DeviceOptions{})
	b := testkit.NewDevice(t, reg, url, testkit.DeviceOptions{})
	c := testkit.Customer{ID: "c1", Name: "original", Tags: []string{"t"}}
	if err := a.DB.Save(ctx, &c); err != nil {
		t.Fatal(err)
	}
	a.Sync(t)
	b.Sync(t)
	get := func(d *testkit.Device) testkit.Customer {
		t.Helper()
		var c testkit.Customer
		if err := d.DB.Get(ctx, &c, "c1"); err != nil {
			t.Fatal(err)
		}
		return c
	}

	// Different columns: a renames, b sets the email (through plain SQL).
	ca := get(a)
	ca.Name = "renamed by a"
	if err := a.DB.Save(ctx, &ca); err != nil {
		t.Fatal(err)
	}
	if _, err := b.DB.SQL().Exec(`UPDATE customers SET email = 'b@example.com' WHERE id = 'c1'`); err != nil {
		t.Fatal(err)
	}
	a.Sync(t)
	b.Sync(t) // conflict: merged
	a.Sync(t)
	for i, d := range []*testkit.Device{a, b} {
		got := get(d)
		if got.Name != "renamed by a" || got.Email == nil || *got.Email != "b@example.com" || len(got.Tags) != 1 {
			t.Errorf("device %d holds %+v, want a's name and b's email", i, got)
		}
	}

	// The same column on both, plus one column each: the later stamp takes
	// the shared column, each keeps its own.
	ca, cb := get(a), get(b)
	cb.Name, cb.Tags = "b's name", []string{"b"}
	if err := b.DB.Save(ctx, &cb); err != nil {
		t.Fatal(err)
	}
	later()
	email := "a@example.com"
	ca.Name, ca.Email = "a's name, later", &email
	if err := a.DB.Save(ctx, &ca); err != nil {
		t.Fatal(err)
	}
	b.Sync(t)
	a.Sync(t) // conflict: a's stamp is later
	b.Sync(t)
	for i, d := range []*testkit.Device{a, b} {
		got := get(d)
		if got.Name != "a's name, later" || got.Email == nil || *got.Email != email || len(got.Tags) != 1 || got.Tags[0] != "b" {
			t.Errorf("device %d holds %+v, want a's name and email, b's tags", i, got)
		}
	}
	log, _ := a.DB.Conflicts(ctx)
	if len(log) != 1 || log[0].Strategy != string(server.MergeColumns) {
		t.Errorf("a's conflict log: %+v, want one merge-columns entry", log)
	}
}
