package localdb_test

import (
	"context"
	"errors"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/tethersync/tether/entity"
	"github.com/tethersync/tether/localdb"
	"github.com/tethersync/tether/wire"
)

var ctx = context.Background()

type Note struct {
	entity.Meta `sync:"notes,1"`
	ID          string    `db:"id"`
	Title       string    `db:"title"`
	Body        *string   `db:"body"`
	At          time.Time `db:"at"`
}

// NoteV2 is Note after the app grew a column.
type NoteV2 struct {
	entity.Meta `sync:"notes,1"`
	ID          string    `db:"id"`
	Title       string    `db:"title"`
	Body        *string   `db:"body"`
	At          time.Time `db:"at"`
	Stars       int       `db:"stars"`
}

func open(t testing.TB, path string, types ...any) *localdb.DB {
	t.Helper()
	if len(types) == 0 {
		types = []any{Note{}}
	}
	reg := entity.NewRegistry()
	if err := reg.Register(types...); err != nil {
		t.Fatal(err)
	}
	db, err := localdb.Open(ctx, path, reg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func newDB(t *testing.T) *localdb.DB { return open(t, filepath.Join(t.TempDir(), "app.db")) }

func pending(t *testing.T, db *localdb.DB) int {
	t.Helper()
	n, err := db.Pending(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func TestCRUD(t *testing.T) {
	db := newDB(t)
	at := time.Date(2026, 5, 6, 7, 8, 9, 123456789, time.UTC)
	n := Note{Title: "first", At: at}
	if err := db.Save(ctx, &n); err != nil {
		t.Fatal(err)
	}
	if len(n.ID) != 36 || !n.Dirty || n.ModifiedAt.IsZero() {
		t.Fatalf("after Save: %+v, want a UUID id, dirty, ModifiedAt set", n)
	}
	var got Note
	if err := db.Get(ctx, &got, n.ID); err != nil {
		t.Fatal(err)
	}
	if got.Title != "first" || !got.At.Equal(at) || got.Body != nil || !got.Dirty {
		t.Errorf("Get=%+v, want the saved note", got)
	}
	body := "text"
	got.Title, got.Body = "second", &body
	if err := db.Save(ctx, &got); err != nil {
		t.Fatal(err)
	}
	list, err := localdb.Query[Note](ctx, db, "title = ?", "second")
	if err != nil || len(list) != 1 || *list[0].Body != "text" {
		t.Fatalf("Query(title=second)=%+v, %v; want the updated note", list, err)
	}
	if pending(t, db) != 1 {
		t.Errorf("Pending=%d, want 1", pending(t, db))
	}

	if err := db.Delete(ctx, &got); err != nil {
		t.Fatal(err)
	}
	if !got.Deleted {
		t.Error("Meta.Deleted not set by Delete")
	}
	if err := db.Get(ctx, &Note{}, n.ID); !errors.Is(err, localdb.ErrNotFound) {
		t.Errorf("Get(deleted)=%v, want ErrNotFound", err)
	}
	if list, _ := localdb.Query[Note](ctx, db, ""); len(list) != 0 {
		t.Errorf("Query returned tombstones: %+v", list)
	}
	if err := db.Delete(ctx, &got); !errors.Is(err, localdb.ErrNotFound) {
		t.Errorf("Delete(deleted)=%v, want ErrNotFound", err)
	}
	var tomb int
	db.SQL().QueryRow(`SELECT count(*) FROM notes WHERE _deleted = 1 AND _dirty = 1`).Scan(&tomb)
	if tomb != 1 {
		t.Errorf("dirty tombstones=%d, want 1 kept for sync", tomb)
	}
	if err := db.Get(ctx, &Note{}, "nope"); !errors.Is(err, localdb.ErrNotFound) {
		t.Errorf("Get(absent)=%v, want ErrNotFound", err)
	}
}

func TestUpdateIsAtomic(t *testing.T) {
	db := newDB(t)
	boom := errors.New("boom")
	err := db.Update(ctx, func(tx *localdb.Tx) error {
		if err := tx.Save(ctx, &Note{Title: "a"}); err != nil {
			return err
		}
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("Update=%v, want boom", err)
	}
	if list, _ := localdb.Query[Note](ctx, db, ""); len(list) != 0 {
		t.Errorf("rolled-back Save is visible: %+v", list)
	}
}

func TestReopenWithGrownStruct(t *testing.T) {
	path := filepath.Join(t.TempDir(), "app.db")
	db := open(t, path)
	n := Note{Title: "keep me"}
	if err := db.Save(ctx, &n); err != nil {
		t.Fatal(err)
	}
	device := db.DeviceID()
	db.Close()

	db2 := open(t, path, NoteV2{})
	var got NoteV2
	if err := db2.Get(ctx, &got, n.ID); err != nil {
		t.Fatal(err)
	}
	if got.Title != "keep me" {
		t.Errorf("after upgrade: %+v, want the old row", got)
	}
	got.Stars = 5
	if err := db2.Save(ctx, &got); err != nil {
		t.Fatal(err)
	}
	if db2.DeviceID() != device {
		t.Errorf("DeviceID changed on reopen: %s, want %s", db2.DeviceID(), device)
	}
}

func TestRawSQLTracked(t *testing.T) {
	db := newDB(t)
	if _, err := db.SQL().Exec(`INSERT INTO notes (id, title, at) VALUES ('r1', 'raw', '2026-01-01T00:00:00.000000000Z')`); err != nil {
		t.Fatal(err)
	}
	var n Note
	if err := db.Get(ctx, &n, "r1"); err != nil || !n.Dirty {
		t.Fatalf("raw insert: %+v, %v; want a dirty row", n, err)
	}
	if err := db.Syncer().FinishPushForTest(ctx); err != nil {
		t.Fatal(err)
	}
	if pending(t, db) != 0 {
		t.Fatalf("Pending=%d after clean, want 0", pending(t, db))
	}
	if _, err := db.SQL().Exec(`UPDATE notes SET title = 'raw2' WHERE id = 'r1'`); err != nil {
		t.Fatal(err)
	}
	if pending(t, db) != 1 {
		t.Errorf("raw update not tracked: Pending=%d, want 1", pending(t, db))
	}
	if _, err := db.SQL().Exec(`DELETE FROM notes WHERE id = 'r1'`); err != nil {
		t.Fatal(err)
	}
	var deleted, dirty int
	if err := db.SQL().QueryRow(`SELECT _deleted, _dirty FROM notes WHERE id = 'r1'`).Scan(&deleted, &dirty); err != nil {
		t.Fatalf("raw DELETE removed the row instead of leaving a tombstone: %v", err)
	}
	if deleted != 1 || dirty != 1 {
		t.Errorf("after raw DELETE: deleted=%d dirty=%d, want 1 1", deleted, dirty)
	}
	b, err := db.Syncer().NextDirty(ctx, localdb.PushPos{}, 10)
	if err != nil || len(b.Rows) != 1 || b.Rows[0].HLC == "" || !b.Rows[0].Deleted {
		t.Errorf("NextDirty=%+v, %v; want the stamped tombstone", b.Rows, err)
	}
}

func TestPulledWritesNotTracked(t *testing.T) {
	db := newDB(t)
	rows := []wire.Row{{Table: "notes", ID: "p1", Version: 3, HLC: "1700000000000.000000.dev", Values: map[string]any{"title": "pulled", "at": "2026-01-01T00:00:00Z"}}}
	n, err := db.Syncer().ApplyChanges(ctx, rows, "cursor-1")
	if err != nil || n != 1 {
		t.Fatalf("ApplyChanges=%d, %v; want 1", n, err)
	}
	if pending(t, db) != 0 {
		t.Errorf("pulled row marked dirty: Pending=%d", pending(t, db))
	}
	var got Note
	if err := db.Get(ctx, &got, "p1"); err != nil || got.Title != "pulled" || got.Version != 3 {
		t.Errorf("Get=%+v, %v; want the pulled row at version 3", got, err)
	}
	if c, _ := db.Syncer().Cursor(ctx); c != "cursor-1" {
		t.Errorf("Cursor=%q, want cursor-1", c)
	}
	// A later local edit is not overwritten by an older or newer pull.
	got.Title = "mine"
	if err := db.Save(ctx, &got); err != nil {
		t.Fatal(err)
	}
	rows[0].Version = 4
	rows[0].Values["title"] = "theirs"
	if n, err := db.Syncer().ApplyChanges(ctx, rows, "cursor-2"); err != nil || n != 0 {
		t.Errorf("ApplyChanges over dirty row=%d, %v; want 0 applied", n, err)
	}
	db.Get(ctx, &got, "p1")
	if got.Title != "mine" {
		t.Errorf("dirty row overwritten by pull: %q", got.Title)
	}
	// A malformed value refuses the whole page, cursor unchanged.
	bad := []wire.Row{{Table: "notes", ID: "p2", Version: 5, HLC: "x", Values: map[string]any{"title": 42}}}
	if _, err := db.Syncer().ApplyChanges(ctx, bad, "cursor-3"); err == nil {
		t.Error("ApplyChanges accepted a number for a text column")
	}
	if c, _ := db.Syncer().Cursor(ctx); c != "cursor-2" {
		t.Errorf("Cursor=%q after a refused page, want cursor-2", c)
	}
}

// TestEditDuringPushStaysDirty is G2 at the store level: a row changed
// after NextDirty read it stays dirty after FinishPush.
func TestEditDuringPushStaysDirty(t *testing.T) {
	db := newDB(t)
	a, b := Note{Title: "a"}, Note{Title: "b"}
	db.Save(ctx, &a)
	db.Save(ctx, &b)
	if err := db.Syncer().BeginPush(ctx, "s1"); err != nil {
		t.Fatal(err)
	}
	batch, err := db.Syncer().NextDirty(ctx, localdb.PushPos{}, 10)
	if err != nil || len(batch.Rows) != 2 {
		t.Fatalf("NextDirty=%d rows, %v", len(batch.Rows), err)
	}
	if err := db.Syncer().MarkSent(ctx, batch, localdb.PushState{Session: "s1", Seq: 1, Pos: batch.Next}); err != nil {
		t.Fatal(err)
	}
	a.Title = "a edited during push"
	db.Save(ctx, &a)
	if _, err := db.SQL().Exec(`UPDATE notes SET title = 'b raw edit' WHERE id = ?`, b.ID); err != nil {
		t.Fatal(err)
	}
	if err := db.Syncer().FinishPush(ctx, wire.Commit{Version: 7}, true); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{a.ID, b.ID} {
		var got Note
		db.Get(ctx, &got, id)
		if !got.Dirty || got.Version != 7 {
			t.Errorf("%s: dirty=%v version=%d, want dirty at base version 7", got.Title, got.Dirty, got.Version)
		}
	}
	st, _ := db.Syncer().PushState(ctx)
	if st.Session != "" {
		t.Errorf("PushState after finish=%+v, want none", st)
	}
}

func TestClockNeverGoesBack(t *testing.T) {
	path := filepath.Join(t.TempDir(), "app.db")
	wall := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	reg := entity.NewRegistry()
	reg.Register(Note{})
	db, err := localdb.OpenWith(ctx, path, reg, localdb.Options{Now: func() time.Time { return wall }})
	if err != nil {
		t.Fatal(err)
	}
	n := Note{Title: "x"}
	db.Save(ctx, &n)
	first, _ := db.Syncer().NextDirty(ctx, localdb.PushPos{}, 1)
	db.Close()

	wall = wall.Add(-time.Hour) // the device clock jumps back and the app restarts
	db, err = localdb.OpenWith(ctx, path, reg, localdb.Options{Now: func() time.Time { return wall }})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	n.Title = "y"
	db.Save(ctx, &n)
	second, _ := db.Syncer().NextDirty(ctx, localdb.PushPos{}, 1)
	if !(second.Rows[0].HLC > first.Rows[0].HLC) {
		t.Errorf("stamp after clock jump %s, want later than %s", second.Rows[0].HLC, first.Rows[0].HLC)
	}
}

func TestBindTenant(t *testing.T) {
	db := newDB(t)
	if tenant, err := db.Syncer().Tenant(ctx); err != nil || tenant != "" {
		t.Fatalf("Tenant of a new database = %q, %v", tenant, err)
	}
	for _, tenant := range []string{"acme", "acme"} {
		if err := db.Syncer().BindTenant(ctx, tenant); err != nil {
			t.Fatalf("BindTenant(%q): %v", tenant, err)
		}
	}
	if err := db.Syncer().BindTenant(ctx, "globex"); !errors.Is(err, localdb.ErrOtherTenant) {
		t.Errorf("BindTenant(globex) = %v, want ErrOtherTenant", err)
	}
	if tenant, _ := db.Syncer().Tenant(ctx); tenant != "acme" {
		t.Errorf("Tenant = %q after a refused bind, want acme", tenant)
	}
}

// Each dirty row knows which columns changed since its last sync, through
// Save and plain SQL alike; a new row changed every column.
func TestChangedColumns(t *testing.T) {
	db := newDB(t)
	body := "b"
	n := Note{ID: "n1", Title: "t", Body: &body, At: time.Unix(1, 0)}
	if err := db.Save(ctx, &n); err != nil {
		t.Fatal(err)
	}
	changed := func() []string {
		t.Helper()
		b, err := db.Syncer().NextDirty(ctx, localdb.PushPos{}, 10)
		if err != nil || len(b.Rows) != 1 {
			t.Fatalf("NextDirty: %d rows, %v", len(b.Rows), err)
		}
		return b.Rows[0].Changed
	}
	if got := changed(); got != nil {
		t.Errorf("new row: Changed=%v, want nil (every column)", got)
	}
	if err := db.Syncer().FinishPushForTest(ctx); err != nil {
		t.Fatal(err)
	}
	n.Title = "t2"
	if err := db.Save(ctx, &n); err != nil {
		t.Fatal(err)
	}
	if got := changed(); !reflect.DeepEqual(got, []string{"title"}) {
		t.Errorf("after Save of the title: Changed=%v", got)
	}
	if _, err := db.SQL().Exec(`UPDATE notes SET body = 'x' WHERE id = 'n1'`); err != nil {
		t.Fatal(err)
	}
	n.Title = "t2" // saving the same title again changes nothing more
	if err := db.Get(ctx, &n, "n1"); err != nil {
		t.Fatal(err)
	}
	if err := db.Save(ctx, &n); err != nil {
		t.Fatal(err)
	}
	if got := changed(); !reflect.DeepEqual(got, []string{"title", "body"}) {
		t.Errorf("after plain SQL on the body: Changed=%v, want title and body", got)
	}
}

// A last batch recorded as sent with its commit (PushState.Final) and then
// forgotten, because the server refused it, leaves the push state at the
// batches the server acknowledged: the next push resends it, it does not
// settle a batch the server never staged.
func TestForgetFinal(t *testing.T) {
	db := newDB(t)
	s := db.Syncer()
	db.Save(ctx, &Note{Title: "a"})
	if err := s.BeginPush(ctx, "s1"); err != nil {
		t.Fatal(err)
	}
	batch, err := s.NextDirty(ctx, localdb.PushPos{}, 10)
	if err != nil {
		t.Fatal(err)
	}
	final := localdb.PushState{Session: "s1", Final: true, FinalDigest: "abc"}
	if err := s.MarkSent(ctx, batch, final); err != nil {
		t.Fatal(err)
	}
	if st, err := s.PushState(ctx); err != nil || !st.Final || st.FinalDigest != "abc" {
		t.Fatalf("PushState after MarkSent with Final=%+v, %v; want Final with digest abc", st, err)
	}
	if err := s.ForgetFinal(ctx); err != nil {
		t.Fatal(err)
	}
	st, err := s.PushState(ctx)
	if err != nil || st.Final || st.FinalDigest != "" || st.Session != "s1" || st.Seq != 0 {
		t.Errorf("PushState after ForgetFinal=%+v, %v; want session s1 at batch 0, not final", st, err)
	}
	if err := s.MarkSent(ctx, batch, localdb.PushState{Session: "s1", Final: true}); err == nil {
		t.Errorf("MarkSent of a final batch without digest succeeded, want an error")
	}
}
