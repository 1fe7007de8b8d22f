package localdb_test

import (
	"bytes"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/tethersync/tether/localdb"
	"github.com/tethersync/tether/wire"
)

// fileBytes returns the bytes of the database file at path and of its
// -wal and -shm files, those that exist.
func fileBytes(t *testing.T, path string) []byte {
	t.Helper()
	var all []byte
	for _, p := range []string{path, path + "-wal", path + "-shm"} {
		b, err := os.ReadFile(p)
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			t.Fatal(err)
		}
		all = append(all, b...)
	}
	return all
}

// Wipe leaves none of the data's bytes in the file or its log: synced
// rows (live, edited, deleted), the app's own table and the device id,
// though another connection holds the file open (so that the log stays).
func TestWipe(t *testing.T) {
	path := filepath.Join(t.TempDir(), "app.db")
	db := open(t, path)
	device := db.DeviceID()
	var notes []Note
	for i := range 50 {
		n := Note{Title: fmt.Sprintf("wipe-marker-title-%03d", i)}
		if err := db.Save(ctx, &n); err != nil {
			t.Fatal(err)
		}
		notes = append(notes, n)
	}
	for _, n := range notes[:10] {
		if err := db.Delete(ctx, &n); err != nil {
			t.Fatal(err)
		}
	}
	notes[20].Title = "wipe-marker-edited"
	if err := db.Save(ctx, &notes[20]); err != nil {
		t.Fatal(err)
	}
	if _, err := db.SQL().ExecContext(ctx, `CREATE TABLE app_secrets (v TEXT); INSERT INTO app_secrets VALUES ('wipe-marker-app')`); err != nil {
		t.Fatal(err)
	}
	other, err := sql.Open("sqlite3", "file:"+path+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	var n int
	if err := other.QueryRow(`SELECT count(*) FROM notes`).Scan(&n); err != nil || n != 50 {
		t.Fatalf("other connection: %d notes, %v; want 50", n, err)
	}
	markers := []string{"wipe-marker", device}
	before := fileBytes(t, path)
	for _, m := range markers {
		if !bytes.Contains(before, []byte(m)) {
			t.Fatalf("before Wipe the files hold no %q: the test proves nothing", m)
		}
	}

	if err := db.Wipe(ctx); err != nil {
		t.Fatal(err)
	}
	after := fileBytes(t, path)
	for _, m := range markers {
		if i := bytes.Index(after, []byte(m)); i >= 0 {
			t.Errorf("after Wipe the files hold %q at byte %d", m, i)
		}
	}
	if _, err := os.Stat(path); err != nil {
		t.Errorf("the file is gone: %v; want an empty database", err)
	}
	var objects int
	if err := other.QueryRow(`SELECT count(*) FROM sqlite_schema`).Scan(&objects); err != nil || objects != 0 {
		t.Errorf("after Wipe the file holds %d tables, indexes and triggers (%v); want 0", objects, err)
	}

	// The handle is closed; the file opens again as a new database.
	if err := db.Save(ctx, &Note{Title: "x"}); !errors.Is(err, localdb.ErrClosed) {
		t.Errorf("Save after Wipe: %v, want ErrClosed", err)
	}
	if err := db.Close(); err != nil {
		t.Errorf("Close after Wipe: %v, want nil", err)
	}
	if err := db.Wipe(ctx); !errors.Is(err, localdb.ErrClosed) {
		t.Errorf("Wipe again: %v, want ErrClosed", err)
	}
	again := open(t, path)
	if again.DeviceID() == device {
		t.Errorf("reopened: device id %s, want a new one", device)
	}
	if p := pending(t, again); p != 0 {
		t.Errorf("reopened: %d pending rows, want 0", p)
	}
}

// Wipe closes every connection it had to the file, the sync engines' own
// too: none stays open on it after (Linux, where /proc lists them).
func TestWipeClosesEveryConnection(t *testing.T) {
	if _, err := os.Stat("/proc/self/fd"); err != nil {
		t.Skip("no /proc/self/fd")
	}
	path := filepath.Join(t.TempDir(), "app.db")
	db := open(t, path)
	s := db.Syncer()
	// A pulled row and a push: the engines' connection is opened.
	note := wire.Row{Table: "notes", ID: "n1", Version: 1, HLC: "1700000000000.000001.srv", ModifiedBy: "ada",
		Values: map[string]any{"title": "n1", "at": "2026-01-01T00:00:00Z"}}
	if _, err := s.ApplyChanges(ctx, []wire.Row{note}, "c1"); err != nil {
		t.Fatal(err)
	}
	if open := openFiles(t, path); open == 0 {
		t.Fatal("no descriptor open on the file before Wipe: the test proves nothing")
	}
	if err := db.Wipe(ctx); err != nil {
		t.Fatal(err)
	}
	if open := openFiles(t, path); open != 0 {
		t.Errorf("%d descriptors still open on %s and its log after Wipe", open, path)
	}
}

// openFiles counts this process's descriptors open on path, its -wal or
// its -shm.
func openFiles(t *testing.T, path string) int {
	t.Helper()
	entries, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, e := range entries {
		target, err := os.Readlink(filepath.Join("/proc/self/fd", e.Name()))
		if err != nil {
			continue // closed meanwhile
		}
		if target == path || target == path+"-wal" || target == path+"-shm" {
			n++
		}
	}
	return n
}
