package localdb_test

import (
	"testing"

	"github.com/tethersync/tether/internal/testkit"
)

// The app's connections plan as SQLite does by default: a value bound to
// a query may decide its plan (here, that a partial index applies), as an
// app's LIKE ? or its own partial indexes need. Only the sync engines'
// connection plans without bound values (sqlitedriver.Config.Stable).
func TestAppQueriesPlanWithBoundValues(t *testing.T) {
	db := newDB(t)
	if uses, plan := testkit.PlansFromBoundValue(t, db.SQL(), "app_t"); !uses {
		t.Errorf("plan %q: the partial index its bound value makes usable is not used", plan)
	}
}
