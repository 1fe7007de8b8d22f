package sim

import (
	"context"
	"database/sql"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tethersync/tether/client"
	"github.com/tethersync/tether/coordinator"
	"github.com/tethersync/tether/localdb"
	"github.com/tethersync/tether/server"
	"github.com/tethersync/tether/server/sqlitestore"
)

// The smallest reproducer of what the simulation found (see
// docs/testing.md): the answer to a device's last pull page is lost
// after the server recorded that the device pulled to there; a sweep then
// purges up to that position, and the device, active all along, is
// rebuilt on its next sync (needlessly: it only needed that page again).
// It failed while the server recorded a device's position before the
// device had stored the page (it now takes the cursor the device sends).
func TestLostPullAnswerRebuilds(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	reg := registry(true)
	lim := server.Limits{DeviceActivity: time.Hour} // everyone stays active
	store, err := sqlitestore.Open(filepath.Join(dir, "server.db"), reg.Schema(), sqlitestore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	opts := serverOptions()
	opts.Limits = lim
	handler, err := server.New(store, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer handler.Close()
	srv := httptest.NewServer(handler)
	defer srv.Close()
	// B reaches the server through a proxy that, when armed, lets the
	// server answer a pull and then loses the answer (502).
	var armed atomic.Bool
	proxy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		req, _ := http.NewRequestWithContext(r.Context(), r.Method, srv.URL+r.URL.RequestURI(), r.Body)
		req.Header = r.Header.Clone()
		resp, err := http.DefaultTransport.RoundTrip(req)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		if armed.Load() && strings.HasPrefix(r.URL.Path, "/v1/changes") {
			http.Error(w, "answer lost", http.StatusBadGateway)
			return
		}
		for k, v := range resp.Header {
			w.Header()[k] = v
		}
		w.WriteHeader(resp.StatusCode)
		w.Write(body)
	}))
	defer proxy.Close()
	open := func(name, url string) (*localdb.DB, *coordinator.Coordinator) {
		db, err := localdb.Open(ctx, filepath.Join(dir, name+".db"), registry(true))
		if err != nil {
			t.Fatal(err)
		}
		co := coordinator.New(db, client.New(url, client.Options{Token: token}), coordinator.Options{
			Logger: quiet, InitialBackoff: time.Millisecond, MaxBackoff: 5 * time.Millisecond, MaxElapsed: 50 * time.Millisecond,
		})
		t.Cleanup(func() { co.Close(); db.Close() })
		return db, co
	}
	adb, a := open("a", srv.URL)
	_, b := open("b", proxy.URL)
	acct := Account{Name: "x", Region: "r"}
	if err := adb.Save(ctx, &acct); err != nil {
		t.Fatal(err)
	}
	for _, co := range []*coordinator.Coordinator{a, b} {
		if _, err := co.SyncNow(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if err := adb.Delete(ctx, &Account{ID: acct.ID}); err != nil {
		t.Fatal(err)
	}
	if _, err := a.SyncNow(ctx); err != nil {
		t.Fatal(err)
	}
	armed.Store(true)
	if _, err := b.SyncNow(ctx); err == nil {
		t.Fatal("B's pull succeeded through the armed proxy")
	}
	armed.Store(false)
	if _, err := a.SyncNow(ctx); err != nil { // A pulls past the deletion too
		t.Fatal(err)
	}
	n, err := store.Sweep(ctx, lim, 100)
	if err != nil {
		t.Fatal(err)
	}
	rep, err := b.SyncNow(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("sweep discarded %d; B's next sync rebuilt: %v", n, rep.Rebuilt)
	if rep.Rebuilt {
		t.Errorf("B, active all along (DeviceActivity 1h), was rebuilt because the answer to its last pull page was lost: the server had recorded it at a position it never stored, and purged up to there (%d tombstones)", n)
	}
}

// The smallest reproducer of the other thing the simulation found: a
// device rebuilt from a snapshot (which holds live rows only) then pulls
// the tombstone of a child whose parent it never held, and stores it: the
// child's row references a row absent on the device, and
// PRAGMA foreign_key_check reports it (G4). Here: A deletes an entry; D,
// new once a horizon exists, is rebuilt without it; C then pushes an edit
// of a note of that entry, which the server deletes with it (cascade); D
// pulls that note's tombstone. It fails while pulls store such tombstones,
// so it runs only with -sim.strict-fk.
func TestRebuiltDeviceForeignKeys(t *testing.T) {
	if !*strictFK {
		t.Skip("off with -sim.strict-fk=false")
	}
	ctx := context.Background()
	dir := t.TempDir()
	reg := registry(true)
	lim := server.Limits{DeviceActivity: time.Hour}
	store, err := sqlitestore.Open(filepath.Join(dir, "server.db"), reg.Schema(), sqlitestore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	opts := serverOptions()
	opts.Limits = lim
	handler, err := server.New(store, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer handler.Close()
	srv := httptest.NewServer(handler)
	defer srv.Close()
	open := func(name string) (*localdb.DB, *coordinator.Coordinator) {
		db, err := localdb.Open(ctx, filepath.Join(dir, name+".db"), registry(true))
		if err != nil {
			t.Fatal(err)
		}
		co := coordinator.New(db, client.New(srv.URL, client.Options{Token: token}), coordinator.Options{Logger: quiet})
		t.Cleanup(func() { co.Close(); db.Close() })
		return db, co
	}
	sync := func(co *coordinator.Coordinator) coordinator.Report {
		t.Helper()
		rep, err := co.SyncNow(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return rep
	}
	adb, a := open("a")
	cdb, c := open("c")
	acct := Account{Name: "x", Region: "r"}
	note := "n"
	e := Entry{Amount: 1, Note: &note}
	n := Note{Text: "t"}
	if err := adb.Update(ctx, func(tx *localdb.Tx) error {
		if err := tx.Save(ctx, &acct); err != nil {
			return err
		}
		e.AccountID = acct.ID
		if err := tx.Save(ctx, &e); err != nil {
			return err
		}
		n.EntryID = e.ID
		return tx.Save(ctx, &n)
	}); err != nil {
		t.Fatal(err)
	}
	sync(a)
	sync(c)
	sync(c)                                                   // a pull proves the one before it: C is at its position
	if err := adb.Delete(ctx, &Entry{ID: e.ID}); err != nil { // and its note, on the server
		t.Fatal(err)
	}
	sync(a)
	sync(a)
	if _, err := store.Sweep(ctx, lim, 100); err != nil { // a horizon: C's position
		t.Fatal(err)
	}
	ddb, d := open("d")
	if rep := sync(d); !rep.Rebuilt {
		t.Fatal("D, new once a horizon exists, was not rebuilt from a snapshot")
	}
	n.Text = "edited on C" // C has not pulled the deletion yet
	if err := cdb.Save(ctx, &n); err != nil {
		t.Fatal(err)
	}
	sync(c) // the server deletes the note with its entry, at a new version
	sync(d)
	var bad int
	if err := ddb.SQL().QueryRowContext(ctx, `SELECT count(*) FROM pragma_foreign_key_check`).Scan(&bad); err != nil {
		t.Fatal(err)
	}
	var deleted sql.NullBool
	ddb.SQL().QueryRowContext(ctx, `SELECT _deleted FROM notes WHERE id = ?`, n.ID).Scan(&deleted)
	if bad != 0 {
		t.Errorf("G4: D has %d foreign key violations: the note %s (on D: deleted %+v) references entry %s, which D never held", bad, n.ID, deleted, e.ID)
	}
}
