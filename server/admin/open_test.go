//go:build cgo

package admin_test

import (
	"database/sql"
	"path/filepath"
	"testing"

	"github.com/tethersync/tether/entity"
	"github.com/tethersync/tether/server/admin"
	"github.com/tethersync/tether/server/sqlitestore"
)

// autoVacuum returns the auto_vacuum mode of the SQLite file at path,
// after setting it to set (with a VACUUM) unless set is "".
func autoVacuum(t *testing.T, path string, set string) int {
	t.Helper()
	db, err := sql.Open("sqlite3", path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if set != "" {
		for _, q := range []string{"PRAGMA auto_vacuum = " + set, "VACUUM"} {
			if _, err := db.Exec(q); err != nil {
				t.Fatal(err)
			}
		}
	}
	var mode int
	if err := db.QueryRow(`PRAGMA auto_vacuum`).Scan(&mode); err != nil {
		t.Fatal(err)
	}
	return mode
}

// The database of an older server (auto_vacuum NONE), which may be
// running, is read as it is: opening it for the admin commands does not
// convert it, which rewrites the whole file with VACUUM and holds the
// server's writer meanwhile.
func TestOpenStoreKeepsAutoVacuum(t *testing.T) {
	path := filepath.Join(t.TempDir(), "server.db")
	s, err := sqlitestore.Open(path, entity.Schema{}, sqlitestore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	if mode := autoVacuum(t, path, "NONE"); mode != 0 {
		t.Fatalf("auto_vacuum %d, want 0 (NONE) for the test", mode)
	}
	s, err = admin.OpenStore(t.Context(), path)
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	if mode := autoVacuum(t, path, ""); mode != 0 {
		t.Errorf("auto_vacuum %d after OpenStore, want 0: the admin commands converted the database", mode)
	}
}
