package e2e

import (
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tethersync/tether/entity"
	"github.com/tethersync/tether/internal/testkit"
	"github.com/tethersync/tether/internal/testkit/stores"
	"github.com/tethersync/tether/server"
	"github.com/tethersync/tether/wire"
)

// Two app versions of one table: version 2 added a phone column and a
// notes table.
type contactV1 struct {
	entity.Meta `sync:"contacts,1"`
	ID          string `db:"id"`
	Name        string `db:"name"`
}

type contactV2 struct {
	entity.Meta `sync:"contacts,1"`
	ID          string `db:"id"`
	Name        string `db:"name"`
	Phone       string `db:"phone"`
}

type noteV2 struct {
	entity.Meta `sync:"notes,2"`
	ID          string `db:"id"`
	Text        string `db:"text"`
}

// contactBadPhone contradicts the server: phone is a number here.
type contactBadPhone struct {
	entity.Meta `sync:"contacts,1"`
	ID          string `db:"id"`
	Name        string `db:"name"`
	Phone       int64  `db:"phone"`
}

func registry(t *testing.T, entities ...any) *entity.Registry {
	t.Helper()
	reg := entity.NewRegistry()
	if err := reg.Register(entities...); err != nil {
		t.Fatal(err)
	}
	return reg
}

// Devices running two app versions share a server that has the newer
// schema: the old device's edits never erase or null a column it does not
// know, its inserts leave them at their defaults, Verify compares what
// both have, and a schema that contradicts the server's is refused by
// name. On every store.
func TestMixedAppVersions(t *testing.T) {
	v2 := registry(t, contactV2{}, noteV2{})
	stores.Each(t, stores.All, func(t *testing.T, db stores.Database) {
		mixedAppVersions(t, testkit.Serve(t, db.Open(t, v2.Schema(), stores.Options{}), server.Options{}).URL)
	})
}

func mixedAppVersions(t *testing.T, url string) {
	v1, v2 := registry(t, contactV1{}), registry(t, contactV2{}, noteV2{})
	newer := testkit.NewDevice(t, v2, url, testkit.DeviceOptions{})
	oldPath := filepath.Join(t.TempDir(), "old.db")
	older := testkit.NewDevice(t, v1, url, testkit.DeviceOptions{Path: oldPath, Token: "token-bob"})

	c1 := contactV2{ID: "c1", Name: "Ada", Phone: "555-0100"}
	n1 := noteV2{ID: "n1", Text: "call back"}
	if err := newer.DB.Save(ctx, &c1); err != nil {
		t.Fatal(err)
	}
	if err := newer.DB.Save(ctx, &n1); err != nil {
		t.Fatal(err)
	}
	newer.Sync(t)
	older.Sync(t) // a table and a column it does not know come down too: skipped

	var old contactV1
	if err := older.DB.Get(ctx, &old, "c1"); err != nil {
		t.Fatal(err)
	}
	old.Name = "Ada Lovelace"
	if err := older.DB.Save(ctx, &old); err != nil {
		t.Fatal(err)
	}
	if err := older.DB.Save(ctx, &contactV1{ID: "c2", Name: "Bob"}); err != nil {
		t.Fatal(err)
	}
	older.Sync(t)
	newer.Sync(t)
	var got contactV2
	if err := newer.DB.Get(ctx, &got, "c1"); err != nil {
		t.Fatal(err)
	}
	if got.Name != "Ada Lovelace" || got.Phone != "555-0100" {
		t.Errorf("after the old device's edit: %+v; want the new name and the phone kept", got)
	}
	if err := newer.DB.Get(ctx, &got, "c2"); err != nil || got.Name != "Bob" || got.Phone != "" {
		t.Errorf("the old device's insert: %+v, %v; want the phone at its default", got, err)
	}
	for _, d := range []*testkit.Device{older, newer} {
		rep, err := d.Co.Verify(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if diff := rep.Differs(); len(diff) > 0 {
			t.Errorf("Verify on a device of %d tables: %v differ", len(rep.Tables), diff)
		}
	}

	// The old app is upgraded: its database gains the column and the
	// table, and the next sync brings what it skipped before.
	older.Co.Close()
	older.DB.Close()
	upgraded := testkit.NewDevice(t, v2, url, testkit.DeviceOptions{Path: oldPath, Token: "token-bob"})
	upgraded.Sync(t)
	if err := upgraded.DB.Get(ctx, &got, "c1"); err != nil || got.Phone != "555-0100" {
		t.Errorf("upgraded device's c1: %+v, %v; want the phone it skipped", got, err)
	}
	var note noteV2
	if err := upgraded.DB.Get(ctx, &note, "n1"); err != nil || note.Text != "call back" {
		t.Errorf("upgraded device's note: %+v, %v; want the table it skipped", note, err)
	}

	// A device whose schema contradicts the server's is refused, by name,
	// before anything moves.
	bad := testkit.NewDevice(t, registry(t, contactBadPhone{}), url, testkit.DeviceOptions{})
	if err := bad.DB.Save(ctx, &contactBadPhone{ID: "c3", Name: "x", Phone: 5}); err != nil {
		t.Fatal(err)
	}
	_, err := bad.Co.SyncNow(ctx)
	if !errors.Is(err, wire.ErrSchemaMismatch) || !strings.Contains(err.Error(), "contacts.phone is text on the server and integer on the device") {
		t.Errorf("contradicting schema: %v; want ErrSchemaMismatch naming contacts.phone", err)
	}
	if n, err := bad.DB.Pending(ctx); err != nil || n != 1 {
		t.Errorf("the refused device's row: %d pending (%v), want it kept", n, err)
	}
}

// Adding a column and a table to the server's schema upgrades its database
// in place: rows written before take the new column's default, and devices
// of both versions go on syncing.
func TestServerSchemaUpgrade(t *testing.T) {
	v1, v2 := registry(t, contactV1{}), registry(t, contactV2{}, noteV2{})
	upgrade := func(t *testing.T, open func(*entity.Registry) server.Store) {
		store := open(v1)
		srv := testkit.Serve(t, store, server.Options{})
		old := testkit.NewDevice(t, v1, srv.URL, testkit.DeviceOptions{})
		if err := old.DB.Save(ctx, &contactV1{ID: "c1", Name: "Ada"}); err != nil {
			t.Fatal(err)
		}
		old.Sync(t)
		srv.Close()
		store.Close()

		store = open(v2) // the new schema, on the same database
		defer store.Close()
		url := testkit.Serve(t, store, server.Options{}).URL
		newer := testkit.NewDevice(t, v2, url, testkit.DeviceOptions{})
		newer.Sync(t)
		var c contactV2
		if err := newer.DB.Get(ctx, &c, "c1"); err != nil || c.Name != "Ada" || c.Phone != "" {
			t.Errorf("a row written before the column was added: %+v, %v; want the default", c, err)
		}
		c.Phone = "555-0100"
		if err := newer.DB.Save(ctx, &c); err != nil {
			t.Fatal(err)
		}
		newer.Sync(t)
		old = testkit.NewDevice(t, v1, url, testkit.DeviceOptions{Path: old.Path})
		old.Sync(t)
	}
	stores.Each(t, stores.All, func(t *testing.T, db stores.Database) {
		upgrade(t, func(reg *entity.Registry) server.Store { return db.Open(t, reg.Schema(), stores.Options{}) })
	})
}
