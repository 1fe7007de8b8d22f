package server_test

import (
	"database/sql"
	"encoding/json"
	"fmt"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/tethersync/tether/internal/testkit"
	"github.com/tethersync/tether/internal/testkit/stores"
	"github.com/tethersync/tether/server"
	"github.com/tethersync/tether/wire"
)

// sqlOf returns the database of a store, for reading what a request left.
func sqlOf(t *testing.T, s server.Store) *sql.DB {
	t.Helper()
	db, ok := s.(interface{ DB() *sql.DB })
	if !ok {
		t.Fatalf("store %T has no DB", s)
	}
	return db.DB()
}

// rowsOf reads every row of query as text, to compare before and after.
func rowsOf(t *testing.T, db *sql.DB, query string) []string {
	t.Helper()
	rows, err := db.Query(query)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	cols, _ := rows.Columns()
	var out []string
	for rows.Next() {
		vals := make([]sql.NullString, len(cols))
		ptrs := make([]any, len(cols))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		if err := rows.Scan(ptrs...); err != nil {
			t.Fatal(err)
		}
		var s []string
		for _, v := range vals {
			s = append(s, v.String)
		}
		out = append(out, strings.Join(s, "|"))
	}
	return out
}

// pushRows pushes rows (JSON objects of dev's stamps) in one session of
// dev, registering it first, commits it and returns its version.
func pushRows(t *testing.T, url, token, dev string, rows ...string) int64 {
	t.Helper()
	session := openSession(t, url, token, dev)
	st, _, body := call(t, "PUT", url+"/v1/sessions/"+session+"/batches/0?commit=1", token, `{"rows":[`+strings.Join(rows, ",")+`]}`,
		wire.HeaderDevice, dev)
	var ack wire.BatchAck
	if err := json.Unmarshal(body, &ack); st != 200 || err != nil || ack.Commit == nil {
		t.Fatalf("push: %d %s", st, body)
	}
	return ack.Commit.Version
}

// customer is a customers row stamped by dev at ms.
func customer(id, dev string, ms int, deleted bool, base int) string {
	r := wire.Row{Table: "customers", ID: id, HLC: wire.FormatStamp(int64(1700000000000+ms), 0, dev), Deleted: deleted, Base: int64(base),
		Values: map[string]any{"name": "n-" + id, "email": nil, "tags": "[]"}}
	b, _ := json.Marshal(r)
	return string(b)
}

// pull pulls one page as dev from cursor and returns the next cursor.
func pull(t *testing.T, url, token, dev, cursor string) string {
	t.Helper()
	st, _, body := call(t, "GET", url+"/v1/changes?cursor="+cursor, token, "", wire.HeaderDevice, dev)
	if st != 200 {
		t.Fatalf("pull as %s: %d %s", dev, st, body)
	}
	var c wire.Changes
	if err := json.Unmarshal(body, &c); err != nil {
		t.Fatal(err)
	}
	return c.Cursor
}

// Finding 1 and 3 of issue 19: a member holding only its own token
// cannot act as another member's device, whose id it can see: not pull as
// it (recording a position for it), not register it again (with an empty
// schema that would refuse its every push), not push or commit as it. The
// device's owner, and another user on the same (shared) device, holding
// its key, keep working.
func TestMembersCannotActAsOthersDevices(t *testing.T) {
	reg := testkit.Registry(t)
	stores.Each(t, stores.All, func(t *testing.T, db stores.Database) {
		store := db.Open(t, reg.Schema(), stores.Options{})
		url := testkit.Serve(t, store, server.Options{}).URL
		pushRows(t, url, "token-ada", device, customer("c1", device, 1, false, 0))
		sdb := sqlOf(t, store)
		const record = `SELECT tenant, device, user_name, app_schema, key_hash, pulled FROM _tether_devices ORDER BY device`
		before := rowsOf(t, sdb, record)
		forged := server.Cursor{Version: math.MaxInt64}.String()
		wrongKey := deviceKey("bobs-own-device")
		for _, key := range []string{"", wrongKey} {
			h := []string{wire.HeaderDevice, device, wire.HeaderDeviceKey, key}
			for _, c := range []struct{ name, method, path, body string }{
				{"pull as the device", "GET", "/v1/changes?cursor=" + forged, ""},
				{"register the device again with no tables", "POST", "/v1/devices", `{"device":"` + device + `","schema":{"tables":[]}}`},
				{"open a session as the device", "POST", "/v1/sessions", `{}`},
				{"push as the device", "PUT", "/v1/sessions/bobs-session/batches/0?open=1&commit=1", `{"rows":[` + customer("c2", device, 2, false, 0) + `]}`},
			} {
				st, code, body := call(t, c.method, url+c.path, "token-bob", c.body, h...)
				if st != 403 || code != "device_key" || !strings.Contains(string(body), wire.HeaderDeviceKey) && key == "" {
					t.Errorf("bob: %s with key %q: %d %s, want 403 device_key", c.name, key, st, body)
				}
			}
		}
		if after := rowsOf(t, sdb, record); strings.Join(after, "\n") != strings.Join(before, "\n") {
			t.Errorf("refused requests changed the device records:\nbefore %q\nafter  %q", before, after)
		}
		// The device keeps pushing and pulling, and so does another user
		// of the same device: the key is the device's.
		pushRows(t, url, "token-ada", device, customer("c3", device, 3, false, 0))
		pushRows(t, url, "token-bob", device, customer("c4", device, 4, false, 0))
		pull(t, url, "token-bob", device, "")
	})
}

