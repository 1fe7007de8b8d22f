package e2e

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/tethersync/tether/coordinator"
	"github.com/tethersync/tether/internal/testkit"
	"github.com/tethersync/tether/server"
	"github.com/tethersync/tether/server/sqlitestore"
	"github.com/tethersync/tether/wire"
)

// A server bounds a session's size; a device with more dirty rows than fit
// commits the session when it is full and goes on in new ones, so every
// row arrives, once.
func TestPushSpansSessions(t *testing.T) {
	reg := testkit.Registry(t)
	srv := testkit.NewServer(t, reg, server.Options{Limits: server.Limits{MaxSessionRows: 5}})
	d := testkit.NewDevice(t, reg, srv.URL, testkit.DeviceOptions{Co: coordinator.Options{PushBatchSize: 2}})
	ids := saveCustomers(t, d, 23, "many")
	d.Sync(t)
	got := testkit.Dump(t, srv.Store.DB(), "customers", []string{"name"}, "acme")
	if len(got) != len(ids) {
		t.Fatalf("server holds %d customers, want %d", len(got), len(ids))
	}
	var sessions, committed int
	err := srv.Store.DB().QueryRow(`SELECT count(DISTINCT "_session"), (SELECT count(*) FROM _tether_sessions WHERE committed_at IS NOT NULL)
		FROM customers`).Scan(&sessions, &committed)
	if err != nil || sessions < 5 || committed != sessions {
		t.Errorf("rows came in %d sessions, %d committed (%v); want at least 5, all committed", sessions, committed, err)
	}
	if n, err := d.DB.Pending(ctx); err != nil || n != 0 {
		t.Errorf("%d rows still dirty (%v)", n, err)
	}
}

// The server discards expired sessions on its own, whether or not their
// devices come back.
func TestServerSweepsExpiredSessions(t *testing.T) {
	reg := testkit.Registry(t)
	clock := testkit.NewClock()
	store, err := sqlitestore.Open(filepath.Join(t.TempDir(), "server.db"), reg.Schema(), sqlitestore.Options{Now: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	lim := server.Limits{SessionIdle: time.Hour}
	url := testkit.Serve(t, store, server.Options{SweepInterval: 10 * time.Millisecond, Limits: lim, Now: clock.Now}).URL
	d := testkit.NewDevice(t, reg, url, testkit.DeviceOptions{})
	d.Sync(t) // registers the device
	device := d.DB.DeviceID()
	session, err := d.API.OpenSession(ctx, device, "")
	if err != nil {
		t.Fatal(err)
	}
	row := wire.Row{Table: "customers", ID: "c1", HLC: "1700000000000.000000." + device,
		Values: map[string]any{"name": "left behind", "email": nil, "tags": "[]"}}
	if _, err := d.API.SendBatch(ctx, device, session, 0, []wire.Row{row}, wire.BatchParams{}); err != nil {
		t.Fatal(err)
	}
	staged := func() int {
		var n int
		if err := store.DB().QueryRow(`SELECT (SELECT count(*) FROM _tether_stage_customers) + (SELECT count(*) FROM _tether_sessions)`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	if staged() == 0 {
		t.Fatal("nothing staged")
	}
	clock.Advance(2 * lim.SessionIdle) // the session expires
	// The sweep runs every 10ms of real time: wait for the next one.
	deadline := time.Now().Add(10 * time.Second)
	for staged() > 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := staged(); n > 0 {
		t.Errorf("%d staged rows and sessions left after the sweep should have run", n)
	}
}
