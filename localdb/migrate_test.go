package localdb

import (
	"context"
	"database/sql"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tethersync/tether/entity"
)

func userVersion(t *testing.T, db *sql.DB) int {
	t.Helper()
	var v int
	if err := db.QueryRow(`PRAGMA user_version`).Scan(&v); err != nil {
		t.Fatal(err)
	}
	return v
}

// A new database gets every step and records the last; opening it again
// applies none; a database of a later layout is refused.
func TestMigrations(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "app.db")
	reg := entity.NewRegistry()
	db, err := Open(ctx, path, reg)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := userVersion(t, db.sql), len(migrations); got != want {
		t.Fatalf("user_version=%d, want %d", got, want)
	}
	db.Close()
	if db, err = Open(ctx, path, reg); err != nil {
		t.Fatalf("reopen: %v", err)
	}
	if _, err := db.sql.Exec(`PRAGMA user_version = 1000`); err != nil {
		t.Fatal(err)
	}
	db.Close()
	if _, err := Open(ctx, path, reg); err == nil || !strings.Contains(err.Error(), "newer") {
		t.Fatalf("Open of a later layout: %v, want an error", err)
	}
}

// A step added at the end runs once, on a database made before it.
func TestMigrationAdded(t *testing.T) {
	ctx := context.Background()
	db, err := Open(ctx, filepath.Join(t.TempDir(), "app.db"), entity.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	steps := append(migrations[:len(migrations):len(migrations)], `CREATE TABLE _tether_next (x INTEGER)`)
	for range 2 {
		err := db.inTx(ctx, func(tx *sql.Tx) error { return migrateTo(ctx, tx, steps) })
		if err != nil {
			t.Fatal(err)
		}
	}
	if got, want := userVersion(t, db.sql), len(steps); got != want {
		t.Errorf("user_version=%d, want %d", got, want)
	}
}
