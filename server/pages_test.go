package server_test

import (
	"fmt"
	"testing"

	"github.com/tethersync/tether/internal/testkit/stores"
	"github.com/tethersync/tether/server"
	"github.com/tethersync/tether/wire"
)

// G4 on every store: a pull page ends between two versions when it can,
// and is Partial only when its first version is larger than the page.
// Versions: v1 of 3 rows, v2 of 7, v3 of 2; pages of 5 rows.
func TestPagesEndBetweenVersions(t *testing.T) {
	stores.Each(t, stores.All, func(t *testing.T, db stores.Database) {
		f := storeFixture{t: t, s: stores.Open(t, db.Kind, kindsSchema, stores.Options{})}
		f.device(ada, "d1")
		for v, n := range []int{3, 7, 2} {
			var rows []wire.Row
			for i := range n {
				rows = append(rows, parent(fmt.Sprintf("v%d-%d", v+1, i), "x", "1700000000000.000000.d"))
			}
			f.push(ada, "d1", lww, rows)
		}
		var cur server.Cursor
		type page struct {
			versions map[int64]int
			partial  bool
		}
		var pages []page
		for range 20 {
			rows, next, more, err := f.s.Changes(t.Context(), ada, cur, 5, 1<<30, server.Echo{})
			if err != nil {
				t.Fatal(err)
			}
			p := page{versions: map[int64]int{}, partial: next.Partial}
			for _, r := range rows {
				p.versions[r.Version]++
			}
			pages = append(pages, p)
			cur = next
			if !more {
				break
			}
		}
		want := []page{
			{map[int64]int{1: 3}, false},       // v2 would not fit whole: the page stops before it
			{map[int64]int{2: 5}, true},        // v2 alone is larger than a page
			{map[int64]int{2: 2, 3: 2}, false}, // the rest of v2, and v3 whole
		}
		if fmt.Sprint(pages) != fmt.Sprint(want) {
			t.Errorf("pages %v, want %v", pages, want)
		}
	})
}
