package server_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tethersync/tether/entity"
	"github.com/tethersync/tether/internal/testkit"
	"github.com/tethersync/tether/internal/testkit/stores"
	"github.com/tethersync/tether/server"
	"github.com/tethersync/tether/wire"
)

// writeTokens are the principals of the write tests: a back office and
// two members of tenant acme.
var writeTokens = server.StaticTokens{
	"token-office": {Tenant: "acme", User: "office"},
	"token-ada":    {Tenant: "acme", User: "ada"},
	"token-bob":    {Tenant: "acme", User: "bob"},
}

// office is the back office's principal.
var office = server.Principal{Tenant: "acme", User: "office"}

// trustOffice trusts the back office only (Options.Trusted).
func trustOffice(p server.Principal) bool { return p.User == "office" }

// writeTestServer serves store on loopback with the write tests'
// principals, and returns the server and its URL.
func writeTestServer(t *testing.T, store server.Store, opts server.Options) (*server.Server, string) {
	t.Helper()
	opts.Auth = writeTokens
	opts.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	srv, err := server.New(store, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	hs := httptest.NewServer(srv)
	t.Cleanup(hs.Close)
	return srv, hs.URL
}

// pullAllAs registers dev for token's user and pulls every page from the
// start; it returns the rows by "table/id", evicted ones left out.
func pullAllAs(t *testing.T, url_, token, dev string) map[string]wire.Row {
	t.Helper()
	if st, _, body := call(t, "POST", url_+"/v1/devices", token, `{"device":"`+dev+`"}`, wire.HeaderDevice, dev); st != 200 {
		t.Fatalf("register %s: %d %s", dev, st, body)
	}
	rows := map[string]wire.Row{}
	cursor := ""
	for range 100 {
		st, _, body := call(t, "GET", url_+"/v1/changes?cursor="+url.QueryEscape(cursor), token, "", wire.HeaderDevice, dev)
		if st != 200 {
			t.Fatalf("pull as %s: %d %s", dev, st, body)
		}
		var c wire.Changes
		if err := json.Unmarshal(body, &c); err != nil {
			t.Fatal(err)
		}
		for _, r := range c.Changes {
			if r.Evict {
				delete(rows, r.Table+"/"+r.ID)
			} else {
				rows[r.Table+"/"+r.ID] = r
			}
		}
		if !c.More {
			return rows
		}
		cursor = c.Cursor
	}
	t.Fatalf("pull as %s: more than 100 pages", dev)
	return nil
}

// postWrite sends a write request as token's principal and returns the
// status, the error code and the body.
func postWrite(t *testing.T, url_, token, body string) (int, string, []byte) {
	t.Helper()
	return call(t, "POST", url_+"/v1/write", token, body)
}

// storeState reads every row a write could leave in store (rows, staging,
// sessions, devices, audit, versions), to prove a refused one left none.
func storeState(t *testing.T, store server.Store) []string {
	t.Helper()
	return dbDigest(sqlOf(t, store), `SELECT coalesce(sum(version), 0) FROM _tether_tenants`)(t)
}

// A write reaches a device's pull as any commit does: with its version,
// the server's device and the writer as its user, parents first whatever
// the order given; it is in the audit log under the writer, and in the
// tenant's live events. A later write of the same row with Base 0 is a
// conflict that last-writer-wins settles for the write. The server's
// device counts against no user's MaxUserDevices, and the caller's rows
// are left as they were.
func TestWriteReachesDevices(t *testing.T) {
	reg := testkit.Registry(t)
	stores.Each(t, stores.All, func(t *testing.T, db stores.Database) {
		ctx := t.Context()
		store := db.Open(t, reg.Schema(), stores.Options{})
		srv, url_ := writeTestServer(t, store, server.Options{Trusted: trustOffice, Limits: server.Limits{MaxUserDevices: 1}})
		events, err := store.Subscribe(ctx, "acme")
		if err != nil {
			t.Fatal(err)
		}
		placed := time.Date(2026, 3, 1, 9, 30, 0, 0, time.UTC)
		rows := []wire.Row{ // the child first: the write applies parents first
			{Table: "orders", ID: "o1", Values: map[string]any{"customer_id": "c1", "total": 12.5, "placed_at": placed}},
			{Table: "customers", ID: "c1", Values: map[string]any{"name": "Ada", "email": nil, "tags": "[]"}},
		}
		v, err := srv.Write(ctx, office, rows)
		if err != nil || v <= 0 {
			t.Fatalf("Write()=%d, %v, want a version", v, err)
		}
		if rows[0].HLC != "" || rows[0].Values["placed_at"] != placed || rows[0].Values["total"] != 12.5 {
			t.Errorf("Write changed the caller's row: %+v", rows[0])
		}
		// (MySQL's polled events do not name the device.)
		if ev := awaitEvent(t, events, v); ev.Version != v || ev.Device != server.WriteDevice && db.Kind != stores.MySQL {
			t.Errorf("event %+v, want version %d of device %s", ev, v, server.WriteDevice)
		}

		got := pullAllAs(t, url_, "token-ada", device)
		for _, key := range []string{"customers/c1", "orders/o1"} {
			r, ok := got[key]
			_, _, dev, _ := wire.ParseStamp(r.HLC)
			if !ok || r.Version != v || r.Device != server.WriteDevice || r.ModifiedBy != "office" || dev != server.WriteDevice {
				t.Errorf("pulled %s: %+v (found %v), want version %d from %s by office, stamped by it", key, r, ok, v, server.WriteDevice)
			}
		}
		if o := got["orders/o1"]; o.Values["total"] != 12.5 || o.Values["placed_at"] != entity.FormatTime(placed) {
			t.Errorf("pulled order values %v", o.Values)
		}

		// Base 0 on a row that exists: a conflict, won by the write's
		// fresh stamp under last-writer-wins.
		v2, err := srv.Write(ctx, office, []wire.Row{{Table: "customers", ID: "c1", Values: map[string]any{"name": "Ada L.", "email": nil, "tags": "[]"}}})
		if err != nil || v2 <= v {
			t.Fatalf("second Write()=%d, %v, want a version after %d", v2, err, v)
		}
		if r := pullAllAs(t, url_, "token-ada", device)["customers/c1"]; r.Version != v2 || r.Values["name"] != "Ada L." {
			t.Errorf("after the second write the device pulls %+v, want the write's row at version %d", r, v2)
		}

		// A delete carries no values.
		v3, err := srv.Write(ctx, office, []wire.Row{{Table: "orders", ID: "o1", Deleted: true}})
		if err != nil {
			t.Fatalf("Write of a delete: %v", err)
		}
		if r := pullAllAs(t, url_, "token-ada", device)["orders/o1"]; r.Version != v3 || !r.Deleted {
			t.Errorf("after the delete the device pulls %+v, want it deleted at version %d", r, v3)
		}

		audit, err := store.Audit(ctx, "acme", 0, 100)
		if err != nil {
			t.Fatal(err)
		}
		var seen []string
		for _, e := range audit {
			if e.User != "office" || e.Device != server.WriteDevice {
				t.Errorf("audit entry %+v, want user office on device %s", e, server.WriteDevice)
			}
			seen = append(seen, fmt.Sprintf("%d %s/%s", e.Version, e.Table, e.ID))
		}
		if want := []string{fmt.Sprintf("%d customers/c1", v), fmt.Sprintf("%d orders/o1", v), fmt.Sprintf("%d customers/c1", v2), fmt.Sprintf("%d orders/o1", v3)}; !sameSet(seen, want) {
			t.Errorf("audit %q, want %q", seen, want)
		}

		// The back office still registers its one device (MaxUserDevices
		// is 1): the server's device is not its.
		if st, _, body := call(t, "POST", url_+"/v1/devices", "token-office", `{"device":"office-laptop"}`, wire.HeaderDevice, "office-laptop"); st != 200 {
			t.Errorf("the back office registers a device after writing: %d %s", st, body)
		}
		// No request can act as the server's device.
		if st, code, body := call(t, "GET", url_+"/v1/changes", "token-office", "", wire.HeaderDevice, server.WriteDevice); st != 403 || code != "device_key" {
			t.Errorf("a pull as %s: %d %s, want 403 device_key", server.WriteDevice, st, body)
		}
	})
}

// awaitEvent returns the first event of version v or later; it fails t
// when none comes within 30s (a guard: an event comes at once).
func awaitEvent(t *testing.T, events <-chan wire.Event, v int64) wire.Event {
	t.Helper()
	timeout := time.After(30 * time.Second)
	for {
		select {
		case ev := <-events:
			if ev.Version >= v {
				return ev
			}
		case <-timeout:
			t.Fatalf("no live event of version %d", v)
		}
	}
}

// sameSet reports whether a and b hold the same strings.
func sameSet(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(a, b)
}

// A write over HTTP retried with the same request id (its answer lost)
// gets the first answer and applies nothing twice, for a write of one
// table (one batch) and of two (two batches); the same id with other rows
// is a conflict, and applies nothing.
func TestWriteHTTPIdempotent(t *testing.T) {
	reg := testkit.Registry(t)
	stores.Each(t, stores.All, func(t *testing.T, db stores.Database) {
		store := db.Open(t, reg.Schema(), stores.Options{})
		_, url_ := writeTestServer(t, store, server.Options{Trusted: trustOffice})
		for _, c := range []struct{ name, request, rows string }{
			{"one table", "req-one", `{"table":"customers","id":"c1","values":{"name":"Ada","email":null,"tags":"[]"}}`},
			{"two tables", "req-two", `{"table":"orders","id":"o2","values":{"customer_id":"c2","total":3,"placed_at":"2026-03-01T09:30:00Z"}},` +
				`{"table":"customers","id":"c2","values":{"name":"Ada","email":null,"tags":"[]"}}`},
		} {
			t.Run(c.name, func(t *testing.T) {
				body := `{"request":"` + c.request + `","rows":[` + c.rows + `]}`
				st, _, first := postWrite(t, url_, "token-office", body)
				var res wire.WriteResult
				if err := json.Unmarshal(first, &res); st != 200 || err != nil || res.Version <= 0 || res.Applied != strings.Count(c.rows, `"table"`) {
					t.Fatalf("write: %d %s", st, first)
				}
				before := storeState(t, store)
				st, _, again := postWrite(t, url_, "token-office", body)
				if st != 200 || string(again) != string(first) {
					t.Errorf("the same write again: %d %s, want 200 %s", st, again, first)
				}
				st, code, other := postWrite(t, url_, "token-office", `{"request":"`+c.request+`","rows":[`+strings.ReplaceAll(c.rows, `"Ada"`, `"Eve"`)+`]}`)
				if st != 409 || code != "conflict" {
					t.Errorf("other rows under the same request id: %d %s, want 409 conflict", st, other)
				}
				if after := storeState(t, store); !slices.Equal(after, before) {
					t.Errorf("a retried write changed the store:\nbefore %q\nafter  %q", before, after)
				}
			})
		}
	})
}

// Only principals Options.Trusted accepts write over HTTP: others, and
// everyone when it is nil, get 403, and nothing is applied.
func TestWriteUntrusted(t *testing.T) {
	reg := testkit.Registry(t)
	stores.Each(t, stores.All, func(t *testing.T, db stores.Database) {
		store := db.Open(t, reg.Schema(), stores.Options{})
		_, trusting := writeTestServer(t, store, server.Options{Trusted: trustOffice})
		_, none := writeTestServer(t, store, server.Options{})
		before := storeState(t, store)
		body := `{"request":"req-1","rows":[{"table":"customers","id":"c1","values":{"name":"Ada","email":null,"tags":"[]"}}]}`
		for _, c := range []struct{ name, url, token string }{
			{"a member", trusting, "token-ada"},
			{"the back office, Trusted nil", none, "token-office"},
		} {
			if st, code, msg := postWrite(t, c.url, c.token, body); st != 403 || code != "forbidden" {
				t.Errorf("%s writes: %d %s, want 403 forbidden", c.name, st, msg)
			}
		}
		if after := storeState(t, store); !slices.Equal(after, before) {
			t.Errorf("refused writes changed the store:\nbefore %q\nafter  %q", before, after)
		}
	})
}

// Rows are checked as pushed rows are: a bad row is 400 naming it, a bad
// body 400 or 413, and nothing of the write is applied, also the good rows
// before the bad one. Write in Go returns an error wrapping
// wire.ErrBadRequest that names the row.
func TestWriteBadRows(t *testing.T) {
	reg := testkit.Registry(t)
	stores.Each(t, stores.All, func(t *testing.T, db stores.Database) {
		store := db.Open(t, reg.Schema(), stores.Options{})
		srv, url_ := writeTestServer(t, store, server.Options{Trusted: trustOffice, Limits: server.Limits{MaxSessionRows: 3}})
		const good = `{"table":"customers","id":"c1","values":{"name":"Ada","email":null,"tags":"[]"}}`
		before := storeState(t, store)
		for _, c := range []struct{ name, body, code, want string }{
			{"unknown column", `{"request":"r1","rows":[` + good + `,{"table":"customers","id":"c2","values":{"nope":1}}]}`, "bad_request", `row 1 (customers "c2"): unknown column "nope"`},
			{"wrong kind", `{"request":"r1","rows":[` + good + `,{"table":"orders","id":"o1","values":{"customer_id":"c1","total":"abc","placed_at":"2026-03-01T09:30:00Z"}}]}`, "bad_request", "row 1"},
			{"unknown table", `{"request":"r1","rows":[` + good + `,{"table":"nope","id":"x","values":{}}]}`, "bad_request", `row 1: unknown table "nope"`},
			{"a row twice", `{"request":"r1","rows":[` + good + `,` + good + `]}`, "bad_request", "the same row as row 0"},
			{"malformed stamp", `{"request":"r1","rows":[{"table":"customers","id":"c1","hlc":"yesterday","values":{"name":"Ada","email":null,"tags":"[]"}}]}`, "bad_request", "row 0"},
			{"null in a non-nullable column", `{"request":"r1","rows":[{"table":"customers","id":"c1","values":{"name":null,"email":null,"tags":"[]"}}]}`, "bad_request", "row 0"},
			{"no rows", `{"request":"r1","rows":[]}`, "bad_request", "no rows"},
			{"no request id", `{"rows":[` + good + `]}`, "bad_request", "request id"},
			{"malformed request id", `{"request":"a b","rows":[` + good + `]}`, "bad_request", "request id"},
			{"unknown field", `{"request":"r1","rows":[` + good + `],"extra":1}`, "bad_request", `unknown field "extra"`},
			{"not JSON", `{"request":`, "bad_request", "malformed"},
			{"more rows than a session holds", `{"request":"r1","rows":[` + strings.Repeat(good+",", 3) + good + `]}`, "too_large", "MaxSessionRows"},
		} {
			st, code, body := postWrite(t, url_, "token-office", c.body)
			var eb wire.ErrorBody
			json.Unmarshal(body, &eb)
			if code != c.code || !strings.Contains(eb.Error.Message, c.want) {
				t.Errorf("%s: %d %s, want %s naming %q", c.name, st, body, c.code, c.want)
			}
		}
		for _, c := range []struct {
			name string
			rows []wire.Row
			want string
		}{
			{"a value JSON cannot hold", []wire.Row{{Table: "customers", ID: "c1", Values: map[string]any{"name": make(chan int)}}}, "row 0"},
			{"wrong kind", []wire.Row{
				{Table: "customers", ID: "c1", Values: map[string]any{"name": "Ada", "email": nil, "tags": "[]"}},
				{Table: "customers", ID: "c2", Values: map[string]any{"name": 7, "email": nil, "tags": "[]"}},
			}, `row 1 (customers "c2"): column name`},
			{"an evict row", []wire.Row{{Table: "customers", ID: "c1", Evict: true}}, "evict"},
		} {
			_, err := srv.Write(t.Context(), office, c.rows)
			if !errors.Is(err, wire.ErrBadRequest) || !strings.Contains(fmt.Sprint(err), c.want) {
				t.Errorf("Write with %s: %v, want a bad request naming %q", c.name, err, c.want)
			}
		}
		if after := storeState(t, store); !slices.Equal(after, before) {
			t.Errorf("refused writes changed the store:\nbefore %q\nafter  %q", before, after)
		}
	})
}

// writeMembership and writeProject are the scoped tables of
// TestWriteScoped: memberships carry their user's key, projects their
// team's, and a user holds the teams of its memberships.
type writeMembership struct {
	entity.Meta `sync:"memberships,1"`
	ID          string `db:"id"`
	UserID      string `db:"user_id"`
	TeamID      string `db:"team_id"`
}

type writeProject struct {
	entity.Meta `sync:"projects,2"`
	ID          string `db:"id"`
	TeamID      string `db:"team_id"`
	Name        string `db:"name"`
}

// writeScopes are the scopes of TestWriteScoped.
var writeScopes = &server.Scopes{
	Tables: map[string]server.RowKeys{
		"memberships": server.KeyColumn("user:", "user_id"),
		"projects":    server.KeyColumn("team:", "team_id"),
	},
	Principal: server.PrincipalKeys(
		server.UserKey("user:"),
		server.TableKeys("memberships", "user_id", "team:", "team_id"),
	),
}

// A write is trusted: the back office, which holds no team, writes a
// membership and projects of teams, under an Authorize that refuses every
// pushed row, and all apply. The membership reaches its user's device
// only, and brings that user the projects of its team; another user's
// device gets none of it. A member pushing a project of a team it is not
// in is refused, where the write of the same row applied.
func TestWriteScoped(t *testing.T) {
	reg := entity.NewRegistry()
	if err := reg.Register(writeMembership{}, writeProject{}); err != nil {
		t.Fatal(err)
	}
	refuse := func(ctx context.Context, p server.Principal, table string, old, new *wire.Row) error {
		return fmt.Errorf("read-only: %w", server.ErrForbidden)
	}
	stores.Each(t, stores.All, func(t *testing.T, db stores.Database) {
		store := db.Open(t, reg.Schema(), stores.Options{})
		srv, url_ := writeTestServer(t, store, server.Options{Trusted: trustOffice, Scopes: writeScopes, Authorize: refuse})
		v, err := srv.Write(t.Context(), office, []wire.Row{
			{Table: "memberships", ID: "m1", Values: map[string]any{"user_id": "bob", "team_id": "red"}},
			{Table: "projects", ID: "p1", Values: map[string]any{"team_id": "red", "name": "Red's"}},
			{Table: "projects", ID: "p2", Values: map[string]any{"team_id": "blue", "name": "Blue's"}},
		})
		if err != nil {
			t.Fatalf("Write: %v", err)
		}
		if got := rowsOf(t, sqlOf(t, store), `SELECT id, name FROM projects ORDER BY id`); !slices.Equal(got, []string{"p1|Red's", "p2|Blue's"}) {
			t.Errorf("the server holds projects %q after the write, want both", got)
		}
		bob := pullAllAs(t, url_, "token-bob", "dev-bob")
		if keys := keysOf(bob); !slices.Equal(keys, []string{"memberships/m1", "projects/p1"}) {
			t.Errorf("bob's device holds %q, want his membership and his team's project", keys)
		}
		if r := bob["memberships/m1"]; r.Version != v {
			t.Errorf("bob's membership at version %d, want the write's %d", r.Version, v)
		}
		if keys := keysOf(pullAllAs(t, url_, "token-ada", "dev-ada")); len(keys) != 0 {
			t.Errorf("ada's device holds %q, want nothing: she is in no team", keys)
		}

		// Bob pushes to blue's project, which he may not write: refused.
		pushed := `{"table":"projects","id":"p2","base":` + fmt.Sprint(v) + `,"hlc":"` + wire.FormatStamp(1700000000000, 0, "dev-bob") + `","values":{"team_id":"blue","name":"Bob's"}}`
		session := "bob-push-1"
		st, _, body := call(t, "PUT", url_+"/v1/sessions/"+session+"/batches/0?open=1&commit=1", "token-bob", `{"rows":[`+pushed+`]}`, wire.HeaderDevice, "dev-bob")
		var ack wire.BatchAck
		if err := json.Unmarshal(body, &ack); st != 200 || err != nil || ack.Commit == nil {
			t.Fatalf("bob's push: %d %s", st, body)
		}
		if len(ack.Commit.Conflicts) != 1 || ack.Commit.Conflicts[0].Strategy != wire.StrategyForbidden {
			t.Errorf("bob's push of blue's project: %s, want a forbidden conflict", body)
		}
		if got := rowsOf(t, sqlOf(t, store), `SELECT name FROM projects WHERE id = 'p2'`); !slices.Equal(got, []string{"Blue's"}) {
			t.Errorf("blue's project is %q after bob's refused push, want the write's", got)
		}
	})
}

// keysOf returns the sorted keys of rows.
func keysOf(rows map[string]wire.Row) []string {
	keys := make([]string, 0, len(rows))
	for k := range rows {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// A write's body is bounded as a pushed batch's: a value past
// MaxValueBytes and a body past MaxBodyBytes are 413, a structure where a
// value belongs 400, each refused as soon as it is read.
func TestWriteBodyBounded(t *testing.T) {
	reg := testkit.Registry(t)
	store := stores.Open(t, stores.SQLite, reg.Schema(), stores.Options{})
	_, url_ := writeTestServer(t, store, server.Options{Trusted: trustOffice, MaxBodyBytes: 1 << 20, MaxValueBytes: 64 << 10})
	row := func(name string) string {
		return `{"table":"customers","id":"c1","values":{"email":null,"tags":"[]","name":` + name + `}}`
	}
	many := strings.Repeat(row(`"`+strings.Repeat("y", 60<<10)+`"`)+",", 20)
	for _, c := range []struct{ name, body, code string }{
		{"a value past MaxValueBytes", `{"request":"r1","rows":[` + row(`"`+strings.Repeat("x", 65<<10)+`"`) + `]}`, "too_large"},
		{"a body past MaxBodyBytes", `{"request":"r1","rows":[` + many + row(`"z"`) + `]}`, "too_large"},
		{"an array for a value", `{"request":"r1","rows":[` + row(`[0`+strings.Repeat(",0", 1<<16)+`]`) + `]}`, "bad_request"},
	} {
		if st, code, body := postWrite(t, url_, "token-office", c.body); code != c.code {
			t.Errorf("%s: %d %.200s, want %s", c.name, st, body, c.code)
		}
	}
	if got := rowsOf(t, sqlOf(t, store), `SELECT id FROM customers`); len(got) != 0 {
		t.Errorf("refused writes left rows %q", got)
	}
}

// The device ids of the server's own writes and of captured external
// writes are the server's: a member's device cannot register them, which
// would block the back office's writes (WriteDevice taken before its
// first write) or pass a member's commits off as external writes
// (ExternalDevice: marked external in the audit log, committed without
// capturing the external writes before them).
func TestWriteReservedDeviceIDs(t *testing.T) {
	reg := testkit.Registry(t)
	store := stores.Open(t, stores.SQLite, reg.Schema(), stores.Options{})
	srv, url_ := writeTestServer(t, store, server.Options{Trusted: trustOffice})
	for _, id := range []string{server.WriteDevice, server.ExternalDevice} {
		st, code, body := call(t, "POST", url_+"/v1/devices", "token-ada", `{"device":"`+id+`"}`,
			wire.HeaderDevice, id, wire.HeaderDeviceKey, deviceKey(id))
		if st != 400 || code != "bad_request" || !strings.Contains(string(body), "reserved") {
			t.Errorf("a member registers device %s: %d %s %s, want 400 bad_request naming the id reserved", id, st, code, body)
		}
	}
	rows := []wire.Row{{Table: "customers", ID: "c1", Values: map[string]any{"name": "Ada", "email": nil, "tags": "[]"}}}
	if _, err := srv.Write(t.Context(), office, rows); err != nil {
		t.Fatalf("the back office's first write, after a member's registrations: %v", err)
	}
}