// Finding 1 and 7 of issue 19: a cursor past the tenant's latest version
// is refused before anything is recorded; the purge horizon never passes
// the latest version (and one that did comes back down); a device that
// registered and never pulled, or whose pulls never move, holds no
// tombstone back.
func TestPositionsBoundedByLatestVersion(t *testing.T) {
	reg := testkit.Registry(t)
	stores.Each(t, stores.All, func(t *testing.T, db stores.Database) {
		clock := testkit.NewClock()
		store := db.Open(t, reg.Schema(), stores.Options{Now: clock.Now})
		lim := server.Limits{DeviceActivity: time.Hour}
		url := testkit.Serve(t, store, server.Options{Now: clock.Now, SweepInterval: -1, Limits: lim}).URL
		sdb := sqlOf(t, store)
		pushRows(t, url, "token-ada", device, customer("c1", device, 1, false, 0), customer("c2", device, 2, false, 0))
		pushRows(t, url, "token-ada", device, customer("c1", device, 3, true, 1))
		// Bob's laptop pulls once from the start, and then again and
		// again from there, never moving.
		if st, _, body := call(t, "POST", url+"/v1/devices", "token-bob", `{"device":"bobs-laptop"}`, wire.HeaderDevice, "bobs-laptop"); st != 200 {
			t.Fatalf("register: %d %s", st, body)
		}
		pull(t, url, "token-bob", "bobs-laptop", "")
		cursor := pull(t, url, "token-ada", device, "")
		pull(t, url, "token-ada", device, cursor) // records the position: version 2

		forged := server.Cursor{Version: math.MaxInt64}.String()
		const positions = `SELECT device, pulled FROM _tether_devices ORDER BY device`
		before := rowsOf(t, sdb, positions)
		st, code, body := call(t, "GET", url+"/v1/changes?cursor="+forged, "token-ada", "", wire.HeaderDevice, device)
		if st != 410 || code != "history_purged" || !strings.Contains(string(body), "past the tenant's latest version 2") {
			t.Errorf("pull from a forged cursor: %d %s, want 410 history_purged naming the latest version", st, body)
		}
		if after := rowsOf(t, sdb, positions); strings.Join(after, ",") != strings.Join(before, ",") {
			t.Errorf("a forged cursor was recorded: %q, before %q", after, before)
		}
		// The damage of a forged cursor recorded before positions were
		// bounded: a horizon far past the latest version.
		if _, err := sdb.Exec(`INSERT INTO _tether_horizons (tenant, version) VALUES ('acme', 9223372036854775807)`); err != nil {
			t.Fatal(err)
		}
		if _, err := store.Sweep(t.Context(), lim, 100); err != nil {
			t.Fatal(err)
		}
		var horizon, latest int64
		if err := sdb.QueryRow(`SELECT h.version, t.version FROM _tether_horizons AS h JOIN _tether_tenants AS t ON t.tenant = h.tenant
			WHERE h.tenant = 'acme'`).Scan(&horizon, &latest); err != nil {
			t.Fatal(err)
		}
		if horizon != 0 || latest != 2 {
			t.Errorf("horizon %d after the sweep (latest version %d), want 0: the position of bob's laptop", horizon, latest)
		}
		// Two hours on, bob's laptop still pulls from the start, a tablet
		// of bob's registers and never pulls; ada deletes c2 and pulls it.
		clock.Advance(2 * time.Hour)
		pull(t, url, "token-bob", "bobs-laptop", "")
		if st, _, body := call(t, "POST", url+"/v1/devices", "token-bob", `{"device":"bobs-tablet"}`, wire.HeaderDevice, "bobs-tablet"); st != 200 {
			t.Fatalf("register: %d %s", st, body)
		}
		pushRows(t, url, "token-ada", device, customer("c2", device, 4, true, 1))
		cursor = pull(t, url, "token-ada", device, cursor)
		pull(t, url, "token-ada", device, cursor)
		if _, err := store.Sweep(t.Context(), lim, 100); err != nil {
			t.Fatal(err)
		}
		var tombstones int
		if err := sdb.QueryRow(`SELECT count(*) FROM customers WHERE "_deleted"`).Scan(&tombstones); err != nil {
			t.Fatal(err)
		}
		if tombstones != 1 { // c1's went; c2's is at the latest version
			t.Errorf("%d tombstones after ada's device pulled past c1's deletion, want 1: neither bob's tablet (never pulled) nor his laptop (never moves) holds it back", tombstones)
		}
	})
}

