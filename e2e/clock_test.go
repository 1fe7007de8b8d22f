package e2e

import (
	"database/sql"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tethersync/tether/internal/sqlitedsn"
	"github.com/tethersync/tether/internal/testkit"
	"github.com/tethersync/tether/server"
	"github.com/tethersync/tether/wire"
)

// stampMS is the physical part of a stamp, in milliseconds.
func stampMS(t *testing.T, hlc string) int64 {
	t.Helper()
	ms, err := strconv.ParseInt(strings.SplitN(hlc, ".", 2)[0], 10, 64)
	if err != nil || len(strings.SplitN(hlc, ".", 2)[0]) != 13 {
		t.Fatalf("malformed stamp %q", hlc)
	}
	return ms
}

// A member pushes rows stamped far in the future (the year 2100, and the
// largest stamp there is) over rows others are editing. The server
// re-stamps them with its own clock: they do not win last-writer-wins over
// later real edits, and devices that pull them keep clocks that make
// stamps the server accepts.
func TestFutureStampsDoNotWin(t *testing.T) {
	reg := testkit.Registry(t)
	srv := testkit.NewServer(t, reg, server.Options{MaxClockSkew: time.Minute})
	ada := testkit.NewDevice(t, reg, srv.URL, testkit.DeviceOptions{})
	ids := saveCustomers(t, ada, 2, "original")
	ada.Sync(t)
	mallory := testkit.NewDevice(t, reg, srv.URL, testkit.DeviceOptions{Token: "token-bob"})
	mallory.Sync(t)
	dev := mallory.DB.DeviceID()
	for i, stamp := range []string{"4102444800000.000000." + dev, "9999999999999.999999." + dev} {
		var c testkit.Customer
		if err := mallory.DB.Get(ctx, &c, ids[i]); err != nil {
			t.Fatal(err)
		}
		var base int64
		if err := mallory.DB.SQL().QueryRow(`SELECT "_version" FROM customers WHERE id = ?`, ids[i]).Scan(&base); err != nil {
			t.Fatal(err)
		}
		session, err := mallory.API.OpenSession(ctx, dev, "")
		if err != nil {
			t.Fatal(err)
		}
		row := wire.Row{Table: "customers", ID: ids[i], Base: base, HLC: stamp, Values: map[string]any{"name": "forged", "email": nil, "tags": "[]"}}
		if _, err := mallory.API.SendBatch(ctx, dev, session, 0, []wire.Row{row}, wire.BatchParams{}); err != nil {
			t.Fatal(err)
		}
		if _, err := mallory.API.Commit(ctx, dev, session); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(5 * time.Millisecond) // Ada's edits come later than the forged ones reached the server
	for _, id := range ids {         // edited concurrently: based on the version before the forgery
		var c testkit.Customer
		if err := ada.DB.Get(ctx, &c, id); err != nil {
			t.Fatal(err)
		}
		c.Name = "real edit"
		if err := ada.DB.Save(ctx, &c); err != nil {
			t.Fatal(err)
		}
	}
	ada.Sync(t)
	ada.Sync(t) // with the forged stamps pulled: would fail for good with an overflowed clock
	got := testkit.Dump(t, srv.Store.DB(), "customers", []string{"name", "_hlc"}, "acme")
	limit := time.Now().Add(time.Hour).UnixMilli()
	for _, line := range got {
		f := strings.Split(line, "|")
		if f[1] != "real edit" {
			t.Errorf("row %s: %q won, want the later real edit", f[0], f[1])
		}
		if stampMS(t, f[2]) > limit {
			t.Errorf("row %s kept a stamp from the future: %s", f[0], f[2])
		}
	}
}

// A device that already holds a poisoned clock and dirty rows stamped with
// it, overflowed to 14 digits (from before servers bounded stamps),
// recovers on its own: its clock ignores the poisoned reading, it
// re-stamps the rows, and syncs.
func TestPoisonedDeviceRecovers(t *testing.T) {
	reg := testkit.Registry(t)
	srv := testkit.NewServer(t, reg, server.Options{})
	path := t.TempDir() + "/device.db"
	d := testkit.NewDevice(t, reg, srv.URL, testkit.DeviceOptions{Path: path})
	saveCustomers(t, d, 2, "before")
	dev := d.DB.DeviceID()
	d.Co.Close()
	d.DB.Close()
	raw, err := sql.Open("sqlite3", sqlitedsn.DSN(path, nil))
	if err != nil {
		t.Fatal(err)
	}
	poison := "9999999999999.999999." + dev
	for _, q := range []string{
		`UPDATE _tether_state SET value = '` + poison + `' WHERE key = 'clock'`,
		`INSERT OR REPLACE INTO _tether_state (key, value) VALUES ('clock', '` + poison + `')`,
		`UPDATE _tether_ctl SET suppress = 1`, // the change-tracking triggers leave the stamps below alone
	} {
		if _, err := raw.Exec(q); err != nil {
			t.Fatal(err)
		}
	}
	// Its clock overflowed to 14 digits, which servers refuse.
	if _, err := raw.Exec(`UPDATE customers SET _hlc = ?`, "10000000000000.000000."+dev); err != nil {
		t.Fatal(err)
	}
	if _, err := raw.Exec(`UPDATE _tether_ctl SET suppress = 0`); err != nil {
		t.Fatal(err)
	}
	raw.Close()

	d = testkit.NewDevice(t, reg, srv.URL, testkit.DeviceOptions{Path: path})
	c := testkit.Customer{ID: "after", Name: "after"}
	if err := d.DB.Save(ctx, &c); err != nil {
		t.Fatal(err)
	}
	d.Sync(t)
	got := testkit.Dump(t, srv.Store.DB(), "customers", []string{"_hlc"}, "acme")
	if len(got) != 3 {
		t.Fatalf("server holds %v, want 3 rows", got)
	}
	for _, line := range got {
		if ms := stampMS(t, strings.Split(line, "|")[1]); ms > time.Now().Add(time.Hour).UnixMilli() {
			t.Errorf("%s: a poisoned stamp reached the server", line)
		}
	}
	if n, err := d.DB.Pending(ctx); err != nil || n != 0 {
		t.Errorf("%d rows pending (%v)", n, err)
	}
}
