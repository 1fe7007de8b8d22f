package sqlitestore_test

import (
	"database/sql"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tethersync/tether/entity"
	"github.com/tethersync/tether/internal/sqlitedriver"
	"github.com/tethersync/tether/server"
	"github.com/tethersync/tether/server/sqlitestore"
)

func noteSchema(t *testing.T) entity.Schema {
	t.Helper()
	reg := entity.NewRegistry()
	if err := reg.Register(Note{}); err != nil {
		t.Fatal(err)
	}
	return reg.Schema()
}

// pragma reads one integer pragma of db.
func pragma(t *testing.T, db *sql.DB, name string) int {
	t.Helper()
	var v int
	if err := db.QueryRow(`PRAGMA ` + name).Scan(&v); err != nil {
		t.Fatal(err)
	}
	return v
}

// A new database is created in auto_vacuum INCREMENTAL.
func TestNewDatabaseIsIncremental(t *testing.T) {
	s, err := sqlitestore.Open(filepath.Join(t.TempDir(), "server.db"), noteSchema(t), sqlitestore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if got := pragma(t, s.DB(), "auto_vacuum"); got != 2 {
		t.Errorf("auto_vacuum = %d, want 2 (INCREMENTAL)", got)
	}
}

// A database made before, in auto_vacuum NONE, is converted once, with
// its rows.
func TestExistingDatabaseIsConverted(t *testing.T) {
	path := filepath.Join(t.TempDir(), "server.db")
	old, err := sqlitedriver.Open(path, sqlitedriver.Config{WAL: true})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := old.Exec(`CREATE TABLE kept (v TEXT); INSERT INTO kept VALUES ('here')`); err != nil {
		t.Fatal(err)
	}
	if got := pragma(t, old, "auto_vacuum"); got != 0 {
		t.Fatalf("the old database is in auto_vacuum %d, want 0", got)
	}
	old.Close()
	var log strings.Builder
	s, err := sqlitestore.Open(path, noteSchema(t), sqlitestore.Options{Logger: textLogger(&log)})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if got := pragma(t, s.DB(), "auto_vacuum"); got != 2 {
		t.Errorf("auto_vacuum = %d after Open, want 2 (INCREMENTAL)", got)
	}
	var v string
	if err := s.DB().QueryRow(`SELECT v FROM kept`).Scan(&v); err != nil || v != "here" {
		t.Errorf("kept row %q (%v), want %q", v, err, "here")
	}
	if !strings.Contains(log.String(), "converted the database") {
		t.Errorf("no log line of the conversion in %q", log.String())
	}
}

// The sweep gives the pages of deleted rows back to the file system: the
// file shrinks without a manual VACUUM.
func TestSweepShrinksTheFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "server.db")
	s, err := sqlitestore.Open(path, noteSchema(t), sqlitestore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	// Plain SQL through a connection of its own: 20,000 rows of 1 KB,
	// then deleted.
	db, err := sqlitedriver.Open(path, sqlitedriver.Config{BusyTimeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	text := strings.Repeat("x", 1000)
	if _, err := db.Exec(`WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 20000)
		INSERT INTO notes (_tenant, id, text) SELECT 'acme', 'n' || i, ? FROM n`, text); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(`DELETE FROM notes`); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(`PRAGMA wal_checkpoint(TRUNCATE)`); err != nil {
		t.Fatal(err)
	}
	before := fileSize(t, path)
	free := pragma(t, s.DB(), "freelist_count")
	if free < 1000 {
		t.Fatalf("%d free pages after the deletion, want thousands", free)
	}
	for range 10 { // each sweep gives back at most CompactPages
		start := time.Now()
		if _, err := s.Sweep(t.Context(), server.Limits{}, 100); err != nil {
			t.Fatal(err)
		}
		t.Logf("sweep of %d free pages took %s", free, time.Since(start))
		if free = pragma(t, s.DB(), "freelist_count"); free == 0 {
			break
		}
	}
	if free != 0 {
		t.Errorf("%d free pages left after the sweeps, want 0", free)
	}
	after := fileSize(t, path)
	t.Logf("file: %d KiB after the deletion, %d KiB after the sweep", before>>10, after>>10)
	if after > before/4 {
		t.Errorf("the sweep left a file of %d bytes, from %d: want it at most a quarter", after, before)
	}
}

func fileSize(t *testing.T, path string) int64 {
	t.Helper()
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return st.Size()
}

func textLogger(w *strings.Builder) *slog.Logger { return slog.New(slog.NewTextHandler(w, nil)) }
