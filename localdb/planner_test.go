package localdb_test

import (
	"database/sql"
	"strings"
	"testing"
)

// The app's connections plan as SQLite does by default: a value bound to
// a query may decide its plan (here, that a partial index applies), as an
// app's LIKE ? or its own partial indexes need. Only the sync engines'
// connection plans without bound values (sqlitedriver.Config.Stable).
func TestAppQueriesPlanWithBoundValues(t *testing.T) {
	db := newDB(t)
	checkPlansWithBoundValues(t, db.SQL())
}

// checkPlansWithBoundValues fails t unless a query on db uses a partial
// index that only its bound value makes usable.
func checkPlansWithBoundValues(t *testing.T, db *sql.DB) {
	t.Helper()
	for _, s := range []string{`CREATE TABLE app_t (x INTEGER, y INTEGER)`, `CREATE INDEX app_t_y1 ON app_t (x) WHERE y = 1`} {
		if _, err := db.ExecContext(ctx, s); err != nil {
			t.Fatal(err)
		}
	}
	rows, err := db.QueryContext(ctx, `EXPLAIN QUERY PLAN SELECT x FROM app_t WHERE y = ? AND x > 0`, 1)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var plan []string
	for rows.Next() {
		var id, parent, notused int
		var detail string
		if err := rows.Scan(&id, &parent, &notused, &detail); err != nil {
			t.Fatal(err)
		}
		plan = append(plan, detail)
	}
	if !strings.Contains(strings.Join(plan, "; "), "app_t_y1") {
		t.Errorf("plan %q: the partial index its bound value makes usable is not used", plan)
	}
}