// Finding 2 of issue 19: a device schema is checked before it is
// stored, and what is stored is the server's tables and columns it names,
// once per schema, whatever was sent; sessions name it by id.
func TestDeviceSchemasValidated(t *testing.T) {
	reg := testkit.Registry(t)
	stores.Each(t, stores.All, func(t *testing.T, db stores.Database) {
		store := db.Open(t, reg.Schema(), stores.Options{})
		url := testkit.Serve(t, store, server.Options{}).URL
		sdb := sqlOf(t, store)
		id := `{"name":"id","kind":"text"}`
		name := `{"name":"name","kind":"text"}`
		tags := `{"name":"tags","kind":"json","nullable":true}`
		customers := `{"name":"customers","priority":1,"columns":[` + id + `,` + name + `,` + tags + `]}`
		register := func(dev, tables string) (int, string, []byte) {
			return call(t, "POST", url+"/v1/devices", "token-ada", `{"device":"`+dev+`","schema":{"tables":[`+tables+`]}}`, wire.HeaderDevice, dev)
		}
		for _, c := range []struct {
			name, tables  string
			status        int
			code, mention string
		}{
			{"a table twice", customers + `,` + customers, 400, "bad_request", "twice"},
			{"a table without columns", `{"name":"customers","priority":1,"columns":[]}`, 400, "bad_request", "no columns"},
			{"id not first", `{"name":"customers","priority":1,"columns":[` + name + `,` + id + `]}`, 400, "bad_request", "first column"},
			{"a column twice", `{"name":"customers","priority":1,"columns":[` + id + `,` + name + `,` + name + `]}`, 400, "bad_request", "twice"},
			{"a table the server lacks", `{"name":"invoices","priority":1,"columns":[` + id + `]}`, 409, "schema_mismatch", "not on the server"},
			{"a column of another kind", `{"name":"customers","priority":1,"columns":[` + id + `,{"name":"name","kind":"integer"}]}`, 409, "schema_mismatch", "on the device"},
		} {
			if st, code, body := register("refused-device", c.tables); st != c.status || code != c.code || !strings.Contains(string(body), c.mention) {
				t.Errorf("%s: %d %s, want %d %s mentioning %q", c.name, st, body, c.status, c.code, c.mention)
			}
		}
		if n := rowsOf(t, sdb, `SELECT device FROM _tether_devices`); len(n) != 0 {
			t.Errorf("refused registrations stored devices %q", n)
		}
		// Two devices of the same app version: one stored schema, without
		// what the server does not keep (a long reference name here).
		junk := strings.Repeat("x", 50_000)
		withJunk := strings.Replace(customers, `"nullable":true}`, `"nullable":true,"ref":"`+junk+`"}`, 1)
		for _, dev := range []string{"old-app-1", "old-app-2"} {
			tables := customers
			if dev == "old-app-2" {
				tables = withJunk
			}
			if st, _, body := register(dev, tables); st != 200 {
				t.Fatalf("register %s: %d %s", dev, st, body)
			}
		}
		bodies := rowsOf(t, sdb, `SELECT body FROM _tether_schemas`)
		if len(bodies) != 1 || strings.Contains(bodies[0], junk) || strings.Contains(bodies[0], `"email"`) {
			t.Errorf("stored schemas %q, want one: customers with id, name and tags", bodies)
		}
		// A session names the schema by its id; a push of the device's
		// columns goes in, and one of a column it lacks does not.
		openOnly := func() string {
			st, _, body := call(t, "POST", url+"/v1/sessions", "token-ada", `{}`, wire.HeaderDevice, "old-app-1")
			if st != 200 {
				t.Fatalf("open session: %d %s", st, body)
			}
			var s wire.Session
			json.Unmarshal(body, &s)
			return s.Session
		}
		stamp := wire.FormatStamp(1700000000000, 0, "old-app-1")
		if st, _, body := call(t, "PUT", url+"/v1/sessions/"+openOnly()+"/batches/0?commit=1", "token-ada",
			`{"rows":[{"table":"customers","id":"c1","hlc":"`+stamp+`","values":{"name":"x","tags":"[]"}}]}`, wire.HeaderDevice, "old-app-1"); st != 200 {
			t.Fatalf("push of the device's columns: %d %s", st, body)
		}
		if ids := rowsOf(t, sdb, `SELECT app_schema FROM _tether_sessions`); len(ids) != 1 || len(ids[0]) != 64 {
			t.Errorf("sessions record schemas %q, want one id of 64 characters", ids)
		}
		st, _, body := call(t, "PUT", url+"/v1/sessions/"+openOnly()+"/batches/0", "token-ada",
			`{"rows":[{"table":"customers","id":"c2","hlc":"`+stamp+`","values":{"name":"x","tags":"[]","email":null}}]}`,
			wire.HeaderDevice, "old-app-1")
		if st != 400 || !strings.Contains(string(body), "not in the schema the device registered") {
			t.Errorf("push of a column the device lacks: %d %s", st, body)
		}
	})
}

