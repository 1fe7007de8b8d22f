package e2e

import (
	"testing"

	"github.com/tethersync/tether/internal/testkit"
	"github.com/tethersync/tether/localdb"
	"github.com/tethersync/tether/server"
)

// The server keeps, per row, the version at which each column last
// changed (column merges decide with it). A new row's columns all take the
// commit's version (computed once per commit); an edit moves only the
// columns it changed.
func TestColumnVersions(t *testing.T) {
	reg := testkit.Registry(t)
	srv := testkit.NewServer(t, reg, server.Options{})
	a := testkit.NewDevice(t, reg, srv.URL, testkit.DeviceOptions{})
	ids := saveCustomers(t, a, 2, "c")
	a.Sync(t)
	colvers := func(id string) string {
		t.Helper()
		var cv string
		if err := srv.Store.DB().QueryRow(`SELECT _colvers FROM customers WHERE id = ?`, id).Scan(&cv); err != nil {
			t.Fatal(err)
		}
		return cv
	}
	if got, want := colvers(ids[0]), `{"name":1,"email":1,"tags":1}`; got != want {
		t.Errorf("new row's column versions %s, want %s", got, want)
	}
	list, err := localdb.Query[testkit.Customer](ctx, a.DB, "id = ?", ids[0])
	if err != nil || len(list) != 1 {
		t.Fatal(list, err)
	}
	list[0].Name = "renamed"
	if err := a.DB.Save(ctx, &list[0]); err != nil {
		t.Fatal(err)
	}
	a.Sync(t)
	if got, want := colvers(ids[0]), `{"name":2,"email":1,"tags":1}`; got != want {
		t.Errorf("edited row's column versions %s, want %s", got, want)
	}
	if got, want := colvers(ids[1]), `{"name":1,"email":1,"tags":1}`; got != want {
		t.Errorf("untouched row's column versions %s, want %s", got, want)
	}
}
