package sqlbatch_test

import (
	"context"
	"database/sql"
	"path/filepath"
	"testing"

	"github.com/tethersync/tether/internal/sqlbatch"
	_ "github.com/tethersync/tether/internal/sqlitedriver" // the SQLite driver
)

func TestInserter(t *testing.T) {
	ctx := context.Background()
	db, err := sql.Open("sqlite3", filepath.Join(t.TempDir(), "t.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec(`CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)`); err != nil {
		t.Fatal(err)
	}
	tx, err := db.Begin()
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	in := sqlbatch.New(tx, `INSERT INTO t (id, v)`, `ON CONFLICT (id) DO UPDATE SET v = excluded.v WHERE v != excluded.v`, 2)
	const n = 2*sqlbatch.Chunk + 5 // two full chunks and a partial one
	for i := range n {
		if err := in.Add(ctx, i, "x"); err != nil {
			t.Fatal(err)
		}
	}
	if err := in.Add(ctx, 0, "x"); err != nil { // unchanged: not counted
		t.Fatal(err)
	}
	if err := in.Add(ctx, 1, "y"); err != nil { // updated: counted
		t.Fatal(err)
	}
	if err := in.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if in.Affected != n+1 {
		t.Errorf("Affected=%d, want %d", in.Affected, n+1)
	}
	var count int
	var v string
	if err := tx.QueryRow(`SELECT count(*), (SELECT v FROM t WHERE id = 1) FROM t`).Scan(&count, &v); err != nil {
		t.Fatal(err)
	}
	if count != n || v != "y" {
		t.Errorf("%d rows, row 1 = %q; want %d rows and %q", count, v, n, "y")
	}
	if err := in.Add(ctx, 1); err == nil {
		t.Error("Add accepted a row of the wrong width")
	}
}