// Finding 7 of issue 19: a user's devices seen within DeviceActivity are
// bounded, a device unseen for DeviceRetention is forgotten (with its
// schema) and kept until then, and
// a pull names at most wire.MaxEchoSessions own sessions, counted as
// entries.
func TestDevicesBounded(t *testing.T) {
	reg := testkit.Registry(t)
	stores.Each(t, stores.All, func(t *testing.T, db stores.Database) {
		clock := testkit.NewClock()
		store := db.Open(t, reg.Schema(), stores.Options{Now: clock.Now})
		lim := server.Limits{MaxUserDevices: 2, DeviceActivity: time.Hour, DeviceRetention: 2 * time.Hour}
		url := testkit.Serve(t, store, server.Options{Now: clock.Now, SweepInterval: -1, Limits: lim}).URL
		sdb := sqlOf(t, store)
		register := func(token, dev, body string) (int, string, []byte) {
			if body == "" {
				body = `{"device":"` + dev + `"}`
			}
			return call(t, "POST", url+"/v1/devices", token, body, wire.HeaderDevice, dev)
		}
		for _, dev := range []string{"ada-1", "ada-2"} {
			if st, _, body := register("token-ada", dev, `{"device":"`+dev+`","schema":{"tables":[{"name":"customers","priority":1,"columns":[{"name":"id","kind":"text"}]}]}}`); st != 200 {
				t.Fatalf("register %s: %d %s", dev, st, body)
			}
		}
		if st, code, body := register("token-ada", "ada-3", ""); st != 409 || code != "device_limit" || !strings.Contains(string(body), "MaxUserDevices") {
			t.Errorf("a third device: %d %s, want 409 device_limit", st, body)
		}
		if st, _, body := register("token-ada", "ada-1", ""); st != 200 {
			t.Errorf("registering a device again: %d %s", st, body)
		}
		if st, _, body := register("token-bob", "bob-1", ""); st != 200 {
			t.Errorf("another user's device: %d %s", st, body)
		}
		own := strings.TrimSuffix(strings.Repeat("s1,", wire.MaxEchoSessions+1), ",")
		if st, _, body := call(t, "GET", url+"/v1/changes?own="+own, "token-ada", "", wire.HeaderDevice, "ada-1"); st != 400 || !strings.Contains(string(body), "at most 64") {
			t.Errorf("own= with %d entries of one id: %d %s, want 400", wire.MaxEchoSessions+1, st, body)
		}
		// Devices unseen for longer than DeviceActivity do not count;
		// their registrations, keys included, stay for DeviceRetention.
		clock.Advance(90 * time.Minute)
		if st, _, body := register("token-ada", "ada-3", ""); st != 200 {
			t.Errorf("a device once the others were unseen for DeviceActivity: %d %s", st, body)
		}
		if st, code, body := call(t, "POST", url+"/v1/devices", "token-bob", `{"device":"ada-1"}`, wire.HeaderDevice, "ada-1",
			wire.HeaderDeviceKey, deviceKey("bobs-own-key")); st != 403 || code != "device_key" {
			t.Errorf("bob registering ada's absent device: %d %s, want 403 device_key", st, body)
		}
		clock.Advance(3 * time.Hour)
		if _, err := store.Sweep(t.Context(), lim, 100); err != nil {
			t.Fatal(err)
		}
		if n := rowsOf(t, sdb, `SELECT device FROM _tether_devices UNION ALL SELECT id FROM _tether_schemas`); len(n) != 0 {
			t.Errorf("devices and schemas %q left after the retention, want none", n)
		}
		if st, _, body := register("token-ada", "ada-4", ""); st != 200 {
			t.Errorf("a device after the others were forgotten: %d %s", st, body)
		}
	})
}

