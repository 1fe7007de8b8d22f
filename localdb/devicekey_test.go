package localdb_test

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/tethersync/tether/wire"
)

// A new database makes a well-formed device key, of 32 random bytes, and
// keeps it: reopening the file gives the same key (and the same device).
func TestDeviceKeyKept(t *testing.T) {
	path := filepath.Join(t.TempDir(), "app.db")
	db := open(t, path)
	key, device := db.Syncer().DeviceKey(), db.DeviceID()
	if !wire.ValidDeviceKey(key) || len(key) != 43 {
		t.Fatalf("DeviceKey() is %d characters, valid %v; want a well-formed key of 43", len(key), wire.ValidDeviceKey(key))
	}
	db.Close()
	again := open(t, path)
	if got := again.Syncer().DeviceKey(); got != key {
		t.Errorf("DeviceKey() after reopening changed")
	}
	if got := again.DeviceID(); got != device {
		t.Errorf("DeviceID() after reopening = %s, want %s", got, device)
	}
}

// Two databases are two devices: their keys differ.
func TestDeviceKeysDiffer(t *testing.T) {
	a, b := newDB(t), newDB(t)
	if a.Syncer().DeviceKey() == b.Syncer().DeviceKey() {
		t.Errorf("two new databases have the same device key")
	}
}

// A database made before device keys (a device id, no key) gets a key at
// its next open, and keeps its device id; a stored key that is not
// well-formed is an error that does not show it.
func TestDeviceKeyAddedOnOpen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "app.db")
	db := open(t, path)
	device := db.DeviceID()
	if _, err := db.SQL().Exec(`DELETE FROM _tether_state WHERE key = 'device_key'`); err != nil {
		t.Fatal(err)
	}
	db.Close()
	db = open(t, path)
	if got := db.DeviceID(); got != device {
		t.Errorf("DeviceID() = %s, want %s (kept)", got, device)
	}
	key := db.Syncer().DeviceKey()
	if !wire.ValidDeviceKey(key) {
		t.Fatalf("DeviceKey() of %d characters is not well-formed", len(key))
	}
	var stored string
	if err := db.SQL().QueryRow(`SELECT value FROM _tether_state WHERE key = 'device_key'`).Scan(&stored); err != nil || stored != key {
		t.Fatalf("stored key matches DeviceKey(): %v, %v; want true", stored == key, err)
	}

	bad := "short, secret"
	if _, err := db.SQL().Exec(`UPDATE _tether_state SET value = ? WHERE key = 'device_key'`, bad); err != nil {
		t.Fatal(err)
	}
	err := reopen(db)
	if err == nil || !strings.Contains(err.Error(), "device_key") || strings.Contains(err.Error(), bad) {
		t.Errorf("open with a malformed key: %v; want an error naming device_key, without the value", err)
	}
}
