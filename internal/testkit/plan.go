package testkit

import (
	"context"
	"database/sql"
	"strings"
	"testing"
)

// PlansFromBoundValue reports whether SQLite, through db, plans a query
// from the value bound to it: it creates table (x, y) with a partial index
// on x WHERE y = 1, and reads the plan of SELECT x WHERE y = ? with 1
// bound, twice (the second time from a cached statement). Only the bound
// value proves the index usable: a connection with the planner stability
// guarantee (sqlitedriver.Config.Stable) scans the table. It returns the
// last plan's steps.
func PlansFromBoundValue(t testing.TB, db *sql.DB, table string) (bool, []string) {
	t.Helper()
	ctx := context.Background()
	index := table + "_y1"
	for _, q := range []string{`CREATE TABLE ` + table + ` (x INTEGER, y INTEGER)`, `CREATE INDEX ` + index + ` ON ` + table + ` (x) WHERE y = 1`} {
		if _, err := db.ExecContext(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	var plan []string
	for range 2 {
		plan = plan[:0]
		rows, err := db.QueryContext(ctx, `EXPLAIN QUERY PLAN SELECT x FROM `+table+` WHERE y = ? AND x > 0`, 1)
		if err != nil {
			t.Fatal(err)
		}
		for rows.Next() {
			var id, parent, notused int
			var detail string
			if err := rows.Scan(&id, &parent, &notused, &detail); err != nil {
				t.Fatal(err)
			}
			plan = append(plan, detail)
		}
		if err := rows.Close(); err != nil {
			t.Fatal(err)
		}
	}
	return strings.Contains(strings.Join(plan, "; "), index), plan
}