// Finding 7 of issue 19: each tenant counts its own versions, so that no
// member learns from them how many commits other tenants make.
func TestVersionsPerTenant(t *testing.T) {
	reg := testkit.Registry(t)
	stores.Each(t, stores.All, func(t *testing.T, db stores.Database) {
		store := db.Open(t, reg.Schema(), stores.Options{})
		url := testkit.Serve(t, store, server.Options{}).URL
		for i := range 3 {
			pushRows(t, url, "token-ada", device, customer(fmt.Sprintf("c%d", i), device, i, false, 0))
		}
		if v := pushRows(t, url, "token-globe", "globex-device", customer("g1", "globex-device", 1, false, 0)); v != 1 {
			t.Errorf("globex's first commit got version %d, want 1", v)
		}
		if v := pushRows(t, url, "token-ada", device, customer("c9", device, 9, false, 0)); v != 4 {
			t.Errorf("acme's fourth commit got version %d, want 4", v)
		}
		for tenant, want := range map[string]int64{"acme": 4, "globex": 1} {
			if v, err := store.LatestVersion(t.Context(), tenant); err != nil || v != want {
				t.Errorf("LatestVersion(%s) = %d, %v; want %d", tenant, v, err, want)
			}
		}
	})
}

// A device that rebuilds from a snapshot holds the tombstones after the
// snapshot's version until it has pulled from there, and a snapshot
// starts at the tenant's latest version even when the latest commit wrote
// no row: its resume pull is never refused, whatever the sweep does
// meanwhile.
func TestSnapshotHoldsTheHorizon(t *testing.T) {
	reg := testkit.Registry(t)
	stores.Each(t, stores.All, func(t *testing.T, db stores.Database) {
		store := db.Open(t, reg.Schema(), stores.Options{})
		url := testkit.Serve(t, store, server.Options{SweepInterval: -1}).URL
		pushRows(t, url, "token-ada", device, customer("c1", device, 1, false, 0), customer("c2", device, 2, false, 0))
		empty := openSession(t, url, "token-ada", device) // a commit that writes no row
		if st, _, body := call(t, "POST", url+"/v1/sessions/"+empty+"/commit", "token-ada", `{}`); st != 200 {
			t.Fatalf("empty commit: %d %s", st, body)
		}
		const fresh = "new-laptop"
		if st, _, body := call(t, "POST", url+"/v1/devices", "token-ada", `{"device":"`+fresh+`"}`, wire.HeaderDevice, fresh); st != 200 {
			t.Fatalf("register: %d %s", st, body)
		}
		st, _, body := call(t, "GET", url+"/v1/snapshot", "token-ada", "", wire.HeaderDevice, fresh)
		var snap wire.Snapshot
		if err := json.Unmarshal(body, &snap); st != 200 || err != nil || len(snap.Rows) != 2 {
			t.Fatalf("snapshot: %d %s", st, body)
		}
		// Meanwhile another device deletes c1 and pulls it, and the
		// sweep runs.
		pushRows(t, url, "token-ada", device, customer("c1", device, 3, true, 1))
		cursor := pull(t, url, "token-ada", device, "")
		pull(t, url, "token-ada", device, cursor)
		if _, err := store.Sweep(t.Context(), server.Limits{}, 100); err != nil {
			t.Fatal(err)
		}
		st, _, body = call(t, "GET", url+"/v1/changes?cursor="+snap.Resume, "token-ada", "", wire.HeaderDevice, fresh)
		var c wire.Changes
		if err := json.Unmarshal(body, &c); st != 200 || err != nil || len(c.Changes) != 1 || !c.Changes[0].Deleted {
			t.Errorf("pull from the snapshot's resume cursor: %d %s, want c1's deletion", st, body)
		}
	})
}
