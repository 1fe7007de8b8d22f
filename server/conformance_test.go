package server_test

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/tethersync/tether/entity"
	"github.com/tethersync/tether/internal/testkit"
	"github.com/tethersync/tether/internal/testkit/stores"
	"github.com/tethersync/tether/server"
	"github.com/tethersync/tether/wire"
)

func TestMain(m *testing.M) {
	os.Exit(stores.Main(m))
}

// The conformance suite: the same tests run against every store, each on
// a new database.
func TestConformance(t *testing.T) {
	stores.Each(t, stores.All, func(t *testing.T, db stores.Database) {
		conformance(t, func(t *testing.T, schema entity.Schema, now func() time.Time) server.Store {
			return stores.Open(t, db.Kind, schema, stores.Options{Now: now})
		})
	})
}

// The three stores digest the same rows alike: ids in byte order whatever
// the collation (case, trailing spaces, accents, emoji), floats and
// integers at full precision, times and blobs exactly.
func TestDigestsAgreeAcrossStores(t *testing.T) {
	ids := []string{"b", "B", "a ", "a", "é", "e\u0301", "z", "😀", "Z-1", "a\u00a0"}
	scores := []float64{0.1 + 0.2, 1e-300, -2.5e300, 1.0 / 3, 123456789.125, 0, -0.75, 5e-324, 1e21, 7}
	var rows []wire.Row
	for i, id := range ids {
		r := parent(id, "name "+id, "1700000000000.000000.d")
		r.Values["score"] = scores[i]
		r.Values["count"] = int64(1)<<62 + int64(i)
		r.Values["at"] = fmt.Sprintf("2026-11-23T08:00:00.%09dZ", 123456789+i)
		r.Values["note"] = map[bool]any{true: nil, false: "  trailing  "}[i%2 == 0]
		rows = append(rows, r)
	}
	digests := map[string]wire.TableDigest{}
	for _, name := range stores.All {
		s := stores.Open(t, name, kindsSchema, stores.Options{})
		f := storeFixture{t: t, s: s}
		f.device(ada, "d1")
		f.push(ada, "d1", lww, rows)
		d, err := s.Digest(t.Context(), ada, "parents", nil)
		if err != nil {
			t.Fatal(err)
		}
		if d.Rows != len(ids) {
			t.Fatalf("%s digests %d rows, want %d", name, d.Rows, len(ids))
		}
		want := map[string]wire.Row{}
		for _, r := range rows {
			want[r.ID] = r
		}
		for _, r := range f.all(ada, 3) { // values round-trip exactly
			if !maps.EqualFunc(r.Values, want[r.ID].Values, func(a, b any) bool { return reflect.DeepEqual(a, b) }) {
				t.Errorf("%s: row %q came back as %v, pushed %v", name, r.ID, r.Values, want[r.ID].Values)
			}
		}
		digests[name] = d
	}
	if digests["sqlite"] != digests["postgres"] || digests["sqlite"] != digests["mysql"] {
		t.Errorf("digests differ between stores: %+v", digests)
	}
}

// kindsSchema has a column of every kind, and a child table.
var kindsSchema = entity.Schema{Tables: []entity.Table{
	{Name: "parents", Priority: 1, Columns: []entity.Column{
		{Name: "id", Kind: entity.KindText},
		{Name: "name", Kind: entity.KindText},
		{Name: "note", Kind: entity.KindText, Nullable: true},
		{Name: "count", Kind: entity.KindInteger},
		{Name: "score", Kind: entity.KindReal},
		{Name: "active", Kind: entity.KindBool},
		{Name: "at", Kind: entity.KindTime},
		{Name: "data", Kind: entity.KindBlob, Nullable: true},
		{Name: "tags", Kind: entity.KindJSON},
	}},
	{Name: "children", Priority: 2, Columns: []entity.Column{
		{Name: "id", Kind: entity.KindText},
		{Name: "parent_id", Kind: entity.KindText},
	}},
}}

var (
	ada = server.Principal{Tenant: "acme", User: "ada"}
	bob = server.Principal{Tenant: "acme", User: "bob"}
	gus = server.Principal{Tenant: "globex", User: "gus"}
)

func parent(id, name string, hlc string) wire.Row {
	return wire.Row{Table: "parents", ID: id, HLC: hlc, Values: map[string]any{
		"name": name, "note": nil, "count": int64(3), "score": 2.5, "active": true,
		"at": "2026-11-23T08:00:00.123456789Z", "data": []byte{0, 1, 2, 255}, "tags": `["a","b"]`,
	}}
}

func child(id, parentID string) wire.Row {
	return wire.Row{Table: "children", ID: id, HLC: "0000000000001.000000.d", Values: map[string]any{"parent_id": parentID}}
}

type storeFixture struct {
	t     *testing.T
	s     server.Store
	clock *testkit.Clock // the store's clock, when it is a fake one
}

func (f storeFixture) device(p server.Principal, dev string) {
	f.t.Helper()
	if err := f.s.RegisterDevice(context.Background(), p, server.Registration{Device: dev}, server.Limits{}); err != nil {
		f.t.Fatal(err)
	}
}

// push stages the batches and commits them in one session.
func (f storeFixture) push(p server.Principal, dev string, resolve server.Resolver, batches ...[]wire.Row) wire.Commit {
	f.t.Helper()
	ctx := context.Background()
	sess, err := f.s.OpenSession(ctx, p, dev, "", server.Limits{})
	if err != nil {
		f.t.Fatal(err)
	}
	for i, b := range batches {
		if err := stage(ctx, f.s, p, dev, sess, i, b, server.Limits{}); err != nil {
			f.t.Fatal(err)
		}
	}
	c, err := f.s.Commit(ctx, p, dev, sess, resolve, server.Limits{}, nil)
	if err != nil {
		f.t.Fatal(err)
	}
	return c
}

// all pulls every change of p's tenant, limit rows a page.
func (f storeFixture) all(p server.Principal, limit int) []wire.Row {
	f.t.Helper()
	return f.allBytes(p, limit, 1<<30)
}

