package localdb_test

import (
	"database/sql"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/tethersync/tether/localdb"
)

// Inspect reads a device file read-only, without the app's registry: the
// pending rows per table, deletions among them, and nothing of a file that
// is not a tether database.
func TestInspect(t *testing.T) {
	path := filepath.Join(t.TempDir(), "app.db")
	db := open(t, path)
	for _, id := range []string{"n1", "n2", "n3"} {
		if err := db.Save(ctx, &Note{ID: id, Title: id}); err != nil {
			t.Fatal(err)
		}
	}
	if err := db.Delete(ctx, &Note{ID: "n3"}); err != nil {
		t.Fatal(err)
	}
	info, err := localdb.Inspect(ctx, path, localdb.InspectOptions{})
	if err != nil {
		t.Fatalf("Inspect of an open file: %v", err)
	}
	if len(info.Tables) != 1 || info.Tables[0] != (localdb.TableInfo{Name: "notes", Rows: 2, Pending: 3, PendingDeletes: 1}) {
		t.Errorf("Tables=%+v, want notes with 2 rows, 3 pending, 1 a deletion", info.Tables)
	}
	if info.Pending != 3 || info.Device == "" || info.Tenant != "" || info.Cursor != "" || info.Layout < 1 {
		t.Errorf("Inspect=%+v, want 3 pending, a device id, no tenant nor cursor yet", info)
	}
	db.Close()
	if _, err := localdb.Inspect(ctx, path, localdb.InspectOptions{}); err != nil {
		t.Errorf("Inspect of a closed file: %v", err)
	}

	t.Run("not tether", func(t *testing.T) {
		junk := filepath.Join(t.TempDir(), "junk.db")
		if err := os.WriteFile(junk, []byte("just some text, not SQLite at all, long enough to be read as a header......................................................"), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := localdb.Inspect(ctx, junk, localdb.InspectOptions{}); !errors.Is(err, localdb.ErrNotDevice) {
			t.Errorf("Inspect(text file)=%v, want ErrNotDevice", err)
		}
		other := filepath.Join(t.TempDir(), "other.db")
		raw, err := sql.Open("sqlite3", other)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := raw.Exec(`CREATE TABLE things (id TEXT)`); err != nil {
			t.Fatal(err)
		}
		raw.Close()
		if _, err := localdb.Inspect(ctx, other, localdb.InspectOptions{}); !errors.Is(err, localdb.ErrNotDevice) {
			t.Errorf("Inspect(another SQLite database)=%v, want ErrNotDevice", err)
		}
		if _, err := localdb.Inspect(ctx, filepath.Join(t.TempDir(), "none.db"), localdb.InspectOptions{}); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("Inspect(missing file)=%v, want os.ErrNotExist", err)
		}
	})
}
