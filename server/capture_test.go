package server_test

import (
	"context"
	"database/sql"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // the back office's PostgreSQL driver

	"github.com/tethersync/tether/internal/sqlitedriver"
	"github.com/tethersync/tether/internal/testkit"
	"github.com/tethersync/tether/internal/testkit/stores"
	"github.com/tethersync/tether/server"
	"github.com/tethersync/tether/wire"
)

// backOffice is a plain SQL connection to a store's database, as a back
// office has: it knows nothing of tether, and writes with ? placeholders
// and unquoted names, which every database reads alike.
type backOffice struct {
	t    *testing.T
	db   *sql.DB
	kind string
}

func openBackOffice(t *testing.T, db stores.Database) *backOffice {
	t.Helper()
	var conn *sql.DB
	var err error
	switch db.Kind {
	case stores.SQLite:
		conn, err = sqlitedriver.Open(db.DSN, sqlitedriver.Config{BusyTimeout: 10 * time.Second, TxLock: "immediate"})
	case stores.Postgres:
		conn, err = sql.Open("pgx", db.DSN)
	case stores.MySQL:
		conn, err = sql.Open("mysql", db.DSN)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return &backOffice{t: t, db: conn, kind: db.Kind}
}

// rebind spells ? placeholders as the database reads them.
func (b *backOffice) rebind(q string) string {
	if b.kind != stores.Postgres {
		return q
	}
	var out strings.Builder
	n := 0
	for _, c := range q {
		if c == '?' {
			n++
			fmt.Fprintf(&out, "$%d", n)
			continue
		}
		out.WriteRune(c)
	}
	return out.String()
}

// exec runs statements in one transaction.
func (b *backOffice) exec(stmts ...stmt) {
	b.t.Helper()
	if err := b.try(stmts...); err != nil {
		b.t.Fatal(err)
	}
}

// try runs statements in one transaction, again when the database
// aborted it for a deadlock, as a back office does.
func (b *backOffice) try(stmts ...stmt) error {
	var err error
	for range 10 {
		if err = b.tryOnce(stmts...); err == nil || !strings.Contains(err.Error(), "40") {
			return err
		}
	}
	return err
}

func (b *backOffice) tryOnce(stmts ...stmt) error {
	tx, err := b.db.Begin()
	if err != nil {
		return err
	}
	defer tx.Rollback()
	for _, s := range stmts {
		if _, err := tx.Exec(b.rebind(s.q), s.args...); err != nil {
			return fmt.Errorf("%s: %w", s.q, err)
		}
	}
	return tx.Commit()
}

type stmt struct {
	q    string
	args []any
}

func insertParent(id, name string) stmt {
	return stmt{`INSERT INTO parents (_tenant, id, name) VALUES (?, ?, ?)`, []any{"acme", id, name}}
}

func renameParent(id, name string) stmt {
	return stmt{`UPDATE parents SET name = ? WHERE _tenant = ? AND id = ?`, []any{name, "acme", id}}
}

func deleteParent(id string) stmt {
	return stmt{`DELETE FROM parents WHERE _tenant = ? AND id = ?`, []any{"acme", id}}
}

// capturing opens a store on db that captures external writes.
func capturing(t *testing.T, db stores.Database) (server.Store, server.Capturer) {
	t.Helper()
	store := db.Open(t, kindsSchema, stores.Options{})
	c := store.(server.Capturer)
	if err := c.CaptureExternal(context.Background(), true); err != nil {
		t.Fatal(err)
	}
	return store, c
}

// capturingByName is capturing with parents scoped by their name
// ("name:" keys), to principals given names in their claim "names".
func capturingByName(t *testing.T, db stores.Database) (server.Store, server.Capturer) {
	t.Helper()
	store, c := capturing(t, db)
	sc := &server.Scopes{
		Tables:    map[string]server.RowKeys{"parents": server.KeyColumn("name:", "name")},
		Principal: server.PrincipalKeys(server.ClaimKeys("names", "name:")),
	}
	if err := store.UseScopes(sc, nil); err != nil {
		t.Fatal(err)
	}
	return store, c
}

// seesName is a principal of tenant acme who may see the parents named
// name.
func seesName(user, name string) server.Principal {
	return server.Principal{Tenant: "acme", User: user, Claims: map[string]any{"names": []any{name}}}
}

func capture(t *testing.T, c server.Capturer) int {
	t.Helper()
	n, err := c.Capture(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// latest is the latest row of each id of rows, by table and id.
func latest(rows []wire.Row) map[string]wire.Row {
	out := map[string]wire.Row{}
	for _, r := range rows {
		out[r.Table+"/"+r.ID] = r
	}
	return out
}

// Rows inserted, updated and deleted with plain SQL reach devices: each
// transaction as one version of the external device, a DELETE as a
// tombstone with the row's last values, and the audit log marks them.
func TestCaptureExternalWrites(t *testing.T) {
	stores.Each(t, stores.All, func(t *testing.T, db stores.Database) {
		ctx := context.Background()
		store, c := capturing(t, db)
		f := storeFixture{t: t, s: store}
		f.device(ada, "d1")
		f.push(ada, "d1", lww, []wire.Row{parent("p1", "pushed", "0001700000000.000000.d1"), parent("p2", "doomed", "0001700000000.000000.d1")})
		bo := openBackOffice(t, db)
		bo.exec(insertParent("x1", "typed"), insertParent("x2", "typed too"), renameParent("p1", "renamed"))
		bo.exec(deleteParent("p2"))
		if n := capture(t, c); n != 1 {
			t.Fatalf("Capture()=%d commits, want 1", n)
		}
		rows := latest(f.all(ada, 100))
		x1, x2, p1, p2 := rows["parents/x1"], rows["parents/x2"], rows["parents/p1"], rows["parents/p2"]
		if x1.Values["name"] != "typed" || x2.Values["name"] != "typed too" || p1.Values["name"] != "renamed" {
			t.Fatalf("pulled x1=%v x2=%v p1=%v, want the external values", x1.Values, x2.Values, p1.Values)
		}
		if !p2.Deleted || p2.Values["name"] != "doomed" {
			t.Fatalf("pulled p2 deleted=%v values %v, want a tombstone with its last values", p2.Deleted, p2.Values)
		}
		if x1.Version != p1.Version || x1.Version != p2.Version || x1.Version != x2.Version {
			t.Errorf("versions %d %d %d %d: want one commit", x1.Version, x2.Version, p1.Version, p2.Version)
		}
		for _, r := range []wire.Row{x1, p1, p2} {
			if r.Device != server.ExternalDevice || !wire.ValidStamp(r.HLC) || !strings.HasSuffix(r.HLC, server.ExternalDevice) {
				t.Errorf("row %s device %q stamp %q, want the external device's", r.ID, r.Device, r.HLC)
			}
		}
		entries, err := store.Audit(ctx, "acme", 1, 100)
		if err != nil {
			t.Fatal(err)
		}
		if len(entries) != 4 {
			t.Fatalf("audit has %d entries after the push, want 4: %+v", len(entries), entries)
		}
		for _, e := range entries {
			if !e.External || e.Device != server.ExternalDevice || e.User != server.ExternalUser {
				t.Errorf("audit entry %+v, want an external one", e)
			}
		}
		// Captured, nothing is captured twice; the server's own writes are
		// not captured.
		if n := capture(t, c); n != 0 {
			t.Errorf("Capture()=%d commits with nothing written, want 0", n)
		}
		f.push(ada, "d1", lww, []wire.Row{parent("x1", "device", "9000000000000.000000.d1")})
		if n := capture(t, c); n != 0 {
			t.Errorf("Capture()=%d commits after a push, want 0", n)
		}
		// A row a device wrote last is deleted all the same.
		bo.exec(deleteParent("x1"))
		capture(t, c)
		if r := latest(f.all(ada, 100))["parents/x1"]; !r.Deleted || r.Values["name"] != "device" {
			t.Fatalf("x1 deleted=%v values %v, want a tombstone", r.Deleted, r.Values)
		}
	})
}

// A device's edit pushed after an external write, before it was
// captured, meets it as a conflict: under last-writer-wins an edit made
// before the external write loses, one made after it wins.
func TestCaptureMeetsDeviceEdits(t *testing.T) {
	stores.Each(t, stores.All, func(t *testing.T, db stores.Database) {
		store, _ := capturing(t, db)
		f := storeFixture{t: t, s: store}
		f.device(ada, "d1")
		c := f.push(ada, "d1", lww, []wire.Row{parent("early", "v0", "0001700000000.000000.d1"), parent("late", "v0", "0001700000000.000000.d1")})
		bo := openBackOffice(t, db)
		before := time.Now().Add(-time.Minute)
		bo.exec(renameParent("early", "external"), renameParent("late", "external"))
		after := time.Now().Add(time.Minute)
		edit := func(id string, at time.Time) wire.Row {
			r := parent(id, "device", wire.FormatStamp(at.UnixMilli(), 0, "d1"))
			r.Base = c.Version
			return r
		}
		// Not captured yet: the commit captures it first.
		got := f.push(ada, "d1", lww, []wire.Row{edit("early", before), edit("late", after)})
		if len(got.Conflicts) != 2 {
			t.Fatalf("the push met %d conflicts, want 2: %+v", len(got.Conflicts), got.Conflicts)
		}
		names := names(f.all(ada, 100))
		if names["early"] != "external" || names["late"] != "device" {
			t.Errorf("early=%q late=%q, want external (the device's edit was older) and device (it was newer)", names["early"], names["late"])
		}
	})
}

// A back office's transaction of many rows, written while devices push and
// pull, reaches a puller following its cursor as one version, and every
// puller ends with what the database holds (G1, G6).
func TestCaptureWhileDevicesSync(t *testing.T) {
	stores.Each(t, stores.All, func(t *testing.T, db stores.Database) {
		ctx := context.Background()
		store, c := capturing(t, db)
		f := storeFixture{t: t, s: store}
		f.device(ada, "d1")
		bo := openBackOffice(t, db)
		errs := make(chan error, 3)
		done := make(chan struct{})
		go func() { // a device pushes sessions of rows, some of them the back office's
			defer func() { errs <- nil }()
			for i := range 30 {
				stamp := wire.FormatStamp(time.Now().UnixMilli(), 0, "d1")
				p, q := parent(fmt.Sprintf("dev-%d", i), "device", stamp), parent(fmt.Sprintf("dev-%d", i/2), "again", stamp)
				sess, err := store.OpenSession(ctx, ada, "d1", "", server.Limits{})
				if err == nil {
					err = stage(ctx, store, ada, "d1", sess, 0, []wire.Row{p, q}, server.Limits{})
				}
				if err == nil {
					_, err = store.Commit(ctx, ada, "d1", sess, lww, server.Limits{}, nil)
				}
				if err != nil {
					errs <- err
					return
				}
			}
		}()
		go func() { // the back office: transactions of inserts, updates and deletes
			defer func() { errs <- nil }()
			for i := range 30 {
				s := []stmt{insertParent(fmt.Sprintf("bo-%d", i), "bo"), insertParent(fmt.Sprintf("bo-%d-b", i), "bo")}
				if i > 0 {
					s = append(s, renameParent(fmt.Sprintf("dev-%d", i-1), "bo"), deleteParent(fmt.Sprintf("bo-%d-b", i-1)))
				}
				if err := bo.try(s...); err != nil {
					errs <- err
					return
				}
			}
		}()
		go func() { // the server's capture
			defer close(done)
			for range 200 {
				if _, err := c.Capture(ctx); err != nil {
					errs <- err
					return
				}
				time.Sleep(time.Millisecond)
			}
		}()
		// A puller follows with its cursor meanwhile.
		held := map[string]wire.Row{}
		var cur server.Cursor
		pull := func() bool {
			rows, next, more, err := store.Changes(ctx, ada, cur, 7, 1<<30, server.Echo{})
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range rows {
				held[r.ID] = r
			}
			cur = next
			return more
		}
		for running := true; running; {
			select {
			case <-done:
				running = false
			default:
				pull()
			}
		}
		for range 2 {
			if err := <-errs; err != nil {
				t.Fatal(err)
			}
		}
		capture(t, c)
		for range 10_000 {
			if !pull() {
				break
			}
		}
		// What the database holds, live rows by id, as a back office reads it.
		want := map[string]string{}
		rows, err := bo.db.Query(bo.rebind(`SELECT id, name FROM parents WHERE _tenant = ? AND NOT _deleted`), "acme")
		if err != nil {
			t.Fatal(err)
		}
		for rows.Next() {
			var id, name string
			if err := rows.Scan(&id, &name); err != nil {
				t.Fatal(err)
			}
			want[id] = name
		}
		rows.Close()
		got := map[string]string{}
		for id, r := range held {
			if !r.Deleted {
				got[id], _ = r.Values["name"].(string)
			}
		}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("the puller holds %v\nthe database %v", got, want)
		}
		if len(want) != 30+30+1 {
			t.Errorf("the database holds %d live rows, want %d: %v", len(want), 30+30+1, want)
		}
	})
}

// A multi-row transaction is one version however the puller pages it, and
// no part of it is pulled before it is captured: not even an updated row,
// whose version the back office left as it was.
func TestCaptureTransactionOneVersion(t *testing.T) {
	stores.Each(t, stores.All, func(t *testing.T, db stores.Database) {
		ctx := context.Background()
		store, c := capturing(t, db)
		f := storeFixture{t: t, s: store}
		f.device(ada, "d1")
		f.push(ada, "d1", lww, []wire.Row{parent("p1", "pushed", "0001700000000.000000.d1")})
		_, cur, _, err := store.Changes(ctx, ada, server.Cursor{}, 100, 1<<30, server.Echo{})
		if err != nil {
			t.Fatal(err)
		}
		f.push(ada, "d1", lww, []wire.Row{parent("p2", "pushed", "0001700000000.000000.d1")})
		bo := openBackOffice(t, db)
		bo.exec(renameParent("p2", "renamed"), insertParent("x", "inserted"))
		for _, from := range []server.Cursor{cur, {}} { // a device that pulled p1, and a new one
			rows, _, _, err := store.Changes(ctx, ada, from, 100, 1<<30, server.Echo{})
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range rows {
				if r.ID != "p1" && (r.ID != "p2" || r.Values["name"] != "pushed") {
					t.Fatalf("pulled %+v before the capture, want nothing of the back office's", r)
				}
			}
		}
		capture(t, c)
		rows, _, _, err := store.Changes(ctx, ada, cur, 100, 1<<30, server.Echo{})
		if err != nil {
			t.Fatal(err)
		}
		if len(rows) != 2 || rows[0].Version != rows[1].Version || names(rows)["p2"] != "renamed" {
			t.Fatalf("pulled %+v after the capture, want p2 renamed and x, at one version", rows)
		}
		var s []stmt
		for i := range 50 {
			s = append(s, insertParent(fmt.Sprintf("t-%02d", i), "tx"))
		}
		bo.exec(s...)
		capture(t, c)
		versions := map[int64]int{}
		for _, r := range f.all(ada, 7) {
			if strings.HasPrefix(r.ID, "t-") {
				versions[r.Version]++
			}
		}
		if len(versions) != 1 {
			t.Errorf("rows of one transaction at versions %v, want one", versions)
		}
	})
}

// Off, server.New drops the triggers: a plain write is not recorded. On
// again, it is, and the server captures it on its own.
func TestCaptureOption(t *testing.T) {
	stores.Each(t, stores.All, func(t *testing.T, db stores.Database) {
		store := db.Open(t, kindsSchema, stores.Options{})
		f := storeFixture{t: t, s: store}
		bo := openBackOffice(t, db)
		on := func(on bool) *server.Server {
			s, err := server.New(store, server.Options{CaptureExternalWrites: on, CaptureInterval: time.Millisecond, SweepInterval: -1})
			if err != nil {
				t.Fatal(err)
			}
			return s
		}
		on(true).Close()
		on(true).Close() // installed again, in place of the first
		on(false).Close()
		bo.exec(insertParent("off", "unseen"))
		if rows := f.all(ada, 100); len(rows) != 0 {
			t.Fatalf("pulled %+v written with capture off, want nothing", rows)
		}
		s := on(true)
		defer s.Close()
		bo.exec(insertParent("on", "seen"))
		for range 10_000 {
			if names(f.all(ada, 100))["on"] == "seen" {
				return
			}
			time.Sleep(time.Millisecond)
		}
		t.Fatal("the server did not capture the write")
	})
}

// A captured row of a scoped table gets its keys through the commit path:
// it reaches the devices whose principals may see it, and only those.
func TestCaptureScoped(t *testing.T) {
	stores.Each(t, stores.All, func(t *testing.T, db stores.Database) {
		ctx := context.Background()
		store, c := capturingByName(t, db)
		f := storeFixture{t: t, s: store}
		seesA, seesB := seesName("ada", "a"), seesName("bob", "b")
		f.device(seesA, "da")
		f.device(seesB, "db")
		bo := openBackOffice(t, db)
		bo.exec(insertParent("x-a", "a"), insertParent("x-b", "b"))
		bo.exec(insertParent("y-b", "a"), renameParent("y-b", "b"))
		capture(t, c)
		held := func(p server.Principal, dev string) string {
			var ids []string
			var cur server.Cursor
			for range 100 {
				rows, next, more, err := store.Changes(ctx, p, cur, 100, 1<<30, server.Echo{Device: dev})
				if err != nil {
					t.Fatal(err)
				}
				for _, r := range rows {
					if !r.Deleted && !r.Evict {
						ids = append(ids, r.ID)
					}
				}
				if cur = next; !more {
					break
				}
			}
			return strings.Join(ids, ",")
		}
		if got := held(seesA, "da"); got != "x-a" {
			t.Errorf("the device that sees a holds %q, want x-a", got)
		}
		if got := held(seesB, "db"); got != "x-b,y-b" {
			t.Errorf("the device that sees b holds %q, want x-b,y-b", got)
		}
	})
}

// Devices syncing over HTTP with a server that captures: what a back
// office inserts, renames and deletes with plain SQL between and during
// their syncs reaches every device, and every device ends with the
// server's live rows.
func TestCaptureReachesDevices(t *testing.T) {
	reg := testkit.Registry(t)
	stores.Each(t, stores.All, func(t *testing.T, db stores.Database) {
		ctx := context.Background()
		store := db.Open(t, reg.Schema(), stores.Options{})
		url := testkit.Serve(t, store, server.Options{CaptureExternalWrites: true, CaptureInterval: time.Hour}).URL
		devs := []*testkit.Device{testkit.NewDevice(t, reg, url, testkit.DeviceOptions{}), testkit.NewDevice(t, reg, url, testkit.DeviceOptions{Token: "token-bob"})}
		bo := openBackOffice(t, db)
		for i := range 5 {
			if err := devs[0].DB.Save(ctx, &testkit.Customer{ID: fmt.Sprintf("dev-%d", i), Name: "device", Tags: []string{}}); err != nil {
				t.Fatal(err)
			}
			devs[0].Sync(t)
			bo.exec(stmt{`INSERT INTO customers (_tenant, id, name, tags) VALUES (?, ?, ?, '[]')`, []any{"acme", fmt.Sprintf("bo-%d", i), "bo"}},
				stmt{`UPDATE customers SET name = ? WHERE _tenant = ? AND id = ?`, []any{fmt.Sprintf("renamed-%d", i), "acme", fmt.Sprintf("dev-%d", i)}})
			if i > 0 {
				bo.exec(stmt{`DELETE FROM customers WHERE _tenant = ? AND id = ?`, []any{"acme", fmt.Sprintf("bo-%d", i-1)}})
			}
			devs[1].Sync(t) // nothing to push: the pull alone does not capture
		}
		if _, err := store.(server.Capturer).Capture(ctx); err != nil { // as the server does every CaptureInterval
			t.Fatal(err)
		}
		for range 2 {
			for _, d := range devs {
				d.Sync(t)
			}
		}
		want := []string{"bo-4|bo|<nil>|[]|0"}
		for i := range 5 {
			want = append(want, fmt.Sprintf("dev-%d|renamed-%d|<nil>|[]|0", i, i))
		}
		slices.Sort(want)
		for i, d := range devs {
			var got []string
			for _, r := range testkit.Dump(t, d.DB.SQL(), "customers", testkit.CustomerCols, "") {
				if strings.HasSuffix(r, "|0") {
					got = append(got, r)
				}
			}
			if !slices.Equal(got, want) {
				t.Errorf("device %d holds\n%v\nwant\n%v", i, got, want)
			}
		}
	})
}

// A row deleted and written again before the capture reaches devices as
// it is last, not as the tombstone of its first DELETE; deleted, written
// and deleted again, it is a tombstone with the values it had last. The
// last values a DELETE kept leave the staging table either way.
func TestCaptureDeleteWriteAgain(t *testing.T) {
	stores.Each(t, stores.All, func(t *testing.T, db stores.Database) {
		store, c := capturing(t, db)
		f := storeFixture{t: t, s: store}
		f.device(ada, "d1")
		f.push(ada, "d1", lww, []wire.Row{parent("p1", "first", "0001700000000.000000.d1"), parent("p2", "first", "0001700000000.000000.d1")})
		bo := openBackOffice(t, db)
		bo.exec(deleteParent("p1"), insertParent("p1", "back"))
		bo.exec(deleteParent("p2"), insertParent("p2", "second"), deleteParent("p2"))
		if n := capture(t, c); n != 1 {
			t.Fatalf("Capture()=%d commits, want 1", n)
		}
		rows := latest(f.all(ada, 100))
		if p1 := rows["parents/p1"]; p1.Deleted || p1.Values["name"] != "back" {
			t.Errorf("p1 deleted=%v values %v, want the row written again", p1.Deleted, p1.Values)
		}
		if p2 := rows["parents/p2"]; !p2.Deleted || p2.Values["name"] != "second" {
			t.Errorf("p2 deleted=%v values %v, want a tombstone with the values it had last", p2.Deleted, p2.Values)
		}
		var left int
		if err := bo.db.QueryRow(bo.rebind(`SELECT count(*) FROM _tether_stage_parents WHERE _tenant = ?`), "acme").Scan(&left); err != nil {
			t.Fatal(err)
		}
		if left != 0 {
			t.Errorf("%d rows left in the staging table after the capture, want 0", left)
		}
	})
}
