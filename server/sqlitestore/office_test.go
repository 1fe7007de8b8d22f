package sqlitestore_test

import (
	"context"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tethersync/tether/server/sqlitestore"
)

// A back office's SQL (Store.DB) is planned as SQLite plans by default: a
// value bound to a query may decide its plan (here, that a partial index
// applies). The store's own pools plan without bound values.
func TestBackOfficePlansWithBoundValues(t *testing.T) {
	ctx := context.Background()
	s, err := sqlitestore.Open(filepath.Join(t.TempDir(), "server.db"), noteSchema(t), sqlitestore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	db := s.DB()
	for _, q := range []string{`CREATE TABLE office_t (x INTEGER, y INTEGER)`, `CREATE INDEX office_t_y1 ON office_t (x) WHERE y = 1`} {
		if _, err := db.ExecContext(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	rows, err := db.QueryContext(ctx, `EXPLAIN QUERY PLAN SELECT x FROM office_t WHERE y = ? AND x > 0`, 1)
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
	if !strings.Contains(strings.Join(plan, "; "), "office_t_y1") {
		t.Errorf("plan %q: the partial index its bound value makes usable is not used", plan)
	}
}
