package sqlitedriver_test

import (
	"bytes"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tethersync/tether/internal/sqlitedriver"
	"github.com/tethersync/tether/internal/testkit"
)

// TestConfigApplies opens a database as a Config says and reads each
// setting back from SQLite, whichever driver is linked.
func TestConfigApplies(t *testing.T) {
	path := filepath.Join(t.TempDir(), "a.db")
	db, err := sqlitedriver.Open(path, sqlitedriver.Config{WAL: true, BusyTimeout: 1234 * time.Millisecond,
		ForeignKeys: true, TxLock: "immediate", Synchronous: "NORMAL", StmtCache: 8})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for _, c := range []struct{ pragma, want string }{
		{"journal_mode", "wal"}, {"busy_timeout", "1234"}, {"foreign_keys", "1"}, {"synchronous", "1"},
	} {
		var got string
		if err := db.QueryRow("PRAGMA " + c.pragma).Scan(&got); err != nil {
			t.Fatal(err)
		}
		if got != c.want {
			t.Errorf("%s: PRAGMA %s = %s, want %s", sqlitedriver.Name, c.pragma, got, c.want)
		}
	}
	if _, err := db.Exec(`CREATE TABLE t (x)`); err != nil {
		t.Fatal(err)
	}
	ro, err := sqlitedriver.Open(path, sqlitedriver.Config{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer ro.Close()
	if _, err := ro.Exec(`INSERT INTO t VALUES (1)`); err == nil {
		t.Errorf("%s: insert through a ReadOnly Config succeeded", sqlitedriver.Name)
	}
}

// TestKey: a key is refused by the cgo driver, and must be KeySize bytes
// for the pure-Go one.
func TestKey(t *testing.T) {
	_, err := sqlitedriver.DSN("a.db", sqlitedriver.Config{Key: bytes.Repeat([]byte{1}, sqlitedriver.KeySize)})
	if !sqlitedriver.Encryption {
		if !errors.Is(err, sqlitedriver.ErrNoEncryption) || !strings.Contains(err.Error(), "CGO_ENABLED=0") {
			t.Fatalf("cgo DSN with a key: %v, want ErrNoEncryption naming CGO_ENABLED=0", err)
		}
		return
	}
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sqlitedriver.DSN("a.db", sqlitedriver.Config{Key: []byte("short")}); !errors.Is(err, sqlitedriver.ErrBadKey) {
		t.Errorf("short key: %v, want ErrBadKey", err)
	}
}

// TestStable: with Config.Stable, a statement's plan does not depend on
// the values bound to it (SQLite's query planner stability guarantee), so
// that a cached statement is not compiled anew each time it runs; without
// it, SQLite uses the bound value to prove a partial index usable. It also
// checks that foreign keys are off without Config.ForeignKeys, whatever
// the build's default.
func TestStable(t *testing.T) {
	for _, stable := range []bool{false, true} {
		db, err := sqlitedriver.Open(filepath.Join(t.TempDir(), "a.db"), sqlitedriver.Config{WAL: true, StmtCache: 8, Stable: stable})
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		db.SetMaxOpenConns(1)
		var fk string
		if err := db.QueryRow(`PRAGMA foreign_keys`).Scan(&fk); err != nil || fk != "0" {
			t.Errorf("%s: PRAGMA foreign_keys = %s (%v), want 0", sqlitedriver.Name, fk, err)
		}
		usesIndex, plan := testkit.PlansFromBoundValue(t, db, "t")
		if usesIndex == stable {
			t.Errorf("%s, Stable %v: plan %q; want the partial index used only when not Stable", sqlitedriver.Name, stable, plan)
		}
	}
}
