package localdb

import (
	"context"
	"database/sql"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tethersync/tether/entity"
)

func layoutVersion(t *testing.T, db *sql.DB) int {
	t.Helper()
	var v int
	if err := db.QueryRow(`SELECT max(step) FROM _tether_migrations`).Scan(&v); err != nil {
		t.Fatal(err)
	}
	return v
}

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
	if got, want := layoutVersion(t, db.sql), len(migrations); got != want {
		t.Fatalf("layout version=%d, want %d", got, want)
	}
	db.Close()
	if db, err = Open(ctx, path, reg); err != nil {
		t.Fatalf("reopen: %v", err)
	}
	if _, err := db.sql.Exec(`INSERT INTO _tether_migrations (step, applied_at) VALUES (1000, '')`); err != nil {
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
	if got, want := layoutVersion(t, db.sql), len(steps); got != want {
		t.Errorf("layout version=%d, want %d", got, want)
	}
}

// PRAGMA user_version is the app's: a file whose app set it opens, and
// keeps the app's value.
func TestUserVersionIsTheApps(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "app.db")
	raw, err := sql.Open("sqlite3", path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := raw.Exec(`CREATE TABLE app_settings (k TEXT); PRAGMA user_version = 3`); err != nil {
		t.Fatal(err)
	}
	raw.Close()
	db, err := Open(ctx, path, entity.NewRegistry())
	if err != nil {
		t.Fatalf("Open of a file whose app set user_version: %v", err)
	}
	defer db.Close()
	if got := userVersion(t, db.sql); got != 3 {
		t.Errorf("user_version=%d after Open, want the app's 3", got)
	}
	if got, want := layoutVersion(t, db.sql), len(migrations); got != want {
		t.Errorf("layout version=%d, want %d", got, want)
	}
}
