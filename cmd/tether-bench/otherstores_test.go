package main

import (
	"strings"
	"testing"

	"github.com/tethersync/tether/internal/testkit/stores"
)

// The push scenario also pushes into a PostgreSQL and a MariaDB store,
// started by the bench itself: one row each, with a rate and a ratio.
func TestOtherStores(t *testing.T) {
	stores.PostgresURL(t) // skips, or fails under TETHER_REQUIRE_POSTGRES=1, without binaries
	stores.MySQLDSN(t)    // the same under TETHER_REQUIRE_MYSQL=1
	var out strings.Builder
	args := []string{"-scenarios", "push", "-rows", "300", "-runs", "1", "-dir", t.TempDir()}
	if err := run(t.Context(), args, &out); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"| push into an empty server, PostgreSQL store | 300 | ",
		"| push into an empty server, MySQL (MariaDB) store | 300 | "} {
		i := strings.Index(out.String(), want)
		if i < 0 {
			t.Errorf("no %q row in:\n%s", want, out.String())
			continue
		}
		if row, _, _ := strings.Cut(out.String()[i:], "\n"); !strings.Contains(row, "rows/s") || !strings.Contains(row, "× baseline") {
			t.Errorf("row %q: want a rate and a ratio to the baseline", row)
		}
	}
}

// -other-stores=false leaves them out; on -store postgres only MySQL is
// another store.
func TestOtherStoresOff(t *testing.T) {
	var out strings.Builder
	args := []string{"-scenarios", "push", "-rows", "300", "-runs", "1", "-other-stores=false", "-dir", t.TempDir()}
	if err := run(t.Context(), args, &out); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(out.String(), "store |") {
		t.Errorf("-other-stores=false, and still:\n%s", out.String())
	}
}
