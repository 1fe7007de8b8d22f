package e2e

import (
	"io"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/tethersync/tether/coordinator"
	"github.com/tethersync/tether/internal/testkit"
	"github.com/tethersync/tether/server"
)

func pulled(rep map[string]int) int {
	n := 0
	for _, v := range rep {
		n += v
	}
	return n
}

// A device does not download what it just pushed, but does get every row
// the server changed while committing: a conflict settled against it, and
// a clock stamp the server replaced.
func TestNoEcho(t *testing.T) {
	reg := testkit.Registry(t)
	srv := testkit.NewServer(t, reg, server.Options{MaxClockSkew: time.Minute})
	a := testkit.NewDevice(t, reg, srv.URL, testkit.DeviceOptions{})
	b := testkit.NewDevice(t, reg, srv.URL, testkit.DeviceOptions{Token: "token-bob"})
	ids := saveCustomers(t, a, 500, "mine")
	rep := a.Sync(t)
	if rep.Pushed["customers"] != 500 || pulled(rep.Pulled) != 0 {
		t.Errorf("a sync of 500 local changes: pushed %v, pulled %v; want 500 up and none back", rep.Pushed, rep.Pulled)
	}
	b.Sync(t)

	// A conflict: b's later edit wins over a's; a gets the winner.
	var c testkit.Customer
	if err := b.DB.Get(ctx, &c, ids[0]); err != nil {
		t.Fatal(err)
	}
	c.Name = "b's"
	if err := b.DB.Save(ctx, &c); err != nil {
		t.Fatal(err)
	}
	if err := a.DB.Get(ctx, &c, ids[0]); err != nil {
		t.Fatal(err)
	}
	c.Name = "a's"
	if err := a.DB.Save(ctx, &c); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * time.Millisecond)
	if err := b.DB.Get(ctx, &c, ids[0]); err != nil {
		t.Fatal(err)
	}
	c.Name = "b's, later"
	if err := b.DB.Save(ctx, &c); err != nil {
		t.Fatal(err)
	}
	b.Sync(t)
	a.Sync(t)
	if err := a.DB.Get(ctx, &c, ids[0]); err != nil || c.Name != "b's, later" {
		t.Errorf("a after losing a conflict: %q, %v; want b's later edit", c.Name, err)
	}

	// A device whose clock runs an hour ahead: the server re-stamps its
	// row, and the device pulls the row back with the new stamp.
	ahead := testkit.NewDevice(t, reg, srv.URL, testkit.DeviceOptions{Now: func() time.Time { return time.Now().Add(time.Hour) }})
	ahead.Sync(t)
	saveCustomers(t, ahead, 1, "ahead")
	rep = ahead.Sync(t)
	if pulled(rep.Pulled) != 1 {
		t.Errorf("a re-stamped row: pulled %v, want it back", rep.Pulled)
	}
	for _, d := range []*testkit.Device{a, b, ahead} {
		d.Sync(t)
	}
	assertConverged(t, srv, a, b, ahead)
}

// copyDB copies a closed device database, WAL and all.
func copyDB(t *testing.T, from, to string) {
	t.Helper()
	for _, suffix := range []string{"", "-wal", "-shm"} {
		in, err := os.Open(from + suffix)
		if os.IsNotExist(err) {
			os.Remove(to + suffix)
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		out, err := os.Create(to + suffix)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := io.Copy(out, in); err != nil {
			t.Fatal(err)
		}
		in.Close()
		out.Close()
	}
}

// A device restored from a backup, or copied to a second machine, keeps
// its device id: what the other copy pushed, or what it pushed after the
// backup, still reaches it.
func TestEchoAfterBackupAndCopy(t *testing.T) {
	reg := testkit.Registry(t)
	srv := testkit.NewServer(t, reg, server.Options{})
	dir := t.TempDir()
	path, backup, second := filepath.Join(dir, "a.db"), filepath.Join(dir, "backup.db"), filepath.Join(dir, "second.db")
	a := testkit.NewDevice(t, reg, srv.URL, testkit.DeviceOptions{Path: path})
	saveCustomers(t, a, 3, "before the backup")
	a.Sync(t)
	a.Co.Close()
	a.DB.Close()
	copyDB(t, path, backup)

	a = testkit.NewDevice(t, reg, srv.URL, testkit.DeviceOptions{Path: path})
	saveCustomers(t, a, 4, "after the backup")
	a.Sync(t)
	a.Co.Close()
	a.DB.Close()
	copyDB(t, path, second) // a second machine, same device id
	copyDB(t, backup, path) // and the first restored from the backup

	restored := testkit.NewDevice(t, reg, srv.URL, testkit.DeviceOptions{Path: path})
	if rep := restored.Sync(t); pulled(rep.Pulled) != 4 {
		t.Errorf("restored from a backup: pulled %v, want the 4 rows pushed after it", rep.Pulled)
	}
	copied := testkit.NewDevice(t, reg, srv.URL, testkit.DeviceOptions{Path: second})
	if restored.DB.DeviceID() != copied.DB.DeviceID() {
		t.Fatal("the copies have different device ids")
	}
	saveCustomers(t, restored, 2, "restored")
	restored.Sync(t)
	saveCustomers(t, copied, 5, "copied")
	copied.Sync(t)
	restored.Sync(t)
	copied.Sync(t)
	assertConverged(t, srv, restored, copied)
	for _, d := range []*testkit.Device{restored, copied} {
		if n := len(names(t, d)); n != 3+4+2+5 {
			t.Errorf("a copy holds %d customers, want %d", n, 3+4+2+5)
		}
	}
}

// A backup taken in the middle of a push session, restored after the
// session went on and committed from the live database: the restored copy
// did not send all of that session, so it must not take its rows for its
// own echo.
func TestEchoAfterBackupMidSession(t *testing.T) {
	reg := testkit.Registry(t)
	srv := testkit.NewServer(t, reg, server.Options{})
	dir := t.TempDir()
	path, backup := filepath.Join(dir, "a.db"), filepath.Join(dir, "backup.db")
	noCommit := &testkit.FaultTransport{Decide: func(r *http.Request, kind string, n int) testkit.Fault {
		if kind == "commit" {
			return testkit.DropRequest
		}
		return testkit.Pass
	}}
	quick := coordinator.Options{PushBatchSize: 2, InitialBackoff: time.Millisecond, MaxBackoff: 5 * time.Millisecond, MaxElapsed: 200 * time.Millisecond}
	a := testkit.NewDevice(t, reg, srv.URL, testkit.DeviceOptions{Path: path, Transport: noCommit, Co: quick})
	saveCustomers(t, a, 4, "in the session")
	if _, err := a.Co.SyncNow(ctx); err == nil {
		t.Fatal("the session committed without its commit")
	}
	a.Co.Close()
	a.DB.Close()
	copyDB(t, path, backup) // the session is open, its batches sent

	a = testkit.NewDevice(t, reg, srv.URL, testkit.DeviceOptions{Path: path, Co: coordinator.Options{PushBatchSize: 2}})
	saveCustomers(t, a, 3, "added to the session later") // the resumed session sends them too
	a.Sync(t)
	a.Co.Close()
	a.DB.Close()
	copyDB(t, backup, path)

	restored := testkit.NewDevice(t, reg, srv.URL, testkit.DeviceOptions{Path: path, Co: coordinator.Options{PushBatchSize: 2}})
	restored.Sync(t)
	restored.Sync(t)
	if n := len(names(t, restored)); n != 7 {
		t.Errorf("the restored copy holds %d customers, want all 7 the session committed", n)
	}
	assertConverged(t, srv, restored)
}
