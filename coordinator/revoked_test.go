package coordinator_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"testing"
	"time"

	"github.com/tethersync/tether/coordinator"
	"github.com/tethersync/tether/internal/testkit"
	"github.com/tethersync/tether/server"
	"github.com/tethersync/tether/wire"
)

// waitCustomer waits, bounded by guard, until d holds customer id.
func waitCustomer(t *testing.T, d *testkit.Device, id string) {
	t.Helper()
	deadline := time.Now().Add(guard)
	for {
		var c testkit.Customer
		if err := d.DB.Get(context.Background(), &c, id); err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("customer %s did not arrive within %v", id, guard)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// serverHas reports whether the server holds customer id.
func serverHas(t *testing.T, srv *testkit.Server, id string) bool {
	t.Helper()
	var n int
	if err := srv.Store.DB().QueryRow(`SELECT count(*) FROM customers WHERE id = ?`, id).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n > 0
}

// Item 3 of issue 22: a device revoked while in Live mode stops, and Live
// returns ErrRevoked; its pending rows never reach the server nor other
// devices; SyncNow and Run return ErrRevoked; reinstated, it syncs again
// and its pending rows go up; wiped, its file holds none of the data.
func TestRevokeDuringLive(t *testing.T) {
	ctx := context.Background()
	reg := testkit.Registry(t)
	srv := testkit.NewServer(t, reg, server.Options{})
	fast := coordinator.Options{LiveDebounce: 20 * time.Millisecond, InitialBackoff: 20 * time.Millisecond, MaxBackoff: 100 * time.Millisecond}
	ada := testkit.NewDevice(t, reg, srv.URL, testkit.DeviceOptions{Co: fast})
	bob := testkit.NewDevice(t, reg, srv.URL, testkit.DeviceOptions{Token: "token-bob"})
	save := func(d *testkit.Device, id, name string) {
		t.Helper()
		if err := d.DB.Save(ctx, &testkit.Customer{ID: id, Name: name}); err != nil {
			t.Fatal(err)
		}
	}
	save(ada, "synced", "revoke-marker-synced")
	ada.Sync(t)

	lctx, cancel := context.WithTimeout(ctx, guard)
	defer cancel()
	live := make(chan error, 1)
	go func() { live <- ada.Co.Live(lctx, time.Hour) }()
	save(bob, "from-bob", "revoke-marker-bob")
	bob.Sync(t)
	waitCustomer(t, ada, "from-bob") // Live follows the stream

	save(ada, "pending", "revoke-marker-pending") // not pushed: Live syncs on others' events
	if err := srv.Store.SetDeviceRevoked(ctx, "acme", ada.DB.DeviceID(), true); err != nil {
		t.Fatal(err)
	}
	save(bob, "after", "revoke-marker-after")
	bob.Sync(t) // an event: ada's stream, or the sync it starts, meets the revocation
	select {
	case err := <-live:
		if !errors.Is(err, coordinator.ErrRevoked) || !errors.Is(err, wire.ErrDeviceRevoked) {
			t.Fatalf("Live of a revoked device returned %v, want ErrRevoked", err)
		}
	case <-lctx.Done():
		t.Fatalf("Live did not return within %v of the revocation", guard)
	}
	if _, err := ada.Co.SyncNow(ctx); !errors.Is(err, coordinator.ErrRevoked) {
		t.Errorf("SyncNow of a revoked device: %v, want ErrRevoked", err)
	}
	if err := ada.Co.Run(lctx, time.Hour); !errors.Is(err, coordinator.ErrRevoked) {
		t.Errorf("Run of a revoked device: %v, want ErrRevoked", err)
	}
	bob.Sync(t)
	var c testkit.Customer
	if serverHas(t, srv, "pending") || bob.DB.Get(ctx, &c, "pending") == nil {
		t.Fatal("the revoked device's pending row reached the server or another device")
	}
	if n, _ := ada.DB.Pending(ctx); n != 1 {
		t.Errorf("the revoked device holds %d pending rows, want 1 (kept until wiped or reinstated)", n)
	}

	// Reinstated, it syncs again and its pending row goes up.
	if err := srv.Store.SetDeviceRevoked(ctx, "acme", ada.DB.DeviceID(), false); err != nil {
		t.Fatal(err)
	}
	ada.Sync(t)
	bob.Sync(t)
	if !serverHas(t, srv, "pending") || bob.DB.Get(ctx, &c, "pending") != nil {
		t.Error("the reinstated device's pending row is not on the server and the other device")
	}
	if ada.DB.Get(ctx, &c, "after") != nil {
		t.Error("the reinstated device did not pull what it missed")
	}

	// Revoked again, it wipes its database: none of the data stays.
	save(ada, "unsent", "revoke-marker-unsent")
	if err := srv.Store.SetDeviceRevoked(ctx, "acme", ada.DB.DeviceID(), true); err != nil {
		t.Fatal(err)
	}
	if _, err := ada.Co.SyncNow(ctx); !errors.Is(err, coordinator.ErrRevoked) {
		t.Fatalf("SyncNow: %v, want ErrRevoked", err)
	}
	ada.Co.Close()
	device := ada.DB.DeviceID()
	markers := [][]byte{[]byte("revoke-marker"), []byte(device)}
	if !bytes.Contains(files(t, ada.Path), markers[0]) {
		t.Fatal("the device's files hold no marker before the wipe: the test proves nothing")
	}
	if err := ada.DB.Wipe(ctx); err != nil {
		t.Fatal(err)
	}
	after := files(t, ada.Path)
	for _, m := range markers {
		if i := bytes.Index(after, m); i >= 0 {
			t.Errorf("the wiped files hold %q at byte %d", m, i)
		}
	}
}

// files returns the bytes of the SQLite file at path and of its -wal,
// those that exist.
func files(t *testing.T, path string) []byte {
	t.Helper()
	var all []byte
	for _, p := range []string{path, path + "-wal"} {
		b, err := os.ReadFile(p)
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			t.Fatal(err)
		}
		all = append(all, b...)
	}
	return all
}
