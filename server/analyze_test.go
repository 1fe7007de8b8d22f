package server_test

import (
	"context"
	"database/sql"
	"fmt"
	"testing"

	"github.com/tethersync/tether/internal/testkit/stores"
	"github.com/tethersync/tether/server"
	"github.com/tethersync/tether/server/sqlstore"
	"github.com/tethersync/tether/wire"
)

// On PostgreSQL, the commit of a session that staged sqlstore.AnalyzeRows
// rows or more of a table first refreshes the planner's statistics of its
// staging table (and of the table); a smaller session's does not.
func TestLargeCommitAnalyzes(t *testing.T) {
	stores.Each(t, []string{stores.Postgres}, func(t *testing.T, db stores.Database) {
		ctx := context.Background()
		s := db.Open(t, kindsSchema, stores.Options{})
		if err := s.RegisterDevice(ctx, ada, server.Registration{Device: "d1"}, server.Limits{}); err != nil {
			t.Fatal(err)
		}
		pool := s.(interface{ DB() *sql.DB }).DB()
		estimate := func() float64 {
			t.Helper()
			var n float64
			if err := pool.QueryRowContext(ctx, `SELECT reltuples FROM pg_class WHERE relname = '_tether_stage_parents'`).Scan(&n); err != nil {
				t.Fatal(err)
			}
			return n
		}
		commit := func(session string, rows int) {
			t.Helper()
			for seq := 0; seq*1000 < rows; seq++ {
				var batch []wire.Row
				for i := seq * 1000; i < min(rows, (seq+1)*1000); i++ {
					batch = append(batch, parent(fmt.Sprint(session, "-", i), "name", "0000000000001.000000.d1"))
				}
				if _, err := s.Push(ctx, ada, "d1", session, seq, batch, server.PushOptions{Open: seq == 0}); err != nil {
					t.Fatal(err)
				}
			}
			if c, err := s.Commit(ctx, ada, "d1", session, lww, server.Limits{}, nil); err != nil || c.Applied != rows {
				t.Fatalf("commit %s: %d applied, %v; want %d", session, c.Applied, err, rows)
			}
		}
		commit("small", sqlstore.AnalyzeRows-1)
		if n := estimate(); n >= sqlstore.AnalyzeRows-1 {
			t.Errorf("after a session of %d rows, the staging table's estimate is %v rows: analyzed", sqlstore.AnalyzeRows-1, n)
		}
		commit("large", sqlstore.AnalyzeRows)
		if n := estimate(); n < sqlstore.AnalyzeRows/2 {
			t.Errorf("after a session of %d rows, the staging table's estimate is %v rows: not analyzed", sqlstore.AnalyzeRows, n)
		}
	})
}