// allBytes pulls every change of p's tenant, limit rows and maxBytes a page.
func (f storeFixture) allBytes(p server.Principal, limit, maxBytes int) []wire.Row {
	f.t.Helper()
	var out []wire.Row
	var cur server.Cursor
	for range 10_000 {
		rows, next, more, err := f.s.Changes(context.Background(), p, cur, limit, maxBytes, server.Echo{})
		if err != nil {
			f.t.Fatal(err)
		}
		if len(rows) == 0 && more {
			f.t.Fatal("an empty page with more to come")
		}
		size := 0
		for _, r := range rows {
			size += r.Size()
		}
		if len(rows) > 1 && size > maxBytes {
			f.t.Fatalf("a page of %d rows and %d bytes, over %d", len(rows), size, maxBytes)
		}
		if err != nil {
			f.t.Fatal(err)
		}
		out = append(out, rows...)
		cur = next
		if !more {
			return out
		}
	}
	f.t.Fatal("pull did not end")
	return nil
}

// resolve makes a Resolver of a fixed answer.
func resolve(winner string, s server.Strategy) server.Resolver {
	return func(context.Context, server.Conflict) (server.Resolution, server.Strategy, error) {
		return server.Resolution{Winner: winner}, s, nil
	}
}

func lww(_ context.Context, c server.Conflict) (server.Resolution, server.Strategy, error) {
	if c.Pushed.HLC > c.Server.HLC {
		return server.Resolution{Winner: wire.WinnerClient}, server.LastWriterWins, nil
	}
	return server.Resolution{Winner: wire.WinnerServer}, server.LastWriterWins, nil
}

