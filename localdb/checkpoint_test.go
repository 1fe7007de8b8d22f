package localdb_test

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tethersync/tether/wire"
)

// A large pull leaves the write-ahead log to the checkpointer, which
// copies it into the database file without another write; the
// connections go back to the pool with SQLite's automatic checkpoint on,
// for the app's commits.
func TestLargePullCheckpointsInTheBackground(t *testing.T) {
	path := filepath.Join(t.TempDir(), "app.db")
	db := open(t, path)
	s := db.Syncer()
	body := strings.Repeat("b", 1000)
	for p := range 5 { // a session of 5,000 rows of 1 KB over 5 pages
		var rows []wire.Row
		for i := range 1000 {
			rows = append(rows, wire.Row{Table: "notes", ID: fmt.Sprintf("n%d-%04d", p, i), Version: 2, HLC: "1700000000000.000002.srv",
				Values: map[string]any{"title": "t", "body": body, "at": "2026-01-01T00:00:00Z"}})
		}
		if p < 4 {
			if err := s.StashChanges(ctx, wire.Changes{Changes: rows, Cursor: fmt.Sprint("c", p)}); err != nil {
				t.Fatal(err)
			}
			continue
		}
		before, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if n, err := s.ApplyChanges(ctx, rows, "c4"); err != nil || n != 5000 {
			t.Fatalf("ApplyChanges=%d, %v", n, err)
		}
		deadline := time.Now().Add(10 * time.Second)
		for {
			fi, err := os.Stat(path)
			if err != nil {
				t.Fatal(err)
			}
			if fi.Size() >= before.Size()+5<<20 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("the file holds %d bytes (%d before) 10 s after the pull: not checkpointed", fi.Size(), before.Size())
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	// Every connection of the pool checkpoints as SQLite does.
	pool := db.SQL()
	var conns []*sql.Conn
	for range 3 {
		c, err := pool.Conn(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
		var n int
		if err := c.QueryRowContext(ctx, `PRAGMA wal_autocheckpoint`).Scan(&n); err != nil || n != 1000 {
			t.Errorf("a connection's wal_autocheckpoint: %d, %v; want 1000", n, err)
		}
	}
	for _, c := range conns {
		c.Close()
	}
}
