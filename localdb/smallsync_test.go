package localdb_test

import (
	"path/filepath"
	"testing"

	"github.com/tethersync/tether/localdb"
)

// Registered reads the tenant and the registration mark that BindTenant
// and SetRegistration stored, in one call.
func TestRegistered(t *testing.T) {
	db := open(t, filepath.Join(t.TempDir(), "app.db"))
	s := db.Syncer()
	if tenant, mark, err := s.Registered(ctx); err != nil || tenant != "" || mark != "" {
		t.Fatalf("Registered()=%q, %q, %v on a new database, want \"\", \"\", nil", tenant, mark, err)
	}
	if err := s.BindTenant(ctx, "acme"); err != nil {
		t.Fatal(err)
	}
	if err := s.SetRegistration(ctx, "mark-1"); err != nil {
		t.Fatal(err)
	}
	tenant, mark, err := s.Registered(ctx)
	if err != nil || tenant != "acme" || mark != "mark-1" {
		t.Fatalf("Registered()=%q, %q, %v, want acme, mark-1, nil", tenant, mark, err)
	}
	db.Close()
	if _, _, err := s.Registered(ctx); err == nil {
		t.Error("Registered after Close: nil error, want ErrClosed")
	}
}

// Every save takes the next value of the change counter, whether it is the
// first of its transaction (which writes the counter at once) or a later
// one (counted in memory and written at commit), and a write made with
// plain SQL afterwards goes on from there.
func TestChangeCounterAcrossSaves(t *testing.T) {
	db := open(t, filepath.Join(t.TempDir(), "app.db"))
	change := func(id string) (n int64) {
		t.Helper()
		if err := db.SQL().QueryRow(`SELECT "_change" FROM notes WHERE id = ?`, id).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	var ids []string
	err := db.Update(ctx, func(tx *localdb.Tx) error {
		for _, title := range []string{"a", "b", "c"} {
			n := Note{Title: title}
			if err := tx.Save(ctx, &n); err != nil {
				return err
			}
			ids = append(ids, n.ID)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	one := Note{Title: "d"}
	if err := db.Save(ctx, &one); err != nil {
		t.Fatal(err)
	}
	ids = append(ids, one.ID)
	if _, err := db.SQL().Exec(`INSERT INTO notes (id, title, at) VALUES ('raw', 'e', '')`); err != nil {
		t.Fatal(err)
	}
	ids = append(ids, "raw")
	for i, id := range ids {
		if got, want := change(id), int64(i+1); got != want {
			t.Errorf("row %d (%s): _change=%d, want %d", i, id, got, want)
		}
	}
	var stored int64
	if err := db.SQL().QueryRow(`SELECT change FROM _tether_ctl`).Scan(&stored); err != nil {
		t.Fatal(err)
	}
	if stored != int64(len(ids)) {
		t.Errorf("stored change counter %d, want %d", stored, len(ids))
	}
}