func conformance(t *testing.T, open func(t *testing.T, schema entity.Schema, now func() time.Time) server.Store) {
	fixture := func(t *testing.T) storeFixture {
		clock := testkit.NewClock()
		return storeFixture{t: t, s: open(t, kindsSchema, clock.Now), clock: clock}
	}

	t.Run("values round-trip", func(t *testing.T) {
		f := fixture(t)
		f.device(ada, "d1")
		in := parent("p1", "Ada", "0000000000001.000000.d1")
		c := f.push(ada, "d1", lww, []wire.Row{in})
		if c.Applied != 1 || c.Version <= 0 {
			t.Fatalf("Commit=%+v", c)
		}
		got := f.all(ada, 10)
		if len(got) != 1 {
			t.Fatalf("pulled %d rows, want 1", len(got))
		}
		r := got[0]
		if !reflect.DeepEqual(r.Values, in.Values) || r.ID != "p1" || r.HLC != in.HLC || r.Version != c.Version ||
			r.ModifiedBy != "ada" || r.Device != "d1" || r.Deleted {
			t.Errorf("pulled %+v\nwant values %+v at version %d by ada from d1", r, in.Values, c.Version)
		}
	})

	t.Run("devices and sessions are tenant-bound", func(t *testing.T) {
		f := fixture(t)
		ctx := context.Background()
		f.device(ada, "d1")
		f.device(bob, "d1") // same tenant: a device shared by its users
		// Devices are keyed by tenant: another tenant's device id is a
		// device of its own there, and nothing tells that the id is in
		// use elsewhere.
		if _, err := f.s.OpenSession(ctx, gus, "d1", "", server.Limits{}); !errors.Is(err, wire.ErrDeviceUnknown) {
			t.Errorf("session on another tenant's device: %v, want ErrDeviceUnknown", err)
		}
		f.device(gus, "d1")
		if _, err := f.s.OpenSession(ctx, ada, "unregistered", "", server.Limits{}); !errors.Is(err, wire.ErrDeviceUnknown) {
			t.Errorf("session of an unregistered device: %v, want ErrDeviceUnknown", err)
		}
		sess, err := f.s.OpenSession(ctx, ada, "d1", "", server.Limits{})
		if err != nil {
			t.Fatal(err)
		}
		f.device(ada, "d2")
		f.device(gus, "g1")
		rows := []wire.Row{parent("p1", "x", "0000000000001.000000.d1")}
		for name, call := range map[string]error{
			"unknown session":                          stage(ctx, f.s, ada, "d1", "no-such-session", 0, rows, server.Limits{}),
			"another device's session":                 stage(ctx, f.s, ada, "d2", sess, 0, rows, server.Limits{}),
			"another tenant's session":                 stage(ctx, f.s, gus, "g1", sess, 0, rows, server.Limits{}),
			"another tenant's session, same device id": stage(ctx, f.s, gus, "d1", sess, 0, rows, server.Limits{}),
			"commit by another device":                 commitErr(f.s.Commit(ctx, ada, "d2", sess, lww, server.Limits{}, nil)),
			"commit by another tenant":                 commitErr(f.s.Commit(ctx, gus, "g1", sess, lww, server.Limits{}, nil)),
			"commit of unknown session":                commitErr(f.s.Commit(ctx, ada, "d1", "nope", lww, server.Limits{}, nil)),
		} {
			if !errors.Is(call, wire.ErrNotFound) {
				t.Errorf("%s: %v, want ErrNotFound", name, call)
			}
		}
		// The same session id in another tenant is another session.
		if id, err := f.s.OpenSession(ctx, gus, "d1", sess, server.Limits{}); err != nil || id != sess {
			t.Errorf("another tenant opening the same session id: %q, %v; want its own session", id, err)
		}
	})

	t.Run("the same session and row ids in two tenants stay apart", func(t *testing.T) {
		f := fixture(t)
		ctx := context.Background()
		f.device(ada, "d1")
		f.device(gus, "d1")
		for _, p := range []server.Principal{ada, gus} {
			if id, err := f.s.OpenSession(ctx, p, "d1", "same-session", server.Limits{}); err != nil || id != "same-session" {
				t.Fatalf("%s opens the session: %q, %v", p.Tenant, id, err)
			}
		}
		for _, p := range []server.Principal{ada, gus} {
			if err := stage(ctx, f.s, p, "d1", "same-session", 0, []wire.Row{parent("p1", p.Tenant+"'s", "0000000000001.000000.d1")}, server.Limits{}); err != nil {
				t.Fatal(err)
			}
		}
		for _, p := range []server.Principal{ada, gus} {
			c, err := f.s.Commit(ctx, p, "d1", "same-session", lww, server.Limits{}, nil)
			if err != nil || c.Applied != 1 {
				t.Errorf("%s's commit: %+v, %v; want its own row applied", p.Tenant, c, err)
			}
			if got := names(f.all(p, 10)); got["p1"] != p.Tenant+"'s" {
				t.Errorf("%s holds %v, want its own p1", p.Tenant, got)
			}
		}
	})

	t.Run("a purge never takes a deletion a device may not have stored", func(t *testing.T) {
		f := fixture(t)
		ctx := context.Background()
		f.device(ada, "d1")
		gone := parent("b", "gone", "0000000000001.000000.d1")
		gone.Deleted = true
		f.push(ada, "d1", lww, []wire.Row{parent("a", "kept", "0000000000001.000000.d1"), gone})
		echo := server.Echo{Device: "d1"}
		rows, c1, more, err := f.s.Changes(ctx, ada, server.Cursor{}, 1, 1<<30, echo)
		if err != nil || len(rows) != 1 || !more {
			t.Fatalf("page 1: %v, %v, %v", rows, more, err)
		}
		// Page 2 reaches the device's end: the server records it as
		// pulled; but its answer is lost, and the device keeps c1.
		if rows, _, more, err := f.s.Changes(ctx, ada, c1, 1, 1<<30, echo); err != nil || len(rows) != 1 || more {
			t.Fatalf("page 2: %v, %v, %v", rows, more, err)
		}
		lim := server.Limits{DeviceActivity: time.Hour}
		if _, err := f.s.Sweep(ctx, lim, 100); err != nil {
			t.Fatal(err)
		}
		rows, _, _, err = f.s.Changes(ctx, ada, c1, 10, 1<<30, echo)
		if !errors.Is(err, wire.ErrHistoryPurged) && (err != nil || len(rows) != 1 || rows[0].ID != "b" || !rows[0].Deleted) {
			t.Errorf("pulling page 2 again after the purge: %v, %v; want the tombstone of b, or ErrHistoryPurged", rows, err)
		}
		// Once the device pulls on past it, the tombstone goes; then an
		// empty cursor (a device that pushed before its first pull) must
		// rebuild too.
		f.push(ada, "d1", lww, []wire.Row{parent("c", "later", "0000000000002.000000.d1")})
		_, c2, _, err := f.s.Changes(ctx, ada, c1, 10, 1<<30, echo)
		if err != nil {
			t.Fatal(err)
		}
		if _, _, _, err := f.s.Changes(ctx, ada, c2, 10, 1<<30, echo); err != nil { // proves the device stored c2
			t.Fatal(err)
		}
		if n, err := f.s.Sweep(ctx, lim, 100); err != nil || n != 1 {
			t.Fatalf("sweep: %d, %v; want the tombstone purged", n, err)
		}
		if _, _, _, err := f.s.Changes(ctx, ada, server.Cursor{}, 10, 1<<30, echo); !errors.Is(err, wire.ErrHistoryPurged) {
			t.Errorf("an empty cursor after a purge: %v, want ErrHistoryPurged", err)
		}
		if _, _, _, err := f.s.Changes(ctx, ada, c1, 10, 1<<30, echo); !errors.Is(err, wire.ErrHistoryPurged) {
			t.Errorf("a cursor before the purge: %v, want ErrHistoryPurged", err)
		}
	})

	t.Run("a session is its user's", func(t *testing.T) {
		f := fixture(t)
		ctx := context.Background()
		f.device(ada, "shared")
		f.device(bob, "shared")
		lim := server.Limits{MaxOpenSessions: 2}
		sess, err := f.s.OpenSession(ctx, ada, "shared", "", lim)
		if err != nil {
			t.Fatal(err)
		}
		rows := []wire.Row{parent("p1", "bob's text", "0000000000001.000000.shared")}
		if err := stage(ctx, f.s, bob, "shared", sess, 0, rows, lim); !errors.Is(err, wire.ErrForbidden) {
			t.Errorf("batch into another user's session: %v, want ErrForbidden", err)
		}
		if _, err := f.s.Commit(ctx, bob, "shared", sess, lww, lim, nil); !errors.Is(err, wire.ErrForbidden) {
			t.Errorf("commit of another user's session: %v, want ErrForbidden", err)
		}
		if _, err := f.s.OpenSession(ctx, bob, "shared", sess, lim); !errors.Is(err, wire.ErrConflict) {
			t.Errorf("opening another user's session id: %v, want ErrConflict", err)
		}
		// Bob filling his own quota on the device leaves Ada's alone.
		for range 2 {
			if _, err := f.s.OpenSession(ctx, bob, "shared", "", lim); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := f.s.OpenSession(ctx, bob, "shared", "", lim); !errors.Is(err, wire.ErrConflict) {
			t.Errorf("bob past the limit: %v, want ErrConflict", err)
		}
		if _, err := f.s.OpenSession(ctx, ada, "shared", "", lim); err != nil {
			t.Errorf("ada locked out by bob's sessions: %v", err)
		}
		c := f.push(ada, "shared", lww, []wire.Row{parent("p2", "ada's text", "0000000000002.000000.shared")})
		if c.Applied != 1 {
			t.Fatalf("ada's push: %+v", c)
		}
		audit, err := f.s.Audit(ctx, "acme", 0, 10)
		if err != nil || len(audit) != 1 || audit[0].User != "ada" || audit[0].ID != "p2" {
			t.Errorf("audit: %+v, %v; want only ada's row, written by ada", audit, err)
		}
	})

	t.Run("commit is idempotent and closes the session", func(t *testing.T) {
		f := fixture(t)
		ctx := context.Background()
		f.device(ada, "d1")
		sess, err := f.s.OpenSession(ctx, ada, "d1", "", server.Limits{})
		if err != nil {
			t.Fatal(err)
		}
		rows := []wire.Row{parent("p1", "x", "0000000000001.000000.d1"), parent("p2", "y", "0000000000001.000001.d1")}
		if err := stage(ctx, f.s, ada, "d1", sess, 0, rows, server.Limits{}); err != nil {
			t.Fatal(err)
		}
		first, err := f.s.Commit(ctx, ada, "d1", sess, lww, server.Limits{}, nil)
		if err != nil {
			t.Fatal(err)
		}
		again, err := f.s.Commit(ctx, ada, "d1", sess, lww, server.Limits{}, nil)
		if err != nil || !reflect.DeepEqual(first, again) {
			t.Errorf("re-commit = %+v, %v; want the first answer %+v", again, err, first)
		}
		if err := stage(ctx, f.s, ada, "d1", sess, 1, rows, server.Limits{}); !errors.Is(err, wire.ErrConflict) {
			t.Errorf("stage into a committed session: %v, want ErrConflict", err)
		}
		if got := f.all(ada, 10); len(got) != 2 || got[0].Version != first.Version {
			t.Errorf("pulled %d rows, want 2 at version %d", len(got), first.Version)
		}
	})

	t.Run("push opens, stages and commits in one call; the same call again gets the first answer", func(t *testing.T) {
		f := fixture(t)
		ctx := context.Background()
		f.device(ada, "d1")
		last := &server.LastBatch{Seq: 0, Digest: strings.Repeat("1", 64)}
		rows := []wire.Row{parent("p1", "x", "0000000000001.000000.d1")}
		c, err := f.s.Push(ctx, ada, "d1", "one-shot", 0, rows, server.PushOptions{Open: true, Commit: last, Resolve: lww})
		if err != nil || c == nil || c.Applied != 1 {
			t.Fatalf("one-shot push: %+v, %v; want 1 row applied from 1 batch", c, err)
		}
		again, err := f.s.Push(ctx, ada, "d1", "one-shot", 0, rows, server.PushOptions{Open: true, Commit: last, Resolve: lww})
		if err != nil || again == nil || !reflect.DeepEqual(*again, *c) {
			t.Errorf("the same push again: %+v, %v; want the first answer %+v", again, err, c)
		}
		other := []wire.Row{parent("p1", "changed", "0000000000002.000000.d1")}
		if _, err := f.s.Push(ctx, ada, "d1", "one-shot", 0, other, server.PushOptions{Open: true, Commit: &server.LastBatch{Seq: 0, Digest: strings.Repeat("2", 64)}, Resolve: lww}); !errors.Is(err, wire.ErrConflict) {
			t.Errorf("another last batch for the committed session: %v, want ErrConflict", err)
		}
		if got := f.all(ada, 10); len(got) != 1 || got[0].Values["name"] != "x" || got[0].Version != c.Version {
			t.Errorf("pulled %+v, want p1 once, as first pushed", got)
		}
		// The open-session limit holds for a push that opens and commits.
		lim := server.Limits{MaxOpenSessions: 1}
		if _, err := f.s.OpenSession(ctx, ada, "d1", "left-open", lim); err != nil {
			t.Fatal(err)
		}
		_, err = f.s.Push(ctx, ada, "d1", "over-the-limit", 0, rows, server.PushOptions{Open: true, Commit: last, Resolve: lww, Limits: lim})
		if !errors.Is(err, wire.ErrConflict) || !strings.Contains(err.Error(), "open sessions") {
			t.Errorf("one-shot push past the open-session limit: %v, want the limit's ErrConflict", err)
		}
	})

	t.Run("a batch from an earlier attempt does not replace a later copy", func(t *testing.T) {
		f := fixture(t)
		ctx := context.Background()
		f.device(ada, "d1")
		stage := func(attempt int64, name string) error {
			_, err := f.s.Push(ctx, ada, "d1", "attempts", 0, []wire.Row{parent("p1", name, "0000000000001.000000.d1")},
				server.PushOptions{Open: true, Attempt: attempt, Resolve: lww})
			return err
		}
		if err := stage(1, "first"); err != nil {
			t.Fatal(err)
		}
		if err := stage(2, "second"); err != nil {
			t.Fatal(err)
		}
		if err := stage(1, "late copy of the first"); !errors.Is(err, wire.ErrConflict) {
			t.Errorf("batch of attempt 1 after attempt 2: %v, want ErrConflict", err)
		}
		c, err := f.s.Commit(ctx, ada, "d1", "attempts", lww, server.Limits{}, nil)
		if err != nil || c.Applied != 1 {
			t.Fatalf("commit: %+v, %v", c, err)
		}
		if got := f.all(ada, 10); len(got) != 1 || got[0].Values["name"] != "second" {
			t.Errorf("committed %+v, want attempt 2's copy", got)
		}
	})

	t.Run("a settle says whether the lost batch committed the session, and drops a stale one", func(t *testing.T) {
		f := fixture(t)
		ctx := context.Background()
		f.device(ada, "d1")
		last := &server.LastBatch{Seq: 0, Digest: strings.Repeat("a", 64)}
		rows := []wire.Row{parent("p1", "x", "0000000000001.000000.d1")}
		if _, err := f.s.Push(ctx, ada, "d1", "committed", 0, rows, server.PushOptions{Open: true, Commit: last, Resolve: lww}); err != nil {
			t.Fatal(err)
		}
		if c, err := f.s.Commit(ctx, ada, "d1", "committed", lww, server.Limits{}, last); err != nil || !c.Settled {
			t.Errorf("settle of the batch that committed: %+v, %v; want Settled", c, err)
		}
		other := &server.LastBatch{Seq: 0, Digest: strings.Repeat("b", 64)}
		if c, err := f.s.Commit(ctx, ada, "d1", "committed", lww, server.Limits{}, other); err != nil || c.Settled {
			t.Errorf("settle of another batch: %+v, %v; want not Settled", c, err)
		}
		// Batch 1 staged by an earlier attempt; the last batch, sent as
		// batch 1 with the commit, never arrived.
		sess, _ := f.s.OpenSession(ctx, ada, "d1", "", server.Limits{})
		if err := stage(ctx, f.s, ada, "d1", sess, 0, []wire.Row{parent("p2", "y", "0000000000002.000000.d1")}, server.Limits{}); err != nil {
			t.Fatal(err)
		}
		if err := stage(ctx, f.s, ada, "d1", sess, 1, []wire.Row{parent("p3", "stale", "0000000000002.000001.d1")}, server.Limits{}); err != nil {
			t.Fatal(err)
		}
		c, err := f.s.Commit(ctx, ada, "d1", sess, lww, server.Limits{}, &server.LastBatch{Seq: 1, Digest: strings.Repeat("c", 64)})
		if err != nil || c.Settled || c.Applied != 1 {
			t.Errorf("settle of a batch that never arrived: %+v, %v; want 1 row applied (batch 0), not Settled", c, err)
		}
		for _, r := range f.all(ada, 10) {
			if r.ID == "p3" {
				t.Error("the stale batch was committed")
			}
		}
	})

	t.Run("re-sent batch replaces; later batch wins for a row sent twice", func(t *testing.T) {
		f := fixture(t)
		ctx := context.Background()
		f.device(ada, "d1")
		sess, _ := f.s.OpenSession(ctx, ada, "d1", "", server.Limits{})
		stage := func(seq int, rows ...wire.Row) {
			t.Helper()
			if err := stage(ctx, f.s, ada, "d1", sess, seq, rows, server.Limits{}); err != nil {
				t.Fatal(err)
			}
		}
		stage(0, parent("a", "first", "0000000000001.000000.d1"), parent("b", "first", "0000000000001.000000.d1"))
		stage(1, parent("c", "old", "0000000000001.000000.d1"))
		stage(0, parent("a", "second", "0000000000001.000000.d1")) // b is gone
		stage(2, parent("c", "new", "0000000000002.000000.d1"))    // c again, later batch
		c, err := f.s.Commit(ctx, ada, "d1", sess, lww, server.Limits{}, nil)
		if err != nil {
			t.Fatal(err)
		}
		got := names(f.all(ada, 10))
		want := map[string]string{"a": "second", "c": "new"}
		if !reflect.DeepEqual(got, want) || c.Applied != 2 {
			t.Errorf("rows %v (applied %d), want %v (2)", got, c.Applied, want)
		}
	})

	t.Run("conflicts follow the resolver", func(t *testing.T) {
		for _, tt := range []struct {
			name       string
			resolve    server.Resolver
			clientWins bool
		}{
			{"later stamp wins", lww, true},
			{"server wins", resolve(wire.WinnerServer, server.ServerWins), false},
			{"client wins", resolve(wire.WinnerClient, server.ClientWins), true},
		} {
			t.Run(tt.name, func(t *testing.T) {
				f := fixture(t)
				f.device(ada, "d1")
				f.device(bob, "d2")
				v1 := f.push(ada, "d1", lww, []wire.Row{parent("p", "ada's", "0000000000005.000000.d1")})
				// bob's edit is based on version 0 (before ada's), stamped later.
				c := f.push(bob, "d2", tt.resolve, []wire.Row{parent("p", "bob's", "0000000000009.000000.d2"),
					parent("q", "no conflict", "0000000000009.000000.d2")})
				if len(c.Conflicts) != 1 || c.Conflicts[0].ID != "p" {
					t.Fatalf("Conflicts=%+v, want one on p", c.Conflicts)
				}
				cf := c.Conflicts[0]
				wantWinner, wantName := wire.WinnerServer, "ada's"
				if tt.clientWins {
					wantWinner, wantName = wire.WinnerClient, "bob's"
				}
				if cf.Winner != wantWinner || cf.Row.Values["name"] != wantName {
					t.Errorf("conflict winner %s with %v, want %s with %q", cf.Winner, cf.Row.Values["name"], wantWinner, wantName)
				}
				if !tt.clientWins && cf.Row.Version != v1.Version {
					t.Errorf("winning server row at version %d, want %d", cf.Row.Version, v1.Version)
				}
				got := names(f.all(ada, 10))
				if got["p"] != wantName || got["q"] != "no conflict" {
					t.Errorf("server rows %v, want p=%q and q", got, wantName)
				}
				// A push based on the current version is no conflict.
				cur := f.all(ada, 10)
				base := wire.Row{}
				for _, r := range cur {
					if r.ID == "p" {
						base = r
					}
				}
				next := parent("p", "based on current", "0000000000001.000000.d1")
				next.Base = base.Version
				if c := f.push(ada, "d1", lww, []wire.Row{next}); len(c.Conflicts) != 0 {
					t.Errorf("push based on the current version: conflicts %+v", c.Conflicts)
				}
			})
		}
	})

	t.Run("a resolver may merge both rows", func(t *testing.T) {
		f := fixture(t)
		f.device(ada, "d1")
		f.device(bob, "d2")
		f.push(ada, "d1", lww, []wire.Row{parent("p", "ada's", "0000000000005.000000.d1")})
		var seen server.Conflict
		merge := func(_ context.Context, c server.Conflict) (server.Resolution, server.Strategy, error) {
			seen = c
			vals := maps.Clone(c.Server.Values)
			vals["name"] = c.Server.Values["name"].(string) + " + " + c.Pushed.Values["name"].(string)
			return server.Resolution{Winner: wire.WinnerMerged, Values: vals}, server.Custom, nil
		}
		c := f.push(bob, "d2", merge, []wire.Row{parent("p", "bob's", "0000000000004.000000.d2")})
		if seen.Base != 0 || seen.Server.Values["name"] != "ada's" || seen.Pushed.Values["name"] != "bob's" || seen.Server.Version == 0 {
			t.Errorf("resolver saw %+v", seen)
		}
		if len(c.Conflicts) != 1 {
			t.Fatalf("Conflicts=%+v", c.Conflicts)
		}
		cf := c.Conflicts[0]
		if cf.Winner != wire.WinnerMerged || cf.Row.Values["name"] != "ada's + bob's" || cf.Row.Version != c.Version ||
			cf.Row.HLC != "0000000000005.000000.d1" || cf.Lost == nil || cf.Lost.Values["name"] != "ada's" {
			t.Errorf("conflict %+v, want the merge at version %d with the later stamp, and ada's row as lost", cf, c.Version)
		}
		if got := names(f.all(ada, 10)); got["p"] != "ada's + bob's" {
			t.Errorf("server holds %v, want the merge", got)
		}
		// A merge that lacks a column fails the commit, and applies nothing.
		bad := func(context.Context, server.Conflict) (server.Resolution, server.Strategy, error) {
			return server.Resolution{Winner: wire.WinnerMerged, Values: map[string]any{"name": "x"}}, server.Custom, nil
		}
		ctx := context.Background()
		sess, _ := f.s.OpenSession(ctx, bob, "d2", "", server.Limits{})
		if err := stage(ctx, f.s, bob, "d2", sess, 0, []wire.Row{parent("p", "again", "0000000000009.000000.d2"),
			parent("q", "new", "0000000000009.000000.d2")}, server.Limits{}); err != nil {
			t.Fatal(err)
		}
		if _, err := f.s.Commit(ctx, bob, "d2", sess, bad, server.Limits{}, nil); err == nil || !strings.Contains(err.Error(), "lacks column") {
			t.Errorf("commit with a bad merge: %v, want an error naming the missing column", err)
		}
		if got := names(f.all(ada, 10)); got["p"] != "ada's + bob's" || got["q"] != "" {
			t.Errorf("after the failed commit the server holds %v", got)
		}
	})

	t.Run("pull pages are bounded in bytes, and skip nothing", func(t *testing.T) {
		f := fixture(t)
		f.device(ada, "d1")
		big := strings.Repeat("x", 30_000)
		var want []string
		for i := range 4 { // each session: a big parent and two small children
			p := parent(fmt.Sprintf("p%d", i), big, "0000000000001.000000.d1")
			f.push(ada, "d1", lww, []wire.Row{p}, []wire.Row{child(fmt.Sprintf("c%d-a", i), p.ID), child(fmt.Sprintf("c%d-b", i), p.ID)})
			want = append(want, p.ID, fmt.Sprintf("c%d-a", i), fmt.Sprintf("c%d-b", i))
		}
		for _, maxBytes := range []int{1, 20_000, 50_000, 70_000} {
			var got []string
			for _, r := range f.allBytes(ada, 100, maxBytes) {
				got = append(got, r.ID)
			}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("pages of %d bytes: %v, want %v", maxBytes, got, want)
			}
		}
	})

	t.Run("pull pages in commit order, latest state once, tombstones included", func(t *testing.T) {
		f := fixture(t)
		f.device(ada, "d1")
		var firsts []wire.Row
		for i := range 7 {
			firsts = append(firsts, parent(fmt.Sprintf("p%d", i), "v1", "0000000000001.000000.d1"))
		}
		f.push(ada, "d1", lww, firsts, []wire.Row{child("c1", "p1"), child("c2", "p2")})
		c2 := f.push(ada, "d1", lww, []wire.Row{child("c0", "p0")})
		gone := parent("p3", "v1", "0000000000002.000000.d1")
		gone.Deleted, gone.Base = true, 1
		upd := parent("p5", "v2", "0000000000002.000000.d1")
		upd.Base = 1
		f.push(ada, "d1", lww, []wire.Row{gone, upd})
		for _, limit := range []int{1, 2, 3, 100} {
			got := f.all(ada, limit)
			if len(got) != 10 {
				t.Fatalf("limit %d: pulled %d rows, want 10 (each row once)", limit, len(got))
			}
			seen := map[string]bool{}
			for i, r := range got {
				key := r.Table + "/" + r.ID
				if seen[key] {
					t.Errorf("limit %d: %s pulled twice", limit, key)
				}
				seen[key] = true
				if i > 0 && r.Version < got[i-1].Version {
					t.Errorf("limit %d: version %d after %d", limit, r.Version, got[i-1].Version)
				}
			}
			if got[7].ID != "c0" || got[7].Version != c2.Version {
				t.Errorf("limit %d: row 8 is %s@%d, want c0@%d", limit, got[7].ID, got[7].Version, c2.Version)
			}
			last := got[8:]
			if last[0].ID != "p3" || !last[0].Deleted || last[1].ID != "p5" || last[1].Values["name"] != "v2" {
				t.Errorf("limit %d: last rows %+v, want the tombstone of p3 then p5 v2", limit, last)
			}
		}
	})

	t.Run("a device's own rows are passed over unread, and the cursor passes them", func(t *testing.T) {
		f := fixture(t)
		ctx := context.Background()
		f.device(ada, "d1")
		f.device(ada, "d2")
		f.push(ada, "d2", lww, []wire.Row{parent("other", "d2's", "0000000000001.000000.d2")})
		sess, err := f.s.OpenSession(ctx, ada, "d1", "", server.Limits{})
		if err != nil {
			t.Fatal(err)
		}
		var mine []wire.Row
		for i := range 30 {
			mine = append(mine, parent(fmt.Sprintf("mine%02d", i), "d1's", "0000000000001.000000.d1"))
		}
		if err := stage(ctx, f.s, ada, "d1", sess, 0, mine, server.Limits{}); err != nil {
			t.Fatal(err)
		}
		c, err := f.s.Commit(ctx, ada, "d1", sess, lww, server.Limits{}, nil)
		if err != nil {
			t.Fatal(err)
		}
		// 31 rows, pages of 5: d2's row, and d1's 30 in one page that
		// holds none of them.
		echo := server.Echo{Device: "d1", Sessions: map[string]bool{sess: true}}
		rows, next, more, err := f.s.Changes(ctx, ada, server.Cursor{}, 5, 1<<30, echo)
		if err != nil || more || len(rows) != 1 || rows[0].ID != "other" || next.Version != c.Version {
			t.Fatalf("pull of d1 after its own session: %d rows, more %v, cursor %+v, %v; want d2's row alone, no more, at version %d",
				len(rows), more, next, err, c.Version)
		}
		if rows, _, more, err := f.s.Changes(ctx, ada, next, 5, 1<<30, server.Echo{Device: "d1"}); err != nil || len(rows) != 0 || more {
			t.Errorf("pull from there, naming no session: %d rows, more %v, %v; want nothing: the cursor passed d1's rows", len(rows), more, err)
		}
		later := f.push(ada, "d2", lww, []wire.Row{parent("later", "d2's", "0000000000002.000000.d2")})
		if rows, _, _, err := f.s.Changes(ctx, ada, next, 5, 1<<30, echo); err != nil || len(rows) != 1 || rows[0].ID != "later" || rows[0].Version != later.Version {
			t.Errorf("pull after a later commit: %+v, %v; want d2's later row", rows, err)
		}
		// Another device gets them all.
		if got := f.all(ada, 5); len(got) != 32 {
			t.Errorf("another device pulled %d rows, want 32", len(got))
		}
	})

	t.Run("open sessions per device are limited", func(t *testing.T) {
		f := fixture(t)
		ctx := context.Background()
		f.device(ada, "d1")
		f.device(ada, "d2")
		lim := server.Limits{MaxOpenSessions: 2}
		var open []string
		for range 2 {
			id, err := f.s.OpenSession(ctx, ada, "d1", "", lim)
			if err != nil {
				t.Fatal(err)
			}
			open = append(open, id)
		}
		if _, err := f.s.OpenSession(ctx, ada, "d1", "", lim); !errors.Is(err, wire.ErrConflict) {
			t.Fatalf("third open session: %v, want ErrConflict", err)
		}
		if _, err := f.s.OpenSession(ctx, ada, "d2", "", lim); err != nil {
			t.Errorf("another device is not limited by d1's sessions: %v", err)
		}
		if _, err := f.s.Commit(ctx, ada, "d1", open[0], lww, lim, nil); err != nil {
			t.Fatal(err)
		}
		if _, err := f.s.OpenSession(ctx, ada, "d1", "", lim); err != nil {
			t.Errorf("open session after committing one: %v", err)
		}
	})

	t.Run("opening a session again after a lost answer finds it", func(t *testing.T) {
		f := fixture(t)
		ctx := context.Background()
		f.device(ada, "d1")
		f.device(ada, "d2")
		lim := server.Limits{MaxOpenSessions: 1}
		for range 3 { // the answers were lost: the device asks again
			id, err := f.s.OpenSession(ctx, ada, "d1", "sess-1", lim)
			if err != nil || id != "sess-1" {
				t.Fatalf("OpenSession = %q, %v; want sess-1", id, err)
			}
		}
		if _, err := f.s.OpenSession(ctx, ada, "d2", "sess-1", server.Limits{}); !errors.Is(err, wire.ErrConflict) {
			t.Errorf("another device opening sess-1: %v, want ErrConflict", err)
		}
		if _, err := f.s.Commit(ctx, ada, "d1", "sess-1", lww, lim, nil); err != nil {
			t.Fatal(err)
		}
		if _, err := f.s.OpenSession(ctx, ada, "d1", "sess-1", lim); !errors.Is(err, wire.ErrConflict) {
			t.Errorf("reopening a committed session: %v, want ErrConflict", err)
		}
	})

	t.Run("idle sessions expire and their staged rows go", func(t *testing.T) {
		f := fixture(t)
		ctx := context.Background()
		f.device(ada, "d1")
		short := server.Limits{SessionIdle: time.Millisecond, MaxOpenSessions: 1}
		stale, err := f.s.OpenSession(ctx, ada, "d1", "", server.Limits{})
		if err != nil {
			t.Fatal(err)
		}
		if err := stage(ctx, f.s, ada, "d1", stale, 0, []wire.Row{parent("p1", "staged", "0000000000001.000000.d1")}, server.Limits{}); err != nil {
			t.Fatal(err)
		}
		f.clock.Advance(20 * time.Millisecond) // longer than short.SessionIdle
		if _, err := f.s.Commit(ctx, ada, "d1", stale, lww, short, nil); !errors.Is(err, wire.ErrNotFound) {
			t.Fatalf("commit of an expired session: %v, want ErrNotFound", err)
		}
		if _, err := f.s.Commit(ctx, ada, "d1", stale, lww, server.Limits{}, nil); !errors.Is(err, wire.ErrNotFound) {
			t.Errorf("expired session still there: %v", err)
		}
		// The staged row is gone: a fresh session commits only its own.
		c := f.push(ada, "d1", lww, []wire.Row{parent("p2", "fresh", "0000000000002.000000.d1")})
		if got := names(f.all(ada, 10)); c.Applied != 1 || !reflect.DeepEqual(got, map[string]string{"p2": "fresh"}) {
			t.Errorf("after expiry: applied %d, rows %v; want only p2", c.Applied, got)
		}
		// Opening a session sweeps the device's idle ones, which would
		// otherwise count against MaxOpenSessions.
		if _, err := f.s.OpenSession(ctx, ada, "d1", "", server.Limits{}); err != nil {
			t.Fatal(err)
		}
		f.clock.Advance(20 * time.Millisecond)
		if _, err := f.s.OpenSession(ctx, ada, "d1", "", short); err != nil {
			t.Errorf("idle session not swept on open: %v", err)
		}
	})

	t.Run("sessions and tenants are bounded in what they stage", func(t *testing.T) {
		f := fixture(t)
		ctx := context.Background()
		f.device(ada, "d1")
		f.device(bob, "d2")
		row := func(id string) wire.Row { return parent(id, strings.Repeat("x", 1000), "0000000000001.000000.d1") }
		lim := server.Limits{MaxSessionRows: 3, MaxSessionBytes: 1 << 20, MaxTenantStagedBytes: 1 << 30}
		sess, err := f.s.OpenSession(ctx, ada, "d1", "", lim)
		if err != nil {
			t.Fatal(err)
		}
		if err := stage(ctx, f.s, ada, "d1", sess, 0, []wire.Row{row("a"), row("b")}, lim); err != nil {
			t.Fatal(err)
		}
		if err := stage(ctx, f.s, ada, "d1", sess, 1, []wire.Row{row("c"), row("d")}, lim); !errors.Is(err, wire.ErrSessionFull) {
			t.Errorf("batch past MaxSessionRows: %v, want ErrSessionFull", err)
		}
		// Re-sending a batch replaces it: it does not count twice.
		if err := stage(ctx, f.s, ada, "d1", sess, 0, []wire.Row{row("a"), row("b")}, lim); err != nil {
			t.Errorf("re-sent batch within the bound: %v", err)
		}
		if err := stage(ctx, f.s, ada, "d1", sess, 1, []wire.Row{row("c")}, lim); err != nil {
			t.Errorf("batch up to MaxSessionRows: %v", err)
		}
		if c, err := f.s.Commit(ctx, ada, "d1", sess, lww, lim, nil); err != nil || c.Applied != 3 {
			t.Errorf("commit of a full session: %+v, %v", c, err)
		}
		byBytes := server.Limits{MaxSessionBytes: 2500, MaxTenantStagedBytes: 1 << 30}
		sess, _ = f.s.OpenSession(ctx, ada, "d1", "", byBytes)
		if err := stage(ctx, f.s, ada, "d1", sess, 0, []wire.Row{row("e"), row("f"), row("g")}, byBytes); !errors.Is(err, wire.ErrSessionFull) {
			t.Errorf("batch past MaxSessionBytes: %v, want ErrSessionFull", err)
		}
		// The tenant's open sessions together: Bob is held back by what
		// Ada staged, until it commits.
		tenant := server.Limits{MaxTenantStagedBytes: 5000}
		if err := stage(ctx, f.s, ada, "d1", sess, 0, []wire.Row{row("e"), row("f"), row("g")}, tenant); err != nil {
			t.Fatal(err)
		}
		bs, _ := f.s.OpenSession(ctx, bob, "d2", "", tenant)
		if err := stage(ctx, f.s, bob, "d2", bs, 0, []wire.Row{row("h"), row("i"), row("j")}, tenant); !errors.Is(err, wire.ErrRateLimited) {
			t.Errorf("batch past MaxTenantStagedBytes: %v, want ErrRateLimited", err)
		}
		// A session one request opens, fills and commits leaves nothing
		// staged: what the tenant's open sessions hold does not hold it
		// back, its session's own bounds do, and a refused one is not
		// opened.
		last := &server.LastBatch{Seq: 0, Digest: strings.Repeat("1", 64)}
		c, err := f.s.Push(ctx, bob, "d2", "one-request", 0, []wire.Row{row("k"), row("l"), row("m")},
			server.PushOptions{Open: true, Commit: last, Resolve: lww, Limits: tenant})
		if err != nil || c == nil || c.Applied != 3 {
			t.Errorf("one-request session past the tenant's staged bytes: %+v, %v; want 3 rows applied", c, err)
		}
		small := server.Limits{MaxSessionRows: 2, MaxTenantStagedBytes: 1 << 30}
		_, err = f.s.Push(ctx, bob, "d2", "one-request-too-large", 0, []wire.Row{row("n"), row("o"), row("p")},
			server.PushOptions{Open: true, Commit: last, Resolve: lww, Limits: small})
		if !errors.Is(err, wire.ErrSessionFull) {
			t.Errorf("one-request session past MaxSessionRows: %v, want ErrSessionFull", err)
		}
		if _, err := f.s.Commit(ctx, bob, "d2", "one-request-too-large", lww, small, nil); !errors.Is(err, wire.ErrNotFound) {
			t.Errorf("commit of the refused one-request session: %v, want ErrNotFound (never opened)", err)
		}
		if _, err := f.s.Commit(ctx, ada, "d1", sess, lww, tenant, nil); err != nil {
			t.Fatal(err)
		}
		if err := stage(ctx, f.s, bob, "d2", bs, 0, []wire.Row{row("h"), row("i"), row("j")}, tenant); err != nil {
			t.Errorf("batch once the tenant's staged rows committed: %v", err)
		}
	})

	t.Run("expired sessions are swept without their devices", func(t *testing.T) {
		f := fixture(t)
		ctx := context.Background()
		f.device(ada, "d1")
		f.device(gus, "g1")
		type owner struct {
			who server.Principal
			dev string
		}
		stale := map[string]owner{}
		for _, o := range []owner{{ada, "d1"}, {ada, "d1"}, {gus, "g1"}} {
			id, err := f.s.OpenSession(ctx, o.who, o.dev, "", server.Limits{})
			if err != nil {
				t.Fatal(err)
			}
			if err := stage(ctx, f.s, o.who, o.dev, id, 0, []wire.Row{parent("p-"+id, "staged", "0000000000001.000000."+o.dev)}, server.Limits{}); err != nil {
				t.Fatal(err)
			}
			stale[id] = o
		}
		f.clock.Advance(time.Hour) // the stale sessions pass SessionIdle; the fresh one, opened next, is far from it
		fresh, err := f.s.OpenSession(ctx, ada, "d1", "", server.Limits{})
		if err != nil {
			t.Fatal(err)
		}
		sw := f.s
		idle := server.Limits{SessionIdle: 30 * time.Minute}
		if n, err := sw.Sweep(ctx, idle, 2); err != nil || n != 2 { // bounded work: two at a time
			t.Fatalf("first sweep: %d, %v; want 2", n, err)
		}
		if n, err := sw.Sweep(ctx, idle, 2); err != nil || n != 1 {
			t.Fatalf("second sweep: %d, %v; want the third", n, err)
		}
		for id, o := range stale {
			if _, err := f.s.Commit(ctx, o.who, o.dev, id, lww, server.Limits{}, nil); !errors.Is(err, wire.ErrNotFound) {
				t.Errorf("swept session %s: %v, want ErrNotFound", id, err)
			}
		}
		if c, err := f.s.Commit(ctx, ada, "d1", fresh, lww, server.Limits{}, nil); err != nil || c.Applied != 0 {
			t.Errorf("the fresh session: %+v, %v; want it kept, and no swept row in it", c, err)
		}
	})

	t.Run("audit log records every applied change", func(t *testing.T) {
		f := fixture(t)
		f.device(ada, "d1")
		f.device(bob, "d2")
		before := f.clock.Now().Add(-time.Minute)
		c1 := f.push(ada, "d1", lww, []wire.Row{parent("p1", "a", "0000000000001.000000.d1")}, []wire.Row{child("c1", "p1")})
		gone := parent("p1", "a", "0000000000002.000000.d2")
		gone.Deleted, gone.Base = true, c1.Version
		c2 := f.push(bob, "d2", lww, []wire.Row{gone})
		// A change that loses its conflict is not applied, so not audited.
		f.push(ada, "d1", resolve(wire.WinnerServer, server.ServerWins),
			[]wire.Row{parent("p1", "lost", "0000000000003.000000.d1")})
		log, err := f.s.Audit(context.Background(), "acme", 0, 100)
		if err != nil {
			t.Fatal(err)
		}
		type entry struct {
			Version      int64
			Table, ID    string
			Deleted      bool
			User, Device string
		}
		var got []entry
		for _, e := range log {
			if e.Session == "" || e.At.Before(before) || e.At.After(f.clock.Now().Add(time.Minute)) {
				t.Errorf("entry %+v: want a session and the server time of the commit", e)
			}
			got = append(got, entry{e.Version, e.Table, e.ID, e.Deleted, e.User, e.Device})
		}
		want := []entry{
			{c1.Version, "children", "c1", false, "ada", "d1"},
			{c1.Version, "parents", "p1", false, "ada", "d1"},
			{c2.Version, "parents", "p1", true, "bob", "d2"},
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("audit log\n%+v\nwant\n%+v", got, want)
		}
		if other, _ := f.s.Audit(context.Background(), "globex", 0, 100); len(other) != 0 {
			t.Errorf("another tenant's audit log shows %d entries", len(other))
		}
	})

	t.Run("tenants are isolated", func(t *testing.T) {
		f := fixture(t)
		f.device(ada, "d1")
		f.device(gus, "g1")
		f.push(ada, "d1", lww, []wire.Row{parent("same-id", "acme's", "0000000000001.000000.d1")})
		c := f.push(gus, "g1", lww, []wire.Row{parent("same-id", "globex's", "0000000000001.000000.g1")})
		if len(c.Conflicts) != 0 {
			t.Errorf("a row of another tenant made a conflict: %+v", c.Conflicts)
		}
		if a, g := names(f.all(ada, 10)), names(f.all(gus, 10)); a["same-id"] != "acme's" || g["same-id"] != "globex's" || len(a) != 1 || len(g) != 1 {
			t.Errorf("acme sees %v, globex sees %v", a, g)
		}
	})
}

func commitErr(_ wire.Commit, err error) error { return err }

func names(rows []wire.Row) map[string]string {
	out := map[string]string{}
	for _, r := range rows {
		if r.Table == "parents" && !r.Deleted {
			out[r.ID], _ = r.Values["name"].(string)
		}
	}
	return out
}

// stage stores a batch of an open session, without opening or committing it.
func stage(ctx context.Context, s server.Store, p server.Principal, dev, session string, seq int, rows []wire.Row, lim server.Limits) error {
	_, err := s.Push(ctx, p, dev, session, seq, rows, server.PushOptions{Limits: lim})
	return err
}
