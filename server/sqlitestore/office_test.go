package sqlitestore_test

import (
	"path/filepath"
	"testing"

	"github.com/tethersync/tether/internal/testkit"
	"github.com/tethersync/tether/server/sqlitestore"
)

// A back office's SQL (Store.DB) is planned as SQLite plans by default: a
// value bound to a query may decide its plan (here, that a partial index
// applies). The store's own pools plan without bound values.
func TestBackOfficePlansWithBoundValues(t *testing.T) {
	s, err := sqlitestore.Open(filepath.Join(t.TempDir(), "server.db"), noteSchema(t), sqlitestore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if uses, plan := testkit.PlansFromBoundValue(t, s.DB(), "office_t"); !uses {
		t.Errorf("plan %q: the partial index its bound value makes usable is not used", plan)
	}
}
