package sqlitedriver_test

import (
	"context"
	"database/sql"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tethersync/tether/internal/sqlitedriver"
)

// fill writes about 4 MB (some 1,000 pages) in tx separate transactions
// into a new table of db.
func fill(t *testing.T, db *sql.DB, txs int) {
	t.Helper()
	if _, err := db.Exec(`CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY, v TEXT)`); err != nil {
		t.Fatal(err)
	}
	v := strings.Repeat("x", 4000)
	for i := range txs {
		tx, err := db.Begin()
		if err != nil {
			t.Fatal(err)
		}
		for range 1000 / txs {
			if _, err := tx.Exec(`INSERT INTO t (v) VALUES (?)`, v); err != nil {
				t.Fatal(i, err)
			}
		}
		if err := tx.Commit(); err != nil {
			t.Fatal(err)
		}
	}
}

// fileSize is the size of the database file itself: in WAL mode, pages
// reach it only when a checkpoint copies them from the log.
func fileSize(t *testing.T, path string) int64 {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Size()
}

// TestNoAutoCheckpoint writes past SQLite's automatic checkpoint
// threshold (1,000 pages) in many commits: with NoAutoCheckpoint on every
// connection of the pool, none of them copies the log into the file;
// without it, one does.
func TestNoAutoCheckpoint(t *testing.T) {
	for _, off := range []bool{true, false} {
		path := filepath.Join(t.TempDir(), "a.db")
		db, err := sqlitedriver.Open(path, sqlitedriver.Config{WAL: true, NoAutoCheckpoint: off})
		if err != nil {
			t.Fatal(err)
		}
		db.SetMaxOpenConns(3)
		// Every connection says so, not just the first.
		ctx := context.Background()
		var conns []*sql.Conn
		for range 3 {
			c, err := db.Conn(ctx)
			if err != nil {
				t.Fatal(err)
			}
			conns = append(conns, c)
			var n int
			if err := c.QueryRowContext(ctx, `PRAGMA wal_autocheckpoint`).Scan(&n); err != nil {
				t.Fatal(err)
			}
			if want := map[bool]int{true: 0, false: 1000}[off]; n != want {
				t.Errorf("NoAutoCheckpoint=%v: wal_autocheckpoint %d, want %d", off, n, want)
			}
		}
		for _, c := range conns {
			c.Close()
		}
		fill(t, db, 20)
		size := fileSize(t, path)
		if off && size > 1<<20 {
			t.Errorf("NoAutoCheckpoint: the file holds %d bytes after the commits; the log was copied into it", size)
		}
		if !off && size < 1<<20 {
			t.Errorf("automatic checkpoint: the file holds %d bytes after 4 MB of commits; no commit checkpointed", size)
		}
		db.Close()
	}
}

// waitSize waits, for at most 10 seconds, until the file at path holds
// more than n bytes.
func waitSize(t *testing.T, path string, n int64) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for fileSize(t, path) <= n {
		if time.Now().After(deadline) {
			t.Fatalf("the file still holds %d bytes after 10 s: not checkpointed", fileSize(t, path))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// openNoCheckpoint opens a new database with NoAutoCheckpoint, closed
// when the test ends.
func openNoCheckpoint(t *testing.T) (*sql.DB, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "a.db")
	db, err := sqlitedriver.Open(path, sqlitedriver.Config{WAL: true, NoAutoCheckpoint: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db, path
}

// TestCheckpointer checkpoints in the background: once told of a write,
// and, without being told, once its idle interval passes.
func TestCheckpointer(t *testing.T) {
	t.Run("told", func(t *testing.T) {
		db, path := openNoCheckpoint(t)
		c := sqlitedriver.NewCheckpointerEvery(db, func(err error) { t.Error(err) }, time.Millisecond, time.Hour)
		defer c.Close()
		fill(t, db, 5)
		if size := fileSize(t, path); size > 1<<20 {
			t.Fatalf("the file holds %d bytes before the checkpointer was told", size)
		}
		c.Wrote()
		waitSize(t, path, 1<<20)
		// And again for the next writes.
		before := fileSize(t, path)
		fill(t, db, 5)
		c.Wrote()
		waitSize(t, path, before+1<<20)
	})
	t.Run("idle", func(t *testing.T) {
		db, path := openNoCheckpoint(t)
		fill(t, db, 5)
		c := sqlitedriver.NewCheckpointerEvery(db, func(err error) { t.Error(err) }, time.Millisecond, 50*time.Millisecond)
		defer c.Close()
		waitSize(t, path, 1<<20)
	})
	t.Run("close", func(t *testing.T) {
		db, path := openNoCheckpoint(t)
		c := sqlitedriver.NewCheckpointerEvery(db, func(err error) { t.Error(err) }, time.Millisecond, time.Hour)
		var wg sync.WaitGroup
		for range 4 { // told while it closes: nothing blocks
			wg.Go(func() {
				for range 100 {
					c.Wrote()
				}
			})
		}
		c.Close()
		c.Close() // twice is fine
		wg.Wait()
		fill(t, db, 5)
		c.Wrote() // after Close: ignored
		time.Sleep(20 * time.Millisecond)
		if size := fileSize(t, path); size > 1<<20 {
			t.Fatalf("the file holds %d bytes: a closed checkpointer checkpointed", size)
		}
	})
}
