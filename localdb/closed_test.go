package localdb_test

import (
	"errors"
	"path/filepath"
	"sync"
	"testing"

	"github.com/tethersync/tether/localdb"
	"github.com/tethersync/tether/wire"
)

// TestErrClosed calls every method of DB that returns an error after
// Close and checks each error wraps ErrClosed.
func TestErrClosed(t *testing.T) {
	db := newDB(t)
	n := Note{Title: "before close"}
	if err := db.Save(ctx, &n); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Errorf("second Close: %v, want nil", err)
	}
	calls := map[string]func() error{
		"Save":   func() error { return db.Save(ctx, &Note{Title: "x"}) },
		"Get":    func() error { var g Note; return db.Get(ctx, &g, n.ID) },
		"Delete": func() error { return db.Delete(ctx, &n) },
		"Update": func() error {
			called := false
			err := db.Update(ctx, func(*localdb.Tx) error { called = true; return nil })
			if called {
				t.Error("Update ran its function after Close")
			}
			return err
		},
		"Query":           func() error { _, err := localdb.Query[Note](ctx, db, ""); return err },
		"Pending":         func() error { _, err := db.Pending(ctx); return err },
		"Tenant":          func() error { _, err := db.Syncer().Tenant(ctx); return err },
		"BindTenant":      func() error { return db.Syncer().BindTenant(ctx, "acme") },
		"PushState":       func() error { _, err := db.Syncer().PushState(ctx); return err },
		"BeginPush":       func() error { return db.Syncer().BeginPush(ctx, "s") },
		"AbandonPush":     func() error { return db.Syncer().AbandonPush(ctx) },
		"NextDirty":       func() error { _, err := db.Syncer().NextDirty(ctx, localdb.PushPos{}, 10); return err },
		"MarkSent":        func() error { return db.Syncer().MarkSent(ctx, localdb.DirtyBatch{}, localdb.PushState{}) },
		"FinishPush":      func() error { return db.Syncer().FinishPush(ctx, wire.Commit{}, true) },
		"Cursor":          func() error { _, err := db.Syncer().Cursor(ctx); return err },
		"ApplyChanges":    func() error { _, err := db.Syncer().ApplyChanges(ctx, nil, "c"); return err },
		"Digest":          func() error { _, _, err := db.Syncer().Digest(ctx, "notes"); return err },
		"Conflicts":       func() error { _, err := db.Conflicts(ctx); return err },
		"KeepLocal":       func() error { return db.KeepLocal(ctx, 1) },
		"DismissConflict": func() error { return db.DismissConflict(ctx, 1) },
	}
	for name, call := range calls {
		if err := call(); !errors.Is(err, localdb.ErrClosed) {
			t.Errorf("%s after Close: %v, want an error wrapping ErrClosed", name, err)
		}
	}
	if db.DeviceID() == "" {
		t.Error("DeviceID after Close is empty")
	}
}

// TestCloseConcurrent closes a database while other goroutines use it:
// exactly one Close does the work, the others return nil, and every call
// that starts after Close returned reports ErrClosed. Run with -race.
func TestCloseConcurrent(t *testing.T) {
	db := open(t, filepath.Join(t.TempDir(), "app.db"))
	var wg sync.WaitGroup
	for i := 0; i < 4; i++ {
		wg.Add(2)
		go func() {
			defer wg.Done()
			if err := db.Close(); err != nil {
				t.Errorf("Close: %v", err)
			}
		}()
		go func() {
			defer wg.Done()
			db.Pending(ctx) // before or after Close: either answer is fine
		}()
	}
	wg.Wait()
	if _, err := db.Pending(ctx); !errors.Is(err, localdb.ErrClosed) {
		t.Errorf("Pending after Close: %v, want ErrClosed", err)
	}
}
