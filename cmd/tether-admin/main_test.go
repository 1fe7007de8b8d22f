package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"

	"github.com/tethersync/tether/internal/testkit"
	"github.com/tethersync/tether/internal/testkit/stores"
	"github.com/tethersync/tether/server"
	"github.com/tethersync/tether/wire"
)

var ctx = context.Background()

// binary is the tether-admin built for the tests.
var binary string

func TestMain(m *testing.M) { os.Exit(run(m)) }

func run(m *testing.M) int {
	dir, err := os.MkdirTemp("", "tether-admin-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	binary = filepath.Join(dir, "tether-admin")
	if out, err := exec.Command("go", "build", "-o", binary, ".").CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "go build: %v\n%s", err, out)
		return 1
	}
	return stores.Main(m)
}

// runAdmin runs the binary with args and returns its output and exit code.
func runAdmin(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	c, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	cmd := exec.CommandContext(c, binary, args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("tether-admin %s: %v", strings.Join(args, " "), err)
	}
	t.Logf("$ tether-admin %s\n%s%s", strings.Join(args, " "), out.String(), errb.String())
	return out.String(), errb.String(), code
}

// adminJSON runs the binary with args and -json, expects success, and
// decodes its output into v.
func adminJSON(t *testing.T, v any, args ...string) {
	t.Helper()
	out, errOut, code := runAdmin(t, append(args, "-json")...)
	if code != 0 {
		t.Fatalf("tether-admin %s: exit %d: %s", strings.Join(args, " "), code, errOut)
	}
	if err := json.Unmarshal([]byte(out), v); err != nil {
		t.Fatalf("tether-admin %s -json: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// line returns the fields of the line of out that starts with first.
func line(t *testing.T, out, first string) []string {
	t.Helper()
	for _, l := range strings.Split(out, "\n") {
		if f := strings.Fields(l); len(f) > 0 && f[0] == first {
			return f
		}
	}
	t.Fatalf("no line starts with %q in:\n%s", first, out)
	return nil
}

// dbArg is what -db takes for a test database: a mysql:// URL for the
// driver's DSN.
func dbArg(t *testing.T, db stores.Database) string {
	if db.Kind != stores.MySQL {
		return db.DSN
	}
	cfg, err := mysql.ParseDSN(db.DSN)
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("mysql://%s:%s@%s/%s", cfg.User, cfg.Passwd, cfg.Addr, cfg.DBName)
}

func save(t *testing.T, d *testkit.Device, id, name string) {
	t.Helper()
	if err := d.DB.Save(ctx, &testkit.Customer{ID: id, Name: name}); err != nil {
		t.Fatal(err)
	}
}

// Devices that synced through a loopback server are listed with their
// exact pull positions and lags, the open session with what it staged, the
// device schema, and a device file with its pending row and its conflict.
func TestAdmin(t *testing.T) {
	stores.Each(t, stores.All, func(t *testing.T, db stores.Database) {
		reg := testkit.Registry(t)
		store := db.Open(t, reg.Schema(), stores.Options{})
		url := testkit.Serve(t, store, server.Options{}).URL
		ada1 := testkit.NewDevice(t, reg, url, testkit.DeviceOptions{})
		ada2 := testkit.NewDevice(t, reg, url, testkit.DeviceOptions{})
		bob := testkit.NewDevice(t, reg, url, testkit.DeviceOptions{Token: "token-bob"})
		gus := testkit.NewDevice(t, reg, url, testkit.DeviceOptions{Token: "token-globe"})
		save(t, ada1, "c1", "first")
		save(t, ada1, "c2", "second")
		ada1.Sync(t)
		bob.Sync(t)
		save(t, gus, "g1", "globex")
		gus.Sync(t)
		save(t, ada1, "c1", "ada's edit")
		ada1.Sync(t)
		save(t, bob, "c1", "bob's edit") // based on the version before ada's edit: a conflict
		bob.Sync(t)
		for _, d := range []*testkit.Device{ada1, ada2, bob, ada1, ada2, bob} { // each pull sends the cursor of the one before
			d.Sync(t)
		}
		l1, err := store.LatestVersion(ctx, "acme")
		if err != nil {
			t.Fatal(err)
		}
		save(t, ada1, "c5", "fifth")
		ada1.Sync(t)
		save(t, ada1, "c6", "sixth")
		ada1.Sync(t)
		ada1.Sync(t)
		ada1.Sync(t)
		latest, err := store.LatestVersion(ctx, "acme")
		if err != nil {
			t.Fatal(err)
		}
		if latest != l1+2 {
			t.Fatalf("latest version %d, want %d", latest, l1+2)
		}
		save(t, bob, "c7", "pending") // not pushed
		session, err := ada2.API.OpenSession(ctx, ada2.DB.DeviceID(), "")
		if err != nil {
			t.Fatal(err)
		}
		dev := ada2.DB.DeviceID()
		staged := []wire.Row{
			{Table: "customers", ID: "s1", HLC: "1700000000000.000000." + dev, Values: map[string]any{"name": "staged 1", "email": nil, "tags": "[]"}},
			{Table: "customers", ID: "s2", HLC: "1700000000000.000001." + dev, Values: map[string]any{"name": "staged 2", "email": nil, "tags": "[]"}},
		}
		if _, err := ada2.API.SendBatch(ctx, dev, session, 0, staged, wire.BatchParams{}); err != nil {
			t.Fatal(err)
		}
		dbURL := dbArg(t, db)

		t.Run("devices", func(t *testing.T) {
			var got struct {
				Tenant  string
				Latest  int64
				Devices []struct {
					Device, User  string
					Position, Lag int64
					Seen          time.Time
				}
			}
			adminJSON(t, &got, "devices", "-db", dbURL, "-tenant", "acme")
			want := map[string][3]any{ // device: user, position, lag
				ada1.DB.DeviceID(): {"ada", latest, int64(0)},
				ada2.DB.DeviceID(): {"ada", l1, int64(2)},
				bob.DB.DeviceID():  {"bob", l1, int64(2)},
			}
			if got.Tenant != "acme" || got.Latest != latest || len(got.Devices) != len(want) {
				t.Fatalf("devices -json: tenant %q latest %d, %d devices; want acme, %d, %d devices", got.Tenant, got.Latest, len(got.Devices), latest, len(want))
			}
			for _, d := range got.Devices {
				w, ok := want[d.Device]
				if !ok {
					t.Errorf("device %s listed, not one of acme's", d.Device)
					continue
				}
				if g := [3]any{d.User, d.Position, d.Lag}; g != w {
					t.Errorf("device %s: user, position, lag = %v, want %v", d.Device, g, w)
				}
				if d.Seen.IsZero() {
					t.Errorf("device %s: no last seen time", d.Device)
				}
			}
			out, _, code := runAdmin(t, "devices", "-db", dbURL, "-tenant", "acme")
			if code != 0 {
				t.Fatalf("devices: exit %d", code)
			}
			for dev, w := range want {
				f := line(t, out, dev) // DEVICE USER LAST-SEEN(date time) AGO POSITION LAG SCHEMA KEYS
				if len(f) < 7 || f[1] != w[0] || f[5] != strconv.FormatInt(w[1].(int64), 10) || f[6] != strconv.FormatInt(w[2].(int64), 10) {
					t.Errorf("devices line %q, want user %v, position %v, lag %v", strings.Join(f, " "), w[0], w[1], w[2])
				}
			}
			if !strings.Contains(out, fmt.Sprintf("latest version %d, 3 devices", latest)) {
				t.Errorf("devices: no heading with the latest version %d and 3 devices:\n%s", latest, out)
			}
			adminJSON(t, &got, "devices", "-db", dbURL, "-tenant", "acme", "-unseen", "1h")
			if len(got.Devices) != 0 {
				t.Errorf("devices -unseen 1h listed %d devices, all seen just now", len(got.Devices))
			}
		})

		t.Run("sessions", func(t *testing.T) {
			var got struct {
				Sessions []struct {
					ID, Device, User     string
					Batches, Rows, Bytes int64
				}
			}
			adminJSON(t, &got, "sessions", "-db", dbURL, "-tenant", "acme")
			if len(got.Sessions) != 1 {
				t.Fatalf("sessions: %d open, want 1", len(got.Sessions))
			}
			s := got.Sessions[0]
			if s.ID != session || s.Device != ada2.DB.DeviceID() || s.User != "ada" || s.Batches != 1 || s.Rows != 2 || s.Bytes <= 0 {
				t.Errorf("session %+v, want %s of device %s (ada), 1 batch of 2 rows", s, session, ada2.DB.DeviceID())
			}
			out, _, _ := runAdmin(t, "sessions", "-db", dbURL, "-tenant", "acme")
			if f := line(t, out, session); f[1] != ada2.DB.DeviceID() || f[len(f)-2] != "2" {
				t.Errorf("sessions line %q, want device %s and 2 rows", strings.Join(f, " "), ada2.DB.DeviceID())
			}
		})

		t.Run("schema", func(t *testing.T) {
			var got struct {
				ServerTables []struct {
					Name    string
					Columns []string
				} `json:"server_tables"`
				DeviceSchemas []struct {
					ID          string
					Devices     int
					Differences []string
				} `json:"device_schemas"`
			}
			adminJSON(t, &got, "schema", "-db", dbURL, "-tenant", "acme")
			if len(got.ServerTables) != 2 || got.ServerTables[0].Name != "customers" || got.ServerTables[1].Name != "orders" ||
				strings.Join(got.ServerTables[0].Columns, ",") != "email,id,name,tags" {
				t.Errorf("server tables %+v, want customers (email,id,name,tags) and orders", got.ServerTables)
			}
			if len(got.DeviceSchemas) != 1 || got.DeviceSchemas[0].Devices != 3 || len(got.DeviceSchemas[0].Differences) != 0 {
				t.Errorf("device schemas %+v, want one, of 3 devices, as the server's", got.DeviceSchemas)
			}
			out, _, _ := runAdmin(t, "schema", "-db", dbURL, "-tenant", "acme")
			if f := line(t, out, "customers"); f[1] != "email,id,name,tags" {
				t.Errorf("schema line %q, want customers email,id,name,tags", strings.Join(f, " "))
			}
			if len(got.DeviceSchemas) == 1 {
				if f := line(t, out, got.DeviceSchemas[0].ID[:12]); f[1] != "3" || f[3] != "-" {
					t.Errorf("schema line %q, want 3 devices and no difference", strings.Join(f, " "))
				}
			}
		})

		t.Run("keys without scopes", func(t *testing.T) {
			out, _, code := runAdmin(t, "keys", "-db", dbURL, "-tenant", "acme", "-user", "ada")
			if code != 0 || !strings.Contains(out, "tenant acme has no scoped table") {
				t.Errorf("keys: exit %d, output %q; want it to say the tenant has no scoped table", code, out)
			}
		})

		t.Run("device file", func(t *testing.T) {
			var got struct {
				Tenant, Device string
				Position       int64
				Pending        int64
				Tables         []struct {
					Name          string
					Rows, Pending int64
				}
				OpenConflicts int64 `json:"open_conflicts"`
				Conflicts     []struct {
					Table    string
					RowID    string `json:"row_id"`
					Strategy string
					State    string
				}
			}
			adminJSON(t, &got, "device", bob.Path)
			if got.Tenant != "acme" || got.Device != bob.DB.DeviceID() || got.Position != l1 || got.Pending != 1 {
				t.Errorf("device: tenant %q device %q position %d pending %d; want acme, %s, %d, 1", got.Tenant, got.Device, got.Position, got.Pending, bob.DB.DeviceID(), l1)
			}
			if len(got.Tables) != 2 || got.Tables[0].Name != "customers" || got.Tables[0].Pending != 1 || got.Tables[0].Rows != 3 || got.Tables[1].Pending != 0 {
				t.Errorf("device tables %+v, want customers with 3 rows (c1, c2, c7), 1 pending, and orders", got.Tables)
			}
			if got.OpenConflicts != 1 || len(got.Conflicts) != 1 || got.Conflicts[0].RowID != "c1" || got.Conflicts[0].Table != "customers" ||
				got.Conflicts[0].Strategy != "last-writer-wins" || got.Conflicts[0].State != "open" {
				t.Errorf("conflicts %d open, %+v; want the one on customers c1, open", got.OpenConflicts, got.Conflicts)
			}
			out, _, code := runAdmin(t, "device", bob.Path, "-conflicts", "5")
			if code != 0 {
				t.Fatalf("device: exit %d", code)
			}
			if f := line(t, out, "customers"); f[1] != "3" || f[2] != "1" {
				t.Errorf("device table line %q, want customers 3 rows, 1 pending", strings.Join(f, " "))
			}
			if f := line(t, out, "pull"); f[2] != strconv.FormatInt(l1, 10) {
				t.Errorf("device line %q, want pull position %d", strings.Join(f, " "), l1)
			}
		})

		t.Run("revoke", func(t *testing.T) {
			dev := ada2.DB.DeviceID()
			revoked := func() bool {
				t.Helper()
				var got struct {
					Devices []struct {
						Device  string
						Revoked bool
					}
				}
				adminJSON(t, &got, "devices", "-db", dbURL, "-tenant", "acme")
				for _, d := range got.Devices {
					if d.Device == dev {
						return d.Revoked
					}
				}
				t.Fatalf("device %s not listed", dev)
				return false
			}
			out, errOut, code := runAdmin(t, "revoke", "-db", dbURL, "-tenant", "acme", "-device", dev)
			if code != 0 || !strings.Contains(out, "device "+dev+" of tenant acme revoked") {
				t.Fatalf("revoke: exit %d, %q %q", code, out, errOut)
			}
			if !revoked() {
				t.Error("devices -json: the revoked device is not marked revoked")
			}
			out, _, _ = runAdmin(t, "devices", "-db", dbURL, "-tenant", "acme")
			if f := line(t, out, dev); f[7] != "yes" {
				t.Errorf("devices line %q, want REVOKED yes", strings.Join(f, " "))
			}
			var open struct{ Sessions []struct{ ID string } }
			if adminJSON(t, &open, "sessions", "-db", dbURL, "-tenant", "acme"); len(open.Sessions) != 0 {
				t.Errorf("sessions after revoke: %v, want the revoked device's discarded", open.Sessions)
			}
			c, cancel := context.WithTimeout(ctx, time.Minute)
			defer cancel()
			if _, err := ada2.Co.SyncNow(c); !errors.Is(err, wire.ErrDeviceRevoked) {
				t.Errorf("SyncNow of the revoked device: %v, want wire.ErrDeviceRevoked", err)
			}
			if _, errOut, code := runAdmin(t, "reinstate", "-db", dbURL, "-tenant", "acme", "-device", dev); code != 0 {
				t.Fatalf("reinstate: exit %d, %q", code, errOut)
			}
			if revoked() {
				t.Error("devices -json: the reinstated device is still marked revoked")
			}
			ada2.Sync(t)
			for _, c := range []struct {
				args []string
				code int
				want string
			}{
				{[]string{"revoke", "-db", dbURL, "-tenant", "acme", "-device", "no-such-device"}, 1, "device not found"},
				{[]string{"reinstate", "-db", dbURL, "-tenant", "nosuch", "-device", dev}, 1, "unknown tenant"},
				{[]string{"revoke", "-db", dbURL, "-tenant", "acme"}, 2, "-device is required"},
			} {
				_, errOut, code := runAdmin(t, c.args...)
				if code != c.code || !strings.Contains(errOut, c.want) {
					t.Errorf("tether-admin %s: exit %d, %q; want exit %d and %q", strings.Join(c.args, " "), code, errOut, c.code, c.want)
				}
			}
		})

		t.Run("bad input", func(t *testing.T) {
			for _, c := range []struct {
				args []string
				code int
				want string
			}{
				{[]string{"devices", "-db", dbURL, "-tenant", "nosuch"}, 1, `tenant "nosuch": no device registered, no commit: unknown tenant`},
				{[]string{"sessions", "-db", dbURL, "-tenant", "nosuch"}, 1, "unknown tenant"},
				{[]string{"keys", "-db", dbURL, "-tenant", "acme", "-user", "nobody"}, 1, "unknown user"},
				{[]string{"devices", "-db", dbURL}, 2, "-tenant is required"},
				{[]string{"keys", "-db", dbURL, "-tenant", "acme"}, 2, "-user is required"},
				{[]string{"frobnicate"}, 2, `unknown command "frobnicate"`},
				{[]string{"device"}, 2, "give the database file"},
				{[]string{"device", os.Args[0]}, 1, "not a tether device database"},
				{[]string{"device", filepath.Join(t.TempDir(), "none.db")}, 1, "no such file"},
			} {
				_, errOut, code := runAdmin(t, c.args...)
				if code != c.code || !strings.Contains(errOut, c.want) {
					t.Errorf("tether-admin %s: exit %d, %q; want exit %d and %q", strings.Join(c.args, " "), code, errOut, c.code, c.want)
				}
			}
		})
	})
}

// A -db that is not a tether server database is refused, and left as it
// was: no table is created in it.
func TestNotServer(t *testing.T) {
	reg := testkit.Registry(t)
	d := testkit.NewDevice(t, reg, "http://127.0.0.1:1", testkit.DeviceOptions{})
	before, err := os.ReadFile(d.Path)
	if err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(t.TempDir(), "typo.db")
	for _, path := range []string{d.Path, missing} {
		_, errOut, code := runAdmin(t, "devices", "-db", path, "-tenant", "acme")
		if code != 1 || !strings.Contains(errOut, "not a tether server database") && !strings.Contains(errOut, "no such file") {
			t.Errorf("devices -db %s: exit %d, %q; want exit 1, not a tether server database", path, code, errOut)
		}
	}
	if after, _ := os.ReadFile(d.Path); !bytes.Equal(before, after) {
		t.Error("devices -db on a device file changed the file")
	}
	if _, err := os.Stat(missing); !os.IsNotExist(err) {
		t.Errorf("devices -db on a missing file created it (%v)", err)
	}
	t.Run("postgres", func(t *testing.T) {
		empty := stores.NewDatabase(t, stores.Postgres)
		_, errOut, code := runAdmin(t, "devices", "-db", empty.DSN, "-tenant", "acme")
		if code != 1 || !strings.Contains(errOut, "not a tether server database") {
			t.Errorf("devices -db on an empty PostgreSQL database: exit %d, %q; want exit 1, not a tether server database", code, errOut)
		}
	})
}

// With scopes, the keys a user's devices hold are listed, with the rows of
// each scoped table each key brings.
func TestKeys(t *testing.T) {
	reg := testkit.Registry(t)
	srv := testkit.NewServer(t, reg, server.Options{Scopes: &server.Scopes{
		Tables: map[string]server.RowKeys{
			"customers": server.KeyColumn("owner:", "name"),
			"orders":    server.KeyParent("customer_id"),
		},
		Principal: server.PrincipalKeys(server.UserKey("owner:")),
	}})
	ada := testkit.NewDevice(t, reg, srv.URL, testkit.DeviceOptions{})
	bob := testkit.NewDevice(t, reg, srv.URL, testkit.DeviceOptions{Token: "token-bob"})
	save(t, ada, "c1", "ada")
	save(t, ada, "c2", "ada")
	if err := ada.DB.Save(ctx, &testkit.Order{ID: "o1", CustomerID: "c1", Total: 3}); err != nil {
		t.Fatal(err)
	}
	save(t, bob, "c3", "bob")
	for _, d := range []*testkit.Device{ada, bob, ada, bob} {
		d.Sync(t)
	}
	var got struct {
		Scopes       bool
		ScopedTables []string `json:"scoped_tables"`
		Devices      []struct {
			Device string
			Keys   []string
		}
		Counts []struct {
			Table, Key string
			Rows       int64
		}
	}
	adminJSON(t, &got, "keys", "-db", srv.Path, "-tenant", "acme", "-user", "ada")
	if !got.Scopes || strings.Join(got.ScopedTables, ",") != "customers,orders" {
		t.Errorf("keys: scopes %v, scoped tables %v; want on, customers and orders", got.Scopes, got.ScopedTables)
	}
	if len(got.Devices) != 1 || got.Devices[0].Device != ada.DB.DeviceID() || strings.Join(got.Devices[0].Keys, ",") != "owner:ada" {
		t.Errorf("keys: devices %+v, want ada's holding owner:ada", got.Devices)
	}
	if fmt.Sprint(got.Counts) != "[{customers owner:ada 2} {orders owner:ada 1}]" {
		t.Errorf("keys: counts %v, want customers owner:ada 2, orders owner:ada 1", got.Counts)
	}
	out, _, _ := runAdmin(t, "keys", "-db", srv.Path, "-tenant", "acme", "-user", "ada")
	if f := line(t, out, "orders"); f[1] != "owner:ada" || f[2] != "1" {
		t.Errorf("keys line %q, want orders owner:ada 1", strings.Join(f, " "))
	}
	out, _, _ = runAdmin(t, "devices", "-db", srv.Path, "-tenant", "acme")
	if f := line(t, out, bob.DB.DeviceID()); f[len(f)-1] != "owner:bob" {
		t.Errorf("devices line %q, want bob's device holding owner:bob", strings.Join(f, " "))
	}
}
